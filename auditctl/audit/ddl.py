"""Event triggers that record DDL, GRANT and REVOKE, and tampering with audit triggers."""

from __future__ import annotations

import psycopg

from ..sqltext import quote_ident, render, sha256_hex
from .schema import DEFAULT_SCHEMA, template_context


def event_trigger_names(schema: str) -> tuple[str, str]:
    """Name the two event triggers of an audit schema; event trigger names are per database."""
    suffix = "" if schema == DEFAULT_SCHEMA else "_" + sha256_hex(schema)[:12]
    return f"auditctl_ddl{suffix}", f"auditctl_drop{suffix}"


def can_create_event_triggers(connection: psycopg.Connection) -> bool:
    """Tell whether the current role may create event triggers (PostgreSQL requires a superuser)."""
    return connection.execute(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").fetchone()[0]


def render_ddl_capture(connection: psycopg.Connection, schema: str) -> str:
    """Render the SQL that (re)creates the capture functions and event triggers."""
    end_trigger, drop_trigger = event_trigger_names(schema)
    context = template_context(connection, schema)
    context.update(end_trigger=quote_ident(end_trigger), drop_trigger=quote_ident(drop_trigger))
    return render("ddl.sql.j2", **context)


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
