"""Install and uninstall the audit schema and the per-table triggers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import errors as pg_errors

from ..db import first_line
from ..errors import DatabaseError, InvalidArgumentError
from ..i18n import _
from ..sqltext import quote_ident, quote_literal, sha256_hex
from .catalog import Table, list_tables, resolve_tables
from .rules import ColumnRule, Rule, effective_rules, ensure_hash_key, load_rules, parse_column_reference, save_rules
from .schema import SchemaStep, apply_schema, plan_schema, require_installed, schema_exists
from .triggers import TRIGGER_NAMES, TriggerSql, hash_from_comment, render_trigger, trigger_comment

logger = logging.getLogger(__name__)

# Serializes concurrent installs and uninstalls on one database.
_INSTALL_LOCK_KEY = "auditctl.install"

ProgressCallback = Callable[[str], None]


@dataclass
class InstallResult:
    """What an install did, or would do with ``dry_run``."""

    schema_steps: list[str] = field(default_factory=list)
    installed: list[Table] = field(default_factory=list)
    unchanged: list[Table] = field(default_factory=list)
    without_primary_key: list[Table] = field(default_factory=list)
    column_rules: list[ColumnRule] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    dry_run: bool = False


@dataclass
class UninstallResult:
    """What an uninstall removed."""

    removed: list[str] = field(default_factory=list)
    dropped_schema: bool = False


def choose_tables(all_tables: list[Table], names: list[str], use_all: bool,
                  exclude: list[str]) -> list[Table]:
    """Turn the TABLE arguments, ``--all`` and ``--exclude`` into a list of tables."""
    if names and use_all:
        raise InvalidArgumentError(_("Give either table names or --all, not both."))
    if use_all:
        chosen = [t for t in all_tables if not t.extension_member]
    else:
        chosen = resolve_tables(names, all_tables)
    excluded = set(resolve_tables(exclude, all_tables)) if exclude else set()
    return [t for t in chosen if t not in excluded]


def install(connection: psycopg.Connection, schema: str, names: list[str], *, use_all: bool = False,
            exclude: list[str] | None = None, column_rules: list[tuple[str, Rule]] | None = None,
            dry_run: bool = False, lock_timeout_seconds: float = 10.0,
            progress: ProgressCallback | None = None) -> InstallResult:
    """Install or upgrade the audit schema and the triggers of the chosen tables.

    ``column_rules`` pairs ``TABLE.COLUMN`` references with privacy rules;
    they are stored and apply to every later install. Everything runs in one
    transaction, so an error leaves the database as it was. Running it again
    with the same arguments changes nothing.
    """
    result = InstallResult(dry_run=dry_run)
    with connection.transaction():
        _lock(connection, lock_timeout_seconds)
        all_tables = list_tables(connection, schema)
        tables = choose_tables(all_tables, names, use_all, exclude or [])
        given_rules = [(*parse_column_reference(reference, all_tables), rule)
                       for reference, rule in column_rules or []]
        steps: list[SchemaStep] = plan_schema(connection, schema)
        if dry_run:
            result.schema_steps = [step.name for step in steps]
            result.statements.extend(step.sql for step in steps)
        else:
            result.schema_steps = apply_schema(connection, schema)
            save_rules(connection, schema, given_rules)
            ensure_hash_key(connection, schema)
        stored_rules = load_rules(connection, schema)
        for table, column, rule in given_rules:
            stored_rules.setdefault((table.schema, table.name), {})[column] = rule
        installed_hashes = {} if dry_run and not schema_exists(connection, schema) \
            else _installed_hashes(connection, schema)

        for table in tables:
            rules = effective_rules(table, stored_rules.get((table.schema, table.name), {}))
            result.column_rules.extend(rules)
            trigger = render_trigger(connection, schema, table, rules)
            if not table.has_primary_key:
                result.without_primary_key.append(table)
            if installed_hashes.get(table.oid) == trigger.sql_hash:
                result.unchanged.append(table)
            else:
                result.installed.append(table)
                if dry_run:
                    result.statements.append(trigger.sql)
                else:
                    _install_trigger(connection, schema, table, trigger)
            if progress:
                progress(table.entity_type)
    return result


def _lock(connection: psycopg.Connection, lock_timeout_seconds: float) -> None:
    connection.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)",
                       (f"{int(lock_timeout_seconds * 1000)}ms",))
    connection.execute("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(%s))",
                       (_INSTALL_LOCK_KEY,))


def _installed_hashes(connection: psycopg.Connection, schema: str) -> dict[int, str]:
    """Map table OIDs to the hash in their auditctl_row trigger's comment, for current triggers."""
    query = """
        SELECT t.tgrelid::bigint, pg_catalog.obj_description(t.oid, 'pg_trigger')
        FROM pg_catalog.pg_trigger t
        JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
        WHERE t.tgname = ANY(%s) AND NOT t.tgisinternal AND t.tgparentid = 0
          AND p.pronamespace = %s::regnamespace
    """
    hashes: dict[int, set[str | None]] = {}
    with connection.cursor() as cursor:
        cursor.execute(query, (list(TRIGGER_NAMES), quote_ident(schema)))
        for oid, comment in cursor.fetchall():
            hashes.setdefault(oid, set()).add(hash_from_comment(comment))
    return {oid: next(iter(found)) for oid, found in hashes.items()
            if len(found) == 1 and None not in found}


def _install_trigger(connection: psycopg.Connection, schema: str, table: Table, trigger: TriggerSql) -> None:
    audit = quote_ident(schema)
    try:
        with connection.transaction():
            connection.execute(trigger.sql)
            comment = quote_literal(trigger_comment(trigger))
            for name in TRIGGER_NAMES:
                connection.execute(
                    f"COMMENT ON TRIGGER {quote_ident(name)} ON {trigger.table} IS {comment}")
            previous = connection.execute(
                f"SELECT function_name FROM {audit}.audited_tables WHERE table_id = %s::regclass",
                (table.oid,)).fetchone()
            connection.execute(
                f"""INSERT INTO {audit}.audited_tables (table_id, function_name, template_version, sql_hash)
                    VALUES (%s::regclass, %s, %s, %s)
                    ON CONFLICT (table_id) DO UPDATE
                    SET function_name = EXCLUDED.function_name,
                        template_version = EXCLUDED.template_version,
                        sql_hash = EXCLUDED.sql_hash,
                        installed_at = pg_catalog.now(),
                        installed_by = pg_catalog."current_user"()""",
                (table.oid, trigger.function_name, trigger.template_version, trigger.sql_hash))
            if previous and previous[0] != trigger.function_name:
                connection.execute(f"DROP FUNCTION IF EXISTS {audit}.{quote_ident(previous[0])}()")
    except pg_errors.LockNotAvailable:
        raise DatabaseError(
            _("Could not lock table {table} to add its audit trigger: another transaction holds it. "
              "Retry when long transactions have finished, or raise --lock-timeout.")
            .format(table=table.entity_type)) from None
    except psycopg.Error as exc:
        raise DatabaseError(
            _("Could not install the audit trigger on {table}: {error}")
            .format(table=table.entity_type, error=first_line(str(exc)))) from None
    logger.info("installed audit trigger on %s", table.entity_type)


def uninstall(connection: psycopg.Connection, schema: str, names: list[str], *, use_all: bool = False,
              drop_data: bool = False, lock_timeout_seconds: float = 10.0) -> UninstallResult:
    """Remove the triggers of the chosen tables; drop the whole log with ``drop_data``."""
    if drop_data and not use_all:
        raise InvalidArgumentError(
            _("--drop-data deletes the whole audit log and needs --all as well."))
    if not names and not use_all:
        raise InvalidArgumentError(_("Name the tables to stop auditing, or use --all."))
    result = UninstallResult()
    with connection.transaction():
        _lock(connection, lock_timeout_seconds)
        if not schema_exists(connection, schema):
            if drop_data:
                return result
        require_installed(connection, schema)
        audit = quote_ident(schema)
        registered = {row[0]: row[1] for row in connection.execute(
            f"SELECT table_id::oid::bigint, function_name FROM {audit}.audited_tables").fetchall()}
        triggered = _trigger_functions(connection, schema)
        if use_all:
            targets = sorted(set(registered) | set(triggered))
        else:
            tables = resolve_tables(names, list_tables(connection, schema))
            targets = [t.oid for t in tables]
        for oid in targets:
            label = _drop_table_triggers(connection, schema, oid, registered.get(oid), triggered.get(oid))
            if label:
                result.removed.append(label)
        if drop_data:
            connection.execute(f"DROP SCHEMA {audit} CASCADE")
            result.dropped_schema = True
            logger.info("dropped schema %s and the audit log in it", schema)
    return result


def _trigger_functions(connection: psycopg.Connection, schema: str) -> dict[int, str]:
    """Map OIDs of tables with an auditctl trigger to that trigger's function name."""
    rows = connection.execute(
        """SELECT t.tgrelid::bigint, p.proname
           FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
           WHERE t.tgname = ANY(%s) AND NOT t.tgisinternal AND t.tgparentid = 0
             AND p.pronamespace = %s::regnamespace""",
        (list(TRIGGER_NAMES), quote_ident(schema))).fetchall()
    return {oid: function for oid, function in rows}


def _drop_table_triggers(connection: psycopg.Connection, schema: str, oid: int,
                         registered_function: str | None, trigger_function: str | None) -> str | None:
    audit = quote_ident(schema)
    row = connection.execute(
        """SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s""", (oid,)).fetchone()
    label = f"{row[0]}.{row[1]}" if row else str(oid)
    if row:
        table = quote_ident(row[0], row[1])
        if trigger_function is None and registered_function is None:
            return None
        try:
            for name in TRIGGER_NAMES:
                connection.execute(f"DROP TRIGGER IF EXISTS {quote_ident(name)} ON {table}")
        except pg_errors.LockNotAvailable:
            raise DatabaseError(
                _("Could not lock table {table} to remove its audit trigger: another transaction holds it. "
                  "Retry when long transactions have finished.").format(table=label)) from None
    for function in {registered_function, trigger_function} - {None}:
        connection.execute(f"DROP FUNCTION IF EXISTS {audit}.{quote_ident(function)}()")
    connection.execute(f"DELETE FROM {audit}.audited_tables WHERE table_id::oid = %s", (oid,))
    logger.info("removed audit trigger from %s", label)
    return label
