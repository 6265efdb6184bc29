"""Browsing the audit log page by page: keyset pages, single events and counts for a dashboard.

The web page calls these; they share the filters and WHERE clause of
``query.py``, so a page shows exactly what ``query`` and ``export`` return.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from ..errors import AuditctlError, InvalidArgumentError
from ..i18n import _
from .query import SELECT_EVENTS, Event, EventFilter, entity_types_for, in_column_order, where_clause
from .schema import require_installed

# Largest id a cursor may name: events.id is a bigint.
MAX_EVENT_ID = 2**63 - 1

# Row changes and the application events that auditctl documents; an
# application may add its own. The web page offers these in its action filter.
KNOWN_ACTIONS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "LOGIN", "LOGOUT", "LOGIN_FAILED",
                 "PASSWORD_CHANGE", "EXPORT")

# Actions that auditctl's event triggers and commands write about the log,
# the schema and the backups. A filter may name them before any has happened.
SYSTEM_ACTIONS = ("DDL", "PERMISSION_CHANGE", "AUDIT_INSTALL", "AUDIT_UNINSTALL", "AUDIT_TRIGGER_DISABLED",
                  "AUDIT_TRIGGER_REFRESHED", "REDACT", "REVERT", "ROTATE", "BACKUP_CREATE", "BACKUP_FAILED",
                  "BACKUP_RESTORE")


class CursorNotFoundError(AuditctlError):
    """A page cursor names an event that is not in the log (any more)."""


class UnknownActionError(InvalidArgumentError):
    """A filter names an action that is neither in KNOWN_ACTIONS nor in any event of the log."""


@dataclass
class Page:
    """One page of events, newest first, and the cursors of its neighbours."""

    events: list[Event]
    # Cursor of the next (older) page: the id of this page's last event.
    older_than: int | None
    # Cursor of the previous (newer) page: the id of this page's first event.
    newer_than: int | None


@dataclass
class DayCount:
    """Number of matching events on one calendar day of the viewer's time zone."""

    day: date
    events: int


@dataclass
class TopValue:
    """A user or table and its number of matching events."""

    value: str | None
    events: int


def _check_event_id(value: int) -> None:
    if not 1 <= value <= MAX_EVENT_ID:
        raise InvalidArgumentError(
            _("Invalid event id {value}: use a whole number between 1 and {maximum}.")
            .format(value=value, maximum=MAX_EVENT_ID))


def _with_condition(where: sql.Composable, condition: sql.Composable) -> sql.Composable:
    if where == sql.SQL(""):
        return sql.SQL("WHERE ") + condition
    return where + sql.SQL(" AND ") + condition


def browse_events(connection: psycopg.Connection, schema: str, filters: EventFilter, *, size: int = 50,
                  older_than: int | None = None, newer_than: int | None = None) -> Page:
    """Return one page of matching events, newest first, by keyset pagination.

    ``older_than`` and ``newer_than`` are event ids from a previous page. The
    page is found by comparing ``(occurred_at, id)`` with that event's, which
    the index on those columns serves without OFFSET, so a page deep in the
    log costs the same as the first. Raises CursorNotFoundError when the
    cursor's event does not exist.
    """
    if older_than is not None and newer_than is not None:
        raise InvalidArgumentError(_("Give either an older-than or a newer-than cursor, not both."))
    if not 1 <= size <= 1000:
        raise InvalidArgumentError(_("Invalid page size {value}: use 1 to 1000.").format(value=size))
    require_installed(connection, schema)
    audit = sql.Identifier(schema)
    where = where_clause(connection, schema, filters)
    cursor_id = older_than if older_than is not None else newer_than
    if cursor_id is not None:
        _check_event_id(cursor_id)
        if connection.execute(sql.SQL("SELECT FROM {}.events WHERE id = %s").format(audit),
                              (cursor_id,)).fetchone() is None:
            raise CursorNotFoundError(
                _("Event {id} is not in the audit log, so the page that starts after it cannot be found. "
                  "Go back to the first page.").format(id=cursor_id))
        comparison = "<" if older_than is not None else ">"
        where = _with_condition(where, sql.SQL(
            "(occurred_at, id) " + comparison + " (SELECT occurred_at, id FROM {}.events WHERE id = {})")
            .format(audit, cursor_id))

    # Newer pages are read upwards from the cursor and then reversed.
    order = "ORDER BY occurred_at DESC, id DESC" if newer_than is None else "ORDER BY occurred_at, id"
    statement = sql.SQL(SELECT_EVENTS + " " + order + " LIMIT {limit}").format(
        audit=audit, where=where, limit=size + 1)
    with connection.cursor(row_factory=class_row(Event)) as cursor:
        cursor.execute(statement)
        rows = cursor.fetchall()
    more = len(rows) > size
    rows = in_column_order(connection, rows[:size])
    if newer_than is not None:
        rows.reverse()
    if not rows:
        return Page([], None, None)

    if newer_than is None:
        has_older, has_newer = more, older_than is not None
    else:
        has_older, has_newer = True, more
    return Page(rows, rows[-1].id if has_older else None, rows[0].id if has_newer else None)


def get_event(connection: psycopg.Connection, schema: str, event_id: int) -> Event | None:
    """Return one event by id, or None when there is none."""
    _check_event_id(event_id)
    require_installed(connection, schema)
    statement = sql.SQL(SELECT_EVENTS + " WHERE id = %s").format(audit=sql.Identifier(schema), where=sql.SQL(""))
    with connection.cursor(row_factory=class_row(Event)) as cursor:
        cursor.execute(statement, (event_id,))
        event = cursor.fetchone()
    if event is None:
        return None
    return in_column_order(connection, [event])[0]


def daily_counts(connection: psycopg.Connection, schema: str, filters: EventFilter, time_zone: ZoneInfo,
                 days: int = 30, now: datetime | None = None) -> list[DayCount]:
    """Count matching events per day over the last ``days`` days, today included, oldest first.

    Days are calendar days in ``time_zone``; days without events count 0.
    The time range of ``filters`` is replaced by those days.
    """
    require_installed(connection, schema)
    now = (now or datetime.now(timezone.utc)).astimezone(time_zone)
    first_day = now.date() - timedelta(days=days - 1)
    start = datetime(first_day.year, first_day.month, first_day.day, tzinfo=time_zone)
    window = EventFilter(user_id=filters.user_id, since=start, tables=filters.tables, actions=filters.actions,
                         entity_id=filters.entity_id, entity_id_forms=filters.entity_id_forms, text=filters.text)
    statement = sql.SQL(
        "SELECT (occurred_at AT TIME ZONE {zone})::date AS day, count(*) FROM {audit}.events {where} "
        "GROUP BY 1").format(zone=time_zone.key, audit=sql.Identifier(schema),
                             where=where_clause(connection, schema, window))
    counts = dict(connection.execute(statement).fetchall())
    return [DayCount(first_day + timedelta(days=offset), counts.get(first_day + timedelta(days=offset), 0))
            for offset in range(days)]


def top_values(connection: psycopg.Connection, schema: str, filters: EventFilter, column: str,
               limit: int = 5) -> list[TopValue]:
    """Return the ``limit`` most frequent values of ``user_id`` or ``entity_type`` among matching events."""
    if column not in ("user_id", "entity_type"):
        raise ValueError(f"top_values() counts user_id or entity_type, not {column!r}")
    require_installed(connection, schema)
    statement = sql.SQL(
        "SELECT {column}, count(*) FROM {audit}.events {where} GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {limit}"
    ).format(column=sql.Identifier(column), audit=sql.Identifier(schema),
             where=where_clause(connection, schema, filters), limit=limit)
    return [TopValue(value, count) for value, count in connection.execute(statement).fetchall()]


def quote_entity_type(entity_type: str) -> str:
    """Quote a stored ``schema.table`` name so that ``--table`` parsing reads it back exactly.

    The schema is the part before the first dot, as entity_types_for() splits it.
    """
    schema, _dot, table = entity_type.partition(".")
    return '"{}"."{}"'.format(schema.replace('"', '""'), table.replace('"', '""'))


def resolve_tables(connection: psycopg.Connection, schema: str, filters: EventFilter) -> EventFilter:
    """Return a copy of ``filters`` whose table names are already expanded to quoted ``schema.table`` names.

    Expanding a bare name scans the log for the schemas it appears in, so a
    page that runs several queries with one filter expands it once. A name
    that matches nothing is kept, so that the filter still matches no event.
    """
    if not filters.tables:
        return filters
    expanded = entity_types_for(connection, schema, filters.tables, as_option=False)
    if not expanded:
        return filters
    return replace(filters, tables=[quote_entity_type(name) for name in expanded])


def action_exists(connection: psycopg.Connection, schema: str, action: str) -> bool:
    """Tell whether any event has this action; KNOWN_ACTIONS and SYSTEM_ACTIONS always count as existing."""
    if action in KNOWN_ACTIONS or action in SYSTEM_ACTIONS:
        return True
    require_installed(connection, schema)
    # NOTE: no index covers action, so this scans the log; it runs only for
    # actions that auditctl does not write itself.
    statement = sql.SQL("SELECT EXISTS (SELECT FROM {}.events WHERE action = %s)").format(sql.Identifier(schema))
    return connection.execute(statement, (action,)).fetchone()[0]


def check_actions(connection: psycopg.Connection, schema: str, actions: list[str]) -> None:
    """Raise UnknownActionError for the first action that no event can have, such as a misspelt one.

    Actions are compared in upper case, as EventFilter stores them, and the
    error names the action as it was given.
    """
    for action in actions:
        if not action_exists(connection, schema, action.strip().upper()):
            raise UnknownActionError(
                _("Unknown action {action}: no event in the log has it. Known actions: {known}.")
                .format(action=action.strip(), known=", ".join(KNOWN_ACTIONS + SYSTEM_ACTIONS)))


def recent_actions(connection: psycopg.Connection, schema: str, since: datetime) -> list[str]:
    """Return the actions of the events since ``since`` that are not in KNOWN_ACTIONS, sorted."""
    require_installed(connection, schema)
    statement = sql.SQL(
        "SELECT DISTINCT action FROM {}.events WHERE occurred_at >= %s AND NOT action = ANY(%s) ORDER BY 1"
    ).format(sql.Identifier(schema))
    return [row[0] for row in connection.execute(statement, (since, list(KNOWN_ACTIONS))).fetchall()]


def audited_entity_types(connection: psycopg.Connection, schema: str) -> list[str]:
    """Return the ``schema.table`` names of the tables that have audit triggers, sorted."""
    require_installed(connection, schema)
    statement = sql.SQL(
        """SELECT n.nspname || '.' || c.relname FROM {}.audited_tables a
           JOIN pg_catalog.pg_class c ON c.oid = a.table_id
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
           ORDER BY 1""").format(sql.Identifier(schema))
    return [row[0] for row in connection.execute(statement).fetchall()]
