"""JSON of audited values with numbers kept exact.

PostgreSQL keeps a JSON number as numeric, with every digit and its scale:
12345678901234567890.123456789 or 9.00. Python's json module reads it as a
float, which drops digits and the scale, so two different values could be
shown as one. Connections of auditctl read numbers with a fraction as
Decimal, and this module writes them back as the same digits.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads

# Audited values are jsonb, which rejects the \u0000 escape, so no text
# read from the log contains this marker of a number.
_MARKER = re.compile(r'"\\u0000(\d+)\\u0000"')


def loads(text: str | bytes) -> Any:
    """Read JSON with numbers that have a fraction or an exponent as Decimal."""
    return json.loads(text, parse_float=Decimal)


def dumps(value: Any, **options: Any) -> str:
    """Write JSON like json.dumps, with each Decimal written as its own digits."""
    numbers: list[Decimal] = []

    def mark(item: Any) -> Any:
        if isinstance(item, Decimal):
            numbers.append(item)
            return f"\0{len(numbers) - 1}\0"
        if isinstance(item, dict):
            return {key: mark(member) for key, member in item.items()}
        if isinstance(item, list | tuple):
            return [mark(member) for member in item]
        return item

    text = json.dumps(mark(value), **options)
    if not numbers:
        return text
    return _MARKER.sub(lambda match: _number_text(numbers[int(match.group(1))]), text)


def _number_text(number: Decimal) -> str:
    if not number.is_finite():
        raise ValueError(f"{number} has no JSON form")
    return str(number)


def keep_numbers_exact(connection: psycopg.Connection) -> None:
    """Make the connection read and write json and jsonb with exact numbers."""
    set_json_loads(loads, connection)
    set_json_dumps(dumps, connection)
