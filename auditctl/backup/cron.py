"""The crontab entry for the nightly backup, written so that it works under cron's bare environment.

cron starts jobs with a minimal PATH, no locale and none of the login
shell's variables, so the entry names the Python interpreter and every file
by absolute path and sends all output to a log file.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..crontab import CronResult, cron_quote, replace_marked_line
from ..errors import InvalidArgumentError
from ..i18n import _

logger = logging.getLogger(__name__)

MARKER = "# auditctl backup"
_FIELD = re.compile(r"^[\d*/,\-A-Za-z]+$")


@dataclass(frozen=True)
class CronEntry:
    """One crontab line and the marker comment that finds it again on the next install."""

    schedule: str
    command: str

    @property
    def line(self) -> str:
        return f"{self.schedule} {self.command} {MARKER}"


def validate_schedule(schedule: str) -> str:
    """Accept five cron fields or an @-keyword such as @daily."""
    text = " ".join(schedule.split())
    if text.startswith("@") and text[1:] in {"hourly", "daily", "weekly", "monthly", "yearly", "annually",
                                             "midnight"}:
        return text
    fields = text.split(" ")
    if len(fields) != 5 or not all(_FIELD.match(field) for field in fields):
        raise InvalidArgumentError(
            _("Invalid --schedule {value!r}: give five cron fields such as \"0 2 * * *\" (02:00 every night).")
            .format(value=schedule))
    return text


def build_entry(schedule: str, config: Path, log_file: Path, working_dir: Path) -> CronEntry:
    """Build the crontab line: absolute interpreter, config and log paths, UTF-8 locale, output appended to the log."""
    if not config.is_file():
        raise InvalidArgumentError(
            _("Config file {path} does not exist; the cron job needs one (see auditctl.example.toml).")
            .format(path=config))
    parts = [
        "cd", cron_quote(str(working_dir.resolve())), "&&",
        "LANG=C.UTF-8", cron_quote(sys.executable), "-m", "auditctl", "backup",
        "--config", cron_quote(str(config.resolve())),
        ">>", cron_quote(str(log_file.resolve())), "2>&1",
    ]
    return CronEntry(validate_schedule(schedule), " ".join(parts))


def install_entry(entry: CronEntry, crontab_file: Path | None = None) -> CronResult:
    """Replace any earlier auditctl backup line in the crontab, or in ``crontab_file``, with ``entry``."""
    return replace_marked_line(entry.line, MARKER, crontab_file)
