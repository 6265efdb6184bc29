"""Privacy rules per column: exclude, mask, hash, or keep as is.

Rules given to ``install`` are stored in the audit schema, so a later
install without flags renders the same triggers. Columns whose names look
like passwords, tokens or secrets are masked unless a rule keeps them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

import psycopg

from ..config import located_error
from ..errors import AuditctlError, InvalidArgumentError
from ..i18n import _
from ..sqltext import quote_ident
from .catalog import Table, resolve_table, split_qualified_name


class Rule(StrEnum):
    """Treatment of a column's values in the audit log."""

    EXCLUDE = "exclude"
    MASK = "mask"
    HASH = "hash"
    KEEP = "keep"


# Stored in place of a masked value, so that a change is visible but not the value.
MASK_MARKER = "[masked]"

# Column names that look like secrets; matched against the lower-cased name.
SECRET_NAME = re.compile(r"pass(word|wd)|secret|token|api_?key|private_?key|credential|(^|_)pwd($|_)")


@dataclass(frozen=True)
class ColumnRule:
    """A rule as it applies to one column of one table."""

    table: str
    column: str
    rule: Rule
    by_default: bool
    # The flag or config file that gave the rule in this install; None for a
    # rule stored by an earlier install, or one applied by default.
    origin: str | None = None


class RuleRequest(NamedTuple):
    """A rule as the user gave it, before its table and column are looked up."""

    reference: str
    rule: Rule
    # The flag or config file it came from, for the install report.
    origin: str | None = None
    # The config table that contains it, named with the file in errors.
    config_table: str | None = None


# Rules or their origins, keyed by (schema, table), then column.
RulesByTable = dict[tuple[str, str], dict[str, Rule]]
OriginsByTable = dict[tuple[str, str], dict[str, str]]


def looks_secret(column: str) -> bool:
    """Tell whether a column name looks like that of a password, token or secret."""
    return bool(SECRET_NAME.search(column.lower()))


def parse_column_reference(text: str, tables: list[Table]) -> tuple[Table, str]:
    """Resolve ``TABLE.COLUMN`` or ``SCHEMA.TABLE.COLUMN`` to a table and an existing column."""
    parts = split_qualified_name(text, 3)
    if len(parts) < 2:
        raise InvalidArgumentError(
            _("Invalid column name {name!r}: use TABLE.COLUMN or SCHEMA.TABLE.COLUMN.").format(name=text))
    table_schema = parts[0] if len(parts) == 3 else None
    table = resolve_table(table_schema, parts[-2], ".".join(parts[:-1]), tables)
    column = parts[-1]
    if column not in table.columns:
        raise InvalidArgumentError(
            _("Column {column!r} not found in table {table}.").format(column=column, table=table.entity_type))
    return table, column


def resolve_requests(requests: list[RuleRequest] | list[tuple[str, Rule]],
                     tables: list[Table]) -> tuple[list[tuple[Table, str, Rule]], OriginsByTable]:
    """Look up the table and column of each requested rule, and record where each rule came from.

    An error about a rule from the config file names its table and the file.
    """
    resolved: list[tuple[Table, str, Rule]] = []
    origins: OriginsByTable = {}
    for item in requests:
        request = RuleRequest(*item)
        try:
            table, column = parse_column_reference(request.reference, tables)
        except AuditctlError as exc:
            if request.config_table is None:
                raise
            raise located_error(exc, request.config_table, request.origin) from None
        resolved.append((table, column, request.rule))
        if request.origin is not None:
            origins.setdefault((table.schema, table.name), {})[column] = request.origin
    return resolved, origins


def load_rules(connection: psycopg.Connection, schema: str) -> RulesByTable:
    """Read the stored rules, keyed by (schema, table), then column."""
    exists = connection.execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                                (f"{quote_ident(schema)}.column_rules",)).fetchone()[0]
    if not exists:
        return {}
    rules: RulesByTable = {}
    rows = connection.execute(
        f"SELECT table_schema, table_name, column_name, rule FROM {quote_ident(schema)}.column_rules").fetchall()
    for table_schema, table_name, column_name, rule in rows:
        rules.setdefault((table_schema, table_name), {})[column_name] = Rule(rule)
    return rules


def save_rules(connection: psycopg.Connection, schema: str, rules: list[tuple[Table, str, Rule]]) -> None:
    """Store rules given on the command line; a later rule for the same column replaces an earlier one."""
    for table, column, rule in rules:
        connection.execute(
            f"""INSERT INTO {quote_ident(schema)}.column_rules (table_schema, table_name, column_name, rule)
                VALUES (%s, %s, %s, %s)
                ON CONFLICT (table_schema, table_name, column_name) DO UPDATE SET rule = EXCLUDED.rule""",
            (table.schema, table.name, column, rule.value))


def effective_rules(table: Table, stored: dict[str, Rule],
                    origins: dict[str, str] | None = None) -> list[ColumnRule]:
    """Combine stored rules with default masking of secret-looking columns.

    The result lists every column that is not stored as is, in column order.
    ``origins`` maps the columns whose rules this install gave to where each came from.
    """
    result = []
    for column in table.columns:
        rule = stored.get(column)
        if rule is None and looks_secret(column):
            result.append(ColumnRule(table.entity_type, column, Rule.MASK, by_default=True))
        elif rule is not None and rule is not Rule.KEEP:
            result.append(ColumnRule(table.entity_type, column, rule, by_default=False,
                                     origin=(origins or {}).get(column)))
    return result


def hmac_hex(inner_pad: bytes, outer_pad: bytes, value: str) -> str:
    """Compute the stored form of a hashed value from the padded key, as the triggers do.

    Used by tests and by tools that match a known value against the log.
    """
    inner = hashlib.sha256(inner_pad + value.encode("utf-8")).digest()
    return "hmac-sha256:" + hashlib.sha256(outer_pad + inner).hexdigest()
