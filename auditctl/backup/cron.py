"""The crontab entry for the nightly backup, written so that it works under cron's bare environment.

cron starts jobs with a minimal PATH, no locale and none of the login
shell's variables, so the entry names the Python interpreter and every file
by absolute path. It sends all output to a log file whose folder is checked
at install time, because a redirection that fails stops the job before
auditctl can log or mail.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..crontab import CronResult, cron_quote, replace_marked_line
from ..errors import InvalidArgumentError, OutputFileError
from ..files import check_writable_folder, os_reason
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
    log_file = log_file.resolve()
    check_log_file(log_file)

    parts = [
        "cd", cron_quote(str(working_dir.resolve())), "&&",
        "LANG=C.UTF-8", cron_quote(sys.executable), "-m", "auditctl", "backup",
        "--config", cron_quote(str(config.resolve())),
        ">>", cron_quote(str(log_file)), "2>&1",
    ]
    return CronEntry(validate_schedule(schedule), " ".join(parts))


def check_log_file(log_file: Path) -> None:
    """Raise OutputFileError unless the job's shell can append to ``log_file``, an absolute path.

    The folder is checked by creating a file in it, because root passes every
    permission check yet cannot write to /proc, /sys or a read-only mount.
    """
    folder = log_file.parent
    problem = check_writable_folder(folder)
    if problem is not None:
        raise OutputFileError(problem.message(
            missing=_("Cannot write the log file {path}: folder {folder} does not exist; create it or pass another "
                      "--log-file."),
            not_a_folder=_("Cannot write the log file {path}: {folder} is not a folder; pass another --log-file."),
            not_writable=_("Cannot write the log file {path}: folder {folder} is not writable ({error}); pass "
                           "another --log-file."),
            path=log_file, folder=folder))
    if log_file.is_dir():
        raise OutputFileError(_("The log file {path} is a folder; pass a file name with --log-file.")
                              .format(path=log_file))
    if log_file.exists():
        try:
            # Opening for appending changes neither the content nor the modification time.
            os.close(os.open(log_file, os.O_WRONLY | os.O_APPEND))
        except OSError as exc:
            raise OutputFileError(_("Cannot write the log file {path}: {error}; pass another --log-file.")
                                  .format(path=log_file, error=os_reason(exc))) from None


def install_entry(entry: CronEntry, crontab_file: Path | None = None) -> CronResult:
    """Replace any earlier auditctl backup line in the crontab, or in ``crontab_file``, with ``entry``."""
    return replace_marked_line(entry.line, MARKER, crontab_file)
