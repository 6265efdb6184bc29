"""Shared set-up of the web page tests: an audited database with events, and the app."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import psycopg

from auditctl.audit.install import install
from auditctl.web import WebConfig, create_app
from helpers import as_app_user

TOKEN = "test-token-0123456789abcdef"

# A stored value that must show as text and never run.
SCRIPT_VALUE = "<script>window.__pwned = 1</script>"


def seed_audit_log(connection: psycopg.Connection) -> None:
    """Create two audited tables and a log of changes by three users."""
    connection.execute("""
        CREATE TABLE customer (id integer PRIMARY KEY, name text NOT NULL, email text);
        CREATE TABLE "Order" (id integer PRIMARY KEY, "customerId" integer, total numeric);
    """)
    install(connection, "audit", [], use_all=True)
    as_app_user(connection, "alice", "203.0.113.10",
                "INSERT INTO customer VALUES (1, 'Анна', 'anna@example.com')",
                "INSERT INTO customer VALUES (2, 'Boris', NULL)")
    as_app_user(connection, "bob", "198.51.100.7",
                "UPDATE customer SET name = 'Анна К.', email = 'anna.k@example.com' WHERE id = 1",
                """INSERT INTO "Order" VALUES (10, 1, 99.50)""")
    as_app_user(connection, "mallory", "192.0.2.66",
                f"UPDATE customer SET name = '{SCRIPT_VALUE}' WHERE id = 2",
                "INSERT INTO customer VALUES (3, '=HYPERLINK(\"http://example.com\")', '+1-555')")
    as_app_user(connection, "alice", None, 'DELETE FROM "Order" WHERE id = 10')


def move_events_back(connection: psycopg.Connection, user_id: str, days: int) -> None:
    """Shift a user's events into the past, so that date filters and the chart have something to show."""
    connection.execute("UPDATE audit.events SET occurred_at = occurred_at - %s WHERE user_id = %s",
                       (timedelta(days=days), user_id))


def make_app(dsn: str, **overrides):
    config = WebConfig(dsn=dsn, schema="audit", token=TOKEN, page_size=overrides.pop("page_size", 50),
                       **overrides)
    return create_app(config)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def seed_busy_month(connection: psycopg.Connection) -> None:
    """Add a month of invoice changes by four more users, spread over the days, for paging and the chart."""
    connection.execute("CREATE TABLE invoice (id integer PRIMARY KEY, status text NOT NULL, amount numeric)")
    install(connection, "audit", ["invoice"])
    users = ["carol", "dmitry", "erin", "farid"]
    for number in range(1, 49):
        user = users[number % len(users)]
        address = f"10.20.{number % 3}.{number % 50 + 1}"
        if number <= 12:
            as_app_user(connection, user, address,
                        f"INSERT INTO invoice VALUES ({number}, 'draft', {number * 125})")
        else:
            status = ["sent", "paid", "overdue", "void"][number % 4]
            as_app_user(connection, user, address,
                        f"UPDATE invoice SET status = '{status}', amount = amount + {number} "
                        f"WHERE id = {number % 12 + 1}")
    # Spread the invoice events over the last four weeks, a few per day.
    connection.execute("""
        UPDATE audit.events SET occurred_at = occurred_at - (id % 28) * interval '1 day'
                                                          - (id % 9) * interval '47 minutes'
        WHERE entity_type = 'public.invoice'""")
