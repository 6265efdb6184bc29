"""The life of one record: its events, oldest first, with each field's change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from .query import Event
from .records import RecordKey, find_current_table, record_events, resolve_record
from .renamed_tables import find_former_names, find_renamed_table
from .schema import require_installed

# Marks a field that had no value on one side: before an INSERT, after a DELETE.
ABSENT: Any = None


@dataclass(frozen=True)
class FieldChange:
    """One column of one event: its value before and after."""

    column: str
    old: Any
    new: Any


@dataclass(frozen=True)
class HistoryEntry:
    """One event of the record, with the fields it changed."""

    event: Event
    changes: list[FieldChange]


@dataclass(frozen=True)
class RecordHistory:
    """Every event of one record, oldest first."""

    record: RecordKey
    entries: list[HistoryEntry]

    @property
    def exists_now(self) -> bool | None:
        """Whether the last row event left the row in place; None without row events."""
        for entry in reversed(self.entries):
            if entry.event.action in ("INSERT", "UPDATE"):
                return True
            if entry.event.action == "DELETE":
                return False
        return None


def field_changes(event: Event) -> list[FieldChange]:
    """List the fields an event changed: every column for INSERT and DELETE, the changed ones for UPDATE."""
    if event.action == "INSERT":
        return [FieldChange(column, ABSENT, value) for column, value in (event.new or {}).items()]
    if event.action == "DELETE":
        return [FieldChange(column, value, ABSENT) for column, value in (event.old or {}).items()]
    if event.action == "UPDATE":
        old = event.old or {}
        return [FieldChange(column, old.get(column), value) for column, value in (event.new or {}).items()]
    return []


def record_history(connection: psycopg.Connection, schema: str, table_name: str,
                   key_values: list[str]) -> RecordHistory:
    """Return the history of the record of ``table_name`` whose primary key is ``key_values``.

    ``key_values`` are the ID arguments of ``auditctl history``: one value
    per key column, or one JSON array. Events of tables dropped since are
    found by name as well. A name the table had before a rename finds the
    events recorded under that name, and ``record.renamed_to`` names the
    table now. The current name finds the events under its former names too.
    """
    record = resolve_record(connection, schema, table_name, key_values)
    entries = [HistoryEntry(event, field_changes(event)) for event in record_events(connection, schema, record)]
    return RecordHistory(record, entries)


# Most events one history page lists; the oldest are kept, so a record's
# creation always shows.
MAX_HISTORY_EVENTS = 1000


def entity_history(connection: psycopg.Connection, schema: str, entity_type: str, entity_id: str,
                   limit: int = MAX_HISTORY_EVENTS) -> RecordHistory:
    """Return the history of a record for the web page, named by its table and key.

    The page links to a record exactly as events store it. When no event has
    that exact name, such as for ``film`` and ``2`` typed by hand, the names
    resolve as ``auditctl history`` resolves them, and an unknown table
    raises TableNotFoundError.
    """
    require_installed(connection, schema)
    table = find_current_table(connection, schema, entity_type)
    renamed_to = None if table is not None else find_renamed_table(connection, schema, entity_type)
    former_names = tuple(find_former_names(connection, schema, table)) if table is not None else ()
    record = RecordKey(entity_type, entity_id, table, renamed_to=renamed_to, former_names=former_names)
    events = record_events(connection, schema, record)
    if not events:
        record = resolve_record(connection, schema, entity_type, [entity_id])
        events = record_events(connection, schema, record)
    return RecordHistory(record, [HistoryEntry(event, field_changes(event)) for event in events[:limit]])
