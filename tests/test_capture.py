"""What the generated triggers record for each kind of change."""

from __future__ import annotations

import psycopg.errors
import pytest

from auditctl.audit.install import install
from helpers import as_app_user, events


@pytest.fixture
def shop(db):
    """A database with a few tables covering key shapes, all audited."""
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE customer (id integer PRIMARY KEY, name text NOT NULL, tags text[], balance numeric);
            CREATE TABLE stage (product text, stage_no integer, title text, PRIMARY KEY (product, stage_no));
            CREATE TABLE link (a integer NOT NULL, b text NOT NULL);
        """)
        install(connection, "audit", [], use_all=True)
    return db


def test_insert_records_new_row(shop):
    with shop.connect() as connection:
        as_app_user(connection, "u-1", "203.0.113.5",
                    "INSERT INTO customer VALUES (1, 'Анна', ARRAY['vip'], 10.50)")
        [event] = events(connection)
    assert event["action"] == "INSERT"
    assert event["entity_type"] == "public.customer"
    assert event["entity_id"] == "1"
    assert event["old_values"] is None
    assert event["new_values"] == {"id": 1, "name": "Анна", "tags": ["vip"], "balance": 10.50}
    assert event["user_id"] == "u-1"
    assert str(event["ip_address"]) == "203.0.113.5"
    assert event["db_user"] == "postgres"


def test_update_records_changed_columns_only(shop):
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer VALUES (1, 'Анна', ARRAY['vip'], 10)")
        as_app_user(connection, "u-2", None, "UPDATE customer SET name = 'Анна К.', tags = ARRAY['vip', 'new'] WHERE id = 1")
        event = events(connection)[-1]
    assert event["action"] == "UPDATE"
    assert event["old_values"] == {"name": "Анна", "tags": ["vip"]}
    assert event["new_values"] == {"name": "Анна К.", "tags": ["vip", "new"]}


def test_noop_update_records_nothing(shop):
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer VALUES (1, 'x', NULL, NULL)")
        connection.execute("UPDATE customer SET name = name")
        assert [e["action"] for e in events(connection)] == ["INSERT"]


def test_delete_records_old_row(shop):
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer VALUES (7, 'x', NULL, NULL)")
        connection.execute("DELETE FROM customer WHERE id = 7")
        event = events(connection)[-1]
    assert event["action"] == "DELETE"
    assert event["entity_id"] == "7"
    assert event["old_values"] == {"id": 7, "name": "x", "tags": None, "balance": None}
    assert event["new_values"] is None


def test_truncate_records_one_event(shop):
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer SELECT i, 'n' FROM generate_series(1, 5) i")
        connection.execute("TRUNCATE customer")
        truncates = events(connection, where="action = 'TRUNCATE'")
    assert len(truncates) == 1
    assert truncates[0]["entity_type"] == "public.customer"
    assert truncates[0]["entity_id"] is None


def test_composite_key_is_json_array(shop):
    with shop.connect() as connection:
        connection.execute("INSERT INTO stage VALUES ('pr-1', 5, 'Сварка')")
        [event] = events(connection)
    assert event["entity_id"] == '["pr-1", 5]'


def test_table_without_key_records_whole_row(shop):
    with shop.connect() as connection:
        connection.execute("INSERT INTO link VALUES (1, 'x')")
        connection.execute("UPDATE link SET b = 'y'")
        insert, update = events(connection)
    assert insert["entity_id"] is None
    assert update["entity_id"] is None
    assert update["old_values"] == {"a": 1, "b": "x"}
    assert update["new_values"] == {"b": "y"}


def test_rolled_back_change_leaves_no_event(shop):
    with shop.connect() as connection:
        with pytest.raises(psycopg.errors.DivisionByZero):
            with connection.transaction():
                connection.execute("INSERT INTO customer VALUES (1, 'x', NULL, NULL)")
                connection.execute("SELECT 1 / 0")
        assert events(connection) == []


@pytest.mark.parametrize("raw", ["abc", "300.1.1.1", "10.0.0.1/40", "' OR 1=1 --"],
                         ids=["word", "octet-range", "prefix-range", "quote"])
def test_malformed_ip_is_null_with_raw_text(shop, raw):
    with shop.connect() as connection:
        as_app_user(connection, "u-1", raw, "INSERT INTO customer VALUES (1, 'x', NULL, NULL)")
        [event] = events(connection)
    assert event["ip_address"] is None
    assert event["details"] == {"ip_address_raw": raw}


@pytest.mark.parametrize("statement", [
    "INSERT INTO customer VALUES (9, 'z', NULL, NULL)",
    "UPDATE customer SET name = 'b' WHERE id = 1",
    "UPDATE customer SET name = name || '!'",
    "DELETE FROM customer WHERE id = 2",
    "TRUNCATE customer",
], ids=["insert", "update-one", "update-many", "delete", "truncate"])
def test_context_recorded_for_each_action(shop, statement):
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer VALUES (1, 'a', NULL, NULL), (2, 'b', NULL, NULL)")
        after = connection.execute("SELECT max(id) FROM audit.events").fetchone()[0]
        as_app_user(connection, "u-7", "bad-ip", statement)
        recorded = events(connection, where=f"id > {int(after)}")
    assert recorded
    assert {event["user_id"] for event in recorded} == {"u-7"}
    assert {event["ip_address"] for event in recorded} == {None}
    assert all(event["details"]["ip_address_raw"] == "bad-ip" for event in recorded)


def test_unset_context_falls_back_to_client_address(shop):
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer VALUES (1, 'x', NULL, NULL)")
        [event] = events(connection)
    assert event["user_id"] is None
    # The test cluster is reached over TCP on 127.0.0.1.
    assert str(event["ip_address"]) == "127.0.0.1"
    assert event["details"] is None


def test_empty_context_is_null(shop):
    with shop.connect() as connection:
        as_app_user(connection, "", "", "INSERT INTO customer VALUES (1, 'x', NULL, NULL)")
        [event] = events(connection)
    assert event["user_id"] is None
    assert str(event["ip_address"]) == "127.0.0.1"


def test_context_is_per_transaction(shop):
    with shop.connect() as connection:
        as_app_user(connection, "u-1", "192.0.2.1", "INSERT INTO customer VALUES (1, 'x', NULL, NULL)")
        connection.execute("INSERT INTO customer VALUES (2, 'y', NULL, NULL)")
        first, second = events(connection)
    assert first["user_id"] == "u-1"
    assert second["user_id"] is None


def test_transaction_and_application_recorded(shop):
    with shop.connect(application_name="billing-worker") as connection:
        with connection.transaction():
            connection.execute("INSERT INTO customer VALUES (1, 'x', NULL, NULL)")
            connection.execute("INSERT INTO customer VALUES (2, 'y', NULL, NULL)")
            txid = connection.execute("SELECT txid_current()").fetchone()[0]
        first, second = events(connection)
    assert first["transaction_id"] == second["transaction_id"] == txid
    assert first["application_name"] == "billing-worker"


def test_columns_added_and_dropped_after_install(shop):
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer VALUES (1, 'x', NULL, NULL)")
        connection.execute("ALTER TABLE customer ADD COLUMN priority integer NOT NULL DEFAULT 0")
        connection.execute("ALTER TABLE customer DROP COLUMN tags")
        connection.execute("UPDATE customer SET priority = 2 WHERE id = 1")
        connection.execute("INSERT INTO customer VALUES (2, 'y', 3.5, 1)")
        update, insert = events(connection)[1:]
    assert update["old_values"] == {"priority": 0}
    assert update["new_values"] == {"priority": 2}
    assert insert["new_values"] == {"id": 2, "name": "y", "balance": 3.5, "priority": 1}


def test_bulk_update_records_each_row(shop):
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer SELECT i, 'n' || i FROM generate_series(1, 50) i")
        connection.execute("UPDATE customer SET balance = 1 WHERE id <= 40")
        updates = events(connection, where="action = 'UPDATE'")
    assert len(updates) == 40
    assert sorted(int(e["entity_id"]) for e in updates) == list(range(1, 41))


def test_multi_row_insert_and_delete_one_event_each(shop):
    with shop.connect() as connection:
        as_app_user(connection, "u-5", "192.0.2.9",
                    "INSERT INTO stage SELECT 'p' || i, i, 'step' FROM generate_series(1, 25) i",
                    "DELETE FROM stage WHERE stage_no > 20")
        recorded = events(connection)
    inserts = [e for e in recorded if e["action"] == "INSERT"]
    deletes = [e for e in recorded if e["action"] == "DELETE"]
    assert len(inserts) == 25
    assert len(deletes) == 5
    assert {e["entity_id"] for e in deletes} == {f'["p{i}", {i}]' for i in range(21, 26)}
    assert all(e["user_id"] == "u-5" and str(e["ip_address"]) == "192.0.2.9" for e in recorded)
    assert deletes[0]["old_values"]["title"] == "step"


def test_copy_is_captured(shop):
    with shop.connect() as connection:
        with connection.cursor().copy("COPY customer (id, name) FROM STDIN") as copy:
            copy.write_row((1, "Ольга"))
            copy.write_row((2, "Пётр"))
        recorded = events(connection)
    assert [(e["action"], e["entity_id"]) for e in recorded] == [("INSERT", "1"), ("INSERT", "2")]


def test_upsert_records_insert_and_update(shop):
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer VALUES (1, 'a', NULL, NULL)")
        connection.execute("""INSERT INTO customer VALUES (1, 'b', NULL, NULL), (2, 'c', NULL, NULL)
                              ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name""")
        recorded = [(e["action"], e["entity_id"], e["new_values"]) for e in events(connection)]
    assert recorded[0] == ("INSERT", "1", {"id": 1, "name": "a", "tags": None, "balance": None})
    assert ("UPDATE", "1", {"name": "b"}) in recorded
    assert ("INSERT", "2", {"id": 2, "name": "c", "tags": None, "balance": None}) in recorded
    assert len(recorded) == 3


def test_merge_is_captured(shop, pg):
    if pg.version < 150000:
        pytest.skip("MERGE needs PostgreSQL 15")
    with shop.connect() as connection:
        connection.execute("INSERT INTO customer VALUES (1, 'a', NULL, NULL), (2, 'b', NULL, NULL)")
        connection.execute("""
            MERGE INTO customer c
            USING (VALUES (1, 'A'), (2, NULL), (3, 'C')) AS s(id, name) ON c.id = s.id
            WHEN MATCHED AND s.name IS NULL THEN DELETE
            WHEN MATCHED THEN UPDATE SET name = s.name
            WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, s.name)""")
        recorded = sorted((e["action"], e["entity_id"]) for e in events(connection)[2:])
    assert recorded == [("DELETE", "2"), ("INSERT", "3"), ("UPDATE", "1")]


def test_inheritance_tables_use_row_triggers(db):
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE animal (id int PRIMARY KEY, name text);
            CREATE TABLE dog (good boolean) INHERITS (animal);
        """)
        install(connection, "audit", ["animal", "dog"])
        connection.execute("INSERT INTO animal VALUES (1, 'cat')")
        connection.execute("INSERT INTO dog VALUES (2, 'rex', true)")
        connection.execute("DELETE FROM animal")
        recorded = [(e["action"], e["entity_type"], e["entity_id"]) for e in events(connection)]
    assert recorded == [("INSERT", "public.animal", "1"), ("INSERT", "public.dog", None),
                        ("DELETE", "public.animal", "1"), ("DELETE", "public.dog", None)]


def test_dropped_key_column_never_fails_writes(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE t (id int PRIMARY KEY, code text, n int)")
        install(connection, "audit", ["t"])
        connection.execute("INSERT INTO t VALUES (1, 'a', 1)")
        connection.execute("ALTER TABLE t DROP COLUMN id")
        connection.execute("INSERT INTO t VALUES ('b', 2)")
        connection.execute("UPDATE t SET n = 3 WHERE code = 'b'")
        connection.execute("DELETE FROM t WHERE code = 'a'")
        recorded = [(e["action"], e["entity_id"]) for e in events(connection)]
    assert recorded == [("INSERT", "1"), ("INSERT", None), ("UPDATE", None), ("DELETE", None)]


@pytest.mark.parametrize("column", ["n", "o", "r", "s", "raw", "j", "auditctl_row"])
def test_column_named_like_alias(db, column):
    with db.connect() as connection:
        connection.execute(f'CREATE TABLE t (id int PRIMARY KEY, "{column}" int)')
        install(connection, "audit", ["t"])
        connection.execute("INSERT INTO t VALUES (1, 5)")
        connection.execute("DELETE FROM t")
        recorded = [(e["action"], e["entity_id"], e["new_values"] or e["old_values"]) for e in events(connection)]
    assert recorded == [("INSERT", "1", {"id": 1, column: 5}), ("DELETE", "1", {"id": 1, column: 5})]


def test_sixty_column_table(db):
    columns = ", ".join(f"c{i} int" for i in range(1, 60))
    with db.connect() as connection:
        connection.execute(f"CREATE TABLE wide (id int PRIMARY KEY, {columns})")
        install(connection, "audit", ["wide"])
        connection.execute("INSERT INTO wide (id, c1, c59) VALUES (1, 1, 59)")
        connection.execute("UPDATE wide SET c30 = 30, c59 = 60")
        insert, update = events(connection)
    assert len(insert["new_values"]) == 60
    assert insert["new_values"]["c59"] == 59
    assert update["old_values"] == {"c30": None, "c59": 59}
    assert update["new_values"] == {"c30": 30, "c59": 60}


def test_generated_column_added_after_install(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE price (id int PRIMARY KEY, net numeric, rate numeric)")
        install(connection, "audit", ["price"])
        connection.execute("ALTER TABLE price ADD COLUMN gross numeric GENERATED ALWAYS AS (net * (1 + rate)) STORED")
        connection.execute("INSERT INTO price (id, net, rate) VALUES (1, 100, 0.2)")
        connection.execute("UPDATE price SET rate = 0.1")
        insert, update = events(connection)
    assert insert["new_values"]["gross"] == 120
    assert update["new_values"] == {"rate": 0.1, "gross": 110}


def test_jsonb_array_and_hstore_updates(db, pg):
    with db.connect() as connection:
        has_hstore = connection.execute(
            "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'hstore')").fetchone()[0]
        if not has_hstore:
            pytest.skip("this server has no hstore extension")
        connection.execute("CREATE EXTENSION hstore")
        connection.execute("CREATE TABLE doc (id int PRIMARY KEY, meta jsonb, tags text[], attrs hstore)")
        install(connection, "audit", ["doc"])
        connection.execute("""INSERT INTO doc VALUES (1, '{"a": 1, "b": [1, 2]}', '{x,y}', 'k=>v')""")
        connection.execute("""UPDATE doc SET meta = jsonb_set(meta, '{b,1}', '3'), tags = tags || 'z'::text,
                              attrs = attrs || 'k2=>v2'""")
        connection.execute("UPDATE doc SET meta = meta")
        update = events(connection)[-1]
    assert update["action"] == "UPDATE"
    assert update["old_values"]["meta"] == {"a": 1, "b": [1, 2]}
    assert update["new_values"]["meta"] == {"a": 1, "b": [1, 3]}
    assert update["new_values"]["tags"] == ["x", "y", "z"]
    assert update["new_values"]["attrs"] == {"k": "v", "k2": "v2"}
