"""Database access of the web page: read-only connections and the events it records itself."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql

from ..audit.events import log_event
from ..db import connect

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def read_only_connection(dsn: str | None) -> Iterator[psycopg.Connection]:
    """Open a connection whose transactions are read-only unless a transaction sets READ WRITE.

    The viewer role cannot write the log anyway. This also protects the log
    when the page runs as a role that can.
    """
    connection = connect(dsn)
    try:
        connection.execute("SET default_transaction_read_only = on")
        yield connection
    finally:
        connection.close()


def insert_event(connection: psycopg.Connection, schema: str, action: str, *, user_id: str | None,
                 client: str | None, details: dict[str, Any] | None = None) -> int:
    """Insert LOGIN, LOGIN_FAILED, LOGOUT or EXPORT through the schema's log_event() and return its id.

    It must be the first statement of an open transaction of ``connection``,
    because it makes that transaction read-write. The caller commits.
    ``client`` is the viewer's address. One that is not an IP address (a
    Unix socket peer, say) goes into the details instead, because an empty
    address would make log_event() record the web server's own address.
    """
    details = dict(details or {})
    address = None
    if client:
        try:
            address = str(ipaddress.ip_address(client))
        except ValueError:
            details["client"] = client
    connection.execute("SET TRANSACTION READ WRITE")
    return log_event(connection, schema, action, user_id=user_id, ip_address=address, details=details or None)


def log_recorded_event(action: str, event_id: int, user_id: str | None, client: str | None) -> None:
    """Log one line for an event that insert_event() inserted and its transaction committed."""
    where = client or "an unknown address"
    if user_id is None:
        # A failed login names no user.
        logger.info("recorded %s event %d from %s", action, event_id, where)
    else:
        logger.info("recorded %s event %d for user %s from %s", action, event_id, user_id, where)


def record_event(dsn: str | None, schema: str, action: str, *, user_id: str | None, client: str | None,
                 details: dict[str, Any] | None = None) -> int:
    """Record LOGIN, LOGIN_FAILED, LOGOUT or EXPORT in a transaction of its own and return its id."""
    with read_only_connection(dsn) as connection:
        with connection.transaction():
            event_id = insert_event(connection, schema, action, user_id=user_id, client=client, details=details)
    log_recorded_event(action, event_id, user_id, client)
    return event_id


def can_modify_log(dsn: str | None, schema: str) -> tuple[str, bool]:
    """Return the connected role and whether it may insert, update or delete audit events."""
    with read_only_connection(dsn) as connection:
        row = connection.execute(
            "SELECT current_user, pg_catalog.has_table_privilege(%s, 'INSERT, UPDATE, DELETE, TRUNCATE')",
            (sql.Identifier(schema, "events").as_string(connection),)).fetchone()
    return row[0], row[1]
