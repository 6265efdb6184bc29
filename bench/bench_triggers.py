"""Measure what auditing costs: single-row UPDATE throughput and one bulk UPDATE, DELETE and INSERT.

Prints, from one run, the numbers without triggers, with the minimal
triggers of bench/minimal.py and with the auditctl triggers on the same
table, and their ratios, together with the machine and the server settings
that shape them. The minimal triggers show what part of the cost any
trigger that stores the rows as JSON would pay on this table.

    .venv/bin/python bench/bench_triggers.py                  # throwaway cluster (Debian PostgreSQL or pgserver)
    .venv/bin/python bench/bench_triggers.py --dsn "host=..."  # an existing database you may write to
    .venv/bin/python bench/bench_triggers.py --icu-locale en-US  # in a database with ICU's en-US collation

The table has 10 columns; an UPDATE changes one integer column. Single-row
throughput comes from pgbench (-M prepared) with synchronous_commit on and
off; the bulk figures are one UPDATE, one DELETE and one INSERT ... SELECT
of every row, each timed on the client in its own transaction.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg
from psycopg import conninfo, sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from auditctl.audit.install import install, uninstall  # noqa: E402
from minimal import create_log, drop_log, set_triggers  # noqa: E402
from pgcluster import Cluster, debian_binaries, pgserver_binaries  # noqa: E402

T = TypeVar("T")

# The benchmark table and its primary key, for the minimal triggers.
TABLE_KEY = {("public", "bench_item"): ["id"]}
MODES = ("plain", "minimal", "audited")

TABLE_SQL = """
DROP TABLE IF EXISTS bench_item;
CREATE TABLE bench_item (
    id          integer PRIMARY KEY,
    sku         text NOT NULL,
    title       text NOT NULL,
    qty         integer NOT NULL,
    price       numeric(10, 2) NOT NULL,
    weight_kg   double precision,
    active      boolean NOT NULL DEFAULT true,
    tags        text[] NOT NULL DEFAULT '{{}}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO bench_item (id, sku, title, qty, price, weight_kg, tags)
SELECT i, 'SKU-' || i, 'Изделие номер ' || i, i % 100, (i % 1000) / 10.0, i / 7.0, ARRAY['a', 'b']
FROM generate_series(1, {rows}) AS i;
"""

PGBENCH_SCRIPT = "\\set id random(1, {rows})\nUPDATE bench_item SET qty = qty + 1 WHERE id = :id;\n"


def find_pgbench(bindir: Path | None) -> str:
    if bindir and (bindir / "pgbench").exists():
        return str(bindir / "pgbench")
    found = shutil.which("pgbench") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)
    if not found:
        sys.exit("pgbench not found: install the PostgreSQL client tools (Debian: postgresql-client)")
    return str(found)


def pgbench_tps(pgbench: str, dsn: str, script: Path, clients: int, seconds: int, sync_commit: str) -> float:
    env = dict(os.environ, PGOPTIONS=f"-c synchronous_commit={sync_commit}")
    result = subprocess.run([pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients),
                             "-T", str(seconds), "-f", str(script), dsn],
                            capture_output=True, text=True, env=env, check=True)
    match = re.search(r"tps = ([0-9.]+)", result.stdout)
    if not match:
        sys.exit(f"could not read pgbench output:\n{result.stdout}\n{result.stderr}")
    return float(match.group(1))


BULK_STATEMENTS = {
    "UPDATE": "UPDATE bench_item SET qty = qty + 1",
    "DELETE": "DELETE FROM bench_item",
    "INSERT": """INSERT INTO bench_item (id, sku, title, qty, price, weight_kg, tags)
                 SELECT i, 'SKU-' || i, 'Изделие номер ' || i, i % 100, (i % 1000) / 10.0, i / 7.0, ARRAY['a', 'b']
                 FROM generate_series(1, {rows}) AS i""",
}


def bulk_seconds(connection: psycopg.Connection, statement: str) -> float:
    """Time one statement in its own transaction."""
    start = time.perf_counter()
    with connection.transaction():
        connection.execute(statement)
    return time.perf_counter() - start


def describe(connection: psycopg.Connection) -> list[str]:
    settings = {name: connection.execute(f"SHOW {name}").fetchone()[0]
                for name in ("server_version", "shared_buffers", "synchronous_commit", "fsync", "wal_level",
                             "max_wal_size")}
    settings["collation"] = connection.execute(
        "SELECT coalesce(nullif(daticulocale, ''), datcollate) FROM pg_database WHERE datname = current_database()"
        if connection.info.server_version >= 150000 else
        "SELECT datcollate FROM pg_database WHERE datname = current_database()").fetchone()[0]
    return [f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
            "server: " + ", ".join(f"{key}={value}" for key, value in settings.items())]


def log_size(connection: psycopg.Connection) -> tuple[int, int]:
    """Events in the log, and the bytes of all its partitions with their indexes."""
    connection.execute("VACUUM audit.events")
    size = connection.execute(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('audit.events') WHERE isleaf"
    ).fetchone()[0]
    events = connection.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    return events, size


def log_parts(connection: psycopg.Connection) -> list[tuple[str, int]]:
    """Bytes of the log's heap and of each of its indexes, summed over the partitions."""
    heap = connection.execute(
        "SELECT coalesce(sum(pg_relation_size(relid)), 0) FROM pg_partition_tree('audit.events') WHERE isleaf"
    ).fetchone()[0]
    indexes = connection.execute(
        """SELECT i.indexrelid::regclass::text,
                  (SELECT coalesce(sum(pg_relation_size(t.relid)), 0)
                     FROM pg_partition_tree(i.indexrelid) AS t WHERE t.isleaf)
             FROM pg_index AS i WHERE i.indrelid = 'audit.events'::regclass ORDER BY 1""").fetchall()
    return [("heap", heap), *indexes]


def create_table(connection: psycopg.Connection, rows: int, workload: str) -> None:
    """Print the machine, the server settings and ``workload``, then create and fill bench_item."""
    for line in describe(connection):
        print(line)
    print(f"table: bench_item, 10 columns, {rows:,} rows; {workload}")
    connection.execute(TABLE_SQL.format(rows=int(rows)))
    connection.execute("VACUUM ANALYZE bench_item")


def run(dsn: str, bindir: Path | None, args: argparse.Namespace) -> None:
    pgbench = find_pgbench(bindir)
    with psycopg.connect(dsn, autocommit=True) as connection:
        create_table(connection, args.rows,
                     f"pgbench {args.clients} clients, {args.seconds} s per run, best of {args.repeat}")
        create_log(connection)
        install(connection, "audit", [])  # the schema only, so the first audited run pays no set-up
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
            handle.write(PGBENCH_SCRIPT.format(rows=args.rows))
            script = Path(handle.name)

        results: dict[tuple[str, str], float] = {}
        for sync_commit in ("on", "off"):
            for mode in MODES * args.repeat:
                set_triggers(connection, mode, TABLE_KEY, "row")
                tps = pgbench_tps(pgbench, dsn, script, args.clients, args.seconds, sync_commit)
                key = (mode, sync_commit)
                results[key] = max(results.get(key, 0.0), tps)

        # Every event so far is a one-column UPDATE of the 10-column table.
        update_events, update_bytes = log_size(connection)
        update_parts = log_parts(connection)

        bulk: dict[tuple[str, str], float] = {}
        for mode in MODES * args.repeat:
            set_triggers(connection, mode, TABLE_KEY, "statement")
            # UPDATE, then DELETE every row, then INSERT them back, so the table ends as it began.
            for action, statement in BULK_STATEMENTS.items():
                connection.execute("VACUUM bench_item")
                seconds = bulk_seconds(connection, statement.format(rows=int(args.rows)))
                bulk[(mode, action)] = min(bulk.get((mode, action), float("inf")), seconds)
        events, event_bytes = log_size(connection)
        set_triggers(connection, "plain", TABLE_KEY, "row")
        uninstall(connection, "audit", [], use_all=True, drop_data=True)
        drop_log(connection)
        connection.execute("DROP TABLE bench_item")
        script.unlink()

    print()
    print(f"{'measure':<44}{'no audit':>10}{'minimal':>10}{'audited':>10}{'minimal':>9}{'audited':>9}")
    for sync_commit in ("on", "off"):
        plain, minimal, audited = (results[(mode, sync_commit)] for mode in MODES)
        label = f"single-row UPDATE TPS, synchronous_commit={sync_commit}"
        print(f"{label:<44}{plain:>10.0f}{minimal:>10.0f}{audited:>10.0f}{minimal / plain:>9.2f}{audited / plain:>9.2f}")
    for action in BULK_STATEMENTS:
        plain, minimal, audited = (bulk[(mode, action)] for mode in MODES)
        label = f"one {action} of {args.rows:,} rows, seconds"
        print(f"{label:<44}{plain:>10.2f}{minimal:>10.2f}{audited:>10.2f}{minimal / plain:>8.1f}x{audited / plain:>8.1f}x")
    print("minimal: a row trigger inserting to_jsonb(NEW) for single rows, statement triggers with transition "
          "tables for the bulk statements, into one unindexed table (bench/minimal.py); last two columns: "
          "ratios to no audit")
    print(f"log size per one-column UPDATE event: {update_bytes / max(update_events, 1):.0f} bytes "
          f"(heap and indexes, {update_events:,} events from the single-row runs)")
    print("  of it: " + ", ".join(f"{name} {size / max(update_events, 1):.1f}" for name, size in update_parts))
    print(f"log size over all events: {event_bytes / max(events, 1):.0f} bytes per event ({events:,} events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="database to use; default: start a throwaway cluster")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the table (default 100000)")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients (default 4)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each pgbench run (default 10)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measure; the best is kept (default 2)")
    add_locale_option(parser)
    args = parser.parse_args()
    run_on_server(run, args)


def add_locale_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--icu-locale", metavar="LOCALE",
                        help="run in a new database whose default collation is this ICU locale, such as en-US, "
                             "as on many production servers (PostgreSQL 15 or later); default: the database's own, "
                             "C.UTF-8 in the throwaway cluster")


def run_on_server(benchmark: Callable[[str, Path | None, argparse.Namespace], T], args: argparse.Namespace) -> T:
    """Call ``benchmark`` on the --dsn database, or on a throwaway durable cluster that is removed afterwards."""
    if args.dsn:
        return in_locale_database(benchmark, args.dsn, None, args)
    binaries = (debian_binaries() or [b for b in [pgserver_binaries()] if b])
    if not binaries:
        sys.exit("no PostgreSQL server binaries found; pass --dsn")
    cluster = Cluster(binaries[-1], durable=True)
    cluster.start()
    try:
        return in_locale_database(benchmark, cluster.dsn(), binaries[-1].bindir, args)
    finally:
        cluster.stop()


def in_locale_database(benchmark: Callable[[str, Path | None, argparse.Namespace], T], dsn: str,
                       bindir: Path | None, args: argparse.Namespace) -> T:
    """Run ``benchmark`` on ``dsn``, or with --icu-locale in a new database of that collation, dropped afterwards."""
    locale = getattr(args, "icu_locale", None)
    if not locale:
        return benchmark(dsn, bindir, args)
    name = "auditctl_bench_icu"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(sql.SQL(
            "CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE {} LOCALE 'C.UTF-8'").format(
                sql.Identifier(name), sql.Literal(locale)))
    try:
        return benchmark(conninfo.make_conninfo(dsn, dbname=name), bindir, args)
    finally:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
