"""Upgrading an installed audit schema to this version while the application writes."""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

from auditctl.audit.install import install
from auditctl.errors import DatabaseError
from helpers import events


def _install_older_log(db) -> None:
    """Audit tables a and b into a log from before schema version 8, with outdated triggers.

    Version 8 only changes collations, so running it again is harmless, and
    it locks the events table as a real upgrade does.
    """
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        connection.execute("CREATE TABLE b (id int PRIMARY KEY)")
        install(connection, "audit", ["a", "b"])
        connection.execute("DELETE FROM audit.schema_version WHERE version = 8")
        connection.execute("ALTER TABLE a ADD COLUMN note text")
        connection.execute("ALTER TABLE b ADD COLUMN note text")


def _wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the other session"
        time.sleep(0.05)


def _waits_for_lock(monitor: psycopg.Connection, pid: int) -> bool:
    row = monitor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


def test_upgrade_during_writes_no_deadlock(db):
    """A write that starts while install upgrades the schema commits, and install succeeds."""
    _install_older_log(db)

    outcome: dict[str, object] = {}
    with db.connect() as blocker, db.connect() as installer, db.connect() as writer, db.connect() as monitor:
        # A writer of table a holds it, so install stops at the first table lock it needs.
        blocker.execute("BEGIN")
        blocker.execute("LOCK TABLE a IN ROW EXCLUSIVE MODE")

        def run_install() -> None:
            try:
                outcome["install"] = install(installer, "audit", ["a", "b"])
            except Exception as exc:  # noqa: BLE001 - the test reports it below
                outcome["install"] = exc

        def run_write() -> None:
            try:
                with writer.transaction():
                    writer.execute("SELECT set_config('auditctl.user_id', 'during-upgrade', true)")
                    writer.execute("INSERT INTO b VALUES (1)")
                outcome["write"] = "committed"
            except psycopg.Error as exc:
                outcome["write"] = exc

        install_thread = threading.Thread(target=run_install)
        install_thread.start()
        _wait_until(lambda: _waits_for_lock(monitor, installer.info.backend_pid))

        write_thread = threading.Thread(target=run_write)
        write_thread.start()
        _wait_until(lambda: "write" in outcome or _waits_for_lock(monitor, writer.info.backend_pid))

        blocker.execute("COMMIT")
        install_thread.join(60)
        write_thread.join(60)
        recorded = events(writer, where="user_id = 'during-upgrade'")
        versions = {row[0] for row in writer.execute("SELECT version FROM audit.schema_version")}

    assert outcome["write"] == "committed"
    assert not isinstance(outcome["install"], Exception), outcome["install"]
    assert sorted(t.name for t in outcome["install"].installed) == ["a", "b"]
    assert [(e["action"], e["entity_id"]) for e in recorded] == [("INSERT", "1")]
    assert 8 in versions


def test_upgrade_lock_timeout_message(db):
    """An upgrade that cannot lock a table in time fails whole and names the cause."""
    _install_older_log(db)

    with db.connect() as writer, db.connect() as installer:
        writer.execute("BEGIN")
        writer.execute("INSERT INTO b VALUES (1)")
        with pytest.raises(DatabaseError) as failure:
            install(installer, "audit", ["a", "b"], lock_timeout_seconds=0.5)
        writer.execute("COMMIT")
        versions = {row[0] for row in installer.execute("SELECT version FROM audit.schema_version")}

    assert "Could not lock the audited tables to upgrade the audit schema" in str(failure.value)
    assert 8 not in versions


def test_status_names_pending_schema_upgrade(db, cli):
    _install_older_log(db)
    before = cli("status", dsn=db.dsn)
    dry_run = cli("install", "--dry-run", dsn=db.dsn)
    upgrade = cli("install", dsn=db.dsn)
    after = cli("status", dsn=db.dsn)
    status_json = cli("status", "--format", "json", dsn=db.dsn)

    assert before.exit_code == 0, before.stderr
    assert ("The audit schema is at version 7, older than version 8 of this auditctl. Run `auditctl install` "
            "to upgrade it") in " ".join(before.stdout.split())
    assert dry_run.stderr.startswith("The audit schema would be upgraded from version 7 to version 8. ")
    assert upgrade.exit_code == 0, upgrade.stderr
    assert "Upgraded the audit schema from version 7 to version 8." in upgrade.stdout
    assert "The audit schema is at version" not in after.stdout
    assert json.loads(status_json.stdout)["pending_schema_versions"] == []


def test_maintain_reports_schema_upgrade(db, cli):
    _install_older_log(db)
    result = cli("maintain", dsn=db.dsn)
    again = cli("maintain", dsn=db.dsn)

    assert result.exit_code == 0, result.stderr
    assert "Upgraded the audit schema from version 7 to version 8." in result.stdout
    assert "audit trigger of public.b" in result.stdout
    assert "Upgraded the audit schema" not in again.stdout


def test_quiet_maintain_reports_schema_upgrade(db, cli):
    _install_older_log(db)
    result = cli("--quiet", "maintain", dsn=db.dsn)
    again = cli("--quiet", "maintain", dsn=db.dsn)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "Upgraded the audit schema from version 7 to version 8."
    assert again.exit_code == 0, again.stderr
    assert again.stdout == ""


def test_upgrade_names_tables_left_outdated(db, cli):
    _install_older_log(db)
    upgrade = cli("install", dsn=db.dsn)
    named = cli("install", "a", dsn=db.dsn)

    assert upgrade.exit_code == 0, upgrade.stderr
    assert ("2 audited tables still run outdated audit triggers: public.a, public.b. Run `auditctl maintain` to "
            "regenerate them, or `auditctl install TABLE ...`.") in " ".join(upgrade.stdout.split())
    assert named.exit_code == 0, named.stderr
    assert "still run" not in named.stdout
