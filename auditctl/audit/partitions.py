"""Partitions of the events table: listing them, creating them ahead, emptying the default partition.

Everything here runs as the owner of the events table with plain DDL, so it
works on managed servers without superuser rights, a background worker or an
extension.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum

import psycopg
from psycopg import sql

from ..errors import DatabaseError, InvalidArgumentError
from ..i18n import _
from .schema import acting_as, log_owner_if_other, require_installed, require_log_owner

logger = logging.getLogger(__name__)

DEFAULT_PARTITION = "events_default"

# Partition bounds as timestamps. A bound of MINVALUE or MAXVALUE yields NULL,
# and such a partition is listed but never created, moved into or dropped.
_PARTITIONS_QUERY = """
SELECT c.relname,
       c.relname = %(default)s AS is_default,
       (pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                'FROM \\(''([^'']+)''\\) TO'))[1]::timestamptz AS lower_bound,
       (pg_catalog.regexp_match(pg_catalog.pg_get_expr(c.relpartbound, c.oid),
                                'TO \\(''([^'']+)''\\)'))[1]::timestamptz AS upper_bound,
       pg_catalog.pg_total_relation_size(c.oid) AS bytes
FROM pg_catalog.pg_inherits i
JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = %(parent)s::regclass
ORDER BY lower_bound NULLS FIRST, c.relname
"""


class Interval(StrEnum):
    """Length of the partitions that ``maintain`` creates."""

    daily = "daily"
    weekly = "weekly"
    monthly = "monthly"


@dataclass
class Partition:
    """One partition of the events table with its range, rows and size on disk."""

    name: str
    is_default: bool
    lower: datetime | None
    upper: datetime | None
    rows: int
    bytes: int

    def overlaps(self, lower: datetime, upper: datetime) -> bool:
        if self.lower is None or self.upper is None:
            return False
        return self.lower < upper and lower < self.upper


@dataclass
class MaintainResult:
    """Partitions that ``maintain`` created and rows that it moved."""

    created: list[str] = field(default_factory=list)
    moved_rows: int = 0
    # Requested periods that overlap existing partitions of another length,
    # so that no partition of the requested length was created for them (the
    # parts that none of those covers got partitions of their own).
    covered_periods: int = 0
    # The end of the last such period, or None when there is none.
    covered_until: datetime | None = None
    # Partitions whose period ended and whose indexes were rebuilt, and those
    # whose rebuild failed, with the error.
    rebuilt: list[str] = field(default_factory=list)
    rebuild_failed: list[tuple[str, str]] = field(default_factory=list)


def list_partitions(connection: psycopg.Connection, schema: str, count_rows: bool = True) -> list[Partition]:
    """Return the partitions of the events table in time order, the default partition first."""
    require_installed(connection, schema)
    parent = sql.Identifier(schema, "events").as_string(connection)
    rows: dict[str, int] = {}
    if count_rows:
        statement = sql.SQL("SELECT tableoid::regclass::text, count(*) FROM {} GROUP BY 1").format(
            sql.Identifier(schema, "events"))
        for qualified, count in connection.execute(statement).fetchall():
            rows[qualified.rpartition(".")[2].strip('"')] = count
    found = connection.execute(_PARTITIONS_QUERY, {"default": DEFAULT_PARTITION, "parent": parent}).fetchall()
    return [Partition(name, is_default, lower, upper, rows.get(name, 0), size)
            for name, is_default, lower, upper, size in found]


def period_start(moment: datetime, interval: Interval) -> datetime:
    """Return the start, in UTC, of the period of ``interval`` that contains ``moment``."""
    moment = moment.astimezone(timezone.utc)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval is Interval.daily:
        return day
    if interval is Interval.weekly:
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_period(start: datetime, interval: Interval) -> datetime:
    """Return the start of the period after the one that begins at ``start``."""
    if interval is Interval.daily:
        return start + timedelta(days=1)
    if interval is Interval.weekly:
        return start + timedelta(weeks=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def partition_name(start: datetime, interval: Interval) -> str:
    """Name a partition after its period: events_p2026_12 for a month, events_p2026_12_07 for a day or week."""
    if interval is Interval.monthly:
        return f"events_p{start:%Y_%m}"
    return f"events_p{start:%Y_%m_%d}"


def uncovered_ranges(start: datetime, end: datetime, partitions: list[Partition]) -> list[tuple[datetime, datetime]]:
    """Return the parts of ``start`` to ``end`` that no partition covers, in time order.

    A period of one length can be partly covered by partitions of another,
    after maintain ran with another --interval: the parts left over get
    partitions of their own, so that no time falls to the default partition.
    """
    ranges = []
    lower = start
    for partition in sorted((p for p in partitions if p.overlaps(start, end)), key=lambda p: p.lower):
        if partition.lower > lower:
            ranges.append((lower, partition.lower))
        lower = max(lower, partition.upper)
    if lower < end:
        ranges.append((lower, end))
    return ranges


def _range_name(lower: datetime, upper: datetime, interval: Interval, partitions: list[Partition]) -> str:
    """Name a new partition: after its period when it spans one, else after the day it starts.

    A partition that fills a gap between partitions of other lengths spans
    no whole period; a number is added if its name is taken.
    """
    if lower == period_start(lower, interval) and upper == next_period(lower, interval):
        return partition_name(lower, interval)
    base = f"events_p{lower:%Y_%m_%d}"
    existing_names = {p.name for p in partitions}
    name, number = base, 2
    while name in existing_names:
        name, number = f"{base}_{number}", number + 1
    return name


def check_ahead(ahead: int) -> None:
    """Raise InvalidArgumentError unless ``ahead`` is a number of partitions that maintain accepts."""
    if not 0 <= ahead <= 366:
        raise InvalidArgumentError(
            _("Invalid --ahead {value}: use a number of partitions from 0 to 366.").format(value=ahead))


def maintain(connection: psycopg.Connection, schema: str, *, ahead: int = 3,
             interval: Interval = Interval.monthly, now: datetime | None = None) -> MaintainResult:
    """Create partitions for the current period and ``ahead`` periods after it; empty the default partition.

    Runs in one transaction. Safe to repeat: a period that an existing
    partition covers, even partly, is skipped. Then, outside it, the
    default partition is vacuumed after rows moved out of it, and the
    indexes of partitions whose period ended are rebuilt once.
    """
    check_ahead(ahead)
    require_log_owner(connection, schema, "maintain")
    now = now or datetime.now(timezone.utc)
    result = MaintainResult()
    with connection.transaction():
        connection.execute("SET LOCAL lock_timeout = '10s'")
        # Partition DDL is auditctl's own routine work, not a schema change to record.
        connection.execute("SELECT pg_catalog.set_config('auditctl.internal', 'on', true)")
        # A superuser's partitions would belong to it, and the owner's rotate could not drop them.
        with acting_as(connection, log_owner_if_other(connection, schema)):
            partitions = list_partitions(connection, schema, count_rows=False)
            _move_default_rows(connection, schema, interval, partitions, result)
            partitions = list_partitions(connection, schema, count_rows=False)
            start = period_start(now, interval)
            for _step in range(ahead + 1):
                end = next_period(start, interval)
                covering = [p for p in partitions if p.overlaps(start, end)]
                if any((p.lower, p.upper) != (start, end) for p in covering):
                    result.covered_periods += 1
                    result.covered_until = end
                for lower, upper in uncovered_ranges(start, end, partitions):
                    name = _range_name(lower, upper, interval, partitions)
                    _execute(connection, sql.SQL(
                        "CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                            sql.Identifier(schema, name), sql.Identifier(schema, "events"), lower, upper))
                    logger.info("created partition %s.%s for %s to %s", schema, name, lower, upper)
                    result.created.append(name)
                    partitions.append(Partition(name, False, lower, upper, 0, 0))
                start = end
    if result.moved_rows:
        _vacuum_default(connection, schema)
    from .index_rebuild import rebuild_ended_partitions

    rebuild_ended_partitions(connection, schema, list_partitions(connection, schema, count_rows=False), now, result)
    return result


def _vacuum_default(connection: psycopg.Connection, schema: str) -> None:
    """VACUUM the default partition after rows moved out of it, so that its size no longer counts them.

    The moved rows stay in its file as dead rows until a VACUUM, and
    autovacuum may not come for a while. When the rows at the end of the
    file are all dead, VACUUM also shortens the file. The moves are
    committed by then, so a failed VACUUM is only logged.
    """
    if not connection.autocommit or connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        return  # VACUUM cannot run inside a transaction block; autovacuum will come.
    table = sql.Identifier(schema, DEFAULT_PARTITION)
    try:
        connection.execute(sql.SQL("VACUUM {}").format(table))
    except psycopg.Error as exc:
        logger.warning("could not VACUUM the default partition after moving rows out of it: %s",
                       str(exc).splitlines()[0])
        return
    logger.info("vacuumed %s.%s after moving rows out of it", schema, DEFAULT_PARTITION)


def _move_default_rows(connection: psycopg.Connection, schema: str, interval: Interval,
                       partitions: list[Partition], result: MaintainResult) -> None:
    """Move rows of the default partition into new partitions of their period.

    PostgreSQL refuses to attach a partition whose range the default partition
    has rows for, so the rows go into a new table first, which is then attached.
    """
    default = sql.Identifier(schema, DEFAULT_PARTITION)
    # Blocks writes that would land in the default partition while rows move.
    _execute(connection, sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(default))
    periods = connection.execute(
        sql.SQL("SELECT DISTINCT date_trunc({}, occurred_at AT TIME ZONE 'UTC') FROM {} ORDER BY 1").format(
            {"daily": "day", "weekly": "week", "monthly": "month"}[interval.value], default)).fetchall()
    for (naive_start,) in periods:
        start = naive_start.replace(tzinfo=timezone.utc)
        end = next_period(start, interval)
        # Where partitions of another length cover part of the period, its
        # rows lie in the parts that none covers, and each part gets its own.
        for lower, upper in uncovered_ranges(start, end, partitions):
            _move_into_new_partition(connection, schema, _range_name(lower, upper, interval, partitions),
                                     lower, upper, partitions, result)


def _move_into_new_partition(connection: psycopg.Connection, schema: str, name: str, start: datetime,
                             end: datetime, partitions: list[Partition], result: MaintainResult) -> None:
    """Move the default partition's rows from ``start`` to ``end`` into a new partition ``name`` of that range."""
    default = sql.Identifier(schema, DEFAULT_PARTITION)
    table = sql.Identifier(schema, name)
    _execute(connection, sql.SQL(
        "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            table, sql.Identifier(schema, "events")))
    moved = _execute(connection, sql.SQL(
        "WITH moved AS (DELETE FROM {} WHERE occurred_at >= {} AND occurred_at < {} RETURNING *) "
        "INSERT INTO {} SELECT * FROM moved").format(default, start, end, table))
    _execute(connection, sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
        sql.Identifier(schema, "events"), table, start, end))
    logger.info("moved rows from the default partition into new partition %s.%s (rows: %d)", schema, name, moved)
    result.created.append(name)
    result.moved_rows += moved
    partitions.append(Partition(name, False, start, end, moved, 0))


def _execute(connection: psycopg.Connection, statement: sql.Composable) -> int:
    logger.debug("%s", statement.as_string(connection))
    try:
        return connection.execute(statement).rowcount
    except psycopg.Error as exc:
        raise DatabaseError(_("Partition maintenance failed: {error}").format(
            error=str(exc).splitlines()[0])) from exc


def run_pg_partman(connection: psycopg.Connection, schema: str) -> str:
    """Run pg_partman's maintenance for the events table instead of auditctl's own; return pg_partman's schema.

    Only for databases where pg_partman is already installed and the events
    table is registered with its ``create_parent()``; auditctl never installs
    the extension.
    """
    require_installed(connection, schema)
    require_log_owner(connection, schema, "maintain")
    row = connection.execute(
        "SELECT n.nspname FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'pg_partman'").fetchone()
    if row is None:
        raise InvalidArgumentError(
            _("pg_partman is not installed in this database; run maintain without --pg-partman."))
    partman_schema = row[0]
    parent = f"{schema}.events"
    registered = connection.execute(
        sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE parent_table = %s)").format(
            sql.Identifier(partman_schema, "part_config")), (parent,)).fetchone()[0]
    if not registered:
        raise InvalidArgumentError(
            _("{table} is not registered with pg_partman; register it with {partman}.create_parent() first, "
              "or run maintain without --pg-partman.").format(table=parent, partman=partman_schema))
    # NOTE: not tested here, because no pg_partman package is installed on the test servers.
    _execute(connection, sql.SQL("SELECT {}(p_parent_table := {})").format(
        sql.Identifier(partman_schema, "run_maintenance"), parent))
    logger.info("ran %s.run_maintenance for %s", partman_schema, parent)
    return partman_schema
