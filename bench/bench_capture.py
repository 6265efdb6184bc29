"""Measure audited single-row writes on an app-like schema, and check that no event is lost or extra.

Loads a Prisma-style sample schema and its seed (schema.sql and seed.sql in
PRISMA_DIR) into the schema bench_capture, then prints, from one run:

- pgbench TPS (-M prepared) of single-row UPDATE, INSERT and DELETE with
  synchronous_commit on and off, without triggers, with the minimal row
  trigger of bench/minimal.py and with the auditctl triggers, and the ratio
  of each to the unaudited TPS;
- a capture check: a mixed pgbench run in which about 30% of the
  transactions roll back and some committed ones roll back to a savepoint.
  Every committed transaction records its txid and its row changes in an
  unaudited ledger table, and the events are compared with that ledger.

    .venv/bin/python bench/bench_capture.py                  # throwaway cluster (Debian PostgreSQL or pgserver)
    .venv/bin/python bench/bench_capture.py --dsn "host=..."  # an existing database you may write to

Every pgbench transaction sets auditctl.user_id and auditctl.ip_address with
set_config(..., true), as the application does, and then writes. The script
exits with status 1 when the capture check fails.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from auditctl.audit.install import install, uninstall  # noqa: E402
from bench_triggers import add_locale_option, describe, find_pgbench, pgbench_tps, run_on_server  # noqa: E402
from minimal import create_log, drop_log, set_triggers  # noqa: E402

PRISMA_DIR = ROOT.parent / "shared" / "data" / "prisma-app"
SCHEMA = "bench_capture"
AUDITED_TABLES = [f"{SCHEMA}.Product", f"{SCHEMA}.WorkStage"]
MODES = ("plain", "minimal", "audited")
# Primary keys of the written tables, for the minimal triggers.
KEY_COLUMNS = {(SCHEMA, "Product"): ["id"], (SCHEMA, "WorkStage"): ["productId", "stageNo"]}
ROLLBACK_PERCENT = 30
SAVEPOINT_PERCENT = 25

# Created before the first install, so that DDL capture logs none of it.
# Ids of inserted products ('bi' || n) and deleted products ('bd' || n) come
# from sequences, so concurrent clients never collide or miss a row.
SETUP_SQL = f"""
CREATE SEQUENCE {SCHEMA}.inserted_product_seq;
CREATE SEQUENCE {SCHEMA}.deleted_product_seq;
CREATE TABLE {SCHEMA}.capture_ledger (
    txid                 bigint  PRIMARY KEY,
    changes              integer NOT NULL,
    savepoint_rollbacks  integer NOT NULL
);
"""

SET_CONTEXT = ("SELECT pg_catalog.set_config('auditctl.user_id', 'cl' || lpad(:user::text, 8, '0'), true), "
               "pg_catalog.set_config('auditctl.ip_address', '198.51.100.' || :user, true);")

# Each statement changes exactly one row, and an UPDATE always changes
# "progress", since an UPDATE that leaves a row as it was is not logged.
UPDATE_STAGE = (f'UPDATE {SCHEMA}."WorkStage" SET "progress" = ("progress" + 1) % 101, '
                "\"note\" = 'Проверил пользователь ' || :user "
                "WHERE \"productId\" = 'pr' || lpad(:product::text, 8, '0') AND \"stageNo\" = :stage")
INSERT_INTO_PRODUCT = (f'INSERT INTO {SCHEMA}."Product" '
                       '("id", "projectId", "serialNo", "title", "weightKg", "updatedAt")')
# The id and the serial number share one nextval(), which the subquery runs once.
INSERT_PRODUCT = (f"{INSERT_INTO_PRODUCT} "
                  "SELECT 'bi' || n, :project::integer, 'SN-bi-' || n, 'Изделие «Опора» ' || n, 12.5, now() "
                  f"FROM (SELECT nextval('{SCHEMA}.inserted_product_seq') AS n) AS next_id")
# The id is a scalar subquery, so nextval() runs once and the primary key index is used.
DELETE_PRODUCT = (f'DELETE FROM {SCHEMA}."Product" '
                  f"WHERE \"id\" = (SELECT 'bd' || nextval('{SCHEMA}.deleted_product_seq'))")
POPULATE_SQL = (f"{INSERT_INTO_PRODUCT} "
                "SELECT 'bd' || n, 1 + n %% 300, 'SN-bd-' || n, 'Изделие к списанию ' || n, 1.5, now() "
                "FROM generate_series(%s::bigint, %s::bigint) AS n")

WRITES = {"UPDATE": UPDATE_STAGE, "INSERT": INSERT_PRODUCT, "DELETE": DELETE_PRODUCT}
WRITTEN_TABLE = {"UPDATE": '"WorkStage"', "INSERT": '"Product"', "DELETE": '"Product"'}
VARIABLES = ["\\set user random(1, 200)", "\\set product random(1, 3000)", "\\set project random(1, 300)"]


def throughput_script(action: str) -> str:
    """Build the pgbench script of one request: set the context, write one row, commit."""
    return "\n".join([*VARIABLES, "\\set stage random(1, 5)", "BEGIN;", SET_CONTEXT,
                      WRITES[action] + ";", "COMMIT;", ""])


def _one_of(variable: str, writes: list[str], count: bool) -> list[str]:
    """Run the write chosen by ``variable`` (1, 2, ...).

    RETURNING with \\gset aborts the client unless exactly one row changed.
    """
    lines = []
    for number, write in enumerate(writes, start=1):
        lines.append(f"\\if {variable} = 1" if number == 1 else f"\\elif {variable} = {number}")
        lines.append(f"{write} RETURNING 1 AS written \\gset")
        if count:
            lines.append("\\set changes :changes + 1")
    return [*lines, "\\endif"]


def check_script() -> str:
    """Build the mixed script of the capture check.

    The first write is an UPDATE, INSERT or DELETE, an optional second one an
    INSERT or DELETE. Inserted and deleted rows belong to one transaction
    each, so only the updated stages are locked by several clients. A
    transaction updates at most one of stages 1-3 and then at most one of
    stages 4-5 (inside the savepoint), so no two clients wait on each other's
    stages in opposite order and they cannot deadlock.
    """
    main_update = UPDATE_STAGE.replace(":stage", ":main_stage")
    undone_update = UPDATE_STAGE.replace(":stage", ":undone_stage")
    return "\n".join([
        *VARIABLES, "\\set main_stage random(1, 3)", "\\set undone_stage random(4, 5)",
        "\\set first random(1, 3)", "\\set second random(0, 2)", "\\set undone random(1, 3)",
        "\\set savepoint random(1, 100)", "\\set outcome random(1, 100)",
        "\\set changes 0", "\\set savepoint_rollbacks 0",
        "BEGIN;", SET_CONTEXT,
        *_one_of(":first", [main_update, INSERT_PRODUCT, DELETE_PRODUCT], count=True),
        *_one_of(":second", [INSERT_PRODUCT, DELETE_PRODUCT], count=True),
        f"\\if :savepoint <= {SAVEPOINT_PERCENT}",
        "SAVEPOINT s;",
        *_one_of(":undone", [undone_update, INSERT_PRODUCT, DELETE_PRODUCT], count=False),
        "ROLLBACK TO SAVEPOINT s;",
        "\\set savepoint_rollbacks 1",
        "\\endif",
        f"\\if :outcome <= {ROLLBACK_PERCENT}",
        "ROLLBACK;",
        "\\else",
        f"INSERT INTO {SCHEMA}.capture_ledger (txid, changes, savepoint_rollbacks) "
        "VALUES (txid_current(), :changes, :savepoint_rollbacks);",
        "COMMIT;",
        "\\endif", ""])


class DeletableProducts:
    """Products inserted outside the measurement for the DELETE runs to remove, one per transaction."""

    def __init__(self) -> None:
        self.populated = 0

    def consumed(self, connection: psycopg.Connection) -> int:
        return connection.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE 0 END "
                                  f"FROM {SCHEMA}.deleted_product_seq").fetchone()[0]

    def ensure(self, connection: psycopg.Connection, needed: int) -> None:
        """Insert rows until at least ``needed`` are left; call it with the triggers off."""
        first = self.populated + 1
        last = self.consumed(connection) + needed
        if last >= first:
            connection.execute(POPULATE_SQL, (first, last))
            self.populated = last

    def verify_all_deleted(self, connection: psycopg.Connection) -> None:
        """Exit unless each DELETE so far removed exactly one row.

        Valid only before the capture check, whose rolled-back deletes leave their rows.
        """
        used = self.consumed(connection)
        if used > self.populated:
            sys.exit(f"ran out of rows to delete: transactions took {used:,} ids but only {self.populated:,} rows "
                     "existed, so the DELETE figures are wrong; rerun, and if it repeats raise the margin "
                     "in measure_throughput")
        left = connection.execute(f"SELECT count(*) FROM {SCHEMA}.\"Product\" WHERE \"id\" LIKE 'bd%'").fetchone()[0]
        if left != self.populated - used:
            sys.exit(f"DELETE runs left {left:,} of {self.populated:,} rows after {used:,} transactions; "
                     "expected one deleted row per transaction")


def load_schema(connection: psycopg.Connection) -> None:
    """Load the sample schema and seed into SCHEMA, replacing what an earlier run left."""
    connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    connection.execute(f"CREATE SCHEMA {SCHEMA}")
    connection.execute(f"SET search_path = {SCHEMA}")
    for name in ("schema.sql", "seed.sql"):
        connection.execute((PRISMA_DIR / name).read_text(encoding="utf-8"))
    connection.execute("RESET search_path")
    connection.execute(SETUP_SQL)


def set_audited(connection: psycopg.Connection, audited: bool) -> None:
    set_mode(connection, "audited" if audited else "plain")


def set_mode(connection: psycopg.Connection, mode: str) -> None:
    """Set the triggers of the written tables for ``mode``: none, the minimal row triggers, or auditctl's."""
    set_triggers(connection, mode, KEY_COLUMNS, "row")


def settle(connection: psycopg.Connection, checkpoint: bool) -> None:
    """Start each run from the same state: fresh statistics, no dead rows and, if allowed, a checkpoint."""
    connection.execute(f'VACUUM ANALYZE {SCHEMA}."Product", {SCHEMA}."WorkStage"')
    if checkpoint:
        connection.execute("CHECKPOINT")


def measure_throughput(connection: psycopg.Connection, dsn: str, pgbench: str, scripts: dict[str, Path],
                       deletable: DeletableProducts, checkpoint: bool,
                       args: argparse.Namespace) -> dict[tuple[str, str, str], float]:
    """Return the best TPS of every (action, synchronous_commit, mode); plain and audited runs alternate."""
    results: dict[tuple[str, str, str], float] = {}
    for sync_commit in ("on", "off"):
        for action in WRITES:
            if action == "DELETE":
                # In short runs on 2 CPUs a DELETE was at most 1.4 times as fast as an INSERT, so twice
                # the INSERT rate leaves a margin. verify_all_deleted exits if the rows ran out anyway.
                rate = max(results[("INSERT", sync_commit, mode)] for mode in MODES)
                set_audited(connection, False)
                deletable.ensure(connection, int(rate * 2 * args.seconds) * len(MODES) * args.repeat + 1000)
            for mode in MODES * args.repeat:
                set_mode(connection, mode)
                settle(connection, checkpoint)
                tps = pgbench_tps(pgbench, dsn, scripts[action], args.clients, args.seconds, sync_commit)
                key = (action, sync_commit, mode)
                results[key] = max(results.get(key, 0.0), tps)
            if action == "DELETE":
                deletable.verify_all_deleted(connection)
    return results


CHECK_QUERY = f"""
WITH events AS (
    SELECT transaction_id, count(*) AS changes
    FROM audit.events
    WHERE id > %(after_id)s AND action IN ('INSERT', 'UPDATE', 'DELETE') AND entity_type = ANY(%(tables)s)
    GROUP BY transaction_id
)
SELECT (SELECT count(*) FROM {SCHEMA}.capture_ledger),
       (SELECT count(*) FROM {SCHEMA}.capture_ledger WHERE savepoint_rollbacks > 0),
       (SELECT coalesce(sum(changes), 0) FROM {SCHEMA}.capture_ledger),
       (SELECT coalesce(sum(changes), 0) FROM events),
       (SELECT count(*) FROM events e
        WHERE NOT EXISTS (SELECT FROM {SCHEMA}.capture_ledger l WHERE l.txid = e.transaction_id)),
       (SELECT count(*) FROM {SCHEMA}.capture_ledger l FULL JOIN events e ON e.transaction_id = l.txid
        WHERE coalesce(l.changes, 0) <> coalesce(e.changes, 0))
"""


def run_check(connection: psycopg.Connection, dsn: str, pgbench: str, script: Path, deletable: DeletableProducts,
              rate: float, args: argparse.Namespace) -> tuple[bool, list[str]]:
    """Run the mixed workload with the triggers on and compare the events with the ledger.

    Returns whether the check passed, and the lines that report it.
    """
    set_audited(connection, False)
    # At most three deletes per transaction, 0.75 on average; two per transaction leaves a margin.
    deletable.ensure(connection, int(rate * 2 * args.check_seconds) + 1000)
    set_audited(connection, True)
    connection.execute(f"TRUNCATE {SCHEMA}.capture_ledger")
    after_id = connection.execute("SELECT coalesce(max(id), 0) FROM audit.events").fetchone()[0]
    result = subprocess.run([pgbench, "-n", "-M", "prepared", "-c", str(args.clients), "-j", str(args.clients),
                             "-T", str(args.check_seconds), "-f", str(script), dsn],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return False, [f"pgbench failed with exit status {result.returncode}:", result.stdout.strip(),
                       result.stderr.strip()]
    processed = int(re.search(r"number of transactions actually processed: (\d+)", result.stdout).group(1))
    committed, with_savepoint, ledger_changes, event_changes, unknown, differing = connection.execute(
        CHECK_QUERY, {"after_id": after_id, "tables": AUDITED_TABLES}).fetchone()
    passed = ledger_changes == event_changes and unknown == 0 and differing == 0
    lines = [f"transactions: {committed:,} committed ({with_savepoint:,} of them rolled back to a savepoint), "
             f"{processed - committed:,} rolled back",
             f"{'row changes committed (ledger)':<50}{ledger_changes:>12,}",
             f"{'events of the audited tables':<50}{event_changes:>12,}",
             f"{'transactions with events but no ledger row':<50}{unknown:>12,}",
             f"{'transactions whose counts differ':<50}{differing:>12,}"]
    return passed, lines


def run(dsn: str, bindir: Path | None, args: argparse.Namespace) -> bool:
    """Run both parts and print them; return whether the capture check passed."""
    pgbench = find_pgbench(bindir)
    with psycopg.connect(dsn, autocommit=True) as connection, tempfile.TemporaryDirectory() as scripts_dir:
        for line in describe(connection):
            print(line)
        checkpoint = connection.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
        print(f"workload: Prisma-style schema from {PRISMA_DIR}, pgbench -M prepared, {args.clients} clients, "
              f"{args.seconds} s per run, best of {args.repeat}; "
              f"{'CHECKPOINT' if checkpoint else 'no CHECKPOINT (not a superuser)'} and VACUUM before each run")
        scripts = {action: Path(scripts_dir, f"{action.lower()}.sql") for action in WRITES}
        for action, path in scripts.items():
            path.write_text(throughput_script(action), encoding="utf-8")
        check_path = Path(scripts_dir, "check.sql")
        check_path.write_text(check_script(), encoding="utf-8")
        try:
            load_schema(connection)
            create_log(connection)
            install(connection, "audit", [])  # the schema only, so the first audited run pays no set-up
            deletable = DeletableProducts()
            results = measure_throughput(connection, dsn, pgbench, scripts, deletable, checkpoint, args)
            rate = max(tps for (_action, sync_commit, _mode), tps in results.items() if sync_commit == "on")
            passed, check_lines = run_check(connection, dsn, pgbench, check_path, deletable, rate, args)
        finally:
            set_mode(connection, "plain")
            uninstall(connection, "audit", [], use_all=True, drop_data=True)
            drop_log(connection)
            connection.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")

    print()
    print(f"{'measure':<50}{'no audit':>10}{'minimal':>10}{'audited':>10}{'minimal':>9}{'audited':>9}")
    for sync_commit in ("on", "off"):
        for action in WRITES:
            plain, minimal, audited = (results[(action, sync_commit, mode)] for mode in MODES)
            label = f"{action} {WRITTEN_TABLE[action]} TPS, synchronous_commit={sync_commit}"
            print(f"{label:<50}{plain:>10.0f}{minimal:>10.0f}{audited:>10.0f}"
                  f"{minimal / plain:>9.2f}{audited / plain:>9.2f}")
    print("minimal: a row trigger inserting to_jsonb(NEW), or OLD, into one unindexed table (bench/minimal.py); "
          "last two columns: TPS ratios to no audit")
    print()
    print(f"capture check: {args.check_seconds} s, {args.clients} clients, about {ROLLBACK_PERCENT}% of transactions "
          f"roll back, {SAVEPOINT_PERCENT}% roll back to a savepoint")
    for line in check_lines:
        print(line)
    print(f"capture check: {'PASS' if passed else 'FAIL'}")
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="database to use; default: start a throwaway cluster")
    parser.add_argument("--clients", type=int, default=4, help="pgbench clients (default 4)")
    parser.add_argument("--seconds", type=int, default=10, help="length of each throughput run in seconds (default 10)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measure; the best is kept (default 2)")
    parser.add_argument("--check-seconds", type=int, default=20,
                        help="length of the capture check run in seconds (default 20)")
    add_locale_option(parser)
    args = parser.parse_args()
    print("command:", shlex.join([sys.executable, *sys.argv]))
    if not (PRISMA_DIR / "schema.sql").is_file() or not (PRISMA_DIR / "seed.sql").is_file():
        sys.exit(f"sample schema not found: {PRISMA_DIR} must contain schema.sql and seed.sql")
    passed = run_on_server(run, args)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
