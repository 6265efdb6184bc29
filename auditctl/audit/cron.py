"""The crontab line that runs ``auditctl maintain``, added to a user's crontab or a crontab file."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import conninfo

from ..backup.cron import cron_quote
from ..db import first_line, resolve_dsn
from ..errors import AuditctlError, InvalidArgumentError
from ..files import os_reason, replace_when_complete
from ..i18n import _

logger = logging.getLogger(__name__)

# Ends every line auditctl adds, so a repeated install replaces its own line only.
MARKER = "# auditctl maintain"

DEFAULT_SCHEDULE = "17 3 * * *"


class CrontabError(AuditctlError):
    """The crontab could not be read or written."""


@dataclass
class CronResult:
    """The line written and where, and whether it replaced an earlier auditctl line."""

    line: str
    target: str
    replaced: bool


def cron_line(schedule: str, arguments: list[str]) -> str:
    """Build the crontab line: schedule, this Python running ``auditctl maintain``, and the marker."""
    fields = schedule.split()
    if len(fields) != 5 and not (len(fields) == 1 and fields[0].startswith("@")):
        raise InvalidArgumentError(
            _("Invalid --schedule {value!r}: use five crontab fields such as '17 3 * * *', or @daily.")
            .format(value=schedule))
    command = " ".join(cron_quote(word) for word in [sys.executable, "-m", "auditctl", "--quiet", "maintain",
                                                      *arguments])
    return f"{' '.join(fields)} {command} {MARKER}"


def crontab_dsn(dsn_option: str | None) -> str:
    """Return the DSN to write into the crontab line: --dsn, else AUDITCTL_DSN, else DATABASE_URL.

    cron runs the line without this shell's variables, so the DSN has to be in
    the line itself. Raises InvalidArgumentError when there is none, and when
    it contains a password, since a crontab is readable by its owner's tools
    and backups.
    """
    source = resolve_dsn(dsn_option)
    if not source.dsn:
        raise InvalidArgumentError(
            _("No DSN for the crontab line: pass --dsn or set AUDITCTL_DSN or DATABASE_URL, because cron does not "
              "pass on the PG* variables of this shell."))
    try:
        params = conninfo.conninfo_to_dict(source.dsn)
    except psycopg.ProgrammingError as exc:
        raise InvalidArgumentError(
            _("Invalid DSN from {origin}: {error}. Use a libpq connection string or a postgresql:// URL.")
            .format(origin=source.origin, error=first_line(str(exc)))) from None
    if params.get("password"):
        raise InvalidArgumentError(
            _("The DSN from {origin} contains a password, which would be written into the crontab. Remove it and "
              "put the password in ~/.pgpass or in a file named by passfile=FILE in the DSN, or connect with "
              "service=NAME from ~/.pg_service.conf.").format(origin=source.origin))
    return source.dsn


def install_line(line: str, crontab_file: Path | None) -> CronResult:
    """Add ``line`` to the crontab, replacing an earlier auditctl maintain line; safe to repeat."""
    if crontab_file is None:
        current = _read_user_crontab()
        target = "crontab"
    else:
        current = _read_crontab_file(crontab_file)
        target = str(crontab_file)
    kept = [existing for existing in current.splitlines() if not existing.rstrip().endswith(MARKER)]
    replaced = len(kept) != len(current.splitlines())
    text = "\n".join([*kept, line]) + "\n"
    if crontab_file is None:
        _write_user_crontab(text)
    else:
        with replace_when_complete(crontab_file) as handle:
            handle.write(text.encode())
    logger.info("wrote the auditctl maintain line to %s", target)
    return CronResult(line, target, replaced)


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


def _crontab_program() -> str:
    program = shutil.which("crontab")
    if program is None:
        raise CrontabError(_("The crontab program was not found; install cron, or pass --crontab-file."))
    return program


def _read_user_crontab() -> str:
    completed = subprocess.run([_crontab_program(), "-l"], capture_output=True, text=True, check=False)
    if completed.returncode == 0:
        return completed.stdout
    if "no crontab" in completed.stderr.lower():
        return ""
    raise CrontabError(_("Reading the crontab failed: {error}").format(error=completed.stderr.strip()))


def _write_user_crontab(text: str) -> None:
    completed = subprocess.run([_crontab_program(), "-"], input=text, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise CrontabError(_("Writing the crontab failed: {error}").format(error=completed.stderr.strip()))
