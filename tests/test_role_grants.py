"""Repeated `install --app-role` and `--viewer-role` run only the grants a role lacks.

With DDL capture on (the test databases install as a superuser), every
GRANT and REVOKE that runs is recorded as a PERMISSION_CHANGE event, so
the events show which statements ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from auditctl.audit.install import install
from helpers import events, table_owner_dsn


@dataclass(frozen=True)
class Roles:
    app: str
    viewer: str


def _quoted(role: str) -> str:
    return sql.Identifier(role).as_string(None)


@pytest.fixture
def roles(db) -> Iterator[Roles]:
    """An application role and a viewer role whose names need quoting, with the audit schema installed."""
    names = Roles(app=f"App {db.name}", viewer=f'Читатель "{db.name}"')
    with db.connect() as connection:
        connection.execute("CREATE TABLE item (id int PRIMARY KEY, name text)")
        for role in (names.app, names.viewer):
            connection.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(role)))
        install(connection, "audit", [], use_all=True)
    yield names
    with db.connect() as connection:
        for role in (names.app, names.viewer):
            connection.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(sql.Identifier(role)))


def _install(cli, db, *roles: str, dry_run: bool = False):
    """Run `auditctl install` with the given --app-role and --viewer-role options, and check it succeeded."""
    result = cli("install", *roles, *(["--dry-run"] if dry_run else []), dsn=db.dsn)
    assert result.exit_code == 0, result.stderr
    return result


def _permission_changes(db, after: int = 0) -> list[str]:
    """The statements of the PERMISSION_CHANGE events with an id above ``after``, oldest first."""
    with db.connect() as connection:
        recorded = events(connection, where="action = 'PERMISSION_CHANGE' AND id > %s", params=(after,),
                          system=True)
    return [event["details"]["statement"] for event in recorded]


def _last_event_id(db) -> int:
    with db.connect() as connection:
        return connection.execute("SELECT coalesce(max(id), 0) FROM audit.events").fetchone()[0]


def test_reinstall_records_no_permission_change(cli, db, roles):
    options = ("--app-role", roles.app, "--viewer-role", roles.viewer)
    _install(cli, db, *options)
    first_changes = _permission_changes(db)
    before = _last_event_id(db)

    again = _install(cli, db, *options)
    dry_run = _install(cli, db, *options, dry_run=True)

    assert _permission_changes(db, after=before) == []
    # Eight grants to the viewer and two to the application role, which has no privilege to revoke yet.
    assert len(first_changes) == 10
    output = " ".join(again.stdout.split())
    assert f"Role {roles.app} already has the privileges of an application role" in output
    assert f"Role {roles.viewer} can already read the audit log; no GRANT was run." in output
    # The dry run prints the schema's SQL too, whose grants name no role of the test.
    assert _quoted(roles.app) not in dry_run.stdout
    assert _quoted(roles.viewer) not in dry_run.stdout
    dry_run_summary = " ".join(dry_run.stderr.split())
    assert f"Dry run: role {roles.app} already has the privileges of an application role" in dry_run_summary
    assert f"Dry run: role {roles.viewer} can already read the audit log" in dry_run_summary


def test_revoked_privilege_granted_back_alone(cli, db, roles):
    _install(cli, db, "--viewer-role", roles.viewer)
    with db.connect() as connection:
        connection.execute(sql.SQL("REVOKE SELECT ON audit.settings FROM {}").format(sql.Identifier(roles.viewer)))
    before = _last_event_id(db)
    expected = f"GRANT SELECT ON \"audit\".\"settings\" TO {_quoted(roles.viewer)}"

    dry_run = _install(cli, db, "--viewer-role", roles.viewer, dry_run=True)
    again = _install(cli, db, "--viewer-role", roles.viewer)

    role_statements = [line for line in dry_run.stdout.splitlines() if _quoted(roles.viewer) in line]
    assert role_statements == [expected + ";"]
    assert f"Role {roles.viewer} can now read the audit log. Statements run:" in " ".join(again.stdout.split())
    assert [line.strip() for line in again.stdout.splitlines() if _quoted(roles.viewer) in line] == [expected + ";"]
    assert _permission_changes(db, after=before) == [expected]


@pytest.mark.parametrize("privilege", ["INSERT", "UPDATE (user_id)"], ids=["table", "column"])
def test_direct_privilege_on_events_revoked(cli, db, roles, privilege):
    _install(cli, db, "--app-role", roles.app)
    with db.connect() as connection:
        connection.execute(sql.SQL("GRANT {} ON audit.events TO {}").format(sql.SQL(privilege),
                                                                            sql.Identifier(roles.app)))
    before = _last_event_id(db)
    expected = f"REVOKE ALL ON \"audit\".\"events\" FROM {_quoted(roles.app)}"

    again = _install(cli, db, "--app-role", roles.app)

    assert _permission_changes(db, after=before) == [expected]
    assert f"Statements run: {expected};" in " ".join(again.stdout.split())
    with db.connect() as connection:
        table_entries = connection.execute(
            """SELECT count(*) FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS a
               WHERE c.oid = 'audit.events'::regclass AND a.grantee = to_regrole(%s)""",
            (_quoted(roles.app),)).fetchone()[0]
        column_entries = connection.execute(
            """SELECT count(*) FROM pg_catalog.pg_attribute AS c, pg_catalog.aclexplode(c.attacl) AS a
               WHERE c.attrelid = 'audit.events'::regclass AND a.grantee = to_regrole(%s)""",
            (_quoted(roles.app),)).fetchone()[0]
    assert table_entries == 0
    assert column_entries == 0


def test_inherited_privilege_still_granted(cli, db, roles):
    group = sql.Identifier(f"readers_{db.name}")
    with db.connect() as connection:
        connection.execute("GRANT USAGE ON SCHEMA audit TO PUBLIC; GRANT SELECT ON audit.events TO PUBLIC")
        connection.execute(sql.SQL("CREATE ROLE {0}; GRANT {0} TO {1}; GRANT SELECT ON audit.settings TO {0}")
                           .format(group, sql.Identifier(roles.viewer)))
    try:
        dry_run = _install(cli, db, "--viewer-role", roles.viewer, dry_run=True)
    finally:
        with db.connect() as connection:
            connection.execute(sql.SQL("DROP OWNED BY {0}; DROP ROLE {0}").format(group))

    viewer = _quoted(roles.viewer)
    assert f'GRANT USAGE ON SCHEMA "audit" TO {viewer};' in dry_run.stdout
    assert f'GRANT SELECT ON "audit"."events" TO {viewer};' in dry_run.stdout
    assert f'GRANT SELECT ON "audit"."settings" TO {viewer};' in dry_run.stdout


def test_log_owner_rejected_as_app_role(cli, db):
    """The role that owns the log keeps its privileges: revoking them would fail every audited write."""
    with table_owner_dsn(db) as owner_dsn:
        owner = owner_dsn.split("user=")[1].split()[0]
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE item (id int PRIMARY KEY)")
        assert cli("install", "item", dsn=owner_dsn).exit_code == 0
        rejected = cli("install", "--app-role", owner, dsn=owner_dsn)
        dry_run = cli("install", "--app-role", owner, "--dry-run", dsn=owner_dsn)
        with psycopg.connect(owner_dsn, autocommit=True) as connection:
            connection.execute("INSERT INTO item VALUES (1)")
            recorded = events(connection, where="entity_id = '1'")

    for result in (rejected, dry_run):
        assert result.exit_code == 2, result.stdout
        assert result.stderr.strip().count("\n") == 0
        assert f"Role {owner!r} owns the audit log, so it cannot be set up as an application role" \
            in result.stderr
    assert [event["action"] for event in recorded] == ["INSERT"]
