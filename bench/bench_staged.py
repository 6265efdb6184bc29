"""Count the instructions of a staged capture design: a lean trigger now, the log's work later.

In a staged design the trigger only appends the raw rows and the
who-context to an unindexed inbox table. A later job (cron, or the next
reader) moves them into the indexed, partitioned log and compares old and
new values there. Would auditctl then meet the single-row goals? This
script measures both halves on the Prisma-style tables of
bench_capture.py, with the method of bench_instructions.py (callgrind,
pgbench on one client, instructions per transaction):

- ``staged``: a PL/pgSQL row trigger, SECURITY DEFINER with a fixed
  search_path like auditctl's. It inserts one row into an inbox table
  without indexes: the event's id from the log's sequence, the time, role
  and transaction, the three settings of the who-context as text, the
  table's OID, the operation, and ``to_jsonb`` of OLD and NEW.
- ``staged-floor``: the same trigger without SECURITY DEFINER and without
  the id, the least such a design could do while still recording who
  acted and both sides of an UPDATE. An application role would then need
  INSERT on the inbox, so it could write events of its own making.
- the move: one ``DELETE ... RETURNING`` feeding an INSERT into
  ``audit.events`` that keeps only changed columns, run once over every row
  the ``staged`` runs left in the inbox; its instructions per event.

These triggers are an experiment, not auditctl code: they apply no column
rules and do not validate the address. Results and what they mean for the
design are in bench/RESULTS.md.

    .venv/bin/python bench/bench_staged.py
    .venv/bin/python bench/bench_staged.py --transactions 1000

Needs valgrind and a PostgreSQL server build (Debian's, or pgserver's).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_capture import KEY_COLUMNS, PRISMA_DIR, set_mode  # noqa: E402
from bench_instructions import (ACTIONS, backend_instructions, callgrind_cluster, measure,  # noqa: E402
                                parse_arguments, traced_connection)
from pgcluster import Cluster  # noqa: E402

MODES = ("plain", "minimal", "staged", "staged-floor", "audited")
INBOX_SQL = """
CREATE SCHEMA IF NOT EXISTS bench_stage;
DROP TABLE IF EXISTS bench_stage.inbox;
CREATE TABLE bench_stage.inbox (
    id               bigint {id_default},
    occurred_at      timestamptz NOT NULL DEFAULT pg_catalog.statement_timestamp(),
    db_user          text        NOT NULL DEFAULT pg_catalog."session_user"(),
    transaction_id   bigint      NOT NULL DEFAULT pg_catalog.txid_current(),
    user_id          text,
    ip_address       text,
    application_name text,
    table_id         oid         NOT NULL,
    operation        "char"      NOT NULL,
    old_row          jsonb,
    new_row          jsonb
);
CREATE OR REPLACE FUNCTION bench_stage.capture() RETURNS trigger LANGUAGE plpgsql
{definer}
AS $body$
BEGIN
    INSERT INTO bench_stage.inbox (user_id, ip_address, application_name, table_id, operation, old_row, new_row)
    VALUES (pg_catalog.current_setting('auditctl.user_id', true),
            pg_catalog.current_setting('auditctl.ip_address', true),
            pg_catalog.current_setting('application_name'), TG_RELID, TG_OP::"char",
            CASE WHEN TG_OP <> 'INSERT' THEN pg_catalog.to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN pg_catalog.to_jsonb(NEW) END);
    RETURN NULL;
END
$body$;
"""
STAGED = {"id_default": "NOT NULL DEFAULT pg_catalog.nextval('audit.events_id_seq')",
          "definer": "SECURITY DEFINER SET search_path = pg_catalog, pg_temp"}
STAGED_FLOOR = {"id_default": "", "definer": ""}

# The move of the inbox into the log. A key is read from the row's JSON as
# auditctl's triggers read it: the text of a one-column key, a JSON array
# of a longer one.
MOVE_SQL = """
WITH moved AS (DELETE FROM bench_stage.inbox RETURNING *)
INSERT INTO audit.events (id, occurred_at, user_id, ip_address, db_user, application_name, transaction_id,
                          action, entity_type, entity_id, old_values, new_values)
SELECT m.id, m.occurred_at, NULLIF(m.user_id, ''), NULLIF(m.ip_address, '')::inet, m.db_user,
       NULLIF(m.application_name, ''), m.transaction_id,
       CASE m.operation WHEN 'I' THEN 'INSERT' WHEN 'U' THEN 'UPDATE' ELSE 'DELETE' END,
       n.nspname || '.' || c.relname,
       CASE WHEN c.relname = 'Product' THEN COALESCE(m.new_row, m.old_row) ->> 'id'
            ELSE pg_catalog.jsonb_build_array(COALESCE(m.new_row, m.old_row) -> 'productId',
                                              COALESCE(m.new_row, m.old_row) -> 'stageNo')::text END,
       CASE WHEN m.operation = 'U'
            THEN (SELECT pg_catalog.jsonb_object_agg(o.key, o.value) FROM pg_catalog.jsonb_each(m.old_row) AS o
                  WHERE m.new_row -> o.key IS DISTINCT FROM o.value)
            ELSE m.old_row END,
       CASE WHEN m.operation = 'U'
            THEN (SELECT pg_catalog.jsonb_object_agg(o.key, o.value) FROM pg_catalog.jsonb_each(m.new_row) AS o
                  WHERE m.old_row -> o.key IS DISTINCT FROM o.value)
            ELSE m.new_row END
FROM moved AS m
JOIN pg_catalog.pg_class AS c ON c.oid = m.table_id
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace;
"""


def set_staged_mode(connection: psycopg.Connection, mode: str) -> None:
    """Put the triggers of ``mode``: a staged variant of this script, or a mode of bench_capture.py."""
    for schema, table in KEY_COLUMNS:
        connection.execute(f'DROP TRIGGER IF EXISTS bench_staged ON "{schema}"."{table}"')
    if mode not in ("staged", "staged-floor"):
        set_mode(connection, mode)
        return
    set_mode(connection, "plain")
    variant = STAGED if mode == "staged" else STAGED_FLOOR
    connection.execute(INBOX_SQL.format(**variant))
    for schema, table in KEY_COLUMNS:
        connection.execute(f'CREATE TRIGGER bench_staged AFTER INSERT OR UPDATE OR DELETE ON "{schema}"."{table}" '
                           "FOR EACH ROW EXECUTE FUNCTION bench_stage.capture()")


def measure_move(cluster: Cluster, pgbench: str, workdir: Path) -> tuple[int, float]:
    """Move what the staged runs left in the inbox into the log; return the events and instructions per event."""
    with traced_connection(cluster) as connection:
        pending = connection.execute("SELECT count(*) FROM bench_stage.inbox").fetchone()[0]
    move = workdir / "move.sql"
    move.write_text(MOVE_SQL, encoding="utf-8")
    empty = workdir / "empty.sql"
    empty.write_text("SELECT 1;\n", encoding="utf-8")
    backend_instructions(cluster, pgbench, empty, 1)
    baseline = backend_instructions(cluster, pgbench, empty, 1)
    total = backend_instructions(cluster, pgbench, move, 1)
    with traced_connection(cluster) as connection:
        left = connection.execute("SELECT count(*) FROM bench_stage.inbox").fetchone()[0]
    if left or not pending:
        sys.exit(f"the move left {left} of {pending} inbox rows")
    return pending, (total - baseline) / pending


def create_log_first(connection: psycopg.Connection) -> None:
    """Install auditctl's log and remove its triggers: the staged trigger takes its ids from the log's sequence."""
    set_mode(connection, "audited")
    set_mode(connection, "plain")


def main() -> None:
    args = parse_arguments(__doc__.split("\n\n")[0])
    with callgrind_cluster(create_log_first) as (cluster, pgbench, settings):
        with tempfile.TemporaryDirectory() as workdir:
            counts = measure(cluster, pgbench, Path(workdir), args, MODES, set_staged_mode)
            # The staged-floor runs replaced the inbox, so the staged runs fill a new one for the move.
            measure(cluster, pgbench, Path(workdir), args, ("staged",), set_staged_mode)
            moved, per_event = measure_move(cluster, pgbench, Path(workdir))

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    for line in settings:
        print(line)
    print(f"workload: Prisma-style schema from {PRISMA_DIR}, pgbench -M prepared, 1 client, "
          f"{args.transactions} transactions per figure, each: set the who-context, write one row, commit")
    print()
    print(f"{'thousands of instructions per transaction':<44}" + "".join(f"{mode:>14}" for mode in MODES))
    for action in ACTIONS:
        plain = counts["plain", action]
        print(f"{'one-row ' + action:<44}" + "".join(f"{counts[mode, action] / 1000:>14,.1f}" for mode in MODES))
        print(f"{'  added by the trigger':<44}"
              + "".join(f"{(counts[mode, action] - plain) / 1000:>14,.1f}" for mode in MODES))
        print(f"{'  ratio: unaudited / triggered':<44}"
              + "".join(f"{plain / counts[mode, action]:>14.2f}" for mode in MODES))
    print()
    print(f"move of the inbox into the log: {moved:,} events, {per_event / 1000:,.1f}k instructions per event")
    print("minimal: the row trigger of bench/minimal.py; audited: auditctl's triggers; staged and staged-floor: "
          "the inbox triggers of this script")


if __name__ == "__main__":
    os.umask(0o022)
    main()
