"""The crontab line that runs ``auditctl maintain``, added to a user's crontab or a crontab file."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from psycopg import conninfo, pq

from ..backup.cron import check_log_file
from ..backup.cron_environment import AUTOMATIC_VARIABLES, DEFAULT_LANG
from ..crontab import CronResult, check_schedule, cron_quote, replace_marked_line
from ..db import parse_dsn, resolve_dsn
from ..errors import InvalidArgumentError
from ..i18n import _, ngettext

# Ends every line auditctl adds, so a repeated install replaces its own line only.
MARKER = "# auditctl maintain"

DEFAULT_SCHEDULE = "17 3 * * *"

# The locale variables that the backup's line copies too; the CA certificate ones matter to mail only.
LOCALE_VARIABLES = tuple(name for name in AUTOMATIC_VARIABLES if name.startswith(("LANG", "LC_")))


def cron_line(schedule: str, arguments: list[str], log_file: Path, environment: Mapping[str, str]) -> str:
    """Build the crontab line: schedule, this Python running ``auditctl --quiet maintain``, and the marker.

    As the backup's line does, it sets LANG and the locale variables of
    ``environment``, runs Python with ``-P`` so that a folder named auditctl
    in cron's working folder is not imported instead of the package, and
    appends all output to ``log_file``, an absolute path, whose folder is
    checked here.
    """
    schedule = check_schedule(schedule)
    check_log_file(log_file)
    variables = {"LANG": DEFAULT_LANG}
    variables.update({name: environment[name] for name in LOCALE_VARIABLES if environment.get(name)})
    words = [*(f"{name}={cron_quote(value)}" for name, value in variables.items()),
             *(cron_quote(word) for word in [sys.executable, "-P", "-m", "auditctl", "--quiet", "maintain",
                                             *arguments]),
             ">>", cron_quote(str(log_file)), "2>&1"]
    return f"{schedule} {' '.join(words)} {MARKER}"


def cron_variable_warnings(dsn: str, environment: Mapping[str, str]) -> list[str]:
    """Return warnings about the libpq variables set in ``environment`` for settings that ``dsn`` lacks.

    cron starts the line without this shell's variables, so libpq under cron
    never reads them. The variables and their connection keywords come from
    libpq's PQconndefaults(). PGPASSWORD gets a warning of its own, because
    a password is never written into the crontab.
    """
    # NOTE: PGSERVICEFILE and PGSYSCONFDIR, which locate the service file, have no keyword and are not checked.
    in_dsn = set(conninfo.conninfo_to_dict(dsn))
    missing = {}
    for option in pq.Conninfo.get_defaults():
        if option.envvar is None:
            continue
        name, keyword = option.envvar.decode(), option.keyword.decode()
        if environment.get(name) and keyword not in in_dsn:
            missing[name] = keyword

    warnings = []
    if missing.pop("PGPASSWORD", None):
        warnings.append(
            _("This shell sets PGPASSWORD, which cron does not pass to `auditctl maintain`, and auditctl never "
              "writes a password into the crontab; put the password in ~/.pgpass (mode 0600), or in a file named "
              "by passfile=FILE in the DSN."))
    if missing:
        warnings.append(
            ngettext("This shell sets {names}, which cron does not pass to `auditctl maintain`, so it would connect "
                     "differently there; add {settings} to the DSN.",
                     "This shell sets {names}, which cron does not pass to `auditctl maintain`, so it would connect "
                     "differently there; add {settings} to the DSN.", len(missing))
            .format(names=", ".join(missing), settings=", ".join(f"{keyword}=…" for keyword in missing.values())))
    return warnings


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
    params = parse_dsn(source)
    if params.get("password"):
        raise InvalidArgumentError(
            _("The DSN from {origin} contains a password, which would be written into the crontab. Remove it and "
              "put the password in ~/.pgpass or in a file named by passfile=FILE in the DSN, or connect with "
              "service=NAME from ~/.pg_service.conf.").format(origin=source.origin))
    return source.dsn


def install_line(line: str, crontab_file: Path | None) -> CronResult:
    """Add ``line`` to the crontab, replacing an earlier auditctl maintain line; safe to repeat."""
    return replace_marked_line(line, MARKER, crontab_file)
