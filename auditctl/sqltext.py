"""SQL files of the ``sql/`` folder and the helpers that render them.

Every identifier that reaches a template is quoted with
``psycopg.sql.Identifier`` and every value with ``psycopg.sql.Literal``
before rendering, so templates never paste raw names.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import jinja2
from psycopg import sql

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def sql_dir() -> Path:
    """Locate the SQL files: inside the wheel, or at the top of a source checkout."""
    packaged = _PACKAGE_DIR / "sql"
    if packaged.is_dir():
        return packaged
    return _PACKAGE_DIR.parent / "sql"


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(sql_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.globals["lit"] = quote_literal
    return environment


def render(template_name: str, **context: object) -> str:
    """Render one template of ``sql/`` with already-quoted context values."""
    return _environment().get_template(template_name).render(**context)


def quote_ident(*parts: str) -> str:
    """Quote a (possibly schema-qualified) name as PostgreSQL does for "X"."""
    return sql.Identifier(*parts).as_string(None)


def quote_literal(value: object) -> str:
    """Quote a value as an SQL literal."""
    return sql.Literal(value).as_string(None).strip()


def dollar_quote_tag(body_hint: str, base: str = "auditctl") -> str:
    """Return a dollar-quote tag such as ``$auditctl$`` that does not occur in ``body_hint``."""
    tag = f"${base}$"
    counter = 0
    while tag in body_hint:
        counter += 1
        tag = f"${base}{counter}$"
    return tag


def sha256_hex(text: str) -> str:
    """Hex SHA-256 of a text, as stored to detect drift of generated SQL."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut a text to at most ``max_bytes`` UTF-8 bytes without splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def schema_files() -> list[tuple[int, str]]:
    """List the versioned schema files as (version, template name), oldest first."""
    files = []
    for path in sorted((sql_dir() / "schema").glob("[0-9][0-9][0-9][0-9]_*.sql.j2")):
        files.append((int(path.name[:4]), f"schema/{path.name}"))
    return files
