"""The audit schema: versioned tables, shared functions and partitions."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg

from .. import __version__
from ..errors import NotInstalledError, PermissionDeniedError
from ..i18n import _
from ..sqltext import quote_ident, quote_literal, render, schema_files
from .rules import MASK_MARKER, SECRET_NAME

logger = logging.getLogger(__name__)

DEFAULT_SCHEMA = "audit"

# Monthly partitions kept ready ahead of the current month.
PARTITIONS_AHEAD = 3


@dataclass(frozen=True)
class SchemaStep:
    """One SQL script of the schema installation, in the order it runs."""

    name: str
    sql: str


def template_context(connection: psycopg.Connection, schema: str) -> dict[str, object]:
    """Values shared by all templates, with names already quoted."""
    return {
        "schema": quote_ident(schema),
        "schema_name": schema,
        "input_is_valid": connection.info.server_version >= 160000,
        "secret_pattern": quote_literal(SECRET_NAME.pattern),
        "mask_marker": quote_literal(MASK_MARKER),
    }


def applied_versions(connection: psycopg.Connection, schema: str) -> set[int]:
    """Return the schema versions recorded in the database, empty before the first install."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                       (f"{quote_ident(schema)}.schema_version",))
        if not cursor.fetchone()[0]:
            return set()
        cursor.execute(f"SELECT version FROM {quote_ident(schema)}.schema_version")
        return {row[0] for row in cursor.fetchall()}


def schema_exists(connection: psycopg.Connection, schema: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = %s)", (schema,))
        return cursor.fetchone()[0]


def require_schema_privileges(connection: psycopg.Connection, schema: str) -> None:
    """Raise PermissionDeniedError unless the current role may create the audit schema or owns it.

    Install creates the schema when it is missing, which needs the CREATE
    privilege on the database, and otherwise comments on it and sets its
    grants, which only its owner and the owner's members may do.
    """
    # Names are quoted by the server, only where SQL needs it, for the statements in the messages.
    role, database, quoted_schema, owner, member, may_create, is_owner, installed = connection.execute(
        """SELECT pg_catalog.quote_ident(current_user), pg_catalog.quote_ident(pg_catalog.current_database()),
                  pg_catalog.quote_ident(%s), n.nspowner::regrole::text,
                  pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE'),
                  pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'),
                  n.nspowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user),
                  EXISTS (SELECT FROM pg_catalog.pg_class AS c WHERE c.relnamespace = n.oid AND c.relname = 'events')
           FROM (SELECT) AS one
           LEFT JOIN pg_catalog.pg_namespace AS n ON n.nspname = %s""", (schema, schema)).fetchone()
    if owner is None and not may_create:
        raise PermissionDeniedError(
            _("Role {role} may not create the audit schema {schema}, because it lacks the CREATE privilege on "
              "database {database}. As a superuser or the database owner, run GRANT CREATE ON DATABASE {database} "
              "TO {role}, or create the schema for it with CREATE SCHEMA {schema} AUTHORIZATION {role}, "
              "then run install again.")
            .format(role=role, schema=quoted_schema, database=database))
    if owner is not None and not member:
        raise PermissionDeniedError(
            _("The audit schema {schema} is owned by role {owner}, and role {role} is not a member of it. "
              "Run install as {owner} or as a member of that role.")
            .format(schema=quoted_schema, owner=owner, role=role))
    if owner is not None and not is_owner and not installed:
        # The tables and functions would belong to this role, and the schema's owner could not use its own log.
        raise PermissionDeniedError(
            _("The audit schema {schema} is owned by role {owner}, so the first install must run as {owner} for "
              "the log to belong to it. Run install as {owner}, then once more as {role} to add what only it may "
              "create, such as DDL capture.")
            .format(schema=quoted_schema, owner=owner, role=role))


def require_log_owner(connection: psycopg.Connection, schema: str, command: str) -> None:
    """Raise PermissionDeniedError unless the current role owns the audit schema, is a member of its owner, or is
    a superuser, as ``command`` needs to change the log."""
    role, owner, quoted_schema, member = _schema_access(connection, schema)
    if owner is not None and not member:
        raise PermissionDeniedError(
            _("The audit schema {schema} is owned by role {owner}, and role {role} is not a member of it. "
              "Run {command} as {owner}, as a member of {owner}, or as a superuser.")
            .format(schema=quoted_schema, owner=owner, role=role, command=command))


def require_log_reader(connection: psycopg.Connection, schema: str, command: str) -> None:
    """Raise PermissionDeniedError unless the current role may read the events table, which ``command`` needs."""
    role, owner, quoted_schema, member = _schema_access(connection, schema)
    if owner is None or member:
        return
    readable = connection.execute("SELECT pg_catalog.has_table_privilege(pg_catalog.to_regclass(%s), 'SELECT')",
                                  (f"{quote_ident(schema)}.events",)).fetchone()[0]
    if readable is False:
        raise PermissionDeniedError(
            _("Role {role} may not read the audit log in schema {schema}, which role {owner} owns. Run {command} "
              "as {owner}, as a member of {owner}, as a superuser, or as a role given read access with "
              "auditctl install --viewer-role.")
            .format(schema=quoted_schema, owner=owner, role=role, command=command))


def _schema_access(connection: psycopg.Connection, schema: str) -> tuple[str, str | None, str, bool]:
    """Return the current role, the schema's owner, the schema's name and whether the role is a member of the owner.

    The names are quoted for SQL where it needs quotes. The owner is None when
    the schema does not exist. A superuser counts as a member of every role.
    """
    return connection.execute(
        """SELECT pg_catalog.quote_ident(current_user), n.nspowner::regrole::text, pg_catalog.quote_ident(%s),
                  COALESCE(pg_catalog.pg_has_role(current_user, n.nspowner, 'MEMBER'), false)
           FROM (SELECT) AS one
           LEFT JOIN pg_catalog.pg_namespace AS n ON n.nspname = %s""", (schema, schema)).fetchone()


def log_owner_if_other(connection: psycopg.Connection, schema: str) -> str | None:
    """Return the owner of the events table, quoted for SQL, when the current role is not it; else None.

    A superuser or a member of the owner's role may add functions, tables and
    partitions to a log that another role owns. They must go to that owner,
    who could otherwise not replace, drop or rotate them.
    """
    row = connection.execute(
        """SELECT c.relowner::regrole::text
           FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = 'events'
             AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user)""",
        (schema,)).fetchone()
    return row[0] if row else None


@contextmanager
def acting_as(connection: psycopg.Connection, role: str | None) -> Iterator[None]:
    """Run the block as ``role`` (quoted for SQL) inside the caller's transaction, so that it owns what is created.

    None runs it as the current role. The previous role is set back only when
    the block succeeds: on an error the transaction, or its savepoint, is
    rolled back, which undoes the change of role too.
    """
    if role is None:
        yield
        return
    previous = connection.execute("SELECT pg_catalog.current_setting('role')").fetchone()[0]
    connection.execute(f"SET LOCAL ROLE {role}")
    yield
    connection.execute("SELECT pg_catalog.set_config('role', %s, true)", (previous,))


def read_setting(connection: psycopg.Connection, schema: str, name: str) -> object | None:
    """Return the JSON value of one row of the settings table; None when it is unset or the table is absent."""
    settings = f"{quote_ident(schema)}.settings"
    exists = connection.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (settings,)).fetchone()[0]
    if not exists:
        return None
    row = connection.execute(f"SELECT value FROM {settings} WHERE name = %s", (name,)).fetchone()
    return row[0] if row else None


def require_installed(connection: psycopg.Connection, schema: str) -> None:
    """Raise NotInstalledError unless the events table exists in ``schema``."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL", (f"{quote_ident(schema)}.events",))
        if not cursor.fetchone()[0]:
            raise not_installed_error(schema)


def not_installed_error(schema: str) -> NotInstalledError:
    """Return the error of a command that needs the audit schema ``schema`` before it is installed."""
    return NotInstalledError(
        _("The audit schema {schema!r} is not installed in this database. "
          "Run `auditctl install` first, or pass --schema if it has another name.")
        .format(schema=schema))


def pending_versions(applied: set[int] | list[int]) -> list[int]:
    """Return the schema versions of this auditctl that ``applied`` lacks, oldest first."""
    return [version for version, _template in schema_files() if version not in applied]


def plan_schema(connection: psycopg.Connection, schema: str) -> list[SchemaStep]:
    """List the scripts that bring the schema up to date, without running them."""
    context = template_context(connection, schema)
    done = applied_versions(connection, schema)
    bootstrap = render("bootstrap.sql.j2", create_schema=not schema_exists(connection, schema), **context)
    steps = [SchemaStep("bootstrap", bootstrap)]
    for version, template in schema_files():
        if version in done:
            continue
        body = render(template, **context)
        record = (f"INSERT INTO {context['schema']}.schema_version (version, tool_version) "
                  f"VALUES ({version}, {quote_literal(__version__)});\n")
        steps.append(SchemaStep(template, body + "\n" + record))
    steps.append(SchemaStep("functions", render("functions.sql.j2", **context)))
    steps.append(SchemaStep(
        "partitions", f"SELECT {context['schema']}.create_partitions({PARTITIONS_AHEAD});\n"))
    return steps


def apply_schema(connection: psycopg.Connection, schema: str) -> list[str]:
    """Create or upgrade the audit schema inside the caller's transaction.

    Returns the names of the steps that ran.
    """
    names = []
    for step in plan_schema(connection, schema):
        logger.debug("running schema step %s", step.name)
        connection.execute(step.sql)
        names.append(step.name)
        if step.name.startswith("schema/"):
            logger.info("applied %s to schema %s", step.name, schema)
    return names
