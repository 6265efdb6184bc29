"""Schema changes, permission changes and tampering recorded by event triggers."""

from __future__ import annotations

import json
import subprocess

import psycopg
import pytest

from auditctl.audit.install import install, uninstall
from auditctl.audit.status import collect_status
from helpers import SYSTEM_ACTIONS, events, table_owner_dsn


def _system(connection, where="true"):
    """DDL, permission and tampering events, without the install records."""
    return events(connection, where=f"({where}) AND ({SYSTEM_ACTIONS}) AND action <> 'AUDIT_INSTALL'",
                  system=True)


@pytest.fixture
def captured(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE item (id int PRIMARY KEY, name text)")
        install(connection, "audit", [], use_all=True)
    return db


def test_ddl_recorded_with_context(captured):
    with captured.connect() as connection:
        with connection.transaction():
            connection.execute("SET LOCAL auditctl.user_id = 'dba-1'")
            connection.execute("ALTER TABLE item ADD COLUMN price numeric")
        connection.execute("CREATE INDEX item_name_idx ON item (name)")
        alter, index = _system(connection, "action = 'DDL'")
    assert alter["action"] == "DDL"
    assert alter["user_id"] == "dba-1"
    assert alter["details"]["command_tag"] == "ALTER TABLE"
    assert alter["details"]["objects"][0]["identity"] == "public.item"
    assert "ADD COLUMN price" in alter["details"]["statement"]
    assert index["details"]["command_tag"] == "CREATE INDEX"


def test_drop_column_recorded_once(captured):
    with captured.connect() as connection:
        connection.execute("ALTER TABLE item ADD COLUMN doomed int")
        connection.execute("ALTER TABLE item DROP COLUMN doomed")
        ddl = _system(connection, "action = 'DDL'")
    assert [e["details"]["statement"] for e in ddl] == ["ALTER TABLE item ADD COLUMN doomed int",
                                                       "ALTER TABLE item DROP COLUMN doomed"]


def test_grant_recorded_as_permission_change(captured):
    with captured.connect() as connection:
        connection.execute("GRANT SELECT ON item TO PUBLIC")
        connection.execute("REVOKE SELECT ON item FROM PUBLIC")
        recorded = [(e["action"], e["details"]["command_tag"]) for e in _system(connection)]
    assert recorded == [("PERMISSION_CHANGE", "GRANT"), ("PERMISSION_CHANGE", "REVOKE")]


def test_drop_table_recorded(captured):
    with captured.connect() as connection:
        connection.execute("CREATE TABLE scratch (id int)")
        connection.execute("DROP TABLE scratch")
        drop = _system(connection)[-1]
    assert drop["details"]["command_tag"] == "DROP TABLE"
    assert {"type": "table", "identity": "public.scratch", "schema": "public"} in drop["details"]["objects"]


def test_disabling_audit_trigger_recorded(captured):
    with captured.connect() as connection:
        connection.execute("ALTER TABLE item DISABLE TRIGGER auditctl_update")
        connection.execute("ALTER TABLE item ENABLE REPLICA TRIGGER auditctl_insert")
        recorded = [e["action"] for e in _system(connection)]
    assert recorded == ["AUDIT_TRIGGER_DISABLED", "AUDIT_TRIGGER_DISABLED"]


@pytest.mark.parametrize("statement, command_tag", [
    ("ALTER TABLE item ADD COLUMN priority int NOT NULL DEFAULT 0", "ALTER TABLE"),
    ("DROP TABLE item", "DROP TABLE"),
], ids=["alter", "drop"])
def test_migration_named_in_ddl_event(captured, statement, command_tag):
    with captured.connect() as connection:
        connection.execute("""CREATE TABLE "_prisma_migrations" (id text PRIMARY KEY, migration_name text)""")
        install(connection, "audit", ["_prisma_migrations"])
        with connection.transaction():
            connection.execute("""INSERT INTO "_prisma_migrations" VALUES ('m1', '20261201000000_change_item')""")
            connection.execute(statement)
        ddl = _system(connection, f"action = 'DDL' AND details->>'command_tag' = '{command_tag}'")[-1]
    assert ddl["details"]["migration"]["ledger"] == "public._prisma_migrations"
    assert ddl["details"]["migration"]["row"]["migration_name"] == "20261201000000_change_item"


# The ledger table as Prisma creates it.
PRISMA_LEDGER = """CREATE TABLE "_prisma_migrations" (
    "id" VARCHAR(36) PRIMARY KEY, "checksum" VARCHAR(64) NOT NULL, "finished_at" TIMESTAMPTZ,
    "migration_name" VARCHAR(255) NOT NULL, "logs" TEXT, "rolled_back_at" TIMESTAMPTZ,
    "started_at" TIMESTAMPTZ NOT NULL DEFAULT now(), "applied_steps_count" INTEGER NOT NULL DEFAULT 0)"""
PRISMA_LOCK = 72707369


def _start_prisma_migration(connection, migration_id, name):
    """Record a migration as started the way prisma migrate deploy does: in a transaction of its own."""
    connection.execute("""INSERT INTO "_prisma_migrations" (id, checksum, migration_name) VALUES (%s, %s, %s)""",
                       (migration_id, "c" * 64, name))


def test_prisma_deploy_names_its_migration(captured):
    with captured.connect() as connection:
        connection.execute(PRISMA_LEDGER)
        connection.execute("CREATE TABLE scratch (id int)")
        # An applied migration and a failed one that was marked rolled back.
        connection.execute("""INSERT INTO "_prisma_migrations" (id, checksum, migration_name, finished_at)
                              VALUES ('m0', repeat('a', 64), '20261101000000_init', now() - interval '1 day')""")
        connection.execute("""INSERT INTO "_prisma_migrations" (id, checksum, migration_name, rolled_back_at)
                              VALUES ('m1', repeat('b', 64), '20261115000000_failed', now())""")
        connection.execute("SELECT pg_advisory_lock(%s)", (PRISMA_LOCK,))
        _start_prisma_migration(connection, "m2", "20261201000000_add_priority")
        with connection.transaction():
            connection.execute("ALTER TABLE item ADD COLUMN priority int NOT NULL DEFAULT 0")
            connection.execute("DROP TABLE scratch")
        connection.execute("""UPDATE "_prisma_migrations" SET finished_at = now(), applied_steps_count = 1
                              WHERE id = 'm2'""")
        connection.execute("SELECT pg_advisory_unlock(%s)", (PRISMA_LOCK,))
        ddl = _system(connection, "action = 'DDL' AND details->>'command_tag' IN ('ALTER TABLE', 'DROP TABLE')")
    assert [e["details"]["command_tag"] for e in ddl] == ["ALTER TABLE", "DROP TABLE"]
    for event in ddl:
        assert event["details"]["migration"]["ledger"] == "public._prisma_migrations"
        assert event["details"]["migration"]["row"]["migration_name"] == "20261201000000_add_priority"
        assert "finished_at" not in event["details"]["migration"]["row"]  # null, stripped


def test_ddl_beside_prisma_deploy_names_none(captured):
    with captured.connect() as prisma, captured.connect() as dba:
        prisma.execute(PRISMA_LEDGER)
        prisma.execute("SELECT pg_advisory_lock(%s)", (PRISMA_LOCK,))
        _start_prisma_migration(prisma, "m1", "20261201000000_add_priority")
        dba.execute("CREATE INDEX item_name_idx ON item (name)")
        prisma.execute("SELECT pg_advisory_unlock(%s)", (PRISMA_LOCK,))
        # The lock alone, with no migration started, names none either.
        prisma.execute("""UPDATE "_prisma_migrations" SET finished_at = now()""")
        prisma.execute("SELECT pg_advisory_lock(%s)", (PRISMA_LOCK,))
        prisma.execute("ALTER TABLE item ADD COLUMN note text")
        ddl = _system(prisma, "action = 'DDL' AND details->>'command_tag' IN ('CREATE INDEX', 'ALTER TABLE')")
    assert [e["details"]["command_tag"] for e in ddl] == ["CREATE INDEX", "ALTER TABLE"]
    assert all("migration" not in e["details"] for e in ddl)


def test_plain_drop_names_no_migration(captured):
    with captured.connect() as connection:
        connection.execute("CREATE INDEX item_name_idx ON item (name)")
        connection.execute("DROP INDEX item_name_idx")
        drop = _system(connection, "action = 'DDL' AND details->>'command_tag' = 'DROP INDEX'")[-1]
    assert "migration" not in drop["details"]


def test_rolled_back_migration_leaves_no_event(captured):
    with captured.connect() as connection:
        with pytest.raises(psycopg.errors.DivisionByZero):
            with connection.transaction():
                connection.execute("ALTER TABLE item ADD COLUMN doomed int")
                connection.execute("SELECT 1 / 0")
        assert _system(connection) == []


def test_own_changes_not_recorded_as_ddl(captured):
    with captured.connect() as connection:
        connection.execute("CREATE TABLE other (id int PRIMARY KEY)")
        before = len(_system(connection))
        install(connection, "audit", ["other"])
        uninstall(connection, "audit", ["other"])
        recorded = [e["action"] for e in events(connection, system=True)][-2:]
        after = len(_system(connection))
    assert recorded == ["AUDIT_INSTALL", "AUDIT_UNINSTALL"]
    assert after == before + 1  # only the AUDIT_UNINSTALL record


def test_drop_data_removes_event_triggers(captured):
    with captured.connect() as connection:
        uninstall(connection, "audit", [], use_all=True, drop_data=True)
        connection.execute("CREATE TABLE after_drop (id int)")
        left = connection.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'auditctl%'").fetchone()[0]
    assert left == 0


def test_status_reports_ddl_capture(captured):
    with captured.connect() as connection:
        assert collect_status(connection, "audit").ddl_capture is True
        connection.execute("ALTER EVENT TRIGGER auditctl_ddl DISABLE")
        assert collect_status(connection, "audit").ddl_capture is False


def test_superuser_install_names_ddl_capture(db, cli):
    first = cli("install", dsn=db.dsn)
    again = cli("install", dsn=db.dsn)
    assert first.exit_code == 0, first.stderr
    assert "DDL capture is on: event triggers now record schema changes, GRANT and REVOKE." \
        in " ".join(first.stdout.split())
    assert again.exit_code == 0, again.stderr
    assert "DDL capture is on: its event triggers, replaced with this version's, record schema changes" \
        in " ".join(again.stdout.split())


def test_non_superuser_install_skips_ddl_capture(db, cli):
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE note (id int PRIMARY KEY, body text)")
            result = install(connection, "audit", [], use_all=True)
            connection.execute("INSERT INTO note VALUES (1, 'x')")
            connection.execute("ALTER TABLE note ADD COLUMN extra int")
            report = collect_status(connection, "audit")
            recorded = [e["action"] for e in events(connection, system=True)]
        printed = cli("install", "--all", dsn=owner_dsn)
        status = cli("status", dsn=owner_dsn)
    assert result.ddl_capture is False
    assert report.ddl_capture is False
    assert recorded == ["AUDIT_INSTALL", "INSERT"]
    assert printed.exit_code == 0, printed.stderr
    assert "may not create event triggers" in " ".join(printed.stdout.split())
    assert "DDL capture: off" in status.stdout


def test_install_confirms_auto_audit_policy(captured, cli):
    turned_on = cli("install", "--auto-audit", "--auto-exclude", "tmp\\_%", dsn=captured.dsn)
    policy_unchanged = cli("install", "item", dsn=captured.dsn)
    turned_off = cli("install", "--no-auto-audit", dsn=captured.dsn)
    assert turned_on.exit_code == 0, turned_on.stderr
    assert "New tables in public are audited on creation, except names like tmp\\_%.\n" in turned_on.stdout
    assert policy_unchanged.exit_code == 0, policy_unchanged.stderr
    assert "audited on creation" not in policy_unchanged.stdout
    assert turned_off.exit_code == 0, turned_off.stderr
    assert "New tables are not audited on creation; `auditctl install TABLE` audits each one.\n" in turned_off.stdout


def test_new_tables_audited_by_policy(captured, cli):
    result = cli("install", "--auto-audit", "--auto-schema", "public", "--auto-exclude", "tmp\\_%", dsn=captured.dsn)
    assert result.exit_code == 0, result.stderr
    with captured.connect() as connection:
        connection.execute("CREATE SCHEMA other")
        connection.execute('CREATE TABLE "Invoice" (id int PRIMARY KEY, "apiToken" text, total int)')
        connection.execute("CREATE TABLE line (invoice int, no int, PRIMARY KEY (invoice, no))")
        connection.execute("CREATE TABLE tmp_scratch (id int PRIMARY KEY)")
        connection.execute("CREATE TABLE other.elsewhere (id int PRIMARY KEY)")
        with connection.transaction():
            connection.execute("SET LOCAL auditctl.user_id = 'u-9'")
            connection.execute("""INSERT INTO "Invoice" VALUES (1, 'secret', 10)""")
            connection.execute("""UPDATE "Invoice" SET total = 11""")
            connection.execute("INSERT INTO line VALUES (1, 2)")
            connection.execute("INSERT INTO tmp_scratch VALUES (1)")
            connection.execute("INSERT INTO other.elsewhere VALUES (1)")
        recorded = [(e["action"], e["entity_type"], e["entity_id"], e["user_id"]) for e in events(connection)]
        [insert] = events(connection, where="entity_type = 'public.Invoice' AND action = 'INSERT'")
        report = collect_status(connection, "audit")
        ddl_tags = [e["details"]["command_tag"] for e in _system(connection)]
        auto_installs = [e["details"] for e in events(connection, where="action = 'AUDIT_INSTALL'", system=True)
                         if e["details"].get("auto_audit")]
    assert recorded == [("INSERT", "public.Invoice", "1", "u-9"), ("UPDATE", "public.Invoice", "1", "u-9"),
                        ("INSERT", "public.line", "[1, 2]", "u-9")]
    assert auto_installs == [{"installed": ["public.Invoice"], "auto_audit": True},
                             {"installed": ["public.line"], "auto_audit": True}]
    assert insert["new_values"]["apiToken"] == "[masked]"
    assert "CREATE TRIGGER" not in ddl_tags
    states = {t.entity_type: t.state.value for t in report.tables}
    assert states["public.Invoice"] == "outdated"
    assert states["public.tmp_scratch"] == "not_audited"
    assert report.auto_audit.exclude == ("tmp\\_%",)

    again = cli("install", "Invoice", dsn=captured.dsn)
    assert again.exit_code == 0, again.stderr
    with captured.connect() as connection:
        assert {t.entity_type: t.state.value for t in collect_status(connection, "audit").tables}[
            "public.Invoice"] == "audited"
        assert cli("install", "--no-auto-audit", dsn=captured.dsn).exit_code == 0
        connection.execute("CREATE TABLE later (id int PRIMARY KEY)")
        connection.execute("INSERT INTO later VALUES (1)")
        assert events(connection, where="entity_type = 'public.later'") == []


def _assert_rejected(connection: psycopg.Connection, statement: str, named: str) -> None:
    """Run a DROP and check that the DDL event trigger rejected it with a message that names the fix."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught:
        connection.execute(statement)
    assert named in caught.value.diag.message_primary
    assert "part of the audit log kept by auditctl" in caught.value.diag.message_primary
    assert "auditctl uninstall" in caught.value.diag.message_hint


def _count_events(connection: psycopg.Connection) -> int:
    return connection.execute("SELECT count(*) FROM audit.events").fetchone()[0]


@pytest.mark.parametrize("statement, named", [
    ("DROP TABLE audit.events", "table audit.events"),
    ("DROP TABLE audit.events_default", "table audit.events_default"),
    ("DROP SCHEMA audit CASCADE", "schema audit"),
    ("DROP TABLE audit.audited_tables", "table audit.audited_tables"),
    ("DROP TABLE audit.settings", "table audit.settings"),
    ("DROP FUNCTION audit.log_event CASCADE", "function audit.log_event"),
    ("DROP INDEX audit.events_time_idx", "index audit.events_time_idx"),
    ("ALTER TABLE audit.audited_tables DROP CONSTRAINT audited_tables_hash_format", "audited_tables_hash_format"),
    ("DROP TRIGGER auditctl_update ON item", "trigger auditctl_update on public.item"),
], ids=["events", "default-partition", "schema", "registry", "settings", "function", "index", "constraint",
        "audit-trigger"])
def test_drop_of_audit_object_rejected(captured, statement, named):
    with captured.connect() as connection:
        connection.execute("INSERT INTO item VALUES (1, 'kept')")
        before = _count_events(connection)
        _assert_rejected(connection, statement, named)
        connection.execute("UPDATE item SET name = 'still audited'")
        after = _count_events(connection)
        states = {t.entity_type: t.state.value for t in collect_status(connection, "audit").tables}
    assert after == before + 1
    assert states["public.item"] == "audited"


def test_drop_of_trigger_function_rejected(captured):
    with captured.connect() as connection:
        function = connection.execute("SELECT function_name FROM audit.audited_tables").fetchone()[0]
        _assert_rejected(connection, f'DROP FUNCTION audit."{function}" CASCADE', f"audit.{function}")
        left = connection.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'item'::regclass").fetchone()[0]
    assert left > 0


def test_drop_of_month_partition_rejected(captured):
    with captured.connect() as connection:
        partition = connection.execute("""SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                                          WHERE i.inhparent = 'audit.events'::regclass AND c.relname <> 'events_default'
                                          ORDER BY 1 LIMIT 1""").fetchone()[0]
        _assert_rejected(connection, f"DROP TABLE audit.{partition}", f"audit.{partition}")
        _assert_rejected(connection, f"ALTER TABLE audit.events DETACH PARTITION audit.{partition}; "
                                     f"DROP TABLE audit.{partition}", f"audit.{partition}")
        attached = connection.execute("SELECT count(*) FROM pg_inherits WHERE inhrelid = %s::regclass",
                                      (f"audit.{partition}",)).fetchone()[0]
    assert attached == 1


def test_audited_table_drop_recorded(captured):
    with captured.connect() as connection:
        connection.execute("DROP TABLE item")
        drop = _system(connection)[-1]
    assert drop["action"] == "DDL"
    assert drop["details"]["command_tag"] == "DROP TABLE"
    assert {"type": "table", "identity": "public.item", "schema": "public"} in drop["details"]["objects"]


def test_ddl_objects_listed_once(captured):
    with captured.connect() as connection:
        connection.execute('CREATE TABLE "Invoice" (id serial PRIMARY KEY, total numeric)')
        [create] = _system(connection, "action = 'DDL'")
    identities = [item["identity"] for item in create["details"]["objects"]]
    assert identities[0] == 'public."Invoice_id_seq"'
    assert len(identities) == len(set(identities))
    assert 'public."Invoice"' in identities


def test_statement_secrets_replaced(captured):
    with captured.connect() as connection:
        connection.execute("CREATE FOREIGN DATA WRAPPER plain_wrapper")
        connection.execute("CREATE SERVER remote FOREIGN DATA WRAPPER plain_wrapper OPTIONS (host '127.0.0.1')")
        connection.execute("CREATE USER MAPPING FOR CURRENT_USER SERVER remote "
                           "OPTIONS (user 'reader', password 'Mapping-Pw-1')")
        connection.execute("ALTER USER MAPPING FOR CURRENT_USER SERVER remote OPTIONS (SET password E'Esc\\'-Pw-4')")
        connection.execute("ALTER USER MAPPING FOR CURRENT_USER SERVER remote OPTIONS (SET password $x$Dollar$-Pw-5$x$)")
        connection.execute("CREATE SUBSCRIPTION copy_sub CONNECTION "
                           "'host=127.0.0.1 port=1 user=reader password=Conninfo-Pw-2' "
                           "PUBLICATION nothing WITH (connect = false)")
        connection.execute("ALTER SUBSCRIPTION copy_sub CONNECTION 'postgresql://reader:Uri-Pw-3@127.0.0.1:1/app'")
        connection.execute("ALTER SUBSCRIPTION copy_sub SET (slot_name = NONE)")
        connection.execute("DROP SUBSCRIPTION copy_sub")
        statements = [event["details"]["statement"] for event in _system(connection, "action = 'DDL'")]
    assert "OPTIONS (user 'reader', password '********')" in statements[2]
    assert "OPTIONS (SET password '********')" in statements[3]
    assert "OPTIONS (SET password '********')" in statements[4]
    assert "user=reader password=********' PUBLICATION" in statements[5]
    assert "postgresql://reader:********@127.0.0.1:1/app" in statements[6]
    assert not [statement for statement in statements if "-Pw-" in statement]


def _trigger_functions(connection):
    return connection.execute(
        """SELECT count(*) FROM pg_proc WHERE pronamespace = 'audit'::regnamespace
           AND obj_description(oid, 'pg_proc') LIKE 'auditctl trigger function%'""").fetchone()[0]


def test_dropped_table_leaves_registry(captured):
    with captured.connect() as connection:
        connection.execute("CREATE TABLE other (id int PRIMARY KEY)")
        install(connection, "audit", ["other"])
        connection.execute("DROP TABLE item")
        registered = [row[0] for row in connection.execute("SELECT table_name FROM audit.audited_tables")]
        functions = _trigger_functions(connection)
        report = collect_status(connection, "audit")
    assert registered == ["public.other"]
    assert functions == 1
    assert [table.entity_type for table in report.tables] == ["public.other"]
    assert report.orphaned_functions == []


def test_rolled_back_drop_keeps_registry(captured):
    with captured.connect() as connection:
        connection.execute("BEGIN")
        connection.execute("DROP TABLE item")
        connection.execute("ROLLBACK")
        registered = [row[0] for row in connection.execute("SELECT table_name FROM audit.audited_tables")]
        functions = _trigger_functions(connection)
        connection.execute("INSERT INTO item VALUES (1, 'a')")
        recorded = events(connection)
    assert registered == ["public.item"]
    assert functions == 1
    assert [event["action"] for event in recorded] == ["INSERT"]


def test_drop_owned_by_unrelated_role_works(captured):
    role = f"temp_{captured.name}"
    with captured.connect() as connection:
        connection.execute(f"CREATE ROLE {role}")
        connection.execute(f"GRANT CREATE ON SCHEMA public TO {role}")
        connection.execute(f"GRANT SELECT ON item TO {role}")
        with connection.transaction():
            connection.execute(f"SET LOCAL ROLE {role}")
            connection.execute("CREATE TABLE scratch (id int PRIMARY KEY)")
        install(connection, "audit", ["scratch"])
        connection.execute(f"DROP OWNED BY {role}")
        connection.execute(f"DROP ROLE {role}")
        scratch = connection.execute("SELECT to_regclass('public.scratch')").fetchone()[0]
        report = collect_status(connection, "audit")
    assert scratch is None
    assert {t.entity_type: t.state.value for t in report.tables}["public.item"] == "audited"


def test_uninstall_still_drops_audit_objects(captured):
    with captured.connect() as connection:
        connection.execute("CREATE TABLE other (id int PRIMARY KEY)")
        install(connection, "audit", ["other"])
        removed = uninstall(connection, "audit", ["other"])
        left = connection.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'other'::regclass").fetchone()[0]
        dropped = uninstall(connection, "audit", [], use_all=True, drop_data=True)
        schema = connection.execute("SELECT to_regnamespace('audit')").fetchone()[0]
    assert removed.removed == ["public.other"]
    assert left == 0
    assert dropped.dropped_schema
    assert schema is None


def test_reinstall_after_drop_data_guards_again(captured, cli):
    result = cli("uninstall", "--all", "--drop-data", dsn=captured.dsn)
    assert result.exit_code == 0, result.stderr
    assert "the column rules and the HMAC key of hashed columns" in result.stdout
    with captured.connect() as connection:
        connection.execute("CREATE TABLE after_drop (id int PRIMARY KEY)")
        install(connection, "audit", ["after_drop"])
        _assert_rejected(connection, "DROP TABLE audit.events", "audit.events")


def test_clean_restore_of_audited_database(captured, pg):
    if pg.bindir is None:
        pytest.skip("pg_dump and pg_restore of the server are needed")
    with captured.connect() as connection:
        connection.execute("INSERT INTO item VALUES (1, 'before dump')")
    dump = subprocess.run([str(pg.bindir / "pg_dump"), "-Fc", "-d", captured.dsn], capture_output=True, check=True)
    with captured.connect() as connection:
        connection.execute("INSERT INTO item VALUES (2, 'after dump')")
    restored = subprocess.run([str(pg.bindir / "pg_restore"), "--clean", "--if-exists",
                               "-d", captured.dsn], input=dump.stdout, capture_output=True, check=False)
    # NOTE: pg_restore --clean also tries to drop the primary key and indexes
    # of each partition, and PostgreSQL rejects that because they belong to
    # the partitioned table's. Those errors leave the restore complete.
    errors = [line for line in restored.stderr.decode().splitlines() if "ERROR" in line]
    assert [line for line in errors if "kept by auditctl" in line] == []
    assert all("cannot drop" in line for line in errors), errors
    with captured.connect() as connection:
        items = connection.execute("SELECT id FROM item ORDER BY id").fetchall()
        logged = [e["entity_id"] for e in events(connection)]
        triggers = connection.execute(
            "SELECT evtname, evtenabled FROM pg_event_trigger WHERE evtname LIKE 'auditctl%' ORDER BY 1").fetchall()
        _assert_rejected(connection, "DROP TABLE audit.events", "audit.events")
    assert items == [(1,)]
    assert logged == ["1"]
    assert triggers == [("auditctl_ddl", "O"), ("auditctl_drop", "O")]


def test_table_audited_on_creation_is_refreshed(captured, cli):
    assert cli("install", "--auto-audit", "--auto-schema", "public", dsn=captured.dsn).exit_code == 0
    with captured.connect() as connection:
        connection.execute('CREATE TABLE account (id int PRIMARY KEY, "passwordHash" text, note text)')
        connection.execute('ALTER TABLE account RENAME COLUMN "passwordHash" TO digest')
        connection.execute("ALTER TABLE account RENAME TO member")
        connection.execute("INSERT INTO member VALUES (1, 'h1', 'n')")
        [insert] = events(connection, where="action = 'INSERT'")
        refreshed = [e["details"] for e in events(connection, where="action = 'AUDIT_TRIGGER_REFRESHED'", system=True)]
        report = collect_status(connection, "audit")
    assert insert["entity_type"] == "public.member"
    assert insert["new_values"] == {"id": 1, "digest": "[masked]", "note": "n"}
    assert [d["table"] for d in refreshed] == ["public.account", "public.member"]
    assert {t.entity_type: t.state.value for t in report.tables}["public.member"] == "outdated"


# Who runs each install in turn. The owner owns the audit schema and the table.
INSTALL_SEQUENCES = {
    "owner-superuser-owner": (["owner", "superuser", "owner"], True),
    "owner-only": (["owner", "owner"], False),
    "superuser-only": (["superuser", "superuser"], True),
}


@pytest.mark.parametrize(("sequence", "capture"), INSTALL_SEQUENCES.values(), ids=INSTALL_SEQUENCES.keys())
def test_install_and_status_agree_on_capture(db, cli, sequence, capture):
    with table_owner_dsn(db) as owner_dsn:
        dsns = {"owner": owner_dsn, "superuser": db.dsn}
        with psycopg.connect(dsns[sequence[0]], autocommit=True) as connection:
            connection.execute("CREATE TABLE note (id int PRIMARY KEY, body text)")
        for role in sequence:
            printed = cli("install", "--all", dsn=dsns[role])
            assert printed.exit_code == 0, printed.stderr
        again = cli("install", "note", dsn=dsns[sequence[-1]])
        status = cli("status", dsn=dsns[sequence[-1]])
        with psycopg.connect(dsns[sequence[-1]], autocommit=True) as connection:
            report = collect_status(connection, "audit")
            recorded = events(connection, where="action = 'AUDIT_INSTALL'", system=True)[-1]
    text = " ".join(printed.stdout.split())
    assert report.ddl_capture is capture
    assert recorded["details"]["ddl_capture"] is capture
    assert [t.state.value for t in report.tables] == ["audited"]
    assert "0 installed or updated, 1 already up to date" in again.stdout
    assert ("DDL capture: on" in status.stdout) is capture
    assert ("may not create event triggers" in text) is (not capture)
    assert ("installed earlier by a superuser" in text) is (capture and sequence[-1] == "owner")


def test_status_flags_outdated_ddl_capture(captured, cli):
    with captured.connect() as connection:
        assert collect_status(connection, "audit").ddl_capture_outdated is False
        # As left by an install of an auditctl that did not label its event triggers.
        connection.execute("COMMENT ON EVENT TRIGGER auditctl_ddl IS NULL")
        assert collect_status(connection, "audit").ddl_capture_outdated is True
    result = cli("status", dsn=captured.dsn)
    assert result.exit_code == 0, result.stderr
    assert ("The functions of DDL capture differ from those this version of auditctl installs; run `auditctl "
            "install` once as a superuser to replace them.") in " ".join(result.stdout.split())
    assert json.loads(cli("status", "--format", "json", dsn=captured.dsn).stdout)["ddl_capture_outdated"] is True
    with captured.connect() as connection:
        install(connection, "audit", [], use_all=True)
        assert collect_status(connection, "audit").ddl_capture_outdated is False


@pytest.fixture
def project(captured):
    """A quoted PascalCase table with a serial key and a user trigger, and a partitioned table."""
    with captured.connect() as connection:
        connection.execute("""
            CREATE TABLE "Project" (id serial PRIMARY KEY, name text);
            CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
            CREATE TRIGGER project_touch BEFORE UPDATE ON "Project" FOR EACH ROW EXECUTE FUNCTION touch();
            CREATE TABLE "Measure" (id int, taken date) PARTITION BY RANGE (taken);
            CREATE VIEW project_names AS SELECT name FROM "Project";
        """)
    return captured


@pytest.mark.parametrize("statement, entity_type", [
    ('ALTER TABLE "Project" ADD COLUMN budget numeric', "public.Project"),
    ('CREATE INDEX project_name_idx ON "Project" (name)', "public.Project"),
    ("""COMMENT ON COLUMN "Project".name IS 'shown to users'""", "public.Project"),
    ('ALTER SEQUENCE "Project_id_seq" RESTART 10', "public.Project"),
    ('ALTER TABLE item ADD COLUMN project int REFERENCES "Project"', "public.item"),
    ('DROP TRIGGER project_touch ON "Project"', "public.Project"),
    ('CREATE POLICY project_all ON "Project" USING (true)', "public.Project"),
    ("""CREATE TABLE measure_2026 PARTITION OF "Measure" FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')""",
     "public.Measure"),
    ('DROP TABLE "Project" CASCADE', "public.Project"),
    ('DROP TABLE "Project", item CASCADE', None),
    ("CREATE SEQUENCE loose_seq", None),
    ("CREATE VIEW item_names AS SELECT name FROM item", None),
    ('GRANT SELECT ON "Project" TO PUBLIC', None),
], ids=["alter", "index", "comment-column", "owned-sequence", "foreign-key", "drop-trigger", "policy", "partition",
        "drop-table", "drop-two-tables", "sequence", "view", "grant"])
def test_ddl_names_its_one_table(project, statement, entity_type):
    with project.connect() as connection:
        connection.execute(statement)
        recorded = _system(connection, "action IN ('DDL', 'PERMISSION_CHANGE')")[-1]
    assert recorded["details"]["statement"] == statement
    assert recorded["entity_type"] == entity_type
    assert recorded["entity_id"] is None


def test_query_table_finds_its_ddl(project, cli):
    with project.connect() as connection:
        connection.execute('ALTER TABLE "Project" ADD COLUMN budget numeric')
        connection.execute('CREATE INDEX project_name_idx ON "Project" (name)')
        connection.execute("ALTER TABLE item ADD COLUMN note text")
    result = cli("query", "--table", "Project", "--action", "DDL", "--format", "json", dsn=project.dsn)
    assert result.exit_code == 0, result.stderr
    found = [row["details"]["command_tag"] for row in json.loads(result.stdout)]
    assert found == ["CREATE INDEX", "ALTER TABLE", "CREATE TRIGGER", "CREATE TABLE"]


def test_query_table_finds_ddl_before_rename(project, cli):
    with project.connect() as connection:
        install(connection, "audit", ["Project"])
        connection.execute('ALTER TABLE "Project" ADD COLUMN budget numeric')
        connection.execute('ALTER TABLE "Project" RENAME TO "Venture"')
    result = cli("query", "--table", "Venture", "--action", "DDL", "--format", "json", dsn=project.dsn)
    assert result.exit_code == 0, result.stderr
    found = [(row["entity_type"], row["details"]["statement"]) for row in json.loads(result.stdout)]
    assert found[:2] == [("public.Venture", 'ALTER TABLE "Project" RENAME TO "Venture"'),
                         ("public.Project", 'ALTER TABLE "Project" ADD COLUMN budget numeric')]
    assert len(found) == 4


def test_query_table_finds_dropped_table_ddl(project, cli):
    with project.connect() as connection:
        connection.execute('DROP TABLE "Project" CASCADE')
    result = cli("query", "--table", "Project", "--format", "json", dsn=project.dsn)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)[0]["details"]["command_tag"] == "DROP TABLE"


def test_status_counts_ddl_of_table(project):
    with project.connect() as connection:
        install(connection, "audit", ["Project"])
        connection.execute("""INSERT INTO "Project" (name) VALUES ('a'), ('b')""")
        connection.execute('ALTER TABLE "Project" ADD COLUMN budget numeric')
        connection.execute("CREATE VIEW item_names AS SELECT name FROM item")
        report = collect_status(connection, "audit")
        ddl = _system(connection, "action = 'DDL' AND entity_type = 'public.Project'")
        unnamed = events(connection, where="entity_type IS NULL", system=True)
    counts = {table.entity_type: table.events for table in report.tables}
    assert [e["details"]["command_tag"] for e in ddl] == ["CREATE TABLE", "CREATE TRIGGER", "ALTER TABLE"]
    # A table's events are its row changes and the DDL recorded on it.
    assert counts["public.Project"] == 2 + len(ddl)
    assert report.total_events == sum(counts.values()) + len(unnamed)


def test_revert_of_ddl_event_refused(project, cli):
    with project.connect() as connection:
        connection.execute('ALTER TABLE "Project" ADD COLUMN budget numeric')
        ddl = _system(connection, "action = 'DDL'")[-1]
    assert ddl["entity_type"] == "public.Project"
    result = cli("revert", str(ddl["id"]), dsn=project.dsn)
    assert result.exit_code != 0
    assert f"Event {ddl['id']} is DDL, not a row change" in result.stderr
    assert "Traceback" not in result.stderr
