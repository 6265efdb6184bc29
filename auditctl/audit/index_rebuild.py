"""Rebuilding the indexes of partitions whose period has ended, so that they take less space.

Events of many users and rows arrive at once, so the index by user and the
index by row take new entries at many places. A full B-tree page splits in
two halves. Where entries arrive in order of time, as in the index by user,
the older half gets no more entries. Such an index stays a little over half
full: bench/RESULTS.md measured 82 bytes per event for entries of 44 bytes.
Once a partition's period has ended, no new event lands in it, and
REINDEX packs each index to its fillfactor, 90% for a B-tree.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from ..sqltext import quote_ident
from .partitions import MaintainResult, Partition

logger = logging.getLogger(__name__)

# A partition counts as ended this long after its upper bound. An event
# takes the start time of its statement, so a statement that began before
# the bound may still be writing into the partition for a while.
ENDED_AFTER = timedelta(days=1)

# The start of the comment that marks a partition whose indexes were rebuilt.
REBUILT_MARK = "auditctl: indexes rebuilt after the period ended"

# REINDEX CONCURRENTLY waits for transactions that use the partition or hold
# older snapshots; it gives up after this long, and the next run tries again.
LOCK_TIMEOUT = "10s"

# Indexes that a failed REINDEX CONCURRENTLY leaves behind, invalid.
_LEFTOVERS_QUERY = """
SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
  FROM pg_catalog.pg_index AS i
  JOIN pg_catalog.pg_class AS c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
 WHERE i.indrelid = %s::pg_catalog.regclass AND NOT i.indisvalid AND c.relname ~ '_cc(new|old)[0-9]*$'
"""


def rebuild_ended_partitions(connection: psycopg.Connection, schema: str, partitions: list[Partition],
                             now: datetime, result: MaintainResult) -> None:
    """Rebuild the indexes of each partition that ended since the last run, without blocking reads or writes.

    A partition is rebuilt once, and then marked by its comment. A failure
    is logged and kept in ``result``, and the next run tries again.
    REINDEX CONCURRENTLY cannot run inside a transaction block, so a
    connection in one skips this step.
    """
    if not connection.autocommit or connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return
    ended = [p.name for p in partitions
             if not p.is_default and p.upper is not None and p.upper <= now - ENDED_AFTER]
    if not ended:
        return
    rebuilt = {name for (name,) in connection.execute(
        """SELECT c.relname FROM pg_catalog.pg_class AS c
            WHERE c.relnamespace = %s::pg_catalog.regnamespace AND c.relname = ANY(%s)
              AND pg_catalog.obj_description(c.oid, 'pg_class') LIKE %s""",
        (quote_ident(schema), ended, REBUILT_MARK + "%")).fetchall()}
    for name in ended:
        if name not in rebuilt:
            _rebuild(connection, schema, name, now, result)


def _rebuild(connection: psycopg.Connection, schema: str, name: str, now: datetime, result: MaintainResult) -> None:
    table = sql.Identifier(schema, name)
    internal, lock_timeout = connection.execute(
        "SELECT pg_catalog.current_setting('auditctl.internal', true), pg_catalog.current_setting('lock_timeout')"
    ).fetchone()
    # Index upkeep is auditctl's own routine work, not a schema change to record.
    connection.execute("SELECT pg_catalog.set_config('auditctl.internal', 'on', false), "
                       "pg_catalog.set_config('lock_timeout', %s, false)", (LOCK_TIMEOUT,))
    try:
        connection.execute(sql.SQL("REINDEX TABLE CONCURRENTLY {}").format(table))
        connection.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(
            table, sql.Literal(f"{REBUILT_MARK} ({now:%Y-%m-%d})")))
    except psycopg.Error as exc:
        error = str(exc).splitlines()[0]
        logger.warning("could not rebuild the indexes of partition %s.%s, the next maintain tries again: %s",
                       schema, name, error)
        result.rebuild_failed.append((name, error))
        _drop_leftovers(connection, table)
    else:
        logger.info("rebuilt the indexes of partition %s.%s", schema, name)
        result.rebuilt.append(name)
    finally:
        connection.execute("SELECT pg_catalog.set_config('auditctl.internal', %s, false), "
                           "pg_catalog.set_config('lock_timeout', %s, false)", (internal or "", lock_timeout))


def _drop_leftovers(connection: psycopg.Connection, table: sql.Identifier) -> None:
    """Drop the invalid indexes that a failed REINDEX CONCURRENTLY left on ``table``; they would slow down writes."""
    try:
        leftovers = connection.execute(_LEFTOVERS_QUERY, (table.as_string(connection),)).fetchall()
        for (index,) in leftovers:
            connection.execute(sql.SQL("DROP INDEX CONCURRENTLY {}").format(sql.SQL(index)))
            logger.info("dropped %s, left behind by the failed rebuild", index)
    except psycopg.Error as exc:
        logger.warning("could not drop the invalid indexes that the failed rebuild left on %s: %s",
                       table.as_string(connection), str(exc).splitlines()[0])
