"""Revert of an UPDATE that moved a row to another partition, which the log records as a DELETE and an INSERT."""

from __future__ import annotations

import pytest

from auditctl.audit.install import install
from auditctl.audit.revert import revert_event, revert_transaction
from auditctl.errors import RevertRefusedError
from helpers import events

pytestmark = pytest.mark.shared_data

_ROWS = "SELECT payment_date, tableoid::regclass::text FROM payment WHERE payment_id = %s ORDER BY payment_date"


def _move_payment(connection) -> tuple[int, list, dict, dict]:
    """Move one January payment to March. Return its id, its rows before the move, and the two events."""
    install(connection, "audit", ["payment"])
    payment_id = connection.execute(
        "SELECT payment_id FROM payment_p2022_01 ORDER BY payment_id LIMIT 1").fetchone()[0]
    before = connection.execute(_ROWS, (payment_id,)).fetchall()
    connection.execute("UPDATE payment SET payment_date = '2022-03-15 10:00:00+00' WHERE payment_id = %s",
                       (payment_id,))
    delete, insert = events(connection, where="entity_type = 'public.payment'")
    return payment_id, before, delete, insert


@pytest.mark.parametrize("half", ["DELETE", "INSERT"])
@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_revert_half_of_move_refused(pagila, half, dry_run):
    with pagila.connect() as connection:
        payment_id, _before, delete, insert = _move_payment(connection)
        assert delete["action"] == "DELETE"
        assert insert["action"] == "INSERT"
        assert delete["details"]["partition"] == "payment_p2022_01"
        assert insert["details"]["partition"] == "payment_p2022_03"
        chosen, other = (delete, insert) if half == "DELETE" else (insert, delete)
        moved = connection.execute(_ROWS, (payment_id,)).fetchall()
        with pytest.raises(RevertRefusedError) as refused:
            revert_event(connection, "audit", chosen["id"], user_id=None, dry_run=dry_run)
        message = str(refused.value)
        assert f"event {other['id']}" in message
        assert f"--transaction {chosen['transaction_id']}" in message
        assert connection.execute(_ROWS, (payment_id,)).fetchall() == moved
        assert events(connection, where="action = 'REVERT'") == []


def test_revert_move_transaction_restores_row(pagila):
    with pagila.connect() as connection:
        payment_id, before, delete, _insert = _move_payment(connection)
        result = revert_transaction(connection, "audit", delete["transaction_id"], user_id=None)
        after = connection.execute(_ROWS, (payment_id,)).fetchall()
    assert [step.statement for step in result.steps] == ["DELETE", "INSERT"]
    assert after == before


def test_revert_move_cli_refusal_line(pagila, cli):
    with pagila.connect() as connection:
        _payment_id, _before, delete, insert = _move_payment(connection)
    reverted = cli("revert", str(delete["id"]), "--dry-run", dsn=pagila.dsn)
    assert reverted.exit_code == 1
    assert reverted.stdout == ""
    assert len(reverted.stderr.strip().splitlines()) == 1, reverted.stderr
    assert f"event {insert['id']}" in reverted.stderr
    assert "--transaction" in reverted.stderr


def test_revert_delete_and_reinsert_allowed(pagila):
    """A DELETE and an INSERT of the same payment by two statements are no move, so each reverts alone."""
    with pagila.connect() as connection:
        install(connection, "audit", ["payment"])
        row = connection.execute(
            "SELECT payment_id, customer_id, staff_id, rental_id, amount FROM payment_p2022_01 "
            "ORDER BY payment_id LIMIT 1").fetchone()
        with connection.transaction():
            connection.execute("DELETE FROM payment WHERE payment_id = %s", (row[0],))
            connection.execute(
                "INSERT INTO payment (payment_id, customer_id, staff_id, rental_id, amount, payment_date) "
                "VALUES (%s, %s, %s, %s, %s, '2022-03-15 10:00:00+00')", row)
        _delete, insert = events(connection, where="entity_type = 'public.payment'")
        result = revert_event(connection, "audit", insert["id"], user_id=None)
        left = connection.execute("SELECT count(*) FROM payment WHERE payment_id = %s", (row[0],)).fetchone()[0]
    assert [step.statement for step in result.steps] == ["DELETE"]
    assert left == 0
