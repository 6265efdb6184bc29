"""The order of ``pg_restore --clean``'s drops for the indexes and constraints of partitions.

pg_dump writes a partition's index, and a partition's primary key, unique
or exclusion constraint, as an entry of its own. Its --clean statement is
``DROP INDEX`` or ``ALTER TABLE ONLY partition DROP CONSTRAINT``, and the
entry sorts after the partitioned table's index or constraint that it is
attached to. pg_restore drops in the reverse of the
archive's order, so it drops the partition's first, and PostgreSQL rejects
that ("cannot drop inherited constraint", "cannot drop index ... because
index ... requires it"). pg_dump 15.18 and 16.2 write such drops for
constraints; 16.2 writes them for plain indexes too, 15.18 does not.
Dropping the partitioned table's index or constraint first removes the
attached ones with it, after which their ``IF EXISTS`` drops do nothing.

``reorder_listing`` moves those entries ahead of the other constraints and
indexes in a ``pg_restore --list`` listing, deepest partitions first, and
pg_restore reads it back with ``--use-list``. Creation order does not matter
among these entries, because the ``INDEX ATTACH`` entries that link them
stay where they are, after all of them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import psycopg

logger = logging.getLogger(__name__)

# Indexes attached to a partitioned table's index, with the constraint that each one backs, if any.
_ATTACHED_INDEXES = """
SELECT i.inhrelid::bigint, i.inhparent::bigint, n.nspname, t.relname, x.relname, c.conname
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class x ON x.oid = i.inhrelid AND x.relkind IN ('i', 'I')
JOIN pg_catalog.pg_index ix ON ix.indexrelid = x.oid
JOIN pg_catalog.pg_class t ON t.oid = ix.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = x.relnamespace
LEFT JOIN pg_catalog.pg_constraint c
    ON c.conindid = x.oid AND c.conrelid = t.oid AND c.contype IN ('p', 'u', 'x')
"""

# One entry of ``pg_restore --list``: "ID; TABLEOID OID DESCRIPTION SCHEMA TAG OWNER".
_ENTRY = re.compile(r"^\d+; \d+ \d+ (?P<rest>.*)$")


@dataclass(frozen=True)
class AttachedIndex:
    """A partition's index in the target database, the constraint it backs, and its depth below the top table."""

    schema: str
    table: str
    index: str
    constraint: str | None
    depth: int

    @property
    def listing_text(self) -> str:
        """Return how ``pg_restore --list`` shows this entry after its ids and before its owner."""
        if self.constraint is not None:
            return f"CONSTRAINT {self.schema} {self.table} {self.constraint} "
        return f"INDEX {self.schema} {self.index} "


def attached_indexes(connection: psycopg.Connection) -> list[AttachedIndex]:
    """List the target's indexes and constraints that only go away with their partitioned table's."""
    rows = connection.execute(_ATTACHED_INDEXES).fetchall()
    parents = {oid: parent for oid, parent, *_ in rows}

    def depth(oid: int) -> int:
        levels = 1
        while parents.get(oid) in parents:
            oid = parents[oid]
            levels += 1
        return levels

    return [AttachedIndex(schema, table, index, constraint, depth(oid))
            for oid, _parent, schema, table, index, constraint in rows]


def _description(line: str) -> str:
    match = _ENTRY.match(line)
    return match.group("rest") if match else ""


def _find_entry(description: str, by_text: dict[str, AttachedIndex]) -> AttachedIndex | None:
    """Find the index whose listing text starts ``description``, before an owner name that may contain spaces."""
    end = len(description)
    while (end := description.rfind(" ", 0, end)) > 0:
        match = by_text.get(description[:end + 1])
        if match is not None:
            return match
    return None


def reorder_listing(listing: str, attached: list[AttachedIndex]) -> str | None:
    """Return the listing with the entries of ``attached`` first among the constraints and indexes.

    Returns None when the archive has no such entry, so pg_restore can keep its own order.
    NOTE: an entry is found by the names that --list prints, so a name with a
    line break, which pg_restore prints differently, keeps its place.
    """
    by_text = {item.listing_text: item for item in attached}
    lines = listing.splitlines()
    moved: list[tuple[int, str]] = []
    kept: list[str] = []
    for line in lines:
        match = _find_entry(_description(line), by_text)
        if match is None:
            kept.append(line)
        else:
            moved.append((match.depth, line))
    if not moved:
        return None
    # Every moved entry is a constraint or an index, so the first of those exists and none before it moved.
    first = next(index for index, line in enumerate(lines)
                 if _description(line).startswith(("CONSTRAINT ", "INDEX ")))
    moved.sort(key=lambda item: -item[0])
    logger.debug("moving %d indexes and constraints of partitions ahead of their parents' for --clean", len(moved))
    return "\n".join(kept[:first] + [line for _, line in moved] + kept[first:]) + "\n"
