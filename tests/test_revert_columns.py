"""Reverting events whose table had its columns renamed, dropped or added since, with DDL capture on."""

from __future__ import annotations

import pytest

from auditctl.audit.install import install
from auditctl.audit.revert import revert_event, revert_transaction
from auditctl.errors import RevertConflictError, RevertRefusedError
from helpers import as_app_user, events


@pytest.fixture
def item(db):
    """An audited table with one row, installed by a superuser, so that DDL capture is on."""
    with db.connect() as connection:
        connection.execute("CREATE TABLE item (id integer PRIMARY KEY, a text, b text)")
        connection.execute("INSERT INTO item VALUES (1, 'a0', 'b0')")
        install(connection, "audit", ["item"])
    return db


def _row(connection, table: str = "item") -> dict | None:
    row = connection.execute(f"SELECT to_jsonb(t) FROM {table} t WHERE id = 1").fetchone()
    return row[0] if row else None


def _last_event_id(connection) -> int:
    return events(connection)[-1]["id"]


def test_revert_update_after_column_rename(item):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item RENAME COLUMN a TO title")
        result = revert_event(connection, "audit", update_id, user_id=None)
        row = _row(connection)
    assert row == {"id": 1, "title": "a0", "b": "b0"}
    assert result.steps[0].columns == ["title"]
    assert [(r.table, r.logged_name, r.current_name) for r in result.renamed_columns] == [
        ("public.item", "a", "title")]


def test_revert_insert_after_column_rename(item):
    with item.connect() as connection:
        connection.execute("INSERT INTO item VALUES (2, 'a2', 'b2')")
        insert_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item RENAME COLUMN a TO title")
        revert_event(connection, "audit", insert_id, user_id=None)
        ids = [row[0] for row in connection.execute("SELECT id FROM item ORDER BY id").fetchall()]
    assert ids == [1]


def test_revert_delete_after_column_rename(item):
    with item.connect() as connection:
        connection.execute("DELETE FROM item")
        delete_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item RENAME COLUMN a TO title")
        result = revert_event(connection, "audit", delete_id, user_id=None)
        row = _row(connection)
    assert row == {"id": 1, "title": "a0", "b": "b0"}
    assert sorted(result.steps[0].columns) == ["b", "id", "title"]


def test_revert_after_rename_and_readd(item):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item RENAME COLUMN a TO title")
        connection.execute("ALTER TABLE item ADD COLUMN a text")
        # The new column gets the value the event wrote, so only the column's attnum distinguishes the two.
        connection.execute("UPDATE item SET a = 'a1'")
        revert_event(connection, "audit", update_id, user_id=None)
        row = _row(connection)
    # The value goes back into the renamed column, and the new column of the old name keeps its own value.
    assert row["title"] == "a0"
    assert row["a"] == "a1"


def test_revert_refuses_dropped_then_readded(item):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item DROP COLUMN a")
        drop_refresh = events(connection, where="action = 'AUDIT_TRIGGER_REFRESHED'", system=True)[-1]
        connection.execute("ALTER TABLE item ADD COLUMN a text")
        connection.execute("UPDATE item SET a = 'a1'")
        with pytest.raises(RevertRefusedError) as refused:
            revert_event(connection, "audit", update_id, user_id=None)
        row = _row(connection)
    assert str(refused.value) == (
        f"Event {update_id} cannot be reverted: column a of public.item was dropped after the event, as event "
        f"{drop_refresh['id']} records, and the column a that the table has now is a different one. "
        "Restore the row by hand from `auditctl history`.")
    assert row["a"] == "a1"


def test_revert_refuses_dropped_column(item):
    with item.connect() as connection:
        connection.execute("DELETE FROM item")
        delete_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item DROP COLUMN a")
        with pytest.raises(RevertRefusedError) as refused:
            revert_event(connection, "audit", delete_id, user_id=None)
    assert str(refused.value).startswith(
        f"Event {delete_id} cannot be reverted: column a of public.item no longer exists, because it was dropped "
        "after the event, as event ")


def test_revert_after_chained_renames(item):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item RENAME COLUMN a TO c")
        connection.execute("ALTER TABLE item RENAME COLUMN c TO d")
        result = revert_event(connection, "audit", update_id, user_id=None)
        row = _row(connection)
    assert row == {"id": 1, "d": "a0", "b": "b0"}
    assert [(r.logged_name, r.current_name) for r in result.renamed_columns] == [("a", "d")]


def test_revert_after_swapped_names(item):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1', b = 'b1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item RENAME COLUMN a TO tmp")
        connection.execute("ALTER TABLE item RENAME COLUMN b TO a")
        connection.execute("ALTER TABLE item RENAME COLUMN tmp TO b")
        revert_event(connection, "audit", update_id, user_id=None)
        row = _row(connection)
    # The column now named b held a, and the one now named a held b.
    assert row == {"id": 1, "b": "a0", "a": "b0"}


def test_revert_swapped_names_checks_current_values(item):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item RENAME COLUMN a TO tmp")
        connection.execute("ALTER TABLE item RENAME COLUMN b TO a")
        connection.execute("ALTER TABLE item RENAME COLUMN tmp TO b")
        connection.execute("UPDATE item SET b = 'changed'")
        with pytest.raises(RevertConflictError) as conflict:
            revert_event(connection, "audit", update_id, user_id=None)
    assert 'column b is now "changed", the event set "a1"' in str(conflict.value)


def test_revert_ignores_added_column(item):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item ADD COLUMN note text")
        result = revert_event(connection, "audit", update_id, user_id=None)
        row = _row(connection)
    assert row == {"id": 1, "a": "a0", "b": "b0", "note": None}
    assert result.renamed_columns == []


def test_revert_after_table_and_column_rename(item):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item RENAME TO product")
        connection.execute("ALTER TABLE product RENAME COLUMN a TO title")
        result = revert_event(connection, "audit", update_id, user_id=None)
        row = _row(connection, "product")
    assert row == {"id": 1, "title": "a0", "b": "b0"}
    assert result.renamed_tables == {"public.item": "public.product"}


def test_revert_no_key_after_column_rename(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE pair (x integer, y text)")
        connection.execute("INSERT INTO pair VALUES (1, 'one'), (2, 'two')")
        install(connection, "audit", ["pair"])
        connection.execute("UPDATE pair SET y = 'uno' WHERE x = 1")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE pair RENAME COLUMN y TO label")
        revert_event(connection, "audit", update_id, user_id=None)
        rows = connection.execute("SELECT x, label FROM pair ORDER BY x").fetchall()
    assert rows == [(1, "one"), (2, "two")]


def test_revert_transaction_after_column_rename(item):
    with item.connect() as connection:
        as_app_user(connection, "u", None, "UPDATE item SET a = 'a1'", "INSERT INTO item VALUES (2, 'a2', 'b2')")
        transaction_id = events(connection)[-1]["transaction_id"]
        connection.execute("ALTER TABLE item RENAME COLUMN a TO title")
        revert_transaction(connection, "audit", transaction_id, user_id=None)
        rows = connection.execute("SELECT id, title FROM item ORDER BY id").fetchall()
    assert rows == [(1, "a0")]


def test_revert_cli_dry_run_uses_current_names(item, cli):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item RENAME COLUMN a TO title")
    result = cli("revert", str(update_id), "--dry-run", dsn=item.dsn)
    with item.connect() as connection:
        row = _row(connection)
    assert result.exit_code == 0
    assert "Column a of public.item is now named title, so the revert uses title." in result.stdout
    assert f"Event {update_id}: public.item 1 restored (title)." in result.stdout
    assert row["title"] == "a1"


def _strip_column_changes(connection, refresh_id: int) -> None:
    """Make a refresh event look like one written before auditctl recorded column changes."""
    with connection.transaction():
        connection.execute("SET LOCAL auditctl.internal = 'on'")
        connection.execute("UPDATE audit.events SET details = details - 'column_renames' - 'dropped_columns' "
                           "- 'added_columns' WHERE id = %s", (refresh_id,))


def test_revert_refuses_unrecorded_column_change(item):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item ADD COLUMN note text")
        refresh = events(connection, where="action = 'AUDIT_TRIGGER_REFRESHED'", system=True)[-1]
        _strip_column_changes(connection, refresh["id"])
        with pytest.raises(RevertRefusedError) as refused:
            revert_event(connection, "audit", update_id, user_id=None)
        row = _row(connection)
    assert str(refused.value) == (
        f"Event {update_id} cannot be reverted: the columns of public.item changed after the event, and event "
        f"{refresh['id']}, written by an earlier auditctl, does not record which columns were renamed or dropped. "
        "So auditctl cannot tell whether column a is still the same column. "
        "Restore the row by hand from `auditctl history`.")
    assert row["a"] == "a1"


def test_revert_before_unrecorded_change_of_gone_column(item):
    with item.connect() as connection:
        connection.execute("UPDATE item SET a = 'a1'")
        update_id = _last_event_id(connection)
        connection.execute("ALTER TABLE item RENAME COLUMN a TO title")
        refresh = events(connection, where="action = 'AUDIT_TRIGGER_REFRESHED'", system=True)[-1]
        _strip_column_changes(connection, refresh["id"])
        with pytest.raises(RevertRefusedError) as refused:
            revert_event(connection, "audit", update_id, user_id=None)
    # As before column changes were recorded: the logged name is missing.
    assert "column a of public.item no longer exists, because it was renamed or dropped" in str(refused.value)


def test_revert_after_unrecorded_change_works(item):
    with item.connect() as connection:
        connection.execute("ALTER TABLE item ADD COLUMN note text")
        refresh = events(connection, where="action = 'AUDIT_TRIGGER_REFRESHED'", system=True)[-1]
        _strip_column_changes(connection, refresh["id"])
        connection.execute("UPDATE item SET a = 'a1'")
        revert_event(connection, "audit", _last_event_id(connection), user_id=None)
        row = _row(connection)
    assert row["a"] == "a0"
