"""The crontab entry for the nightly backup, written so that it works under cron's bare environment.

cron starts jobs with a minimal PATH, no locale and none of the login
shell's variables, so the entry names the Python interpreter and every file
by absolute path and sends all output to a log file.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

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


def cron_quote(value: str) -> str:
    """Quote one word of a crontab command for the shell, and its % signs for cron.

    cron turns an unescaped % into a newline, so it is escaped after shell quoting.
    """
    return shlex.quote(value).replace("%", "\\%")


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


def install_entry(entry: CronEntry) -> str:
    """Replace any earlier auditctl entry in the user's crontab with ``entry``; return the new crontab."""
    current = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    # crontab -l exits 1 with "no crontab for USER" when there is none yet.
    lines = current.stdout.splitlines() if current.returncode == 0 else []
    other_lines = [line for line in lines if not line.rstrip().endswith(MARKER)]
    text = "\n".join([*other_lines, entry.line]) + "\n"
    result = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InvalidArgumentError(_("crontab rejected the new entry: {error}").format(
            error=result.stderr.strip() or result.returncode))
    logger.info("installed the crontab entry: %s", entry.line)
    return text
