"""Erasure requests: rewrite the stored values of one person or one record.

This is the only code path that changes rows already in the audit log. It
runs as the owner of the audit schema, and it records a REDACT event that
counts the events it rewrote but does not name whose data they held.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..errors import PermissionDeniedError
from ..i18n import _
from .events import log_event
from .records import resolve_record
from .schema import require_installed

logger = logging.getLogger(__name__)

# Stored in place of each erased value; revert refuses to write it back.
REDACTED_MARKER = "[redacted]"

# Replaces every top-level value of a JSON object that equals the user id.
# NOTE: values nested inside arrays or objects, and numeric values equal to a
# numeric user id, are left as they are.
_REPLACE_USER_VALUE = """COALESCE((
    SELECT pg_catalog.jsonb_object_agg(e.key, CASE WHEN e.value = pg_catalog.to_jsonb(%(user)s::text)
                                                   THEN pg_catalog.to_jsonb(%(marker)s::text) ELSE e.value END)
    FROM pg_catalog.jsonb_each({column}) AS e), {column})"""

_MENTIONS_USER = "pg_catalog.jsonb_path_exists({column}, '$.* ? (@ == $u)', %(vars)s)"

# Replaces every top-level value except JSON nulls and the primary key columns.
_REPLACE_RECORD_VALUES = """COALESCE((
    SELECT pg_catalog.jsonb_object_agg(e.key, CASE WHEN e.key = ANY(%(keys)s::text[]) OR e.value = 'null'::jsonb
                                                   THEN e.value ELSE pg_catalog.to_jsonb(%(marker)s::text) END)
    FROM pg_catalog.jsonb_each({column}) AS e), {column})"""


@dataclass(frozen=True)
class RedactResult:
    """How many events a redaction rewrote, and the REDACT event that records it."""

    events: int
    redact_event_id: int | None
    dry_run: bool


def redact_user(connection: psycopg.Connection, schema: str, user_id: str, *, actor: str | None,
                dry_run: bool = False) -> RedactResult:
    """Erase one application user from the log.

    Events the user made lose their user id (replaced by the marker), IP
    address and raw IP text. Values in any event that equal the user id,
    such as an ``ownerId`` column, are replaced by the marker too.
    """
    require_installed(connection, schema)
    columns = {name: sql.Identifier(name) for name in ("old_values", "new_values", "details")}
    statement = sql.SQL("""
        UPDATE {audit}.events SET
            user_id = CASE WHEN user_id = %(user)s THEN %(marker)s ELSE user_id END,
            ip_address = CASE WHEN user_id = %(user)s THEN NULL ELSE ip_address END,
            old_values = {old},
            new_values = {new},
            details = CASE WHEN user_id = %(user)s THEN {details} - 'ip_address_raw' ELSE {details} END
        WHERE action <> 'REDACT'
          AND (user_id = %(user)s OR {mentions_old} OR {mentions_new} OR {mentions_details})""").format(
        audit=sql.Identifier(schema),
        old=sql.SQL(_REPLACE_USER_VALUE).format(column=columns["old_values"]),
        new=sql.SQL(_REPLACE_USER_VALUE).format(column=columns["new_values"]),
        details=sql.SQL(_REPLACE_USER_VALUE).format(column=columns["details"]),
        mentions_old=sql.SQL(_MENTIONS_USER).format(column=columns["old_values"]),
        mentions_new=sql.SQL(_MENTIONS_USER).format(column=columns["new_values"]),
        mentions_details=sql.SQL(_MENTIONS_USER).format(column=columns["details"]))
    params = {"user": user_id, "marker": REDACTED_MARKER, "vars": Jsonb({"u": user_id})}
    return _run(connection, schema, statement, params, actor=actor, dry_run=dry_run,
                details={"scope": "user"}, entity=(None, None))


def redact_entity(connection: psycopg.Connection, schema: str, table_name: str, key_values: list[str], *,
                  actor: str | None, dry_run: bool = False) -> RedactResult:
    """Erase the stored values of one record, keeping its primary key columns and its events' structure.

    Column names stay, so the history still shows which fields changed
    and when, but every value becomes the marker.
    """
    record = resolve_record(connection, schema, table_name, key_values)
    keys = list(record.table.key_columns) if record.table else []
    columns = {name: sql.Identifier(name) for name in ("old_values", "new_values")}
    statement = sql.SQL("""
        UPDATE {audit}.events SET old_values = {old}, new_values = {new}, details = details - 'ip_address_raw'
        WHERE entity_type = %(entity_type)s AND entity_id = ANY(%(entity_ids)s) AND action <> 'REDACT'""").format(
        audit=sql.Identifier(schema),
        old=sql.SQL(_REPLACE_RECORD_VALUES).format(column=columns["old_values"]),
        new=sql.SQL(_REPLACE_RECORD_VALUES).format(column=columns["new_values"]))
    params = {"entity_type": record.entity_type, "entity_ids": record.entity_ids, "keys": keys,
              "marker": REDACTED_MARKER}
    return _run(connection, schema, statement, params, actor=actor, dry_run=dry_run,
                details={"scope": "entity"}, entity=(record.entity_type, record.entity_id))


def _run(connection: psycopg.Connection, schema: str, statement: sql.Composable, params: dict, *,
         actor: str | None, dry_run: bool, details: dict, entity: tuple[str | None, str | None]) -> RedactResult:
    count = 0
    event_id: int | None = None
    with connection.transaction():
        _become_schema_owner(connection, schema)
        count = connection.execute(statement, params).rowcount
        event_id = log_event(connection, schema, "REDACT", user_id=actor, entity_type=entity[0],
                             entity_id=entity[1], details={**details, "events": count})
        if dry_run:
            # Counting by running the UPDATE and rolling it back gives the exact number.
            raise psycopg.Rollback()
    if dry_run:
        return RedactResult(count, None, dry_run=True)
    logger.info("redacted events (count: %s, REDACT event %s)", count, event_id)
    return RedactResult(count, event_id, dry_run=False)


def _become_schema_owner(connection: psycopg.Connection, schema: str) -> None:
    """Switch the transaction to the audit schema's owner, or raise PermissionDeniedError."""
    row = connection.execute(
        """SELECT r.rolname, pg_catalog.pg_has_role(current_user, n.nspowner, 'MEMBER')
           FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles r ON r.oid = n.nspowner
           WHERE n.nspname = %s""", (schema,)).fetchone()
    owner, is_member = row
    if not is_member:
        current = connection.execute("SELECT current_user").fetchone()[0]
        raise PermissionDeniedError(
            _("Role {role} may not redact the audit log: only the owner of schema {schema} ({owner}) and its "
              "members may. Connect as {owner}.").format(role=current, schema=schema, owner=owner))
    connection.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(owner)))
