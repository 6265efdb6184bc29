"""Signs of life for monitoring: heartbeat pings and a Prometheus textfile.

A backup that silently stops running sends no mail at all; these two let a
monitor notice the missing run. Neither may fail the backup: errors are
logged as warnings.
"""

from __future__ import annotations

import logging
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .manifest import write_durably

logger = logging.getLogger(__name__)

_PING_TIMEOUT_SECONDS = 10
_METRIC_PREFIX = "auditctl_backup_"


def ping_heartbeat(url: str | None, event: str, message: str = "") -> None:
    """Ping ``url`` the healthchecks.io way: ``URL/start``, ``URL`` on success, ``URL/fail`` on failure.

    The body carries ``message`` (the error on failure) so that the monitor shows it.
    """
    if not url:
        return
    target = url.rstrip("/") + {"start": "/start", "success": "", "fail": "/fail"}[event]
    request = urllib.request.Request(target, data=message.encode("utf-8")[:10000], method="POST",
                                     headers={"Content-Type": "text/plain; charset=utf-8"})
    try:
        with urllib.request.urlopen(request, timeout=_PING_TIMEOUT_SECONDS) as response:
            response.read(1024)
        logger.debug("heartbeat %s sent", event)
    except (urllib.error.URLError, OSError) as exc:
        logger.warning("heartbeat ping %s failed: %s", event, getattr(exc, "reason", exc))


@dataclass(frozen=True)
class RunMetrics:
    """The numbers of one run for the textfile collector."""

    database: str
    success: bool
    finished_at: float
    duration_seconds: float
    size_bytes: int | None


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _previous_success(path: Path, label: str) -> str | None:
    """Read the last success time from an earlier file, so a failed run does not erase it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    pattern = re.compile(rf'^{_METRIC_PREFIX}last_success_timestamp_seconds\{{{re.escape(label)}\}} (\S+)$', re.M)
    match = pattern.search(text)
    return match.group(1) if match else None


def write_metrics(path: Path | None, metrics: RunMetrics) -> None:
    """Write the Prometheus textfile for node_exporter's textfile collector (renamed into place atomically)."""
    if path is None:
        return
    label = f'database="{_escape_label(metrics.database)}"'
    last_success = f"{metrics.finished_at:.3f}" if metrics.success else _previous_success(path, label)
    gauges = [
        ("last_run_timestamp_seconds", "Unix time the last backup run ended.", f"{metrics.finished_at:.3f}"),
        ("last_success", "1 if the last backup run succeeded, 0 if it failed.", "1" if metrics.success else "0"),
        ("last_duration_seconds", "Duration of the last backup run in seconds.", f"{metrics.duration_seconds:.3f}"),
    ]
    if last_success is not None:
        gauges.append(("last_success_timestamp_seconds", "Unix time of the last successful backup.", last_success))
    if metrics.size_bytes is not None:
        gauges.append(("last_size_bytes", "Size of the last successful backup file in bytes.",
                       str(metrics.size_bytes)))
    lines = []
    for name, help_text, value in gauges:
        lines += [f"# HELP {_METRIC_PREFIX}{name} {help_text}", f"# TYPE {_METRIC_PREFIX}{name} gauge",
                  f"{_METRIC_PREFIX}{name}{{{label}}} {value}"]
    try:
        # node_exporter, which reads the file, runs as a user of its own.
        write_durably(path, ("\n".join(lines) + "\n").encode(), mode=0o644)
    except OSError as exc:
        logger.warning("could not write metrics file %s: %s", path, exc.strerror)
