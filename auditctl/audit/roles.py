"""Database roles that read the audit log without being able to change it."""

from __future__ import annotations

import logging

import psycopg
from psycopg import sql

from ..errors import InvalidArgumentError
from ..i18n import _
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


def viewer_grants(schema: str, role: str) -> list[sql.Composed]:
    """Return the GRANT statements that let ``role`` read the audit schema and nothing more.

    The role gets USAGE on the schema, SELECT on its tables except the hash
    key, and EXECUTE on the read-only functions that ``status`` calls, but no
    INSERT, UPDATE or DELETE on any table. Like every role, it can call the
    schema's ``log_event()`` function, which the web page uses to record
    LOGIN and EXPORT events.
    """
    audit = sql.Identifier(schema)
    grantee = sql.Identifier(role)
    statements = [sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(audit, grantee)]
    statements.extend(sql.SQL("GRANT SELECT ON {}.{} TO {}").format(audit, sql.Identifier(table), grantee)
                      for table in VIEWER_TABLES)
    statements.extend(sql.SQL("GRANT EXECUTE ON FUNCTION {}.{} TO {}").format(audit, sql.SQL(function), grantee)
                      for function in VIEWER_FUNCTIONS)
    return statements


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
    """Grant ``role`` read access to the audit log; return the statements as text.

    Granting twice changes nothing. With ``dry_run`` the statements are only
    returned. Raises InvalidArgumentError when the role does not exist.
    """
    texts = _apply(connection, schema, role, viewer_grants(schema, role), dry_run)
    if not dry_run:
        logger.info("granted read access to schema %s to role %s", schema, role)
    return texts


def _apply(connection: psycopg.Connection, schema: str, role: str, statements: list[sql.Composed],
           dry_run: bool) -> list[str]:
    """Run grant statements in one transaction, after checking the role and schema; return them as text."""
    texts = [statement.as_string(connection) + ";" for statement in statements]
    if dry_run:
        return texts
    require_role(connection, role)
    require_installed(connection, schema)
    with connection.transaction():
        for statement in statements:
            connection.execute(statement)
    return texts


def app_grants(schema: str, role: str) -> list[sql.Composed]:
    """Return the statements that let ``role`` write audited tables but never the log itself.

    The role may use the audit schema and call ``log_event()``. Every direct
    privilege on the audit tables is revoked, so its only way into the log is
    through the triggers and that function.
    """
    audit = sql.Identifier(schema)
    grantee = sql.Identifier(role)
    statements = [sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(audit, grantee),
                  sql.SQL("GRANT EXECUTE ON FUNCTION {}.log_event(text, text, text, text, text, jsonb) TO {}")
                  .format(audit, grantee)]
    statements.extend(sql.SQL("REVOKE ALL ON {}.{} FROM {}").format(audit, sql.Identifier(table), grantee)
                      for table in AUDIT_TABLES)
    return statements


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
    """Set up ``role`` as an application role; return the statements as text.

    Raises InvalidArgumentError when the role does not exist.
    """
    texts = _apply(connection, schema, role, app_grants(schema, role), dry_run)
    if not dry_run:
        logger.info("set up role %s as an application role of schema %s", role, schema)
    return texts
