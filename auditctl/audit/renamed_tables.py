"""Tables renamed since their events were written, found by the old name that those events keep.

Events name their table by ``schema.table`` as it was when they were
written, and a rename leaves them as they are. Three records tell which
table an old name belongs to now:

- the registry row, whose ``table_id`` (a regclass) follows the rename,
  while ``table_name`` keeps the old name until the next install;
- the ``AUDIT_TRIGGER_REFRESHED`` event that DDL capture records at the
  rename, with ``previous_table`` and ``table``;
- the ``AUDIT_INSTALL`` event of the install (or ``maintain``) that
  regenerated the trigger afterwards without DDL capture, whose
  ``renamed_tables`` maps the old name to the new one.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from .catalog import Table, list_tables

# A table renamed more often than this in a row is treated as not found.
_MAX_RENAMES = 20

_REGISTERED_AS = """
SELECT r.table_id::pg_catalog.oid::bigint
  FROM {audit}.audited_tables AS r
 WHERE r.table_name = %s
"""

# NOTE: no index covers these events, so this scans the log. It runs only
# for a name that no current table has.
_LOGGED_RENAME = """
SELECT CASE action WHEN 'AUDIT_TRIGGER_REFRESHED' THEN details ->> 'table'
                   ELSE details -> 'renamed_tables' ->> %(name)s END
  FROM {audit}.events
 WHERE (action = 'AUDIT_TRIGGER_REFRESHED' AND details ->> 'previous_table' = %(name)s)
    OR (action = 'AUDIT_INSTALL' AND details -> 'renamed_tables' ? %(name)s)
 ORDER BY id DESC
 LIMIT 1
"""


def find_renamed_table(connection: psycopg.Connection, schema: str, entity_type: str) -> Table | None:
    """Return the table that was named ``entity_type`` before one or more renames, or None.

    Returns None as well when the name belongs to a current table, or when
    the renamed table was dropped since.
    """
    tables = list_tables(connection, schema)
    by_name = {table.entity_type: table for table in tables}
    by_oid = {table.oid: table for table in tables}
    audit = sql.Identifier(schema)
    name = entity_type
    seen = {name}
    for _rename in range(_MAX_RENAMES):
        if name in by_name:
            return by_name[name] if name != entity_type else None
        for (oid,) in connection.execute(sql.SQL(_REGISTERED_AS).format(audit=audit), (name,)).fetchall():
            if oid in by_oid:
                return by_oid[oid]
        row = connection.execute(sql.SQL(_LOGGED_RENAME).format(audit=audit), {"name": name}).fetchone()
        if row is None or row[0] is None or row[0] in seen:
            return None
        name = row[0]
        seen.add(name)
    return None


def recorded_name(connection: psycopg.Connection, schema: str, table: Table) -> str | None:
    """Return the old name that ``table``'s trigger writes into new events after a rename, or None.

    Without DDL capture, a rename leaves the generated trigger function as it
    was rendered, with the old name, and the registry keeps that name until
    install or maintain renders the function again.
    """
    row = connection.execute(
        sql.SQL("SELECT table_name FROM {audit}.audited_tables WHERE table_id = %s::pg_catalog.oid")
        .format(audit=sql.Identifier(schema)), (table.oid,)).fetchone()
    if row is None or row[0] == table.entity_type:
        return None
    return row[0]
