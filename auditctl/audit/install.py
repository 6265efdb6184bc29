"""Install and uninstall the audit schema and the per-table triggers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg
from psycopg import errors as pg_errors, sql
from psycopg.types.json import Jsonb

from ..db import first_line
from ..errors import AmbiguousTableError, DatabaseError, InvalidArgumentError, TableNotFoundError
from ..i18n import _
from ..sqltext import quote_ident, quote_literal
from .catalog import Table, list_tables, parse_table_name, resolve_tables
from .ddl import (GENERIC_FUNCTION, AutoAuditPolicy, DdlCapture, ddl_capture_comment, drop_statements,
                  event_trigger_firing, plan_ddl_capture, policy_statement, render_ddl_capture,
                  require_event_trigger_owner)
from .firing import enable_always_statement, enable_statement, firing_code, load_enable_always
from .renames import FollowedRules, follow_renames, remove_rules, unused_rules
from .rules import (ColumnRule, Rule, RuleRequest, RulesByTable, effective_rules, load_rules, resolve_requests,
                    save_rules)
from .schema import (acting_as, applied_versions, apply_schema, log_owner_if_other, pending_versions, plan_schema,
                     require_installed, require_log_owner, require_schema_privileges, schema_exists)
from .status import TableState, table_states
from .leaves import LeafTriggers, drop_statements as leaf_drop_statements, leaf_triggers, put_statement
from .triggers import (DEFAULT_MAX_VALUE_BYTES, INSTALLED_TRIGGERS_QUERY, TRIGGER_NAMES, TriggerSql, hash_from_comment,
                       load_max_value_bytes, render_trigger, trigger_comment)

logger = logging.getLogger(__name__)

# Serializes concurrent installs and uninstalls on one database.
_INSTALL_LOCK_KEY = "auditctl.install"

ProgressCallback = Callable[[str], None]


@dataclass
class InstallResult:
    """Outcome of an install, or of its plan with ``dry_run``."""

    schema_steps: list[str] = field(default_factory=list)
    # (from, to) schema versions when this install upgrades an existing audit schema; None otherwise.
    schema_upgrade: tuple[int, int] | None = None
    # Audited tables whose triggers are still outdated after a schema upgrade, which maintain regenerates.
    still_outdated: list[str] = field(default_factory=list)
    installed: list[Table] = field(default_factory=list)
    unchanged: list[Table] = field(default_factory=list)
    reenabled: list[Table] = field(default_factory=list)
    without_primary_key: list[Table] = field(default_factory=list)
    # (table, partition) of foreign leaf partitions, which can have no TRUNCATE trigger.
    foreign_partitions: list[tuple[Table, str]] = field(default_factory=list)
    column_rules: list[ColumnRule] = field(default_factory=list)
    # (table, old name, new name) of renamed columns whose rule now names the new name.
    followed_rules: list[tuple[Table, str, str]] = field(default_factory=list)
    # (table, column, rule) of stored rules removed because the table has no such column.
    removed_rules: list[tuple[Table, str, Rule]] = field(default_factory=list)
    # Old name to current name of the registered tables renamed since their last install.
    renamed_tables: dict[str, str] = field(default_factory=dict)
    forgotten: list[str] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    event_triggers: DdlCapture = DdlCapture.OFF
    # Whether the audit triggers are ENABLE ALWAYS, as chosen now or by an earlier install.
    enable_always: bool = False
    # Whether a superuser's event triggers, which this role may not alter, fire in another mode than that.
    event_firing_differs: bool = False
    # Whether event triggers of this audit schema exist already, which an INSTALLED plan replaces.
    replaces_event_triggers: bool = False
    # The policy for new tables that this install stored: a policy, None when it turned the auditing of
    # new tables off, or True when it kept the stored policy as it was.
    auto_audit: AutoAuditPolicy | None | bool = True
    dry_run: bool = False

    @property
    def ddl_capture(self) -> bool:
        """Whether the DDL event triggers run once the install commits."""
        return self.event_triggers is not DdlCapture.OFF


@dataclass
class UninstallResult:
    """Outcome of an uninstall: the tables it stopped auditing."""

    removed: list[str] = field(default_factory=list)
    # The tables among ``removed`` that no longer existed, so only their registry entries were deleted.
    already_dropped: list[str] = field(default_factory=list)
    dropped_schema: bool = False


@dataclass(frozen=True)
class _InstalledTrigger:
    names: frozenset[str]
    sql_hash: str | None
    # pg_trigger.tgenabled of each trigger: 'O', 'A', 'R' or 'D'.
    firing: frozenset[str]

    @property
    def enabled(self) -> bool:
        """Tell whether every trigger fires in ordinary sessions."""
        return not self.firing & {"D", "R"}


def choose_tables(all_tables: list[Table], names: list[str], use_all: bool,
                  exclude: list[str]) -> list[Table]:
    """Turn the TABLE arguments, ``--all`` and ``--exclude`` into a list of tables."""
    if names and use_all:
        raise InvalidArgumentError(_("Give either table names or --all, not both."))
    if use_all:
        chosen = [t for t in all_tables if not t.extension_member]
    else:
        chosen = resolve_tables(names, all_tables)
    excluded = set(resolve_tables(exclude, all_tables)) if exclude else set()
    return [t for t in chosen if t not in excluded]


def install(connection: psycopg.Connection, schema: str, names: list[str], *, use_all: bool = False,
            exclude: list[str] | None = None, column_rules: list[RuleRequest] | list[tuple[str, Rule]] | None = None,
            auto_audit: AutoAuditPolicy | None | bool = True, max_value_bytes: int | None = None,
            enable_always: bool | None = None, dry_run: bool = False,
            lock_timeout_seconds: float = 10.0, warn_ddl_capture_off: bool = True,
            progress: ProgressCallback | None = None) -> InstallResult:
    """Install or upgrade the audit schema and the triggers of the chosen tables.

    ``column_rules`` pairs ``TABLE.COLUMN`` references with privacy rules;
    they are stored and apply to every later install. ``auto_audit`` sets the
    policy for tables created later: a policy, None to turn it off, or True
    to keep what is stored. ``max_value_bytes`` sets the size above which
    text is stored as size and hash (0: never); None keeps what is stored.
    ``enable_always`` makes the audit triggers of every audited table, and the
    event triggers, fire under session_replication_role = replica too, or
    back to the default with False; None keeps what is stored. Everything runs in one
    transaction, so an error leaves the database as it was. Running it again
    with the same arguments changes nothing. With ``dry_run`` nothing runs,
    and ``statements`` contains the SQL that would. ``warn_ddl_capture_off``
    False leaves the warning about missing event triggers to the caller,
    such as maintain, which installs table by table, or the CLI, which prints
    it translated.
    """
    result = InstallResult(dry_run=dry_run)
    with connection.transaction():
        _lock(connection, lock_timeout_seconds)
        all_tables = list_tables(connection, schema)
        tables = choose_tables(all_tables, names, use_all, exclude or [])
        given_rules, rule_origins = resolve_requests(column_rules or [], all_tables)

        require_schema_privileges(connection, schema)
        steps = plan_schema(connection, schema)
        result.schema_steps = [step.name for step in steps]
        fresh = not schema_exists(connection, schema)
        if not fresh:
            tables = _with_renamed_namesakes(connection, schema, tables, all_tables)
            result.schema_upgrade = _schema_upgrade(connection, schema)
        result.enable_always = enable_always if enable_always is not None else (
            not fresh and load_enable_always(connection, schema))
        _reject_tables_of_other_logs(connection, schema, tables)
        result.event_triggers = plan_ddl_capture(connection, schema)
        if result.event_triggers is DdlCapture.INSTALLED:
            _reject_second_ddl_capture(connection, schema)
            result.replaces_event_triggers = bool(event_trigger_firing(connection, schema))
        if result.event_triggers is DdlCapture.KEPT:
            result.event_firing_differs = (event_trigger_firing(connection, schema)
                                           != {firing_code(result.enable_always)})
        ddl_sql = (render_ddl_capture(connection, schema, result.enable_always)
                   if result.event_triggers is DdlCapture.INSTALLED else None)
        if ddl_sql:
            ddl_sql += "\n" + ddl_capture_comment(schema, ddl_sql)
        policy_sql = None if auto_audit is True else policy_statement(schema, auto_audit)
        firing_sql = None if enable_always is None else enable_always_statement(schema, enable_always)
        if max_value_bytes is not None and max_value_bytes < 0:
            raise InvalidArgumentError(
                _("Invalid --max-value-bytes {value}: use 0 or a positive number of bytes.").format(
                    value=max_value_bytes))
        size_sql = None if max_value_bytes is None else (
            f"INSERT INTO {quote_ident(schema)}.settings (name, value) VALUES ('max_value_bytes', '{int(max_value_bytes)}')\n"
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = pg_catalog.now();")
        if auto_audit not in (True, None) and not result.ddl_capture:
            raise InvalidArgumentError(
                _("Auditing new tables automatically needs event triggers, which only a superuser may create; "
                  "run install as one, or leave out --auto-audit and auto_audit in the config file."))
        result.auto_audit = auto_audit
        log_owner = None if fresh else log_owner_if_other(connection, schema)
        if not dry_run and result.schema_upgrade:
            _lock_tables_before_upgrade(connection, tables)
        if not dry_run:
            with acting_as(connection, log_owner):
                apply_schema(connection, schema)
        # Before the rules given now are saved, so that they replace a rule that followed a rename.
        followed = {} if fresh else follow_renames(connection, schema, tables, apply=not dry_run)
        if dry_run:
            result.statements.extend(step.sql for step in steps)
            result.statements.extend(_rule_statements(schema, given_rules))
            result.statements.extend(sql for sql in (ddl_sql, policy_sql, size_sql, firing_sql) if sql)
        else:
            save_rules(connection, schema, given_rules)
            for statement in (ddl_sql, policy_sql, size_sql, firing_sql):
                if statement:
                    connection.execute(statement)
            if result.event_triggers is DdlCapture.KEPT:
                logger.info("role %s may not replace the event triggers a superuser installed: DDL capture stays on",
                            connection.info.user)
            elif result.event_triggers is DdlCapture.OFF and warn_ddl_capture_off:
                logger.warning("role %s may not create event triggers: DDL capture is off", connection.info.user)

        stored_rules = {} if fresh else load_rules(connection, schema)
        for table in tables:
            if table.oid in followed:
                # The same as stored after a real run; a dry run stored nothing.
                stored_rules[(table.schema, table.name)] = dict(followed[table.oid].rules)
        for table, column, rule in given_rules:
            stored_rules.setdefault((table.schema, table.name), {})[column] = rule
        _settle_rules(connection, schema, tables, followed, stored_rules, result)
        if not dry_run and not fresh:
            # First, so that a table dropped and created again can take its old function name.
            result.forgotten = _forget_dropped_tables(connection, schema)
        current = {} if fresh else _installed_triggers(connection, schema)
        registry = {} if fresh else _registry(connection, schema)
        registered = {oid: function for oid, (_name, function) in registry.items()}
        registered_names = {oid: name for oid, (name, _function) in registry.items()}

        size_limit = max_value_bytes if max_value_bytes is not None else (
            DEFAULT_MAX_VALUE_BYTES if fresh else load_max_value_bytes(connection, schema))
        for table in tables:
            rules = effective_rules(table, stored_rules.get((table.schema, table.name), {}),
                                    rule_origins.get((table.schema, table.name)))
            result.column_rules.extend(rules)
            if not table.has_primary_key:
                result.without_primary_key.append(table)
            trigger = render_trigger(connection, schema, table, rules, size_limit,
                                     stored_rules.get((table.schema, table.name), {}), result.ddl_capture)
            found = current.get(table.oid)
            leaves = leaf_triggers(connection, schema, table.oid) if table.partitioned else LeafTriggers()
            result.foreign_partitions.extend((table, name) for name in leaves.foreign)
            if (found and found.firing == {firing_code(result.enable_always)} and found.sql_hash == trigger.sql_hash
                    and found.names == frozenset(trigger.trigger_names)
                    and leaves.current(firing_code(result.enable_always))):
                result.unchanged.append(table)
            else:
                result.installed.append(table)
                if registered_names.get(table.oid, table.entity_type) != table.entity_type:
                    # The registry row is about to lose the name of the last
                    # install. The AUDIT_INSTALL event keeps it, so that events
                    # recorded under that name still lead to this table.
                    result.renamed_tables[registered_names[table.oid]] = table.entity_type
                if found and not (found.enabled and leaves.enabled):
                    result.reenabled.append(table)
                statements = _trigger_statements(schema, table, trigger, registered.get(table.oid),
                                                 result.enable_always, log_owner)
                if dry_run:
                    result.statements.extend(statements)
                else:
                    _run_trigger_statements(connection, table, statements)
            if progress:
                progress(table.entity_type)
        if enable_always is not None or result.enable_always:
            # The firing mode is per database, so it also applies to audited tables not named this time.
            _set_firing_of_others(connection, schema, tables, all_tables, current, result)
        if not dry_run:
            _store_layouts(connection, schema, result.unchanged)
            if result.schema_upgrade:
                result.still_outdated = [status.entity_type for _table, status in table_states(connection, schema)
                                         if status.state is TableState.OUTDATED]
            _record(connection, schema, "AUDIT_INSTALL", {
                "installed": [t.entity_type for t in result.installed],
                "unchanged": len(result.unchanged),
                "schema_steps": [name for name in result.schema_steps if name.startswith("schema/")],
                "ddl_capture": result.ddl_capture,
                "event_triggers": result.event_triggers.value,
                "enable_always": result.enable_always,
                **({"renamed_tables": result.renamed_tables} if result.renamed_tables else {}),
            })
    return result


def _reject_tables_of_other_logs(connection: psycopg.Connection, schema: str, tables: list[Table]) -> None:
    """Raise InvalidArgumentError when a chosen table has auditctl triggers that write into another audit schema.

    The triggers have fixed names, so installing the table here would take
    them over, and that other log would silently stop recording the table.
    """
    row = connection.execute(
        """SELECT t.tgrelid::bigint, n.nspname
           FROM pg_catalog.pg_trigger t
           JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
           JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
           WHERE t.tgname = ANY(%s) AND NOT t.tgisinternal AND t.tgparentid = 0
             AND t.tgrelid = ANY(%s) AND n.nspname <> %s
           ORDER BY 1 LIMIT 1""",
        (list(TRIGGER_NAMES), [table.oid for table in tables], schema)).fetchone()
    if row is None:
        return
    [table] = [table for table in tables if table.oid == row[0]]
    raise InvalidArgumentError(
        _("Table {table} is already audited into the audit schema {other}, not {schema}: use --schema {other}, "
          "or first run `auditctl uninstall {table} --schema {other}`.")
        .format(table=table.entity_type, other=quote_ident(row[1]), schema=quote_ident(schema)))


def _reject_second_ddl_capture(connection: psycopg.Connection, schema: str) -> None:
    """Raise InvalidArgumentError when another audit schema's event triggers capture DDL already.

    A second set would record every schema change in both logs, and after an
    ALTER each would regenerate the triggers of the tables in its registry.
    """
    row = connection.execute(
        """SELECT n.nspname
           FROM pg_catalog.pg_event_trigger e
           JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid
           JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
           WHERE p.proname = 'capture_ddl' AND n.nspname <> %s
           ORDER BY 1 LIMIT 1""", (schema,)).fetchone()
    if row is None:
        return
    other = quote_ident(row[0])
    raise InvalidArgumentError(
        _("The audit schema {other} already records schema changes in this database, and a second audit schema "
          "{schema} would record each of them twice: use --schema {other}, or remove that log first with "
          "`auditctl uninstall --all --drop-data --schema {other}`.")
        .format(other=other, schema=quote_ident(schema)))


def _settle_rules(connection: psycopg.Connection, schema: str, tables: list[Table],
                  followed: dict[int, FollowedRules], stored_rules: RulesByTable, result: InstallResult) -> None:
    """Report the rules that followed a rename, and remove those that name a column the table does not have.

    A dry run removes nothing and lists the DELETE instead.
    """
    for table in tables:
        if table.oid in followed:
            for old, new in followed[table.oid].moved():
                result.followed_rules.append((table, old, new))
                if not result.dry_run:
                    logger.info("the rule of column %s of %s now applies to its new name %s",
                                old, table.entity_type, new)
        rules = stored_rules.get((table.schema, table.name), {})
        unused = unused_rules(table, rules)
        if not unused:
            continue
        columns = [column for column, _rule in unused]
        if result.dry_run:
            result.statements.append(
                f"DELETE FROM {quote_ident(schema)}.column_rules WHERE table_schema = {quote_literal(table.schema)} "
                f"AND table_name = {quote_literal(table.name)} "
                f"AND column_name IN ({', '.join(quote_literal(column) for column in columns)});")
        else:
            remove_rules(connection, schema, table, columns)
        for column, rule in unused:
            del rules[column]
            result.removed_rules.append((table, column, rule))
            if not result.dry_run:
                logger.warning("removed the %s rule of column %s of %s: the table has no such column",
                               rule.value, column, table.entity_type)


def _store_layouts(connection: psycopg.Connection, schema: str, unchanged: list[Table]) -> None:
    """Store the layout of unchanged tables, and of registered tables that have none.

    A trigger is unchanged only when the rendered SQL is, so the table's
    current layout is the one its trigger was generated for. Registry rows
    of earlier versions have no layout: for them this is the best guess.
    """
    # NOTE: a table altered before the upgrade that added layouts gets its
    # altered layout here, so that ALTER is never refreshed. Status still
    # reports the table's trigger as outdated.
    audit = quote_ident(schema)
    connection.execute(
        f"""UPDATE {audit}.audited_tables SET layout = {audit}.table_layout(table_id)
            WHERE layout IS NULL OR table_id::oid = ANY(%s)""", ([table.oid for table in unchanged],))


def _record(connection: psycopg.Connection, schema: str, action: str, details: dict) -> None:
    """Record one of auditctl's own changes in the log, in the caller's transaction."""
    connection.execute(f"SELECT {quote_ident(schema)}.log_event(%s, details => %s)", (action, Jsonb(details)))


def _lock(connection: psycopg.Connection, lock_timeout_seconds: float) -> None:
    connection.execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)",
                       (f"{int(lock_timeout_seconds * 1000)}ms",))
    # The DDL below is auditctl's own; the event triggers leave it to _record().
    connection.execute("SELECT pg_catalog.set_config('auditctl.internal', 'on', true)")
    connection.execute("SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(%s))",
                       (_INSTALL_LOCK_KEY,))


def _schema_upgrade(connection: psycopg.Connection, schema: str) -> tuple[int, int] | None:
    """Return the installed and the latest schema version when the existing schema lacks versions; else None."""
    applied = applied_versions(connection, schema)
    pending = pending_versions(applied)
    return (max(applied, default=0), max(pending)) if pending else None


def _lock_tables_before_upgrade(connection: psycopg.Connection, tables: list[Table]) -> None:
    """Lock the chosen tables against writes before a schema upgrade locks the events table.

    An audited write locks its table first and the events table second. A
    schema upgrade locks the events table and then, to replace the triggers,
    the tables. A write that began in between would wait for the upgrade
    while holding a table that the upgrade needs next, a deadlock that
    PostgreSQL resolves by failing one of the two. Locking the tables first
    takes the locks in the writes' order: writes that already hold a table
    finish, and later ones wait for the upgrade to commit.
    """
    # NOTE: a transaction that writes two of these tables can still deadlock with
    # this one statement, which locks the tables one after another.
    if not tables:
        return
    names = sql.SQL(", ").join(sql.Identifier(table.schema, table.name) for table in tables)
    try:
        connection.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(names))
    except pg_errors.LockNotAvailable:
        raise DatabaseError(
            _("Could not lock the audited tables to upgrade the audit schema: another transaction is writing "
              "to one of them. Retry when long transactions have finished, or raise --lock-timeout.")) from None
    logger.info("locked %d tables against writes for the schema upgrade", len(tables))


def _installed_triggers(connection: psycopg.Connection, schema: str) -> dict[int, _InstalledTrigger]:
    """Map table OIDs to the hash and state of their auditctl triggers.

    The hash is None unless all the table's triggers carry the same one.
    """
    found: dict[int, list[tuple[str, str, str | None]]] = {}
    for oid, name, firing, _function, comment in connection.execute(
            INSTALLED_TRIGGERS_QUERY, (list(TRIGGER_NAMES), quote_ident(schema))).fetchall():
        found.setdefault(oid, []).append((name, firing, hash_from_comment(comment)))
    result = {}
    for oid, triggers in found.items():
        hashes = {sql_hash for _name, _firing, sql_hash in triggers}
        result[oid] = _InstalledTrigger(names=frozenset(name for name, _firing, _hash in triggers),
                                        sql_hash=hashes.pop() if len(hashes) == 1 else None,
                                        firing=frozenset(firing for _name, firing, _hash in triggers))
    return result


def _with_renamed_namesakes(connection: psycopg.Connection, schema: str, tables: list[Table],
                            all_tables: list[Table]) -> list[Table]:
    """Put first the renamed audited tables that the last install registered under a name in ``tables``.

    Without DDL capture, a renamed table keeps the trigger function, the
    rules and the name in its events of its old name until install
    generates its trigger again. A new table created under that name needs
    all three, so the renamed table is installed first, as maintain would.
    """
    registry_table = connection.execute("SELECT pg_catalog.to_regclass(%s)",
                                        (f"{quote_ident(schema)}.audited_tables",)).fetchone()[0]
    if registry_table is None:
        # An audit schema that its owner created empty for the first install has no registry yet.
        return tables
    chosen = {table.oid for table in tables}
    names = {table.entity_type for table in tables}
    by_oid = {table.oid: table for table in all_tables}
    namesakes = [by_oid[oid] for oid, (name, _function) in _registry(connection, schema).items()
                 if name in names and oid not in chosen and oid in by_oid and by_oid[oid].entity_type != name]
    for table in namesakes:
        logger.info("installing renamed table %s first, because its trigger still uses the name of a table to "
                    "install", table.entity_type)
    return namesakes + tables


def _registry(connection: psycopg.Connection, schema: str) -> dict[int, tuple[str, str]]:
    """Map the OIDs of registered tables to their name at the last install and their trigger function."""
    rows = connection.execute(
        f"SELECT table_id::oid::bigint, table_name, function_name FROM {quote_ident(schema)}.audited_tables"
    ).fetchall()
    return {oid: (name, function) for oid, name, function in rows}


def _rule_statements(schema: str, rules: list[tuple[Table, str, Rule]]) -> list[str]:
    return [f"""INSERT INTO {quote_ident(schema)}.column_rules (table_schema, table_name, column_name, rule)
VALUES ({quote_literal(table.schema)}, {quote_literal(table.name)}, {quote_literal(column)}, {quote_literal(rule.value)})
ON CONFLICT (table_schema, table_name, column_name) DO UPDATE SET rule = EXCLUDED.rule;"""
            for table, column, rule in rules]


def _trigger_statements(schema: str, table: Table, trigger: TriggerSql, previous_function: str | None,
                        always: bool, function_owner: str | None = None) -> list[str]:
    """List the statements that install one table's trigger and record it in the registry.

    ``function_owner``, the quoted owner of the log when another role runs
    the install, receives the trigger's function.
    """
    audit = quote_ident(schema)
    comment = quote_literal(trigger_comment(trigger))
    statements = [trigger.sql]
    if function_owner:
        statements.append(f"ALTER FUNCTION {audit}.{quote_ident(trigger.function_name)}() OWNER TO {function_owner};")
    for name in TRIGGER_NAMES:
        if name not in trigger.trigger_names:
            # Left over from another trigger layout of an earlier template.
            statements.append(f"DROP TRIGGER IF EXISTS {quote_ident(name)} ON {trigger.table};")
    for name in trigger.trigger_names:
        statements.append(f"COMMENT ON TRIGGER {quote_ident(name)} ON {trigger.table} IS {comment};")
        # CREATE OR REPLACE TRIGGER keeps a disabled trigger disabled.
        statements.append(enable_statement(trigger.table, name, always))
    if table.partitioned:
        # After the row trigger is enabled: its leaf partitions' TRUNCATE triggers fire as it does.
        statements.append(put_statement(schema, trigger.table))
    statements.append(
        f"""INSERT INTO {audit}.audited_tables
    (table_id, table_name, function_name, template_version, sql_hash, layout)
VALUES ({quote_literal(trigger.table)}::regclass, {quote_literal(table.entity_type)}, {quote_literal(trigger.function_name)},
        {trigger.template_version}, {quote_literal(trigger.sql_hash)},
        {audit}.table_layout({quote_literal(trigger.table)}::regclass))
ON CONFLICT (table_id) DO UPDATE
SET table_name = EXCLUDED.table_name, function_name = EXCLUDED.function_name,
    template_version = EXCLUDED.template_version, sql_hash = EXCLUDED.sql_hash, layout = EXCLUDED.layout,
    installed_at = pg_catalog.now(), installed_by = pg_catalog."current_user"();""")
    if previous_function and previous_function != trigger.function_name:
        # CASCADE: a table detached from a partitioned table keeps a TRUNCATE trigger that calls it.
        statements.append(f"DROP FUNCTION IF EXISTS {audit}.{quote_ident(previous_function)}() CASCADE;")
    return statements


def _set_firing_of_others(connection: psycopg.Connection, schema: str, chosen: list[Table], all_tables: list[Table],
                          current: dict[int, _InstalledTrigger], result: InstallResult) -> None:
    """Switch the enabled audit triggers of tables outside ``chosen`` to the chosen firing mode.

    Disabled triggers stay disabled: ``auditctl status`` reports them, and
    installing their table enables them.
    """
    target_code = firing_code(result.enable_always)
    chosen_oids = {table.oid for table in chosen}
    for table in all_tables:
        found = current.get(table.oid)
        if table.oid in chosen_oids or not found:
            continue
        leaves = leaf_triggers(connection, schema, table.oid) if table.partitioned else LeafTriggers()
        if not (found.enabled and leaves.enabled) or found.firing | leaves.firing == {target_code}:
            continue
        quoted = quote_ident(table.schema, table.name)
        statements = [enable_statement(quoted, name, result.enable_always) for name in sorted(found.names)]
        if table.partitioned:
            statements.append(put_statement(schema, quoted))
        if result.dry_run:
            result.statements.extend(statements)
        else:
            _run_trigger_statements(connection, table, statements)
        result.installed.append(table)


def _run_trigger_statements(connection: psycopg.Connection, table: Table, statements: list[str]) -> None:
    try:
        with connection.transaction():
            for statement in statements:
                connection.execute(statement)
    except pg_errors.LockNotAvailable:
        raise DatabaseError(
            _("Could not lock table {table} to add its audit trigger: another transaction holds it. "
              "Retry when long transactions have finished, or raise --lock-timeout.")
            .format(table=table.entity_type)) from None
    except psycopg.Error as exc:
        raise DatabaseError(
            _("Could not install the audit trigger on {table}: {error}")
            .format(table=table.entity_type, error=first_line(str(exc)))) from None
    logger.info("installed audit trigger on %s", table.entity_type)


def _forget_dropped_tables(connection: psycopg.Connection, schema: str) -> list[str]:
    """Remove registry rows and trigger functions of tables that no longer exist.

    Also drops auditctl trigger functions that no trigger uses and no
    registered table names. Returns the names of the dropped tables.
    """
    audit = quote_ident(schema)
    dropped = connection.execute(
        f"""DELETE FROM {audit}.audited_tables r
            WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_class c WHERE c.oid = r.table_id)
            RETURNING table_name, function_name""").fetchall()
    orphans = connection.execute(
        f"""SELECT p.proname FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = %s::regnamespace
              AND pg_catalog.obj_description(p.oid, 'pg_proc') LIKE 'auditctl trigger function%%'
              AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger t WHERE t.tgfoid = p.oid)
              AND NOT EXISTS (SELECT FROM {audit}.audited_tables r WHERE r.function_name = p.proname)""",
        (audit,)).fetchall()
    for function in {row[1] for row in dropped} | {row[0] for row in orphans}:
        # CASCADE: a table detached from a partitioned table keeps a TRUNCATE trigger that calls it.
        connection.execute(f"DROP FUNCTION IF EXISTS {audit}.{quote_ident(function)}() CASCADE")
        logger.info("dropped unused trigger function %s.%s", schema, function)
    return [row[0] for row in dropped]


def uninstall(connection: psycopg.Connection, schema: str, names: list[str], *, use_all: bool = False,
              drop_data: bool = False, lock_timeout_seconds: float = 10.0) -> UninstallResult:
    """Remove the triggers of the chosen tables; drop the whole log with ``drop_data``.

    A table that was dropped after install can still be named, as
    ``auditctl status`` shows it, to clear its registry entry.
    """
    if drop_data and not use_all:
        raise InvalidArgumentError(
            _("--drop-data deletes the whole audit log and needs --all as well."))
    if not names and not use_all:
        raise InvalidArgumentError(_("Name the tables to stop auditing, or use --all."))
    if names and use_all:
        raise InvalidArgumentError(_("Give either table names or --all, not both."))
    require_log_owner(connection, schema, "uninstall")
    if drop_data:
        require_event_trigger_owner(connection, schema)
    result = UninstallResult()
    with connection.transaction():
        _lock(connection, lock_timeout_seconds)
        if drop_data and not schema_exists(connection, schema):
            return result
        require_installed(connection, schema)
        audit = quote_ident(schema)
        registry = {oid: (name, function) for oid, name, function in connection.execute(
            f"SELECT table_id::oid::bigint, table_name, function_name FROM {audit}.audited_tables").fetchall()}
        triggered = {oid: function for oid, _name, _enabled, function, _comment in connection.execute(
            INSTALLED_TRIGGERS_QUERY, (list(TRIGGER_NAMES), audit)).fetchall()}
        if use_all:
            targets = sorted(set(registry) | set(triggered))
        else:
            targets = _uninstall_targets(names, list_tables(connection, schema), registry)
        existing = {oid for (oid,) in connection.execute(
            "SELECT oid::bigint FROM pg_catalog.pg_class WHERE oid = ANY(%s::oid[])", (targets,)).fetchall()}
        for oid in targets:
            registered_name, registered_function = registry.get(oid, (None, None))
            label = _drop_table_triggers(connection, schema, oid, registered_name,
                                         {registered_function, triggered.get(oid)} - {None})
            if label:
                result.removed.append(label)
                if oid not in existing:
                    result.already_dropped.append(label)
        _forget_dropped_tables(connection, schema)
        if drop_data:
            for statement in drop_statements(schema):
                connection.execute(statement)
            connection.execute(f"DROP SCHEMA {audit} CASCADE")
            result.dropped_schema = True
            logger.info("dropped schema %s and the audit log in it", schema)
        else:
            _record(connection, schema, "AUDIT_UNINSTALL", {"removed": result.removed})
    return result


def hand_over_attached_tables(connection: psycopg.Connection, schema: str,
                              lock_timeout_seconds: float = 10.0) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Remove the own triggers of audited tables that became partitions of an audited table.

    PostgreSQL 15 lets an audited table be attached to an audited
    partitioned table, and then both the table's own triggers and those it
    got from the partitioned table record its changes. The DDL event trigger
    hands such a table over at once, with the SQL function of the same name
    that only installs with DDL capture. Without DDL capture, maintain does it
    here: the table's trigger function is dropped with its triggers, its
    registry row deleted, and an AUDIT_UNINSTALL event names both tables,
    in one transaction per table. Returns the pairs of table and partitioned
    table handed over, and the tables whose lock was not granted in time,
    with the error.
    """
    audit = quote_ident(schema)
    handed_over, failed = [], []
    candidates = connection.execute(
        f"""SELECT r.table_id::oid::bigint, r.table_name, root.table_name
              FROM {audit}.audited_tables AS r
              JOIN pg_catalog.pg_class AS c ON c.oid = r.table_id
              JOIN {audit}.audited_tables AS root ON root.table_id = pg_catalog.pg_partition_root(c.oid)
             WHERE c.relispartition AND root.table_id <> r.table_id
             ORDER BY r.table_name""").fetchall()
    for oid, name, parent in candidates:
        try:
            with connection.transaction():
                _lock(connection, lock_timeout_seconds)
                # Checked again under the install lock, because another install may have handed it over first.
                row = connection.execute(
                    f"""SELECT r.function_name FROM {audit}.audited_tables AS r
                        JOIN pg_catalog.pg_class AS c ON c.oid = r.table_id
                        WHERE r.table_id = %s::oid AND c.relispartition""", (oid,)).fetchone()
                if row is None:
                    continue
                # CASCADE drops the table's triggers, and the TRUNCATE triggers it put on its own leaves.
                connection.execute(f"DROP FUNCTION IF EXISTS {audit}.{quote_ident(row[0])}() CASCADE")
                connection.execute(f"DELETE FROM {audit}.audited_tables WHERE table_id = %s::oid", (oid,))
                _record(connection, schema, "AUDIT_UNINSTALL", {"removed": [name], "partition_of": parent})
        except psycopg.errors.LockNotAvailable:
            error = _("could not lock it, because another transaction holds it. Run maintain again when long "
                      "transactions have finished.")
            logger.warning("kept the own audit triggers of %s: %s", name, error)
            failed.append((name, error))
            continue
        logger.info("handed %s over to the audit triggers of %s, whose partition it is", name, parent)
        handed_over.append((name, parent))
    return handed_over, failed


def _uninstall_targets(names: list[str], tables: list[Table], registry: dict[int, tuple[str, str]]) -> list[int]:
    targets = []
    for text in names:
        try:
            [table] = resolve_tables([text], tables)
            targets.append(table.oid)
            continue
        except AmbiguousTableError:
            raise
        except TableNotFoundError:
            schema, name = parse_table_name(text)
        # A dropped table is known only by the name it had when installed.
        wanted = f"{schema}.{name}" if schema else None
        matches = [oid for oid, (registered, _function) in registry.items()
                   if registered == wanted or (schema is None and registered.split(".", 1)[1] == name)]
        if len(matches) != 1:
            raise TableNotFoundError(
                _("Table {name!r} not found. Run `auditctl status` to list the tables that can be audited.")
                .format(name=text))
        targets.append(matches[0])
    return targets


def _drop_table_triggers(connection: psycopg.Connection, schema: str, oid: int, registered_name: str | None,
                         functions: set[str]) -> str | None:
    audit = quote_ident(schema)
    row = connection.execute(
        """SELECT n.nspname, c.relname FROM pg_catalog.pg_class c
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s""", (oid,)).fetchone()
    if row is None and registered_name is None:
        return None
    label = f"{row[0]}.{row[1]}" if row else registered_name
    if row:
        if not functions:
            return None
        table = quote_ident(row[0], row[1])
        # Only the triggers whose function is in this schema: triggers of the same names may write another log.
        own = [name for (name,) in connection.execute(
            """SELECT t.tgname FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
               WHERE t.tgrelid = %s AND t.tgname = ANY(%s) AND NOT t.tgisinternal AND t.tgparentid = 0
                 AND p.pronamespace = %s::regnamespace""", (oid, list(TRIGGER_NAMES), audit)).fetchall()]
        try:
            if own:
                # The leaf partitions' triggers first, found through the table's row trigger.
                for statement in leaf_drop_statements(connection, oid):
                    connection.execute(statement)
            for name in own:
                connection.execute(f"DROP TRIGGER IF EXISTS {quote_ident(name)} ON {table}")
        except pg_errors.LockNotAvailable:
            raise DatabaseError(
                _("Could not lock table {table} to remove its audit trigger: another transaction holds it. "
                  "Retry when long transactions have finished.").format(table=label)) from None
    for function in functions - {GENERIC_FUNCTION}:
        connection.execute(f"DROP FUNCTION IF EXISTS {audit}.{quote_ident(function)}()")
    connection.execute(f"DELETE FROM {audit}.audited_tables WHERE table_id::oid = %s", (oid,))
    logger.info("removed audit trigger from %s", label)
    return label
