"""End to end on the two sample databases: Pagila and the Prisma-style app."""

from __future__ import annotations

import csv
import io
import json
import subprocess

import pytest

from conftest import shared_data
from helpers import as_app_user, events

pytestmark = pytest.mark.shared_data


def _table_checksums(connection) -> dict[str, str]:
    """md5 of every row of every table in public, to prove installing changes no data."""
    tables = [row[0] for row in connection.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY 1")]
    sums = {}
    for table in tables:
        sums[table] = connection.execute(
            f'SELECT md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\')) FROM public."{table}" t'
        ).fetchone()[0]
    return sums


def test_pagila_install_and_query(pagila, cli):
    with pagila.connect() as connection:
        before = _table_checksums(connection)
        payment_id = connection.execute(
            "SELECT payment_id FROM payment_p2022_02 ORDER BY payment_id LIMIT 1").fetchone()[0]

    installed = cli("install", "--all", dsn=pagila.dsn)
    assert installed.exit_code == 0, installed.stderr
    assert "public.payment" in installed.stdout
    assert "payment_p2022_02" not in installed.stdout

    with pagila.connect() as connection:
        assert _table_checksums(connection) == before
        as_app_user(
            connection, "staff-2", "192.0.2.44",
            "UPDATE film SET special_features = array_append(special_features, 'Director''s Cut') WHERE film_id = 1",
            f"UPDATE payment SET payment_date = payment_date + interval '3 months' WHERE payment_id = {payment_id}",
            "INSERT INTO actor (actor_id, first_name, last_name) VALUES (9001, 'ЮРИЙ', 'НИКУЛИН')",
            "DELETE FROM actor WHERE actor_id = 9001",
        )

    result = cli("query", "--user", "staff-2", "--format", "json", dsn=pagila.dsn)
    assert result.exit_code == 0, result.stderr
    recorded = list(reversed(json.loads(result.stdout)))
    summary = [(e["action"], e["entity_type"], e["entity_id"]) for e in recorded]
    assert [s[:2] for s in summary] == [
        ("UPDATE", "public.film"),
        ("DELETE", "public.payment"),
        ("INSERT", "public.payment"),
        ("INSERT", "public.actor"),
        ("DELETE", "public.actor"),
    ]
    film, moved_out, moved_in, actor_in, actor_out = recorded
    assert film["entity_id"] == "1"
    assert set(film["new"]) == {"special_features", "last_update"}
    assert film["new"]["special_features"][-1] == "Director's Cut"
    assert film["old"]["special_features"] == film["new"]["special_features"][:-1]
    # Moving a row to another partition reaches row triggers as DELETE + INSERT.
    assert moved_out["details"]["partition"] == "payment_p2022_02"
    assert moved_in["details"]["partition"] == "payment_p2022_05"
    assert json.loads(moved_out["entity_id"])[1] == payment_id
    assert moved_out["old"]["payment_id"] == moved_in["new"]["payment_id"] == payment_id
    assert moved_in["new"]["amount"] == moved_out["old"]["amount"]
    assert json.loads(moved_out["entity_id"])[0] == moved_out["old"]["payment_date"]
    assert actor_in["new"]["first_name"] == "ЮРИЙ"
    assert actor_out["old"]["last_name"] == "НИКУЛИН"
    assert all(e["ip_address"] == "192.0.2.44" for e in recorded)

    status = cli("status", "--format", "json", dsn=pagila.dsn)
    states = {t["table"]: t["state"] for t in json.loads(status.stdout)["tables"]}
    assert set(states.values()) == {"audited"}
    assert "public.payment" in states


def _run_workload(database) -> None:
    subprocess.run([database.server.psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database.dsn,
                    "-f", str(shared_data("prisma-app", "workload.sql"))],
                   check=True, capture_output=True, text=True)


def test_prisma_app_workload(prisma_app, cli):
    with prisma_app.connect() as connection:
        bulk_expected = connection.execute("""
            SELECT count(*) FROM "WorkStage" w JOIN "Product" p ON p.id = w."productId"
            WHERE w."startDate" < DATE '2026-03-01' AND w.progress < 100 AND p."projectId" <> 8
              AND NOT (w."productId" = 'pr00000010' AND w."stageNo" = 5)""").fetchone()[0]

    installed = cli("install", "--all", dsn=prisma_app.dsn)
    assert installed.exit_code == 0, installed.stderr
    assert "public._ProjectToUser has no primary key" in " ".join(installed.stdout.split())
    _run_workload(prisma_app)

    result = cli("query", "--user", "cl00000002", "--format", "json", dsn=prisma_app.dsn)
    assert result.exit_code == 0, result.stderr
    update, delete = json.loads(result.stdout)
    assert (delete["action"], delete["entity_type"], delete["entity_id"]) == (
        "DELETE", "public.WorkStage", '["pr00000010", 5]')
    assert delete["old"]["title"] == "Контроль ОТК"
    assert (update["action"], update["entity_type"], update["entity_id"]) == ("UPDATE", "public.User", "cl00000002")
    assert set(update["new"]) == {"passwordHash", "updatedAt"}
    assert update["ip_address"] == delete["ip_address"] == "198.51.100.23"

    with prisma_app.connect() as connection:
        bulk = events(connection, where="user_id = 'cl00000001' AND entity_type = 'public.WorkStage'")
        assert len(bulk) == bulk_expected
        assert len({e["entity_id"] for e in bulk}) == bulk_expected
        for event in bulk:
            assert set(event["new_values"]) == {"progress"}
            assert event["new_values"]["progress"] == min(event["old_values"]["progress"] + 10, 100)

        # The no-op UPDATE of company.name records nothing; the upsert records its change.
        settings = events(connection, where="entity_type = 'public.Setting'")
        assert [e["entity_id"] for e in settings] == ["backup.schedule", "auth.maxFailedLogins"]
        nightly = settings[0]
        assert nightly["user_id"] is None

        # The column added by the migration shows up in the next update.
        [after_migration] = events(connection, where="user_id = 'cl00000003' AND action = 'UPDATE' "
                                                     "AND new_values ? 'priority'")
        assert after_migration["old_values"]["priority"] == 0
        assert after_migration["new_values"]["priority"] == 2
        assert after_migration["new_values"]["name"] == "Проект «Марс-2»"

        # The hard delete cascades, and every cascaded row is recorded under the same user.
        cascaded = events(connection, where="user_id = 'cl00000004' AND action = 'DELETE'")
        assert {e["entity_type"] for e in cascaded} == {"public.Project", "public.Product", "public.WorkStage",
                                                        "public._ProjectToUser"}
        assert {str(e["ip_address"]) for e in cascaded} == {"2001:db8::42"}

        # Rows of the table without a primary key are kept whole, with no entity id.
        links = events(connection, where="entity_type = 'public._ProjectToUser'")
        assert links and all(e["entity_id"] is None for e in links)

        migration = events(connection, where="entity_type = 'public._prisma_migrations'")
        assert [e["new_values"]["migration_name"] for e in migration] == ["20261201000000_add_priority"]
        total = connection.execute("SELECT count(*) FROM audit.events").fetchone()[0]

    exported = cli("export", "--format", "csv", dsn=prisma_app.dsn)
    assert exported.exit_code == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == total
    product = next(r for r in rows if r["entity_id"] == "pr90000001")
    assert json.loads(product["new"])["title"] == "Изделие «Опора» ТУ 1234-001"
    assert product["user_id"] == "cl00000003"
    assert product["ip_address"] == "203.0.113.7"
