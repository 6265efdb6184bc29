"""Undo row changes from the audit log: one event, or a whole transaction.

Values go back through ``jsonb_populate_record()`` against the table's own
row type, so the server parses each value with the column's type (enums,
domains, arrays, bytea, numeric, timestamps) exactly as it does for input.
Every statement is composed with ``psycopg.sql``. A revert runs in one
transaction: a conflict in any event leaves every table as it was.

A row of a table with a primary key is found by the key in ``entity_id``.
A table without one has no such id, so its triggers store whole rows (for
an UPDATE, the whole old row and the changed columns), and a row is found
by comparing every stored column.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql
from psycopg.types.json import Jsonb

from .. import jsonvalues
from ..errors import RevertConflictError, RevertRefusedError
from ..i18n import _, ngettext
from .catalog import Table, list_tables
from .events import log_event
from .partition_moves import reject_half_of_move
from .query import Event
from .records import key_record_json, load_event, transaction_events
from .renamed_tables import find_renamed_table
from .revert_columns import ColumnRename, map_logged_columns
from .revert_checks import REVERTIBLE_ACTIONS, check_revertible, protected_reason, row_after_event
from .rules import load_rules
from .schema import require_log_reader

logger = logging.getLogger(__name__)

_COLUMNS_QUERY = """
SELECT a.attname, a.attgenerated <> '', a.attidentity = 'a'
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
"""


@dataclass(frozen=True)
class RevertStep:
    """One reverted event: the statement that undid it and the columns it wrote or checked."""

    event_id: int
    action: str
    entity_type: str
    # None for a table without a primary key: then ``row`` names the row.
    entity_id: str | None
    # INSERT re-creates a deleted row, UPDATE restores old values, DELETE removes an inserted row.
    statement: str
    columns: list[str]
    # Logged values that identified a row without a primary key, as the event left it.
    row: dict[str, Any] | None = None
    # Written columns that a trigger of the table set to another value than the event's, such as a last_update.
    overridden: list[str] = field(default_factory=list)


@dataclass
class RevertResult:
    """Outcome of a revert: its steps, in the order they ran, and the REVERT event."""

    steps: list[RevertStep] = field(default_factory=list)
    revert_event_id: int | None = None
    dry_run: bool = False
    # Current name of each table renamed since its events, by the name in the events. The revert changes the table.
    renamed_tables: dict[str, str] = field(default_factory=dict)
    # Logged columns renamed since their events. The revert writes and compares them under today's names.
    renamed_columns: list[ColumnRename] = field(default_factory=list)


@dataclass(frozen=True)
class _Column:
    generated: bool
    identity_always: bool


def revert_event(connection: psycopg.Connection, schema: str, event_id: int, *, user_id: str | None,
                 dry_run: bool = False) -> RevertResult:
    """Restore the row as it was before one event, after checking it has not changed since.

    Half of a row moved to another partition is rejected, because only its
    whole transaction can undo the move: see partition_moves.
    """
    require_log_reader(connection, schema, "revert")
    event = load_event(connection, schema, event_id)
    details = {"reverted_event_ids": [event.id]}
    return _revert(connection, schema, [event], user_id=user_id, dry_run=dry_run, details=details,
                   entity=(event.entity_type, event.entity_id), reject_partial_moves=True)


def revert_transaction(connection: psycopg.Connection, schema: str, transaction_id: int, *, user_id: str | None,
                       dry_run: bool = False) -> RevertResult:
    """Undo every row change of one database transaction, newest first.

    Application events of the transaction (LOGIN, EXPORT and the like) are
    left alone, since there is nothing to undo in a table. A transaction
    with a DDL event, such as a migration, raises RevertRefusedError.
    """
    require_log_reader(connection, schema, "revert")
    recorded = transaction_events(connection, schema, transaction_id)
    schema_changes = [event for event in recorded if event.action == "DDL"]
    if schema_changes:
        # A migration's rows fit the schema it left behind, and its ledger row records that the migration ran.
        # Undoing those rows while the schema change stays would leave the two out of step.
        listed = ", ".join(f"{event.id} ({(event.details or {}).get('command_tag')})" for event in schema_changes)
        raise RevertRefusedError(
            ngettext("Transaction {id} also changed the schema in event {events}, which revert cannot undo. "
                     "Reverting only its row changes would leave the rows and the schema out of step, so revert "
                     "single rows with `auditctl revert EVENT_ID` where that is what you want.",
                     "Transaction {id} also changed the schema in events {events}, which revert cannot undo. "
                     "Reverting only its row changes would leave the rows and the schema out of step, so revert "
                     "single rows with `auditctl revert EVENT_ID` where that is what you want.", len(schema_changes))
            .format(id=transaction_id, events=listed))
    events = [event for event in recorded if event.action in REVERTIBLE_ACTIONS or event.action == "TRUNCATE"]
    if not events:
        raise RevertRefusedError(
            _("Transaction {id} changed no rows, so there is nothing to revert.").format(id=transaction_id))
    details = {"reverted_event_ids": [event.id for event in events], "transaction_id": transaction_id}
    return _revert(connection, schema, list(reversed(events)), user_id=user_id, dry_run=dry_run, details=details,
                   entity=(None, None))


def _revert(connection: psycopg.Connection, schema: str, events: list[Event], *, user_id: str | None,
            dry_run: bool, details: dict[str, Any], entity: tuple[str | None, str | None],
            reject_partial_moves: bool = False) -> RevertResult:
    tables = {table.entity_type: table for table in list_tables(connection, schema)}
    renamed_tables = {}
    for entity_type in sorted({event.entity_type for event in events} - set(tables)):
        renamed = find_renamed_table(connection, schema, entity_type)
        if renamed is not None:
            # The row lives on in the renamed table, so the events of its old name are reverted there.
            tables[entity_type] = renamed
            renamed_tables[entity_type] = renamed.entity_type
    # From here on, the events name their columns as the table does today.
    events, renamed_columns = map_logged_columns(connection, schema, events, tables)
    rules = load_rules(connection, schema)
    # Every event is checked before any statement runs, oldest first, because
    # a cascade delete logs the parent first, and a parent that cannot be
    # restored makes its children fail their foreign keys.
    for event in sorted(events, key=lambda event: event.id):
        check_revertible(event, tables, rules)
        if reject_partial_moves:
            # A whole transaction contains both halves of every move.
            reject_half_of_move(connection, schema, event, tables[event.entity_type])

    result = RevertResult(dry_run=dry_run, renamed_tables=renamed_tables, renamed_columns=renamed_columns)
    conflicts: list[str] = []
    try:
        with connection.transaction():
            # The row changes of the revert are recorded by the triggers under this user.
            connection.execute("SELECT pg_catalog.set_config('auditctl.user_id', %s, true)", (user_id or "",))
            for step, conflict in _apply_in_order(connection, tables, events):
                if conflict:
                    conflicts.append(conflict)
                else:
                    result.steps.append(step)
            if conflicts:
                raise RevertConflictError(
                    _("Nothing was reverted, because the rows changed since: {conflicts}. "
                      "Check them with `auditctl history`.").format(conflicts="; ".join(conflicts)))
            revert_event_id = log_event(connection, schema, "REVERT", user_id=user_id,
                                        entity_type=entity[0], entity_id=entity[1], details=details)
            if dry_run:
                raise psycopg.Rollback()
            result.revert_event_id = revert_event_id
    except psycopg.IntegrityError as exc:
        # Constraints checked at commit, such as deferred ones, fail here, when no single event is to blame.
        raise RevertConflictError(
            _("Nothing was reverted, because the database rejected a restored row: {error}")
            .format(error=str(exc).splitlines()[0])) from None
    for step in result.steps:
        key = step.entity_id if step.entity_id is not None else "(row without a primary key)"
        logger.info("reverted event %s on %s %s (%s)%s", step.event_id, step.entity_type, key,
                    step.statement, " (dry run, rolled back)" if dry_run else "")
    return result


def _apply_in_order(connection: psycopg.Connection, tables: dict[str, Table],
                    events: list[Event]) -> list[tuple[RevertStep | None, str | None]]:
    """Revert events newest first, postponing those that a foreign key rejects for now.

    A cascade delete records the parent's DELETE before its children's, so
    reversed log order would re-insert a child before its parent. Each event
    runs in a savepoint. An event that violates a foreign key is retried
    after the others, and so are the older events of the same row, so each
    row's own changes still run in reverse order. When a pass makes no
    progress and another row had a conflict, the events still waiting are
    dropped, because a parent that could not be restored is the likely
    reason. Otherwise the last foreign key error is raised. Any other
    constraint error is raised at once. Both become a RevertConflictError
    that names the event.
    """
    outcomes: list[tuple[RevertStep | None, str | None]] = []
    # A row is identified by its entity_id. All events of a table without
    # a primary key share the id None, so they count as one row. They keep
    # their order, wait for a parent together and report one conflict.
    # Rows with a conflict: their older events would only report it again.
    conflicted_rows: set[tuple[str, str]] = set()
    pending = events
    while pending:
        postponed: list[Event] = []
        blocked_rows: set[tuple[str, str]] = set()
        last_error: RevertConflictError | None = None
        for event in pending:
            row = (event.entity_type, event.entity_id)
            if row in conflicted_rows:
                continue
            if row in blocked_rows:
                postponed.append(event)
                continue
            try:
                with connection.transaction():
                    outcome = _revert_one(connection, tables[event.entity_type], event)
            except psycopg.errors.ForeignKeyViolation as exc:
                last_error = _rejected_row_error(event, exc)
                postponed.append(event)
                blocked_rows.add(row)
                continue
            except psycopg.IntegrityError as exc:
                raise _rejected_row_error(event, exc) from None
            if outcome[1] is not None:
                conflicted_rows.add(row)
            outcomes.append(outcome)
        if len(postponed) == len(pending):
            if conflicted_rows:
                return outcomes
            raise last_error
        pending = postponed
    return outcomes


def _rejected_row_error(event: Event, exc: psycopg.IntegrityError) -> RevertConflictError:
    """Build the error for a constraint that rejected one reverted event, naming the event for the user to look up."""
    return RevertConflictError(
        _("Nothing was reverted, because the database rejected the row that event {id} restores in {table}: {error}")
        .format(id=event.id, table=event.entity_type, error=str(exc).splitlines()[0]))


def _key_values(table: Table, event: Event) -> list[Any]:
    if len(table.key_columns) == 1:
        return [event.entity_id]
    values = json.loads(event.entity_id)
    if not isinstance(values, list) or len(values) != len(table.key_columns):
        raise RevertRefusedError(
            _("Event {id} names row {key} of {table}, which does not match its current primary key ({columns}).")
            .format(id=event.id, key=event.entity_id, table=event.entity_type, columns=", ".join(table.key_columns)))
    return values


def _columns(connection: psycopg.Connection, table: Table) -> dict[str, _Column]:
    rows = connection.execute(_COLUMNS_QUERY, (table.oid,)).fetchall()
    return {name: _Column(generated, identity) for name, generated, identity in rows}


def _revert_one(connection: psycopg.Connection, table: Table, event: Event) -> tuple[RevertStep | None, str | None]:
    """Revert one event inside the caller's transaction; return its step, or a conflict message."""
    target = sql.Identifier(table.schema, table.name)
    columns = _columns(connection, table)
    if event.entity_id is None:
        return _revert_keyless(connection, target, event, columns)

    key = key_record_json(table, _key_values(table, event))
    key_match = sql.SQL(" AND ").join(
        sql.SQL("t.{column} = k.{column}").format(column=sql.Identifier(column)) for column in table.key_columns)
    if event.action == "DELETE":
        conflict = _check_absent(connection, target, key, key_match, event)
        if conflict:
            return None, conflict
        return _reinsert(connection, target, event, columns), None

    # INSERT and UPDATE: the row must still hold the values the event wrote.
    compared = {column: value for column, value in event.new.items() if protected_reason(value) is None}
    conflict = _check_unchanged(connection, target, key, key_match, event, compared)
    if conflict:
        return None, conflict
    if event.action == "INSERT":
        connection.execute(sql.SQL(
            "DELETE FROM {target} AS t USING pg_catalog.jsonb_populate_record(NULL::{target}, %s) AS k "
            "WHERE {key_match}").format(target=target, key_match=key_match), (key,))
        return _step(event, "DELETE", list(compared)), None

    written = [column for column in event.old if not columns[column].generated]
    key_source = sql.SQL(", pg_catalog.jsonb_populate_record(NULL::{target}, %s) AS k").format(target=target)
    return _restore_old_values(connection, target, event, columns, written, key_source, key_match, (key,))


def _revert_keyless(connection: psycopg.Connection, target: sql.Composable, event: Event,
                    columns: dict[str, _Column]) -> tuple[RevertStep | None, str | None]:
    """Revert an event of a table without a primary key on one row that matches every logged value."""
    if event.action == "DELETE":
        # Without a key, duplicate rows are allowed, so no existing row
        # blocks the re-insert. A unique index still can, as a conflict.
        return _reinsert(connection, target, event, columns), None

    location = _lock_matching_row(connection, target, row_after_event(event))
    if location is None:
        return None, _("event {id}: no row of {table} matches the values after the event, so the row was "
                       "changed or deleted since").format(id=event.id, table=event.entity_type)
    at_location = sql.SQL("t.tableoid = %s::pg_catalog.oid AND t.ctid = %s::pg_catalog.tid")
    if event.action == "INSERT":
        connection.execute(sql.SQL("DELETE FROM {target} AS t WHERE {at_location}").format(
            target=target, at_location=at_location), location)
        return _step(event, "DELETE", list(event.new)), None

    written = [column for column in event.new if not columns[column].generated]
    return _restore_old_values(connection, target, event, columns, written, sql.SQL(""), at_location, location)


def _lock_matching_row(connection: psycopg.Connection, target: sql.Composable,
                       values: dict[str, Any]) -> tuple[int, str] | None:
    """Lock one row that matches every logged value; return its tableoid and ctid, or None.

    Rows equal in every logged column are indistinguishable in the log, so
    when there are duplicates, changing any one of them is the correct
    revert. The ctid alone is unique only within one table, hence the
    tableoid for partitioned tables. Values compare as jsonb, as in
    _check_unchanged, which also covers types without an equality operator,
    such as json, point and xml.
    """
    conditions = [
        sql.SQL("pg_catalog.to_jsonb(t.{column}) IS NOT DISTINCT FROM pg_catalog.to_jsonb(e.{column})").format(
            column=sql.Identifier(column))
        for column in values]
    match = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
    row = connection.execute(sql.SQL(
        "SELECT t.tableoid, t.ctid FROM {target} AS t, pg_catalog.jsonb_populate_record(NULL::{target}, %s) AS e "
        "WHERE {match} LIMIT 1 FOR UPDATE OF t").format(target=target, match=match), (Jsonb(values),)).fetchone()
    return (row[0], row[1]) if row else None


def _reinsert(connection: psycopg.Connection, target: sql.Composable, event: Event,
              columns: dict[str, _Column]) -> RevertStep:
    written = [column for column in event.old if not columns[column].generated]
    names = sql.SQL(", ").join(sql.Identifier(column) for column in written)
    values = sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(column)) for column in written)
    stored = connection.execute(sql.SQL(
        "INSERT INTO {target} AS t ({names}) OVERRIDING SYSTEM VALUE "
        "SELECT {values} FROM pg_catalog.jsonb_populate_record(NULL::{target}, %s) AS r "
        "RETURNING pg_catalog.to_jsonb(t)").format(
            target=target, names=names, values=values), (Jsonb(event.old),)).fetchone()[0]
    return _step(event, "INSERT", written, _overridden(connection, target, event, written, [stored]))


def _restore_old_values(connection: psycopg.Connection, target: sql.Composable, event: Event,
                        columns: dict[str, _Column], written: list[str], sources: sql.Composable,
                        condition: sql.Composable, params: tuple) -> tuple[RevertStep | None, str | None]:
    """Set the written columns of the row that ``condition`` selects back to the event's old values.

    ``sources`` adds FROM items that ``condition`` refers to, and ``params``
    are their query parameters, after the old values.
    """
    identity = [column for column in written if columns[column].identity_always]
    if identity:
        return None, _("event {id}: column {column} of {table} is GENERATED ALWAYS AS IDENTITY and cannot be "
                       "set back by UPDATE").format(id=event.id, column=identity[0], table=event.entity_type)
    assignments = sql.SQL(", ").join(sql.SQL("{column} = o.{column}").format(column=sql.Identifier(column))
                                     for column in written)
    stored = connection.execute(sql.SQL(
        "UPDATE {target} AS t SET {assignments} "
        "FROM pg_catalog.jsonb_populate_record(NULL::{target}, %s) AS o{sources} WHERE {condition} "
        "RETURNING pg_catalog.to_jsonb(t)").format(
            target=target, assignments=assignments, sources=sources, condition=condition),
        (Jsonb(event.old), *params)).fetchall()
    overridden = _overridden(connection, target, event, written, [row for (row,) in stored])
    return _step(event, "UPDATE", written, overridden), None


def _overridden(connection: psycopg.Connection, target: sql.Composable, event: Event, written: list[str],
                stored: list[dict[str, Any]]) -> list[str]:
    """List the written columns whose stored value differs from the event's old value.

    A BEFORE trigger of the table, such as one that sets last_update, may
    change what the revert wrote. The old values go through the row type, as
    the stored row did, so that only real differences count.
    """
    expected = connection.execute(sql.SQL(
        "SELECT pg_catalog.to_jsonb(pg_catalog.jsonb_populate_record(NULL::{target}, %s))").format(target=target),
        (Jsonb(event.old),)).fetchone()[0]
    return [column for column in written if any(row.get(column) != expected.get(column) for row in stored)]


def _step(event: Event, statement: str, columns: list[str], overridden: list[str] | None = None) -> RevertStep:
    row = None
    if event.entity_id is None:
        row = event.old if event.action == "DELETE" else row_after_event(event)
    return RevertStep(event.id, event.action, event.entity_type, event.entity_id, statement, columns, row,
                      overridden or [])


def _check_absent(connection: psycopg.Connection, target: sql.Composable, key: Jsonb, key_match: sql.Composable,
                  event: Event) -> str | None:
    exists = connection.execute(sql.SQL(
        "SELECT EXISTS (SELECT FROM {target} AS t, pg_catalog.jsonb_populate_record(NULL::{target}, %s) AS k "
        "WHERE {key_match})").format(target=target, key_match=key_match), (key,)).fetchone()[0]
    if exists:
        return _("event {id}: row {key} of {table} exists again").format(
            id=event.id, key=event.entity_id, table=event.entity_type)
    return None


def _check_unchanged(connection: psycopg.Connection, target: sql.Composable, key: Jsonb, key_match: sql.Composable,
                     event: Event, compared: dict[str, Any]) -> str | None:
    # Both sides go through the row type and to_jsonb() in this session, so
    # timestamps and numbers compare equal whatever TimeZone or formatting the
    # writer's session had.
    row = connection.execute(sql.SQL(
        "SELECT pg_catalog.to_jsonb(t), pg_catalog.to_jsonb(e) "
        "FROM {target} AS t, pg_catalog.jsonb_populate_record(NULL::{target}, %s) AS k, "
        "pg_catalog.jsonb_populate_record(NULL::{target}, %s) AS e "
        "WHERE {key_match} FOR UPDATE OF t").format(target=target, key_match=key_match),
        (key, Jsonb(compared))).fetchone()
    if row is None:
        return _("event {id}: row {key} of {table} no longer exists").format(
            id=event.id, key=event.entity_id, table=event.entity_type)
    current, expected = row
    for column in compared:
        if current.get(column) != expected.get(column):
            return _("event {id}: {table} {key} column {column} is now {current}, the event set {expected}").format(
                id=event.id, table=event.entity_type, key=event.entity_id, column=column,
                current=jsonvalues.dumps(current.get(column), ensure_ascii=False)[:80],
                expected=jsonvalues.dumps(expected.get(column), ensure_ascii=False)[:80])
    return None
