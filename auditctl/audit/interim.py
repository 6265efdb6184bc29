"""Tables on the interim trigger function, and their return to generated triggers.

The DDL event trigger puts capture_generic on tables created under the
auto_audit policy and on audited tables whose ALTER renamed them, their key
or a column with a rule. It captures correctly but reads from the catalog
on every row what a generated function has written into its code, so
``auditctl maintain`` installs the generated triggers again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg

from ..errors import AuditctlError
from ..sqltext import quote_ident
from .catalog import Table, list_tables
from .ddl import GENERIC_FUNCTION
from .install import install
from .schema import schema_exists
from .triggers import TRIGGER_NAMES

logger = logging.getLogger(__name__)


@dataclass
class SpecialiseResult:
    """Tables that got their generated triggers back, and those that failed, with the error."""

    specialised: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def interim_tables(connection: psycopg.Connection, schema: str) -> list[Table]:
    """List the tables whose auditctl triggers call the interim function of ``schema``."""
    rows = connection.execute(
        """SELECT DISTINCT t.tgrelid::bigint FROM pg_catalog.pg_trigger AS t
           JOIN pg_catalog.pg_proc AS p ON p.oid = t.tgfoid
           WHERE t.tgname = ANY(%s) AND t.tgparentid = 0 AND NOT t.tgisinternal
             AND p.proname = %s AND p.pronamespace = %s::regnamespace""",
        (list(TRIGGER_NAMES), GENERIC_FUNCTION, quote_ident(schema))).fetchall()
    oids = {row[0] for row in rows}
    return [table for table in list_tables(connection, schema) if table.oid in oids]


def specialise_interim_tables(connection: psycopg.Connection, schema: str,
                              lock_timeout_seconds: float = 10.0) -> SpecialiseResult:
    """Install the generated triggers of every table on the interim function, one transaction per table.

    A table that fails, for example because another transaction holds its
    lock, keeps the interim triggers, which still capture correctly.
    """
    result = SpecialiseResult()
    if not schema_exists(connection, schema):
        return result
    for table in interim_tables(connection, schema):
        try:
            install(connection, schema, [_qualified_name(table)], lock_timeout_seconds=lock_timeout_seconds)
        except AuditctlError as exc:
            result.failed.append((table.entity_type, str(exc)))
            logger.warning("kept the interim audit trigger of %s: %s", table.entity_type, exc)
            continue
        result.specialised.append(table.entity_type)
        logger.info("replaced the interim audit trigger of %s with its generated one", table.entity_type)
    return result


def _qualified_name(table: Table) -> str:
    """Write the table's name as install parses it: each part double-quoted, quotes doubled."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (table.schema, table.name))
