"""UPDATE statements of every size must record the same events.

An UPDATE of one row goes through a query written at generation time for
the table's columns, or, where no DDL capture would replace that trigger
after a column change, through the row-level code. One of a few rows goes
through a cached query that compares columns as JSON. One of
BULK_UPDATE_ROWS rows or more goes through a query the trigger writes at
run time from the table's current columns. Each test runs the same change
on four twin tables (row by row with each one-row path, ten rows at a time,
in one statement) and compares the events.
"""

from __future__ import annotations

import psycopg
import pytest

from auditctl.audit.catalog import list_tables
from auditctl.audit.install import install
from auditctl.audit.rules import MASK_MARKER, Rule
from auditctl.audit.triggers import BULK_UPDATE_ROWS, render_trigger
from helpers import as_app_user, events

ROWS = BULK_UPDATE_ROWS + 20
TABLES = ("small", "batch", "bulk")
# Updated row by row like small, with the trigger rendered as without DDL capture.
JSON_TWIN = "small_json"
BATCH_ROWS = 10

TYPES_SQL = """
CREATE TYPE mood AS ENUM ('calm', 'busy');
CREATE DOMAIN short_code AS text CHECK (length(VALUE) < 20);
"""

TABLE_SQL = """
CREATE TABLE {name} (
    id        integer PRIMARY KEY,
    title     text,
    amount    numeric(10, 2),
    doc       jsonb,
    raw_doc   json,
    tags      text[],
    state     mood,
    code      short_code,
    seen_at   timestamptz,
    blob      bytea,
    secret    text,
    email     text,
    noise     integer
);
INSERT INTO {name}
SELECT i, 'Запись ' || i, i / 4.0, jsonb_build_object('n', i), json_build_object('n', i), ARRAY['a', i::text],
       'calm', 'c' || i, timestamptz '2026-01-01 00:00+00' + i * interval '1 hour', '\\x0102'::bytea,
       's' || i, 'user' || i || '@example.org', i
FROM generate_series(1, {rows}) AS i;
"""


def _changes(connection, table: str) -> list[tuple]:
    return sorted((e["entity_id"], repr(e["old_values"]), repr(e["new_values"]))
                  for e in events(connection, where=f"action = 'UPDATE' AND entity_type = 'public.{table}'"))


def _sides(connection) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The changes of small, batch and bulk, after checking that both one-row paths agree."""
    small, batch, bulk = (_changes(connection, name) for name in TABLES)
    assert _changes(connection, JSON_TWIN) == small
    return small, batch, bulk


def _twins(connection, rules: list[tuple[str, Rule]] | None = None, key: bool = True) -> None:
    connection.execute(TYPES_SQL)
    for name in (*TABLES, JSON_TWIN):
        connection.execute(TABLE_SQL.format(name=name, rows=ROWS))
        if not key:
            connection.execute(f"ALTER TABLE {name} DROP CONSTRAINT {name}_pkey")
    rules = rules or []
    twin_rules = [(f"{name}.{column}", rule) for name in (*TABLES, JSON_TWIN) for column, rule in rules]
    install(connection, "audit", [*TABLES, JSON_TWIN], column_rules=twin_rules)
    [twin] = [table for table in list_tables(connection, "audit") if table.name == JSON_TWIN]
    connection.execute(render_trigger(connection, "audit", twin, ddl_capture=False).sql)
    connection.execute("DELETE FROM audit.events")


def _apply(connection, assignments: str, where: str = "true") -> None:
    """Run the change on small row by row, on batch ten rows at a time and on bulk in one statement."""
    ids = [row[0] for row in connection.execute(f"SELECT id FROM small WHERE {where} ORDER BY id").fetchall()]
    assert len(ids) >= BULK_UPDATE_ROWS
    for row_id in ids:
        connection.execute(f"UPDATE small SET {assignments} WHERE id = {int(row_id)} AND ({where})")
        connection.execute(f"UPDATE {JSON_TWIN} SET {assignments} WHERE id = {int(row_id)} AND ({where})")
    for first in range(0, len(ids), BATCH_ROWS):
        chunk = ", ".join(str(int(row_id)) for row_id in ids[first:first + BATCH_ROWS])
        connection.execute(f"UPDATE batch SET {assignments} WHERE id IN ({chunk}) AND ({where})")
    connection.execute(f"UPDATE bulk SET {assignments} WHERE {where}")


def test_bulk_update_records_the_same_as_single_rows(db):
    with db.connect() as connection:
        _twins(connection)
        _apply(connection, """title = CASE WHEN id % 2 = 0 THEN title || ' (изм.)' ELSE title END,
                              amount = amount + 1, doc = doc || '{"x": [1, null]}', raw_doc = '{"y": 2}',
                              tags = tags || 'b'::text, state = 'busy', code = NULL, seen_at = seen_at + interval '1 day',
                              blob = '\\x0a0b'::bytea""")
        small, batch, bulk = _sides(connection)
    assert len(bulk) == ROWS
    assert small == bulk
    assert batch == bulk
    assert any("'code': None" in new for _, _, new in bulk)


def test_bulk_update_applies_column_rules(db):
    rules = [("secret", Rule.MASK), ("email", Rule.HASH), ("noise", Rule.EXCLUDE), ("title", Rule.KEEP)]
    with db.connect() as connection:
        _twins(connection, rules)
        _apply(connection, "secret = secret || '!', email = upper(email), noise = noise + 1, amount = 0")
        small, batch, bulk = _sides(connection)
        _apply(connection, "noise = noise + 1")
        only_excluded = _changes(connection, "bulk")
    assert small == bulk
    assert batch == bulk
    assert len(bulk) == ROWS
    assert all("noise" not in old and f"'secret': '{MASK_MARKER}'" in old and "hmac-sha256:" in new for _, old, new in bulk)
    assert only_excluded == bulk


def test_bulk_update_summarizes_large_text(db):
    with db.connect() as connection:
        _twins(connection)
        _apply(connection, "title = repeat('я', 5000)")
        small, batch, bulk = _sides(connection)
    assert small == bulk
    assert batch == bulk
    assert all("'sha256':" in new for _, _, new in bulk)


def test_bulk_update_without_key_keeps_whole_old_row(db):
    with db.connect() as connection:
        _twins(connection, key=False)
        _apply(connection, "amount = 0")
        small, batch, bulk = _sides(connection)
    assert small == bulk
    assert batch == bulk
    assert all(entity is None and "'title':" in old and new.startswith("{'amount'") for entity, old, new in bulk)


def test_bulk_update_of_key_column(db):
    with db.connect() as connection:
        _twins(connection)
        connection.execute("UPDATE bulk SET id = id + 100000, title = 'moved'")
        recorded = events(connection, where="action = 'UPDATE'")
    assert len(recorded) == ROWS
    for event in recorded:
        old_id, new_id = event["old_values"]["id"], event["new_values"]["id"]
        assert new_id == old_id + 100000
        assert event["entity_id"] == str(new_id)
        assert event["old_values"]["title"] == f"Запись {old_id}"


def test_bulk_update_after_columns_change(db):
    with db.connect() as connection:
        _twins(connection)
        for name in (*TABLES, JSON_TWIN):
            connection.execute(f"ALTER TABLE {name} DROP COLUMN doc")
            connection.execute(f"ALTER TABLE {name} RENAME COLUMN title TO heading")
            connection.execute(f"ALTER TABLE {name} ADD COLUMN auditctl_position int DEFAULT 0")
        _apply(connection, "heading = 'h', auditctl_position = 1, amount = amount * 2")
        small, batch, bulk = _sides(connection)
    assert small == bulk
    assert batch == bulk
    assert all("'heading': 'h'" in new and "'auditctl_position': 1" in new for _, _, new in bulk)


def test_bulk_update_that_changes_nothing_records_nothing(db):
    with db.connect() as connection:
        _twins(connection)
        connection.execute("UPDATE bulk SET title = title, amount = amount")
        for name in ("small", JSON_TWIN):
            connection.execute(f"UPDATE {name} SET title = title, amount = amount WHERE id = 1")
            connection.execute(f"UPDATE {name} SET title = 'none' WHERE id = -1")
        assert [_changes(connection, name) for name in ("bulk", "small", JSON_TWIN)] == [[], [], []]


def test_bulk_update_carries_the_request_context(db):
    with db.connect() as connection:
        _twins(connection)
        as_app_user(connection, "u-42", "198.51.100.7", "UPDATE bulk SET amount = -1")
        recorded = events(connection, where="action = 'UPDATE'")
    assert len(recorded) == ROWS
    assert {(e["user_id"], str(e["ip_address"])) for e in recorded} == {("u-42", "198.51.100.7")}


def test_rolled_back_bulk_update_leaves_no_event(db):
    with db.connect() as connection:
        _twins(connection)
        with pytest.raises(ZeroDivisionError):
            with connection.transaction():
                connection.execute("UPDATE bulk SET amount = 2")
                raise ZeroDivisionError
        assert _changes(connection, "bulk") == []


def test_case_change_under_nondeterministic_collation(db):
    with db.connect() as connection:
        try:
            connection.execute("CREATE COLLATION ignore_case (provider = icu, locale = 'und-u-ks-level2', "
                               "deterministic = false)")
        except psycopg.errors.FeatureNotSupported:
            pytest.skip("this PostgreSQL build has no ICU collations")
        assert connection.execute("SELECT 'Ёлка' = 'ёЛКА' COLLATE ignore_case").fetchone()[0]
        connection.execute("CREATE DOMAIN loose_code AS text COLLATE ignore_case")
        for name in (*TABLES, JSON_TWIN):
            connection.execute(f"CREATE TABLE {name} (id integer PRIMARY KEY, title text COLLATE ignore_case, "
                               f"code loose_code, other text)")
            connection.execute(f"INSERT INTO {name} SELECT i, 'запись ' || i, 'c' || i, 'x' "
                               f"FROM generate_series(1, {ROWS}) AS i")
        install(connection, "audit", [*TABLES, JSON_TWIN])
        [twin] = [table for table in list_tables(connection, "audit") if table.name == JSON_TWIN]
        connection.execute(render_trigger(connection, "audit", twin, ddl_capture=False).sql)
        connection.execute("DELETE FROM audit.events")
        _apply(connection, "title = upper(title), code = upper(code)")
        small, batch, bulk = _sides(connection)
    assert len(bulk) == ROWS
    assert small == bulk
    assert batch == bulk
    assert all("'title': 'ЗАПИСЬ" in new and "'code': 'C" in new for _, _, new in bulk)
