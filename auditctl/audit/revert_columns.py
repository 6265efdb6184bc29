"""Logged column names of row events, mapped to the names the columns have today.

Row events store values by the column names of their time. When DDL
capture refreshes a table's trigger after its columns changed, the
AUDIT_TRIGGER_REFRESHED event records ``column_renames`` (old name to new
name) and ``dropped_columns``, both found by attnum. Every row event of the
table with a lower id used the old names, so applying the later refresh
events in id order gives today's name of each logged column, or the event
that dropped it. Refresh events written before auditctl recorded these
fields record only that the columns changed, in their ``reasons``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql

from ..errors import RevertRefusedError
from ..i18n import _
from .catalog import Table
from .query import Event
from .renamed_tables import find_former_names
from .revert_checks import REVERTIBLE_ACTIONS

_REFRESH_EVENTS = """
SELECT id, details
  FROM {audit}.events
 WHERE entity_type IS NULL AND action = 'AUDIT_TRIGGER_REFRESHED' AND id > %s AND ({names})
 ORDER BY id
"""


@dataclass(frozen=True)
class ColumnRename:
    """A logged column that has another name today, for the revert's report."""

    table: str
    logged_name: str
    current_name: str


@dataclass(frozen=True)
class _ColumnChange:
    """The column changes that one AUDIT_TRIGGER_REFRESHED event records."""

    event_id: int
    renames: dict[str, str]
    dropped: frozenset[str]
    # The columns changed, but the event predates column_renames and dropped_columns.
    unrecorded: bool


def map_logged_columns(connection: psycopg.Connection, schema: str, events: list[Event],
                       tables: dict[str, Table]) -> tuple[list[Event], list[ColumnRename]]:
    """Rename the logged columns of row events to today's names of the same columns.

    ``tables`` maps each event's entity type to the table as it is now.
    Events that are no row change, or whose table is gone, are returned as
    they are, for check_revertible() to reject. Raises RevertRefusedError
    when a logged column was dropped after the event, or when a refresh
    event after it does not record how the columns changed.
    """
    changes_by_table: dict[int, list[_ColumnChange]] = {}
    first_id = min((event.id for event in events), default=0)
    mapped_events = []
    renames: dict[tuple[str, str], ColumnRename] = {}
    for event in events:
        table = tables.get(event.entity_type)
        if table is None or event.action not in REVERTIBLE_ACTIONS:
            mapped_events.append(event)
            continue
        if table.oid not in changes_by_table:
            changes_by_table[table.oid] = _load_changes(connection, schema, table, first_id)
        names = _current_names(event, table, changes_by_table[table.oid])
        for logged, current in names.items():
            if logged != current:
                renames[(table.entity_type, logged)] = ColumnRename(table.entity_type, logged, current)
        mapped_events.append(replace(event, old=_renamed(event.old, names), new=_renamed(event.new, names)))
    return mapped_events, list(renames.values())


def _load_changes(connection: psycopg.Connection, schema: str, table: Table, after_id: int) -> list[_ColumnChange]:
    """Load the column changes of ``table`` recorded after event ``after_id``, oldest first.

    Refresh events name the table as it was named then, so the events under
    its former names count too, each up to the rename that ended that name.
    """
    table_name = sql.SQL("details ->> 'table'")
    names = [sql.SQL("{} = {}").format(table_name, table.entity_type)]
    names.extend(former.condition(table_name) for former in find_former_names(connection, schema, table))
    rows = connection.execute(
        sql.SQL(_REFRESH_EVENTS).format(audit=sql.Identifier(schema), names=sql.SQL(" OR ").join(names)),
        (after_id,)).fetchall()
    changes = []
    for event_id, details in rows:
        if "column_renames" in details:
            changes.append(_ColumnChange(event_id, details["column_renames"],
                                         frozenset(details.get("dropped_columns", [])), False))
        elif "columns_changed" in details.get("reasons", []):
            changes.append(_ColumnChange(event_id, {}, frozenset(details.get("dropped_columns", [])), True))
    return changes


def _current_names(event: Event, table: Table, changes: list[_ColumnChange]) -> dict[str, str]:
    """Return today's name of each logged column of the event, by its logged name.

    Raises RevertRefusedError for a logged column that a later change
    dropped, even when the table has a column of that name again, and for
    a column whose fate a later change left unrecorded.
    """
    names = {column: column for column in [*(event.old or {}), *(event.new or {})]}
    dropped_by: dict[str, int] = {}
    unrecorded_by: int | None = None
    for change in changes:
        if change.event_id <= event.id:
            continue
        if change.unrecorded and unrecorded_by is None:
            unrecorded_by = change.event_id
        for logged, current in names.items():
            if logged in dropped_by:
                continue
            if current in change.dropped:
                dropped_by[logged] = change.event_id
            elif current in change.renames:
                names[logged] = change.renames[current]

    for logged, change_id in dropped_by.items():
        if names[logged] in table.columns:
            raise RevertRefusedError(
                _("Event {id} cannot be reverted: column {column} of {table} was dropped after the event, as event "
                  "{change_id} records, and the column {column} that the table has now is a different one. "
                  "Restore the row by hand from `auditctl history`.")
                .format(id=event.id, column=logged, table=event.entity_type, change_id=change_id))
        raise RevertRefusedError(
            _("Event {id} cannot be reverted: column {column} of {table} no longer exists, because it was dropped "
              "after the event, as event {change_id} records. Restore the row by hand from `auditctl history`.")
            .format(id=event.id, column=logged, table=event.entity_type, change_id=change_id))
    if unrecorded_by is not None:
        present = [logged for logged, current in names.items() if current in table.columns]
        if present:
            raise RevertRefusedError(
                _("Event {id} cannot be reverted: the columns of {table} changed after the event, and event "
                  "{change_id}, written by an earlier auditctl, does not record which columns were renamed or "
                  "dropped. So auditctl cannot tell whether column {column} is still the same column. "
                  "Restore the row by hand from `auditctl history`.")
                .format(id=event.id, table=event.entity_type, change_id=unrecorded_by, column=present[0]))
    return names


def _renamed(values: dict[str, Any] | None, names: dict[str, str]) -> dict[str, Any] | None:
    if values is None:
        return None
    return {names[column]: value for column, value in values.items()}
