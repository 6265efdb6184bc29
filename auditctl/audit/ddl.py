"""Event triggers that record DDL, GRANT and REVOKE, and tampering with audit triggers."""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg

from ..sqltext import quote_ident, quote_literal, render, sha256_hex
from .schema import DEFAULT_SCHEMA, template_context
from .triggers import DEFAULT_MAX_VALUE_BYTES, TRIGGER_NAMES


def event_trigger_names(schema: str) -> tuple[str, str]:
    """Name the two event triggers of an audit schema; event trigger names are per database."""
    suffix = "" if schema == DEFAULT_SCHEMA else "_" + sha256_hex(schema)[:12]
    return f"auditctl_ddl{suffix}", f"auditctl_drop{suffix}"


def can_create_event_triggers(connection: psycopg.Connection) -> bool:
    """Tell whether the current role may create event triggers (PostgreSQL requires a superuser)."""
    return connection.execute(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()[0]


# Interim trigger function of tables audited on creation or altered since
# install, until install generates their own.
GENERIC_FUNCTION = "capture_generic"


def render_ddl_capture(connection: psycopg.Connection, schema: str) -> str:
    """Render the SQL that (re)creates the capture functions and event triggers."""
    end_trigger, drop_trigger = event_trigger_names(schema)
    context = template_context(connection, schema)
    context.update(end_trigger=quote_ident(end_trigger), drop_trigger=quote_ident(drop_trigger),
                   trigger_names=f"ARRAY[{', '.join(quote_literal(name) for name in TRIGGER_NAMES)}]::text[]",
                   default_max_value_bytes=DEFAULT_MAX_VALUE_BYTES)
    return "\n".join(render(template, **context)
                     for template in ("generic_trigger.sql.j2", "refresh.sql.j2", "ddl.sql.j2"))


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
    exists = connection.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                                (f"{quote_ident(schema)}.settings",)).fetchone()[0]
    if not exists:
        return None
    row = connection.execute(
        f"SELECT value FROM {quote_ident(schema)}.settings WHERE name = 'auto_audit'").fetchone()
    if row is None:
        return None
    return AutoAuditPolicy(schemas=tuple(row[0].get("schemas", [])), exclude=tuple(row[0].get("exclude", [])))


def drop_statements(schema: str) -> list[str]:
    """Statements that remove the event triggers, run before the audit schema is dropped."""
    return [f"DROP EVENT TRIGGER IF EXISTS {quote_ident(name)}" for name in event_trigger_names(schema)]


def ddl_capture_enabled(connection: psycopg.Connection, schema: str) -> bool:
    """Tell whether both event triggers exist and are enabled."""
    names = list(event_trigger_names(schema))
    count = connection.execute(
        "SELECT count(*) FROM pg_catalog.pg_event_trigger WHERE evtname = ANY(%s) AND evtenabled <> 'D'",
        (names,)).fetchone()[0]
    return count == len(names)
