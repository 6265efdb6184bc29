"""The TRUNCATE triggers on the leaf partitions of audited partitioned tables.

PostgreSQL clones row triggers onto partitions, but not TRUNCATE triggers.
A TRUNCATE of one partition therefore fires no trigger of its partitioned
table. A TRUNCATE of the table fires the triggers of the table and of every
leaf it empties.
The audit schema's put_truncate_triggers() puts the table's TRUNCATE trigger
on each ordinary leaf, calling the function of the table's row trigger with
the same arguments. Foreign leaves can have no TRUNCATE trigger.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from ..sqltext import quote_ident, quote_literal
from .triggers import TRUNCATE_TRIGGER


@dataclass(frozen=True)
class LeafTriggers:
    """The leaf partitions of one partitioned table, by the state of their TRUNCATE triggers."""

    # Ordinary leaves without a TRUNCATE trigger that calls the table's function: their TRUNCATE is not recorded.
    uncovered: list[str] = field(default_factory=list)
    # Foreign leaves, which PostgreSQL allows no TRUNCATE trigger.
    foreign: list[str] = field(default_factory=list)
    # pg_trigger.tgenabled of the leaves' TRUNCATE triggers: 'O', 'A', 'R' or 'D'.
    firing: frozenset[str] = frozenset()
    # Leaves whose TRUNCATE trigger does not fire in ordinary sessions (disabled, or ENABLE REPLICA).
    disabled: list[str] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        """Tell whether every leaf's trigger fires in ordinary sessions."""
        return not self.firing & {"D", "R"}

    def current(self, code: str) -> bool:
        """Tell whether every ordinary leaf has its trigger, firing in the mode ``code``."""
        return not self.uncovered and self.firing <= {code}


# Each leaf of the tree, with the tgenabled of its TRUNCATE trigger where that
# calls the function of the table's row trigger with the same arguments.
_LEAVES_QUERY = f"""
SELECT n.nspname || '.' || c.relname, c.relkind = 'f',
       (SELECT l.tgenabled FROM pg_catalog.pg_trigger AS l
         WHERE l.tgrelid = c.oid AND l.tgname = {quote_literal(TRUNCATE_TRIGGER)} AND l.tgparentid = 0
           AND l.tgfoid = r.tgfoid AND l.tgargs = r.tgargs)
  FROM pg_catalog.pg_partition_tree(%(table)s::oid::regclass) AS p
  JOIN pg_catalog.pg_class AS c ON c.oid = p.relid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_trigger AS r
    ON r.tgrelid = %(table)s::oid AND r.tgname = 'auditctl_row' AND r.tgparentid = 0
   AND r.tgfoid IN (SELECT f.oid FROM pg_catalog.pg_proc AS f
                     JOIN pg_catalog.pg_namespace AS s ON s.oid = f.pronamespace WHERE s.nspname = %(schema)s)
 WHERE p.isleaf AND c.relkind IN ('r', 'f')
 ORDER BY 1
"""


def leaf_triggers(connection: psycopg.Connection, schema: str, table_oid: int) -> LeafTriggers:
    """Sort the leaf partitions of a partitioned table by the state of their TRUNCATE triggers."""
    uncovered, foreign_leaves, firing, disabled = [], [], set(), []
    for name, foreign, code in connection.execute(
            _LEAVES_QUERY, {"table": table_oid, "schema": schema}).fetchall():
        if foreign:
            foreign_leaves.append(name)
        elif code is None:
            uncovered.append(name)
        else:
            firing.add(code)
            if code in ("D", "R"):
                disabled.append(name)
    return LeafTriggers(uncovered, foreign_leaves, frozenset(firing), disabled)


def put_statement(schema: str, table: str) -> str:
    """Return the statement that puts the TRUNCATE trigger of ``table`` (quoted) on its leaf partitions."""
    return f"SELECT {quote_ident(schema)}.put_truncate_triggers({quote_literal(table)}::regclass);"


# The TRUNCATE triggers that call a table's function with the arguments of
# its row trigger, on other tables: its leaf partitions, and tables detached
# from them since.
_COPIES_QUERY = f"""
SELECT n.nspname, c.relname
  FROM pg_catalog.pg_trigger AS r
  JOIN pg_catalog.pg_trigger AS l ON l.tgfoid = r.tgfoid AND l.tgargs = r.tgargs AND l.tgrelid <> r.tgrelid
  JOIN pg_catalog.pg_class AS c ON c.oid = l.tgrelid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
 WHERE r.tgrelid = %s AND r.tgname = 'auditctl_row' AND r.tgparentid = 0
   AND l.tgname = {quote_literal(TRUNCATE_TRIGGER)} AND l.tgparentid = 0
 ORDER BY 1, 2
"""


def drop_statements(connection: psycopg.Connection, table_oid: int) -> list[str]:
    """Return the statements that drop the TRUNCATE triggers a table put on its leaf partitions."""
    return [f"DROP TRIGGER IF EXISTS {quote_ident(TRUNCATE_TRIGGER)} ON {quote_ident(schema, name)}"
            for schema, name in connection.execute(_COPIES_QUERY, (table_oid,)).fetchall()]
