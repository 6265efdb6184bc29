"""Compare `auditctl backup` with a bare `pg_dump -Fc` of the same database, in the same run.

    .venv/bin/python bench/backup_bench.py [--rows 200000 1000000] [--repeat 3]

Starts a throwaway PostgreSQL cluster (Debian's newest server under
/usr/lib/postgresql, as the tests do), fills one table per size, and for
each size reports the median wall time of: pg_dump -Fc to a file; auditctl
backup without encryption or mail; auditctl backup with an age recipient.
Peak memory is the largest resident set of any single process in the run
(wait4's ru_maxrss), so flat numbers across sizes mean nothing is held in
memory in proportion to the dump.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import psycopg  # noqa: E402
from pgcluster import Cluster, debian_binaries  # noqa: E402
from pyrage import x25519  # noqa: E402

from auditctl.backup.pgtools import find_tool  # noqa: E402


def run_measured(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run a command; return wall seconds and peak RSS in KiB of its largest process."""
    started = time.perf_counter()
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args[0]} failed: {process.stderr.read().decode()}")
    return elapsed, usage.ru_maxrss


def fill(dsn: str, rows: int) -> int:
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS bench_rows")
        connection.execute("CREATE TABLE bench_rows (id bigint PRIMARY KEY, payload text, amount numeric)")
        connection.execute("INSERT INTO bench_rows SELECT g, md5(g::text) || md5((g * 7)::text), g * 0.01 "
                           "FROM generate_series(1, %s) g", (rows,))
        return connection.execute("SELECT pg_database_size(current_database())").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()

    binaries = debian_binaries()[-1]
    cluster = Cluster(binaries)
    cluster.start()
    try:
        dsn = cluster.dsn("postgres")
        with psycopg.connect(dsn) as connection:
            server_major = connection.info.server_version // 10000
        pg_dump = str(find_tool("pg_dump", server_major).path)
        recipient = str(x25519.Identity.generate().to_public())
        env = {**os.environ, "AUDITCTL_DSN": dsn, "LANG": "C.UTF-8"}
        print(f"server: {binaries.label}, pg_dump: {pg_dump}, cores: {os.cpu_count()}")
        print("| rows | db size MiB | pg_dump -Fc s | auditctl s | ratio | +age s | peak RSS KiB pg_dump / auditctl / +age |")
        print("|---|---|---|---|---|---|---|")
        for rows in options.rows:
            size = fill(dsn, rows)
            timings: dict[str, list[float]] = {"pg_dump": [], "auditctl": [], "age": []}
            peaks: dict[str, int] = {"pg_dump": 0, "auditctl": 0, "age": 0}
            for _ in range(options.repeat):
                with tempfile.TemporaryDirectory() as folder:
                    commands = {
                        "pg_dump": [pg_dump, "-Fc", "-f", f"{folder}/bare.dump", dsn],
                        "auditctl": [sys.executable, "-m", "auditctl", "-q", "backup", "--dir", folder],
                        "age": [sys.executable, "-m", "auditctl", "-q", "backup", "--dir", folder,
                                "--recipient", recipient],
                    }
                    for name, args in commands.items():
                        seconds, peak = run_measured(args, env)
                        timings[name].append(seconds)
                        peaks[name] = max(peaks[name], peak)
            median = {name: statistics.median(values) for name, values in timings.items()}
            print(f"| {rows:,} | {size / 2**20:.0f} | {median['pg_dump']:.2f} | {median['auditctl']:.2f} | "
                  f"{median['auditctl'] / median['pg_dump']:.2f} | {median['age'] - median['auditctl']:+.2f} | "
                  f"{peaks['pg_dump']:,} / {peaks['auditctl']:,} / {peaks['age']:,} |")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
