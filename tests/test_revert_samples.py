"""Revert on the sample databases: the Prisma-style app's cascade delete and Pagila's column types."""

from __future__ import annotations

import json

import pytest

from auditctl.audit.install import install
from auditctl.audit.revert import revert_event, revert_transaction
from auditctl.audit.rules import Rule
from auditctl.errors import RevertRefusedError
from helpers import events

pytestmark = pytest.mark.shared_data

# The sample app's transaction that soft-deletes Project 7 and deletes
# Project 8, which cascades to its products and their work stages.
_CASCADE = """
BEGIN;
SET LOCAL auditctl.user_id = 'cl00000004';
UPDATE "Project" SET "deletedAt" = now(), "updatedAt" = now() WHERE "id" = 7;
DELETE FROM "Project" WHERE "id" = 8;
COMMIT;
"""

_SNAPSHOT = """
SELECT jsonb_build_object(
    'projects', (SELECT jsonb_agg(to_jsonb(p) ORDER BY id) FROM "Project" p WHERE id IN (7, 8)),
    'products', (SELECT jsonb_agg(to_jsonb(p) ORDER BY id) FROM "Product" p WHERE "projectId" = 8),
    'stages', (SELECT jsonb_agg(to_jsonb(s) ORDER BY "productId", "stageNo") FROM "WorkStage" s
               JOIN "Product" p ON p.id = s."productId" WHERE p."projectId" = 8),
    'links', (SELECT jsonb_agg(to_jsonb(l) ORDER BY "B") FROM "_ProjectToUser" l WHERE "A" = 8))
"""


def _cascade_transaction(connection) -> int:
    connection.execute(_CASCADE)
    return events(connection, where="action = 'DELETE' AND entity_type = 'public.Project'")[-1]["transaction_id"]


def test_revert_prisma_cascade_delete(prisma_app):
    with prisma_app.connect() as connection:
        install(connection, "audit", [], use_all=True)
        before = connection.execute(_SNAPSHOT).fetchone()[0]
        assert len(before["products"]) == 10
        assert len(before["links"]) > 0
        transaction_id = _cascade_transaction(connection)
        assert connection.execute('SELECT count(*) FROM "Product" WHERE "projectId" = 8').fetchone()[0] == 0
        assert connection.execute('SELECT count(*) FROM "_ProjectToUser" WHERE "A" = 8').fetchone()[0] == 0
        result = revert_transaction(connection, "audit", transaction_id, user_id="cl00000001")
        after = connection.execute(_SNAPSHOT).fetchone()[0]
    assert after == before
    assert len(result.steps) == 1 + 1 + 10 + 50 + len(before["links"])


def test_revert_prisma_cascade_after_rename(prisma_app, cli):
    with prisma_app.connect() as connection:
        install(connection, "audit", [], use_all=True)
        transaction_id = _cascade_transaction(connection)
        project_delete = events(connection, where="action = 'DELETE' AND entity_type = 'public.Project'")[-1]
        connection.execute('ALTER TABLE "Project" RENAME COLUMN "budget" TO "budgetRub"')

    result = cli("revert", "--transaction", str(transaction_id), "--dry-run", "--user", "cl00000001",
                 dsn=prisma_app.dsn)
    output = " ".join(result.stdout.split())
    assert result.exit_code == 0, result.stderr
    assert "Column budget of public.Project is now named budgetRub, so the revert uses budgetRub." in output
    assert f"Event {project_delete['id']}: public.Project " in output


# A user invited to three projects, through the permissions table
# "_ProjectToUser", which has no primary key.
_INVITED_USER = """
INSERT INTO "User" ("id", "email", "fullName", "passwordHash", "role", "updatedAt")
VALUES ('cl00000999', 'guest@example.ru', 'Гость Ёлкин', '$2b$12$x', 'ENGINEER', '2026-02-01 09:30:00.123');
INSERT INTO "_ProjectToUser" ("A", "B") VALUES (3, 'cl00000999'), (5, 'cl00000999'), (8, 'cl00000999');
"""

_USER_SNAPSHOT = """
SELECT jsonb_build_object(
    'user', (SELECT to_jsonb(u) FROM "User" u WHERE id = 'cl00000999'),
    'links', (SELECT jsonb_agg(to_jsonb(l) ORDER BY "A") FROM "_ProjectToUser" l WHERE "B" = 'cl00000999'))
"""


def test_revert_prisma_user_delete_restores_links(prisma_app, cli):
    with prisma_app.connect() as connection:
        # The password hash is masked by default, and a deleted user can
        # only come back with it, so this install keeps it in the log.
        install(connection, "audit", [], use_all=True, column_rules=[("User.passwordHash", Rule.KEEP)])
        connection.execute(_INVITED_USER)
        before = connection.execute(_USER_SNAPSHOT).fetchone()[0]
        links_total = connection.execute('SELECT count(*) FROM "_ProjectToUser"').fetchone()[0]
        connection.execute("""
            BEGIN;
            SET LOCAL auditctl.user_id = 'cl00000004';
            DELETE FROM "User" WHERE "id" = 'cl00000999';
            COMMIT;""")
        link_deletes = events(connection, where="""action = 'DELETE' AND entity_type = 'public._ProjectToUser'""")
        assert len(link_deletes) == 3
        assert all(event["entity_id"] is None for event in link_deletes)
        transaction_id = link_deletes[0]["transaction_id"]
        assert connection.execute(_USER_SNAPSHOT).fetchone()[0] == {"user": None, "links": None}

    result = cli("revert", "--transaction", str(transaction_id), "--user", "cl00000001", dsn=prisma_app.dsn)
    assert result.exit_code == 0, result.stderr
    assert "Reverted 4 events" in result.stdout
    assert 'public._ProjectToUser {"A": 8, "B": "cl00000999"} re-inserted (A, B).' in result.stdout
    with prisma_app.connect() as connection:
        after = connection.execute(_USER_SNAPSHOT).fetchone()[0]
        assert connection.execute('SELECT count(*) FROM "_ProjectToUser"').fetchone()[0] == links_total
        revert = events(connection)[-1]
    assert after["user"] == before["user"]
    assert after["links"] == before["links"]
    assert revert["action"] == "REVERT"
    assert revert["transaction_id"] != transaction_id
    assert revert["details"]["transaction_id"] == transaction_id
    assert len(revert["details"]["reverted_event_ids"]) == 4


_FILM = """
SELECT to_jsonb(f) - 'last_update' - 'fulltext' FROM film f WHERE film_id = %s
"""


def test_revert_pagila_types_round_trip(pagila):
    with pagila.connect() as connection:
        # bytea values are stored as size and hash unless kept whole.
        install(connection, "audit", ["film", "staff"], column_rules=[("staff.picture", Rule.KEEP)])
        film_id = connection.execute("""
            INSERT INTO film (title, description, release_year, language_id, rental_duration, rental_rate,
                              length, replacement_cost, rating, special_features)
            VALUES ('ЁЖИК В ТУМАНЕ', 'A "quoted" fog', 1975, 1, 3, 4.99, 10, 19.99, 'PG-13',
                    ARRAY['Trailers', 'Behind the Scenes'])
            RETURNING film_id""").fetchone()[0]
        before = connection.execute(_FILM, (film_id,)).fetchone()[0]
        fulltext = connection.execute("SELECT fulltext FROM film WHERE film_id = %s", (film_id,)).fetchone()[0]
        connection.execute("""UPDATE film SET rating = 'NC-17', release_year = 2001, rental_rate = 0.99,
                              special_features = ARRAY['Commentaries'] WHERE film_id = %s""", (film_id,))
        revert_event(connection, "audit", events(connection)[-1]["id"], user_id=None)
        assert connection.execute(_FILM, (film_id,)).fetchone()[0] == before

        connection.execute("DELETE FROM film WHERE film_id = %s", (film_id,))
        revert_event(connection, "audit", events(connection)[-1]["id"], user_id=None)
        assert connection.execute(_FILM, (film_id,)).fetchone()[0] == before
        restored_fulltext = connection.execute("SELECT fulltext FROM film WHERE film_id = %s",
                                               (film_id,)).fetchone()[0]
        assert restored_fulltext == fulltext

        picture = bytes(range(256))
        connection.execute("UPDATE staff SET picture = %s WHERE staff_id = 1", (picture,))
        connection.execute("UPDATE staff SET picture = NULL WHERE staff_id = 1")
        revert_event(connection, "audit", events(connection)[-1]["id"], user_id=None)
        stored = connection.execute("SELECT picture FROM staff WHERE staff_id = 1").fetchone()[0]
    assert bytes(stored) == picture


def test_revert_pagila_partitioned_payment(pagila, cli):
    with pagila.connect() as connection:
        install(connection, "audit", ["payment"])
        payment_id, payment_date, amount = connection.execute(
            "SELECT payment_id, payment_date, amount FROM payment ORDER BY payment_id LIMIT 1").fetchone()
        connection.execute("UPDATE payment SET amount = amount + 100 WHERE payment_id = %s", (payment_id,))
        update = events(connection)[-1]
        assert update["details"]["partition"].startswith("payment_p")
        revert_event(connection, "audit", update["id"], user_id=None)
        restored = connection.execute("SELECT amount FROM payment WHERE payment_id = %s", (payment_id,)).fetchone()[0]
    assert restored == amount
    history = cli("history", "payment", update["entity_id"], "--format", "json", dsn=pagila.dsn)
    assert history.exit_code == 0, history.stderr
    assert [event["action"] for event in json.loads(history.stdout)["events"]] == ["UPDATE", "UPDATE", "REVERT"]


def test_revert_refuses_summarized_bytea(pagila):
    with pagila.connect() as connection:
        install(connection, "audit", ["staff"])
        connection.execute("UPDATE staff SET picture = %s WHERE staff_id = 1", (bytes(range(16)),))
        connection.execute("UPDATE staff SET picture = NULL WHERE staff_id = 1")
        with pytest.raises(RevertRefusedError, match="size and SHA-256"):
            revert_event(connection, "audit", events(connection)[-1]["id"], user_id=None)
