"""auditctl history: the life of one record, found by table and key values."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from auditctl.audit.history import record_history
from auditctl.audit.install import install
from auditctl.audit.query import EventFilter, query_events
from auditctl.errors import InvalidArgumentError
from conftest import run_cli, run_cli_in_terminal
from helpers import as_app_user, write_reading_in_two_zones


@pytest.fixture
def shop(db):
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE customer (id integer PRIMARY KEY, name text NOT NULL, balance numeric);
            CREATE TABLE "Work Stage" ("productId" text, "stageNo" integer, title text,
                                       PRIMARY KEY ("productId", "stageNo"));
            CREATE TABLE link (a integer NOT NULL);
        """)
        install(connection, "audit", [], use_all=True)
        as_app_user(connection, "u-1", None, "INSERT INTO customer VALUES (1, 'Анна', 10)")
        as_app_user(connection, "u-2", None, "UPDATE customer SET name = 'Анна К.', balance = 12 WHERE id = 1")
        as_app_user(connection, "u-3", None, "DELETE FROM customer WHERE id = 1")
        connection.execute("INSERT INTO customer VALUES (2, 'other', NULL)")
        connection.execute("""INSERT INTO "Work Stage" VALUES ('pr00000010', 5, 'Сварка'), ('pr00000010', 6, 'x')""")
        connection.execute("""UPDATE "Work Stage" SET title = 'Покраска' WHERE "stageNo" = 5""")
    return db


def test_history_fields_in_table_order(shop):
    with shop.connect() as connection:
        history = record_history(connection, "audit", "customer", ["1"])
        stages = record_history(connection, "audit", "Work Stage", ["pr00000010", "5"])
    assert [change.column for change in history.entries[0].changes] == ["id", "name", "balance"]
    assert [change.column for change in history.entries[1].changes] == ["name", "balance"]
    assert [change.column for change in stages.entries[0].changes] == ["productId", "stageNo", "title"]


def test_query_values_in_table_order(shop):
    with shop.connect() as connection:
        recorded = query_events(connection, "audit", EventFilter(), limit=None)
        connection.execute('DROP TABLE "Work Stage"')
        after_drop = query_events(connection, "audit", EventFilter(), limit=None)
    inserts = [event for event in recorded if event.entity_type == "public.Work Stage" and event.action == "INSERT"]
    dropped = [event for event in after_drop if event.entity_type == "public.Work Stage" and event.action == "INSERT"]
    assert list(inserts[0].new) == ["productId", "stageNo", "title"]
    assert list(dropped[0].new) == ["productId", "stageNo", "title"]


def test_history_follows_insert_update_delete(shop):
    with shop.connect() as connection:
        history = record_history(connection, "audit", "customer", ["1"])
    assert [entry.event.action for entry in history.entries] == ["INSERT", "UPDATE", "DELETE"]
    assert [entry.event.user_id for entry in history.entries] == ["u-1", "u-2", "u-3"]
    update = history.entries[1]
    assert {(c.column, c.old, c.new) for c in update.changes} == {("name", "Анна", "Анна К."), ("balance", 10, 12)}
    assert {(c.column, c.old, c.new) for c in history.entries[2].changes} == {
        ("id", 1, None), ("name", "Анна К.", None), ("balance", 12, None)}
    assert history.exists_now is False


@pytest.mark.parametrize("key", [['["pr00000010", 5]'], ["pr00000010", "5"]], ids=["json-array", "values"])
def test_history_composite_key(shop, key):
    with shop.connect() as connection:
        history = record_history(connection, "audit", '"Work Stage"', key)
    assert history.record.entity_id == '["pr00000010", 5]'
    assert [entry.event.action for entry in history.entries] == ["INSERT", "UPDATE"]


def test_numbers_shown_with_every_digit(shop, cli):
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer VALUES (3, 'big', 12345678901234567890.123456789)")
        connection.execute("UPDATE customer SET balance = 12345678901234567891.123456789 WHERE id = 3")
        connection.execute("UPDATE customer SET balance = 9.00 WHERE id = 3")
    history = cli("history", "customer", "3", "--format", "json", dsn=shop.dsn)
    query = cli("query", "--table", "customer", "--action", "UPDATE", "--format", "json", dsn=shop.dsn)
    table = cli("history", "customer", "3", dsn=shop.dsn, env={"COLUMNS": "200"})
    assert history.exit_code == 0, history.stderr
    assert query.exit_code == 0, query.stderr
    changes = [change for event in json.loads(history.stdout, parse_float=str)["events"] for change in event["changes"]]
    assert {"column": "balance", "old": "12345678901234567890.123456789",
            "new": "12345678901234567891.123456789"} in changes
    assert {"column": "balance", "old": "12345678901234567891.123456789", "new": "9.00"} in changes
    assert '"balance": 9.00' in query.stdout
    assert table.exit_code == 0, table.stderr
    assert "9.00" in table.stdout
    assert "e+19" not in table.stdout


def test_history_cli_json(shop, cli):
    result = cli("history", "customer", "1", "--format", "json", dsn=shop.dsn)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["entity_type"] == "public.customer"
    assert [event["action"] for event in data["events"]] == ["INSERT", "UPDATE", "DELETE"]
    assert {"column": "name", "old": "Анна", "new": "Анна К."} in data["events"][1]["changes"]


def test_history_cli_table(shop, cli):
    result = cli("history", "Work Stage", '["pr00000010", 5]', dsn=shop.dsn)
    assert result.exit_code == 0, result.stderr
    assert "Сварка" in result.stdout
    assert "Покраска" in result.stdout
    assert "UPDATE" in result.stdout


def table_cells(output: str, heading: str) -> dict[str, str]:
    """Map the ID of each row of a table that the CLI printed to its cell under ``heading``."""
    lines = output.splitlines()
    headings = [cell.strip() for cell in next(line for line in lines if "┃" in line).split("┃")]
    column = headings.index(heading)
    cells = {}
    for line in lines:
        if not line.startswith("│"):
            continue
        row = [cell.strip() for cell in line.split("│")]
        # A row's later lines, which continue multi-line cells, have an empty ID cell.
        if row[1]:
            cells[row[1]] = row[column]
    return cells


def test_history_user_column_matches_query(shop, cli):
    with shop.connect() as connection:
        as_app_user(connection, "u-4", None, "UPDATE customer SET balance = 5 WHERE id = 2")
        role = connection.execute("SELECT session_user").fetchone()[0]
    wide = {"COLUMNS": "200"}
    history = cli("history", "customer", "2", dsn=shop.dsn, env=wide)
    query = cli("query", "--table", "customer", dsn=shop.dsn, env=wide)
    assert history.exit_code == 0, history.stderr
    assert query.exit_code == 0, query.stderr

    history_users = table_cells(history.stdout, "User and IP address")
    query_users = table_cells(query.stdout, "User")
    assert list(history_users.values()) == ["—", "u-4"]
    assert history_users == {event_id: query_users[event_id] for event_id in history_users}
    assert list(table_cells(history.stdout, "DB role").values()) == [role, role]


def test_history_shows_address_under_user(shop, cli):
    """The address, or the text that was no address, is under the user in history and in query's IP column."""
    with shop.connect() as connection:
        as_app_user(connection, "u-5", "203.0.113.9", "UPDATE customer SET balance = 6 WHERE id = 2")
        as_app_user(connection, "u-6", "nope", "UPDATE customer SET balance = 7 WHERE id = 2")
        as_app_user(connection, "u-7", "10.0.0.1\n10.0.0.2", "UPDATE customer SET balance = 8 WHERE id = 2")
    wide = {"COLUMNS": "200"}
    history = cli("history", "customer", "2", dsn=shop.dsn, env=wide)
    query = cli("query", "--table", "customer", dsn=shop.dsn, env=wide)
    assert history.exit_code == 0, history.stderr
    assert query.exit_code == 0, query.stderr

    addresses = list(table_cells(query.stdout, "IP address").values())
    # A line break in the text stays on the line, as \x0a, instead of looking like a second address.
    assert addresses[:3] == ["10.0.0.1\\x0a10.0.0.2 (not an IP address)", "nope (not an IP address)", "203.0.113.9"]
    lines = [line.split("│")[3].strip() for line in history.stdout.splitlines() if line.startswith("│")]
    assert ["u-5", "203.0.113.9"] == lines[lines.index("u-5"):lines.index("u-5") + 2]
    assert ["u-6", "nope (not an IP address)"] == lines[lines.index("u-6"):lines.index("u-6") + 2]


def field_rows(output: str) -> list[tuple[str, str, str]]:
    """Read the (field, old value, new value) rows of the table that `history` printed, by column position.

    A row starts at a line whose Field cell is not empty, so field names must
    fit on one line. The lines of a wrapped value are joined without spaces.
    """
    rows: list[list[str]] = []
    for line in output.splitlines():
        cells = line.split("│")
        if len(cells) != 10:
            continue
        field, old, new = (cell.strip() for cell in cells[6:9])
        if field:
            rows.append([field, "", ""])
        rows[-1][1] += "".join(old.split())
        rows[-1][2] += "".join(new.split())
    return [(field, old, new) for field, old, new in rows]


def shown_value(value) -> str:
    """Return a value as the history table shows it, without spaces: cut to 40 characters, or a dash for NULL."""
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = text if len(text) <= 40 else text[:39] + "…"
    return "".join(text.split())


@pytest.mark.parametrize("columns", ["80", "200"], ids=["narrow", "wide"])
def test_history_wrapped_values_keep_rows(db, columns):
    with db.connect() as connection:
        connection.execute("CREATE TABLE film (id integer PRIMARY KEY, note text, at date, tag text)")
        install(connection, "audit", ["film"])
        connection.execute("INSERT INTO film VALUES (2, 'A Astounding Epistle of a Database Administrator And a "
                           "Explorer who must Find a Car in Ancient China', '2022-02-15', 'drama')")
        connection.execute("UPDATE film SET note = 'Short', at = '2022-05-26', tag = 'comedy' WHERE id = 2")
    data = json.loads(run_cli("history", "film", "2", "--format", "json", dsn=db.dsn).stdout)
    expected = [(change["column"], shown_value(change["old"]), shown_value(change["new"]))
                for event in data["events"] for change in event["changes"]]
    for language in ("C.UTF-8", "ru_RU.UTF-8"):
        result = run_cli_in_terminal("history", "film", "2", dsn=db.dsn, env={"COLUMNS": columns, "LANG": language})
        assert result.exit_code == 0, result.stdout
        assert field_rows(result.stdout) == expected, result.stdout


# Russian headings are longer, and rich narrows the columns that may wrap evenly, so the value and field
# columns keep fewer characters in Russian.
@pytest.mark.parametrize(("language", "value_width", "whole_names"), [("C.UTF-8", 10, True), ("ru_RU.UTF-8", 8, False)],
                         ids=["en", "ru"])
def test_history_narrow_values_stay_readable(db, language, value_width, whole_names):
    with db.connect() as connection:
        connection.execute("CREATE TABLE client (id integer PRIMARY KEY, first_name text, email text, address text, "
                           "city text, phone text)")
        install(connection, "audit", ["client"])
        connection.execute("INSERT INTO client VALUES (1, 'Anna', 'anna@example.com', '1 Long Street', 'Springfield', "
                           "'+1-555-0001')")
        connection.execute("UPDATE client SET first_name = 'Anna-Maria', email = 'anna.maria@example.org', "
                           "address = '22 Another Road', city = 'Shelbyville', phone = '+44-20-7946-0001'")
    data = json.loads(run_cli("history", "client", "1", "--format", "json", dsn=db.dsn).stdout)
    expected = [(change["column"], shown_value(change["old"]), shown_value(change["new"]))
                for event in data["events"] for change in event["changes"]]

    result = run_cli("history", "client", "1", dsn=db.dsn, env={"COLUMNS": "80", "LANG": language})
    assert result.exit_code == 0, result.stderr
    table_lines = result.stdout.splitlines()[1:]
    # No line is cut at the terminal's edge, which would drop the right border.
    assert {len(line) for line in table_lines} == {80}, result.stdout
    assert {line[-1] for line in table_lines} <= set("┓┃┩│┤┘"), result.stdout
    rule = next(line for line in table_lines if "╇" in line)
    old_width, new_width = (len(part) for part in rule[1:-1].split("╇")[-2:])
    # The rule spans a value's characters and the space before the next border.
    assert old_width >= value_width + 1, result.stdout
    assert new_width >= value_width + 1, result.stdout
    # The date and the time each stay on one line.
    assert len(re.findall(r"│\d{4}-\d{2}-\d{2} *│", result.stdout)) == 2, result.stdout
    assert len(re.findall(r"│\d{2}:\d{2}:\d{2} *│", result.stdout)) == 2, result.stdout
    if whole_names:
        assert field_rows(result.stdout) == expected, result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["customer", "1", "2"], "one-column primary key"),
    (["customer", "abc"], "Invalid key value"),
    (["Work Stage", "[1,"], "Invalid record id"),
    (["nosuch", "1"], "not found"),
    (["link", "1"], "no primary key"),
], ids=["too-many-values", "wrong-type", "bad-json", "unknown-table", "no-key"])
def test_history_bad_input_one_line(shop, cli, args, message):
    result = cli("history", *args, dsn=shop.dsn)
    assert result.exit_code != 0
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("language", "table", "key", "expected"), [
    ("en", "customer", ["1", "2"], "Table public.customer has a one-column primary key (id); give one value."),
    ("ru", "customer", ["1", "2"],
     "Первичный ключ таблицы public.customer состоит из одного столбца (id); укажите одно значение."),
    ("en", '"Work Stage"', ["pr00000010", "x"],
     "Invalid key value 'x' for column stageNo (integer) of public.Work Stage: invalid input syntax"),
    ("ru", '"Work Stage"', ["pr00000010", "x"],
     "Неверное значение ключа «x» для столбца stageNo (integer) таблицы public.Work Stage: invalid input syntax"),
], ids=["one-column-count-en", "one-column-count-ru", "bad-value-en", "bad-value-ru"])
def test_history_key_error_wording(shop, language, table, key, expected):
    from auditctl.i18n import use_language
    with shop.connect() as connection, use_language(language), pytest.raises(InvalidArgumentError) as caught:
        record_history(connection, "audit", table, key)
    assert str(caught.value).startswith(expected)


def test_history_after_drop_and_recreate(shop):
    with shop.connect() as connection:
        connection.execute('DROP TABLE "Work Stage"')
        dropped = record_history(connection, "audit", '"Work Stage"', ["pr00000010", "5"])
        assert dropped.record.table is None
        assert [entry.event.action for entry in dropped.entries] == ["INSERT", "UPDATE"]
        connection.execute("""CREATE TABLE "Work Stage" ("productId" text, "stageNo" integer, title text,
                                                         PRIMARY KEY ("productId", "stageNo"))""")
        install(connection, "audit", ['"Work Stage"'])
        connection.execute("""INSERT INTO "Work Stage" VALUES ('pr00000010', 5, 'again')""")
        history = record_history(connection, "audit", '"Work Stage"', ['["pr00000010", 5]'])
    assert [entry.event.action for entry in history.entries] == ["INSERT", "UPDATE", "INSERT"]


def test_history_survives_dump_and_restore(shop, pg):
    if pg.bindir is None:
        pytest.skip("pg_dump and pg_restore of the server are needed")
    restored = pg.create_database()
    try:
        dump = subprocess.run([str(pg.bindir / "pg_dump"), "-Fc", "-d", shop.dsn], capture_output=True, check=True)
        subprocess.run([str(pg.bindir / "pg_restore"), "--exit-on-error", "-d", pg.dsn_for(restored)],
                       input=dump.stdout, capture_output=True, check=True)
        import psycopg
        with psycopg.connect(pg.dsn_for(restored), autocommit=True) as connection:
            history = record_history(connection, "audit", "customer", ["1"])
            assert [entry.event.action for entry in history.entries] == ["INSERT", "UPDATE", "DELETE"]
            # The restored triggers keep recording under the same record key.
            connection.execute("UPDATE customer SET name = 'after restore' WHERE id = 2")
            later = record_history(connection, "audit", "customer", ["2"])
        assert [entry.event.action for entry in later.entries] == ["INSERT", "UPDATE"]
    finally:
        pg.drop_database(restored)


def test_history_rejects_record_without_events(shop):
    with shop.connect() as connection:
        history = record_history(connection, "audit", "customer", ["999"])
    assert history.entries == []
    with pytest.raises(InvalidArgumentError):
        with shop.connect() as connection:
            record_history(connection, "audit", "customer", [])


def test_history_timestamp_key_across_time_zones(db):
    with db.connect() as connection:
        write_reading_in_two_zones(connection, "2026-03-01 12:00+00", 7)
        history = record_history(connection, "audit", "reading", ["2026-03-01 12:00:00+00", "7"])
    assert [entry.event.action for entry in history.entries] == ["INSERT", "UPDATE"]
    assert len(history.record.entity_ids) == 2
