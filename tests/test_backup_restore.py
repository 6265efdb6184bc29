"""auditctl backup restore: one transaction, --clean over partitioned tables, and its error lines."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from pyrage import x25519

from auditctl.audit.install import install
from auditctl.backup.restore import TargetState, first_error_block, permission_hint
from backup_fixtures import sample_rows
from conftest import run_cli

# Every table's rows, hashed in a fixed order, so two databases compare in one value.
FINGERPRINT = """SELECT 'SELECT ' || string_agg(format('(SELECT md5(coalesce(string_agg(t::text, '','' ORDER BY t::text),
                     '''')) FROM %I.%I t)', schemaname, tablename), ' || ' ORDER BY schemaname, tablename)
                 FROM pg_catalog.pg_tables WHERE schemaname = 'public'"""

# Relations, constraints and triggers of the user's schemas: what a half-done --clean would change.
CATALOG = """SELECT (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'),
                    (SELECT count(*) FROM pg_catalog.pg_constraint c JOIN pg_catalog.pg_namespace n
                     ON n.oid = c.connamespace WHERE n.nspname = 'public'),
                    (SELECT count(*) FROM pg_catalog.pg_trigger WHERE NOT tgisinternal)"""

# A table partitioned by range, one partition partitioned again by list: two levels of attached indexes.
PARTITIONED = """
CREATE TABLE reading (sensor integer NOT NULL, taken date NOT NULL, value numeric,
                      PRIMARY KEY (sensor, taken)) PARTITION BY RANGE (taken);
CREATE INDEX reading_value_idx ON reading (value);
CREATE TABLE reading_2026 PARTITION OF reading FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE reading_2027 PARTITION OF reading FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')
    PARTITION BY LIST (sensor);
CREATE TABLE reading_2027_odd PARTITION OF reading_2027 FOR VALUES IN (1, 3, 5);
CREATE TABLE reading_2027_even PARTITION OF reading_2027 FOR VALUES IN (2, 4, 6);
INSERT INTO reading SELECT 1 + g % 6, date '2026-01-01' + g, g FROM generate_series(0, 700) g;
"""


def only_backup(folder: Path, suffix: str = ".dump") -> Path:
    [path] = [path for path in folder.iterdir() if path.name.endswith(suffix)]
    return path


def fingerprint(dsn: str) -> str:
    with psycopg.connect(dsn) as connection:
        statement = connection.execute(FINGERPRINT).fetchone()[0]
        return connection.execute(statement).fetchone()[0]


def catalog_counts(dsn: str) -> tuple[int, int, int]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(CATALOG).fetchone()


def restore_as_new_role(pg, db, backup: Path, *, owns_target: bool, arguments: list[str] = ()):
    """Restore ``backup`` into a new database as a new role that is no superuser; return the result, role and target.

    With ``owns_target`` the role owns the target database, else the superuser does.
    """
    role = f"restorer_{db.name}"
    target = pg.create_database()
    with psycopg.connect(pg.admin_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER")
        if owns_target:
            connection.execute(f"ALTER DATABASE {target} OWNER TO {role}")
    role_dsn = psycopg.conninfo.make_conninfo(pg.dsn_for(target), user=role)
    try:
        result = run_cli("backup", "restore", str(backup), "--target-dsn", role_dsn, *arguments)
    finally:
        pg.drop_database(target)
        with psycopg.connect(pg.admin_dsn, autocommit=True) as connection:
            connection.execute(f"DROP ROLE {role}")
    return result, role, target


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


@pytest.mark.shared_data
def test_clean_restore_of_pagila_succeeds(pagila, tmp_path):
    expected = fingerprint(pagila.dsn)
    assert run_cli("backup", "--dir", str(tmp_path), dsn=pagila.dsn).exit_code == 0
    with pagila.connect() as connection:
        connection.execute("DELETE FROM payment WHERE payment_date >= '2022-07-01'")
        connection.execute("UPDATE actor SET last_name = 'CHANGED' WHERE actor_id < 10")

    result = run_cli("backup", "restore", str(only_backup(tmp_path)), "--target-dsn", pagila.dsn, "--clean")

    assert result.exit_code == 0, result.stderr
    assert fingerprint(pagila.dsn) == expected


@pytest.mark.shared_data
def test_failed_clean_restore_changes_nothing(pagila, tmp_path):
    assert run_cli("backup", "--dir", str(tmp_path), dsn=pagila.dsn).exit_code == 0
    with pagila.connect() as connection:
        # A view that is not in the backup blocks DROP TABLE actor, late in the clean.
        connection.execute("CREATE VIEW actor_names AS SELECT first_name, last_name FROM actor")
    before = catalog_counts(pagila.dsn)
    rows_before = fingerprint(pagila.dsn)

    result = run_cli("backup", "restore", str(only_backup(tmp_path)), "--target-dsn", pagila.dsn, "--clean")

    assert result.exit_code == 1
    [error] = error_lines(result)
    assert "cannot drop table public.actor because other objects depend on it" in error
    assert f"database {pagila.name} is unchanged" in error
    assert "restore into a new, empty database" in error
    assert "Traceback" not in result.stderr
    assert catalog_counts(pagila.dsn) == before
    assert fingerprint(pagila.dsn) == rows_before


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_clean_restore_of_partitioned_table(db, tmp_path, encrypted):
    with db.connect() as connection:
        connection.execute(PARTITIONED)
    expected = fingerprint(db.dsn)
    identity = x25519.Identity.generate()
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"{identity}\n")
    key_file.chmod(0o600)
    folder = tmp_path / "backups"
    folder.mkdir()
    encryption = ["--recipient", str(identity.to_public())] if encrypted else []
    assert run_cli("backup", "--dir", str(folder), *encryption, dsn=db.dsn).exit_code == 0
    with db.connect() as connection:
        connection.execute("DELETE FROM reading WHERE sensor = 3")

    backup = only_backup(folder, ".dump.age" if encrypted else ".dump")
    decryption = ["--identity", str(key_file)] if encrypted else []
    result = run_cli("backup", "restore", str(backup), "--target-dsn", db.dsn, "--clean", *decryption)

    assert result.exit_code == 0, result.stderr
    assert fingerprint(db.dsn) == expected
    with db.connect() as connection:
        invalid = connection.execute("SELECT count(*) FROM pg_catalog.pg_index WHERE NOT indisvalid").fetchone()[0]
    assert invalid == 0


def test_missing_identity_named_before_target(db, tmp_path):
    with db.connect() as connection:
        sample_rows(connection)
    identity = x25519.Identity.generate()
    assert run_cli("backup", "--dir", str(tmp_path), "--recipient", str(identity.to_public()),
                   dsn=db.dsn).exit_code == 0
    missing = tmp_path / "no-such-key.txt"

    # The target is not empty, and the typo in the key's path is what the DBA has to fix first.
    result = run_cli("backup", "restore", str(only_backup(tmp_path, ".dump.age")), "--target-dsn", db.dsn,
                     "--identity", str(missing))

    assert result.exit_code != 0
    [error] = error_lines(result)
    assert str(missing) in error
    assert "not empty" not in error


def test_clean_restore_of_audited_database(db, tmp_path):
    with db.connect() as connection:
        sample_rows(connection)
        install(connection, "audit", [], use_all=True)
        connection.execute("UPDATE invoice SET note = 'before the backup' WHERE id = 1")
    expected = fingerprint(db.dsn)
    assert run_cli("backup", "--dir", str(tmp_path), dsn=db.dsn).exit_code == 0
    with db.connect() as connection:
        connection.execute("UPDATE invoice SET note = 'after the backup' WHERE id = 2")

    result = run_cli("backup", "restore", str(only_backup(tmp_path)), "--target-dsn", db.dsn, "--clean")

    assert result.exit_code == 0, result.stderr
    assert fingerprint(db.dsn) == expected
    with db.connect() as connection:
        notes = connection.execute("SELECT note FROM invoice WHERE id IN (1, 2) ORDER BY id").fetchall()
    assert notes == [("before the backup",), ("счёт №2",)]


def test_restore_into_missing_database_says_create(db, tmp_path):
    with db.connect() as connection:
        sample_rows(connection)
    assert run_cli("backup", "--dir", str(tmp_path), dsn=db.dsn).exit_code == 0
    target = db.server.dsn_for("restored_app")

    result = run_cli("backup", "restore", str(only_backup(tmp_path)), "--target-dsn", target)

    assert result.exit_code == 1
    [error] = error_lines(result)
    assert "(DSN from --target-dsn)" in error
    assert "Check --dsn" not in error
    assert "create it first, for example with createdb restored_app" in error


def test_not_empty_counts_only_named_kinds(db, pg, tmp_path):
    with db.connect() as connection:
        sample_rows(connection)
    assert run_cli("backup", "--dir", str(tmp_path), dsn=db.dsn).exit_code == 0
    target = pg.create_database()
    try:
        with psycopg.connect(pg.dsn_for(target), autocommit=True) as connection:
            connection.execute("CREATE TABLE note (id integer PRIMARY KEY, body text UNIQUE)")

        result = run_cli("backup", "restore", str(only_backup(tmp_path)), "--target-dsn", pg.dsn_for(target))
    finally:
        pg.drop_database(target)

    assert result.exit_code == 1
    [error] = error_lines(result)
    assert f"Target database {target} is not empty (1 table, view or sequence)" in error


@pytest.mark.parametrize("clean", [False, True], ids=["plain", "clean"])
def test_owned_backup_needs_owner_role(db, pg, tmp_path, clean):
    with db.connect() as connection:
        sample_rows(connection)
        install(connection, "audit", [], use_all=True)
        event_triggers = connection.execute("SELECT count(*) FROM pg_catalog.pg_event_trigger").fetchone()[0]
    assert event_triggers > 0
    assert run_cli("backup", "--dir", str(tmp_path), dsn=db.dsn).exit_code == 0
    result, _role, _target = restore_as_new_role(pg, db, only_backup(tmp_path), owns_target=True,
                                                 arguments=["--clean"] if clean else [])

    assert result.exit_code == 1
    [error] = error_lines(result)
    assert "The backup gives its objects to role postgres, and role restorer_" in error
    assert "Run the restore as postgres, as a member of postgres, or as a superuser." in error
    assert "restore into a new, empty database" not in error
    assert "pg_restore: pg_restore:" not in result.stderr
    assert "pg_restore: error:" in result.stderr


def test_restore_without_target_exits_2(tmp_path):
    backup = tmp_path / "app.dump"
    backup.write_bytes(b"not read")
    result = run_cli("backup", "restore", str(backup), env={"AUDITCTL_TARGET_DSN": ""})
    assert result.exit_code == 2
    assert result.stderr == "Error: Missing --target-dsn: name the database to restore into.\n"


@pytest.mark.parametrize(("with_audit", "missing_grant"), [
    (True, "GRANT CREATE ON DATABASE {target} TO {role}"),
    (False, "GRANT USAGE, CREATE ON SCHEMA public TO {role}"),
], ids=["database", "schema"])
def test_restore_names_missing_grant(db, pg, tmp_path, with_audit, missing_grant):
    with db.connect() as connection:
        sample_rows(connection)
        if with_audit:
            install(connection, "audit", [], use_all=True)
    assert run_cli("backup", "--dir", str(tmp_path), dsn=db.dsn).exit_code == 0
    result, role, target = restore_as_new_role(pg, db, only_backup(tmp_path), owns_target=False)

    assert result.exit_code == 1
    [error] = error_lines(result)
    assert missing_grant.format(target=target, role=role) in error
    assert "needs a superuser" not in error
    assert "event triggers" not in error


@pytest.mark.parametrize(("stderr", "expected"), [
    ('pg_restore: error: could not execute query: ERROR:  permission denied to create event trigger "ddl"\n'
     'HINT:  Must be superuser to create an event trigger.\nCommand was: CREATE EVENT TRIGGER ddl ON ddl_command_end\n',
     "Only a superuser may create or change event triggers"),
    ('pg_restore: error: could not execute query: ОШИБКА:  нет доступа к базе данных app\n'
     'Команда: CREATE SCHEMA audit;\n',
     None),
    ('pg_restore: error: could not execute query: ERROR:  permission denied for table invoice\n'
     'Command was: COPY public.invoice (id) FROM stdin;\n',
     None),
    ('pg_restore: error: could not execute query: ERROR:  permission denied for database my app\n'
     'Command was: CREATE SCHEMA audit;\n',
     'GRANT CREATE ON DATABASE "my app" TO "Restorer"'),
], ids=["event-trigger", "translated", "other-permission", "quoted-names"])
def test_restore_permission_hint_cases(stderr, expected):
    target = TargetState(database="app", role="Restorer", relations=0, server_major=16)
    hint = permission_hint(first_error_block(stderr), target)
    if expected is None:
        assert hint is None
    else:
        assert expected in hint
