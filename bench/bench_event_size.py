"""Measure the bytes of log (heap and indexes) that each audited one-row write adds.

Uses the 10-column table of bench_triggers.py. For each case the audit log
starts empty: auditctl is installed on the table, pgbench makes the writes
from 4 clients, and the growth of the log's partitions and their indexes,
after VACUUM, is divided by the number of events. The cases:

- UPDATE of one integer column without the who-context, as bench_triggers.py
  measures it;
- the same UPDATE with auditctl.user_id and auditctl.ip_address set, as an
  application sets them, so that the index by user has an entry for every event;
- INSERT and DELETE of one row with the who-context set;
- one UPDATE of every row of the table in a single statement, with the
  who-context set, where all events share the user and the time.

Each case prints the sizes twice: as written, and after REINDEX, which
`auditctl maintain` runs on a partition once its period has ended.

    .venv/bin/python bench/bench_event_size.py                  # throwaway cluster (Debian PostgreSQL or pgserver)
    .venv/bin/python bench/bench_event_size.py --dsn "host=..."  # an existing database you may write to

Sizes depend on the data and on how many events each row has, because the
index by row stores each key once per page with a list of events. They do not
depend on the load of the machine, so the figures repeat from run to run.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditctl.audit.install import install, uninstall  # noqa: E402
from bench_capture import SET_CONTEXT  # noqa: E402
from bench_triggers import create_table, find_pgbench, log_parts, run_on_server  # noqa: E402

# Each case: its label, whether it sets the who-context, its statement, and
# whether that one statement writes every row (run once) instead of one row
# (run once per event). INSERT takes new ids from a sequence that starts
# above the table's rows, and DELETE removes those rows again, in the same order.
CASES = [
    ("UPDATE of one column, no who-context", False, "UPDATE bench_item SET qty = qty + 1 WHERE id = :id", False),
    ("UPDATE of one column, user and address set", True, "UPDATE bench_item SET qty = qty + 1 WHERE id = :id",
     False),
    ("INSERT of one row, user and address set", True,
     "INSERT INTO bench_item (id, sku, title, qty, price, weight_kg, tags) "
     "SELECT n.id, 'SKU-' || n.id, 'Изделие номер ' || n.id, n.id % 100, (n.id % 1000) / 10.0, n.id / 7.0, "
     "ARRAY['a', 'b'] FROM (SELECT nextval('bench_size_insert') AS id) AS n", False),
    ("DELETE of one row, user and address set", True,
     "DELETE FROM bench_item AS b USING (SELECT nextval('bench_size_delete') AS id) AS n WHERE b.id = n.id", False),
    ("UPDATE of one column in every row by one statement, user and address set", True,
     "UPDATE bench_item SET qty = qty + 1", True),
]


def script(context: bool, statement: str, rows: int) -> str:
    """Build the pgbench script of one case: set the context if asked, run the statement, commit."""
    lines = [f"\\set id random(1, {rows})", "\\set user random(1, 200)", "BEGIN;"]
    if context:
        lines.append(SET_CONTEXT)
    lines += [statement + ";", "COMMIT;", ""]
    return "\n".join(lines)


def run_case(connection: psycopg.Connection, pgbench: str, dsn: str, context: bool, statement: str,
             whole_table: bool, args: argparse.Namespace
             ) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """Run one case on an empty log; return its events and the bytes each part of the log grew by.

    The second list of sizes is taken after REINDEX, which `maintain` runs
    on a partition once its period has ended.
    """
    uninstall(connection, "audit", [], use_all=True, drop_data=True)
    install(connection, "audit", ["public.bench_item"])
    connection.execute("VACUUM audit.events")
    empty = dict(log_parts(connection))
    before = connection.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    with tempfile.NamedTemporaryFile("w", suffix=".sql", encoding="utf-8") as handle:
        handle.write(script(context, statement, args.rows))
        handle.flush()
        clients, transactions = (1, 1) if whole_table else (args.clients, args.events // args.clients)
        subprocess.run([pgbench, "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients),
                        "-t", str(transactions), "-f", handle.name, dsn],
                       capture_output=True, text=True, check=True)
    connection.execute("VACUUM audit.events")
    events = connection.execute("SELECT count(*) FROM audit.events").fetchone()[0] - before
    grown = [(name, size - empty.get(name, 0)) for name, size in log_parts(connection)]
    # What `maintain` does once the partition's period has ended.
    connection.execute("REINDEX TABLE audit.events")
    packed = [(name, size - empty.get(name, 0)) for name, size in log_parts(connection)]
    return events, grown, packed


def run(dsn: str, bindir: Path | None, args: argparse.Namespace) -> None:
    pgbench = find_pgbench(bindir)
    with psycopg.connect(dsn, autocommit=True) as connection:
        create_table(connection, args.rows, f"pgbench {args.clients} clients, {args.events:,} one-row writes "
                                            "per case, each in its own transaction; the last case is one "
                                            f"UPDATE of all {args.rows:,} rows")
        connection.execute(f"CREATE SEQUENCE bench_size_insert START {int(args.rows) + 1}")
        connection.execute(f"CREATE SEQUENCE bench_size_delete START {int(args.rows) + 1}")
        try:
            results = [(label, *run_case(connection, pgbench, dsn, context, statement, whole_table, args))
                       for label, context, statement, whole_table in CASES]
        finally:
            uninstall(connection, "audit", [], use_all=True, drop_data=True)
            connection.execute("DROP TABLE bench_item")
            connection.execute("DROP SEQUENCE bench_size_insert, bench_size_delete")

    print()
    for label, events, grown, packed in results:
        total = sum(size for _name, size in grown)
        print(f"{label}: {total / max(events, 1):.0f} bytes per event ({events:,} events)")
        print("  of it: " + ", ".join(f"{name} {size / max(events, 1):.1f}" for name, size in grown))
        total = sum(size for _name, size in packed)
        print(f"  after the index rebuild of an ended partition: {total / max(events, 1):.0f} bytes per event; "
              + ", ".join(f"{name} {size / max(events, 1):.1f}" for name, size in packed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="database to use; default: start a throwaway cluster")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the table (default 100000)")
    parser.add_argument("--events", type=int, default=100_000, help="one-row writes per case (default 100000)")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients (default 4)")
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    run_on_server(run, args)


if __name__ == "__main__":
    main()
