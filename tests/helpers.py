"""Small helpers shared by the test modules."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row

from auditctl.audit.install import install


# Events that auditctl records about itself and about schema changes.
SYSTEM_ACTIONS = "action IN ('DDL', 'PERMISSION_CHANGE') OR action LIKE 'AUDIT\\_%'"


def events(connection: psycopg.Connection, schema: str = "audit", where: str = "true",
           params: tuple = (), system: bool = False) -> list[dict[str, Any]]:
    """Events matching a condition, oldest first, as dicts.

    Row changes and application events only, unless ``system`` is true:
    then auditctl's own events and DDL events are included too.
    """
    scope = "true" if system else f"NOT ({SYSTEM_ACTIONS})"
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(f'SELECT * FROM "{schema}".events WHERE ({where}) AND {scope} ORDER BY id', params or None)
        return cursor.fetchall()


def as_app_user(connection: psycopg.Connection, user_id: str | None, ip_address: str | None, *statements: str) -> None:
    """Run statements in one transaction after setting the auditctl context, as an app would."""
    with connection.transaction():
        if user_id is not None:
            connection.execute("SELECT set_config('auditctl.user_id', %s, true)", (user_id,))
        if ip_address is not None:
            connection.execute("SELECT set_config('auditctl.ip_address', %s, true)", (ip_address,))
        for statement in statements:
            connection.execute(statement)


@contextlib.contextmanager
def table_owner_dsn(db) -> Iterator[str]:
    """Create a login role that may create schemas and tables but is no superuser; yield its DSN.

    The role and everything it owns in ``db`` are dropped afterwards, with
    the audit schema, where a superuser's install may have added functions.
    """
    owner = f"owner_{db.name}"
    with db.connect() as connection:
        connection.execute(f"CREATE ROLE {owner} LOGIN NOSUPERUSER")
        connection.execute(f"GRANT CREATE ON DATABASE {db.name} TO {owner}")
        connection.execute(f"GRANT CREATE ON SCHEMA public TO {owner}")
    try:
        yield db.dsn.replace("user=postgres", f"user={owner}")
    finally:
        with db.connect() as connection:
            connection.execute("SET auditctl.internal = 'on'")
            connection.execute("DROP SCHEMA IF EXISTS audit CASCADE")
            connection.execute(f"DROP OWNED BY {owner}; DROP ROLE {owner}")


def write_reading_in_two_zones(connection: psycopg.Connection, taken_at: str, sensor: int) -> None:
    """Create an audited table keyed by a timestamptz and an integer, insert a row in Moscow time and update it in UTC.

    The triggers store the key in the writer's TimeZone, so the two events
    name the same row by two different entity_id texts.
    """
    connection.execute("CREATE TABLE reading (taken_at timestamptz, sensor integer, value numeric, "
                       "PRIMARY KEY (taken_at, sensor))")
    install(connection, "audit", [], use_all=True)
    connection.execute("SET TimeZone = 'Europe/Moscow'")
    connection.execute("INSERT INTO reading VALUES (%s, %s, 1.5)", (taken_at, sensor))
    connection.execute("SET TimeZone = 'UTC'")
    connection.execute("UPDATE reading SET value = 2.5")
