"""Audit status: which tables are audited, which triggers drifted, and the size of the log."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import StrEnum

import psycopg
from psycopg import sql

from ..sqltext import quote_ident
from .catalog import Table, list_tables
from .ddl import GENERIC_FUNCTION, AutoAuditPolicy, ddl_capture_enabled, ddl_capture_outdated, load_policy
from .firing import ReplicaRole, TriggerFiring, load_enable_always, replica_roles, table_firing
from .leaves import LeafTriggers, leaf_triggers
from .partitions import Partition, list_partitions
from .retention import rotation_candidates
from .renamed_tables import FormerName, find_former_names
from .renames import follow_renames, unused_rules
from .rules import Rule, effective_rules, load_rules
from .schema import applied_versions, pending_versions, require_log_reader, schema_exists
from .triggers import (CHANGE_ACTIONS, INSTALLED_TRIGGERS_QUERY, TRIGGER_ACTIONS, TRIGGER_NAMES, TRUNCATE_TRIGGER,
                       hash_from_comment, load_max_value_bytes, render_trigger)


class TableState(StrEnum):
    """Audit state of one table, as ``auditctl status`` reports it."""

    AUDITED = "audited"
    OUTDATED = "outdated"
    DISABLED = "disabled"
    MISSING = "missing"
    NOT_AUDITED = "not_audited"


@dataclass
class TableStatus:
    """Audit state and event count of one table."""

    entity_type: str
    state: TableState
    has_primary_key: bool | None
    # Events of the table, those recorded under names it had before a rename included.
    events: int = 0
    # When the table's audit triggers fire; None without triggers.
    firing: TriggerFiring | None = None
    # True when the table runs the interim trigger function (created under
    # the auto_audit policy, or altered since install); its state is OUTDATED.
    interim: bool = False
    # Columns that a rule or a secret-looking name should keep out of the log
    # but the installed trigger stores in clear, each with the name it had
    # when a rename took its rule away, or None.
    exposed_columns: list[tuple[str, str | None]] = field(default_factory=list)
    # Stored rules, after following renames, that name a column the table does not have.
    unused_rules: list[tuple[str, Rule]] = field(default_factory=list)
    # Leaf partitions of a partitioned table without its TRUNCATE trigger: their TRUNCATE is not recorded.
    uncovered_partitions: list[str] = field(default_factory=list)
    # Foreign leaf partitions, which PostgreSQL allows no TRUNCATE trigger.
    foreign_partitions: list[str] = field(default_factory=list)
    # Leaf partitions whose TRUNCATE trigger alone makes the state DISABLED: the table's own triggers fire.
    disabled_partitions: list[str] = field(default_factory=list)
    # The kinds of change (INSERT, UPDATE, DELETE, TRUNCATE) that disabled or ENABLE REPLICA audit triggers
    # leave unrecorded, in that order. TRUNCATE is among them when the trigger of any leaf partition is off.
    unrecorded_actions: list[str] = field(default_factory=list)
    # For a registered table that became a partition since: the partitioned table at the top of its tree.
    partition_of: str | None = None
    # Whether that partitioned table is audited too, so that the table's changes are recorded twice.
    partition_of_audited: bool = False
    # The name that the table's generated trigger writes into its events, when a rename without DDL
    # capture left it different from the table's name; None otherwise.
    recorded_as: str | None = None


@dataclass
class StatusReport:
    """Everything ``auditctl status`` shows."""

    schema: str
    installed: bool
    schema_versions: list[int] = field(default_factory=list)
    # The schema versions that this auditctl has and the database lacks, which install or maintain applies.
    pending_schema_versions: list[int] = field(default_factory=list)
    tables: list[TableStatus] = field(default_factory=list)
    orphaned_functions: list[str] = field(default_factory=list)
    total_events: int = 0
    log_bytes: int = 0
    partitions: int = 0
    ddl_capture: bool = False
    # Whether the last superuser install ran other DDL capture SQL than this auditctl would run.
    ddl_capture_outdated: bool = False
    auto_audit: AutoAuditPolicy | None = None
    partition_list: list[Partition] = field(default_factory=list)
    # The keep window that rotation_candidates was computed for.
    keep: timedelta | None = None
    rotation_candidates: list[str] = field(default_factory=list)
    # Whether install chose ENABLE ALWAYS for the audit triggers.
    enable_always: bool = False
    # Roles that may set session_replication_role = replica and so skip
    # audit triggers that are not ENABLE ALWAYS.
    replica_roles: list[ReplicaRole] = field(default_factory=list)

    @property
    def needs_attention(self) -> list[str]:
        """Audited tables whose changes are not recorded, or recorded against their rules, in report order.

        A missing or disabled trigger, a leaf partition without the TRUNCATE
        trigger, a column stored in clear that a rule or a secret-looking
        name should protect, or a rule that names no column. An outdated
        trigger alone is not among them.
        """
        return [t.entity_type for t in self.tables
                if t.state in (TableState.MISSING, TableState.DISABLED) or t.exposed_columns or t.unused_rules
                or t.uncovered_partitions]

    @property
    def skipped_under_replica(self) -> list[str]:
        """Audited tables whose triggers do not fire in a session with session_replication_role = replica."""
        return [t.entity_type for t in self.tables
                if t.state in (TableState.AUDITED, TableState.OUTDATED) and t.firing is not TriggerFiring.ALWAYS]


def collect_status(connection: psycopg.Connection, schema: str, keep: timedelta | None = None) -> StatusReport:
    """Compare every table's triggers with what the current templates would generate.

    Also lists the partitions, and with ``keep`` the ones the next
    ``rotate --keep`` would archive and drop.
    """
    if not schema_exists(connection, schema):
        return StatusReport(schema=schema, installed=False,
                            tables=[TableStatus(t.entity_type, TableState.NOT_AUDITED, t.has_primary_key)
                                    for t in list_tables(connection, schema)])
    require_log_reader(connection, schema, "status")
    audit = quote_ident(schema)
    report = StatusReport(schema=schema, installed=True,
                          schema_versions=sorted(applied_versions(connection, schema)))
    report.pending_schema_versions = pending_versions(report.schema_versions)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT entity_type, count(*) FROM {audit}.events GROUP BY entity_type")
        counts = dict(cursor.fetchall())
        cursor.execute(
            """SELECT count(*), COALESCE(sum(pg_catalog.pg_total_relation_size(relid)), 0)::bigint
               FROM pg_catalog.pg_partition_tree(%s::regclass) WHERE isleaf""", (f"{audit}.events",))
        report.partitions, report.log_bytes = cursor.fetchone()
        cursor.execute("""SELECT p.proname FROM pg_catalog.pg_proc p
                           WHERE p.pronamespace = %s::regnamespace
                             AND pg_catalog.obj_description(p.oid, 'pg_proc') LIKE 'auditctl trigger function%%'
                             AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgfoid = p.oid)
                           ORDER BY 1""", (audit,))
        report.orphaned_functions = [row[0] for row in cursor.fetchall()]
    report.total_events = sum(counts.values())
    report.ddl_capture = ddl_capture_enabled(connection, schema)
    report.auto_audit = load_policy(connection, schema)
    report.enable_always = load_enable_always(connection, schema)
    report.ddl_capture_outdated = report.ddl_capture and ddl_capture_outdated(connection, schema,
                                                                              report.enable_always)
    report.replica_roles = replica_roles(connection)
    report.partition_list = list_partitions(connection, schema)
    if keep is not None:
        report.keep = keep
        report.rotation_candidates = [p.name for p in rotation_candidates(
            report.partition_list, keep, datetime.now(timezone.utc))]
    tables = list_tables(connection, schema)
    states = table_states(connection, schema)
    # Events recorded under a name that a table had before a rename count for
    # that table, and not for a table that has the name now.
    renamed_events: dict[str, int] = {}
    namesake_events: dict[str, int] = {}
    for table, status in states:
        if table is None or status.state is TableState.NOT_AUDITED:
            continue
        for former in find_former_names(connection, schema, table, tables):
            found = _former_name_events(connection, schema, former, counts)
            renamed_events[status.entity_type] = renamed_events.get(status.entity_type, 0) + found
            namesake_events[former.name] = namesake_events.get(former.name, 0) + found
    for table, status in states:
        status.events = counts.get(status.entity_type, 0) + renamed_events.get(status.entity_type, 0)
        if table is not None:
            status.events -= namesake_events.get(status.entity_type, 0)
        report.tables.append(status)
    return report


def _former_name_events(connection: psycopg.Connection, schema: str, former: FormerName,
                        counts: dict[str, int]) -> int:
    """Count the events of a table recorded under one of its former names."""
    if former.before_id is None:
        return counts.get(former.name, 0)
    return connection.execute(
        sql.SQL("SELECT count(*) FROM {}.events WHERE {}").format(sql.Identifier(schema), former.condition())
    ).fetchone()[0]


def table_states(connection: psycopg.Connection, schema: str) -> list[tuple[Table | None, TableStatus]]:
    """Compare each table's audit triggers with what install would generate for it now.

    Returns every auditable table with its state, and then each registered
    table that is gone, with None in place of the table. Event counts are 0.
    """
    audit = quote_ident(schema)
    triggers: dict[int, dict[str, tuple[str, str, str | None]]] = {}
    for oid, name, enabled, function, comment in connection.execute(
            INSTALLED_TRIGGERS_QUERY, (list(TRIGGER_NAMES), audit)).fetchall():
        triggers.setdefault(oid, {})[name] = (enabled, function, comment)
    registered = dict(connection.execute(
        f"SELECT table_id::oid::bigint, table_name FROM {audit}.audited_tables").fetchall())

    stored_rules = load_rules(connection, schema)
    size_limit = load_max_value_bytes(connection, schema)
    tables = list_tables(connection, schema)
    followed = follow_renames(connection, schema, [t for t in tables if t.oid in registered], apply=False)
    states: list[tuple[Table | None, TableStatus]] = []
    for table in tables:
        # The rules that install would use, once they follow renames made without DDL capture.
        stored = (followed[table.oid].rules if table.oid in followed
                  else stored_rules.get((table.schema, table.name), {}))
        found = triggers.get(table.oid, {})
        leaves = leaf_triggers(connection, schema, table.oid) if found and table.partitioned else LeafTriggers()
        # A table is only as well audited as the weakest of its triggers, its leaf partitions' included.
        codes = {enabled for enabled, _, _ in found.values()} | leaves.firing
        firing = table_firing(codes) if found else None
        interim = bool(found) and any(function == GENERIC_FUNCTION for _, function, _ in found.values())
        state = _table_state(connection, schema, table, found, codes, table.oid in registered, stored, size_limit)
        own_enabled = not {enabled for enabled, _, _ in found.values()} & {"D", "R"}
        status = TableStatus(table.entity_type, state, table.has_primary_key, 0, firing,
                             interim and state is TableState.OUTDATED,
                             uncovered_partitions=leaves.uncovered, foreign_partitions=leaves.foreign,
                             disabled_partitions=leaves.disabled if own_enabled else [],
                             unrecorded_actions=_unrecorded_actions(found, leaves))
        if table.oid in registered:
            status.unused_rules = unused_rules(table, stored)
        if found and not status.interim and registered.get(table.oid, table.entity_type) != table.entity_type:
            # The registry keeps the name that the generated function was rendered with until install
            # or maintain renders it again; DDL capture updates it at the rename.
            status.recorded_as = registered[table.oid]
        if state is TableState.OUTDATED and not status.interim and table.oid in followed:
            # The interim function applies the rules by the current column names, so it exposes nothing.
            renamed_from = {new: old for old, new in followed[table.oid].renamed.items()}
            status.exposed_columns = [(column, renamed_from.get(column))
                                      for column in followed[table.oid].exposed(table)]
        states.append((table, status))
    seen = {table.oid for table in tables}
    for oid, name in registered.items():
        if oid not in seen:
            # A registered table that is gone, or moved where auditctl does not look, such as into a partition tree.
            row = connection.execute(
                """SELECT n.nspname || '.' || r.relname, r.oid::bigint
                   FROM pg_catalog.pg_class AS c
                   JOIN pg_catalog.pg_class AS r ON r.oid = pg_catalog.pg_partition_root(c.oid)
                   JOIN pg_catalog.pg_namespace AS n ON n.oid = r.relnamespace
                   WHERE c.oid = %s AND c.relispartition""", (oid,)).fetchone()
            states.append((None, TableStatus(name, TableState.MISSING, None, 0, partition_of=row[0] if row else None,
                                             partition_of_audited=bool(row) and row[1] in registered)))
    return states


def _unrecorded_actions(found: dict[str, tuple[str, str, str | None]], leaves: LeafTriggers) -> list[str]:
    """Return the kinds of change that disabled or ENABLE REPLICA triggers leave unrecorded.

    ``found`` maps the names of the table's own triggers to (tgenabled, function, comment).
    """
    off = {action for name, (enabled, _, _) in found.items() if enabled in ("D", "R")
           for action in TRIGGER_ACTIONS[name]}
    if leaves.disabled:
        off.add("TRUNCATE")
    return [action for action in CHANGE_ACTIONS if action in off]


def _table_state(connection: psycopg.Connection, schema: str, table: Table,
                 found: dict[str, tuple[str, str, str | None]], codes: set[str], registered: bool,
                 stored: dict[str, Rule], size_limit: int) -> TableState:
    """Decide one table's state from its auditctl triggers, by name: (tgenabled, function, comment).

    ``codes`` are the tgenabled codes of those triggers and of its leaf partitions' TRUNCATE triggers.
    """
    if not found:
        return TableState.MISSING if registered else TableState.NOT_AUDITED
    if not registered and set(found) == {TRUNCATE_TRIGGER}:
        # A table detached from a partitioned table that was dropped since keeps the TRUNCATE trigger
        # of its leaf partitions, which records nothing, until install drops the function it calls.
        return TableState.NOT_AUDITED
    if table_firing(codes) in (TriggerFiring.DISABLED, TriggerFiring.REPLICA):
        # ENABLE REPLICA triggers fire only under session_replication_role = replica.
        return TableState.DISABLED
    if any(function == GENERIC_FUNCTION for _, function, _ in found.values()):
        # Audited on creation or refreshed after an ALTER by the interim
        # function; install generates its own.
        return TableState.OUTDATED
    expected = render_trigger(connection, schema, table, effective_rules(table, stored), size_limit, stored)
    hashes = {hash_from_comment(comment) for _, _, comment in found.values()}
    if not set(expected.trigger_names) <= set(found):
        # Trigger names of another layout come from an earlier template,
        # which install replaces. Without them, some triggers were dropped.
        return TableState.OUTDATED if set(found) - set(expected.trigger_names) else TableState.MISSING
    if hashes == {expected.sql_hash} and set(found) == set(expected.trigger_names):
        return TableState.AUDITED
    return TableState.OUTDATED
