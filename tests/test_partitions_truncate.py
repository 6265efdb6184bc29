"""TRUNCATE of partitioned tables: PostgreSQL clones row triggers onto partitions, but not TRUNCATE triggers."""

from __future__ import annotations

import json

import psycopg
import pytest

from auditctl.audit.ddl import AutoAuditPolicy
from auditctl.audit.install import install, uninstall
from auditctl.audit.outdated import regenerate_outdated_triggers
from auditctl.audit.status import TableState, collect_status
from helpers import SYSTEM_ACTIONS, events, table_owner_dsn

PAY_TREE = """
    CREATE TABLE pay (id int, paid_on date, amount numeric, PRIMARY KEY (id, paid_on)) PARTITION BY RANGE (paid_on);
    CREATE TABLE pay_2024 PARTITION OF pay FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
    CREATE TABLE pay_2025 PARTITION OF pay FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
    INSERT INTO pay VALUES (1, '2024-05-01', 10), (2, '2025-05-01', 20);
"""


def _truncates(connection) -> list[tuple[str, dict | None]]:
    """The TRUNCATE events, as (entity type, details), oldest first."""
    return [(e["entity_type"], e["details"]) for e in events(connection, where="action = 'TRUNCATE'")]


def _truncate_triggers(connection) -> dict[str, str]:
    """Map each table with an auditctl_truncate trigger to its tgenabled code."""
    rows = connection.execute("""SELECT tgrelid::regclass::text, tgenabled FROM pg_trigger
                                  WHERE tgname = 'auditctl_truncate' ORDER BY 1""").fetchall()
    return dict(rows)


@pytest.fixture
def pay(db):
    """A partitioned table with two partitions and a row in each, audited with DDL capture on."""
    with db.connect() as connection:
        connection.execute(PAY_TREE)
        install(connection, "audit", ["pay"])
    return db


def test_truncate_of_partition_recorded(pay):
    with pay.connect() as connection:
        connection.execute("TRUNCATE pay_2024")
        recorded = _truncates(connection)
        left = connection.execute("SELECT count(*) FROM pay").fetchone()[0]
    assert recorded == [("public.pay", {"partition": "pay_2024"})]
    assert left == 1


def test_truncate_of_parent_recorded_per_partition(pay):
    with pay.connect() as connection:
        connection.execute("TRUNCATE pay")
        recorded = _truncates(connection)
        triggers = _truncate_triggers(connection)
    assert sorted(details["partition"] for _entity, details in recorded) == ["pay_2024", "pay_2025"]
    assert {entity for entity, _details in recorded} == {"public.pay"}
    assert triggers == {"pay_2024": "O", "pay_2025": "O"}


def test_subpartitioned_tree_truncate_recorded(db):
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE reading (id int, region text, taken date) PARTITION BY LIST (region);
            CREATE TABLE reading_east PARTITION OF reading FOR VALUES IN ('east');
            CREATE TABLE reading_west PARTITION OF reading FOR VALUES IN ('west') PARTITION BY RANGE (taken);
            CREATE TABLE reading_west_old PARTITION OF reading_west FOR VALUES FROM ('2000-01-01') TO ('2025-01-01');
            CREATE TABLE reading_west_new PARTITION OF reading_west FOR VALUES FROM ('2025-01-01') TO ('2030-01-01');
        """)
        install(connection, "audit", ["reading"])
        connection.execute("TRUNCATE reading_west")
        of_branch = sorted(details["partition"] for _entity, details in _truncates(connection))
        connection.execute("TRUNCATE reading")
        everything = sorted(details["partition"] for _entity, details in _truncates(connection))
    assert of_branch == ["reading_west_new", "reading_west_old"]
    assert everything == ["reading_east", "reading_west_new", "reading_west_new", "reading_west_old",
                          "reading_west_old"]


def test_new_partition_covered_at_once(pay):
    with pay.connect() as connection:
        with connection.transaction():
            connection.execute("CREATE TABLE pay_2026 PARTITION OF pay FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
            connection.execute("INSERT INTO pay VALUES (3, '2026-05-01', 30)")
            connection.execute("TRUNCATE pay_2026")
        connection.execute("CREATE TABLE pay_2027 (LIKE pay)")
        with connection.transaction():
            connection.execute("ALTER TABLE pay ATTACH PARTITION pay_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
            connection.execute("TRUNCATE pay_2027")
        recorded = [details["partition"] for _entity, details in _truncates(connection)]
        report = collect_status(connection, "audit")
    assert recorded == ["pay_2026", "pay_2027"]
    assert report.needs_attention == []


def test_detached_partition_records_nothing(pay):
    with pay.connect() as connection:
        connection.execute("ALTER TABLE pay DETACH PARTITION pay_2024")
        connection.execute("TRUNCATE pay_2024")
        connection.execute("TRUNCATE pay")
        recorded = [details["partition"] for _entity, details in _truncates(connection)]
        states = {t.entity_type: t.state for t in collect_status(connection, "audit").tables}
        # The detached table's trigger names the trigger function, which goes with the audited table.
        connection.execute("DROP TABLE pay")
        triggers = _truncate_triggers(connection)
    assert recorded == ["pay_2025"]
    assert states == {"public.pay": TableState.AUDITED, "public.pay_2024": TableState.NOT_AUDITED}
    assert triggers == {}


def test_rename_with_detached_partition(pay):
    with pay.connect() as connection:
        connection.execute("ALTER TABLE pay DETACH PARTITION pay_2024")
        connection.execute("ALTER TABLE pay RENAME TO payment")
        connection.execute("TRUNCATE payment")
        recorded = _truncates(connection)
        install(connection, "audit", ["payment"])
        connection.execute("TRUNCATE pay_2024, payment")
        recorded += _truncates(connection)[1:]
    assert recorded == [("public.payment", {"partition": "pay_2025"})] * 2


def test_uninstall_removes_partition_triggers(pay):
    with pay.connect() as connection:
        connection.execute("ALTER TABLE pay DETACH PARTITION pay_2024")
        result = uninstall(connection, "audit", ["pay"])
        triggers = _truncate_triggers(connection)
    assert result.removed == ["public.pay"]
    assert triggers == {}


def test_uninstall_all_skips_partitions(pay):
    with pay.connect() as connection:
        connection.execute("ALTER TABLE pay DETACH PARTITION pay_2024")
        result = uninstall(connection, "audit", [], use_all=True)
        triggers = _truncate_triggers(connection)
    assert result.removed == ["public.pay"]
    assert triggers == {}


def test_enable_always_reaches_partitions(pay):
    with pay.connect() as connection:
        install(connection, "audit", [], enable_always=True)
        always = _truncate_triggers(connection)
        connection.execute("ALTER TABLE pay_2025 DISABLE TRIGGER auditctl_truncate")
        report = collect_status(connection, "audit")
        [status] = [t for t in report.tables if t.entity_type == "public.pay"]
        install(connection, "audit", ["pay"])
        enabled = _truncate_triggers(connection)
    assert always == {"pay_2024": "A", "pay_2025": "A"}
    assert status.state is TableState.DISABLED
    assert report.needs_attention == ["public.pay"]
    assert enabled == {"pay_2024": "A", "pay_2025": "A"}


def test_status_names_disabled_partition_trigger(pay, cli):
    with pay.connect() as connection:
        install(connection, "audit", [])
        connection.execute("ALTER TABLE pay_2025 DISABLE TRIGGER auditctl_truncate")
    result = cli("status", dsn=pay.dsn)
    as_json = cli("status", "--format", "json", dsn=pay.dsn)
    text = " ".join(result.stdout.split())
    [table] = [t for t in json.loads(as_json.stdout)["tables"] if t["table"] == "public.pay"]
    assert result.exit_code == 3
    assert ("public.pay: the TRUNCATE trigger of partition public.pay_2025 is disabled, so its TRUNCATE is not "
            "recorded; row changes are. Run `auditctl install public.pay` to enable it again.") in text
    assert "its audit trigger is disabled" not in text
    assert table["disabled_partitions"] == ["public.pay_2025"]


def test_status_partitioned_row_trigger_disabled(pay, cli):
    with pay.connect() as connection:
        install(connection, "audit", [])
        connection.execute("ALTER TABLE pay DISABLE TRIGGER auditctl_row")
        connection.execute("TRUNCATE pay_2024")
        [truncated] = _truncates(connection)
    result = cli("status", dsn=pay.dsn)
    as_json = cli("status", "--format", "json", dsn=pay.dsn)
    [table] = [t for t in json.loads(as_json.stdout)["tables"] if t["table"] == "public.pay"]
    assert result.exit_code == 3
    assert ("public.pay: auditing of INSERT, UPDATE, and DELETE is disabled, so these changes are not recorded, but "
            "TRUNCATE still is. Run `auditctl install public.pay` to enable its audit triggers again.") in " ".join(
        result.stdout.split())
    assert table["unrecorded_actions"] == ["INSERT", "UPDATE", "DELETE"]
    assert truncated == ("public.pay", {"partition": "pay_2024"})


ATTACH_2026 = "ALTER TABLE pay ATTACH PARTITION pay_2026 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')"


def _attach_audited_2026(connection, ddl_capture: bool = True) -> bool:
    """Attach the audited table pay_2026 to pay; return False where PostgreSQL rejects it, as 16 and later do."""
    connection.execute("CREATE TABLE pay_2026 (LIKE pay)")
    install(connection, "audit", ["pay", "pay_2026"])
    if not ddl_capture:
        connection.execute("ALTER EVENT TRIGGER auditctl_ddl DISABLE")
    try:
        with connection.transaction():
            connection.execute(ATTACH_2026)
    except psycopg.errors.FeatureNotSupported as rejected:
        # PostgreSQL 16 rejects a partition with triggers that have transition tables (see the README).
        assert "auditctl_" in str(rejected)
        uninstall(connection, "audit", ["pay_2026"])
        connection.execute(ATTACH_2026)
        return False
    return True


def test_attached_audited_table_handed_over(pay, cli):
    with pay.connect() as connection:
        attached = _attach_audited_2026(connection)
        handed = events(connection, where="action = 'AUDIT_UNINSTALL'", system=True)[-1]["details"]
        connection.execute("DELETE FROM audit.events")
        connection.execute("INSERT INTO pay_2026 VALUES (3, '2026-05-01', 30)")
        connection.execute("UPDATE pay SET amount = 31 WHERE id = 3")
        connection.execute("TRUNCATE pay_2026")
        recorded = [(event["action"], event["entity_type"], (event["details"] or {}).get("partition"))
                    for event in events(connection, where="action <> 'DDL'")]
        own_triggers = connection.execute("""SELECT count(*) FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                                     WHERE t.tgrelid = 'pay_2026'::regclass AND p.proname LIKE 'public_pay_2026%'
                                   """).fetchone()[0]
        registered = connection.execute("SELECT table_name FROM audit.audited_tables ORDER BY 1").fetchall()
    assert recorded == [("INSERT", "public.pay", "pay_2026"), ("UPDATE", "public.pay", "pay_2026"),
                        ("TRUNCATE", "public.pay", "pay_2026")]
    assert own_triggers == 0
    assert registered == [("public.pay",)]
    assert cli("status", dsn=pay.dsn).exit_code == 0
    if attached:
        assert handed == {"removed": ["public.pay_2026"], "partition_of": "public.pay", "command_tag": "ALTER TABLE"}


def test_status_names_table_attached_later(pay, cli):
    with pay.connect() as connection:
        if not _attach_audited_2026(connection, ddl_capture=False):
            # Without DDL capture nothing put the TRUNCATE trigger on the new partition either.
            report = cli("status", dsn=pay.dsn)
            assert report.exit_code == 3
            assert "public.pay_2026" in report.stdout
            return
    result = cli("status", dsn=pay.dsn)
    text = " ".join(result.stdout.split())
    assert result.exit_code == 3
    assert ("public.pay_2026 is now a partition of public.pay, so its own audit triggers may record its changes a "
            "second time beside those of public.pay. Run `auditctl maintain` to remove its own triggers.") in text
    assert "no longer exists" not in text


def test_maintain_hands_over_attached_table(pay, cli):
    with pay.connect() as connection:
        if not _attach_audited_2026(connection, ddl_capture=False):
            pytest.skip("PostgreSQL 16 and later reject attaching a table with transition-table triggers")
        connection.execute("INSERT INTO pay_2026 VALUES (3, '2026-05-01', 30)")
        recorded_before = len(events(connection, where="action = 'INSERT'"))
    maintained = cli("maintain", dsn=pay.dsn)
    status = cli("status", dsn=pay.dsn)
    with pay.connect() as connection:
        handed = events(connection, where="action = 'AUDIT_UNINSTALL'", system=True)
        connection.execute("DELETE FROM audit.events")
        connection.execute("UPDATE pay SET amount = 31 WHERE id = 3")
        connection.execute("DELETE FROM pay_2026 WHERE id = 3")
        recorded_after = [(event["action"], event["entity_type"]) for event in events(connection)]
        registered = connection.execute("SELECT table_name FROM audit.audited_tables ORDER BY 1").fetchall()
    assert recorded_before == 2
    assert maintained.exit_code == 0, maintained.stderr
    assert ("Removed the own audit triggers of public.pay_2026, now a partition of public.pay: the triggers of "
            "public.pay record its changes.") in " ".join(maintained.stdout.split())
    assert [event["details"] for event in handed] == [{"removed": ["public.pay_2026"], "partition_of": "public.pay"}]
    assert registered == [("public.pay",)]
    assert recorded_after == [("UPDATE", "public.pay"), ("DELETE", "public.pay")]
    assert status.exit_code == 0, status.stdout


def test_partition_trigger_tampering_guarded(pay):
    with pay.connect() as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("DROP TRIGGER auditctl_truncate ON pay_2024")
        connection.execute("ALTER TABLE pay_2024 DISABLE TRIGGER auditctl_truncate")
        [disabled] = events(connection, where="action = 'AUDIT_TRIGGER_DISABLED'", system=True)
        # Dropping a partition drops its trigger with it, which is allowed.
        connection.execute("DROP TABLE pay_2025")
    assert "pay_2024" in disabled["details"]["statement"]


def test_foreign_partition_reported(db, cli):
    with db.connect() as connection:
        # A foreign table may not be a partition of a table with a unique index.
        connection.execute(PAY_TREE.replace(", PRIMARY KEY (id, paid_on)", ""))
        connection.execute("""
            CREATE FOREIGN DATA WRAPPER nowhere;
            CREATE SERVER far FOREIGN DATA WRAPPER nowhere;
            CREATE FOREIGN TABLE pay_2023 PARTITION OF pay FOR VALUES FROM ('2023-01-01') TO ('2024-01-01') SERVER far;
        """)
    installed = cli("install", "pay", dsn=db.dsn)
    status = cli("status", dsn=db.dsn)
    with db.connect() as connection:
        triggers = _truncate_triggers(connection)
    assert installed.exit_code == 0, installed.stderr
    assert "Partition public.pay_2023 of public.pay is a foreign table" in installed.stdout
    assert status.exit_code == 0, status.stderr
    assert "Partition public.pay_2023 of public.pay is a foreign table" in status.stdout
    assert triggers == {"pay_2024": "O", "pay_2025": "O"}


def test_interim_trigger_covers_partitions(db):
    with db.connect() as connection:
        install(connection, "audit", [], auto_audit=AutoAuditPolicy(("public",)))
        connection.execute(PAY_TREE)
        connection.execute("TRUNCATE pay_2024")
        connection.execute("ALTER TABLE pay DETACH PARTITION pay_2025")
        connection.execute("TRUNCATE pay_2025")
        recorded = _truncates(connection)
        functions = connection.execute(
            """SELECT DISTINCT p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                WHERE t.tgname = 'auditctl_truncate'""").fetchall()
    assert recorded == [("public.pay", {"partition": "pay_2024"})]
    assert functions == [("capture_generic",)]


def test_owner_status_flags_uncovered_partition(db, cli):
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute(PAY_TREE)
            install(connection, "audit", ["pay"])
            connection.execute("CREATE TABLE pay_2026 PARTITION OF pay FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
            report = collect_status(connection, "audit")
            status = cli("status", dsn=owner_dsn)
            maintained = cli("maintain", dsn=owner_dsn)
            after = collect_status(connection, "audit")
            connection.execute("TRUNCATE pay_2026")
            recorded = _truncates(connection)
    [pay] = [t for t in report.tables if t.entity_type == "public.pay"]
    assert report.needs_attention == ["public.pay"]
    assert pay.uncovered_partitions == ["public.pay_2026"]
    assert status.exit_code == 3
    assert "pay_2026" in status.stdout
    assert maintained.exit_code == 0, maintained.stderr
    assert after.needs_attention == []
    assert recorded == [("public.pay", {"partition": "pay_2026"})]


def test_upgrade_moves_parent_trigger(pay):
    with pay.connect() as connection:
        # The layout of earlier versions: the TRUNCATE trigger on the parent, none on the partitions.
        connection.execute("SET auditctl.internal = 'on'")
        function = connection.execute("SELECT function_name FROM audit.audited_tables").fetchone()[0]
        connection.execute("DROP TRIGGER auditctl_truncate ON pay_2024; DROP TRIGGER auditctl_truncate ON pay_2025")
        connection.execute(f"CREATE TRIGGER auditctl_truncate AFTER TRUNCATE ON pay FOR EACH STATEMENT "
                           f"EXECUTE FUNCTION audit.{function}()")
        connection.execute("RESET auditctl.internal")
        before = collect_status(connection, "audit")
        result = regenerate_outdated_triggers(connection, "audit")
        triggers = _truncate_triggers(connection)
        recorded = events(connection, where=SYSTEM_ACTIONS, system=True)
    assert before.needs_attention == ["public.pay"]
    assert result.failed == []
    assert triggers == {"pay_2024": "O", "pay_2025": "O"}
    assert recorded[-1]["action"] == "AUDIT_INSTALL"


def test_owner_drops_detached_partition_triggers(db):
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute(PAY_TREE)
            install(connection, "audit", ["pay"])
            # Without DDL capture the renamed table's next install drops its old function.
            connection.execute("ALTER TABLE pay DETACH PARTITION pay_2024")
            connection.execute("ALTER TABLE pay RENAME TO payment")
            install(connection, "audit", ["payment"])
            after_rename = _truncate_triggers(connection)
            # The next install removes the dropped table's registry entry and its function.
            connection.execute("ALTER TABLE payment DETACH PARTITION pay_2025")
            connection.execute("DROP TABLE payment")
            states = {t.entity_type: t.state for t in collect_status(connection, "audit").tables}
            result = install(connection, "audit", [])
            after_drop = _truncate_triggers(connection)
    assert after_rename == {"pay_2025": "O"}
    assert states["public.payment"] is TableState.MISSING
    assert states["public.pay_2025"] is TableState.NOT_AUDITED
    assert result.forgotten == ["public.payment"]
    assert after_drop == {}


def test_dry_run_lists_partition_triggers(db):
    with db.connect() as connection:
        connection.execute(PAY_TREE)
        result = install(connection, "audit", ["pay"], dry_run=True)
        schema = connection.execute("SELECT to_regnamespace('audit')").fetchone()[0]
    assert [table.name for table in result.installed] == ["pay"]
    assert """SELECT "audit".put_truncate_triggers('"public"."pay"'::regclass);""" in result.statements
    assert schema is None


def test_status_names_partition_of_unaudited_table(db, cli):
    with db.connect() as connection:
        connection.execute(PAY_TREE)
        connection.execute("CREATE TABLE pay_2026 (LIKE pay)")
        install(connection, "audit", ["pay_2026"])
        try:
            connection.execute(ATTACH_2026)
        except psycopg.errors.FeatureNotSupported:
            pytest.skip("PostgreSQL 16 and later reject attaching a table whose triggers have transition tables")
    result = cli("status", dsn=db.dsn)
    text = " ".join(result.stdout.split())
    assert result.exit_code == 3
    assert ("public.pay_2026 is now a partition of public.pay, which is not audited; its own audit triggers still "
            "record its changes.") in text
    assert "second time" not in text


def _add_partitions(connection, count: int) -> list[str]:
    """Add ``count`` one-day partitions of pay from 2030-01-01 and return their names."""
    names = []
    for day in range(1, count + 1):
        name = f"pay_2030_01_{day:02d}"
        connection.execute(f"CREATE TABLE {name} PARTITION OF pay "
                           f"FOR VALUES FROM ('2030-01-{day:02d}') TO ('2030-01-{day + 1:02d}')")
        names.append(name)
    return names


def test_russian_status_of_21_partitions(db, cli):
    # Russian takes the singular form for 21, so that form must not assume one partition.
    russian = {"LANG": "ru_RU.UTF-8"}
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute(PAY_TREE)
            install(connection, "audit", ["pay"])
            _add_partitions(connection, 21)
        uncovered = " ".join(cli("status", dsn=owner_dsn, env=russian).stdout.split())
    with db.connect() as connection:
        connection.execute(PAY_TREE)
        install(connection, "audit", ["pay"])
        for name in _add_partitions(connection, 21):
            connection.execute(f"ALTER TABLE {name} DISABLE TRIGGER auditctl_truncate")
    disabled = " ".join(cli("status", dsn=db.dsn, env=russian).stdout.split())
    assert "public.pay: у секций public.pay_2030_01_01," in uncovered
    assert "нет триггера TRUNCATE, поэтому их TRUNCATE не записывается. Добавьте их командой" in uncovered
    assert "public.pay: триггеры TRUNCATE секций public.pay_2030_01_01," in disabled
    assert "отключены, поэтому их TRUNCATE не записывается" in disabled
