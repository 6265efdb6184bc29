"""Minimal audit triggers: the floor the benchmarks hold auditctl's triggers against.

A trigger that stores row values as JSON pays at least for converting the
rows and inserting them into a table. These triggers do only that, into
one unindexed table, with no who-context, no key, no comparison of old and
new values and no partitioning:

- ``row``: a PL/pgSQL row trigger inserting ``to_jsonb(NEW)`` (``OLD`` for a
  DELETE), the usual hand-written audit trigger;
- ``statement``: statement triggers with transition tables inserting one
  row per changed row in one INSERT ... SELECT; an UPDATE pairs the old and
  new rows on the primary key and stores both.

Measured in the same run as the unaudited and the audited table, they show
how much of auditctl's cost any trigger would pay on that table and that
machine.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from auditctl.audit.install import install, uninstall
from auditctl.audit.schema import schema_exists

LOG_TABLE = sql.Identifier("public", "bench_minimal_log")
LEVELS = ("row", "statement")


def set_triggers(connection: psycopg.Connection, mode: str, key_columns: dict[tuple[str, str], list[str]],
                 level: str) -> None:
    """Set the triggers of the tables in ``key_columns`` for ``mode``.

    ``mode`` is "plain" (no trigger), "minimal" (the ``level`` triggers of
    this module) or "audited" (auditctl's, whose schema must be installed).
    ``key_columns`` maps each (schema, table) to its primary key columns.
    """
    names = [f"{schema}.{name}" for schema, name in key_columns]
    if mode == "audited":
        for table in key_columns:
            uninstall_minimal(connection, table)
        install(connection, "audit", names)
        return
    if schema_exists(connection, "audit"):
        uninstall(connection, "audit", names)
    for table, key in key_columns.items():
        if mode == "minimal":
            install_minimal(connection, table, key, level)
        else:
            uninstall_minimal(connection, table)


def install_minimal(connection: psycopg.Connection, table: tuple[str, str], key_columns: list[str],
                    level: str) -> None:
    """Create the log table if needed and put the minimal ``level`` triggers on ``table``."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, not {level!r}")
    uninstall_minimal(connection, table)
    create_log(connection)
    target = sql.Identifier(*table)
    function = _function(table)
    if level == "row":
        connection.execute(sql.SQL("""
            CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    INSERT INTO {log} (old_row) VALUES (to_jsonb(OLD));
                ELSE
                    INSERT INTO {log} (new_row) VALUES (to_jsonb(NEW));
                END IF;
                RETURN NULL;
            END
            $body$""").format(function=function, log=LOG_TABLE))
        connection.execute(sql.SQL("""
            CREATE TRIGGER bench_minimal AFTER INSERT OR UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {function}()""").format(table=target, function=function))
        return
    pairing = sql.SQL(" AND ").join(sql.SQL("o.{column} = n.{column}").format(column=sql.Identifier(column))
                                    for column in key_columns)
    connection.execute(sql.SQL("""
        CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO {log} (new_row) SELECT to_jsonb(n) FROM bench_minimal_new AS n;
            ELSIF TG_OP = 'DELETE' THEN
                INSERT INTO {log} (old_row) SELECT to_jsonb(o) FROM bench_minimal_old AS o;
            ELSE
                INSERT INTO {log} (old_row, new_row)
                SELECT to_jsonb(o), to_jsonb(n)
                FROM bench_minimal_old AS o JOIN bench_minimal_new AS n ON {pairing};
            END IF;
            RETURN NULL;
        END
        $body$""").format(function=function, log=LOG_TABLE, pairing=pairing))
    for action, tables in (("INSERT", "NEW TABLE AS bench_minimal_new"),
                           ("UPDATE", "OLD TABLE AS bench_minimal_old NEW TABLE AS bench_minimal_new"),
                           ("DELETE", "OLD TABLE AS bench_minimal_old")):
        connection.execute(sql.SQL("""
            CREATE TRIGGER {name} AFTER {action} ON {table} REFERENCING {tables}
            FOR EACH STATEMENT EXECUTE FUNCTION {function}()""").format(
            name=sql.Identifier(f"bench_minimal_{action.lower()}"), action=sql.SQL(action), table=target,
            tables=sql.SQL(tables), function=function))


def uninstall_minimal(connection: psycopg.Connection, table: tuple[str, str]) -> None:
    """Drop the minimal triggers of ``table`` and empty the log table, which itself stays."""
    connection.execute(sql.SQL("DROP FUNCTION IF EXISTS {}() CASCADE").format(_function(table)))
    connection.execute(sql.SQL("""
        DO $body$ BEGIN
            IF to_regclass('public.bench_minimal_log') IS NOT NULL THEN
                TRUNCATE public.bench_minimal_log;
            END IF;
        END $body$"""))


def create_log(connection: psycopg.Connection) -> None:
    """Create the log table before auditctl's DDL capture starts, so that no DDL event records it."""
    connection.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (old_row jsonb, new_row jsonb)").format(LOG_TABLE))


def drop_log(connection: psycopg.Connection) -> None:
    connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(LOG_TABLE))


def _function(table: tuple[str, str]) -> sql.Identifier:
    schema, name = table
    return sql.Identifier("public", f"bench_minimal_{schema}_{name}"[:63])
