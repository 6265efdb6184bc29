"""Small helpers shared by the test modules."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row


def events(connection: psycopg.Connection, schema: str = "audit", where: str = "true",
           params: tuple = ()) -> list[dict[str, Any]]:
    """All events matching a condition, oldest first, as dicts."""
    with connection.cursor(row_factory=dict_row) as cursor:
        cursor.execute(f'SELECT * FROM "{schema}".events WHERE {where} ORDER BY id', params)
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
