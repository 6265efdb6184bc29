"""Installing, repeating, upgrading and removing the audit triggers."""

from __future__ import annotations

import json

import psycopg
import pytest

from auditctl.audit.install import install, uninstall
from auditctl.audit.status import TableState, collect_status
from auditctl.audit.rules import Rule
from auditctl.audit.triggers import TRIGGER_NAMES
from auditctl.errors import InvalidArgumentError, TableNotFoundError
from helpers import events, table_owner_dsn

# Names that need quoting; the last is 63 bytes, PostgreSQL's limit.
AWKWARD_NAMES = ["User", "order", "user", "with space", 'quo"te', "Заказ", "x" * 63]


def _create_awkward_tables(connection: psycopg.Connection) -> None:
    connection.execute('CREATE SCHEMA "Sales Dept"')
    for name in AWKWARD_NAMES:
        quoted = '"' + name.replace('"', '""') + '"'
        connection.execute(f'CREATE TABLE "Sales Dept".{quoted} ("Id" integer PRIMARY KEY, "createdAt" text)')


def test_install_twice_changes_nothing(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE item (id integer PRIMARY KEY, name text)")
        first = install(connection, "audit", [], use_all=True)
        second = install(connection, "audit", [], use_all=True)
        functions = connection.execute(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'audit'::regnamespace").fetchone()[0]
    assert [t.name for t in first.installed] == ["item"]
    assert second.installed == []
    assert [t.name for t in second.unchanged] == ["item"]
    # create_partitions, log_event, summarize_large_values, table_layout, follow_renames,
    # put_truncate_triggers, six for DDL capture and refresh after ALTER, one trigger function;
    # capture_drop lives in the guard schema.
    assert functions == 13


def test_install_only_named_tables(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")
        install(connection, "audit", ["b"])
        connection.execute("INSERT INTO a VALUES (1); INSERT INTO b VALUES (1)")
        assert [e["entity_type"] for e in events(connection)] == ["public.b"]


def test_install_exclude(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")
        result = install(connection, "audit", [], use_all=True, exclude=["a"])
    assert [t.name for t in result.installed] == ["b"]


def test_unknown_table_changes_nothing(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        with pytest.raises(TableNotFoundError, match="nosuch"):
            install(connection, "audit", ["a", "nosuch"])
        schema = connection.execute("SELECT to_regnamespace('audit')").fetchone()[0]
    assert schema is None


def test_names_and_all_are_exclusive(db):
    with db.connect() as connection:
        with pytest.raises(InvalidArgumentError):
            install(connection, "audit", ["a"], use_all=True)


def test_dry_run_executes_nothing(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        result = install(connection, "audit", [], use_all=True, dry_run=True)
        schema = connection.execute("SELECT to_regnamespace('audit')").fetchone()[0]
    assert schema is None
    text = "\n".join(result.statements)
    assert "CREATE TABLE \"audit\".events" in text
    assert "CREATE OR REPLACE TRIGGER auditctl_update" in text


def test_awkward_names_are_audited(db):
    with db.connect() as connection:
        _create_awkward_tables(connection)
        result = install(connection, "audit", [], use_all=True)
        for name in AWKWARD_NAMES:
            quoted = '"' + name.replace('"', '""') + '"'
            connection.execute(f'INSERT INTO "Sales Dept".{quoted} VALUES (1, \'now\')')
        recorded = {e["entity_type"] for e in events(connection)}
        function_names = connection.execute(
            "SELECT function_name FROM audit.audited_tables").fetchall()
    assert len(result.installed) == len(AWKWARD_NAMES)
    assert recorded == {f"Sales Dept.{name}" for name in AWKWARD_NAMES}
    assert len({row[0] for row in function_names}) == len(AWKWARD_NAMES)


def test_long_names_sharing_a_prefix_do_not_collide(db):
    prefix = "Ж" * 30  # 60 bytes of UTF-8
    with db.connect() as connection:
        connection.execute(f'CREATE TABLE "{prefix}a" (id int PRIMARY KEY)')
        connection.execute(f'CREATE TABLE "{prefix}b" (id int PRIMARY KEY)')
        install(connection, "audit", [], use_all=True)
        connection.execute(f'INSERT INTO "{prefix}a" VALUES (1)')
        connection.execute(f'INSERT INTO "{prefix}b" VALUES (2)')
        recorded = [(e["entity_type"], e["entity_id"]) for e in events(connection)]
    assert recorded == [(f"public.{prefix}a", "1"), (f"public.{prefix}b", "2")]


def test_custom_schema_name(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        install(connection, "Audit Log", [], use_all=True)
        connection.execute("INSERT INTO a VALUES (1)")
        assert len(events(connection, schema="Audit Log")) == 1


def test_partitioned_table_audited_as_parent(db):
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE pay (id int, paid_on date, amount numeric, PRIMARY KEY (id, paid_on))
                PARTITION BY RANGE (paid_on);
            CREATE TABLE pay_2024 PARTITION OF pay FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
            CREATE TABLE pay_2025 PARTITION OF pay FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
        """)
        result = install(connection, "audit", [], use_all=True)
        connection.execute("INSERT INTO pay VALUES (1, '2024-05-01', 10)")
        connection.execute("UPDATE pay SET amount = 11 WHERE id = 1")
        # A partition created after install inherits the trigger.
        connection.execute("CREATE TABLE pay_2026 PARTITION OF pay FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
        connection.execute("INSERT INTO pay VALUES (2, '2026-02-01', 5)")
        recorded = [(e["action"], e["entity_type"], e["entity_id"]) for e in events(connection)]
    assert [t.name for t in result.installed] == ["pay"]
    assert recorded == [("INSERT", "public.pay", '[1, "2024-05-01"]'),
                        ("UPDATE", "public.pay", '[1, "2024-05-01"]'),
                        ("INSERT", "public.pay", '[2, "2026-02-01"]')]


def test_search_path_and_shadowing_cannot_subvert_trigger(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        install(connection, "audit", [], use_all=True)
        connection.execute("""
            CREATE SCHEMA evil;
            CREATE FUNCTION evil.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"x": 1}'::jsonb $$;
            CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE sql AS $$ SELECT 'forged' $$;
            CREATE TABLE evil.events (id int);
        """)
        connection.execute("SET search_path = evil, public")
        connection.execute("INSERT INTO a VALUES (1)")
        connection.execute("RESET search_path")
        [event] = events(connection)
        evil_rows = connection.execute("SELECT count(*) FROM evil.events").fetchone()[0]
    assert event["new_values"] == {"id": 1}
    assert event["user_id"] is None
    assert evil_rows == 0


def test_trigger_functions_are_security_definer_with_fixed_path(db):
    # create_partitions runs as the installing role; summarize_large_values,
    # table_layout, follow_renames, put_truncate_triggers,
    # prisma_migration_in_progress and table_of_object are helpers that only
    # definer functions, install and status call. All seven fix search_path too.
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        install(connection, "audit", [], use_all=True)
        rows = connection.execute("""
            SELECT proname, prosecdef, proconfig FROM pg_proc
            WHERE pronamespace IN ('audit'::regnamespace, 'auditctl_guard'::regnamespace)
              AND proname NOT IN ('create_partitions', 'summarize_large_values', 'table_layout',
                                  'follow_renames', 'put_truncate_triggers', 'prisma_migration_in_progress',
                                  'table_of_object')""").fetchall()
    assert "capture_drop" in {name for name, _definer, _config in rows}
    for name, definer, config in rows:
        assert definer, name
        assert config[0] == "search_path=pg_catalog, pg_temp", name
        # The functions that swap triggers after DDL also keep their NOTICEs from the client.
        assert config[1:] in ([], ["client_min_messages=warning"]), name


def test_app_role_cannot_touch_log(db):
    with db.connect() as connection:
        connection.execute(f"""
            CREATE TABLE a (id int PRIMARY KEY, v text);
            DROP ROLE IF EXISTS app_{db.name};
            CREATE ROLE app_{db.name} LOGIN;
            GRANT ALL ON a TO app_{db.name};
        """)
        install(connection, "audit", [], use_all=True)
    app_dsn = db.server.dsn_for(db.name).replace("user=postgres", f"user=app_{db.name}")
    try:
        with psycopg.connect(app_dsn, autocommit=True) as app:
            app.execute("INSERT INTO a VALUES (1, 'x')")
            app.execute("UPDATE a SET v = 'y'")
            app.execute("SELECT audit.log_event('LOGIN', 'u-1')")
            for statement in ("UPDATE audit.events SET user_id = 'forged'", "DELETE FROM audit.events",
                              "TRUNCATE audit.events", "INSERT INTO audit.events (action, db_user) VALUES ('X', 'y')",
                              "SELECT * FROM audit.events"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute(statement)
        with db.connect() as connection:
            recorded = [(e["action"], e["db_user"]) for e in events(connection)]
        assert recorded == [("INSERT", f"app_{db.name}"), ("UPDATE", f"app_{db.name}"),
                            ("LOGIN", f"app_{db.name}")]
    finally:
        with db.connect() as connection:
            connection.execute(f"DROP OWNED BY app_{db.name}; DROP ROLE app_{db.name}")


def test_uninstall_keeps_log_unless_drop_data(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        install(connection, "audit", [], use_all=True)
        connection.execute("INSERT INTO a VALUES (1)")
        result = uninstall(connection, "audit", ["a"])
        connection.execute("INSERT INTO a VALUES (2)")
        assert result.removed == ["public.a"]
        assert len(events(connection)) == 1
        dropped = uninstall(connection, "audit", [], use_all=True, drop_data=True)
        schema = connection.execute("SELECT to_regnamespace('audit')").fetchone()[0]
    assert dropped.dropped_schema
    assert schema is None


def test_owner_drop_data_keeps_superuser_ddl(db, cli):
    """The log owner cannot drop a superuser's DDL capture, so uninstall --drop-data names the role to run it as."""
    with table_owner_dsn(db) as owner_dsn:
        owner = psycopg.conninfo.conninfo_to_dict(owner_dsn)["user"]
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        installed = cli("install", "a", dsn=owner_dsn)
        with_ddl = cli("install", dsn=db.dsn)
        by_owner = cli("uninstall", "--all", "--drop-data", dsn=owner_dsn)
        with db.connect() as connection:
            superuser = connection.execute("SELECT current_user").fetchone()[0]
            audit_triggers = connection.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'a'::regclass").fetchone()[0]
        by_superuser = cli("uninstall", "--all", "--drop-data", dsn=db.dsn)
        with db.connect() as connection:
            event_triggers = connection.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0]

    assert installed.exit_code == 0, installed.stderr
    assert with_ddl.exit_code == 0, with_ddl.stderr
    assert by_owner.exit_code != 0
    assert (f"Role {owner} may not drop the event triggers of DDL capture, which superuser {superuser} installed. "
            "Run `auditctl uninstall --all --drop-data` as a superuser.") in " ".join(by_owner.stderr.split())
    assert audit_triggers == 4
    assert by_superuser.exit_code == 0, by_superuser.stderr
    assert event_triggers == 0


def test_drop_data_requires_all(db):
    with db.connect() as connection:
        with pytest.raises(InvalidArgumentError, match="--all"):
            uninstall(connection, "audit", ["a"], drop_data=True)


def test_status_reports_states(db):
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE good (id int PRIMARY KEY); CREATE TABLE off (id int PRIMARY KEY);
            CREATE TABLE stale (id int PRIMARY KEY); CREATE TABLE gone (id int PRIMARY KEY);
            CREATE TABLE never (id int);
        """)
        install(connection, "audit", ["good", "off", "stale", "gone"])
        connection.execute("ALTER TABLE off DISABLE TRIGGER auditctl_update")
        # A changed primary key makes the DDL event trigger put the interim
        # trigger on the table, which status reports as outdated.
        connection.execute("ALTER TABLE stale DROP CONSTRAINT stale_pkey")
        with connection.transaction():
            # The DDL event trigger rejects dropping an audit trigger outside auditctl's own transactions.
            connection.execute("SET LOCAL auditctl.internal = 'on'")
            connection.execute("DROP TRIGGER auditctl_update ON gone")
        connection.execute("INSERT INTO good VALUES (1), (2)")
        report = collect_status(connection, "audit")
    states = {t.entity_type: t.state for t in report.tables}
    assert states == {"public.good": TableState.AUDITED, "public.off": TableState.DISABLED,
                      "public.stale": TableState.OUTDATED, "public.gone": TableState.MISSING,
                      "public.never": TableState.NOT_AUDITED}
    counts = {t.entity_type: t.events for t in report.tables}
    assert counts["public.good"] == 2
    # Disabling a trigger and dropping a key are events of the table they change.
    assert counts["public.off"] == 1
    assert counts["public.stale"] == 1
    with db.connect() as connection:
        system = [e["action"] for e in events(connection, system=True) if e["entity_type"] is None]
    assert system == ["AUDIT_INSTALL", "AUDIT_TRIGGER_REFRESHED"]
    assert report.total_events == 2 + 2 + len(system)
    assert report.log_bytes > 0


def test_reinstall_fixes_outdated_trigger(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int, code text)")
        install(connection, "audit", ["a"])
        connection.execute("ALTER TABLE a ADD PRIMARY KEY (id)")
        again = install(connection, "audit", ["a"])
        connection.execute("INSERT INTO a VALUES (5, 'x')")
        report = collect_status(connection, "audit")
        [event] = events(connection)
    assert [t.name for t in again.installed] == ["a"]
    assert report.tables[0].state is TableState.AUDITED
    assert event["entity_id"] == "5"


def test_earlier_trigger_layout_is_outdated(db):
    """A row-level UPDATE trigger, as template 1 made, is reported outdated and replaced by install."""
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY, code text)")
        install(connection, "audit", ["a"])
        function = connection.execute(
            "SELECT tgfoid::regproc::text FROM pg_trigger WHERE tgname = 'auditctl_update'").fetchone()[0]
        with connection.transaction():
            connection.execute("SET LOCAL auditctl.internal = 'on'")
            connection.execute("DROP TRIGGER auditctl_update ON a")
            connection.execute(f"CREATE TRIGGER auditctl_row AFTER UPDATE ON a FOR EACH ROW EXECUTE FUNCTION {function}()")
        before = collect_status(connection, "audit")
        install(connection, "audit", ["a"])
        after = collect_status(connection, "audit")
        names = {row[0] for row in connection.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'a'::regclass")}
    assert before.tables[0].state is TableState.OUTDATED
    assert after.tables[0].state is TableState.AUDITED
    assert names == {"auditctl_insert", "auditctl_update", "auditctl_delete", "auditctl_truncate"}


def test_partitions_created_ahead_with_default(db):
    with db.connect() as connection:
        install(connection, "audit", [])
        names = [row[0] for row in connection.execute("""
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'audit.events'::regclass ORDER BY 1""")]
    assert "events_default" in names
    assert len([n for n in names if n.startswith("events_p")]) == 4


def test_name_columns_compare_bytes_in_partitions(db):
    with db.connect() as connection:
        install(connection, "audit", [])
        connection.execute("SELECT audit.create_partitions(8)")
        collations = connection.execute("""
            SELECT a.attname, array_agg(DISTINCT a.attcollation::regcollation::text), count(*)
              FROM pg_partition_tree('audit.events') AS t
              JOIN pg_attribute AS a ON a.attrelid = t.relid
             WHERE a.attname IN ('user_id', 'db_user', 'application_name', 'action', 'entity_type', 'entity_id')
             GROUP BY 1""").fetchall()
        tables = connection.execute("SELECT count(*) FROM pg_partition_tree('audit.events')").fetchone()[0]
        plan = connection.execute("""EXPLAIN (COSTS OFF) SELECT id FROM audit.events_default
                                     WHERE entity_type = 'public.t' AND entity_id LIKE '[1,%'""").fetchall()
    assert len(collations) == 6
    for column, names, count in collations:
        assert names == ['"C"'], column
        assert count == tables, column
    assert "Index Cond" in "\n".join(line for (line,) in plan)


def test_default_partition_rows_move_into_new_partition(db):
    with db.connect() as connection:
        install(connection, "audit", [])
        connection.execute("""INSERT INTO audit.events (occurred_at, action, db_user)
                              VALUES (now() + interval '6 months', 'FUTURE_EVENT', 'x')""")
        assert connection.execute("SELECT count(*) FROM audit.events_default").fetchone()[0] == 1
        created = connection.execute("SELECT audit.create_partitions(8)").fetchone()[0]
        in_default = connection.execute("SELECT count(*) FROM audit.events_default").fetchone()[0]
        total = connection.execute("SELECT count(*) FROM audit.events WHERE action = 'FUTURE_EVENT'").fetchone()[0]
    assert created == 5
    assert in_default == 0
    assert total == 1


def test_log_event_function(db):
    with db.connect() as connection:
        install(connection, "audit", [])
        with connection.transaction():
            connection.execute("SET LOCAL auditctl.user_id = 'cl-7'")
            connection.execute("SET LOCAL auditctl.ip_address = '198.51.100.4'")
            connection.execute("SELECT audit.log_event('login_failed', details => '{\"reason\": \"bad password\"}')")
        connection.execute("SELECT audit.log_event('EXPORT', 'cl-8', ip_address => 'not-an-ip')")
        for bad in ("'INSERT'", "'bad action'", "NULL"):
            with pytest.raises(psycopg.errors.InvalidParameterValue):
                connection.execute(f"SELECT audit.log_event({bad}, 'u')")
        first, second = events(connection)
    assert (first["action"], first["user_id"], str(first["ip_address"])) == ("LOGIN_FAILED", "cl-7", "198.51.100.4")
    assert first["details"] == {"reason": "bad password"}
    assert (second["action"], second["ip_address"], second["details"]) == ("EXPORT", None,
                                                                            {"ip_address_raw": "not-an-ip"})


def test_dry_run_sql_installs_what_install_would(db, pg):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY, secret_note text)")
        plan = install(connection, "audit", [], use_all=True, dry_run=True,
                       column_rules=[("a.secret_note", Rule.EXCLUDE)])
        for statement in plan.statements:
            connection.execute(statement)
        report = collect_status(connection, "audit")
        again = install(connection, "audit", [], use_all=True)
        connection.execute("INSERT INTO a VALUES (1, 'x')")
        [event] = events(connection)
    assert report.tables[0].state is TableState.AUDITED
    assert again.installed == []
    assert event["new_values"] == {"id": 1}


def test_install_enables_disabled_trigger(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        install(connection, "audit", ["a"])
        connection.execute("ALTER TABLE a DISABLE TRIGGER auditctl_update")
        result = install(connection, "audit", ["a"])
        connection.execute("INSERT INTO a VALUES (1)")
        recorded = events(connection)
    assert [t.name for t in result.reenabled] == ["a"]
    assert len(recorded) == 1


def _drop_unseen(connection, table):
    """Drop a table as on a database without DDL capture, where the registry keeps its row."""
    with connection.transaction():
        connection.execute("SELECT set_config('auditctl.internal', 'on', true)")
        connection.execute(f"DROP TABLE {table}")


def test_dropped_table_is_named_and_forgotten(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE keep (id int PRIMARY KEY); CREATE TABLE gone (id int PRIMARY KEY)")
        install(connection, "audit", [], use_all=True)
        _drop_unseen(connection, "gone")
        report = collect_status(connection, "audit")
        result = install(connection, "audit", ["keep"])
        after = collect_status(connection, "audit")
        functions = connection.execute(
            """SELECT count(*) FROM pg_proc WHERE pronamespace = 'audit'::regnamespace
               AND obj_description(oid, 'pg_proc') LIKE 'auditctl trigger function%'""").fetchone()[0]
    assert {t.entity_type: t.state for t in report.tables}["public.gone"] is TableState.MISSING
    assert result.forgotten == ["public.gone"]
    assert [t.entity_type for t in after.tables] == ["public.keep"]
    assert after.orphaned_functions == []
    assert functions == 1


def test_maintain_names_forgotten_table(db, cli):
    with db.connect() as connection:
        connection.execute("CREATE TABLE keep (id int PRIMARY KEY); CREATE TABLE gone (id int PRIMARY KEY)")
        install(connection, "audit", [], use_all=True)
        _drop_unseen(connection, "gone")
        # An added column leaves keep's generated trigger outdated, so that maintain installs it again.
        with connection.transaction():
            connection.execute("SELECT set_config('auditctl.internal', 'on', true)")
            connection.execute("ALTER TABLE keep ADD COLUMN note text")
    maintained = cli("maintain", dsn=db.dsn)
    with db.connect() as connection:
        after = collect_status(connection, "audit")
    assert maintained.exit_code == 0, maintained.stderr
    assert "Regenerated the outdated audit trigger of public.keep." in maintained.stdout
    assert ("Table public.gone no longer exists; its trigger function and registry entry were removed."
            in " ".join(maintained.stdout.split()))
    assert [t.entity_type for t in after.tables] == ["public.keep"]


def test_uninstall_names_dropped_table(db, cli):
    with db.connect() as connection:
        connection.execute("CREATE TABLE gone (id int PRIMARY KEY); CREATE TABLE kept (id int PRIMARY KEY)")
        install(connection, "audit", ["gone", "kept"])
        _drop_unseen(connection, "gone")
        result = uninstall(connection, "audit", ["gone"])
        report = collect_status(connection, "audit")
    assert result.removed == ["public.gone"]
    assert result.already_dropped == ["public.gone"]
    assert [t.entity_type for t in report.tables if t.state is not TableState.NOT_AUDITED] == ["public.kept"]


def test_uninstall_dropped_table_message(db, cli):
    with db.connect() as connection:
        connection.execute("CREATE TABLE gone (id int PRIMARY KEY); CREATE TABLE kept (id int PRIMARY KEY)")
        install(connection, "audit", ["gone", "kept"])
        _drop_unseen(connection, "gone")
    dropped = cli("uninstall", "gone", dsn=db.dsn)
    kept = cli("uninstall", "kept", dsn=db.dsn)
    assert dropped.exit_code == 0, dropped.stderr
    assert " ".join(dropped.stdout.split()) == ("Table public.gone no longer exists, so only its entry in the list "
                                                "of audited tables was removed.")
    assert kept.exit_code == 0, kept.stderr
    assert kept.stdout.strip() == "Audit trigger removed from public.kept"


def test_all_skips_other_audit_schemas(db):
    # Without event triggers, which a second set would duplicate, a role may keep two audit schemas.
    with table_owner_dsn(db) as owner_dsn, psycopg.connect(owner_dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        install(connection, "audit", [])
        second = install(connection, "audit2", [], use_all=True)
    assert [t.entity_type for t in second.installed] == ["public.a"]


def test_second_schema_cannot_take_table(db):
    with table_owner_dsn(db) as owner_dsn, psycopg.connect(owner_dsn, autocommit=True) as connection:
        connection.execute('CREATE TABLE "User" (id int PRIMARY KEY)')
        install(connection, "audit", ["User"])
        with pytest.raises(InvalidArgumentError) as error:
            install(connection, "Audit", ["User"])
        functions = connection.execute(
            """SELECT DISTINCT tgfoid::regproc::text FROM pg_trigger
               WHERE tgrelid = '"User"'::regclass AND NOT tgisinternal""").fetchall()
        second = connection.execute("SELECT to_regnamespace('\"Audit\"')").fetchone()[0]
    assert str(error.value) == ('Table public.User is already audited into the audit schema "audit", not "Audit": '
                                'use --schema "audit", or first run `auditctl uninstall public.User --schema "audit"`.')
    assert functions == [('audit."public_User_6b55d381f2d3"',)]
    assert second is None


def test_second_ddl_capture_is_refused(db, cli):
    with db.connect() as connection:
        connection.execute('CREATE TABLE "User" (id int PRIMARY KEY); CREATE TABLE "WorkStage" (id int PRIMARY KEY)')
        install(connection, "audit", ["User"])
    result = cli("install", "WorkStage", "--schema", "Audit", dsn=db.dsn)
    with db.connect() as connection:
        second = connection.execute("SELECT to_regnamespace('\"Audit\"')").fetchone()[0]
        event_triggers = connection.execute("SELECT count(*) FROM pg_event_trigger").fetchone()[0]
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        'Error: The audit schema "audit" already records schema changes in this database, and a second audit '
        'schema "Audit" would record each of them twice: use --schema "audit", or remove that log first with '
        '`auditctl uninstall --all --drop-data --schema "audit"`.')
    assert second is None
    assert event_triggers == 2


def test_uninstall_keeps_other_schema_triggers(db):
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as owner:
            owner.execute("CREATE TABLE a (id int PRIMARY KEY)")
        with db.connect() as connection:
            install(connection, "audit", ["a"])
            # As an earlier auditctl let it happen: a second schema took over the triggers of the same names.
            connection.execute("SET auditctl.internal = 'on'")
            for name in TRIGGER_NAMES:
                connection.execute(f"DROP TRIGGER IF EXISTS {name} ON a")
            connection.execute("RESET auditctl.internal")
        with psycopg.connect(owner_dsn, autocommit=True) as owner:
            install(owner, "second", ["a"])
        with db.connect() as connection:
            uninstall(connection, "audit", [], use_all=True, drop_data=True)
            connection.execute("INSERT INTO a VALUES (1)")
            recorded = events(connection, schema="second")
    assert [(e["action"], e["entity_type"]) for e in recorded] == [("INSERT", "public.a")]


def test_app_role_grants(db, cli):
    role = f"app2_{db.name}"
    with db.connect() as connection:
        connection.execute(f"CREATE TABLE a (id int PRIMARY KEY); CREATE ROLE {role} LOGIN; GRANT ALL ON a TO {role}")
        install(connection, "audit", [], use_all=True)
        connection.execute(f"GRANT INSERT, UPDATE, DELETE ON audit.events TO {role}")
    try:
        result = cli("install", "--app-role", role, dsn=db.dsn)
        again = cli("install", "--app-role", role, dsn=db.dsn)
        with psycopg.connect(db.dsn.replace("user=postgres", f"user={role}"), autocommit=True) as app:
            app.execute("INSERT INTO a VALUES (1)")
            app.execute("SELECT audit.log_event('LOGIN', 'u-1')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("DELETE FROM audit.events")
        missing = cli("install", "--app-role", "no_such_role", dsn=db.dsn)
        with db.connect() as connection:
            connection.execute(f"CREATE ROLE super_{role} SUPERUSER")
        superuser = cli("install", "--app-role", f"super_{role}", dsn=db.dsn)
    finally:
        with db.connect() as connection:
            connection.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")
            connection.execute(f"DROP OWNED BY super_{role}; DROP ROLE IF EXISTS super_{role}")
    assert result.exit_code == 0, result.stderr
    assert f"Role {role} can write audited tables" in " ".join(result.stdout.split())
    assert "REVOKE ALL ON" in result.stdout
    assert again.exit_code == 0
    assert missing.exit_code != 0
    assert "Role 'no_such_role' does not exist" in missing.stderr
    assert f"super_{role} is a superuser" in " ".join(superuser.stdout.split())


def test_reinstall_after_drop_and_recreate(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE t (id int PRIMARY KEY)")
        install(connection, "audit", ["t"])
        _drop_unseen(connection, "t")
        connection.execute("CREATE TABLE t (id int PRIMARY KEY, note text)")
        result = install(connection, "audit", ["t"])
        connection.execute("INSERT INTO t VALUES (1, 'x')")
        [event] = events(connection)
    assert result.forgotten == ["public.t"]
    assert event["new_values"] == {"id": 1, "note": "x"}


def test_owner_of_existing_schema_installs(db, cli):
    with table_owner_dsn(db) as owner_dsn:
        owner = psycopg.conninfo.conninfo_to_dict(owner_dsn)["user"]
        with db.connect() as connection:
            connection.execute(f"REVOKE CREATE ON DATABASE {db.name} FROM {owner}")
            connection.execute(f"CREATE SCHEMA audit AUTHORIZATION {owner}")
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE note (id int PRIMARY KEY)")
        result = cli("install", "--all", dsn=owner_dsn)
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("INSERT INTO note VALUES (1)")
            [event] = events(connection)
    assert result.exit_code == 0, result.stderr
    assert event["entity_type"] == "public.note"


def test_schema_without_create_privilege_fails(db, cli):
    with table_owner_dsn(db) as owner_dsn:
        owner = psycopg.conninfo.conninfo_to_dict(owner_dsn)["user"]
        with db.connect() as connection:
            connection.execute(f"REVOKE CREATE ON DATABASE {db.name} FROM {owner}")
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE note (id int PRIMARY KEY)")
        result = cli("install", "--all", dsn=owner_dsn)
        with db.connect() as connection:
            schema = connection.execute("SELECT to_regnamespace('audit')").fetchone()[0]
    message = result.stderr.strip()
    assert result.exit_code == 1
    assert len(message.splitlines()) == 1, message
    assert f"GRANT CREATE ON DATABASE {db.name} TO {owner}" in message
    assert f"CREATE SCHEMA audit AUTHORIZATION {owner}" in message
    assert schema is None


def test_schema_of_another_owner_fails(db, cli):
    with table_owner_dsn(db) as owner_dsn:
        owner = psycopg.conninfo.conninfo_to_dict(owner_dsn)["user"]
        with db.connect() as connection:
            connection.execute("CREATE SCHEMA audit")
        result = cli("install", dsn=owner_dsn)
        with db.connect() as connection:
            tables = connection.execute(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'audit'::regnamespace").fetchone()[0]
    message = result.stderr.strip()
    assert result.exit_code == 1
    assert len(message.splitlines()) == 1, message
    assert f"owned by role postgres, and role {owner} is not a member of it" in message
    assert tables == 0


def test_superuser_first_install_in_owner_schema_fails(db, cli):
    with table_owner_dsn(db) as owner_dsn:
        owner = psycopg.conninfo.conninfo_to_dict(owner_dsn)["user"]
        with db.connect() as connection:
            connection.execute(f"CREATE SCHEMA audit AUTHORIZATION {owner}")
        refused = cli("install", dsn=db.dsn)
        with db.connect() as connection:
            tables = connection.execute(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'audit'::regnamespace").fetchone()[0]
        by_owner = cli("install", dsn=owner_dsn)
        by_superuser = cli("install", dsn=db.dsn)
        owner_status = cli("status", dsn=owner_dsn)
    message = refused.stderr.strip()
    assert refused.exit_code == 1
    assert len(message.splitlines()) == 1, message
    assert f"the first install must run as {owner}" in message
    assert tables == 0
    assert by_owner.exit_code == 0, by_owner.stderr
    assert by_superuser.exit_code == 0, by_superuser.stderr
    assert owner_status.exit_code == 0, owner_status.stdout + owner_status.stderr


def test_superuser_additions_belong_to_owner(db, cli):
    with table_owner_dsn(db) as owner_dsn:
        owner = psycopg.conninfo.conninfo_to_dict(owner_dsn)["user"]
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE first (id int PRIMARY KEY)")
        by_owner = cli("install", "--all", dsn=owner_dsn)
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE later (id int PRIMARY KEY, note text)")
        by_superuser = cli("install", "later", dsn=db.dsn)
        maintained = cli("maintain", "--ahead", "8", dsn=db.dsn)
        with db.connect() as connection:
            relations = connection.execute(
                """SELECT relname, relowner::regrole::text FROM pg_class
                   WHERE relnamespace = 'audit'::regnamespace AND relkind IN ('r', 'p')""").fetchall()
            [function_owner] = connection.execute(
                """SELECT p.proowner::regrole::text FROM audit.audited_tables AS t
                   JOIN pg_proc AS p ON p.proname = t.function_name AND p.pronamespace = 'audit'::regnamespace
                   WHERE t.table_id = 'later'::regclass""").fetchone()
        again = cli("install", "later", "--mask-column", "later.note", dsn=owner_dsn)
        removed = cli("uninstall", "later", dsn=owner_dsn)
    assert by_owner.exit_code == 0, by_owner.stderr
    assert by_superuser.exit_code == 0, by_superuser.stderr
    assert maintained.exit_code == 0, maintained.stderr
    assert len([name for name, _ in relations if name.startswith("events_p")]) >= 9
    assert {name: role for name, role in relations if role != owner} == {}
    assert function_owner == owner
    assert again.exit_code == 0, again.stderr
    assert removed.exit_code == 0, removed.stderr


def test_status_advises_on_disabled_and_missing(db, cli):
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE good (id int PRIMARY KEY); CREATE TABLE off (id int PRIMARY KEY);
            CREATE TABLE gone (id int PRIMARY KEY);
        """)
        install(connection, "audit", ["good", "off", "gone"])
        connection.execute("ALTER TABLE off DISABLE TRIGGER auditctl_update")
        with connection.transaction():
            connection.execute("SET LOCAL auditctl.internal = 'on'")
            connection.execute("DROP TRIGGER auditctl_update ON gone")
    broken = cli("status", dsn=db.dsn)
    broken_json = cli("status", "--format", "json", dsn=db.dsn)
    fixed = cli("install", "off", "gone", dsn=db.dsn)
    healthy = cli("status", dsn=db.dsn)
    text = " ".join(broken.stdout.split())
    assert broken.exit_code == 3
    assert ("public.off: auditing of UPDATE is disabled, so these changes are not recorded, but INSERT, DELETE, "
            "and TRUNCATE still are. Run `auditctl install public.off` to enable its audit triggers again.") in text
    assert ("public.gone: its audit trigger is missing, so its changes are not recorded. "
            "Run `auditctl install public.gone` to create it again.") in text
    assert "public.good:" not in text
    assert broken.stderr.strip() == "Error: 2 audited tables need attention; see the advice above."
    assert broken_json.exit_code == 3
    assert json.loads(broken_json.stdout)["needs_attention"] == ["public.gone", "public.off"]
    assert broken_json.stderr.strip() == ("Error: 2 audited tables need attention; see needs_attention in the JSON "
                                          "output.")
    assert fixed.exit_code == 0, fixed.stderr
    assert healthy.exit_code == 0, healthy.stderr


DISABLED_TRIGGER_CASES = {
    "update": (["auditctl_update"], ["UPDATE"],
               "public.item: auditing of UPDATE is disabled, so these changes are not recorded, but INSERT, DELETE, "
               "and TRUNCATE still are. Run `auditctl install public.item` to enable its audit triggers again."),
    "insert-and-delete": (["auditctl_insert", "auditctl_delete"], ["INSERT", "DELETE"],
                          "public.item: auditing of INSERT and DELETE is disabled, so these changes are not recorded, "
                          "but UPDATE and TRUNCATE still are."),
    "all": (["USER"], ["INSERT", "UPDATE", "DELETE", "TRUNCATE"],
            "public.item: its audit trigger is disabled, so its changes are not recorded. "
            "Run `auditctl install public.item` to enable it again."),
}


@pytest.mark.parametrize(("triggers", "unrecorded", "advice"), DISABLED_TRIGGER_CASES.values(),
                         ids=DISABLED_TRIGGER_CASES.keys())
def test_status_names_unrecorded_actions(db, cli, triggers, unrecorded, advice):
    with db.connect() as connection:
        connection.execute("CREATE TABLE item (id int PRIMARY KEY, note text)")
        install(connection, "audit", ["item"])
        for trigger in triggers:
            connection.execute(f"ALTER TABLE item DISABLE TRIGGER {trigger}")
        connection.execute("INSERT INTO item VALUES (1, 'a')")
        connection.execute("UPDATE item SET note = 'b'")
        connection.execute("DELETE FROM item")
        connection.execute("TRUNCATE item")
        recorded = [event["action"] for event in events(connection)]

    result = cli("status", dsn=db.dsn)
    as_json = cli("status", "--format", "json", dsn=db.dsn)

    [table] = json.loads(as_json.stdout)["tables"]
    assert result.exit_code == 3
    assert advice in " ".join(result.stdout.split())
    assert table["unrecorded_actions"] == unrecorded
    assert recorded == [action for action in ["INSERT", "UPDATE", "DELETE", "TRUNCATE"] if action not in unrecorded]


def test_status_unrecorded_actions_in_russian(db, cli):
    with db.connect() as connection:
        connection.execute("CREATE TABLE item (id int PRIMARY KEY)")
        install(connection, "audit", ["item"])
        connection.execute("ALTER TABLE item DISABLE TRIGGER auditctl_update")
    result = cli("status", dsn=db.dsn, env={"LANG": "ru_RU.UTF-8", "COLUMNS": "200"})
    assert result.exit_code == 3
    assert ("public.item: аудит UPDATE отключён, поэтому эти изменения не записываются, а INSERT, DELETE и TRUNCATE "
            "по-прежнему записываются. Выполните `auditctl install public.item`, чтобы снова включить триггеры "
            "аудита таблицы.") in " ".join(result.stdout.split())


def test_status_exit_for_outdated_columns(db, cli):
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute('CREATE TABLE "Session" (id int PRIMARY KEY, "userAgent" text)')
            install(connection, "audit", ["Session"], column_rules=[('"Session"."userAgent"', Rule.MASK)])
            connection.execute('ALTER TABLE "Session" ADD COLUMN note text')
        plain = cli("status", dsn=owner_dsn)
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute('ALTER TABLE "Session" ADD COLUMN "apiToken" text')
            connection.execute('ALTER TABLE "Session" RENAME COLUMN "userAgent" TO ua')
        exposed = cli("status", dsn=owner_dsn)
    text = " ".join(exposed.stdout.split())
    assert plain.exit_code == 0, plain.stderr
    assert "older columns, rules or auditctl" in " ".join(plain.stdout.split())
    assert exposed.exit_code == 3
    assert ("public.Session: column apiToken looks like a secret, but its values are stored in clear until "
            "`auditctl install public.Session` or the next `auditctl maintain` masks it.") in text
    assert ("public.Session: column ua was renamed from userAgent, and its values are stored in clear until "
            "`auditctl install public.Session` or the next `auditctl maintain` protects it as userAgent "
            "was.") in text
    assert "older columns, rules or auditctl" not in text


def test_maintain_reports_masked_new_column(db, cli):
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE account (id int PRIMARY KEY, name text)")
            install(connection, "audit", ["account"])
            connection.execute("ALTER TABLE account ADD COLUMN api_token text")
        result = cli("maintain", dsn=owner_dsn)
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "Regenerated the outdated audit trigger of public.account." in text
    assert "Column public.account.api_token looks like a secret and is masked" in text


def test_dry_run_summary_on_stderr(db, cli):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY); CREATE TABLE b (id int PRIMARY KEY)")
        install(connection, "audit", ["a"])
    superuser = cli("install", "--all", "--dry-run", dsn=db.dsn)
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE c (id int PRIMARY KEY)")
        owner = cli("install", "c", "--dry-run", "--schema", "audit_c", dsn=owner_dsn)
    assert superuser.exit_code == 0, superuser.stderr
    assert superuser.stderr.strip() == ("Dry run: 1 to install or update, 1 already up to date. "
                                        "Event triggers (DDL capture) exist and would be replaced.")
    assert "Dry run" not in superuser.stdout
    assert owner.exit_code == 0, owner.stderr
    assert owner.stderr.strip() == ("Dry run: 1 to install or update, 0 already up to date. Event triggers "
                                    "(DDL capture) would be left out, because this role may not create them.")


def test_dry_run_says_event_triggers_installed(db, cli):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
    result = cli("install", "a", "--dry-run", dsn=db.dsn)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == ("Dry run: 1 to install or update, 0 already up to date. "
                                     "Event triggers (DDL capture) would be installed.")


@pytest.mark.parametrize("args", [["status"], ["maintain"], ["uninstall", "item"], ["revert", "1", "--dry-run"]],
                         ids=["status", "maintain", "uninstall", "revert"])
def test_other_role_gets_owner_hint(db, cli, args):
    other = f"other_{db.name}"
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as owner:
            owner.execute("CREATE TABLE item (id int PRIMARY KEY, name text)")
            install(owner, "audit", ["item"])
            owner.execute("INSERT INTO item VALUES (1, 'a')")
        with db.connect() as connection:
            connection.execute(f"CREATE ROLE {other} LOGIN")
        try:
            result = cli(*args, dsn=owner_dsn.replace(f"user=owner_{db.name}", f"user={other}"))
        finally:
            with db.connect() as connection:
                connection.execute(f"DROP ROLE {other}")

    assert result.exit_code != 0
    [line] = result.stderr.strip().splitlines()
    assert f"owner_{db.name}" in line
    assert f"Run {args[0]} as owner_{db.name}, as a member of owner_{db.name}," in line
    assert "as a superuser" in line
    assert "SQLSTATE" not in line


def test_upgrade_install_gives_no_table_hint(db, cli):
    """install without tables hints at --all on a new log, not when it upgrades a log that audits tables."""
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
    first = cli("install", dsn=db.dsn)
    cli("install", "a", dsn=db.dsn)
    upgrade = cli("install", dsn=db.dsn)

    hint = "No tables given: installing the audit schema only."
    assert first.exit_code == 0, first.stderr
    assert hint in first.stdout
    assert upgrade.exit_code == 0, upgrade.stderr
    assert hint not in upgrade.stdout
