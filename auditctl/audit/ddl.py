"""Event triggers that record DDL, GRANT and REVOKE, and tampering with audit triggers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

import psycopg

from ..errors import PermissionDeniedError
from ..i18n import _
from ..sqltext import quote_ident, quote_literal, render, sha256_hex
from .rules import MASK_MARKER, SECRET_NAME
from .schema import DEFAULT_SCHEMA, read_setting, template_context
from .triggers import DEFAULT_MAX_VALUE_BYTES, TRIGGER_NAMES


def event_trigger_names(schema: str) -> tuple[str, str]:
    """Name the two event triggers of an audit schema; event trigger names are per database."""
    suffix = "" if schema == DEFAULT_SCHEMA else "_" + sha256_hex(schema)[:12]
    return f"auditctl_ddl{suffix}", f"auditctl_drop{suffix}"


def guard_schema_name(schema: str) -> str:
    """Name the schema of the function that rejects dropping the audit log; it must not be the audit schema."""
    suffix = "" if schema == DEFAULT_SCHEMA else "_" + sha256_hex(schema)[:12]
    return f"auditctl_guard{suffix}"


def can_create_event_triggers(connection: psycopg.Connection) -> bool:
    """Tell whether the current role may create event triggers (PostgreSQL requires a superuser)."""
    return connection.execute(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()[0]


class DdlCapture(StrEnum):
    """Action of an install on the DDL event triggers."""

    # The role may create event triggers, so the install creates or replaces them.
    INSTALLED = "installed"
    # A superuser installed both earlier and they are enabled, but this role may not replace them.
    KEPT = "kept"
    # Neither this role nor an earlier install put enabled event triggers in place.
    OFF = "off"


def plan_ddl_capture(connection: psycopg.Connection, schema: str) -> DdlCapture:
    """Decide what an install by the current role does about DDL capture.

    Capture is on after the install unless the result is OFF. Status reads
    ``ddl_capture_enabled``, which then returns the same.
    """
    if can_create_event_triggers(connection):
        return DdlCapture.INSTALLED
    if ddl_capture_enabled(connection, schema):
        return DdlCapture.KEPT
    return DdlCapture.OFF


# Interim trigger function of tables audited on creation or altered since
# install, until install generates their own.
GENERIC_FUNCTION = "capture_generic"


def render_ddl_capture(connection: psycopg.Connection, schema: str, always: bool = False) -> str:
    """Render the SQL that (re)creates the capture functions and event triggers.

    With ``always`` the event triggers fire under session_replication_role =
    replica too, like the audit triggers of ``install --enable-always``.
    """
    end_trigger, drop_trigger = event_trigger_names(schema)
    context = template_context(connection, schema)
    context.update(end_trigger=quote_ident(end_trigger), drop_trigger=quote_ident(drop_trigger),
                   guard_schema=quote_ident(guard_schema_name(schema)),
                   secret_pattern=quote_literal(SECRET_NAME.pattern), mask_marker=quote_literal(MASK_MARKER),
                   trigger_names=f"{quote_literal(list(TRIGGER_NAMES))}::text[]",
                   firing=" ALWAYS" if always else "",
                   default_max_value_bytes=DEFAULT_MAX_VALUE_BYTES)
    return "\n".join(render(template, **context)
                     for template in ("generic_trigger.sql.j2", "refresh.sql.j2", "ddl.sql.j2"))


# The comment of the ddl_command_end event trigger ends with the SHA-256 of
# the SQL that created the capture functions, so that status can tell
# whether an older or newer auditctl installed them.
_SOURCE_HASH = re.compile(r"SHA-256 ([0-9a-f]{64})\.$")


def ddl_capture_comment(schema: str, ddl_sql: str) -> str:
    """Return the statement that labels the event trigger with the hash of ``ddl_sql``, run after it."""
    end_trigger, _drop_trigger = event_trigger_names(schema)
    text = (f"auditctl: records schema changes, GRANT and REVOKE into schema {schema}; "
            f"created from SQL with SHA-256 {sha256_hex(ddl_sql)}.")
    return f"COMMENT ON EVENT TRIGGER {quote_ident(end_trigger)} IS {quote_literal(text)};"


def ddl_capture_outdated(connection: psycopg.Connection, schema: str, always: bool) -> bool:
    """Tell whether the last superuser install ran other DDL capture SQL than this auditctl would run.

    Event triggers created before their comment carried the hash count as
    outdated. A function replaced by hand afterwards is not detected.
    """
    end_trigger, _drop_trigger = event_trigger_names(schema)
    row = connection.execute(
        "SELECT pg_catalog.obj_description(oid, 'pg_event_trigger') FROM pg_catalog.pg_event_trigger "
        "WHERE evtname = %s", (end_trigger,)).fetchone()
    found = _SOURCE_HASH.search(row[0] or "") if row else None
    return found is None or found.group(1) != sha256_hex(render_ddl_capture(connection, schema, always))


@dataclass(frozen=True)
class AutoAuditPolicy:
    """Policy for auditing tables created after install: their schemas, minus LIKE patterns of names."""

    schemas: tuple[str, ...]
    exclude: tuple[str, ...] = ()


def policy_statement(schema: str, policy: AutoAuditPolicy | None) -> str:
    """Return the statement that stores the policy, or removes it for None."""
    audit = quote_ident(schema)
    if policy is None:
        return f"DELETE FROM {audit}.settings WHERE name = 'auto_audit';"
    value = quote_literal(json.dumps({"schemas": list(policy.schemas), "exclude": list(policy.exclude)}))
    return (f"INSERT INTO {audit}.settings (name, value) VALUES ('auto_audit', {value}::jsonb)\n"
            f"ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = pg_catalog.now();")


def load_policy(connection: psycopg.Connection, schema: str) -> AutoAuditPolicy | None:
    """Read the stored auto_audit policy; None when new tables are not audited automatically."""
    value = read_setting(connection, schema, "auto_audit")
    if value is None:
        return None
    return AutoAuditPolicy(schemas=tuple(value.get("schemas", [])), exclude=tuple(value.get("exclude", [])))


def drop_statements(schema: str) -> list[str]:
    """Statements that remove the event triggers and their guard schema, run before the audit schema is dropped."""
    statements = [f"DROP EVENT TRIGGER IF EXISTS {quote_ident(name)}" for name in event_trigger_names(schema)]
    statements.append(f"DROP SCHEMA IF EXISTS {quote_ident(guard_schema_name(schema))} CASCADE")
    return statements


def require_event_trigger_owner(connection: psycopg.Connection, schema: str) -> None:
    """Raise PermissionDeniedError when the current role may not drop the event triggers of ``schema``.

    Only a superuser may create event triggers, and only their owner or a
    superuser may drop them, so a log owner without superuser rights cannot
    remove a DDL capture that a superuser installed.
    """
    row = connection.execute(
        """SELECT pg_catalog.quote_ident(current_user), e.evtowner::regrole::text
           FROM pg_catalog.pg_event_trigger AS e
           WHERE e.evtname = ANY(%s) AND NOT pg_catalog.pg_has_role(current_user, e.evtowner, 'MEMBER')
           LIMIT 1""", (list(event_trigger_names(schema)),)).fetchone()
    if row:
        raise PermissionDeniedError(
            _("Role {role} may not drop the event triggers of DDL capture, which superuser {owner} installed. "
              "Run `auditctl uninstall --all --drop-data` as a superuser.").format(role=row[0], owner=row[1]))


def event_trigger_firing(connection: psycopg.Connection, schema: str) -> set[str]:
    """Return the ``pg_event_trigger.evtenabled`` codes of the two event triggers: 'O', 'A', 'R' or 'D'."""
    rows = connection.execute("SELECT evtenabled FROM pg_catalog.pg_event_trigger WHERE evtname = ANY(%s)",
                              (list(event_trigger_names(schema)),)).fetchall()
    return {code for (code,) in rows}


def ddl_capture_enabled(connection: psycopg.Connection, schema: str) -> bool:
    """Tell whether both event triggers exist and are enabled."""
    names = list(event_trigger_names(schema))
    count = connection.execute(
        "SELECT count(*) FROM pg_catalog.pg_event_trigger WHERE evtname = ANY(%s) AND evtenabled <> 'D'",
        (names,)).fetchone()[0]
    return count == len(names)
