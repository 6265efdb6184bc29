"""Crontab lines that auditctl adds: to the user's crontab through the crontab program, or to a file.

Each line ends with a marker comment, such as ``# auditctl backup``, so that
installing again replaces that line and keeps every other line as it was.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import AuditctlError, InvalidArgumentError
from .files import os_reason, replace_when_complete
from .i18n import _

logger = logging.getLogger(__name__)


class CrontabError(AuditctlError):
    """The crontab could not be read or written."""


@dataclass(frozen=True)
class CronResult:
    """The line written, where, and the earlier lines with the same marker that it replaced."""

    line: str
    marker: str
    target: str
    replaced_lines: tuple[str, ...] = ()

    @property
    def replaced(self) -> bool:
        return bool(self.replaced_lines)


def cron_quote(value: str) -> str:
    """Quote one word of a crontab command for the shell, and its % signs for cron.

    cron turns an unescaped % into a newline, so it is escaped after shell quoting.
    """
    return shlex.quote(value).replace("%", "\\%")


def replace_marked_line(line: str, marker: str, crontab_file: Path | None) -> CronResult:
    """Add ``line`` to the crontab, or to ``crontab_file``, in place of earlier lines ending in ``marker``.

    Safe to repeat. Nothing is written when the crontab cannot be read.
    """
    if crontab_file is None:
        current = _read_user_crontab()
        target = "crontab"
    else:
        current = _read_crontab_file(crontab_file)
        target = str(crontab_file)

    other_lines, replaced = [], []
    for existing in current.splitlines():
        if existing.rstrip().endswith(marker):
            replaced.append(existing)
        else:
            other_lines.append(existing)
    text = "\n".join([*other_lines, line]) + "\n"

    if crontab_file is None:
        _write_user_crontab(text)
    else:
        with replace_when_complete(crontab_file) as handle:
            handle.write(text.encode())
    logger.info("wrote the line marked %r to %s", marker, target)
    return CronResult(line, marker, target, tuple(replaced))


def _read_crontab_file(path: Path) -> str:
    """Return the text of a crontab file, or an empty text when it does not exist yet."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as exc:
        error = os_reason(exc) if isinstance(exc, OSError) else _("it is not UTF-8 text")
        raise InvalidArgumentError(_("Cannot read the crontab file {path}: {error}; pass another --crontab-file.")
                                   .format(path=path, error=error)) from None


def _run_crontab(argument: str, text: str | None = None) -> subprocess.CompletedProcess[str]:
    program = shutil.which("crontab")
    if program is None:
        raise CrontabError(_("The crontab program was not found; install cron, or pass --crontab-file."))
    # The C locale keeps crontab's messages in English, where "no crontab for USER" can be recognised.
    return subprocess.run([program, argument], input=text, capture_output=True, text=True, check=False,
                          env={**os.environ, "LC_ALL": "C"})


def _crontab_failure(completed: subprocess.CompletedProcess[str]) -> str:
    return completed.stderr.strip() or _("exit status {code}").format(code=completed.returncode)


def _read_user_crontab() -> str:
    completed = _run_crontab("-l")
    if completed.returncode == 0:
        return completed.stdout
    # Vixie cron and the crontab programs derived from it print this only when the user's crontab file
    # does not exist. Any other failure may hide lines that a rewrite would delete, so it stops the install.
    if "no crontab for " in completed.stderr.lower():
        return ""
    raise CrontabError(_("Reading the crontab with `crontab -l` failed: {error}. Nothing was changed; fix the "
                         "cause, or pass --crontab-file.").format(error=_crontab_failure(completed)))


def _write_user_crontab(text: str) -> None:
    completed = _run_crontab("-", text)
    if completed.returncode != 0:
        raise CrontabError(_("Writing the crontab failed: {error}").format(error=_crontab_failure(completed)))
