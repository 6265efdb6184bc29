"""Database roles that read the audit log without being able to change it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql

from ..errors import InvalidArgumentError
from ..i18n import _
from ..sqltext import quote_ident
from .schema import require_installed

logger = logging.getLogger(__name__)

# Tables a viewer reads: the log, the list of audited tables, the schema
# version, the column rules and the settings. Never the hash key.
VIEWER_TABLES = ("events", "audited_tables", "schema_version", "column_rules", "settings")
# Functions that status calls to show what install would change. Both run with the caller's rights, so a
# viewer that calls follow_renames() with apply true still cannot change the rules.
VIEWER_FUNCTIONS = ("table_layout(regclass)", "follow_renames(regclass, jsonb, boolean)")
# Every table of the audit schema, from which an application role loses write access.
AUDIT_TABLES = ("events", "audited_tables", "schema_version", "column_rules", "settings", "hash_key")


# Queries for the privilege types of a role's own ACL entries on one object, by the catalog that contains
# the object. aclexplode() lists each privilege of each entry once. PUBLIC is grantee 0 and a group role
# has its own oid, so privileges the role has only through PUBLIC or through membership never match.
_DIRECT_PRIVILEGES = {
    "schema": """SELECT a.privilege_type
                 FROM pg_catalog.pg_namespace AS n, pg_catalog.aclexplode(n.nspacl) AS a
                 WHERE n.nspname = %(target)s
                   AND a.grantee = %(role)s::pg_catalog.oid""",
    "table": """SELECT a.privilege_type
                FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS a
                WHERE c.oid = pg_catalog.to_regclass(%(target)s)
                  AND a.grantee = %(role)s::pg_catalog.oid""",
    "function": """SELECT a.privilege_type
                   FROM pg_catalog.pg_proc AS p, pg_catalog.aclexplode(p.proacl) AS a
                   WHERE p.oid = pg_catalog.to_regprocedure(%(target)s)
                     AND a.grantee = %(role)s::pg_catalog.oid""",
    # REVOKE ALL ON a table also revokes its column privileges, so an entry on a column makes it needed too.
    "columns": """SELECT a.privilege_type
                  FROM pg_catalog.pg_attribute AS c, pg_catalog.aclexplode(c.attacl) AS a
                  WHERE c.attrelid = pg_catalog.to_regclass(%(target)s)
                    AND a.grantee = %(role)s::pg_catalog.oid""",
}


@dataclass(frozen=True)
class Grant:
    """A GRANT or REVOKE ALL of a role's setup, and the object whose ACL shows whether it is in place."""

    statement: sql.Composed
    kind: Literal["schema", "table", "function"]
    # The schema name, or the quoted name of the table or the function with its argument types.
    target: str
    # The privilege that GRANT gives, or None for REVOKE ALL, which is in place when the role has no entry.
    privilege: str | None


def viewer_grants(schema: str, role: str) -> list[Grant]:
    """Return the grants that let ``role`` read the audit schema and nothing more.

    The role gets USAGE on the schema, SELECT on its tables except the hash
    key, and EXECUTE on the read-only functions that ``status`` calls, but no
    INSERT, UPDATE or DELETE on any table. Like every role, it can call the
    schema's ``log_event()`` function, which the web page uses to record
    LOGIN and EXPORT events.
    """
    audit = sql.Identifier(schema)
    grantee = sql.Identifier(role)
    grants = [_schema_usage(schema, role)]
    grants.extend(Grant(sql.SQL("GRANT SELECT ON {}.{} TO {}").format(audit, sql.Identifier(table), grantee),
                        "table", quote_ident(schema, table), "SELECT")
                  for table in VIEWER_TABLES)
    grants.extend(_function_execute(schema, function, role) for function in VIEWER_FUNCTIONS)
    return grants


def _schema_usage(schema: str, role: str) -> Grant:
    statement = sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(role))
    return Grant(statement, "schema", schema, "USAGE")


def _function_execute(schema: str, function: str, role: str) -> Grant:
    """Return the grant of EXECUTE on ``function``, a name with its argument types, to ``role``."""
    statement = sql.SQL("GRANT EXECUTE ON FUNCTION {}.{} TO {}").format(
        sql.Identifier(schema), sql.SQL(function), sql.Identifier(role))
    return Grant(statement, "function", f"{quote_ident(schema)}.{function}", "EXECUTE")


def require_role(connection: psycopg.Connection, role: str) -> None:
    """Raise InvalidArgumentError unless ``role`` exists.

    auditctl does not create the role, since a login role needs a password
    that only its owner should choose.
    """
    exists = connection.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = %s)",
                                (role,)).fetchone()[0]
    if not exists:
        raise InvalidArgumentError(
            _("Role {role!r} does not exist. Create it first, for example with "
              "CREATE ROLE {quoted} LOGIN PASSWORD '...', then run install again.")
            .format(role=role, quoted=sql.Identifier(role).as_string(connection)))


def grant_viewer(connection: psycopg.Connection, schema: str, role: str, *, dry_run: bool = False) -> list[str]:
    """Grant ``role`` read access to the audit log; return the statements run, as text.

    Only the statements whose effect is not in place yet run, so granting
    twice changes nothing and runs nothing, and an empty list means the role
    already had read access. With ``dry_run`` those statements are only
    returned. Raises InvalidArgumentError when the role does not exist.
    """
    texts = _apply(connection, schema, role, viewer_grants(schema, role), dry_run)
    if texts and not dry_run:
        logger.info("granted read access to schema %s to role %s", schema, role)
    return texts


def _apply(connection: psycopg.Connection, schema: str, role: str, grants: list[Grant],
           dry_run: bool) -> list[str]:
    """Run the missing ones of ``grants`` in one transaction, after checking the role and schema.

    Returns the statements that ran, or on a dry run those that would run,
    as text. Skipping the others keeps a repeated install from recording a
    PERMISSION_CHANGE event for each grant when DDL capture is on.
    """
    if dry_run:
        return [_as_text(connection, grant) for grant in _missing(connection, role, grants)]
    require_role(connection, role)
    require_installed(connection, schema)
    with connection.transaction():
        missing = _missing(connection, role, grants)
        for grant in missing:
            connection.execute(grant.statement)
    return [_as_text(connection, grant) for grant in missing]


def _as_text(connection: psycopg.Connection, grant: Grant) -> str:
    return grant.statement.as_string(connection) + ";"


def _missing(connection: psycopg.Connection, role: str, grants: list[Grant]) -> list[Grant]:
    """Return the grants whose effect the role's own ACL entries do not show yet.

    A GRANT is missing unless the role has that privilege on the object
    directly. A REVOKE ALL is missing while the role has any entry on the
    table or its columns. A role that does not exist has no entries, so a
    dry run for it returns every GRANT.
    """
    row = connection.execute("SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)).fetchone()
    role_oid = row[0] if row else None
    return [grant for grant in grants if not _in_place(connection, grant, role_oid)]


def _in_place(connection: psycopg.Connection, grant: Grant, role_oid: int | None) -> bool:
    params = {"target": grant.target, "role": role_oid}
    privileges = {row[0] for row in connection.execute(_DIRECT_PRIVILEGES[grant.kind], params)}
    if grant.privilege is not None:
        return grant.privilege in privileges
    # NOTE: an entry that another grantor gave cannot be revoked by this role, so the REVOKE ALL
    # runs again on every install while that entry remains.
    columns = connection.execute(_DIRECT_PRIVILEGES["columns"], params).fetchall()
    return not privileges and not columns


def app_grants(schema: str, role: str) -> list[Grant]:
    """Return the grants and revokes that let ``role`` write audited tables but never the log itself.

    The role may use the audit schema and call ``log_event()``. Every direct
    privilege on the audit tables is revoked, so its only way into the log is
    through the triggers and that function.
    """
    audit = sql.Identifier(schema)
    grantee = sql.Identifier(role)
    grants = [_schema_usage(schema, role),
              _function_execute(schema, "log_event(text, text, text, text, text, jsonb)", role)]
    grants.extend(Grant(sql.SQL("REVOKE ALL ON {}.{} FROM {}").format(audit, sql.Identifier(table), grantee),
                        "table", quote_ident(schema, table), None)
                  for table in AUDIT_TABLES)
    return grants


def require_not_log_owner(connection: psycopg.Connection, schema: str, role: str) -> None:
    """Raise InvalidArgumentError when ``role`` owns the audit log, or would own the one that install creates.

    The setup of an application role revokes its privileges on the audit
    tables. From their owner that takes away the INSERT that the generated
    triggers, which run as the owner, need for every audited write.
    """
    owns = connection.execute(
        """SELECT COALESCE(
                      (SELECT c.relowner FROM pg_catalog.pg_class AS c
                       JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
                       WHERE n.nspname = %s AND c.relname = 'events'),
                      (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user))
                  = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)""",
        (schema, role)).fetchone()[0]
    if owns:
        raise InvalidArgumentError(
            _("Role {role!r} owns the audit log, so it cannot be set up as an application role: revoking its "
              "privileges on the log would make every audited write fail. Leave --app-role out, or install "
              "auditctl as a separate role that owns the log and give the application's role to --app-role.")
            .format(role=role))


def app_role_problems(connection: psycopg.Connection, schema: str, role: str) -> list[str]:
    """List why ``role`` could still change the log despite the grants: superuser or owner."""
    row = connection.execute(
        """SELECT r.rolsuper, pg_catalog.pg_has_role(r.oid, n.nspowner, 'USAGE')
           FROM pg_catalog.pg_roles r, pg_catalog.pg_namespace n
           WHERE r.rolname = %s AND n.nspname = %s""", (role, schema)).fetchone()
    if row is None:
        return []
    problems = []
    if row[0]:
        problems.append(_("{role} is a superuser and can change the log whatever the grants.").format(role=role))
    elif row[1]:
        problems.append(_("{role} owns the audit schema, or is a member of its owner, and can change the log; "
                          "install auditctl as a separate role.").format(role=role))
    return problems


def grant_app(connection: psycopg.Connection, schema: str, role: str, *, dry_run: bool = False) -> list[str]:
    """Set up ``role`` as an application role; return the statements run, as text.

    As with grant_viewer(), only the missing statements run, and an empty
    list means the role was set up already. Raises InvalidArgumentError when
    the role does not exist.
    """
    texts = _apply(connection, schema, role, app_grants(schema, role), dry_run)
    if texts and not dry_run:
        logger.info("set up role %s as an application role of schema %s", role, schema)
    return texts
