"""history and revert of events that name a table by the name it had before ALTER TABLE ... RENAME."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

from auditctl.audit.history import record_history
from auditctl.audit.install import install
from auditctl.audit.outdated import regenerate_outdated_triggers
from auditctl.audit.revert import revert_event
from auditctl.errors import RevertRefusedError
from helpers import events, table_owner_dsn
from webhelpers import TOKEN, make_app

# How the rename is seen: (DDL capture, `maintain` run after the rename).
SCENARIOS = {
    "without-capture": (False, False),
    "without-capture-maintained": (False, True),
    "with-capture": (True, False),
}


@contextlib.contextmanager
def _installer_dsn(db, capture: bool) -> Iterator[str]:
    """Yield the superuser's DSN, whose install captures DDL, or a table owner's, whose install cannot."""
    if capture:
        yield db.dsn
    else:
        with table_owner_dsn(db) as dsn:
            yield dsn


@pytest.fixture(params=SCENARIOS.values(), ids=SCENARIOS.keys())
def renamed(db, request) -> Iterator[tuple[str, dict]]:
    """Audit actor, change actor 1, rename the table to performer; yield the DSN and the UPDATE event."""
    capture, maintain = request.param
    with _installer_dsn(db, capture) as dsn, psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE actor (actor_id integer PRIMARY KEY, first_name text, last_name text)")
        install(connection, "audit", ["actor"])
        connection.execute("INSERT INTO actor VALUES (1, 'Penelope', 'Guiness')")
        connection.execute("UPDATE actor SET last_name = 'Cruz' WHERE actor_id = 1")
        update = events(connection, where="action = 'UPDATE'")[-1]
        connection.execute("ALTER TABLE actor RENAME TO performer")
        if maintain:
            regenerate_outdated_triggers(connection, "audit")
        yield dsn, update


def test_history_old_name_points_to_new(renamed, cli):
    dsn, _update = renamed
    printed = cli("history", "actor", "1", dsn=dsn)
    as_json = cli("history", "actor", "1", "--format", "json", dsn=dsn)
    assert printed.exit_code == 0, printed.stderr
    text = " ".join(printed.stdout.split())
    assert "no longer exists" not in text
    assert "Table public.actor is now named public.performer." in text
    assert as_json.exit_code == 0, as_json.stderr
    history = json.loads(as_json.stdout)
    assert history["renamed_to"] == "public.performer"
    assert [event["action"] for event in history["events"]][:2] == ["INSERT", "UPDATE"]



def test_history_old_name_without_events(renamed, cli):
    dsn, _update = renamed
    printed = cli("history", "actor", "99", dsn=dsn)
    assert printed.exit_code == 0, printed.stderr
    text = " ".join(printed.stdout.split())
    assert "No events recorded for public.actor 99." in text
    assert ("Table public.actor is now named public.performer, and `auditctl history public.performer` with the same "
            "key lists the events recorded since.") in text

def test_history_new_name_lists_old_events(renamed, cli):
    dsn, _update = renamed
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("UPDATE performer SET first_name = 'Pen' WHERE actor_id = 1")
    printed = cli("history", "performer", "1", dsn=dsn)
    as_json = cli("history", "performer", "1", "--format", "json", dsn=dsn)
    assert printed.exit_code == 0, printed.stderr
    assert ("Events before the table was renamed public.performer are recorded under its former name "
            "public.actor.") in " ".join(printed.stdout.split())
    assert as_json.exit_code == 0, as_json.stderr
    history = json.loads(as_json.stdout)
    assert history["former_names"] == ["public.actor"]
    assert [event["action"] for event in history["events"]] == ["INSERT", "UPDATE", "UPDATE"]
    assert history["events"][-1]["changes"] == [{"column": "first_name", "old": "Penelope", "new": "Pen"}]


def test_query_new_name_lists_old_events(renamed, cli, request):
    dsn, _update = renamed
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("UPDATE performer SET first_name = 'Pen' WHERE actor_id = 1")
    result = cli("query", "--table", "performer", "--format", "json", dsn=dsn)
    assert result.exit_code == 0, result.stderr
    recorded = sorted((event["id"], event["action"]) for event in json.loads(result.stdout))
    # DDL capture records the rename as DDL of the table under its new name.
    expected = (["INSERT", "UPDATE", "DDL", "UPDATE"] if "with-capture" in request.node.callspec.id
                else ["INSERT", "UPDATE", "UPDATE"])
    assert [action for _id, action in recorded] == expected


def test_history_skips_new_table_under_old_name(renamed):
    dsn, _update = renamed
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE actor (actor_id integer PRIMARY KEY, first_name text, last_name text)")
        # Without DDL capture this installs the renamed table again first, which frees the old name.
        install(connection, "audit", ["actor"])
        connection.execute("INSERT INTO actor VALUES (1, 'Nick', 'Wahlberg')")
        connection.execute("UPDATE performer SET first_name = 'Pen' WHERE actor_id = 1")
        history = record_history(connection, "audit", "performer", ["1"])
        new_table = record_history(connection, "audit", "actor", ["1"])
    recorded = [(entry.event.entity_type, entry.event.action) for entry in history.entries]
    assert recorded == [("public.actor", "INSERT"), ("public.actor", "UPDATE"), ("public.performer", "UPDATE")]
    # Records are named by table name and key, so the new table's history starts with the old name's events.
    assert new_table.entries[-1].event.new == {"actor_id": 1, "first_name": "Nick", "last_name": "Wahlberg"}


def test_revert_acts_on_renamed_table(renamed, cli):
    dsn, update = renamed
    dry_run = cli("revert", str(update["id"]), "--dry-run", dsn=dsn)
    assert dry_run.exit_code == 0, dry_run.stderr
    assert "public.performer" in " ".join(dry_run.stdout.split())
    with psycopg.connect(dsn, autocommit=True) as connection:
        result = revert_event(connection, "audit", update["id"], user_id=None)
        row = connection.execute("SELECT first_name, last_name FROM performer WHERE actor_id = 1").fetchone()
        second_table = connection.execute("SELECT to_regclass('public.actor')").fetchone()[0]
    assert result.renamed_tables == {"public.actor": "public.performer"}
    assert row == ("Penelope", "Guiness")
    assert second_table is None


def test_revert_renamed_table_checks_columns(renamed, request):
    dsn, update = renamed
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("ALTER TABLE performer RENAME COLUMN last_name TO surname")
        if "with-capture" not in request.node.callspec.id:
            # Without DDL capture the log does not record the column rename.
            with pytest.raises(RevertRefusedError, match="column last_name of public.actor no longer exists"):
                revert_event(connection, "audit", update["id"], user_id=None)
            return
        revert_event(connection, "audit", update["id"], user_id=None)
        surname = connection.execute("SELECT surname FROM performer WHERE actor_id = 1").fetchone()[0]
    assert surname == "Guiness"


def test_status_counts_former_name_events(renamed, cli, request):
    dsn, _update = renamed
    # DDL capture adds the rename to performer's events and the CREATE TABLE to the new actor's.
    ddl_events = 1 if "with-capture" in request.node.callspec.id else 0
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("INSERT INTO performer VALUES (2, 'Nick', 'Wahlberg')")
        # A new table under the old name: its events are not the renamed table's.
        connection.execute("CREATE TABLE actor (actor_id integer PRIMARY KEY)")
        install(connection, "audit", ["actor"])
        connection.execute("INSERT INTO actor VALUES (7)")
    result = cli("status", "--format", "json", dsn=dsn)
    assert result.exit_code == 0, result.stderr
    counts = {t["table"]: t["events"] for t in json.loads(result.stdout)["tables"]}
    assert counts["public.performer"] == 3 + ddl_events
    assert counts["public.actor"] == 1 + ddl_events


def test_history_dropped_table_still_reported(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE actor (actor_id integer PRIMARY KEY, first_name text)")
        install(connection, "audit", ["actor"])
        connection.execute("INSERT INTO actor VALUES (1, 'Penelope')")
        connection.execute("ALTER TABLE actor RENAME TO performer")
        connection.execute("DROP TABLE performer")
        history = record_history(connection, "audit", "actor", ["1"])
    assert history.record.table is None
    assert history.record.renamed_to is None
    assert [entry.event.action for entry in history.entries] == ["INSERT"]


def test_history_page_names_new_table(renamed):
    dsn, _update = renamed
    with TestClient(make_app(dsn), base_url="https://testserver", follow_redirects=False) as client:
        logged_in = client.post("/login", data={"token": TOKEN, "next": "/"})
        assert logged_in.status_code == 303, logged_in.text
        html = client.get("/history?table=public.actor&entity=1").text
    assert "The table is now named public.performer." in html
    assert "no longer exists" not in html


@pytest.fixture(params=[False, True], ids=["without-capture", "with-capture"])
def renamed_then_written(db, request) -> Iterator[tuple[str, bool]]:
    """Audit actor, rename it to performer, insert a row; yield the DSN and whether DDL capture is on."""
    capture = request.param
    with _installer_dsn(db, capture) as dsn, psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE actor (actor_id integer PRIMARY KEY, first_name text)")
        install(connection, "audit", ["actor"])
        connection.execute("ALTER TABLE actor RENAME TO performer")
        connection.execute("INSERT INTO performer VALUES (1, 'Penelope')")
        yield dsn, capture


def test_status_names_name_recorded_under(renamed_then_written, cli):
    dsn, capture = renamed_then_written
    with psycopg.connect(dsn, autocommit=True) as connection:
        recorded_under = events(connection, where="action = 'INSERT'")[-1]["entity_type"]
    printed = cli("status", dsn=dsn)
    as_json = cli("status", "--format", "json", dsn=dsn)
    text = " ".join(printed.stdout.split())
    performer = next(t for t in json.loads(as_json.stdout)["tables"] if t["table"] == "public.performer")
    assert printed.exit_code == 0, printed.stderr
    if capture:
        assert recorded_under == "public.performer"
        assert performer["recorded_as"] is None
        assert "was renamed from" not in text
    else:
        assert recorded_under == "public.actor"
        assert performer["recorded_as"] == "public.actor"
        assert ("public.performer was renamed from public.actor, and its changes are recorded under the name "
                "public.actor until `auditctl install public.performer`") in text
        assert "generated for older columns" not in text
