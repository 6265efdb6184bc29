"""The crontab entry for the nightly backup, written so that it works under cron's bare environment.

cron starts jobs with a minimal PATH, no locale and none of the login
shell's variables, so the entry names the Python interpreter and every file
by absolute path and sets the variables that ``cron_environment`` chooses.
It sends all output to a log file whose folder is checked at install time,
because a redirection that fails stops the job before auditctl can log or
mail.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..crontab import CronResult, check_schedule, cron_quote, replace_marked_line
from ..errors import InvalidArgumentError, OutputFileError
from ..files import check_writable_folder, os_reason
from ..i18n import _
from .config import load_settings
from .cron_environment import assigned_names, assigned_variables, carried_variables, environment_warnings

logger = logging.getLogger(__name__)

MARKER = "# auditctl backup"

# The variables that choose the language of the report mail, which cron install copies from its shell.
LANGUAGE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


@dataclass(frozen=True)
class CronEntry:
    """One crontab line, the variables it sets, and what will differ under cron from a run by hand."""

    schedule: str
    command: str
    variables: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def line(self) -> str:
        return f"{self.schedule} {self.command} {MARKER}"


def build_entry(schedule: str, config: Path, log_file: Path, working_dir: Path, env_requests: Sequence[str] = (),
                environment: Mapping[str, str] | None = None) -> CronEntry:
    """Build the crontab line that runs ``auditctl backup --config CONFIG`` as it would run in ``working_dir``.

    The line changes into ``working_dir``, which matters only for a config
    file without ``dir``, because relative paths inside the file are read
    from the file's own folder. ``-P`` keeps Python from importing a folder named
    auditctl there instead of the installed package. ``env_requests`` are
    the ``--env`` values; ``environment`` defaults to this process's.
    """
    if not config.is_file():
        raise InvalidArgumentError(
            _("Config file {path} does not exist; the cron job needs one (see auditctl.example.toml).")
            .format(path=config))
    environment = os.environ if environment is None else environment
    schedule = check_schedule(schedule)
    settings = load_settings(config, {})
    variables = carried_variables(env_requests, environment, settings)
    log_file = log_file.resolve()
    check_log_file(log_file)

    working_dir = working_dir.resolve()
    parts = [
        "cd", cron_quote(str(working_dir)), "&&",
        *(f"{name}={cron_quote(value)}" for name, value in variables.items()),
        cron_quote(sys.executable), "-P", "-m", "auditctl", "backup", "--config", cron_quote(str(config.resolve())),
        ">>", cron_quote(str(log_file)), "2>&1",
    ]
    warnings = environment_warnings(settings, environment, variables, working_dir)
    return CronEntry(schedule, " ".join(parts), tuple(variables), tuple(warnings))


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
    # A FIFO is not opened here: that would wait until some process reads it.
    if log_file.is_file():
        try:
            # Opening for appending changes neither the content nor the modification time.
            os.close(os.open(log_file, os.O_WRONLY | os.O_APPEND))
        except OSError as exc:
            raise OutputFileError(_("Cannot write the log file {path}: {error}; pass another --log-file.")
                                  .format(path=log_file, error=os_reason(exc))) from None


def install_entry(entry: CronEntry, crontab_file: Path | None = None) -> CronResult:
    """Replace any earlier auditctl backup line in the crontab, or in ``crontab_file``, with ``entry``."""
    return replace_marked_line(entry.line, MARKER, crontab_file)


def dropped_variable_warnings(result: CronResult, entry: CronEntry) -> list[str]:
    """Warn about each variable that a replaced line set, by hand or by an earlier install, and ``entry`` does not."""
    dropped = []
    for line in result.replaced_lines:
        dropped.extend(name for name in assigned_names(line) if name not in entry.variables and name not in dropped)
    return [_("The replaced line set {name}, which the new line does not; to keep it, run cron install again with "
              "--env {name}=VALUE.").format(name=name) for name in dropped]


def changed_language_warnings(result: CronResult, entry: CronEntry) -> list[str]:
    """Warn about each language variable that a replaced line set to another value than ``entry`` does.

    cron install copies these variables from the shell it runs in, so a run
    from another login would change the language of the mail unnoticed.
    """
    new_values = assigned_variables(entry.line)
    warnings = []
    for line in result.replaced_lines:
        old_values = assigned_variables(line)
        for name in LANGUAGE_VARIABLES:
            old, new = old_values.get(name), new_values.get(name)
            if old is None or new is None or old == new:
                continue
            warnings.append(_("The replaced line set {name}={old}, but the new line sets {name}={new} from this "
                              "shell, so the report mail and the job's messages may change language. To keep {old}, "
                              "run cron install again with {name}={old} in front of it.").format(
                name=name, old=old, new=new))
    return warnings
