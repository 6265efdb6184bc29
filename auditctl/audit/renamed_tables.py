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

from dataclasses import dataclass

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

# auditctl's own events name no table in entity_type, so the index by
# entity finds them among the log's events of that kind only.
_LOGGED_RENAME = """
SELECT CASE action WHEN 'AUDIT_TRIGGER_REFRESHED' THEN details ->> 'table'
                   ELSE details -> 'renamed_tables' ->> %(name)s END
  FROM {audit}.events
 WHERE entity_type IS NULL
   AND ((action = 'AUDIT_TRIGGER_REFRESHED' AND details ->> 'previous_table' = %(name)s)
        OR (action = 'AUDIT_INSTALL' AND details -> 'renamed_tables' ? %(name)s))
 ORDER BY id DESC
 LIMIT 1
"""

# The names that a table named %(name)s had before, each with the id of
# the event that records the rename.
_LOGGED_FORMER_NAMES = """
SELECT details ->> 'previous_table', id
  FROM {audit}.events
 WHERE entity_type IS NULL AND action = 'AUDIT_TRIGGER_REFRESHED'
   AND details ->> 'table' = %(name)s AND details ? 'previous_table'
UNION ALL
SELECT renamed.old_name, e.id
  FROM {audit}.events AS e,
       pg_catalog.jsonb_each_text(e.details -> 'renamed_tables') AS renamed(old_name, new_name)
 WHERE e.entity_type IS NULL AND e.action = 'AUDIT_INSTALL' AND renamed.new_name = %(name)s
 ORDER BY 2 DESC
"""

_REGISTERED_NAME = """
SELECT r.table_name FROM {audit}.audited_tables AS r WHERE r.table_id = %s::pg_catalog.oid
"""


@dataclass(frozen=True)
class FormerName:
    """A name that a table had before a rename, under which some of its events are recorded."""

    name: str
    # Events under the name belong to the table when their id is below this
    # one, the id of the event that records the rename; None for all of them.
    before_id: int | None

    def condition(self, table_name: sql.Composable = sql.SQL("entity_type")) -> sql.Composable:
        """Return the SQL condition that picks this name's events of the table from the events table.

        ``table_name`` is the expression that names the table in an event.
        """
        if self.before_id is None:
            return sql.SQL("{} = {}").format(table_name, self.name)
        return sql.SQL("({} = {} AND id < {})").format(table_name, self.name, self.before_id)


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


def find_former_names(connection: psycopg.Connection, schema: str, table: Table,
                      tables: list[Table] | None = None) -> list[FormerName]:
    """Return the names that ``table`` had before one or more renames, newest first.

    The generated trigger writes the name it was generated for until install
    or maintain generates it again. So the event that records the rename,
    written by DDL capture at the rename or by that install, marks where the
    events under the old name end. A registered name that no event records
    yet is taken for all its events, unless a current table has that name.
    ``tables`` are the database's tables where the caller has listed them.
    """
    # NOTE: a name that two tables had in turn, each renamed away later,
    # counts the events of the first table for the second as well. The log
    # records where each name's use ends, not where it starts.
    audit = sql.Identifier(schema)
    current = {each.entity_type for each in (tables if tables is not None else list_tables(connection, schema))}
    found: dict[str, int | None] = {}
    names = [table.entity_type]
    for _rename in range(_MAX_RENAMES):
        if not names:
            break
        name = names.pop(0)
        rows = connection.execute(sql.SQL(_LOGGED_FORMER_NAMES).format(audit=audit), {"name": name}).fetchall()
        for old_name, event_id in rows:
            if old_name != table.entity_type and old_name not in found:
                found[old_name] = event_id
                names.append(old_name)
    row = connection.execute(sql.SQL(_REGISTERED_NAME).format(audit=audit), (table.oid,)).fetchone()
    if row is not None and row[0] not in found and row[0] not in current:
        found[row[0]] = None
    return [FormerName(name, before_id) for name, before_id in found.items()]
