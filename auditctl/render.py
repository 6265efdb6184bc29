"""Everything auditctl prints: rich tables, JSON, and progress.

This is the only module that writes to the terminal; the library modules
return data and never print.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .audit.install import InstallResult, UninstallResult
from .audit.query import Event
from .audit.status import StatusReport, TableState
from .backup.doctor import DoctorReport
from .backup.job import JobReport, format_size
from .backup.manifest import BackupEntry
from .backup.restore import RestoreResult
from .backup.verify import VerifyReport
from .i18n import _

logger = logging.getLogger(__name__)

# Pipes and files get a wide table instead of rich's default of 80 columns.
_PIPE_WIDTH = 160

console = Console(highlight=False)
if not console.is_terminal:
    console = Console(highlight=False, width=_PIPE_WIDTH)
error_console = Console(stderr=True, highlight=False)

# Longest value shown in a table cell before it is cut with an ellipsis.
_CELL_VALUE_CHARS = 40


def print_error(message: str) -> None:
    """Print one error line to stderr."""
    error_console.print(_("Error: {message}").format(message=message), style="bold red", markup=False,
                        soft_wrap=True)


def format_time(moment: datetime) -> str:
    """Show a timestamp in the local time zone, to the second."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def local_utc_offset() -> str:
    """The local UTC offset, such as ``+03:00``, for the header of time columns."""
    offset = datetime.now().astimezone().strftime("%z")
    return f"{offset[:3]}:{offset[3:]}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= _CELL_VALUE_CHARS else text[: _CELL_VALUE_CHARS - 1] + "…"


def summarize_change(event: Event) -> str:
    """One line per changed column: ``column: old → new``."""
    if event.action == "UPDATE" and event.new is not None:
        old = event.old or {}
        return "\n".join(f"{key}: {_short(old.get(key))} → {_short(value)}" for key, value in event.new.items())
    values = event.new if event.action == "INSERT" else event.old if event.action == "DELETE" else event.details
    if not values:
        return ""
    return "\n".join(f"{key}: {_short(value)}" for key, value in values.items())


def print_events(events: list[Event]) -> None:
    """Print events as a table, newest first."""
    if not events:
        console.print(_("No events match these filters."))
        return
    table = Table(show_lines=True)
    table.add_column(_("ID"), justify="right", no_wrap=True)
    table.add_column(_("Time (UTC{offset})").format(offset=local_utc_offset()), no_wrap=True)
    table.add_column(_("User"))
    table.add_column(_("IP address"))
    table.add_column(_("Action"), no_wrap=True)
    table.add_column(_("Table"))
    table.add_column(_("Key"))
    table.add_column(_("Changes"), overflow="fold", ratio=1, min_width=30)
    for event in events:
        table.add_row(str(event.id), format_time(event.occurred_at), event.user_id or "—",
                      str(event.ip_address) if event.ip_address else "—", event.action,
                      event.entity_type or "—", event.entity_id or "—", summarize_change(event))
    console.print(table)


def event_to_json(event: Event) -> dict[str, Any]:
    """The JSON object of one event, with the keys of the CLI contract."""
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(),
        "user_id": event.user_id,
        "ip_address": str(event.ip_address) if event.ip_address is not None else None,
        "db_user": event.db_user,
        "action": event.action,
        "entity_type": event.entity_type,
        "entity_id": event.entity_id,
        "old": event.old,
        "new": event.new,
        "details": event.details,
    }


def print_json(value: Any) -> None:
    """Print a value as indented JSON, non-ASCII text kept as is."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def print_install(result: InstallResult) -> None:
    """Report what install did, or print the SQL of a dry run."""
    if result.dry_run:
        for statement in result.statements:
            sys.stdout.write(statement.rstrip() + "\n\n")
        return
    for table in result.installed:
        console.print(_("Audit trigger installed on {table}").format(table=table.entity_type), markup=False)
    for table in result.without_primary_key:
        console.print(
            _("Table {table} has no primary key: its events have no entity id and record whole rows.")
            .format(table=table.entity_type), style="yellow", markup=False)
    console.print(
        _("Done: {installed} installed or updated, {unchanged} already up to date.")
        .format(installed=len(result.installed), unchanged=len(result.unchanged)), markup=False)


def print_uninstall(result: UninstallResult, schema: str) -> None:
    """Report what uninstall removed."""
    for label in result.removed:
        console.print(_("Audit trigger removed from {table}").format(table=label), markup=False)
    if result.dropped_schema:
        console.print(_("Schema {schema} and the audit log in it were dropped.").format(schema=schema),
                      markup=False)
    if not result.removed and not result.dropped_schema:
        console.print(_("Nothing to remove."))


def _state_label(state: TableState) -> str:
    labels = {
        TableState.AUDITED: _("audited"),
        TableState.OUTDATED: _("outdated"),
        TableState.DISABLED: _("disabled"),
        TableState.MISSING: _("missing"),
        TableState.NOT_AUDITED: _("not audited"),
    }
    return labels[state]


_STATE_STYLE = {TableState.AUDITED: "green", TableState.OUTDATED: "yellow", TableState.DISABLED: "red",
                TableState.MISSING: "red", TableState.NOT_AUDITED: "dim"}


def status_to_json(report: StatusReport) -> dict[str, Any]:
    """The JSON form of ``auditctl status``."""
    return {
        "schema": report.schema,
        "installed": report.installed,
        "schema_versions": report.schema_versions,
        "total_events": report.total_events,
        "log_bytes": report.log_bytes,
        "partitions": report.partitions,
        "orphaned_functions": report.orphaned_functions,
        "tables": [{"table": t.entity_type, "state": t.state.value, "has_primary_key": t.has_primary_key,
                    "events": t.events} for t in report.tables],
    }


def print_status(report: StatusReport) -> None:
    """Print the status report as a table and a summary."""
    table = Table()
    table.add_column(_("Table"))
    table.add_column(_("State"))
    table.add_column(_("Primary key"))
    table.add_column(_("Events"), justify="right")
    for item in report.tables:
        key = "—" if item.has_primary_key is None else _("yes") if item.has_primary_key else _("no")
        table.add_row(item.entity_type, f"[{_STATE_STYLE[item.state]}]{_state_label(item.state)}[/]", key,
                      f"{item.events:,}")
    console.print(table)
    if not report.installed:
        console.print(_("The audit schema {schema} is not installed; run `auditctl install`.")
                      .format(schema=report.schema), markup=False)
        return
    console.print(
        _("Events: {events}; partitions: {partitions}; size on disk: {size}.")
        .format(events=f"{report.total_events:,}", partitions=report.partitions,
                size=format_bytes(report.log_bytes)), markup=False)
    for name in report.orphaned_functions:
        console.print(_("Orphaned trigger function {schema}.{name}: no trigger uses it.")
                      .format(schema=report.schema, name=name), style="yellow", markup=False)


def format_bytes(size: int) -> str:
    """Show a byte count with a binary unit (kB means KiB here, as in pg_size_pretty)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@contextlib.contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[str, int], None]]:
    """Show a progress bar on a terminal, or log plain lines otherwise.

    Yields ``advance(label, amount)``, to be called as work completes.
    """
    if error_console.is_terminal:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TextColumn("{task.fields[label]}")]
        with Progress(*columns, console=error_console, transient=True) as bar:
            task = bar.add_task(description, total=total, label="")

            def advance(label: str, amount: int = 1) -> None:
                bar.update(task, advance=amount, label=label)

            yield advance
        return

    done = 0

    def log_line(label: str, amount: int = 1) -> None:
        nonlocal done
        done += amount
        logger.info("%s: %s (%d of %s)", description, label, done, total if total is not None else "?")

    yield log_line


# Under cron, log one progress line per this many bytes written.
_PROGRESS_LOG_STEP = 256 * 1024 * 1024


@contextlib.contextmanager
def byte_progress(description: str) -> Iterator[Callable[[int], None]]:
    """Show bytes written on a terminal, or log a line every 256 MiB otherwise.

    Yields ``advance(amount)``.
    """
    if error_console.is_terminal:
        from rich.progress import DownloadColumn, TransferSpeedColumn
        columns = [TextColumn("{task.description}"), DownloadColumn(), TransferSpeedColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=error_console, transient=True) as bar:
            task = bar.add_task(description, total=None)
            yield lambda amount: bar.update(task, advance=amount)
        return
    written = 0
    next_report = _PROGRESS_LOG_STEP

    def log_progress(amount: int) -> None:
        nonlocal written, next_report
        written += amount
        if written >= next_report:
            logger.info("%s: %s written", description, format_size(written))
            next_report += _PROGRESS_LOG_STEP

    yield log_progress


def print_backup_report(report: JobReport) -> None:
    """Report one backup run: the file, rotation and delivery."""
    if report.result is not None:
        result = report.result
        console.print(_("Backup of {database} written to {path} ({size}, {seconds:.1f} s), verified.").format(
            database=result.database, path=result.path, size=format_size(result.size),
            seconds=result.duration_seconds), markup=False, soft_wrap=True)
    if report.rotation is not None and report.rotation.deleted:
        for path in report.rotation.deleted:
            console.print(_("Rotation deleted {path}").format(path=path.name), markup=False, soft_wrap=True)
    if report.upload is not None:
        console.print(_("Uploaded to storage as {key}.").format(key=report.upload.key), markup=False, soft_wrap=True)
    if report.mail_sent:
        console.print(_("Report mail sent."))


def print_backup_list(entries: list[BackupEntry]) -> None:
    """Print the backups auditctl made, oldest first."""
    if not entries:
        console.print(_("No backups made by auditctl in this folder."))
        return
    table = Table()
    table.add_column(_("File"))
    table.add_column(_("Database"))
    table.add_column(_("Started (UTC{offset})").format(offset=local_utc_offset()), no_wrap=True)
    table.add_column(_("Size"), justify="right")
    table.add_column(_("Format"))
    table.add_column(_("Encrypted"))
    for entry in entries:
        manifest = entry.manifest
        table.add_row(entry.path.name, manifest.database, format_time(manifest.started), format_size(manifest.size),
                      manifest.format, _("yes") if manifest.encrypted else _("no"))
    console.print(table)


def print_verify_report(report: VerifyReport) -> None:
    """Say which checks passed and which were not possible."""
    console.print(_("{path}: checks passed: {checks}.").format(path=report.path, checks=", ".join(report.checks)),
                  markup=False, soft_wrap=True)
    if report.manifest.encrypted and len(report.checks) == 1:
        console.print(_("The backup is encrypted; pass --identity or --passphrase-file to decrypt it and check its contents too."),
                      style="yellow", markup=False, soft_wrap=True)


def print_restore_result(result: RestoreResult) -> None:
    console.print(_("Restored {path} into database {database}.").format(path=result.path.name,
                                                                       database=result.database), markup=False, soft_wrap=True)


def print_line(text: str) -> None:
    """Print text as it is, for output that other programs read (such as a crontab line)."""
    sys.stdout.write(text + "\n")


def print_cron_installed(line: str) -> None:
    console.print(_("Installed in the crontab of this user:"), markup=False)
    print_line(line)


def print_doctor(report: DoctorReport) -> None:
    """Print one row per check: passed or failed, and the detail or fix."""
    table = Table()
    table.add_column(_("Check"))
    table.add_column(_("Result"))
    table.add_column(_("Detail"), overflow="fold")
    passed, failed = _("ok"), _("failed")
    for check in report.checks:
        result = f"[green]{passed}[/]" if check.ok else f"[red]{failed}[/]"
        table.add_row(check.name, result, escape(check.detail))
    console.print(table)
