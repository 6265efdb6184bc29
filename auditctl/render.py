"""Everything auditctl prints: rich tables, JSON, and progress.

This is the only module that writes to the terminal; the library modules
return data and never print.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from . import jsonvalues
from .audit import catalog
from .audit.ddl import AutoAuditPolicy, DdlCapture
from .audit.firing import BypassReason, ReplicaRole, TriggerFiring
from .audit.history import RecordHistory
from .audit.install import InstallResult, UninstallResult
from .audit.outdated import RegenerateResult
from .audit.partitions import MaintainResult, Partition
from .audit.query import EXPORT_COLUMNS, Event
from .audit.redact import RedactResult
from .audit.revert import RevertResult
from .audit.rules import ColumnRule, Rule
from .audit.retention import RotationResult
from .audit.status import StatusReport, TableState, TableStatus
from .audit.triggers import CHANGE_ACTIONS
from .backup.doctor import DoctorReport
from .backup.job import JobReport
from .backup.manifest import BackupEntry
from .backup.restore import RestoreResult
from .backup.verify import VerifyReport
from .crontab import CronResult
from .i18n import _, format_bytes, format_duration, format_list, format_number, ngettext
from .stdout import StdoutConsole, full_stdout

logger = logging.getLogger(__name__)
# The logger of progress lines without a terminal, which the CLI keeps at INFO unless -q is given.
PROGRESS_LOGGER = "auditctl.progress"
progress_logger = logging.getLogger(PROGRESS_LOGGER)

# Pipes and files get a wide table instead of rich's default of 80 columns,
# unless COLUMNS sets the width.
_PIPE_WIDTH = 160
# Below this width, events are shown one block each instead of as a table.
_MIN_TABLE_WIDTH = 120

console = StdoutConsole(highlight=False)
if not console.is_terminal and not os.environ.get("COLUMNS"):
    console = StdoutConsole(highlight=False, width=_PIPE_WIDTH)
error_console = Console(stderr=True, highlight=False)

# Maximum length of a value in a table cell; longer values end in an ellipsis.
_CELL_VALUE_CHARS = 40


def _plain(value: str) -> Text:
    """Return user data as a table cell that rich shows as it is, brackets included.

    Strings in table cells are read as rich markup, so a stored ``[masked]``
    would vanish as an unknown style tag.
    """
    return Text(value)


def print_error(message: str) -> None:
    """Print one error line to stderr."""
    error_console.print(_("Error: {message}").format(message=message), style="bold red", markup=False,
                        soft_wrap=True)


def print_warning(message: str) -> None:
    """Print one warning line to stderr."""
    error_console.print(_("Warning: {message}").format(message=message), style="yellow", markup=False,
                        soft_wrap=True)


def print_aborted() -> None:
    """Print the line typer prints when a prompt is aborted."""
    error_console.print(_("Aborted."), style="red", markup=False)


def format_time(moment: datetime) -> str:
    """Show a timestamp in the local time zone, to the second."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def local_utc_offset() -> str:
    """Return the local UTC offset, such as ``+03:00``, for the header of time columns."""
    offset = datetime.now().astimezone().strftime("%z")
    return f"{offset[:3]}:{offset[3:]}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else jsonvalues.dumps(value, ensure_ascii=False)
    return text if len(text) <= _CELL_VALUE_CHARS else text[: _CELL_VALUE_CHARS - 1] + "…"


def summarize_change(event: Event) -> str:
    """Describe an event's values, one line per column: ``column: old → new`` for an UPDATE."""
    if event.action == "UPDATE" and event.new is not None:
        old = event.old or {}
        return "\n".join(f"{key}: {_short(old.get(key))} → {_short(value)}" for key, value in event.new.items())
    if event.action == "INSERT":
        values = event.new
    elif event.action == "DELETE":
        values = event.old
    else:
        values = event.details
    if not values:
        return ""
    return "\n".join(f"{key}: {_short(value)}" for key, value in values.items())


def print_events(events: list[Event]) -> None:
    """Print events as a table, newest first."""
    if not events:
        console.print(_("No events match these filters."))
        return
    if console.width < _MIN_TABLE_WIDTH:
        _print_event_blocks(events)
        return
    table = Table(show_lines=True)
    table.add_column(_("ID"), justify="right", no_wrap=True)
    table.add_column(_("Time (UTC{offset})").format(offset=local_utc_offset()), no_wrap=True)
    table.add_column(_("User"))
    table.add_column(_("IP address"))
    table.add_column(_("Action"), no_wrap=True)
    table.add_column(_("Table"))
    table.add_column(_("Key"))
    table.add_column(_("Changes"), overflow="fold", ratio=1)
    for event in events:
        table.add_row(str(event.id), format_time(event.occurred_at), _plain(event.user_id or "—"),
                      _plain(_address(event)), _plain(event.action),
                      _plain(event.entity_type or "—"), _plain(event.entity_id or "—"),
                      _plain(summarize_change(event)))
    console.print(table)


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _address(event: Event) -> str:
    """Return the event's IP address; the text the application set when it was no address; else a dash."""
    if event.ip_address is not None:
        return str(event.ip_address)
    raw = (event.details or {}).get("ip_address_raw") if isinstance(event.details, dict) else None
    if isinstance(raw, str):
        # A line break or other control character would split the cell and pass for another value.
        escaped = _CONTROL_CHARACTER.sub(lambda match: f"\\x{ord(match.group()):02x}", raw)
        return _("{value} (not an IP address)").format(value=escaped)
    return "—"


def _print_event_blocks(events: list[Event]) -> None:
    """Print each event as a heading line and its changes, for narrow terminals."""
    for event in events:
        heading = Text()
        heading.append(f"#{event.id} ", style="bold")
        heading.append(f"{format_time(event.occurred_at)}  {event.action}  ", style="bold")
        heading.append(f"{event.entity_type or '—'} {event.entity_id or ''}".rstrip())
        console.print(heading)
        who = _("user {user}, IP {ip}, role {role}").format(
            user=event.user_id or "—", ip=_address(event), role=event.db_user)
        console.print("  " + who, style="dim", markup=False)
        for line in summarize_change(event).splitlines():
            console.print("  " + line, markup=False)
        console.print()


def event_to_json(event: Event) -> dict[str, Any]:
    """Convert one event to a JSON object with the keys of the CLI contract."""
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
        "application_name": event.application_name,
        "transaction_id": event.transaction_id,
    }


def print_events_csv(events: list[Event]) -> None:
    """Print one page of events as CSV with a header line, in the columns of `export`."""
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for event in events:
        record = event_to_json(event)
        writer.writerow([_csv_cell(record[name]) for name in EXPORT_COLUMNS])


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return jsonvalues.dumps(value, ensure_ascii=False)
    return str(value)


def print_next_page_hint(last_id: int) -> None:
    """Tell on stderr how to fetch the next page, so that stdout stays data only."""
    error_console.print(_("More events may follow: add --after {id} for the next page.").format(id=last_id),
                        style="dim", markup=False)


def print_json(value: Any) -> None:
    """Print a value as indented JSON, non-ASCII text kept as is."""
    full_stdout.write(jsonvalues.dumps(value, ensure_ascii=False, indent=2) + "\n")


def history_to_json(history: RecordHistory) -> dict[str, Any]:
    """Convert a record's history to the JSON that ``auditctl history --format json`` prints."""
    return {
        "entity_type": history.record.entity_type,
        "entity_id": history.record.entity_id,
        "table_exists": history.record.table is not None,
        "renamed_to": history.record.renamed_to.entity_type if history.record.renamed_to else None,
        "former_names": _former_names_in(history),
        "events": [
            {**event_to_json(entry.event),
             "changes": [{"column": change.column, "old": change.old, "new": change.new}
                         for change in entry.changes]}
            for entry in history.entries
        ],
    }


def print_history(history: RecordHistory) -> None:
    """Print a record's events as a timeline, oldest first, one line per changed field."""
    record = f"{history.record.entity_type} {history.record.entity_id}"
    if not history.entries:
        console.print(_("No events recorded for {record}.").format(record=record), markup=False)
        if history.record.renamed_to is not None:
            console.print(_("Table {table} is now named {new_name}, and `auditctl history {new_name}` with the same "
                            "key lists the events recorded since.")
                          .format(table=history.record.entity_type, new_name=history.record.renamed_to.entity_type),
                          style="yellow", markup=False)
        return
    console.print(_("History of {record}").format(record=record), style="bold", markup=False)
    # On a narrow terminal the time takes two lines, date over time, cells share one space of padding, and the
    # user and role may wrap. At 80 columns that leaves each value column about 10 characters in English, up from 6.
    narrow = console.width < _MIN_TABLE_WIDTH
    time_heading = _("Time (UTC{offset})").format(offset=local_utc_offset())
    table = Table(collapse_padding=narrow)
    table.add_column(_("ID"), justify="right", no_wrap=True)
    table.add_column(time_heading.replace(" (", "\n(", 1) if narrow else time_heading, no_wrap=True)
    table.add_column(_("User") if narrow else _("User and IP address"), overflow="fold")
    table.add_column(_("DB role"), overflow="fold")
    table.add_column(_("Action"), no_wrap=True)
    table.add_column(_("Field"), overflow="fold")
    table.add_column(_("Old value"), overflow="fold", ratio=1)
    table.add_column(_("New value"), overflow="fold", ratio=1)
    for entry in history.entries:
        event = entry.event
        # One table row per field, so that a value that wraps keeps its field's row and pushes the next one down.
        fields = [(change.column, _history_value(change.old), _history_value(change.new)) for change in entry.changes]
        if not fields:
            fields = [("", "", _short(event.details) if event.details else "")]
        occurred = format_time(event.occurred_at)
        # On a wide terminal the address goes under the user. A narrow one keeps the width for the values.
        user = event.user_id or "—"
        address = "—" if narrow else _address(event)
        heading = [str(event.id), occurred.replace(" ", "\n") if narrow else occurred,
                   _plain(user if address == "—" else f"{user}\n{address}"), _plain(event.db_user),
                   _plain(event.action)]
        for index, (column, old, new) in enumerate(fields):
            table.add_row(*(heading if index == 0 else [""] * len(heading)), _plain(column), _plain(old),
                          _plain(new), end_section=index == len(fields) - 1)
    console.print(table)
    former_names = _former_names_in(history)
    if former_names:
        console.print(ngettext("Events before the table was renamed {table} are recorded under its former name "
                               "{names}.",
                               "Events before the table was renamed {table} are recorded under its former names "
                               "{names}.", len(former_names))
                      .format(table=history.record.entity_type, names=format_list(former_names)), markup=False)
    if history.record.renamed_to is not None:
        console.print(_("Table {table} is now named {new_name}. These are the events recorded under its old name; "
                        "`auditctl history {new_name}` with the same key lists them with those recorded since.")
                      .format(table=history.record.entity_type, new_name=history.record.renamed_to.entity_type),
                      style="yellow", markup=False)
    elif history.record.table is None:
        console.print(_("The table {table} no longer exists; these events are all that remain of it.")
                      .format(table=history.record.entity_type), style="yellow", markup=False)


def _former_names_in(history: RecordHistory) -> list[str]:
    """Return the former names of the record's table under which its history has events, oldest name first."""
    names = {entry.event.entity_type for entry in history.entries} - {history.record.entity_type}
    return [former.name for former in reversed(history.record.former_names) if former.name in names]


def _history_value(value: Any) -> str:
    return _short(value) if value is not None else "—"


def print_revert(result: RevertResult) -> None:
    """Report what a revert changed, or would change on a dry run."""
    labels = {"INSERT": _("re-inserted"), "UPDATE": _("restored"), "DELETE": _("deleted")}
    for old_name, new_name in result.renamed_tables.items():
        console.print(_("Table {table} is now named {new_name}, so the revert acts on {new_name}.")
                      .format(table=old_name, new_name=new_name), markup=False)
    for rename in result.renamed_columns:
        console.print(_("Column {column} of {table} is now named {new_name}, so the revert uses {new_name}.")
                      .format(column=rename.logged_name, table=rename.table, new_name=rename.current_name),
                      markup=False)
    for step in result.steps:
        # A row without a primary key is named by its logged values.
        key = step.entity_id if step.entity_id is not None else _short(step.row)
        restored = [column for column in step.columns if column not in step.overridden]
        console.print(_("Event {id}: {table} {key} {done} ({columns}).").format(
            id=step.event_id, table=step.entity_type, key=key, done=labels[step.statement],
            columns=", ".join(restored)), markup=False)
        if step.overridden:
            console.print(ngettext(
                "Event {id}: a trigger of {table} set {columns} to another value than the event's old one, so it "
                "was not restored.",
                "Event {id}: a trigger of {table} set {columns} to other values than the event's old ones, so they "
                "were not restored.", len(step.overridden)).format(
                    id=step.event_id, table=step.entity_type, columns=", ".join(step.overridden)),
                style="yellow", markup=False)
    if result.dry_run:
        console.print(ngettext("Dry run: {count} event can be reverted; nothing was changed.",
                               "Dry run: {count} events can be reverted; nothing was changed.", len(result.steps))
                      .format(count=len(result.steps)), markup=False)
    else:
        console.print(ngettext("Reverted {count} event; recorded as REVERT event {id}.",
                               "Reverted {count} events; recorded as REVERT event {id}.", len(result.steps))
                      .format(count=len(result.steps), id=result.revert_event_id), markup=False)


def print_redact(result: RedactResult) -> None:
    """Report how many events a redaction rewrote."""
    if result.dry_run:
        console.print(ngettext("Dry run: {count} event would be redacted; nothing was changed.",
                               "Dry run: {count} events would be redacted; nothing was changed.", result.events)
                      .format(count=result.events), markup=False)
    else:
        console.print(ngettext("Redacted {count} event; recorded as REDACT event {id}.",
                               "Redacted {count} events; recorded as REDACT event {id}.", result.events)
                      .format(count=result.events, id=result.redact_event_id), markup=False)


def print_install(result: InstallResult, config_path: Path | None = None) -> None:
    """Report what install did, or print the SQL of a dry run."""
    if result.dry_run:
        for statement in result.statements:
            full_stdout.write(statement.rstrip() + "\n\n")
        _print_dry_run_summary(result)
        return
    if config_path is not None:
        console.print(_("Settings of [audit] read from {path}.").format(path=config_path), markup=False)
    _print_schema_upgrade_done(result.schema_upgrade)
    for table in result.installed:
        console.print(_("Audit trigger installed on {table}").format(table=table.entity_type), markup=False)
    for table in result.reenabled:
        console.print(_("The audit trigger of {table} was disabled and is enabled again.")
                      .format(table=table.entity_type), style="yellow", markup=False)
    _print_forgotten(result.forgotten)
    _print_rule_changes(result.followed_rules, result.removed_rules)
    for rule in result.column_rules:
        console.print(_rule_message(rule), markup=False)
    if result.event_triggers is DdlCapture.OFF:
        console.print(_("This role may not create event triggers, so schema changes and tampering with the audit "
                        "triggers are not recorded; row changes are. A superuser can add DDL capture with "
                        "`auditctl install`."), style="yellow", markup=False)
    elif result.event_triggers is DdlCapture.INSTALLED:
        console.print(_("DDL capture is on: its event triggers, replaced with this version's, record schema changes, "
                        "GRANT and REVOKE.") if result.replaces_event_triggers
                      else _("DDL capture is on: event triggers now record schema changes, GRANT and REVOKE."),
                      markup=False)
    elif result.event_triggers is DdlCapture.KEPT:
        console.print(_("DDL capture is on, with the event triggers installed earlier by a superuser. This role may "
                        "not replace them, so after upgrading auditctl run `auditctl install` once as a superuser."),
                      markup=False)
    if isinstance(result.auto_audit, AutoAuditPolicy):
        console.print(_auto_audit_message(result.auto_audit), markup=False)
    elif result.auto_audit is None:
        console.print(_("New tables are not audited on creation; `auditctl install TABLE` audits each one."),
                      markup=False)
    if result.event_firing_differs:
        mode = "ENABLE ALWAYS" if result.enable_always else "ENABLE"
        console.print(_("The event triggers of DDL capture do not fire as the audit triggers now do ({mode}), and "
                        "this role may not change them. Run `auditctl install` once as a superuser to match them.")
                      .format(mode=mode), style="yellow", markup=False)
    if result.enable_always:
        console.print(_("Audit triggers are ENABLE ALWAYS: sessions with session_replication_role = replica are "
                        "recorded too, and so are changes that a logical replication subscriber applies."),
                      markup=False)
    for table in result.without_primary_key:
        console.print(
            _("Table {table} has no primary key: its events have no entity id and record whole rows.")
            .format(table=table.entity_type), style="yellow", markup=False)
    for table, partition in result.foreign_partitions:
        console.print(_foreign_partition_message(table.entity_type, partition), style="yellow", markup=False)
    if result.still_outdated:
        # The singular form serves languages that use it for some counts above one, such as 21 in Russian.
        console.print(ngettext(
            "{count} audited table still runs an outdated audit trigger: {tables}. "
            "Run `auditctl maintain` to regenerate it, or `auditctl install TABLE ...`.",
            "{count} audited tables still run outdated audit triggers: {tables}. "
            "Run `auditctl maintain` to regenerate them, or `auditctl install TABLE ...`.",
            len(result.still_outdated)).format(count=len(result.still_outdated),
                                               tables=", ".join(result.still_outdated)),
            style="yellow", markup=False)
    console.print(
        _("Done: {installed} installed or updated, {unchanged} already up to date.")
        .format(installed=len(result.installed), unchanged=len(result.unchanged)), markup=False)


def _print_schema_upgrade_done(versions: tuple[int, int] | None) -> None:
    if versions:
        console.print(_("Upgraded the audit schema from version {old} to version {new}.")
                      .format(old=versions[0], new=versions[1]), markup=False)


def _print_dry_run_summary(result: InstallResult) -> None:
    """Print on stderr, in one line, what a dry run found up to date and what it would do about DDL capture."""
    tables = _("Dry run: {installed} to install or update, {unchanged} already up to date.").format(
        installed=len(result.installed), unchanged=len(result.unchanged))
    capture = {
        DdlCapture.INSTALLED: (_("Event triggers (DDL capture) exist and would be replaced.")
                               if result.replaces_event_triggers
                               else _("Event triggers (DDL capture) would be installed.")),
        DdlCapture.KEPT: _("Event triggers (DDL capture) that a superuser installed earlier would be kept as they "
                           "are, because this role may not replace them."),
        DdlCapture.OFF: _("Event triggers (DDL capture) would be left out, because this role may not create them."),
    }[result.event_triggers]
    summary = tables + " " + capture
    if result.schema_upgrade:
        upgrade = _("The audit schema would be upgraded from version {old} to version {new}.").format(
            old=result.schema_upgrade[0], new=result.schema_upgrade[1])
        summary = upgrade + " " + summary
    error_console.print(summary, markup=False, soft_wrap=True)


def _print_rule_changes(followed: list[tuple[catalog.Table, str, str]],
                        removed: list[tuple[catalog.Table, str, Rule]]) -> None:
    """Report the rules that moved to a renamed column's new name, and those removed with their column."""
    for table, old, new in followed:
        console.print(_("Column {old} of {table} was renamed to {new}, and the rule it had under its old name now "
                        "applies to {new}.").format(old=old, table=table.entity_type, new=new), markup=False)
    for table, column, rule in removed:
        console.print(_("Column {column} of {table} no longer exists, so its {rule} rule was removed. If its values "
                        "moved to another column, run `auditctl install {table} --{rule}-column {table}.COLUMN`.")
                      .format(column=column, table=table.entity_type, rule=rule.value), style="yellow", markup=False)


def _rule_message(rule: ColumnRule) -> str:
    column = f"{rule.table}.{rule.column}"
    if rule.by_default:
        return _("Column {column} looks like a secret and is masked; keep its values with --keep-column.").format(
            column=column)
    messages = {
        Rule.EXCLUDE: _("Column {column} is excluded: its values are never stored."),
        Rule.MASK: _("Column {column} is masked: changes are recorded, values are not."),
        Rule.HASH: _("Column {column} is hashed: values are stored as HMAC-SHA256."),
    }
    if rule.origin is None:
        source = _("Rule stored by an earlier install.")
    else:
        source = _("Rule from {origin}.").format(origin=rule.origin)
    return messages[rule.rule].format(column=column) + " " + source


def print_app_grants(role: str, statements: list[str], problems: list[str], dry_run: bool) -> None:
    """Report the grants of ``install --app-role``, or print the SQL a dry run would run."""
    if dry_run:
        _print_dry_run_grants(statements, _("Dry run: role {role} already has the privileges of an application "
                                            "role; no GRANT or REVOKE is needed.").format(role=role))
        return
    if statements:
        console.print(_("Role {role} can write audited tables and call log_event(); it has no direct access to "
                        "the log. Statements run:").format(role=role), markup=False)
    else:
        console.print(_("Role {role} already has the privileges of an application role: it can write audited "
                        "tables and call log_event(), with no direct access to the log. No GRANT or REVOKE was "
                        "run.").format(role=role), markup=False)
    for statement in statements:
        console.print("  " + statement, markup=False)
    for problem in problems:
        console.print(problem, style="yellow", markup=False)


def print_viewer_grants(role: str, statements: list[str], dry_run: bool) -> None:
    """Report the grants of ``install --viewer-role``, or print the SQL a dry run would run."""
    if dry_run:
        _print_dry_run_grants(statements, _("Dry run: role {role} can already read the audit log; no GRANT is "
                                            "needed.").format(role=role))
        return
    if statements:
        console.print(_("Role {role} can now read the audit log. Statements run:").format(role=role), markup=False)
    else:
        console.print(_("Role {role} can already read the audit log; no GRANT was run.").format(role=role),
                      markup=False)
    for statement in statements:
        console.print("  " + statement, markup=False)


def _print_dry_run_grants(statements: list[str], nothing_needed: str) -> None:
    """Print the statements on stdout, or when there are none, the message on stderr."""
    for statement in statements:
        full_stdout.write(statement + "\n")
    if not statements:
        error_console.print(nothing_needed, markup=False, soft_wrap=True)


def print_uninstall(result: UninstallResult, schema: str) -> None:
    """Report what uninstall removed."""
    for label in result.removed:
        if label in result.already_dropped:
            console.print(_("Table {table} no longer exists, so only its entry in the list of audited tables was "
                            "removed.").format(table=label), markup=False)
        else:
            console.print(_("Audit trigger removed from {table}").format(table=label), markup=False)
    if result.dropped_schema:
        console.print(_("Schema {schema} was dropped with the audit log, the column rules and the HMAC key of "
                        "hashed columns. A new install creates a new key, so its hashes will not match those in "
                        "older backups and archives, and the column rules must be given again.")
                      .format(schema=schema), markup=False)
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
    """Convert the status report to the JSON that ``auditctl status --format json`` prints."""
    return {
        "schema": report.schema,
        "installed": report.installed,
        "schema_versions": report.schema_versions,
        "pending_schema_versions": report.pending_schema_versions,
        "total_events": report.total_events,
        "log_bytes": report.log_bytes,
        "partitions": report.partitions,
        "ddl_capture": report.ddl_capture,
        "ddl_capture_outdated": report.ddl_capture_outdated,
        "enable_always": report.enable_always,
        "replica_roles": [{"role": r.name, "reason": r.reason.value, "superuser": r.superuser}
                          for r in report.replica_roles],
        "skipped_under_replica": report.skipped_under_replica,
        "auto_audit": ({"schemas": list(report.auto_audit.schemas), "exclude": list(report.auto_audit.exclude)}
                       if report.auto_audit else None),
        "orphaned_functions": report.orphaned_functions,
        "needs_attention": report.needs_attention,
        "tables": [{"table": t.entity_type, "state": t.state.value, "interim": t.interim,
                    "has_primary_key": t.has_primary_key, "events": t.events,
                    "firing": t.firing.value if t.firing else None,
                    "exposed_columns": [{"column": column, "renamed_from": old} for column, old in t.exposed_columns],
                    "unused_rules": [{"column": column, "rule": rule.value} for column, rule in t.unused_rules],
                    "uncovered_partitions": t.uncovered_partitions,
                    "foreign_partitions": t.foreign_partitions,
                    "disabled_partitions": t.disabled_partitions,
                    "unrecorded_actions": t.unrecorded_actions,
                    "partition_of": t.partition_of,
                    "recorded_as": t.recorded_as}
                   for t in report.tables],
        "partition_list": [_partition_to_json(p) for p in report.partition_list],
        "keep_days": report.keep.total_seconds() / 86400 if report.keep is not None else None,
        "next_rotate": report.rotation_candidates,
    }


def _partition_to_json(partition: Partition) -> dict[str, Any]:
    return {"name": partition.name, "default": partition.is_default,
            "from": partition.lower.isoformat() if partition.lower else None,
            "to": partition.upper.isoformat() if partition.upper else None,
            "rows": partition.rows, "bytes": partition.bytes}


def print_status(report: StatusReport) -> None:
    """Print the status report as a table and a summary."""
    table = Table()
    table.add_column(_("Table"))
    table.add_column(_("State"))
    table.add_column(_("Primary key"))
    table.add_column(_("Events"), justify="right")
    table.add_column(_("Under replica role"))
    for item in report.tables:
        if item.has_primary_key is None:
            key = "—"
        else:
            key = _("yes") if item.has_primary_key else _("no")
        label = _state_label(item.state)
        if item.interim:
            label = _("{state} (interim trigger)").format(state=label)
        table.add_row(_plain(item.entity_type), Text(label, style=_STATE_STYLE[item.state]), key,
                      format_number(item.events), _replica_label(item.firing))
    console.print(table)
    if not report.installed:
        # The command then exits with the error that the schema is not installed.
        return
    console.print(
        _("Events: {events}; partitions: {partitions}; size on disk: {size}.")
        .format(events=format_number(report.total_events), partitions=report.partitions,
                size=format_bytes(report.log_bytes)), markup=False)
    _print_schema_upgrade(report)
    _print_advice(report)
    _print_protections(report)
    _print_replica_bypass(report)
    _print_partitions(report)
    for name in report.orphaned_functions:
        console.print(_("Orphaned trigger function {schema}.{name}: no trigger uses it; "
                        "the next `auditctl install` drops it.")
                      .format(schema=report.schema, name=name), style="yellow", markup=False)


def _print_advice(report: StatusReport) -> None:
    """Tell what to run for each audited table whose trigger is outdated, disabled or missing, or whose rules drifted."""
    for item in report.tables:
        for column, rule in item.unused_rules:
            console.print(_("{table}: the {rule} rule of column {column} applies to nothing, because the table has "
                            "no such column. `auditctl install {table}` removes the rule; if the values moved to "
                            "another column, add --{rule}-column {table}.COLUMN.")
                          .format(table=item.entity_type, rule=rule.value, column=column),
                          style="yellow", markup=False)
        for message in _state_advice(item):
            console.print(message, style=_STATE_STYLE[item.state], markup=False)
        if len(item.uncovered_partitions) == 1:
            # Russian uses the ngettext form of one partition for 21 as well, so one partition has its own message.
            console.print(_("{table}: partition {partition} has no TRUNCATE trigger, so its TRUNCATE is not recorded. "
                            "Run `auditctl install {table}` or `auditctl maintain` to add it.")
                          .format(table=item.entity_type, partition=item.uncovered_partitions[0]),
                          style="red", markup=False)
        elif item.uncovered_partitions:
            console.print(ngettext(
                "{table}: partition {partitions} has no TRUNCATE trigger, so its TRUNCATE is not recorded. "
                "Run `auditctl install {table}` or `auditctl maintain` to add it.",
                "{table}: partitions {partitions} have no TRUNCATE trigger, so their TRUNCATE is not recorded. "
                "Run `auditctl install {table}` or `auditctl maintain` to add them.", len(item.uncovered_partitions))
                .format(table=item.entity_type, partitions=", ".join(item.uncovered_partitions)),
                style="red", markup=False)
        for partition in item.foreign_partitions:
            console.print(_foreign_partition_message(item.entity_type, partition), style="yellow", markup=False)
    _print_unaudited(report)


def _print_unaudited(report: StatusReport) -> None:
    """Name the tables that no audit trigger records, such as those a migration created after install."""
    unaudited = [item.entity_type for item in report.tables if item.state is TableState.NOT_AUDITED]
    if len(unaudited) == 1:
        message = _("{table} is not audited, so its changes are not recorded. "
                    "Run `auditctl install {table}` to audit it.").format(table=unaudited[0])
    elif unaudited:
        # The singular form serves languages that use it for some counts above one, such as 21 in Russian.
        message = ngettext("{count} table is not audited, so its changes are not recorded: {tables}. "
                           "Run `auditctl install TABLE ...` to audit it.",
                           "{count} tables are not audited, so their changes are not recorded: {tables}. "
                           "Run `auditctl install TABLE ...` to audit them.", len(unaudited)
                           ).format(count=len(unaudited), tables=", ".join(unaudited))
    else:
        return
    console.print(message, style=_STATE_STYLE[TableState.NOT_AUDITED], markup=False)


def _foreign_partition_message(table: str, partition: str) -> str:
    return _("Partition {partition} of {table} is a foreign table, which PostgreSQL allows no TRUNCATE trigger: "
             "its TRUNCATE is not recorded.").format(partition=partition, table=table)


def _state_advice(item: TableStatus) -> list[str]:
    """Say what to run for one table whose audit trigger is not up to date, or nothing."""
    table = item.entity_type
    if item.state is TableState.DISABLED and len(item.disabled_partitions) == 1:
        # Russian uses the ngettext form of one partition for 21 as well, so one partition has its own message.
        return [_("{table}: the TRUNCATE trigger of partition {partition} is disabled, so its TRUNCATE is not "
                  "recorded; row changes are. Run `auditctl install {table}` to enable it again.")
                .format(table=table, partition=item.disabled_partitions[0])]
    if item.state is TableState.DISABLED and item.disabled_partitions:
        return [ngettext(
            "{table}: the TRUNCATE trigger of partition {partitions} is disabled, so its TRUNCATE is not recorded; "
            "row changes are. Run `auditctl install {table}` to enable it again.",
            "{table}: the TRUNCATE triggers of partitions {partitions} are disabled, so their TRUNCATE is not "
            "recorded; row changes are. Run `auditctl install {table}` to enable them again.",
            len(item.disabled_partitions)).format(table=table, partitions=", ".join(item.disabled_partitions))]
    recorded = [action for action in CHANGE_ACTIONS if action not in item.unrecorded_actions]
    if item.state is TableState.DISABLED and item.unrecorded_actions and recorded:
        message = ngettext(
            "{table}: auditing of {actions} is disabled, so these changes are not recorded, but {recorded} still is. "
            "Run `auditctl install {table}` to enable its audit triggers again.",
            "{table}: auditing of {actions} is disabled, so these changes are not recorded, but {recorded} still "
            "are. Run `auditctl install {table}` to enable its audit triggers again.", len(recorded))
        return [message.format(table=table, actions=format_list(item.unrecorded_actions),
                               recorded=format_list(recorded))]
    if item.state is TableState.DISABLED:
        return [_("{table}: its audit trigger is disabled, so its changes are not recorded. "
                  "Run `auditctl install {table}` to enable it again.").format(table=table)]
    if item.state is TableState.MISSING and item.partition_of and item.partition_of_audited:
        return [_("{table} is now a partition of {parent}, so its own audit triggers may record its changes a second "
                  "time beside those of {parent}. Run `auditctl maintain` to remove its own triggers.")
                .format(table=table, parent=item.partition_of)]
    if item.state is TableState.MISSING and item.partition_of:
        return [_("{table} is now a partition of {parent}, which is not audited; its own audit triggers still record "
                  "its changes. To audit the whole table, run `auditctl uninstall {table}`, then "
                  "`auditctl install {parent}`.").format(table=table, parent=item.partition_of)]
    if item.state is TableState.MISSING and item.has_primary_key is None:
        return [_("{table} is registered for auditing but no longer exists. "
                  "Run `auditctl uninstall {table}` to remove it from the registry.").format(table=table)]
    if item.state is TableState.MISSING:
        return [_("{table}: its audit trigger is missing, so its changes are not recorded. "
                  "Run `auditctl install {table}` to create it again.").format(table=table)]
    if item.state is not TableState.OUTDATED:
        return []
    if item.interim:
        return [_("{table} runs the interim audit trigger because it was created or altered after install; "
                  "`auditctl install {table}` or the next `auditctl maintain` generates its own.").format(table=table)]
    messages = []
    if item.recorded_as:
        messages.append(_("{table} was renamed from {old}, and its changes are recorded under the name {old} until "
                          "`auditctl install {table}` or the next `auditctl maintain` generates its trigger again.")
                        .format(table=table, old=item.recorded_as))
    elif not item.exposed_columns:
        return [_("{table}: its audit trigger was generated for older columns, rules or auditctl; "
                  "run `auditctl install {table}` or `auditctl maintain`.").format(table=table)]
    for column, old in item.exposed_columns:
        if old is None:
            message = _("{table}: column {column} looks like a secret, but its values are stored in clear until "
                        "`auditctl install {table}` or the next `auditctl maintain` masks it.")
        else:
            message = _("{table}: column {column} was renamed from {old}, and its values are stored in clear until "
                        "`auditctl install {table}` or the next `auditctl maintain` protects it as {old} was.")
        messages.append(message.format(table=table, column=column, old=old))
    return messages


def _print_schema_upgrade(report: StatusReport) -> None:
    """Say that the audit schema is older than this auditctl, which is what an upgrade of auditctl leaves."""
    if not report.pending_schema_versions:
        return
    console.print(_("The audit schema is at version {current}, older than version {latest} of this auditctl. "
                    "Run `auditctl install` to upgrade it (`--dry-run` prints the SQL first); audited writes wait "
                    "while it runs, so upgrade a large log at a quiet hour.")
                  .format(current=max(report.schema_versions, default=0),
                          latest=max(report.pending_schema_versions)),
                  style="yellow", markup=False)


def _print_protections(report: StatusReport) -> None:
    """Print whether DDL capture is on and which new tables are audited on creation."""
    if report.ddl_capture:
        console.print(_("DDL capture: on (schema changes, GRANT and REVOKE, and disabled audit triggers are "
                        "recorded; dropping the audit log or an audit trigger is rejected)."), markup=False)
        if report.ddl_capture_outdated:
            console.print(_("The functions of DDL capture differ from those this version of auditctl installs; "
                            "run `auditctl install` once as a superuser to replace them."),
                          style="yellow", markup=False)
    else:
        console.print(_("DDL capture: off. Event triggers need a superuser: run `auditctl install` once as one "
                        "to record schema changes and tampering with the audit triggers."),
                      style="yellow", markup=False)
    if report.auto_audit:
        console.print(_auto_audit_message(report.auto_audit), markup=False)


def _auto_audit_message(policy: AutoAuditPolicy) -> str:
    """Say which new tables are audited on creation."""
    if policy.exclude:
        return (_("New tables in {schemas} are audited on creation, except names like {exclude}.")
                .format(schemas=", ".join(policy.schemas), exclude=", ".join(policy.exclude)))
    return _("New tables in {schemas} are audited on creation.").format(schemas=", ".join(policy.schemas))


def _replica_label(firing: TriggerFiring | None) -> Text:
    """Say whether a table's changes are recorded in a session with session_replication_role = replica."""
    if firing in (TriggerFiring.ALWAYS, TriggerFiring.REPLICA):
        return Text(_("recorded"))
    if firing is TriggerFiring.ORIGIN:
        return Text(_("skipped"), style="yellow")
    return Text("—")


def _replica_role_label(role: ReplicaRole) -> str:
    labels = {
        BypassReason.SUPERUSER: _("{role} (superuser)"),
        BypassReason.PARAMETER_GRANT: _("{role} (granted SET on session_replication_role)"),
        BypassReason.SUPERUSER_MEMBER: _("{role} (can SET ROLE to superuser {superuser})"),
    }
    return labels[role.reason].format(role=role.name, superuser=role.superuser)


def _print_replica_bypass(report: StatusReport) -> None:
    """Print whether session_replication_role = replica lets a session change audited tables unrecorded."""
    skipped = report.skipped_under_replica
    if not skipped:
        if report.enable_always:
            console.print(_("Audit triggers are ENABLE ALWAYS: they also record changes made under "
                            "session_replication_role = replica."), markup=False)
        return
    if report.enable_always:
        console.print(ngettext("install chose --enable-always, but the audit trigger of {count} table is not "
                               "ENABLE ALWAYS: {tables}. Run `auditctl install` to set it again.",
                               "install chose --enable-always, but the audit triggers of {count} tables are not "
                               "ENABLE ALWAYS: {tables}. Run `auditctl install` to set them again.", len(skipped))
                      .format(count=len(skipped), tables=", ".join(skipped)), style="yellow", markup=False)
        return
    roles = ", ".join(_replica_role_label(role) for role in report.replica_roles) or "—"
    console.print(ngettext("Auditing can be bypassed: a session with session_replication_role = replica skips the "
                           "audit trigger of {count} table. Roles that may set it: {roles}. `auditctl install "
                           "--enable-always` closes this; read its cost for logical replication subscribers in the "
                           "README first.",
                           "Auditing can be bypassed: a session with session_replication_role = replica skips the "
                           "audit triggers of {count} tables. Roles that may set it: {roles}. `auditctl install "
                           "--enable-always` closes this; read its cost for logical replication subscribers in the "
                           "README first.", len(skipped))
                  .format(count=len(skipped), roles=roles), style="yellow", markup=False)


class _RateColumn(ProgressColumn):
    """Items per second, such as ``312,000 rows/s``."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None:
            return Text("")
        return Text(_("{rate} rows/s").format(rate=format_number(speed, 0)))


@contextlib.contextmanager
def progress(description: str, total: int | None, log_label: str,
             show_rate: bool = False) -> Iterator[Callable[[str, int], None]]:
    """Show a progress bar on a terminal, or log plain lines otherwise.

    Without a terminal and with -v, a line is logged at each tenth of
    ``total``, or at every call when the total is unknown. Without -v a line
    comes at most every PROGRESS_LOG_INTERVAL_SECONDS, so shorter work logs
    none.

    ``description`` is the translated bar title and ``log_label`` the English
    text of log lines. Yields ``advance(label, amount)``, to be called as
    work completes. With ``show_rate`` the bar and the log lines also show
    items per second.
    """
    started = time.monotonic()
    if error_console.is_terminal:
        # The label is a table name, so it is shown as plain text rather than read as markup.
        columns = [TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), *([_RateColumn()] if show_rate else []),
                   TextColumn("{task.fields[label]}", markup=False)]
        with Progress(*columns, console=error_console, transient=True) as bar:
            task = bar.add_task(description, total=total, label="")

            def advance(label: str, amount: int = 1) -> None:
                bar.update(task, advance=amount, label=label)

            yield advance
        return

    done = 0
    # With -v, about ten lines for a known total, however many items it has.
    step = max(1, (total or 0) // 10)
    every_step = logging.getLogger("auditctl").isEnabledFor(logging.INFO)
    last_line = started

    def log_line(label: str, amount: int = 1) -> None:
        nonlocal done, last_line
        before = done
        done += amount
        now = time.monotonic()
        if every_step:
            due = total is None or done == total or done // step > before // step
        else:
            due = now - last_line >= PROGRESS_LOG_INTERVAL_SECONDS
        if not due:
            return
        last_line = now
        counted = f"{done} of {total}" if total is not None else f"{done} so far"
        if show_rate:
            elapsed = max(now - started, 1e-6)
            progress_logger.info("%s: %s, %.0f per second", log_label, counted, done / elapsed)
        else:
            progress_logger.info("%s: %s", log_label, counted)

    yield log_line


@contextlib.contextmanager
def no_progress() -> Iterator[Callable[[str, int], None]]:
    """Yield an ``advance`` like ``progress()`` that shows and logs nothing, for a dry run."""
    yield lambda label, amount=1: None


# Under cron, log one progress line per this many bytes written.
_PROGRESS_LOG_STEP = 256 * 1024 * 1024
# Without a terminal and without -v, log a progress line at most this often, so short work logs none.
PROGRESS_LOG_INTERVAL_SECONDS = 10.0


@contextlib.contextmanager
def byte_progress(description: str) -> Iterator[Callable[[int], None]]:
    """Show bytes written on a terminal, or log a line every 256 MiB otherwise.

    Yields ``advance(amount)``.
    """
    if error_console.is_terminal:
        from rich.progress import DownloadColumn, TransferSpeedColumn
        columns = [TextColumn("{task.description}", markup=False), DownloadColumn(), TransferSpeedColumn(),
                   TimeElapsedColumn()]
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
            progress_logger.info("%s: %s written", description, format_bytes(written))
            next_report += _PROGRESS_LOG_STEP

    yield log_progress


def print_backup_report(report: JobReport) -> None:
    """Report one backup run: the file, rotation and delivery."""
    if report.result is not None:
        result = report.result
        console.print(_("Backup of {database} written to {path} ({size}, {duration}), verified.").format(
            database=result.database, path=result.path, size=format_bytes(result.size),
            duration=format_duration(result.duration_seconds)), markup=False, soft_wrap=True)
    if report.rotation is not None:
        for path in report.rotation.deleted:
            console.print(_("Rotation deleted {path}.").format(path=path.name), markup=False, soft_wrap=True)
        for path in report.rotation.removed_sidecars:
            console.print(_("Rotation removed {path}, whose backup is no longer in the folder.").format(
                path=path.name), markup=False, soft_wrap=True)
        _print_unknown_source(report)
    if report.upload is not None:
        console.print(_("Uploaded to storage as {key}.").format(key=report.upload.key), markup=False, soft_wrap=True)
    if report.mail_sent:
        console.print(_("Report mail sent."))
    if report.error is not None:
        # The CLI raises the backup's own error; problems of delivery would otherwise go unseen.
        for problem in report.delivery_errors:
            print_warning(problem)


def _print_unknown_source(report: JobReport) -> None:
    """Name the backups that rotation kept because their manifest records no source identity."""
    count = len(report.rotation.unknown_source)
    if count == 0:
        return
    console.print(ngettext(
        "Rotation kept {count} backup of {database} whose manifest records no source (written by an earlier "
        "auditctl version); delete it by hand when it is no longer needed.",
        "Rotation kept {count} backups of {database} whose manifests record no source (written by an earlier "
        "auditctl version); delete them by hand when they are no longer needed.",
        count).format(count=count, database=report.result.database), markup=False, soft_wrap=True)


def print_backup_list(entries: list[BackupEntry], database: str | None = None) -> None:
    """Print the backups auditctl made, oldest first. ``database`` is the --database filter, named when none match."""
    if not entries and database is not None:
        console.print(_("No backups of database {database} made by auditctl in this folder.").format(
            database=database), markup=False, soft_wrap=True)
        return
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
        table.add_row(_plain(entry.path.name), _plain(manifest.database), format_time(manifest.started),
                      format_bytes(manifest.size), manifest.format, _("yes") if manifest.encrypted else _("no"))
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
    full_stdout.write(text + "\n")


def print_warnings(messages: Iterable[str]) -> None:
    """Print each warning as one line to stderr, so that stdout contains only the output that other programs read."""
    for message in messages:
        error_console.print(_("Warning: {message}").format(message=message), style="yellow", markup=False,
                            soft_wrap=True)


def print_doctor(report: DoctorReport) -> None:
    """Print one row per check: passed or failed, and the detail or fix."""
    table = Table()
    table.add_column(_("Check"))
    table.add_column(_("Result"))
    table.add_column(_("Detail"), overflow="fold")
    passed, failed = _("ok"), _("failed")
    for check in report.checks:
        result = Text(passed, style="green") if check.ok else Text(failed, style="red")
        table.add_row(_plain(check.name), result, _plain(check.detail))
    console.print(table)
def _print_partitions(report: StatusReport) -> None:
    """Print the partitions with their ranges, rows and sizes, and what the next rotate would drop."""
    if not report.partition_list:
        return
    table = Table(title=_("Partitions"))
    table.add_column(_("Partition"))
    table.add_column(_("From (UTC)"), no_wrap=True)
    table.add_column(_("To (UTC)"), no_wrap=True)
    table.add_column(_("Rows"), justify="right")
    table.add_column(_("Size"), justify="right")
    table.add_column(_("Next rotate"))
    candidates = set(report.rotation_candidates)

    for partition in report.partition_list:
        if partition.is_default:
            lower, upper = _("default"), "—"
        else:
            lower = _utc(partition.lower)
            upper = _utc(partition.upper)
        action = _("archive and drop") if partition.name in candidates else ""
        table.add_row(_plain(partition.name), lower, upper, format_number(partition.rows),
                      format_bytes(partition.bytes), action)
    console.print(table)

    if report.keep is None:
        return
    days = int(report.keep.total_seconds() // 86400)
    if candidates:
        console.print(ngettext("The next `auditctl rotate --keep {days}d` would archive and drop {count} partition.",
                               "The next `auditctl rotate --keep {days}d` would archive and drop {count} partitions.",
                               len(candidates))
                      .format(days=days, count=len(candidates)), markup=False)
    else:
        console.print(_("The next `auditctl rotate --keep {days}d` would archive nothing.").format(days=days),
                      markup=False)


def _utc(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M")


def print_rotation(result: RotationResult) -> None:
    """Report each partition that rotate archived, would archive, or kept after a failure."""
    if not result.outcomes:
        console.print(_("No partition ends before {cutoff} UTC; nothing to rotate.")
                      .format(cutoff=_utc(result.cutoff)), markup=False)
        return
    for outcome in result.outcomes:
        if outcome.taken_files and (result.dry_run or outcome.dropped):
            console.print(ngettext("An earlier archive file {files} exists and is kept, so this archive gets a new "
                                   "name.",
                                   "Earlier archive files {files} exist and are kept, so this archive gets a new name.",
                                   len(outcome.taken_files))
                          .format(files=", ".join(outcome.taken_files)), markup=False, soft_wrap=True)
        if result.dry_run:
            console.print(ngettext("Would archive {rows} event of {partition} to {location} and drop the partition.",
                                   "Would archive {rows} events of {partition} to {location} and drop the partition.",
                                   outcome.rows)
                          .format(rows=format_number(outcome.rows), partition=outcome.partition,
                                  location=outcome.location), markup=False)
        elif outcome.dropped:
            console.print(ngettext("Archived {rows} event of {partition} to {location} ({size}) and dropped the "
                                   "partition, releasing {released}.",
                                   "Archived {rows} events of {partition} to {location} ({size}) and dropped the "
                                   "partition, releasing {released}.", outcome.rows)
                          .format(rows=format_number(outcome.rows), partition=outcome.partition,
                                  location=outcome.location, size=format_bytes(outcome.archive_bytes),
                                  released=format_bytes(outcome.released_bytes)), markup=False)
        else:
            print_error(_("Partition {partition} was kept: {error}").format(partition=outcome.partition,
                                                                            error=outcome.error))


def print_maintenance(result: MaintainResult, quiet: bool = False) -> None:
    """Report the partitions maintain created and the rows it moved; with ``quiet``, only failures."""
    if not quiet:
        _print_maintenance_changes(result)
    if not quiet and result.covered_periods:
        # Without this, a first run with a new --interval would only print that partitions are up to date.
        console.print(ngettext("{count} requested period, up to {until} (UTC), overlaps existing partitions of "
                               "another length, so no partition of the requested length was created for it.",
                               "{count} requested periods, up to {until} (UTC), overlap existing partitions of "
                               "another length, so no partition of the requested length was created for them.",
                               result.covered_periods)
                      .format(count=format_number(result.covered_periods),
                              until=f"{result.covered_until:%Y-%m-%d %H:%M}"), markup=False)
    elif not quiet and not result.created and not result.moved_rows and not result.rebuilt:
        console.print(_("Partitions are up to date."))
    for name, error in result.rebuild_failed:
        console.print(_("Could not rebuild the indexes of partition {name}; the next `auditctl maintain` tries "
                        "again: {error}").format(name=name, error=error), style="yellow", markup=False)


def _print_maintenance_changes(result: MaintainResult) -> None:
    for name in result.created:
        console.print(_("Created partition {name}.").format(name=name), markup=False)
    if result.moved_rows:
        console.print(ngettext("Moved {rows} event out of the default partition.",
                               "Moved {rows} events out of the default partition.", result.moved_rows)
                      .format(rows=format_number(result.moved_rows)), markup=False)
    for name in result.rebuilt:
        console.print(_("Rebuilt the indexes of partition {name}, whose period has ended, so that they take less "
                        "space.").format(name=name), markup=False)


def _print_forgotten(names: list[str]) -> None:
    for name in names:
        console.print(_("Table {table} no longer exists; its trigger function and registry entry were removed.")
                      .format(table=name), markup=False)


def print_regenerated(result: RegenerateResult, quiet: bool = False) -> None:
    """Report the tables whose outdated audit triggers maintain generated again; with ``quiet``, only problems.

    A schema upgrade is reported even with ``quiet``: it happens once after auditctl itself was upgraded,
    and audited writes waited for it, so the mail of a cron run reports it.
    """
    _print_schema_upgrade_done(result.schema_upgrade)
    if not quiet:
        for table in result.specialised:
            console.print(_("Installed the generated audit trigger of {table} in place of the interim one.")
                          .format(table=table), markup=False)
        for table in result.regenerated:
            console.print(_("Regenerated the outdated audit trigger of {table}.").format(table=table), markup=False)
        for table in result.covered:
            console.print(_("Added the TRUNCATE trigger to the new partitions of {table}.").format(table=table),
                          markup=False)
        _print_forgotten(result.forgotten)
        for table, parent in result.handed_over:
            console.print(_("Removed the own audit triggers of {table}, now a partition of {parent}: the triggers of "
                            "{parent} record its changes.").format(table=table, parent=parent), markup=False)
        for rule in result.masked_by_default:
            console.print(_rule_message(rule), markup=False)
    _print_rule_changes(result.followed_rules, result.removed_rules)
    for table, error in result.failed:
        print_error(_("{table} keeps its outdated audit trigger, which still records its changes: {error}")
                    .format(table=table, error=error))
    for table, error in result.handover_failed:
        print_error(_("{table} keeps its own audit triggers, so its changes are still recorded twice: {error}")
                    .format(table=table, error=error))


def print_pg_partman(partman_schema: str) -> None:
    """Confirm that pg_partman's maintenance ran."""
    console.print(_("Ran {schema}.run_maintenance() for the events table.").format(schema=partman_schema),
                  markup=False)


def print_cron(result: CronResult) -> None:
    """Show the crontab line that was written and where."""
    if result.replaced:
        console.print(_("Replaced the line marked {marker} in {target}:").format(marker=result.marker,
                                                                                 target=result.target), markup=False)
    else:
        console.print(_("Added to {target}:").format(target=result.target), markup=False)
    console.print(result.line, markup=False, soft_wrap=True)
