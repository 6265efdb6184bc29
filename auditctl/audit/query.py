"""Reading the audit log: filters, one page of events, and streaming export."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from ..errors import AmbiguousTableError, InvalidArgumentError, TableNotFoundError
from ..i18n import _
from .catalog import Table, list_tables, name_matches, parse_table_name, resolve_table
from .renamed_tables import find_former_names
from .schema import require_installed

# Columns of CSV exports, in order, and the keys of JSON output.
EXPORT_COLUMNS = ("id", "occurred_at", "user_id", "ip_address", "db_user", "action", "entity_type",
                  "entity_id", "old", "new", "details", "application_name", "transaction_id")


@dataclass
class EventFilter:
    """Conditions that `query`, `export` and the web page share."""

    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    tables: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    entity_id: str | None = None
    # Further entity_id texts of the same record, such as a timestamptz key stored in another TimeZone.
    entity_id_forms: list[str] = field(default_factory=list)
    # Case-insensitive text searched in the old values, new values and details.
    text: str | None = None

    def __post_init__(self) -> None:
        self.actions = [action.strip().upper() for action in self.actions if action.strip()]
        if self.since and self.until and self.since > self.until:
            raise InvalidArgumentError(
                _("--since ({since}) is later than --until ({until}); swap them.")
                .format(since=self.since.isoformat(), until=self.until.isoformat()))


@dataclass
class Event:
    """One row of the audit log."""

    id: int
    occurred_at: datetime
    user_id: str | None
    ip_address: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    db_user: str
    action: str
    entity_type: str | None
    entity_id: str | None
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    details: dict[str, Any] | None
    application_name: str | None
    transaction_id: int | None


def load_key_array(text: str, label: str) -> list[str | int | float]:
    """Parse a composite key written as a JSON array, such as ``["pr00000010", 5]``.

    ``label`` names the value in errors. Raises InvalidArgumentError unless
    the text is a non-empty JSON array of strings and numbers.
    """
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(
            _("Invalid {label} {value!r}: not valid JSON at character {position}. "
              "Give a JSON array such as '[\"pr00000010\", 5]'.")
            .format(label=label, value=text, position=exc.pos + 1)) from None
    if not isinstance(parsed, list) or not parsed:
        raise InvalidArgumentError(
            _("Invalid {label} {value!r}: expected a non-empty JSON array of key values.")
            .format(label=label, value=text))
    for item in parsed:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise InvalidArgumentError(
                _("Invalid {label} {value!r}: key values must be strings or numbers.").format(label=label, value=text))
    return parsed


def entity_id_as_stored(text: str, label: str = "--entity-id") -> str:
    """Return the entity_id text that events store for an ``--entity-id`` value.

    A value that starts with ``[`` is a composite key as a JSON array. It is
    rewritten in the text form of jsonb, which the triggers store, so that
    spacing does not matter. Any other value is one key value, as typed.
    ``label`` names the value in errors.
    """
    # NOTE: a single-column key whose text starts with "[" but is not a JSON
    # array cannot be given here; `auditctl query --table` still finds it.
    if not text.lstrip().startswith("["):
        return text
    return json.dumps(load_key_array(text, label), ensure_ascii=False)


def _where(connection: psycopg.Connection, schema: str, filters: EventFilter) -> sql.Composable:
    conditions: list[sql.Composable] = []
    if filters.user_id is not None:
        conditions.append(sql.SQL("user_id = {}").format(filters.user_id))
    if filters.since is not None:
        conditions.append(sql.SQL("occurred_at >= {}").format(filters.since))
    if filters.until is not None:
        conditions.append(sql.SQL("occurred_at < {}").format(filters.until))
    if filters.actions:
        conditions.append(sql.SQL("action = ANY({})").format(filters.actions))
    if filters.tables:
        conditions.append(_tables_condition(connection, schema, filters.tables))
    if filters.entity_id is not None and filters.entity_id_forms:
        conditions.append(sql.SQL("entity_id = ANY({})").format([filters.entity_id, *filters.entity_id_forms]))
    elif filters.entity_id is not None:
        conditions.append(sql.SQL("entity_id = {}").format(filters.entity_id))
    if filters.text:
        # strpos() rather than LIKE, so that % and _ in the text match themselves.
        conditions.append(sql.SQL(
            "pg_catalog.strpos(pg_catalog.lower(pg_catalog.concat_ws(' ', old_values::text, new_values::text,"
            " details::text)), pg_catalog.lower({})) > 0").format(filters.text))
    if not conditions:
        return sql.SQL("")
    return sql.SQL("WHERE ") + sql.SQL(" AND ").join(conditions)


def _tables_condition(connection: psycopg.Connection, schema: str, names: list[str]) -> sql.Composable:
    """Return the condition that picks the events of the ``--table`` values, under their former names too."""
    entity_types = entity_types_for(connection, schema, names)
    tables = list_tables(connection, schema)
    current = {table.entity_type: table for table in tables}
    parts = [sql.SQL("entity_type = ANY({})").format(entity_types)]
    for entity_type in entity_types:
        if entity_type not in current:
            continue
        former_names = find_former_names(connection, schema, current[entity_type], tables)
        parts.extend(former.condition() for former in former_names if former.name not in entity_types)
    if len(parts) == 1:
        return parts[0]
    return sql.SQL("({})").format(sql.SQL(" OR ").join(parts))


def where_clause(connection: psycopg.Connection, schema: str, filters: EventFilter) -> sql.Composable:
    """Return the WHERE clause of ``filters`` with values as literals, or an empty clause.

    The statements that embed it run without query parameters, since a
    literal containing ``%`` would otherwise be read as a placeholder.
    """
    return _where(connection, schema, filters)


def entity_types_for(connection: psycopg.Connection, schema: str, names: list[str], *,
                     as_option: bool = True) -> list[str]:
    """Expand ``--table`` values into the ``schema.table`` names stored in events.

    Names resolve as ``install`` resolves them: against the tables of the
    database first, then, for tables dropped since, against the names in the
    log. A name found in neither is an error, not an empty result; for a
    partition, the error names its partitioned table as a ``--table`` value,
    or with ``as_option`` false as a table name.
    """
    tables = list_tables(connection, schema)
    logged: list[str] | None = None
    expanded: list[str] = []
    for text in names:
        table_schema, table_name = parse_table_name(text)
        try:
            expanded.append(resolve_table(table_schema, table_name, text, tables).entity_type)
            continue
        except AmbiguousTableError:
            raise
        except TableNotFoundError:
            pass
        if logged is None:
            logged = [row[0] for row in connection.execute(
                sql.SQL("SELECT DISTINCT entity_type FROM {}.events WHERE entity_type IS NOT NULL").format(
                    sql.Identifier(schema))).fetchall()]
        matches = [entity for entity in logged if _entity_matches(entity, table_schema, table_name)]
        if not matches:
            raise _partition_error(connection, text, table_schema, table_name, tables, as_option) or TableNotFoundError(
                _("Table {name!r} not found in the database or in the audit log.").format(name=text))
        expanded.extend(matches)
    return expanded


# Partitions by name, each with the oid of the partitioned table at the top of its tree.
_PARTITIONS = """SELECT n.nspname, c.relname, pg_catalog.pg_partition_root(c.oid)::bigint
                   FROM pg_catalog.pg_class AS c
                   JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                  WHERE c.relispartition AND pg_catalog.lower(c.relname) = pg_catalog.lower(%s)"""


def _partition_error(connection: psycopg.Connection, text: str, table_schema: str | None, table_name: str,
                     tables: list[Table], as_option: bool) -> TableNotFoundError | None:
    """Return the error for a name that is a partition of one auditable table, or None for any other name.

    The triggers of a partitioned table record the events of every partition
    under the partitioned table's name, with the partition in details.
    """
    found = [(row_schema, row_name, root) for row_schema, row_name, root
             in connection.execute(_PARTITIONS, (table_name,)).fetchall()
             if name_matches(row_name, table_name) and (table_schema is None or name_matches(row_schema, table_schema))]
    exact = [row for row in found if row[1] == table_name and table_schema in (None, row[0])]
    by_oid = {table.oid: table for table in tables}
    parents = {by_oid[root] for _schema, _name, root in exact or found if root in by_oid}
    if len(parents) != 1:
        return None
    parent = parents.pop()
    if as_option:
        message = _("Table {name!r} is a partition of {parent}: the events of its rows are recorded under {parent}, "
                    "with the partition's name in their details. Use --table {table}.")
    else:
        message = _("Table {name!r} is a partition of {parent}: the events of its rows are recorded under {parent}, "
                    "with the partition's name in their details. Name the table {table} instead.")
    return TableNotFoundError(message.format(name=text, parent=parent.entity_type, table=_table_argument(parent, tables)))


def _table_argument(table: Table, tables: list[Table]) -> str:
    """Name a table as briefly as TABLE arguments read it back: without its schema where the name is unique."""
    def quoted(part: str) -> str:
        return '"{}"'.format(part.replace('"', '""')) if "." in part or '"' in part else part

    try:
        unique = resolve_table(None, table.name, table.name, tables) == table
    except TableNotFoundError:
        unique = False
    return quoted(table.name) if unique else f"{quoted(table.schema)}.{quoted(table.name)}"


def _entity_matches(entity_type: str, table_schema: str | None, table_name: str) -> bool:
    entity_schema, _dot, entity_name = entity_type.partition(".")
    if table_schema is not None and not name_matches(entity_schema, table_schema):
        return False
    return name_matches(entity_name, table_name)


_SELECT = """SELECT id, occurred_at, user_id, ip_address, db_user, action, entity_type, entity_id,
                    old_values AS old, new_values AS new, details, application_name, transaction_id
             FROM {audit}.events {where}"""
# The statement above for other modules: format it with ``audit`` and ``where``.
SELECT_EVENTS = _SELECT


def query_events(connection: psycopg.Connection, schema: str, filters: EventFilter,
                 limit: int | None = 100, after_id: int | None = None) -> list[Event]:
    """Return the newest matching events first, at most ``limit`` of them.

    With ``after_id``, the page starts after that event in this order: a
    keyset page, found through the indexes on ``(..., occurred_at, id)``
    however deep it is, where OFFSET would read and skip every earlier row.
    """
    with connection.cursor(row_factory=class_row(Event)) as cursor:
        cursor.execute(query_statement(connection, schema, filters, limit, after_id))
        return in_column_order(connection, cursor.fetchall())


_COLUMN_ORDER = """SELECT n.nspname || '.' || c.relname, pg_catalog.array_agg(a.attname::text ORDER BY a.attnum)
                     FROM pg_catalog.pg_class AS c
                     JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                     JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                    WHERE c.relkind IN ('r', 'p') AND n.nspname || '.' || c.relname = ANY(%s)
                    GROUP BY 1"""


def in_column_order(connection: psycopg.Connection, events: list[Event]) -> list[Event]:
    """Sort the old and new values of each event into its table's column order, and return the events.

    jsonb returns keys ordered by length, not as the table lists them.
    Columns the table no longer has, and those of a dropped table, follow
    in name order.
    """
    tables = sorted({event.entity_type for event in events if event.entity_type and (event.old or event.new)})
    if not tables:
        return events
    orders = {table: {column: position for position, column in enumerate(columns)}
              for table, columns in connection.execute(_COLUMN_ORDER, (tables,)).fetchall()}
    for event in events:
        position = orders.get(event.entity_type or "", {})
        event.old = _ordered(event.old, position)
        event.new = _ordered(event.new, position)
    return events


def _ordered(values: dict[str, Any] | None, position: dict[str, int]) -> dict[str, Any] | None:
    if not values:
        return values
    return dict(sorted(values.items(), key=lambda item: (position.get(item[0], len(position)), item[0])))


# The largest --limit of ``query``, whose page is read into memory, while export streams any number of events.
# NOTE: chosen, not measured: a page of this many events of a few kB each fits in the memory of a small machine.
MAX_QUERY_LIMIT = 100_000


def query_statement(connection: psycopg.Connection, schema: str, filters: EventFilter,
                    limit: int | None = 100, after_id: int | None = None) -> sql.Composed:
    """Build the SELECT that ``query_events`` runs, with values as literals (for EXPLAIN too)."""
    if limit is not None and limit < 1:
        raise InvalidArgumentError(_("Invalid --limit {value}: use a positive number.").format(value=limit))
    require_installed(connection, schema)
    where = _where(connection, schema, filters)
    if after_id is not None:
        condition = sql.SQL("(occurred_at, id) < ({}, {})").format(
            _event_time(connection, schema, after_id), after_id)
        where = sql.SQL("WHERE ") + condition if where == sql.SQL("") else where + sql.SQL(" AND ") + condition
    return sql.SQL(_SELECT + " ORDER BY occurred_at DESC, id DESC {limit}").format(
        audit=sql.Identifier(schema), where=where,
        limit=sql.SQL("LIMIT {}").format(limit) if limit else sql.SQL(""))


def _event_time(connection: psycopg.Connection, schema: str, event_id: int) -> datetime:
    if not 1 <= event_id <= 2**63 - 1:
        raise InvalidArgumentError(_("Invalid --after {value}: use the id of an event.").format(value=event_id))
    row = connection.execute(sql.SQL("SELECT occurred_at FROM {} WHERE id = %s LIMIT 1").format(
        sql.Identifier(schema, "events")), (event_id,)).fetchone()
    if row is None:
        raise InvalidArgumentError(
            _("Event {id} given to --after is not in the audit log; use an id from the previous page.")
            .format(id=event_id))
    return row[0]


def explain_query(connection: psycopg.Connection, schema: str, filters: EventFilter,
                  limit: int | None = 100, after_id: int | None = None) -> dict[str, Any]:
    """Return the server's plan (EXPLAIN FORMAT JSON, without running it) of ``query_events``."""
    statement = query_statement(connection, schema, filters, limit, after_id)
    return connection.execute(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(statement)).fetchone()[0][0]


# Text forms of each column, computed by the server so that CSV and JSON
# Lines exports carry the same values: timestamps in ISO 8601, JSON as text.
_EXPORT_TEXT = """SELECT id::text, pg_catalog.to_json(occurred_at) #>> '{{}}', user_id, host(ip_address),
                         db_user, action, entity_type, entity_id, old_values::text, new_values::text,
                         details::text, application_name, transaction_id::text
                  FROM {audit}.events AS e {where} {order} {limit}"""

# row_to_json writes compact lines ("id":2), in the order of these columns.
_EXPORT_JSON = """SELECT pg_catalog.row_to_json(e)::text
                  FROM (SELECT id, occurred_at, user_id, host(ip_address) AS ip_address, db_user, action,
                               entity_type, entity_id, old_values AS old, new_values AS new, details,
                               application_name, transaction_id
                        FROM {audit}.events {where}) AS e
                  {order} {limit}"""


# The columns of _EXPORT_TEXT with every text cell that a spreadsheet would
# read as a formula (one starting with =, +, -, @, a tab or a carriage return)
# prefixed with an apostrophe, as OWASP's "CSV Injection" page recommends.
# JSON values start with "{" and ids and times with a digit, so only the
# columns below need it.
_EXPORT_TEXT_FORMULA_SAFE = """SELECT id::text, pg_catalog.to_json(occurred_at) #>> '{{}}', {user_id},
                                      host(ip_address), {db_user}, {action}, {entity_type}, {entity_id},
                                      old_values::text, new_values::text, details::text, {application_name},
                                      transaction_id::text
                               FROM {audit}.events AS e {where} {order} {limit}"""

_FORMULA_SAFE_COLUMNS = ("user_id", "db_user", "action", "entity_type", "entity_id", "application_name")
_FORMULA_SAFE_CELL = r"""CASE WHEN {column} ~ '^[-=+@\t\r]' THEN '''' || {column} ELSE {column} END"""


def _export_statement(connection: psycopg.Connection, schema: str, template: str, filters: EventFilter,
                      limit: int | None, newest_first: bool, **columns: sql.Composable) -> sql.Composed:
    # Values are rendered as literals because COPY takes no query parameters. The order names the table's
    # columns through the alias e: a bare "id" would be the output column id::text of the CSV statements.
    order = "ORDER BY e.occurred_at DESC, e.id DESC" if newest_first else "ORDER BY e.occurred_at, e.id"
    return sql.SQL(template).format(**columns,
        audit=sql.Identifier(schema), where=_where(connection, schema, filters), order=sql.SQL(order),
        limit=sql.SQL("LIMIT {}").format(limit) if limit else sql.SQL(""))


_BLOCK_BYTES = 256 * 1024


def stream_csv(connection: psycopg.Connection, schema: str, filters: EventFilter,
               limit: int | None = None, newest_first: bool = False, formula_safe: bool = False) -> Iterator[bytes]:
    """Yield the matching events, oldest first unless asked otherwise, as UTF-8 CSV with a header line.

    COPY streams the rows, so memory stays flat whatever the number of events.
    Each chunk contains whole records: the first one the header line, each
    later one one or more rows. With ``formula_safe``, text cells that a spreadsheet would run as a
    formula get a leading apostrophe.
    """
    require_installed(connection, schema)
    if formula_safe:
        columns = {name: sql.SQL(_FORMULA_SAFE_CELL).format(column=sql.Identifier(name))
                   for name in _FORMULA_SAFE_COLUMNS}
        query = _export_statement(connection, schema, _EXPORT_TEXT_FORMULA_SAFE, filters, limit, newest_first,
                                  **columns)
    else:
        query = _export_statement(connection, schema, _EXPORT_TEXT, filters, limit, newest_first)
    header = ",".join(EXPORT_COLUMNS) + "\n"
    yield header.encode()
    # COPY delivers one row per message; handing them on in blocks of about
    # 256 KiB saves a generator step and a write call per row.
    block = bytearray()
    with connection.cursor() as cursor:
        with cursor.copy(sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query)) as copy:
            for row in copy:
                block += row
                if len(block) >= _BLOCK_BYTES:
                    yield bytes(block)
                    block.clear()
    if block:
        yield bytes(block)


def stream_jsonl(connection: psycopg.Connection, schema: str, filters: EventFilter,
                 limit: int | None = None, newest_first: bool = False) -> Iterator[bytes]:
    """Yield the matching events, oldest first unless asked otherwise, one JSON object per line.

    The rows come through a server-side cursor, so memory stays flat.
    """
    require_installed(connection, schema)
    query = _export_statement(connection, schema, _EXPORT_JSON, filters, limit, newest_first)
    with connection.transaction():
        with connection.cursor(name="auditctl_export") as cursor:
            cursor.itersize = 5000
            cursor.execute(query)
            for (line,) in cursor:
                yield (line + "\n").encode()


def count_events(connection: psycopg.Connection, schema: str, filters: EventFilter) -> int:
    """Count the matching events, for progress bars."""
    require_installed(connection, schema)
    statement = sql.SQL("SELECT count(*) FROM {audit}.events {where}").format(
        audit=sql.Identifier(schema), where=_where(connection, schema, filters))
    return connection.execute(statement).fetchone()[0]


# Typed columns in the order of EXPORT_COLUMNS for Parquet: ids as numbers,
# the time as ISO 8601 text, and JSON as text.
_EXPORT_ROWS = """SELECT id, pg_catalog.to_json(occurred_at) #>> '{{}}', user_id, host(ip_address), db_user,
                         action, entity_type, entity_id, old_values::text, new_values::text, details::text,
                         application_name, transaction_id
                  FROM {audit}.events AS e {where} {order} {limit}"""


def stream_row_batches(connection: psycopg.Connection, schema: str, filters: EventFilter,
                       batch_rows: int = 20000) -> Iterator[list[tuple]]:
    """Yield the matching events, oldest first, as lists of tuples in the order of EXPORT_COLUMNS.

    The rows come through a server-side cursor, so memory stays within one batch.
    """
    require_installed(connection, schema)
    query = _export_statement(connection, schema, _EXPORT_ROWS, filters, None, False)
    with connection.transaction():
        with connection.cursor(name="auditctl_export_rows") as cursor:
            cursor.itersize = batch_rows
            cursor.execute(query)
            while rows := cursor.fetchmany(batch_rows):
                yield rows
