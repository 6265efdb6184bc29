"""cron install and doctor: running the backup unattended."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .. import render
from ..backup.config import check_dump_options, load_settings
from ..backup.cron import build_entry, changed_language_warnings, dropped_variable_warnings, install_entry
from ..backup.doctor import run_checks
from ..config import find_config
from ..errors import AuditctlError, InvalidArgumentError
from ..i18n import _
from .app import app
from .options import ConfigOption, CrontabFileOption, DirOption, DsnOption, PrintOption, file_parser, typed_flags

cron_app = typer.Typer(help=_("Schedule the nightly backup (install) and partition maintenance (maintain) with cron."),
                       no_args_is_help=True)
app.add_typer(cron_app, name="cron")


class DoctorFailed(AuditctlError):
    """At least one doctor check failed; the table above shows which and what to fix."""


@cron_app.command(help=_("Write the crontab entry of the nightly backup, or print it with --print; replaces an "
                        "earlier one."))
def install(
    schedule: Annotated[str, typer.Option("--schedule", metavar="CRON",
                                          help=_("Five cron fields, e.g. \"0 2 * * *\" for 02:00 every night."))],
    config: ConfigOption = None,
    log_file: Annotated[Path, typer.Option("--log-file", metavar="FILE", parser=file_parser("--log-file", reject_folder=False),
                                           help=_("File that collects the job's output."))] = Path("auditctl-backup.log"),
    env: Annotated[list[str] | None, typer.Option(
        "--env", metavar="NAME[=VALUE]",
        help=_("Set this variable in the crontab line, to its value here or to VALUE; may be repeated. "
               "LANG, LANGUAGE, LC_ALL, LC_MESSAGES, SSL_CERT_FILE and SSL_CERT_DIR are copied when set. "
               "Secrets are rejected."))] = None,
    crontab_file: CrontabFileOption = None,
    print_only: PrintOption = False,
) -> None:
    path = find_config(config)
    if path is None:
        raise InvalidArgumentError(_("No config file found; pass --config (see auditctl.example.toml)."))
    entry = build_entry(schedule, path, log_file, Path.cwd(), env or [])
    if print_only:
        render.print_line(entry.line)
        render.print_warnings(entry.warnings)
        return
    result = install_entry(entry, crontab_file)
    render.print_cron(result)
    render.print_warnings([*entry.warnings, *dropped_variable_warnings(result, entry),
                           *changed_language_warnings(result, entry)])


@app.command(help=_("Check what a nightly backup needs: connection, pg_dump, folder, disk space, SMTP and storage."))
def doctor(config: ConfigOption = None, dsn: DsnOption = None, folder: DirOption = None) -> None:
    settings = load_settings(find_config(config), typed_flags(dsn=dsn, folder=folder))
    check_dump_options(settings)
    report = run_checks(settings)
    render.print_doctor(report)
    if not report.ok:
        raise DoctorFailed(_("Some checks failed; fix them before the next scheduled run."))
