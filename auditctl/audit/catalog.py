"""Tables of the target database, as the installer and status see them."""

from __future__ import annotations

import re
from dataclasses import dataclass

import psycopg

from ..errors import AmbiguousTableError, InvalidArgumentError, TableNotFoundError
from ..i18n import _

# System schemas are never audited; pg_toast and pg_temp_N match the prefix.
_TABLES_QUERY = """
SELECT c.oid::bigint AS oid,
       n.nspname AS schema,
       c.relname AS name,
       c.relkind = 'p' AS partitioned,
       COALESCE(ARRAY(
           SELECT a.attname
           FROM pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
           JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
           ORDER BY k.position), '{}') AS key_columns,
       ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns,
       ARRAY(SELECT a.attname FROM pg_catalog.pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               AND pg_catalog.format_type(a.atttypid, NULL) = 'bytea'
             ORDER BY a.attnum) AS bytea_columns,
       c.relkind = 'r' AND EXISTS (SELECT FROM pg_catalog.pg_inherits h
                                   WHERE h.inhrelid = c.oid OR h.inhparent = c.oid) AS inheritance,
       EXISTS (SELECT FROM pg_catalog.pg_depend d
               WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                 AND d.deptype = 'e') AS extension_member
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND n.nspname <> ALL (ARRAY['pg_catalog', 'information_schema', %(audit_schema)s])
  AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
  -- Another auditctl schema (installed with a different --schema) is never audited.
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_class v
                  WHERE v.relnamespace = n.oid AND v.relname = 'schema_version'
                    AND pg_catalog.obj_description(v.oid, 'pg_class') LIKE 'auditctl:%%')
ORDER BY n.nspname, c.relname
"""


@dataclass(frozen=True)
class Table:
    """An ordinary or partitioned table that auditctl can audit."""

    oid: int
    schema: str
    name: str
    partitioned: bool
    key_columns: tuple[str, ...]
    extension_member: bool
    columns: tuple[str, ...] = ()
    bytea_columns: tuple[str, ...] = ()
    inheritance: bool = False

    @property
    def entity_type(self) -> str:
        """The table as it is named in events: ``schema.table``, unquoted."""
        return f"{self.schema}.{self.name}"

    @property
    def has_primary_key(self) -> bool:
        return bool(self.key_columns)


def list_tables(connection: psycopg.Connection, audit_schema: str) -> list[Table]:
    """List the auditable tables: not system tables, not partitions, not the log itself."""
    with connection.cursor() as cursor:
        cursor.execute(_TABLES_QUERY, {"audit_schema": audit_schema})
        return [
            Table(oid=row[0], schema=row[1], name=row[2], partitioned=row[3],
                  key_columns=tuple(row[4]), columns=tuple(row[5]), bytea_columns=tuple(row[6]),
                  inheritance=row[7], extension_member=row[8])
            for row in cursor.fetchall()
        ]


class QuotedName(str):
    """A part of a name that was written in double quotes, which must match exactly, as in SQL."""


def name_matches(actual: str, typed: str) -> bool:
    """Match a name of the database against a typed part: exactly when it was quoted, else ignoring case."""
    if isinstance(typed, QuotedName):
        return actual == typed
    return actual.lower() == typed.lower()


def split_qualified_name(text: str, max_parts: int) -> list[str]:
    """Split a dotted name such as ``schema.table`` into its parts.

    Any part may be double-quoted, to hold dots or quotes; such a part is a
    QuotedName. Unquoted parts are taken as typed, not folded to lower case,
    because most people type ``User`` for Prisma's ``"User"``. Raises
    InvalidArgumentError for an empty part, an unbalanced quote or more than
    ``max_parts`` parts.
    """
    text = text.strip()
    parts: list[str] = []
    position = 0
    while position < len(text):
        if text[position] == '"':
            match = re.match(r'"((?:[^"]|"")*)"', text[position:])
            if not match:
                raise InvalidArgumentError(
                    _("Invalid name {name!r}: unbalanced double quote.").format(name=text))
            parts.append(QuotedName(match.group(1).replace('""', '"')))
            position += match.end()
        else:
            end = text.find(".", position)
            end = len(text) if end == -1 else end
            parts.append(text[position:end])
            position = end
        if position < len(text):
            if text[position] != "." or len(parts) == max_parts:
                raise InvalidArgumentError(_invalid_name_message(text, max_parts))
            position += 1
            if position == len(text):
                parts.append("")
    if not parts or any(part == "" for part in parts):
        raise InvalidArgumentError(_invalid_name_message(text, max_parts))
    return parts


def _invalid_name_message(text: str, max_parts: int) -> str:
    if max_parts == 2:
        return _("Invalid table name {name!r}: use TABLE or SCHEMA.TABLE.").format(name=text)
    return _("Invalid column name {name!r}: use TABLE.COLUMN or SCHEMA.TABLE.COLUMN.").format(name=text)


def parse_table_name(text: str) -> tuple[str | None, str]:
    """Split ``schema.table`` or ``table`` into (schema or None, table)."""
    parts = split_qualified_name(text, 2)
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]


def resolve_tables(names: list[str], tables: list[Table]) -> list[Table]:
    """Find the tables named on the command line, keeping their order.

    An exact (case-sensitive) match wins; otherwise a unique match that
    ignores case is accepted, unless the name was written in double quotes.
    A name that matches tables in several schemas must be qualified.
    """
    resolved: list[Table] = []
    for text in names:
        schema, name = parse_table_name(text)
        table = resolve_table(schema, name, text, tables)
        if table not in resolved:
            resolved.append(table)
    return resolved


def resolve_table(schema: str | None, name: str, text: str, tables: list[Table]) -> Table:
    """Find one table by its parsed name; ``text`` is what the user typed, for messages."""
    candidates = [t for t in tables if schema is None or t.schema == schema]
    matches = [t for t in candidates if t.name == name]
    if not matches:
        matches = [t for t in candidates if name_matches(t.name, name)]
    if not matches and schema is not None:
        matches = [t for t in tables if name_matches(t.schema, schema) and name_matches(t.name, name)]
    if not matches:
        raise TableNotFoundError(
            _("Table {name!r} not found. Run `auditctl status` to list the tables that can be audited.")
            .format(name=text))
    if len(matches) > 1:
        choices = ", ".join(_as_sql(t) for t in matches)
        raise AmbiguousTableError(
            _("Table name {name!r} is ambiguous ({choices}); write the one you mean as listed, in single quotes for "
              "the shell, such as '{example}'.")
            .format(name=text, choices=choices, example=max((_as_sql(t) for t in matches), key=lambda n: '"' in n)))
    return matches[0]


_PLAIN_NAME = re.compile(r"^[a-z_][a-z0-9_$]*$")


def _as_sql(table: Table) -> str:
    """Write schema.table as SQL reads it back, with double quotes only on parts that need them."""
    return ".".join(part if _PLAIN_NAME.match(part) else '"{}"'.format(part.replace('"', '""'))
                    for part in (table.schema, table.name))


# Regular expressions of the LIKE wildcards: % for any text, _ for one character.
_LIKE_WILDCARDS = {"%": ".*", "_": "."}


def like_matches(name: str, pattern: str) -> bool:
    """Match a name against an SQL LIKE pattern, as PostgreSQL does with the default escape ``\\``."""
    parts = []
    position = 0
    while position < len(pattern):
        char = pattern[position]
        if char == "\\" and position + 1 < len(pattern):
            parts.append(re.escape(pattern[position + 1]))
            position += 2
            continue
        parts.append(_LIKE_WILDCARDS.get(char) or re.escape(char))
        position += 1
    return re.fullmatch("".join(parts), name, re.DOTALL) is not None


def tables_in_schemas(tables: list[Table], schemas: tuple[str, ...], exclude: tuple[str, ...]) -> list[Table]:
    """Choose the tables of the given schemas whose names match none of the LIKE patterns in ``exclude``.

    Tables that belong to an extension are left out, as ``--all`` does.
    The auto-audit event trigger applies the same schema and pattern test to new tables.
    """
    return [t for t in tables
            if t.schema in schemas and not t.extension_member
            and not any(like_matches(t.name, pattern) for pattern in exclude)]
