"""Rendering of the per-table trigger SQL from ``sql/trigger.sql.j2``."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from ..sqltext import dollar_quote_tag, quote_ident, quote_literal, render, sha256_hex, truncate_utf8
from .catalog import Table
from .rules import MASK_MARKER, ColumnRule, Rule, effective_rules, load_rules
from .schema import template_context

# Bump when sql/trigger.sql.j2 changes in a way that existing triggers must
# be regenerated for; status then reports them as outdated.
TEMPLATE_VERSION = 6

# Trigger names are per table, so fixed names cannot collide between tables.
# So a table is audited into one audit schema only: install refuses a table
# whose triggers of these names write into another one.
TRIGGER_NAMES = ("auditctl_row", "auditctl_insert", "auditctl_update", "auditctl_delete", "auditctl_truncate")
ROW_LAYOUT = ("auditctl_row", "auditctl_truncate")
SET_BASED_LAYOUT = ("auditctl_insert", "auditctl_update", "auditctl_delete", "auditctl_truncate")
# A partitioned table's TRUNCATE trigger goes on each leaf partition instead,
# because a TRUNCATE fires only the triggers of the leaves it empties.
PARTITIONED_LAYOUT = ("auditctl_row",)
TRUNCATE_TRIGGER = "auditctl_truncate"
# The kinds of change that each trigger records.
TRIGGER_ACTIONS = {
    "auditctl_row": ("INSERT", "UPDATE", "DELETE"),
    "auditctl_insert": ("INSERT",),
    "auditctl_update": ("UPDATE",),
    "auditctl_delete": ("DELETE",),
    "auditctl_truncate": ("TRUNCATE",),
}
# The kinds of change that a table's audit triggers record, in the order messages list them.
CHANGE_ACTIONS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")

# The auditctl triggers of each table, by the table's OID: name, tgenabled,
# function name and comment. Parameters: the trigger names and the quoted
# audit schema. The TRUNCATE triggers on leaf partitions are left out, and so
# are those of tables detached from a partitioned table since: they call the
# partitioned table's function with the arguments of its row trigger.
INSTALLED_TRIGGERS_QUERY = f"""
SELECT t.tgrelid::bigint, t.tgname, t.tgenabled, p.proname, pg_catalog.obj_description(t.oid, 'pg_trigger')
FROM pg_catalog.pg_trigger t
JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
WHERE t.tgname = ANY(%s) AND NOT t.tgisinternal AND t.tgparentid = 0
  AND p.pronamespace = %s::regnamespace
  AND NOT (t.tgname = '{TRUNCATE_TRIGGER}' AND EXISTS (
      SELECT FROM pg_catalog.pg_trigger o
      WHERE o.tgrelid <> t.tgrelid AND o.tgname = 'auditctl_row' AND o.tgparentid = 0
        AND o.tgfoid = t.tgfoid AND o.tgargs = t.tgargs))
"""

# An UPDATE of at least this many rows is captured by a query written for the
# table's current columns and planned for that statement. Smaller ones use a
# cached query that compares columns as JSON, because planning the written
# query costs roughly what comparing 100 rows as JSON does (an estimate).
BULK_UPDATE_ROWS = 100
# work_mem of that query: both transition tables are sorted to pair their rows.
BULK_UPDATE_WORK_MEM = "64MB"

# PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1).
MAX_IDENTIFIER_BYTES = 63
_HASH_SUFFIX_LENGTH = 12


@dataclass(frozen=True)
class TriggerSql:
    """The generated SQL of one table's trigger function and triggers."""

    table: str
    function_name: str
    sql: str
    sql_hash: str
    trigger_names: tuple[str, ...] = ROW_LAYOUT
    template_version: int = TEMPLATE_VERSION


def function_name_for(table: Table) -> str:
    """Name the table's trigger function: readable prefix plus a hash of the full names.

    The hash keeps names of long or similar tables distinct after the prefix
    is cut to fit PostgreSQL's 63-byte limit.
    """
    suffix = "_" + sha256_hex(f"{table.schema}\x00{table.name}")[:_HASH_SUFFIX_LENGTH]
    prefix = truncate_utf8(f"{table.schema}_{table.name}", MAX_IDENTIFIER_BYTES - len(suffix))
    return prefix + suffix


def render_trigger(connection: psycopg.Connection, schema: str, table: Table,
                   rules: list[ColumnRule] | None = None, max_value_bytes: int | None = None,
                   stored: dict[str, Rule] | None = None, ddl_capture: bool | None = None) -> TriggerSql:
    """Render the trigger SQL of one table as the template version in use would.

    ``rules`` are the table's effective column rules and ``stored`` the rules
    kept in the audit schema for it. ``max_value_bytes`` is the size above
    which text is stored as size and hash. ``ddl_capture`` is true where the
    DDL event triggers run, which replace the trigger after a column change,
    and only then does a one-row UPDATE take the query that names the columns.
    Each is read from the database when not given.
    """
    if stored is None:
        stored = load_rules(connection, schema).get((table.schema, table.name), {})
    if rules is None:
        rules = effective_rules(table, stored)
    if max_value_bytes is None:
        max_value_bytes = load_max_value_bytes(connection, schema)
    if ddl_capture is None:
        from .ddl import ddl_capture_enabled  # ddl imports this module
        ddl_capture = ddl_capture_enabled(connection, schema)
    exempt = sorted({r.column for r in rules} | {column for column, rule in stored.items() if rule is Rule.KEEP})
    summarized_bytea = [column for column in table.bytea_columns if column not in exempt]
    excluded_columns = {r.column for r in rules if r.rule is Rule.EXCLUDE}
    diff_columns = [column for column in table.columns if column not in excluded_columns]
    function = function_name_for(table)
    # Transition tables are not allowed in inheritance trees, and a row moved
    # between partitions reaches only row-level INSERT and DELETE triggers.
    set_based = not table.partitioned and not table.inheritance
    by_rule = {rule: [quote_literal(r.column) for r in rules if r.rule is rule] for rule in Rule}
    quoted_table = quote_ident(table.schema, table.name)
    key_columns = [quote_ident(column) for column in table.key_columns]
    key_literals = [quote_literal(column) for column in table.key_columns]

    def key_expression(row: str) -> str:
        # Read the key from the row's JSON, not from NEW."column": a dropped
        # key column then yields NULL instead of failing the application's write.
        if len(key_columns) == 1:
            return f"({row}) ->> {key_literals[0]}"
        values = ", ".join(f"({row}) -> {literal}" for literal in key_literals)
        return f"pg_catalog.jsonb_build_array({values})::text"

    def typed_key(row: str) -> str:
        # The same text as key_expression() gives for the row's JSON.
        if len(key_columns) == 1:
            return f"pg_catalog.to_jsonb({row}.{key_columns[0]}) #>> '{{}}'"
        values = ", ".join(f"{row}.{column}" for column in key_columns)
        return f"pg_catalog.jsonb_build_array({values})::text"

    context = template_context(connection, schema)
    context.update(
        partitioned=table.partitioned,
        set_based=set_based,
        excluded=f" - ARRAY[{', '.join(by_rule[Rule.EXCLUDE])}]::text[]" if by_rule[Rule.EXCLUDE] else "",
        excluded_array=_text_array(sorted(excluded_columns)),
        key_array=_text_array(list(table.key_columns)),
        bulk_rows=BULK_UPDATE_ROWS,
        bulk_work_mem=BULK_UPDATE_WORK_MEM,
        masked=by_rule[Rule.MASK],
        hashed=by_rule[Rule.HASH],
        mask_marker=quote_literal(MASK_MARKER),
        bytea_columns=_text_array(summarized_bytea) if summarized_bytea else "",
        bytea_literals=[quote_literal(column) for column in summarized_bytea],
        diff_columns=[quote_literal(column) for column in diff_columns],
        known_minus=f" - {_text_array(diff_columns)}" if diff_columns else "",
        exempt=_text_array(exempt),
        max_value_bytes=int(max_value_bytes),
        function=quote_ident(function),
        function_literal=quote_literal(function),
        table=quoted_table,
        entity_type=quote_literal(table.entity_type),
        key_columns=key_columns,
        key_expression=key_expression,
        typed_update=ddl_capture,
        typed_key=typed_key,
        typed_columns=_typed_columns(connection, table, diff_columns) if ddl_capture and set_based else [],
        function_comment=quote_literal(
            f"auditctl trigger function for {table.entity_type} (template {TEMPLATE_VERSION})"),
    )
    # Render once to learn the body, then pick a dollar-quote tag absent from it.
    context["tag"] = "$auditctl$"
    draft = render("trigger.sql.j2", **context)
    context["tag"] = dollar_quote_tag(draft.replace("$auditctl$", ""))
    sql_text = render("trigger.sql.j2", **context)
    layout = ROW_LAYOUT
    if set_based:
        layout = SET_BASED_LAYOUT
    elif table.partitioned:
        layout = PARTITIONED_LAYOUT
    return TriggerSql(table=quoted_table, function_name=function, sql=sql_text, sql_hash=sha256_hex(sql_text),
                      trigger_names=layout)


def _typed_columns(connection: psycopg.Connection, table: Table, columns: list[str]) -> list[dict[str, str]]:
    """Describe the stored columns for the one-row UPDATE code of the template.

    Each column gets its name as an SQL literal and the SQL that is true
    when its value did not change: typed values where the type has an = operator
    of its own in pg_catalog, their text otherwise (json, arrays, domains,
    enums, types of extensions, whose operators the trigger's search_path
    does not reach), and their text in byte order under a nondeterministic
    collation, as the query of a large UPDATE compares them.
    """
    with connection.cursor() as cursor:
        cursor.execute(_COLUMN_TYPES_QUERY, (table.oid,))
        kinds = {name: (exact, loose) for name, exact, loose in cursor.fetchall()}
    described = []
    for column in columns:
        ident = quote_ident(column)
        exact, loose = kinds.get(column, (False, False))
        if loose:
            # The = of a nondeterministic collation takes 'a' and 'A' for the
            # same value and would hide the change; bytes tell them apart.
            same = (f'v_old_row.{ident}::text COLLATE pg_catalog."C" IS NOT DISTINCT FROM '
                    f'v_new_row.{ident}::text COLLATE pg_catalog."C"')
        elif exact:
            same = f"v_old_row.{ident} IS NOT DISTINCT FROM v_new_row.{ident}"
        else:
            same = f"v_old_row.{ident}::text IS NOT DISTINCT FROM v_new_row.{ident}::text"
        described.append({"literal": quote_literal(column), "same": same})
    return described


_COLUMN_TYPES_QUERY = """
SELECT a.attname,
       EXISTS (SELECT FROM pg_catalog.pg_operator AS op
                WHERE op.oprname = '=' AND op.oprleft = a.atttypid AND op.oprright = a.atttypid
                  AND op.oprresult = 'pg_catalog.bool'::pg_catalog.regtype
                  AND op.oprnamespace = 'pg_catalog'::pg_catalog.regnamespace),
       EXISTS (SELECT FROM pg_catalog.pg_collation AS c
                WHERE c.oid = a.attcollation AND NOT c.collisdeterministic)
  FROM pg_catalog.pg_attribute AS a
 WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
"""


def _text_array(values: list[str]) -> str:
    return f"ARRAY[{', '.join(quote_literal(value) for value in values)}]::text[]" if values else "'{}'::text[]"


# Default size above which a text value is stored as its size and SHA-256.
DEFAULT_MAX_VALUE_BYTES = 8192


def load_max_value_bytes(connection: psycopg.Connection, schema: str) -> int:
    """Read the max_value_bytes setting, or the default before it is set."""
    exists = connection.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                                (f"{quote_ident(schema)}.settings",)).fetchone()[0]
    if not exists:
        return DEFAULT_MAX_VALUE_BYTES
    row = connection.execute(
        f"SELECT value FROM {quote_ident(schema)}.settings WHERE name = 'max_value_bytes'").fetchone()
    return int(row[0]) if row else DEFAULT_MAX_VALUE_BYTES


def trigger_comment(trigger: TriggerSql) -> str:
    """Text stored in COMMENT ON TRIGGER so that status can detect drift."""
    return f"auditctl template {trigger.template_version} sha256:{trigger.sql_hash}"


def hash_from_comment(comment: str | None) -> str | None:
    """Read the SQL hash back from a trigger comment; None when absent."""
    if not comment or "sha256:" not in comment:
        return None
    return comment.rsplit("sha256:", 1)[1].strip()
