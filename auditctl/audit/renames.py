"""Stored rules that follow renamed columns and tables, and rules that name no column.

Rules are keyed by table and column names. The layout that install stores
for each table maps the attnum of every column with a rule or a
secret-looking name to its name then, and a rename keeps the attnum. The
SQL function follow_renames() compares the two: the DDL event trigger runs
it right after an ALTER, and install and status run it through this module,
so all three move rules alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from ..sqltext import quote_ident
from .catalog import Table
from .rules import Rule, looks_secret


@dataclass(frozen=True)
class FollowedRules:
    """A table's rules before and after following the renames since its layout was stored."""

    # Old name to new name of the renamed columns that had a rule or a secret-looking name.
    renamed: dict[str, str] = field(default_factory=dict)
    # Columns with a rule or a secret-looking name that were dropped.
    dropped: list[str] = field(default_factory=list)
    # The rules by column name as stored before, under the table's name in the layout.
    previous: dict[str, Rule] = field(default_factory=dict)
    # The rules by column name once they follow the renames.
    rules: dict[str, Rule] = field(default_factory=dict)
    # Columns with a rule or a secret-looking name when the layout was stored.
    layout_columns: frozenset[str] = frozenset()

    def moved(self) -> list[tuple[str, str]]:
        """List (old name, new name) of the renamed columns whose rule moved or that got a mask rule."""
        return [(old, new) for old, new in self.renamed.items() if new in self.rules]

    def exposed(self, table: Table) -> list[str]:
        """List the columns that a rule or a secret-looking name protects but the installed trigger does not.

        The installed trigger was generated for the rules in ``previous``
        and protects only columns that had their current name then.
        """
        return [column for column in table.columns
                if _protects(self.rules.get(column), column)
                and not (column in self.layout_columns and _protects(self.previous.get(column), column))]


def unused_rules(table: Table, rules: dict[str, Rule]) -> list[tuple[str, Rule]]:
    """List the rules of a table that name a column it does not have, as (column, rule)."""
    return [(column, rule) for column, rule in rules.items() if column not in table.columns]


def _protects(rule: Rule | None, column: str) -> bool:
    """Tell whether a column's values are kept out of the log, in full or in part."""
    if rule is None:
        return looks_secret(column)
    return rule is not Rule.KEEP


_FOLLOW_QUERY = """
SELECT r.table_id::oid::bigint, f.renamed, f.dropped, f.previous_rules, f.rules, r.layout -> 'rule_columns'
  FROM {audit}.audited_tables AS r
 CROSS JOIN LATERAL {audit}.follow_renames(r.table_id, r.layout, %s) AS f
 WHERE r.layout IS NOT NULL AND r.table_id::oid = ANY (%s)
 ORDER BY r.table_id::oid
"""


def follow_renames(connection: psycopg.Connection, schema: str, tables: list[Table],
                   apply: bool) -> dict[int, FollowedRules]:
    """Follow the renames of the given registered tables, by table OID.

    With ``apply`` the moved rules are stored; without it nothing changes.
    Tables without a stored layout are left out, and so is everything where
    the audit schema predates follow_renames(), until install upgrades it.
    """
    audit = quote_ident(schema)
    present = connection.execute("SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL",
                                 (f"{audit}.follow_renames(regclass, jsonb, boolean)",)).fetchone()[0]
    if not present or not tables:
        return {}
    rows = connection.execute(_FOLLOW_QUERY.format(audit=audit), (apply, [t.oid for t in tables])).fetchall()
    return {oid: FollowedRules(renamed=renamed or {}, dropped=dropped or [],
                               previous=_as_rules(previous), rules=_as_rules(rules),
                               layout_columns=frozenset((layout_columns or {}).values()))
            for oid, renamed, dropped, previous, rules, layout_columns in rows}


def _as_rules(value: dict[str, str] | None) -> dict[str, Rule]:
    return {column: Rule(rule) for column, rule in (value or {}).items()}


def remove_rules(connection: psycopg.Connection, schema: str, table: Table, columns: list[str]) -> None:
    """Delete the stored rules of the named columns of a table."""
    connection.execute(
        f"""DELETE FROM {quote_ident(schema)}.column_rules
            WHERE table_schema = %s AND table_name = %s AND column_name = ANY (%s)""",
        (table.schema, table.name, columns))
