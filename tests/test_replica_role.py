"""session_replication_role = replica skips ordinary triggers: status reports it, --enable-always closes it."""

from __future__ import annotations

import psycopg
import pytest

from auditctl.audit.ddl import AutoAuditPolicy
from auditctl.audit.firing import BypassReason, ReplicaRole, TriggerFiring
from auditctl.audit.install import install
from auditctl.audit.status import collect_status
from helpers import events, table_owner_dsn


def _update_as_replica(connection: psycopg.Connection, statement: str) -> None:
    with connection.transaction():
        connection.execute("SET LOCAL session_replication_role = replica")
        connection.execute(statement)


def _firing_codes(connection: psycopg.Connection, table: str) -> set[str]:
    rows = connection.execute("SELECT tgenabled FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                              (table,)).fetchall()
    return {row[0] for row in rows}


@pytest.fixture
def item_db(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE item (id int PRIMARY KEY, name text)")
        connection.execute("INSERT INTO item VALUES (1, 'first')")
    return db


def test_replica_role_skips_default_triggers(item_db):
    with item_db.connect() as connection:
        install(connection, "audit", [], use_all=True)
        _update_as_replica(connection, "UPDATE item SET name = 'unseen'")
        recorded = events(connection)
        report = collect_status(connection, "audit")
    assert recorded == []
    assert report.enable_always is False
    assert report.skipped_under_replica == ["public.item"]
    assert report.tables[0].firing is TriggerFiring.ORIGIN
    assert ReplicaRole("postgres", BypassReason.SUPERUSER) in report.replica_roles


def test_enable_always_records_replica_updates(item_db):
    with item_db.connect() as connection:
        install(connection, "audit", [], use_all=True, enable_always=True)
        _update_as_replica(connection, "UPDATE item SET name = 'seen'")
        [update] = events(connection)
        report = collect_status(connection, "audit")
        codes = _firing_codes(connection, "item")
        event_triggers = connection.execute(
            "SELECT DISTINCT evtenabled FROM pg_event_trigger WHERE evtname LIKE 'auditctl%'").fetchall()
    assert update["action"] == "UPDATE"
    assert update["new_values"] == {"name": "seen"}
    assert codes == {"A"}
    assert event_triggers == [("A",)]
    assert report.enable_always is True
    assert report.skipped_under_replica == []
    assert report.tables[0].firing is TriggerFiring.ALWAYS
    assert report.tables[0].state.value == "audited"


def test_enable_always_kept_by_reinstall(item_db):
    with item_db.connect() as connection:
        install(connection, "audit", [], use_all=True, enable_always=True)
        again = install(connection, "audit", [], use_all=True)
        codes = _firing_codes(connection, "item")
    assert again.enable_always is True
    assert again.installed == []
    assert [t.name for t in again.unchanged] == ["item"]
    assert codes == {"A"}


def test_enable_always_covers_tables_not_named(item_db):
    with item_db.connect() as connection:
        connection.execute("CREATE TABLE other (id int PRIMARY KEY)")
        install(connection, "audit", [], use_all=True)
        install(connection, "audit", ["item"], enable_always=True)
        switched = _firing_codes(connection, "other")
        install(connection, "audit", [], enable_always=False)
        back = _firing_codes(connection, "other"), _firing_codes(connection, "item")
    assert switched == {"A"}
    assert back == ({"O"}, {"O"})


def test_enable_always_leaves_disabled_trigger_disabled(item_db):
    with item_db.connect() as connection:
        connection.execute("CREATE TABLE other (id int PRIMARY KEY)")
        install(connection, "audit", [], use_all=True)
        connection.execute("ALTER TABLE other DISABLE TRIGGER auditctl_update")
        install(connection, "audit", ["item"], enable_always=True)
        codes = _firing_codes(connection, "other")
    assert "D" in codes


def test_status_flags_trigger_not_always(item_db, cli):
    with item_db.connect() as connection:
        install(connection, "audit", [], use_all=True, enable_always=True)
        connection.execute("ALTER TABLE item ENABLE TRIGGER auditctl_update")
        report = collect_status(connection, "audit")
    printed = cli("status", dsn=item_db.dsn)
    fixed = cli("install", dsn=item_db.dsn)
    with item_db.connect() as connection:
        codes = _firing_codes(connection, "item")
    assert report.skipped_under_replica == ["public.item"]
    assert report.tables[0].firing is TriggerFiring.ORIGIN
    assert printed.exit_code == 0, printed.stderr
    assert "the audit trigger of 1 table is not ENABLE ALWAYS: public.item" in " ".join(printed.stdout.split())
    assert fixed.exit_code == 0, fixed.stderr
    assert codes == {"A"}


def test_enable_replica_trigger_reported_disabled(item_db):
    with item_db.connect() as connection:
        install(connection, "audit", [], use_all=True)
        connection.execute("ALTER TABLE item ENABLE REPLICA TRIGGER auditctl_update")
        report = collect_status(connection, "audit")
        again = install(connection, "audit", [], use_all=True)
        codes = _firing_codes(connection, "item")
    assert report.tables[0].state.value == "disabled"
    assert [t.name for t in again.reenabled] == ["item"]
    assert codes == {"O"}


def test_auto_audited_table_follows_enable_always(item_db):
    with item_db.connect() as connection:
        install(connection, "audit", [], auto_audit=AutoAuditPolicy(("public",)), enable_always=True)
        connection.execute("CREATE TABLE later (id int PRIMARY KEY)")
        codes = _firing_codes(connection, "later")
        _update_as_replica(connection, "INSERT INTO later VALUES (1)")
        recorded = [(e["action"], e["entity_type"]) for e in events(connection)]
    assert codes == {"A"}
    assert recorded == [("INSERT", "public.later")]


def test_replica_role_drop_still_rejected(item_db):
    with item_db.connect() as connection:
        install(connection, "audit", [], use_all=True, enable_always=True)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            _update_as_replica(connection, "DROP TABLE audit.events")
        exists = connection.execute("SELECT to_regclass('audit.events') IS NOT NULL").fetchone()[0]
    assert exists


def test_status_lists_parameter_grantee(item_db, cli):
    if item_db.server.version < 150000:
        pytest.skip("GRANT SET ON PARAMETER needs PostgreSQL 15")
    role = f"ops_{item_db.name}"
    with item_db.connect() as connection:
        install(connection, "audit", [], use_all=True)
        connection.execute(f"CREATE ROLE {role}")
        connection.execute(f"GRANT SET ON PARAMETER session_replication_role TO {role}")
    try:
        with item_db.connect() as connection:
            report = collect_status(connection, "audit")
        printed = cli("status", dsn=item_db.dsn)
        as_json = cli("status", "--format", "json", dsn=item_db.dsn)
    finally:
        with item_db.connect() as connection:
            connection.execute(f"REVOKE SET ON PARAMETER session_replication_role FROM {role}")
            connection.execute(f"DROP ROLE {role}")
    assert ReplicaRole(role, BypassReason.PARAMETER_GRANT) in report.replica_roles
    text = " ".join(printed.stdout.split())
    assert "Auditing can be bypassed" in text
    assert f"{role} (granted SET on session_replication_role)" in text
    assert "postgres (superuser)" in text
    assert f'"role": "{role}"' in as_json.stdout
    assert '"skipped_under_replica": [' in as_json.stdout


def test_cli_install_enable_always(item_db, cli):
    result = cli("install", "--all", "--enable-always", dsn=item_db.dsn)
    again = cli("install", "--all", dsn=item_db.dsn)
    status = cli("status", dsn=item_db.dsn)
    assert result.exit_code == 0, result.stderr
    assert "Audit triggers are ENABLE ALWAYS" in " ".join(result.stdout.split())
    assert "1 already up to date" in again.stdout
    assert "also record changes made under session_replication_role = replica" in " ".join(status.stdout.split())


def test_owner_warned_about_event_firing(db, cli):
    message = "The event triggers of DDL capture do not fire as the audit triggers now do (ENABLE ALWAYS)"
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE note (id int PRIMARY KEY)")
        first = cli("install", "--all", dsn=owner_dsn)
        capture = cli("install", dsn=db.dsn)
        by_owner = cli("install", "--all", "--enable-always", dsn=owner_dsn)
        matched = cli("install", dsn=db.dsn)
        owner_again = cli("install", "--all", dsn=owner_dsn)
    for result in (first, capture, by_owner, matched, owner_again):
        assert result.exit_code == 0, result.stderr
    assert message in " ".join(by_owner.stdout.split())
    assert "do not fire as" not in " ".join(matched.stdout.split())
    assert "do not fire as" not in " ".join(owner_again.stdout.split())


def test_refreshed_table_keeps_always_mode(item_db):
    with item_db.connect() as connection:
        install(connection, "audit", [], use_all=True, enable_always=True)
        connection.execute("ALTER TABLE item RENAME TO article")
        codes = _firing_codes(connection, "article")
        _update_as_replica(connection, "UPDATE article SET name = 'seen'")
        connection.execute("CREATE TABLE later_ddl (id int)")
        recorded = events(connection, where="action = 'UPDATE'")
        ddl = events(connection, where="action = 'DDL' AND details ->> 'command_tag' = 'CREATE TABLE'", system=True)
    assert codes == {"A"}
    assert [(e["entity_type"], e["new_values"]) for e in recorded] == [("public.article", {"name": "seen"})]
    assert len(ddl) == 1


def test_russian_status_of_21_tables(db, cli):
    # Russian takes the singular form for 21, so that form must not assume one table.
    names = [f"t{number}" for number in range(1, 22)]
    with db.connect() as connection:
        for name in names:
            connection.execute(f"CREATE TABLE {name} (id int PRIMARY KEY)")
        install(connection, "audit", [], use_all=True)
    russian = {"LANG": "ru_RU.UTF-8"}
    bypass = " ".join(cli("status", dsn=db.dsn, env=russian).stdout.split())
    with db.connect() as connection:
        install(connection, "audit", [], use_all=True, enable_always=True)
        for name in names:
            connection.execute(f"ALTER TABLE {name} ENABLE TRIGGER auditctl_update")
    not_always = " ".join(cli("status", dsn=db.dsn, env=russian).stdout.split())
    assert "replica не запускает триггеры аудита в 21 таблице." in bypass
    assert "но триггеры аудита в 21 таблице не в режиме ENABLE ALWAYS: public.t1," in not_always
