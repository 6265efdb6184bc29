"""Capture after ALTER TABLE: the DDL event trigger refreshes triggers whose names went stale."""

from __future__ import annotations

import psycopg
import pytest

from auditctl.audit.install import install
from auditctl.audit.outdated import regenerate_outdated_triggers
from auditctl.audit.rules import Rule, hmac_hex
from auditctl.audit.status import TableState, collect_status
from helpers import events, table_owner_dsn


def _states(connection) -> dict[str, TableState]:
    return {t.entity_type: t.state for t in collect_status(connection, "audit").tables}


def _refreshes(connection) -> list[dict]:
    return events(connection, where="action = 'AUDIT_TRIGGER_REFRESHED'", system=True)


def _trigger_functions(connection, table: str) -> set[str]:
    rows = connection.execute(
        """SELECT p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
           WHERE t.tgrelid = %s::regclass AND t.tgname LIKE 'auditctl%%' AND t.tgparentid = 0""",
        (table,)).fetchall()
    return {row[0] for row in rows}


@pytest.fixture
def accounts(db):
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE account (
                id int PRIMARY KEY, email text, "passwordHash" text, phone text, notes text, seen_at text)
        """)
        install(connection, "audit", ["account"],
                column_rules=[("account.phone", Rule.HASH), ("account.seen_at", Rule.EXCLUDE),
                              ("account.notes", Rule.MASK)])
    return db


# Each case renames one column with a rule and names the value it must never be stored as.
RENAMES = [
    pytest.param('"passwordHash"', "pwd", "masked", id="default-mask"),
    pytest.param('"passwordHash"', "digest", "masked", id="default-mask-plain-name"),
    pytest.param("notes", "remarks", "masked", id="stored-mask"),
    pytest.param("phone", "tel", "hashed", id="hash"),
    pytest.param("seen_at", "last_seen", "excluded", id="exclude"),
]


def _expect_protected(recorded: dict | None, column: str, treatment: str, secret: str, pads) -> None:
    assert recorded is not None
    if treatment == "excluded":
        assert column not in recorded
    elif treatment == "masked":
        assert recorded[column] == "[masked]"
    else:
        assert recorded[column] == hmac_hex(*pads, secret)


@pytest.mark.parametrize(("old", "new", "treatment"), RENAMES)
def test_renamed_rule_column_stays_protected(accounts, old, new, treatment):
    secret = "s3cret-value"
    with accounts.connect() as connection:
        connection.execute("INSERT INTO account (id, email) SELECT i, 'a' FROM generate_series(1, 150) i")
        connection.execute(f"ALTER TABLE account RENAME COLUMN {old} TO {new}")
        connection.execute(f"INSERT INTO account (id, {new}) VALUES (1000, %s)", (secret,))
        connection.execute(f"UPDATE account SET {new} = %s, email = 'b' WHERE id = 1", (secret + "!",))
        connection.execute(f"UPDATE account SET {new} = %s, email = 'c' WHERE id <= 150", (secret,))
        connection.execute("DELETE FROM account WHERE id = 1000")
        pads = connection.execute("SELECT inner_pad, outer_pad FROM audit.hash_key").fetchone()
        recorded = events(connection, where="id > (SELECT max(id) FROM audit.events WHERE action = 'DDL')")
        report = _states(connection)
    insert, small_update = recorded[0], recorded[1]
    large_update, delete = recorded[2:152], recorded[152]
    assert [insert["action"], small_update["action"], delete["action"]] == ["INSERT", "UPDATE", "DELETE"]
    assert len(large_update) == 150
    _expect_protected(insert["new_values"], new, treatment, secret, pads)
    _expect_protected(small_update["new_values"], new, treatment, secret + "!", pads)
    if treatment != "excluded":
        assert all(e["new_values"][new] != secret for e in large_update)
    assert all(secret not in str(e["new_values"]) for e in large_update)
    _expect_protected(delete["old_values"], new, treatment, secret, pads)
    assert report["public.account"] is TableState.OUTDATED


def test_rename_moves_stored_rules(accounts):
    with accounts.connect() as connection:
        connection.execute("ALTER TABLE account RENAME COLUMN phone TO tel")
        connection.execute('ALTER TABLE account RENAME COLUMN "passwordHash" TO digest')
        connection.execute("ALTER TABLE account RENAME TO member")
        rules = connection.execute(
            "SELECT table_name, column_name, rule FROM audit.column_rules ORDER BY column_name").fetchall()
        [registered] = connection.execute("SELECT table_name FROM audit.audited_tables").fetchall()
    assert rules == [("member", "digest", "mask"), ("member", "notes", "mask"),
                     ("member", "seen_at", "exclude"), ("member", "tel", "hash")]
    assert registered == ("public.member",)


def test_table_rename_records_new_entity_type(accounts):
    with accounts.connect() as connection:
        with connection.transaction():
            connection.execute("ALTER TABLE account RENAME TO member")
            connection.execute("INSERT INTO member (id, email) VALUES (1, 'a@x')")
        [event] = events(connection)
        [refresh] = _refreshes(connection)
    assert event["entity_type"] == "public.member"
    assert event["entity_id"] == "1"
    assert refresh["details"]["table"] == "public.member"
    assert refresh["details"]["previous_table"] == "public.account"
    assert refresh["details"]["reasons"] == ["table_renamed"]
    assert refresh["details"]["command_tag"] == "ALTER TABLE"


def test_schema_rename_records_new_entity_type(db):
    with db.connect() as connection:
        connection.execute("CREATE SCHEMA sales; CREATE TABLE sales.deal (id int PRIMARY KEY, amount int)")
        install(connection, "audit", ["sales.deal"])
        connection.execute("ALTER SCHEMA sales RENAME TO trade")
        connection.execute("INSERT INTO trade.deal VALUES (1, 10)")
        [event] = events(connection)
    assert event["entity_type"] == "trade.deal"


def test_new_primary_key_gives_entity_id(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE tag (code text NOT NULL, label text)")
        install(connection, "audit", ["tag"])
        connection.execute("ALTER TABLE tag ADD PRIMARY KEY (code)")
        connection.execute("INSERT INTO tag VALUES ('red', 'Red')")
        connection.execute("UPDATE tag SET label = 'Rouge'")
        insert, update = events(connection)
        [refresh] = _refreshes(connection)
    assert insert["entity_id"] == "red"
    assert update["entity_id"] == "red"
    assert update["old_values"] == {"label": "Red"}
    assert refresh["details"]["reasons"] == ["key_changed"]
    assert refresh["details"]["key"] == ["code"]


def test_changed_primary_key_gives_entity_id(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE stage (id int PRIMARY KEY, product text NOT NULL, no int NOT NULL)")
        install(connection, "audit", ["stage"])
        with connection.transaction():
            connection.execute("ALTER TABLE stage DROP CONSTRAINT stage_pkey")
            connection.execute("ALTER TABLE stage ADD PRIMARY KEY (product, no)")
        connection.execute("INSERT INTO stage VALUES (1, 'p', 2)")
        [event] = events(connection)
    assert event["entity_id"] == '["p", 2]'


def test_renamed_key_column_gives_entity_id(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE item (id int PRIMARY KEY, name text)")
        install(connection, "audit", ["item"])
        connection.execute("ALTER TABLE item RENAME COLUMN id TO item_id")
        connection.execute("INSERT INTO item VALUES (5, 'x')")
        [event] = events(connection)
    assert event["entity_id"] == "5"


def test_new_secret_column_masked_at_once(accounts):
    with accounts.connect() as connection:
        connection.execute('ALTER TABLE account ADD COLUMN "resetToken" text')
        connection.execute("ALTER TABLE account RENAME COLUMN email TO password")
        connection.execute("""INSERT INTO account (id, "resetToken", password) VALUES (1, 'r-1', 'p-1')""")
        [event] = events(connection)
        reasons = [e["details"]["reasons"] for e in _refreshes(connection)]
    assert event["new_values"]["resetToken"] == "[masked]"
    assert event["new_values"]["password"] == "[masked]"
    assert reasons == [["rule_column_added", "columns_changed"], ["rule_column_added", "columns_changed"]]


def test_non_column_alter_keeps_trigger(accounts):
    with accounts.connect() as connection:
        connection.execute("ALTER TABLE account ALTER COLUMN email SET DEFAULT 'none'")
        connection.execute("ALTER TABLE account ADD CONSTRAINT email_length CHECK (length(email) < 200)")
        connection.execute("ALTER TABLE account SET (fillfactor = 90)")
        connection.execute("CREATE INDEX ON account (email)")
        functions = _trigger_functions(connection, "account")
        refreshes = _refreshes(connection)
    assert "capture_generic" not in functions
    assert refreshes == []


# The one-row UPDATE query of a generated trigger names every column: each of
# these changes gives the table the interim trigger, and updates of one row
# keep being recorded with the table's columns as they are now.
COLUMN_CHANGES = [
    pytest.param("ALTER TABLE account ADD COLUMN age int", "age", 41, id="added"),
    pytest.param("ALTER TABLE account RENAME COLUMN email TO mail", "mail", "b@example.org", id="renamed"),
    pytest.param("ALTER TABLE account ALTER COLUMN id TYPE bigint", "email", "b@example.org", id="retyped"),
    pytest.param("ALTER TABLE account DROP COLUMN email", "phone", None, id="dropped"),
]


@pytest.mark.parametrize(("statement", "column", "value"), COLUMN_CHANGES)
def test_column_change_refreshes_trigger(accounts, statement, column, value):
    with accounts.connect() as connection:
        connection.execute("INSERT INTO account (id, email) VALUES (1, 'a@example.org')")
        connection.execute(statement)
        if value is None:
            connection.execute("UPDATE account SET notes = 'changed' WHERE id = 1")
        else:
            connection.execute(f"UPDATE account SET {column} = %s WHERE id = 1", (value,))
        [refresh] = _refreshes(connection)
        update = events(connection, where="action = 'UPDATE'")
        functions = _trigger_functions(connection, "account")
    assert refresh["details"]["reasons"][-1] == "columns_changed"
    assert functions == {"capture_generic"}
    assert len(update) == 1
    if value is None:
        assert update[0]["new_values"] == {"notes": "[masked]"}
    else:
        assert update[0]["new_values"] == {column: value}
        assert update[0]["entity_id"] == "1"


def test_refresh_sends_no_notice(accounts):
    notices = []
    with accounts.connect() as connection:
        connection.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary))
        connection.execute("ALTER TABLE account ADD COLUMN age int")
        connection.execute("ALTER TABLE account DROP COLUMN age")
        connection.execute("CREATE TABLE later (id int PRIMARY KEY)")
    assert notices == []


def test_drop_of_refreshed_table_sends_no_notice(accounts):
    notices = []
    with accounts.connect() as connection:
        connection.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary))
        connection.execute("ALTER TABLE account ADD COLUMN age int")
        registered = connection.execute("SELECT function_name FROM audit.audited_tables").fetchall()
        connection.execute("DROP TABLE account")
        left = connection.execute("SELECT count(*) FROM audit.audited_tables").fetchone()[0]
    assert registered[0][0].startswith("interim_")
    assert notices == []
    assert left == 0


def test_cascade_column_drop_refreshes_trigger(db):
    with db.connect() as connection:
        connection.execute("""
            CREATE TYPE mood AS ENUM ('calm', 'busy');
            CREATE TABLE worker (id int PRIMARY KEY, name text, state mood);
            INSERT INTO worker VALUES (1, 'Ann', 'calm');
        """)
        install(connection, "audit", ["worker"])
        connection.execute("DROP TYPE mood CASCADE")
        connection.execute("UPDATE worker SET name = 'Anna' WHERE id = 1")
        [refresh] = _refreshes(connection)
        [update] = events(connection, where="action = 'UPDATE'")
        functions = _trigger_functions(connection, "worker")
    assert refresh["details"]["command_tag"] == "DROP TYPE"
    assert refresh["details"]["reasons"] == ["columns_changed"]
    assert functions == {"capture_generic"}
    assert (update["old_values"], update["new_values"]) == ({"name": "Ann"}, {"name": "Anna"})


def test_rolled_back_alter_leaves_no_trace(accounts):
    with accounts.connect() as connection:
        before = (connection.execute("SELECT * FROM audit.column_rules ORDER BY column_name").fetchall(),
                  connection.execute("SELECT table_name, function_name, layout FROM audit.audited_tables").fetchall(),
                  _trigger_functions(connection, "account"),
                  connection.execute("SELECT count(*) FROM audit.events").fetchone())
        with pytest.raises(psycopg.errors.DivisionByZero):
            with connection.transaction():
                connection.execute("ALTER TABLE account RENAME COLUMN phone TO tel")
                connection.execute("ALTER TABLE account RENAME TO member")
                connection.execute("SELECT 1 / 0")
        after = (connection.execute("SELECT * FROM audit.column_rules ORDER BY column_name").fetchall(),
                 connection.execute("SELECT table_name, function_name, layout FROM audit.audited_tables").fetchall(),
                 _trigger_functions(connection, "account"),
                 connection.execute("SELECT count(*) FROM audit.events").fetchone())
    assert after == before


def test_disabled_trigger_stays_disabled(accounts):
    with accounts.connect() as connection:
        connection.execute("ALTER TABLE account DISABLE TRIGGER auditctl_insert")
        connection.execute("ALTER TABLE account RENAME TO member")
        connection.execute("INSERT INTO member (id) VALUES (1)")
        assert events(connection) == []
        assert _states(connection)["public.member"] is TableState.DISABLED


def test_partitioned_table_refreshed(db):
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE reading (id int, taken date, secret text, PRIMARY KEY (id, taken)) PARTITION BY RANGE (taken);
            CREATE TABLE reading_2026 PARTITION OF reading FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        """)
        install(connection, "audit", ["reading"])
        connection.execute("ALTER TABLE reading RENAME COLUMN secret TO code")
        connection.execute("ALTER TABLE reading RENAME TO measurement")
        connection.execute("INSERT INTO measurement VALUES (1, '2026-05-01', 'c-1')")
        [event] = events(connection)
        partition_functions = _trigger_functions(connection, "reading_2026")
    assert event["entity_type"] == "public.measurement"
    assert event["entity_id"] == '[1, "2026-05-01"]'
    assert event["new_values"]["code"] == "[masked]"
    assert event["details"] == {"partition": "reading_2026"}
    # The partition's own trigger is the TRUNCATE trigger, which partitions do not inherit.
    assert partition_functions == {"capture_generic"}


def test_maintain_specialises_interim_tables(accounts, cli):
    with accounts.connect() as connection:
        connection.execute("ALTER TABLE account RENAME COLUMN phone TO tel")
        assert _states(connection)["public.account"] is TableState.OUTDATED
    result = cli("maintain", dsn=accounts.dsn)
    assert result.exit_code == 0, result.stderr
    assert "public.account" in result.stdout
    with accounts.connect() as connection:
        connection.execute("INSERT INTO account (id, tel) VALUES (1, '+7 900')")
        [event] = events(connection)
        pads = connection.execute("SELECT inner_pad, outer_pad FROM audit.hash_key").fetchone()
        assert _states(connection)["public.account"] is TableState.AUDITED
        assert "capture_generic" not in _trigger_functions(connection, "account")
        assert regenerate_outdated_triggers(connection, "audit").specialised == []
    assert event["new_values"]["tel"] == hmac_hex(*pads, "+7 900")


def test_status_shows_interim_fix(accounts, cli):
    with accounts.connect() as connection:
        connection.execute("ALTER TABLE account RENAME TO member")
    result = cli("status", dsn=accounts.dsn)
    text = " ".join(result.stdout.split())
    assert result.exit_code == 0, result.stderr
    assert "interim" in text
    assert "auditctl install public.member" in text


def test_non_superuser_rename_flags_table_outdated(db):
    with table_owner_dsn(db) as owner_dsn:
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE note (id int PRIMARY KEY, body text)")
            result = install(connection, "audit", ["note"])
            connection.execute("ALTER TABLE note RENAME TO memo")
            connection.execute("INSERT INTO memo VALUES (1, 'x')")
            [event] = events(connection)
            states = _states(connection)
    assert result.ddl_capture is False
    assert event["entity_type"] == "public.note"
    assert states["public.memo"] is TableState.OUTDATED


@pytest.fixture
def owner_sessions(db):
    """Return the DSN of a table owner without DDL capture whose "Session" is audited with userAgent masked."""
    with table_owner_dsn(db) as dsn:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(
                'CREATE TABLE "Session" (id int PRIMARY KEY, "userAgent" text, "passwordHash" text, note text)')
            install(connection, "audit", ["Session"], column_rules=[('"Session"."userAgent"', Rule.MASK)])
        yield dsn


# Each case renames a column that has a stored rule or is masked for its
# name, where no event trigger moves the rule, and names the rule the new
# name must have afterwards.
OWNER_RENAMES = [
    pytest.param('"userAgent"', "ua", "mask", id="stored-mask"),
    pytest.param('"passwordHash"', '"pwHash"', "mask", id="default-mask"),
    pytest.param('"passwordHash"', '"passwordDigest"', None, id="default-mask-secret-name"),
]


@pytest.mark.parametrize(("old", "new", "rule"), OWNER_RENAMES)
def test_install_follows_renamed_rule_column(owner_sessions, old, new, rule):
    name = new.strip('"')
    with psycopg.connect(owner_sessions, autocommit=True) as connection:
        connection.execute(f'ALTER TABLE "Session" RENAME COLUMN {old} TO {new}')
        before = _states(connection)
        result = install(connection, "audit", ["Session"])
        connection.execute(f'INSERT INTO "Session" (id, {new}) VALUES (1, %s)', ("s3cret",))
        connection.execute(f'UPDATE "Session" SET {new} = %s WHERE id = 1', ("s3cret!",))
        insert, update = events(connection)
        rules = dict(connection.execute("SELECT column_name, rule FROM audit.column_rules").fetchall())
        after = _states(connection)
    assert result.ddl_capture is False
    assert before["public.Session"] is TableState.OUTDATED
    assert insert["new_values"][name] == "[masked]"
    assert update["new_values"][name] == "[masked]"
    assert update["old_values"][name] == "[masked]"
    assert old.strip('"') not in rules
    assert rules.get(name) == rule
    assert after["public.Session"] is TableState.AUDITED


def test_install_follows_renamed_table_rules(owner_sessions):
    with psycopg.connect(owner_sessions, autocommit=True) as connection:
        connection.execute('ALTER TABLE "Session" RENAME TO "Login"')
        connection.execute('ALTER TABLE "Login" RENAME COLUMN "userAgent" TO agent')
        install(connection, "audit", ["Login"])
        connection.execute("""INSERT INTO "Login" (id, agent) VALUES (1, 'curl/8')""")
        [event] = events(connection)
        rules = connection.execute("SELECT table_name, column_name, rule FROM audit.column_rules").fetchall()
    assert event["entity_type"] == "public.Login"
    assert event["new_values"]["agent"] == "[masked]"
    assert rules == [("Login", "agent", "mask")]


def test_install_removes_rule_of_dropped_column(owner_sessions, cli):
    with psycopg.connect(owner_sessions, autocommit=True) as connection:
        connection.execute('ALTER TABLE "Session" DROP COLUMN "userAgent"')
    status = cli("status", dsn=owner_sessions)
    printed = cli("install", "Session", dsn=owner_sessions)
    with psycopg.connect(owner_sessions, autocommit=True) as connection:
        rules = connection.execute("SELECT column_name FROM audit.column_rules").fetchall()
    status_text = " ".join(status.stdout.split())
    install_text = " ".join(printed.stdout.split())
    assert status.exit_code == 3
    assert printed.exit_code == 0, printed.stderr
    assert status_text.count("userAgent") == 1
    assert ("public.Session: the mask rule of column userAgent applies to nothing, because the table has no such "
            "column. `auditctl install public.Session` removes the rule; if the values moved to another column, "
            "add --mask-column public.Session.COLUMN.") in status_text
    assert install_text.count("userAgent") == 1
    assert ("Column userAgent of public.Session no longer exists, so its mask rule was removed. If its values "
            "moved to another column, run `auditctl install public.Session --mask-column "
            "public.Session.COLUMN`.") in install_text
    assert rules == []


def test_dry_run_follows_renames_unstored(owner_sessions):
    with psycopg.connect(owner_sessions, autocommit=True) as connection:
        connection.execute('ALTER TABLE "Session" RENAME COLUMN "userAgent" TO ua')
        result = install(connection, "audit", ["Session"], dry_run=True)
        rules = connection.execute("SELECT column_name, rule FROM audit.column_rules").fetchall()
    [(table, old, new)] = result.followed_rules
    trigger_sql = next(statement for statement in result.statements if "auditctl trigger function" in statement)
    assert (table.name, old, new) == ("Session", "userAgent", "ua")
    assert "'ua'" in trigger_sql
    assert "'userAgent'" not in trigger_sql
    assert rules == [("userAgent", "mask")]


def test_maintain_regenerates_outdated_triggers(owner_sessions, cli):
    with psycopg.connect(owner_sessions, autocommit=True) as connection:
        connection.execute('CREATE TABLE "Device" (id int PRIMARY KEY, label text)')
        install(connection, "audit", ["Device"])
        connection.execute('ALTER TABLE "Device" DISABLE TRIGGER auditctl_insert')
        connection.execute('ALTER TABLE "Session" ADD COLUMN "apiToken" text')
        connection.execute('ALTER TABLE "Session" RENAME COLUMN "userAgent" TO ua')
        before = _states(connection)
    first = cli("maintain", dsn=owner_sessions)
    second = cli("maintain", dsn=owner_sessions)
    with psycopg.connect(owner_sessions, autocommit=True) as connection:
        connection.execute("""INSERT INTO "Session" (id, ua, "apiToken") VALUES (1, 'curl/8', 't-1')""")
        [event] = events(connection)
        after = _states(connection)
        installs = events(connection, where="action = 'AUDIT_INSTALL'", system=True)
    assert before == {"public.Device": TableState.DISABLED, "public.Session": TableState.OUTDATED}
    assert first.exit_code == 0, first.stderr
    assert "Regenerated the outdated audit trigger of public.Session." in first.stdout
    assert ("Column userAgent of public.Session was renamed to ua, and the rule it had under its old name now "
            "applies to ua.") in " ".join(first.stdout.split())
    assert "Device" not in first.stdout
    assert second.exit_code == 0, second.stderr
    assert "Session" not in second.stdout
    assert after == {"public.Device": TableState.DISABLED, "public.Session": TableState.AUDITED}
    assert event["new_values"]["ua"] == "[masked]"
    assert event["new_values"]["apiToken"] == "[masked]"
    assert installs[-1]["details"]["installed"] == ["public.Session"]
    assert len(installs) == 3


def test_install_follows_swapped_column_names(owner_sessions):
    with psycopg.connect(owner_sessions, autocommit=True) as connection:
        install(connection, "audit", ["Session"], column_rules=[('"Session".note', Rule.HASH)])
        connection.execute('ALTER TABLE "Session" RENAME COLUMN "userAgent" TO swap')
        connection.execute('ALTER TABLE "Session" RENAME COLUMN note TO "userAgent"')
        connection.execute('ALTER TABLE "Session" RENAME COLUMN swap TO note')
        install(connection, "audit", ["Session"])
        rules = connection.execute("SELECT column_name, rule FROM audit.column_rules ORDER BY 1").fetchall()
    assert rules == [("note", "mask"), ("userAgent", "hash")]


# Each case changes the columns of account (id, email, "passwordHash", phone, notes, seen_at) and names the
# column changes the refresh event records.
COLUMN_RECORDS = [
    pytest.param(["ALTER TABLE account RENAME COLUMN email TO mail"], [({"email": "mail"}, [], [])], id="rename"),
    pytest.param(["ALTER TABLE account DROP COLUMN email"], [({}, ["email"], [])], id="drop"),
    pytest.param(["ALTER TABLE account ADD COLUMN age int"], [({}, [], ["age"])], id="add"),
    pytest.param(["ALTER TABLE account ALTER COLUMN email TYPE varchar(100)"], [({}, [], [])], id="retype"),
    pytest.param(["ALTER TABLE account DROP COLUMN notes, ADD COLUMN notes text"], [({}, ["notes"], ["notes"])],
                 id="drop-and-add"),
    pytest.param(["ALTER TABLE account RENAME COLUMN email TO tmp", "ALTER TABLE account RENAME COLUMN phone TO email",
                  "ALTER TABLE account RENAME COLUMN tmp TO phone"],
                 [({"email": "tmp"}, [], []), ({"phone": "email"}, [], []), ({"tmp": "phone"}, [], [])], id="swap"),
]


@pytest.mark.parametrize(("statements", "expected"), COLUMN_RECORDS)
def test_refresh_records_column_changes(accounts, statements, expected):
    with accounts.connect() as connection:
        for statement in statements:
            connection.execute(statement)
        refreshes = _refreshes(connection)
    recorded = [(r["details"]["column_renames"], r["details"]["dropped_columns"], r["details"]["added_columns"])
                for r in refreshes]
    assert recorded == expected


def test_refresh_without_column_change_records_none(accounts):
    with accounts.connect() as connection:
        connection.execute("ALTER TABLE account RENAME TO member")
        [refresh] = _refreshes(connection)
    assert "column_renames" not in refresh["details"]
    assert "added_columns" not in refresh["details"]
    assert "dropped_columns" not in refresh["details"]
