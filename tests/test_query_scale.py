"""Query and export on larger logs: keyset pages, index use in the plan, and Parquet output."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from auditctl.audit.install import install
from auditctl.audit.partitions import list_partitions, maintain
from auditctl.audit.query import EventFilter, explain_query


@pytest.fixture
def busy_log(db):
    """20,000 events of 400 users spread over the last 60 days, analyzed."""
    with db.connect() as connection:
        install(connection, "audit", [])
        connection.execute(
            """INSERT INTO audit.events (occurred_at, user_id, action, entity_type, entity_id, new_values)
               SELECT now() - make_interval(secs => g * 259), 'user' || (g % 400), 'INSERT', 'public.items',
                      g::text, jsonb_build_object('n', g)
               FROM generate_series(1, 20000) g""")
        maintain(connection, "audit")
        connection.execute("ANALYZE audit.events")
    return db


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _scans_of_filled_partitions(connection, plan: dict) -> list[dict]:
    """Return the plan's scans of partitions that hold events (empty ones may be read sequentially for free)."""
    filled = {p.name for p in list_partitions(connection, "audit") if p.rows}
    scans = [node for node in _nodes(plan) if node.get("Relation Name") in filled]
    assert scans, json.dumps(plan)
    return scans


def _user_index_used(scan: dict) -> bool:
    """Tell whether a scan node, or the bitmap index scan under it, reads the index on (user_id, occurred_at, id)."""
    for node in _nodes(scan):
        if "user_id_occurred_at_id" in node.get("Index Name", "") and "user_id" in node.get("Index Cond", ""):
            return True
    return False


def test_user_since_plan_uses_user_index(busy_log):
    filters = EventFilter(user_id="user7", since=datetime.now(timezone.utc) - timedelta(days=7))
    with busy_log.connect() as connection:
        plan = explain_query(connection, "audit", filters, limit=100)["Plan"]
        scans = _scans_of_filled_partitions(connection, plan)
    assert [n["Relation Name"] for n in scans if n["Node Type"] == "Seq Scan"] == [], json.dumps(plan)
    assert all(_user_index_used(scan) for scan in scans), json.dumps(plan)


def test_after_page_plan_uses_user_index(busy_log, cli):
    first = json.loads(cli("query", "--user", "user7", "--limit", "5", "--format", "json",
                           dsn=busy_log.dsn).stdout)
    filters = EventFilter(user_id="user7", since=datetime.now(timezone.utc) - timedelta(days=7))
    with busy_log.connect() as connection:
        plan = explain_query(connection, "audit", filters, limit=100, after_id=first[-1]["id"])["Plan"]
        scans = _scans_of_filled_partitions(connection, plan)
    assert [n["Relation Name"] for n in scans if n["Node Type"] == "Seq Scan"] == [], json.dumps(plan)
    # A partition that ends before the page's cursor may be probed through the
    # time index instead, which the keyset condition makes empty at once.
    assert any(_user_index_used(scan) for scan in scans), json.dumps(plan)
    # The keyset condition is an index condition, not a filter applied to every row of the user.
    assert any("ROW(occurred_at, id) <" in node.get("Index Cond", "") for scan in scans for node in _nodes(scan)), \
        json.dumps(plan)


def test_query_after_walks_pages(busy_log, cli):
    full = cli("query", "--user", "user3", "--limit", "1000", "--format", "json", dsn=busy_log.dsn)
    expected = [row["id"] for row in json.loads(full.stdout)]
    assert len(expected) == 50

    seen: list[int] = []
    after: list[str] = []
    while True:
        page = cli("query", "--user", "user3", "--limit", "15", "--format", "json", *after, dsn=busy_log.dsn)
        assert page.exit_code == 0, page.stderr
        ids = [row["id"] for row in json.loads(page.stdout)]
        if not ids:
            break
        seen.extend(ids)
        if len(ids) == 15:
            assert f"--after {ids[-1]}" in page.stderr
        after = ["--after", str(ids[-1])]
    assert seen == expected


def test_query_after_unknown_id(busy_log, cli):
    result = cli("query", "--after", "999999999", dsn=busy_log.dsn)
    assert result.exit_code == 2
    assert "999999999" in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_export_parquet_readable_by_pyarrow(busy_log, cli, tmp_path):
    import pyarrow.parquet as pq

    target = tmp_path / "events.parquet"
    result = cli("export", "--format", "parquet", "-o", str(target), "--user", "user5", dsn=busy_log.dsn)
    assert result.exit_code == 0, result.stderr
    table = pq.read_table(target)
    assert table.num_rows == 50
    assert table.column_names[:3] == ["id", "occurred_at", "user_id"]
    assert set(table.column("user_id").to_pylist()) == {"user5"}
    assert str(table.schema.field("occurred_at").type) == "timestamp[us, tz=UTC]"
    times = table.column("occurred_at").to_pylist()
    assert times == sorted(times)
    assert json.loads(table.column("new")[0].as_py())["n"] % 400 == 5
    assert list(tmp_path.iterdir()) == [target]


def test_export_parquet_needs_output(busy_log, cli):
    result = cli("export", "--format", "parquet", dsn=busy_log.dsn)
    assert result.exit_code == 2
    assert "--output" in result.stderr
    assert result.stdout == ""


def test_export_logs_rows_per_second(busy_log, cli, tmp_path):
    target = tmp_path / "events.parquet"
    result = cli("-v", "export", "--format", "parquet", "-o", str(target), dsn=busy_log.dsn)
    assert result.exit_code == 0, result.stderr
    assert "exporting events: 20000 so far" in result.stderr
    assert "per second" in result.stderr
