"""One audited record: its table, its key as events store it, and its events.

A record is named by ``schema.table`` and its primary key values, never by
OIDs, so the same name finds its events after pg_dump and restore and after
the table is dropped and created again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .. import jsonvalues
from ..errors import AmbiguousTableError, EventNotFoundError, InvalidArgumentError, TableNotFoundError
from ..i18n import _, ngettext
from .catalog import Table, list_tables
from .query import SELECT_EVENTS, Event, EventFilter, entity_types_for, in_column_order, load_key_array
from .renamed_tables import FormerName, find_former_names, find_renamed_table
from .schema import require_installed


@dataclass(frozen=True)
class RecordKey:
    """A record as events name it: ``entity_type`` and the stored ``entity_id`` text."""

    entity_type: str
    entity_id: str
    # The table as it exists now, or None when it was dropped since.
    table: Table | None
    # Every text form of this key found in the log, entity_id included: see
    # _session_dependent_ids().
    stored_ids: tuple[str, ...] = ()
    # The table under its current name when ``entity_type`` is a name it had
    # before a rename, and ``table`` is None.
    renamed_to: Table | None = None
    # The names ``table`` had before renames, whose events are part of the record's history.
    former_names: tuple[FormerName, ...] = ()

    @property
    def entity_ids(self) -> list[str]:
        """Return the entity_id texts that name this record in the log."""
        return list(dict.fromkeys([self.entity_id, *self.stored_ids]))


def parse_key_values(values: list[str]) -> list[str]:
    """Turn ID arguments into key values as text.

    One argument that starts with ``[`` is read as a JSON array of the key
    values, such as ``["pr00000010", 5]``. Otherwise each argument is one
    key value.
    """
    if not values:
        raise InvalidArgumentError(_("Missing record id: give the primary key value, or one value per key column."))
    if len(values) > 1 or not values[0].lstrip().startswith("["):
        return list(values)
    return [item if isinstance(item, str) else jsonvalues.dumps(item)
            for item in load_key_array(values[0], _("record id"))]


def find_current_table(connection: psycopg.Connection, schema: str, entity_type: str) -> Table | None:
    """Return the table that an entity type names now, or None when it no longer exists."""
    for table in list_tables(connection, schema):
        if table.entity_type == entity_type:
            return table
    return None


def resolve_record(connection: psycopg.Connection, schema: str, table_name: str, values: list[str]) -> RecordKey:
    """Find the entity type and the stored entity id of one record.

    The id text is computed by the server with the expression the triggers
    use, from the values cast to the key columns' types, so ``5`` and
    ``"5"`` both find an integer key, also for a table renamed since. For
    a table dropped since, single keys match as typed and composite keys
    match element by element.
    """
    require_installed(connection, schema)
    key_values = parse_key_values(values)
    entity_types = entity_types_for(connection, schema, [table_name], as_option=False)
    if len(entity_types) > 1:
        raise AmbiguousTableError(
            _("Table name {name!r} is ambiguous ({choices}); write the one you mean in double quotes, "
              "as SQL does, with its schema if the names differ only there.")
            .format(name=table_name, choices=", ".join(entity_types)))
    entity_type = entity_types[0]
    table = find_current_table(connection, schema, entity_type)
    renamed_to = None if table is not None else find_renamed_table(connection, schema, entity_type)
    if table is None and renamed_to is None:
        return RecordKey(entity_type, _stored_id_of_dropped_table(connection, schema, entity_type, key_values), None)
    table = table or renamed_to
    if not table.has_primary_key:
        raise InvalidArgumentError(
            _("Table {table} has no primary key, so its events name no record; use `auditctl query --table` instead.")
            .format(table=entity_type))
    if len(key_values) != len(table.key_columns):
        raise InvalidArgumentError(_key_count_message(entity_type, table.key_columns))
    entity_id = stored_entity_id(connection, table, key_values)
    stored_ids = _session_dependent_ids(connection, schema, table, entity_type, key_values)
    if renamed_to is not None:
        return RecordKey(entity_type, entity_id, None, stored_ids, renamed_to)
    return RecordKey(entity_type, entity_id, table, stored_ids,
                     former_names=tuple(find_former_names(connection, schema, table)))


def _key_count_message(entity_type: str, key_columns: tuple[str, ...]) -> str:
    # A one-column key takes a single value, so its message offers no JSON array.
    if len(key_columns) == 1:
        return _("Table {table} has a one-column primary key ({column}); give one value.").format(
            table=entity_type, column=key_columns[0])
    return ngettext("Table {table} has a primary key of {count} column ({columns}); give {count} value, "
                    "or one JSON array such as '[\"a\", 5]'.",
                    "Table {table} has a primary key of {count} columns ({columns}); give {count} values, "
                    "or one JSON array such as '[\"a\", 5]'.", len(key_columns)).format(
        table=entity_type, count=len(key_columns), columns=", ".join(key_columns))


def typed_entity_filter(connection: psycopg.Connection, schema: str, filters: EventFilter,
                        entity_id: str, label: str = "--entity-id") -> EventFilter:
    """Return ``filters`` with the ``--entity-id`` text computed as ``auditctl history`` computes it.

    With exactly one ``--table`` that names one current table with a primary
    key, the key values are cast to the key columns' types and rendered as
    the triggers store them, so that a timestamptz key matches in any offset.
    Otherwise ``filters`` is returned unchanged. Raises InvalidArgumentError
    when the number of values differs from the number of key columns, or
    when a value does not fit its column. ``label`` names the value in that
    error.
    """
    if len(filters.tables) != 1:
        return filters
    entity_types = entity_types_for(connection, schema, filters.tables)
    if len(entity_types) != 1:
        return filters
    table = find_current_table(connection, schema, entity_types[0])
    if table is None or not table.has_primary_key:
        return filters
    if len(parse_key_values([entity_id])) != len(table.key_columns):
        raise InvalidArgumentError(
            ngettext("Invalid {label} value {value!r}: table {table} has a primary key of {count} column "
                     "({columns}); give its value.",
                     "Invalid {label} value {value!r}: table {table} has a primary key of {count} columns "
                     "({columns}); give their values as one JSON array such as '[\"a\", 5]'.",
                     len(table.key_columns))
            .format(label=label, value=entity_id, table=table.entity_type, count=len(table.key_columns),
                    columns=", ".join(table.key_columns)))
    record = resolve_record(connection, schema, filters.tables[0], [entity_id])
    return replace(filters, entity_id=record.entity_id, entity_id_forms=record.entity_ids[1:])


def key_record_json(table: Table, key_values: list[Any]) -> Jsonb:
    """Return the key values as a JSON object keyed by column, for jsonb_populate_record()."""
    return Jsonb(dict(zip(table.key_columns, key_values, strict=True)))


def stored_entity_id(connection: psycopg.Connection, table: Table, key_values: list[str]) -> str:
    """Compute the entity_id text that the triggers store for these key values."""
    columns = [sql.SQL("k.{}").format(sql.Identifier(column)) for column in table.key_columns]
    if len(columns) == 1:
        expression = sql.SQL("{}::text").format(columns[0])
    else:
        expression = sql.SQL("pg_catalog.jsonb_build_array({})::text").format(sql.SQL(", ").join(columns))
    statement = sql.SQL("SELECT {} FROM pg_catalog.jsonb_populate_record(NULL::{}, %s) AS k").format(
        expression, sql.Identifier(table.schema, table.name))
    try:
        with connection.transaction():
            return connection.execute(statement, (key_record_json(table, key_values),)).fetchone()[0]
    except psycopg.DataError as exc:
        raise _invalid_key_value_error(connection, table, key_values, exc) from None


_KEY_COLUMN_TYPE = """
SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute WHERE attrelid = %s AND attname = %s
"""


def _invalid_key_value_error(connection: psycopg.Connection, table: Table, key_values: list[str],
                             exc: psycopg.DataError) -> InvalidArgumentError:
    """Find the key column whose value the server rejected, and name it, its type and the value in the error."""
    target = sql.Identifier(table.schema, table.name)
    for column, value in zip(table.key_columns, key_values, strict=True):
        statement = sql.SQL("SELECT (pg_catalog.jsonb_populate_record(NULL::{}, %s)).{}").format(
            target, sql.Identifier(column))
        try:
            with connection.transaction():
                connection.execute(statement, (Jsonb({column: value}),))
        except psycopg.DataError as column_exc:
            type_name = connection.execute(_KEY_COLUMN_TYPE, (table.oid, column)).fetchone()[0]
            return InvalidArgumentError(
                _("Invalid key value {value!r} for column {column} ({type}) of {table}: {error}").format(
                    value=value, column=column, type=type_name, table=table.entity_type,
                    error=str(column_exc).splitlines()[0]))
    return InvalidArgumentError(
        _("Invalid key value for {table}: {error}").format(table=table.entity_type, error=str(exc).splitlines()[0]))


# Key types whose text form depends on session settings (TimeZone, DateStyle,
# IntervalStyle): date/time and timespan categories of pg_type.
_SESSION_DEPENDENT_TYPES = """
SELECT EXISTS (
    SELECT FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
    WHERE a.attrelid = %s AND a.attname = ANY(%s) AND t.typcategory IN ('D', 'T'))
"""


def _session_dependent_ids(connection: psycopg.Connection, schema: str, table: Table, entity_type: str,
                           key_values: list[str]) -> tuple[str, ...]:
    """Find stored ids of this key in events of ``entity_type`` in other text forms, such as in another TimeZone.

    The triggers store a timestamptz key as text in the writer's TimeZone, so
    the id computed in this session may differ from the stored one. Such
    keys are compared as typed values, which scans the table's events.
    """
    if not connection.execute(_SESSION_DEPENDENT_TYPES, (table.oid, list(table.key_columns))).fetchone()[0]:
        return ()
    if len(table.key_columns) == 1:
        stored_key = sql.SQL("pg_catalog.jsonb_build_object(%s::text, e.entity_id)")
    else:
        stored_key = sql.SQL("""(SELECT pg_catalog.jsonb_object_agg(c.name, x.value)
            FROM pg_catalog.jsonb_array_elements(e.entity_id::jsonb) WITH ORDINALITY AS x(value, n)
            JOIN pg_catalog.unnest(%s::text[]) WITH ORDINALITY AS c(name, n) USING (n))""")
    match = sql.SQL(" AND ").join(sql.SQL("s.{column} = g.{column}").format(column=sql.Identifier(column))
                                  for column in table.key_columns)
    statement = sql.SQL("""
        SELECT DISTINCT e.entity_id
        FROM {audit}.events AS e,
             pg_catalog.jsonb_populate_record(NULL::{table}, {stored_key}) AS s,
             pg_catalog.jsonb_populate_record(NULL::{table}, %s) AS g
        WHERE e.entity_type = %s AND e.entity_id IS NOT NULL AND {match}""").format(
        audit=sql.Identifier(schema), table=sql.Identifier(table.schema, table.name), stored_key=stored_key,
        match=match)
    key_name = table.key_columns[0] if len(table.key_columns) == 1 else list(table.key_columns)
    rows = connection.execute(statement, (key_name, key_record_json(table, key_values), entity_type))
    return tuple(row[0] for row in rows.fetchall())


def _stored_id_of_dropped_table(connection: psycopg.Connection, schema: str, entity_type: str,
                                key_values: list[str]) -> str:
    if len(key_values) == 1:
        return key_values[0]
    # Without the table there are no key types, so compare the stored JSON
    # array element by element as text.
    statement = sql.SQL("""
        SELECT DISTINCT entity_id FROM {}.events
        WHERE entity_type = %s AND entity_id LIKE '[%%'
          AND ARRAY(SELECT e FROM pg_catalog.jsonb_array_elements_text(entity_id::jsonb) AS e) = %s::text[]
        """).format(sql.Identifier(schema))
    rows = connection.execute(statement, (entity_type, key_values)).fetchall()
    if rows:
        return rows[0][0]
    return jsonvalues.dumps(key_values, ensure_ascii=False)


def record_events(connection: psycopg.Connection, schema: str, record: RecordKey) -> list[Event]:
    """Return every event of one record in the order they were written.

    Ordered by id, not occurred_at: a statement that waited for the row's
    lock writes after a change that started later, and ids follow the writes.
    Events recorded under the table's former names are included.
    """
    names = [sql.SQL("entity_type = {}").format(record.entity_type)]
    names.extend(former.condition() for former in record.former_names)
    where = sql.SQL("WHERE ({}) AND entity_id = ANY({})").format(sql.SQL(" OR ").join(names), record.entity_ids)
    statement = sql.SQL(SELECT_EVENTS + " ORDER BY id").format(audit=sql.Identifier(schema), where=where)
    with connection.cursor(row_factory=class_row(Event)) as cursor:
        cursor.execute(statement)
        return in_column_order(connection, cursor.fetchall())


def load_event(connection: psycopg.Connection, schema: str, event_id: int) -> Event:
    """Return one event by id; raise EventNotFoundError when there is none."""
    require_installed(connection, schema)
    statement = sql.SQL(SELECT_EVENTS).format(audit=sql.Identifier(schema), where=sql.SQL("WHERE id = %s"))
    with connection.cursor(row_factory=class_row(Event)) as cursor:
        cursor.execute(statement, (event_id,))
        event = cursor.fetchone()
    if event is None:
        raise EventNotFoundError(
            _("Event {id} is not in the audit log. Find event ids with `auditctl query` or `auditctl history`.")
            .format(id=event_id))
    return in_column_order(connection, [event])[0]


def transaction_events(connection: psycopg.Connection, schema: str, transaction_id: int) -> list[Event]:
    """Return the events of one database transaction, oldest first."""
    require_installed(connection, schema)
    statement = sql.SQL(SELECT_EVENTS + " ORDER BY id").format(
        audit=sql.Identifier(schema), where=sql.SQL("WHERE transaction_id = %s"))
    with connection.cursor(row_factory=class_row(Event)) as cursor:
        cursor.execute(statement, (transaction_id,))
        events = cursor.fetchall()
    if not events:
        raise EventNotFoundError(
            _("Transaction {id} has no events in the audit log. Find transaction ids with "
              "`auditctl query --format json`.").format(id=transaction_id))
    return in_column_order(connection, events)
