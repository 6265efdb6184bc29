"""Outdated audit triggers, and their regeneration by ``auditctl maintain``.

The DDL event trigger puts capture_generic on tables created under the
auto_audit policy and on audited tables whose ALTER renamed them, their key
or a column with a rule. It captures correctly but reads from the catalog
on every row what a generated function has written into its code. Without
DDL capture, a generated trigger stays as it was after an ALTER, and may
store a renamed or added secret column in clear, and a partition created
or attached later has no TRUNCATE trigger. ``auditctl maintain`` installs
the generated triggers of such tables again, and hands an audited table
that was attached to an audited partitioned table over to the latter's
triggers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg

from ..errors import AuditctlError
from .catalog import Table
from .ddl import DdlCapture
from .install import hand_over_attached_tables, install
from .rules import ColumnRule, Rule
from .schema import schema_exists
from .status import TableState, table_states

logger = logging.getLogger(__name__)


@dataclass
class RegenerateResult:
    """Tables that got their generated triggers back, and those that failed, with the error."""

    # Tables that ran the interim trigger function.
    specialised: list[str] = field(default_factory=list)
    # Tables whose generated trigger was outdated.
    regenerated: list[str] = field(default_factory=list)
    # Partitioned tables whose new leaf partitions got the TRUNCATE trigger.
    covered: list[str] = field(default_factory=list)
    # Audited tables attached to an audited partitioned table, which now records their changes, with its name.
    handed_over: list[tuple[str, str]] = field(default_factory=list)
    # Such tables whose lock was not granted, with the error; they still record their changes twice.
    handover_failed: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    # Rules that followed a renamed column, and rules removed, as install reports them.
    followed_rules: list[tuple[Table, str, str]] = field(default_factory=list)
    removed_rules: list[tuple[Table, str, Rule]] = field(default_factory=list)
    # Columns of the regenerated tables that are masked because their names look like secrets.
    masked_by_default: list[ColumnRule] = field(default_factory=list)
    # Registered tables that no longer exist, whose registry entries and trigger functions an install removed.
    forgotten: list[str] = field(default_factory=list)
    # (from, to) schema versions when the first regenerated table's install upgraded the audit schema.
    schema_upgrade: tuple[int, int] | None = None


def regenerate_outdated_triggers(connection: psycopg.Connection, schema: str,
                                 lock_timeout_seconds: float = 10.0) -> RegenerateResult:
    """Install the generated triggers of every table that status reports as outdated, one transaction per table.

    That covers tables on the interim function, tables whose generated
    trigger no longer matches their columns, rules or auditctl, and
    partitioned tables with leaf partitions that lack the TRUNCATE trigger.
    Disabled and missing triggers stay as they are, for status to report. A table
    that fails, for example because another transaction holds its lock,
    keeps its triggers, which still record its changes.
    """
    result = RegenerateResult()
    if not schema_exists(connection, schema):
        return result
    result.handed_over, result.handover_failed = hand_over_attached_tables(connection, schema, lock_timeout_seconds)
    outdated = [(table, status) for table, status in table_states(connection, schema)
                if table is not None and (status.state is TableState.OUTDATED
                                          or (status.state is TableState.AUDITED and status.uncovered_partitions))]
    ddl_capture_off = False
    for table, status in outdated:
        try:
            installed = install(connection, schema, [_qualified_name(table)],
                                lock_timeout_seconds=lock_timeout_seconds, warn_ddl_capture_off=False)
        except AuditctlError as exc:
            result.failed.append((table.entity_type, str(exc)))
            logger.warning("kept the outdated audit trigger of %s: %s", table.entity_type, exc)
            continue
        ddl_capture_off = ddl_capture_off or installed.event_triggers is DdlCapture.OFF
        result.followed_rules.extend(installed.followed_rules)
        result.removed_rules.extend(installed.removed_rules)
        result.masked_by_default.extend(rule for rule in installed.column_rules if rule.by_default)
        result.forgotten.extend(installed.forgotten)
        result.schema_upgrade = result.schema_upgrade or installed.schema_upgrade
        if status.interim:
            result.specialised.append(table.entity_type)
            logger.info("replaced the interim audit trigger of %s with its generated one", table.entity_type)
        elif status.state is TableState.AUDITED:
            result.covered.append(table.entity_type)
            logger.info("added the TRUNCATE trigger to the new partitions of %s", table.entity_type)
        else:
            result.regenerated.append(table.entity_type)
            logger.info("regenerated the outdated audit trigger of %s", table.entity_type)
    if ddl_capture_off:
        # Logged once per run here, because install leaves it out for each table.
        logger.warning("role %s may not create event triggers: DDL capture is off", connection.info.user)
    return result


def _qualified_name(table: Table) -> str:
    """Write the table's name as install parses it: each part double-quoted, quotes doubled."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (table.schema, table.name))
