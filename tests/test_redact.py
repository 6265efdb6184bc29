"""auditctl redact: erasing one person's or one record's values from the log."""

from __future__ import annotations

import psycopg
import pytest

from auditctl.audit.install import install
from auditctl.audit.redact import REDACTED_MARKER, redact_entity, redact_user
from auditctl.audit.revert import revert_event
from auditctl.errors import PermissionDeniedError, RevertRefusedError
from helpers import as_app_user, events


@pytest.fixture
def app(db):
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE person (id text PRIMARY KEY, email text, name text);
            CREATE TABLE project (id integer PRIMARY KEY, owner_id text, title text);
        """)
        install(connection, "audit", [], use_all=True)
        as_app_user(connection, "u-1", "203.0.113.5",
                    "INSERT INTO person VALUES ('u-1', 'ann@example.org', 'Анна')",
                    "INSERT INTO project VALUES (1, 'u-1', 'Mars')")
        as_app_user(connection, "u-2", "198.51.100.1",
                    "UPDATE person SET email = 'ann@example.com' WHERE id = 'u-1'",
                    "UPDATE project SET title = 'Mars-2' WHERE id = 1")
    return db


def test_redact_user_replaces_id_and_address(app):
    with app.connect() as connection:
        result = redact_user(connection, "audit", "u-1", actor="dpo")
        rows = events(connection)
    assert result.events == 2
    made_by_user = [row for row in rows if row["user_id"] == REDACTED_MARKER]
    assert len(made_by_user) == 2
    assert all(row["ip_address"] is None for row in made_by_user)
    project_insert = rows[1]
    assert project_insert["new_values"]["owner_id"] == REDACTED_MARKER
    assert project_insert["new_values"]["title"] == "Mars"
    # Events of another user keep their user and address.
    assert [row["user_id"] for row in rows[2:4]] == ["u-2", "u-2"]
    assert str(rows[2]["ip_address"]) == "198.51.100.1"
    redact = rows[-1]
    assert redact["action"] == "REDACT"
    assert redact["user_id"] == "dpo"
    assert redact["details"] == {"scope": "user", "events": 2}
    assert "u-1" not in str(redact)


def test_redact_entity_replaces_values_but_keeps_key(app):
    with app.connect() as connection:
        result = redact_entity(connection, "audit", "person", ["u-1"], actor=None)
        rows = events(connection, where="entity_type = 'public.person' AND action <> 'REDACT'")
        redact = events(connection)[-1]
    assert result.events == 2
    assert rows[0]["new_values"] == {"id": "u-1", "email": REDACTED_MARKER, "name": REDACTED_MARKER}
    assert rows[1]["old_values"] == {"email": REDACTED_MARKER}
    assert rows[1]["new_values"] == {"email": REDACTED_MARKER}
    assert redact["action"] == "REDACT"
    assert redact["entity_id"] == "u-1"
    assert redact["details"] == {"scope": "entity", "events": 2}


def test_redact_dry_run_changes_nothing(app):
    with app.connect() as connection:
        before = events(connection)
        result = redact_user(connection, "audit", "u-1", actor=None, dry_run=True)
        assert events(connection) == before
    assert result.dry_run
    assert result.events == 2


def test_revert_refuses_redacted_values(app):
    with app.connect() as connection:
        redact_entity(connection, "audit", "person", ["u-1"], actor=None)
        update = events(connection, where="entity_type = 'public.person' AND action = 'UPDATE'")[0]
        with pytest.raises(RevertRefusedError, match="redacted"):
            revert_event(connection, "audit", update["id"], user_id=None)


def test_redact_needs_audit_schema_owner(app):
    with app.connect() as connection:
        connection.execute("CREATE ROLE clerk LOGIN")
        connection.execute("GRANT SELECT ON ALL TABLES IN SCHEMA audit TO clerk")
    try:
        params = psycopg.conninfo.conninfo_to_dict(app.dsn)
        params["user"] = "clerk"
        with psycopg.connect(**params, autocommit=True) as connection:
            with pytest.raises(PermissionDeniedError, match="only the owner of schema audit"):
                redact_user(connection, "audit", "u-1", actor=None)
    finally:
        with app.connect() as connection:
            connection.execute("DROP OWNED BY clerk")
            connection.execute("DROP ROLE clerk")


def test_redact_cli(app, cli):
    result = cli("redact", "--entity", "project", "1", "--actor", "dpo", dsn=app.dsn)
    assert result.exit_code == 0, result.stderr
    assert "Redacted 2 events" in result.stdout
    result = cli("redact", dsn=app.dsn)
    assert result.exit_code == 2
    assert "Give exactly one of --user ID and --entity TABLE ID" in result.stderr
