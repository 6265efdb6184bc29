"""Count the CPU instructions of one audited write, with callgrind.

Throughput ratios move with the machine: the same code kept 0.53 of
unaudited one-row UPDATE throughput on one run and 0.43 on another hours
later (bench_capture.py, synchronous_commit off). Instruction counts do
not move: callgrind counts what the server executes, the same from run to run
for the same binaries and inputs, whatever else the machine is doing.

The script loads the Prisma-style sample schema and seed (schema.sql and
seed.sql in PRISMA_DIR) into a throwaway cluster and restarts the server
under callgrind. It then runs the one-row transactions of bench_capture.py
with pgbench on one client, without triggers, with the minimal row trigger
of bench/minimal.py and with the auditctl triggers: set
the who-context, write one row, commit. A backend's count covers its whole
life, so each figure is the difference between a run of --transactions
more transactions and a short one, divided by --transactions.

    .venv/bin/python bench/bench_instructions.py
    .venv/bin/python bench/bench_instructions.py --transactions 1000

Needs valgrind and a PostgreSQL server build (Debian's, or pgserver's).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_capture import (MODES, PRISMA_DIR, DeletableProducts, load_schema, set_mode,  # noqa: E402
                           throughput_script)
from bench_triggers import describe, find_pgbench  # noqa: E402
from minimal import create_log  # noqa: E402
from pgcluster import Cluster, debian_binaries, pgserver_binaries  # noqa: E402

ACTIONS = ("UPDATE", "INSERT", "DELETE")
# Transactions of the short run, whose count is subtracted: it covers the
# backend's start, its first plans and its exit.
SHORT_RUN = 100
SERVER_OPTIONS = ["-c", "shared_buffers=1GB", "-c", "max_wal_size=4GB", "-c", "autovacuum=off",
                  "-c", "max_connections=20"]


def backend_instructions(cluster: Cluster, pgbench: str, script: Path, transactions: int) -> int:
    """Run ``transactions`` with pgbench on one connection; return the instructions of its backend.

    Callgrind writes a file per process, named by its id, when the process
    exits, which can take seconds. The files of earlier runs are deleted
    first, since process ids wrap around and a new backend can take an old
    one's name. pgbench then opens two connections: one to look at the
    server, then the client's, whose backend runs far more instructions.
    """
    for path in cluster.root.glob("callgrind.*"):
        path.unlink()
    subprocess.run([pgbench, "-n", "-M", "prepared", "-c", "1", "-t", str(transactions), "-f", str(script),
                    cluster.dsn("postgres")], check=True, capture_output=True, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        new = list(cluster.root.glob("callgrind.*"))
        totals = [_totals(path) for path in new]
        if len(new) == 2 and None not in totals:
            return max(totals)
        if len(new) > 2:
            sys.exit(f"callgrind files of {len(new)} processes came from one pgbench run, expected 2: "
                     + ", ".join(path.name for path in new))
        time.sleep(0.5)
    sys.exit("callgrind wrote no totals for the pgbench backend within 300 s; see " + str(cluster.log_path))


@contextlib.contextmanager
def traced_connection(cluster: Cluster) -> Iterator[psycopg.Connection]:
    """Connect to the server under callgrind; after closing, wait until its backend's callgrind file is written.

    backend_instructions() then finds only the files of pgbench's backends.
    """
    with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as connection:
        pid = connection.info.backend_pid
        yield connection
    wait_for_totals(cluster, cluster.root / f"callgrind.{pid}")


def wait_for_totals(cluster: Cluster, path: Path) -> int:
    """Wait until callgrind has written the file ``path``, and return its total instructions."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if path.exists() and (total := _totals(path)) is not None:
            return total
        time.sleep(0.5)
    sys.exit(f"callgrind wrote no totals to {path} within 300 s; see {cluster.log_path}")


def _totals(path: Path) -> int | None:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return None


def start_under_callgrind(cluster: Cluster) -> subprocess.Popen:
    """Restart the cluster's server as a child of valgrind; callgrind follows every backend it forks."""
    cluster._run([str(cluster.binaries.bindir / "pg_ctl"), "-D", str(cluster.datadir), "-m", "fast", "-w", "stop"])
    log = open(cluster.log_path, "ab")  # noqa: SIM115 (closed with the server)
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={cluster.root}/callgrind.%p",
         str(cluster.binaries.bindir / "postgres"), "-D", str(cluster.datadir), "-c", f"port={cluster.port}",
         "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={cluster.root}", *SERVER_OPTIONS],
        user=cluster.run_as, cwd=cluster.root, stdout=log, stderr=log)
    # Under valgrind the server takes a while to start and to accept logins.
    deadline = time.monotonic() + 180
    while True:
        try:
            with psycopg.connect(cluster.dsn("postgres"), connect_timeout=5) as connection:
                pid = connection.info.backend_pid
            wait_for_totals(cluster, cluster.root / f"callgrind.{pid}")
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(1)


def stop_under_callgrind(server: subprocess.Popen | None) -> None:
    """Stop the server that start_under_callgrind() started, if it did."""
    if server is None:
        return
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=120)
    except subprocess.TimeoutExpired:
        server.kill()


def measure(cluster: Cluster, pgbench: str, workdir: Path, args: argparse.Namespace,
            modes: tuple[str, ...] = MODES, set_triggers: Callable[[psycopg.Connection, str], None] = set_mode,
            ) -> dict[tuple[str, str], float]:
    """Return the instructions per transaction of each (mode, action); ``set_triggers`` puts a mode's triggers."""
    scripts = {}
    for action in ACTIONS:
        scripts[action] = workdir / f"{action.lower()}.sql"
        scripts[action].write_text(throughput_script(action), encoding="utf-8")
    with traced_connection(cluster) as connection:
        DeletableProducts().ensure(connection, len(modes) * (1 + 2 * SHORT_RUN + args.transactions))
    per_transaction = {}
    for mode in modes:
        if mode != "plain":
            with traced_connection(cluster) as connection:
                set_triggers(connection, mode)
                connection.execute("CHECKPOINT")
        for action in ACTIONS:
            # The first backend after DDL rebuilds the relation cache's
            # init file, which costs far more than the transactions.
            backend_instructions(cluster, pgbench, scripts[action], 1)
            short = backend_instructions(cluster, pgbench, scripts[action], SHORT_RUN)
            long = backend_instructions(cluster, pgbench, scripts[action], SHORT_RUN + args.transactions)
            per_transaction[mode, action] = (long - short) / args.transactions
            print(f"  {mode} {action}: {per_transaction[mode, action] / 1000:,.1f}k instructions per transaction",
                  file=sys.stderr, flush=True)
    return per_transaction


def parse_arguments(description: str) -> argparse.Namespace:
    """Parse the command line of a script that counts instructions per transaction."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--transactions", type=int, default=500,
                        help="transactions counted per figure (default 500)")
    return parser.parse_args()


@contextlib.contextmanager
def callgrind_cluster(prepare: Callable[[psycopg.Connection], None]) -> Iterator[tuple[Cluster, str, list[str]]]:
    """Start a throwaway cluster, load the sample schema and run ``prepare``, then restart it under callgrind.

    Yields the cluster, the pgbench to use and the lines that describe the
    machine and server; stops the server and removes the cluster on exit.
    """
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed; on Debian: apt-get install valgrind")
    if not (PRISMA_DIR / "schema.sql").exists():
        sys.exit(f"the Prisma-style sample data is not in {PRISMA_DIR}")
    binaries = debian_binaries() or [b for b in [pgserver_binaries()] if b]
    if not binaries:
        sys.exit("no PostgreSQL server binaries found")
    pgbench = find_pgbench(binaries[-1].bindir)
    cluster = Cluster(binaries[-1], durable=True)
    cluster.start()
    server = None
    try:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as connection:
            load_schema(connection)
            create_log(connection)
            prepare(connection)
            settings = describe(connection)
        server = start_under_callgrind(cluster)
        yield cluster, pgbench, settings
    finally:
        stop_under_callgrind(server)
        shutil.rmtree(cluster.root, ignore_errors=True)


def main() -> None:
    args = parse_arguments(__doc__.split("\n\n")[0])
    with callgrind_cluster(lambda connection: None) as (cluster, pgbench, settings):
        with tempfile.TemporaryDirectory() as workdir:
            counts = measure(cluster, pgbench, Path(workdir), args)

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    for line in settings:
        print(line)
    print(f"workload: Prisma-style schema from {PRISMA_DIR}, pgbench -M prepared, 1 client, "
          f"{args.transactions} transactions per figure, each: set the who-context, write one row, commit")
    print()
    print(f"{'instructions per transaction (thousands)':<32}{'no audit':>10}{'minimal':>10}{'audited':>10}"
          f"{'added min.':>12}{'added aud.':>12}{'ratio min.':>12}{'ratio aud.':>12}")
    for action in ACTIONS:
        plain, minimal, audited = (counts[mode, action] for mode in MODES)
        print(f"{'one-row ' + action:<32}{plain / 1000:>10,.1f}{minimal / 1000:>10,.1f}{audited / 1000:>10,.1f}"
              f"{(minimal - plain) / 1000:>12,.1f}{(audited - plain) / 1000:>12,.1f}"
              f"{plain / minimal:>12.2f}{plain / audited:>12.2f}")
    print("minimal: a row trigger inserting to_jsonb(NEW), or OLD, into one unindexed table (bench/minimal.py)")
    print("ratio: unaudited / triggered instructions, the throughput ratio a CPU-bound server would show "
          "if the client cost nothing")


if __name__ == "__main__":
    os.umask(0o022)
    main()
