"""The CLI contract: options, output formats, errors and languages."""

from __future__ import annotations

import csv
import importlib
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading

import psycopg
import pytest
from psycopg import conninfo

from auditctl.audit.install import install
from auditctl.audit.query import EventFilter, stream_csv
from auditctl.audit.rules import Rule
from conftest import REPO_ROOT, run_cli, run_cli_in_terminal, start_cli
from helpers import as_app_user, events, table_owner_dsn, write_reading_in_two_zones


@pytest.fixture
def audited(db):
    """A database with one audited table and a few events by two users."""
    with db.connect() as connection:
        connection.execute('CREATE TABLE "Order" (id int PRIMARY KEY, note text, total numeric)')
        install(connection, "audit", [], use_all=True)
        as_app_user(connection, "alice", "192.0.2.1",
                    """INSERT INTO "Order" VALUES (1, 'первый', 10)""",
                    """UPDATE "Order" SET total = 12 WHERE id = 1""")
        as_app_user(connection, "bob", "192.0.2.2", """DELETE FROM "Order" WHERE id = 1""")
    return db


def test_query_json_contract(audited, cli):
    result = cli("query", "--format", "json", dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    # The oldest event is auditctl's own record of the install.
    assert [r["action"] for r in rows] == ["DELETE", "UPDATE", "INSERT", "AUDIT_INSTALL"]
    assert set(rows[0]) >= {"id", "occurred_at", "user_id", "ip_address", "db_user", "action", "entity_type",
                            "entity_id", "old", "new", "details"}
    assert set(rows[0]) - {"id", "occurred_at", "user_id", "ip_address", "db_user", "action", "entity_type",
                           "entity_id", "old", "new", "details"} == {"application_name", "transaction_id"}
    assert rows[1]["old"] == {"total": 10}
    assert rows[1]["new"] == {"total": 12}
    assert rows[2]["new"]["note"] == "первый"


@pytest.mark.parametrize(("options", "expected"), [
    (["--user", "alice"], ["UPDATE", "INSERT"]),
    (["--action", "delete"], ["DELETE"]),
    (["--action", "Insert", "--action", "DELETE"], ["DELETE", "INSERT"]),
    (["--table", "Order"], ["DELETE", "UPDATE", "INSERT"]),
    (["--table", "public.Order"], ["DELETE", "UPDATE", "INSERT"]),
    (["--table", "order"], ["DELETE", "UPDATE", "INSERT"]),
    (["--entity-id", "1", "--user", "bob"], ["DELETE"]),
    (["--since", "1h"], ["DELETE", "UPDATE", "INSERT", "AUDIT_INSTALL"]),
    (["--since", "2999-01-01"], []),
    (["--until", "2000-01-01T00:00:00+00:00"], []),
    (["--limit", "1"], ["DELETE"]),
    (["--table", '"Order"'], ["DELETE", "UPDATE", "INSERT"]),
    (["--table", '"public"."Order"'], ["DELETE", "UPDATE", "INSERT"]),
], ids=["user", "action-lower", "actions", "table-bare", "table-qualified", "table-case", "entity", "since-1h",
        "since-future", "until-past", "limit", "table-quoted", "table-quoted-qualified"])
def test_query_filters(audited, cli, options, expected):
    result = cli("query", "--format", "json", *options, dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    assert [r["action"] for r in json.loads(result.stdout)] == expected


def test_query_table_output(audited, cli):
    result = cli("query", dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    assert "public.Order" in result.stdout
    assert "total: 10 → 12" in result.stdout
    assert "alice" in result.stdout


def test_query_csv_newest_first(audited, cli):
    result = cli("query", "--format", "csv", dsn=audited.dsn)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["action"] for r in rows] == ["DELETE", "UPDATE", "INSERT", "AUDIT_INSTALL"]


def test_export_jsonl_and_csv_agree(audited, cli, tmp_path):
    target = tmp_path / "events.jsonl"
    result = cli("export", "--format", "jsonl", "-o", str(target), dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    text = target.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert text.startswith('{"id":')
    assert list(lines[1]) == ["id", "occurred_at", "user_id", "ip_address", "db_user", "action", "entity_type",
                              "entity_id", "old", "new", "details", "application_name", "transaction_id"]
    as_csv = list(csv.DictReader(io.StringIO(cli("export", dsn=audited.dsn).stdout)))
    assert [line["action"] for line in lines] == ["AUDIT_INSTALL", "INSERT", "UPDATE", "DELETE"]
    assert [row["id"] for row in as_csv] == [str(line["id"]) for line in lines]
    assert json.loads(as_csv[1]["new"]) == lines[1]["new"]
    assert json.loads(as_csv[0]["details"]) == lines[0]["details"]
    assert as_csv[1]["occurred_at"] == lines[1]["occurred_at"]
    assert list(tmp_path.iterdir()) == [target]


@pytest.mark.parametrize("formula_safe", [False, True], ids=["plain", "formula-safe"])
def test_export_orders_ties_by_number(audited, cli, formula_safe):
    """Events of one statement share their time; CSV lists them by id as numbers, not as text ("10" < "9")."""
    with audited.connect() as connection:
        connection.execute("""INSERT INTO "Order" SELECT g, 'n', g FROM generate_series(2, 13) g""")
        oldest, newest = (
            list(csv.DictReader(io.StringIO(b"".join(
                stream_csv(connection, "audit", EventFilter(), newest_first=order, formula_safe=formula_safe))
                .decode())))
            for order in (False, True))

    ids = [int(row["id"]) for row in oldest]
    assert len(ids) == 16
    assert max(ids) >= 10
    assert ids == sorted(ids)
    assert [int(row["id"]) for row in newest] == sorted(ids, reverse=True)


def test_export_failure_leaves_no_file(audited, cli, tmp_path):
    target = tmp_path / "events.csv"
    result = cli("export", "-o", str(target), "--schema", "nosuch", dsn=audited.dsn)
    assert result.exit_code != 0
    # pgserver keeps its own lock folder (runtime-*); the demo's server files must be gone.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("auditctl-demo-")] == []


# Root passes every permission check, yet /sys refuses new files with EACCES
# and /proc with ENOENT, so these fail for root too.
UNWRITABLE_OUTPUTS = {
    "sys": ("/sys/events.{ext}",
            "Cannot write /sys/events.{ext}: folder /sys is not writable (Permission denied); "
            "write to another folder."),
    "proc": ("/proc/events.{ext}",
             "Cannot write /proc/events.{ext}: folder /proc is not writable (new files cannot be created there); "
             "write to another folder."),
    "missing-folder": ("{tmp}/missing/events.{ext}",
                       "Cannot write {tmp}/missing/events.{ext}: folder {tmp}/missing does not exist; "
                       "create it or write to another folder."),
    "file-as-folder": ("{tmp}/file/events.{ext}",
                       "Cannot write {tmp}/file/events.{ext}: {tmp}/file is not a folder; write to a file in a folder."),
}


@pytest.mark.parametrize("output_format", ["csv", "parquet"])
@pytest.mark.parametrize(("target", "message"), UNWRITABLE_OUTPUTS.values(), ids=UNWRITABLE_OUTPUTS.keys())
def test_export_to_unwritable_place(audited, cli, tmp_path, output_format, target, message):
    (tmp_path / "file").write_text("x")
    values = {"tmp": tmp_path, "ext": output_format}

    result = cli("export", "--format", output_format, "-o", target.format(**values), dsn=audited.dsn)

    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip() == f"Error: {message.format(**values)}"
    assert [path.name for path in tmp_path.iterdir()] == ["file"]


def test_event_command(audited, cli):
    result = cli("event", "login", "--user", "alice", "--ip", "2001:db8::1", "--details", '{"method": "sso"}',
                 dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    with audited.connect() as connection:
        [event] = events(connection, where="action = 'LOGIN'")
    assert event["user_id"] == "alice"
    assert str(event["ip_address"]) == "2001:db8::1"
    assert event["details"] == {"method": "sso"}


@pytest.mark.parametrize(("args", "fragment"), [
    (["query", "--since", "yesterday"], "Invalid --since value 'yesterday'"),
    (["query", "--until", "2026-13-45"], "Invalid --until value"),
    (["query", "--since", "10000000d"], "Invalid --since value '10000000d': the moment is out of range"),
    (["query", "--until", "99999999999999999999w"], "Invalid --until value '99999999999999999999w': the moment"),
    (["export", "--since", "0001-01-01"], "Invalid --since value '0001-01-01': the moment is out of range"),
    (["status", "--keep", "10000000d"], "Invalid --keep value '10000000d': it reaches back before the year 1"),
    (["query", "--since", "1d", "--until", "2d"], "is later than --until"),
    (["install", "nosuch"], "Table 'nosuch' not found"),
    (["install", "Order", "--all"], "either table names or --all"),
    (["uninstall", "--drop-data"], "needs --all"),
    (["event", "LOGIN", "--user", "u", "--details", "{bad"], "Invalid --details JSON"),
    (["event", "LOGIN", "--user", "u", "--details", "[1]"], "expected a JSON object"),
    (["event", "UPDATE", "--user", "u"], "reserved for row changes"),
    (["event", "log in", "--user", "u"], "Invalid action"),
    (["event", "LOGIN", "--user", "u", "--ip", "abc"], "Invalid --ip value 'abc'"),
    (["query", "--schema", "nosuch"], "schema 'nosuch' is not installed"),
    (["query", "--table", "Nonexistent"], "Table 'Nonexistent' not found in the database or in the audit log"),
    (["query", "--action", "updat"],
     "Unknown action updat: no event in the log has it. Known actions: INSERT, UPDATE, DELETE"),
    (["export", "--action", "Insert", "--action", "updat"], "Unknown action updat:"),
    (["query", "--entity-id", '["a", 5'], """Invalid --entity-id '["a", 5': not valid JSON at character 8."""),
    (["query", "--entity-id", '["a", null]'], "key values must be strings or numbers"),
    (["query", "--entity-id", "[]"], "expected a non-empty JSON array"),
    (["uninstall", "Order", "--all"], "Give either table names or --all, not both."),
    (["redact", "--entity", "Order", "--dry-run"],
     "Option --entity is missing its value: it got --dry-run, which is an option of this command;"),
    (["query", "--user", "--since"], "Option --user is missing its value: it got --since"),
    (["status", "--schema", "--format"], "Option --schema is missing its value: it got --format"),
    (["install", "Order", "--app-role", "--dry-run"], "Option --app-role is missing its value: it got --dry-run"),
    (["redact", "--user", ""], "Invalid --user value '': it is empty;"),
    (["redact", "--user", "alice", "--actor", " "], "Invalid --actor value ' ': it is empty;"),
    (["event", "LOGIN", "--user", ""], "Invalid --user value '': it is empty;"),
    (["event", "LOGIN", "--user", "u", "--entity-type", ""], "Invalid --entity-type value '': it is empty;"),
    (["query", "--limit", "99999999999999999999"],
     "Invalid --limit 99999999999999999999: a page holds at most 100000 events;"),
    (["install", "Order", "--schema", ""], "Invalid --schema value '': it is empty;"),
    (["query", "--schema", ""], "Invalid --schema value '': it is empty;"),
    (["install", "Order", "--app-role", ""], "Invalid --app-role value '': it is empty;"),
    (["install", "Order", "--viewer-role", ""], "Invalid --viewer-role value '': it is empty;"),
    (["install", "Order", "--auto-schema", "", "--auto-audit"], "Invalid --auto-schema value '': it is empty;"),
    (["install", "Order", "--auto-schema", "nosuchschema", "--auto-audit"],
     "Schema 'nosuchschema' of --auto-schema does not exist in this database;"),
    (["install", "Order", "--app-role", "nosuchrole", "--dry-run"], "Role 'nosuchrole' does not exist."),
    (["install", "Order", "--auto-exclude", "", "--auto-audit"], "Invalid --auto-exclude value '': it is empty;"),
    (["install", "Order", "--auto-schema", "public"],
     "--auto-schema and --auto-exclude choose the new tables that --auto-audit audits,"),
    (["query", "--table", '"order"'], """Table '"order"' not found in the database or in the audit log."""),
    (["history", '"order"', "1"], """Table '"order"' not found in the database or in the audit log."""),
], ids=["since", "until", "since-too-far-back", "until-huge-number", "since-first-day", "status-keep-too-long",
        "since-after-until", "unknown-table", "names-and-all", "drop-data", "details-json", "details-array",
        "reserved-action", "bad-action", "bad-ip", "no-schema", "unknown-query-table", "unknown-action",
        "unknown-export-action", "entity-id-json", "entity-id-null", "entity-id-empty", "uninstall-names-and-all",
        "redact-id-is-option", "query-user-is-option", "status-schema-is-option", "install-role-is-option", "redact-empty-user",
        "redact-blank-actor", "event-empty-user", "event-empty-entity-type", "query-huge-limit",
        "install-empty-schema", "query-empty-schema", "empty-app-role", "empty-viewer-role", "empty-auto-schema",
        "missing-auto-schema", "dry-run-missing-role", "empty-auto-exclude", "auto-schema-without-auto-audit",
        "quoted-table-wrong-case", "quoted-history-wrong-case"])
def test_bad_input_one_line_error(audited, cli, args, fragment):
    with audited.connect() as connection:
        before = connection.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    result = cli(*args, dsn=audited.dsn)
    assert result.exit_code != 0
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    with audited.connect() as connection:
        assert connection.execute("SELECT count(*) FROM audit.events").fetchone()[0] == before


def test_empty_schema_variable_is_error(audited, cli):
    result = cli("status", env={"AUDITCTL_SCHEMA": ""}, dsn=audited.dsn)
    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: AUDITCTL_SCHEMA is set but empty; set it to the name of the audit "
                                     "schema, such as audit, or unset it.")


EMPTY_VALUE_FIXES = {
    "--since": "give 30m, 12h, 7d, 2w, a date (2026-12-01) or an ISO timestamp, or leave --since out.",
    "--until": "give 30m, 12h, 7d, 2w, a date (2026-12-01) or an ISO timestamp, or leave --until out.",
    "--action": "give an action such as UPDATE or LOGIN, or leave --action out.",
    "--user": "give an application user id, or leave --user out.",
    "--table": "give a table as TABLE or SCHEMA.TABLE, or leave --table out.",
    "--entity-id": "give a primary key value, or a JSON array for a composite key, or leave --entity-id out.",
}


@pytest.mark.parametrize("command", ["query", "export"])
@pytest.mark.parametrize("option", EMPTY_VALUE_FIXES)
def test_empty_filter_value_rejected(audited, cli, command, option):
    result = cli(command, option, "", dsn=audited.dsn)
    assert result.exit_code == 2, result.stdout
    assert result.stdout == ""
    assert result.stderr.strip() == f"Error: Invalid {option} value '': it is empty; {EMPTY_VALUE_FIXES[option]}"


def test_upper_case_units_accepted(audited, cli):
    upper = cli("query", "--since", "7D", "--until", "0H", "--format", "json", dsn=audited.dsn)
    lower = cli("query", "--since", "7d", "--until", "0h", "--format", "json", dsn=audited.dsn)
    assert upper.exit_code == 0, upper.stderr
    assert json.loads(upper.stdout) == json.loads(lower.stdout)
    assert json.loads(upper.stdout) != []
    month = cli("query", "--since", "3M", dsn=audited.dsn)
    assert month.exit_code == 2
    assert "Units: s, m, h, d, w, and S, H, D, W." in month.stderr


@pytest.mark.parametrize("action", ["redact", "BACKUP_FAILED", "ROTATE"])
def test_query_unused_system_action(audited, cli, action):
    result = cli("query", "--action", action, "--format", "json", dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_connection_error_hides_password(cli):
    result = cli("status", dsn="postgresql://app:s3cret-pw@127.0.0.1:1/appdb?connect_timeout=2")
    assert result.exit_code != 0
    assert "Could not connect to host=127.0.0.1 port=1 dbname=appdb user=app" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


MALFORMED_URL = "The postgresql:// URL from {origin} is malformed: it has an @ other than the one"
UNPARSABLE_DSN = "Invalid DSN from {origin}: libpq cannot parse it, and its reason is not shown"


@pytest.mark.parametrize(("command", "dsn", "message"), [
    ("status", "postgresql://postgres:Sup3r@Secret@127.0.0.1:5491:x/pagila", MALFORMED_URL),
    ("status", "postgresql://postgres:Sup3r/Secret@127.0.0.1:1/pagila", MALFORMED_URL),
    ("status", "postgresql://postgres:Sup3r?Secret@127.0.0.1:1/pagila?schema=public", MALFORMED_URL),
    ("status", "postgresql://postgres:Sup3r%Secret@127.0.0.1:1/pagila", "write a % in the user name"),
    ("status", "postgresql://127.0.0.1:1/pagila?password=Sup3r&Secret", UNPARSABLE_DSN),
    ("status", "host=127.0.0.1 port=1 password=Sup3r Secret", UNPARSABLE_DSN),
    ("status", 'host=127.0.0.1 port=1 password="Sup3r Secret"', UNPARSABLE_DSN),
    ("status", "host=127.0.0.1 port=1 password='Sup3r' Secret'", UNPARSABLE_DSN),
    ("status", "host=127.0.0.1 port=1 password=Sup3r Secret=x", UNPARSABLE_DSN),
    ("cron maintain", "host=127.0.0.1 port=1 password=Sup3r Secret", UNPARSABLE_DSN),
], ids=["url-at", "url-slash", "url-question-mark", "url-percent", "url-query", "keyword-space",
        "keyword-double-quotes", "keyword-stray-quote", "keyword-equals", "cron-keyword-space"])
@pytest.mark.parametrize("origin", ["--dsn", "AUDITCTL_DSN"])
def test_malformed_dsn_hides_password(cli, tmp_path, command, dsn, message, origin):
    arguments = [*command.split(), "--crontab-file", str(tmp_path / "crontab")] if command != "status" else [command]
    if origin == "--dsn":
        result = cli(*arguments, "--dsn", dsn)
    else:
        result = cli(*arguments, dsn=dsn)
    assert result.exit_code == 2, result.stderr
    assert message.format(origin=origin).lower() in result.stderr.lower()
    for piece in ("Sup3r", "Secret"):
        assert piece not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_unparsable_dsn_without_password_says_why(cli):
    result = cli("status", "--dsn", "host=127.0.0.1 port=1 bogus")
    assert result.exit_code == 2
    assert result.stderr.strip() == ('Error: Invalid DSN from --dsn: missing "=" after "bogus" in connection info '
                                     'string. Use a libpq connection string or a postgresql:// URL.')


@pytest.mark.parametrize(("language", "warning"), [
    ("C.UTF-8", "Warning: The DSN from --dsn contains a password; keep it in AUDITCTL_DSN, PGPASSWORD or ~/.pgpass "
                "instead."),
    ("ru_RU.UTF-8", "Предупреждение: DSN из --dsn содержит пароль; храните его в AUDITCTL_DSN, PGPASSWORD или "
                    "~/.pgpass."),
], ids=["en", "ru"])
def test_password_in_dsn_warning(audited, cli, language, warning):
    # The test servers trust local connections, so the password is not checked.
    dsn = audited.dsn + " password=s3cret-pw"
    result = cli("status", "--dsn", dsn, env={"LANG": language})
    assert result.exit_code == 0, result.stderr
    user_lines = [line for line in result.stderr.splitlines() if " auditctl " not in line]
    assert user_lines == [warning]
    assert "s3cret-pw" not in result.stderr + result.stdout


def test_dsn_sources_in_order(audited, cli):
    prisma_url = "postgresql://{user}@127.0.0.1:{port}/{db}?schema=public".format(
        user="postgres", port=audited.server.admin_dsn.split("port=")[1].split()[0], db=audited.name)
    from_database_url = cli("status", "--format", "json", env={"DATABASE_URL": prisma_url})
    assert from_database_url.exit_code == 0, from_database_url.stderr
    overridden = cli("status", "--format", "json", env={"DATABASE_URL": "postgresql://x@127.0.0.1:1/x"},
                     dsn=audited.dsn)
    assert overridden.exit_code == 0, overridden.stderr
    pg_vars = cli("status", "--format", "json",
                  env={"PGHOST": "127.0.0.1", "PGPORT": prisma_url.split(":")[2].split("/")[0],
                       "PGDATABASE": audited.name, "PGUSER": "postgres"})
    assert pg_vars.exit_code == 0, pg_vars.stderr
    assert json.loads(pg_vars.stdout)["installed"] is True


# A DSN on which no server listens, to show which of two DSNs a command used.
UNREACHABLE_DSN = "host=127.0.0.1 port=1 dbname=unreachable connect_timeout=2"


@pytest.mark.parametrize(("args", "from_environment", "reachable"), [
    (["--dsn", "{dsn}", "status"], False, True),
    (["status", "--dsn", "{dsn}"], False, True),
    (["--dsn", UNREACHABLE_DSN, "status", "--dsn", "{dsn}"], False, True),
    (["--dsn", "{dsn}", "status", "--dsn", UNREACHABLE_DSN], False, False),
    (["--dsn", UNREACHABLE_DSN, "status"], True, False),
    (["-q", "--dsn", "{dsn}", "status", "-v"], False, True),
    (["status"], True, True),
], ids=["before-command", "after-command", "command-over-global", "command-over-global-unreachable",
        "global-over-environment", "with-global-flags", "environment"])
def test_dsn_before_or_after_command(audited, cli, args, from_environment, reachable):
    result = cli(*[arg.format(dsn=audited.dsn) for arg in args], "--format", "json",
                 dsn=audited.dsn if from_environment else None)
    if reachable:
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["installed"] is True
    else:
        assert result.exit_code == 1, result.stderr
        assert "Could not connect to host=127.0.0.1 port=1 dbname=unreachable (DSN from --dsn)" in result.stderr


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--dsn", "", "status"], {}, "Error: The DSN from --dsn is empty;"),
    (["status", "--dsn", " "], {}, "Error: The DSN from --dsn is empty;"),
    (["status"], {"AUDITCTL_DSN": ""}, "Error: AUDITCTL_DSN is set but empty;"),
    (["status"], {"DATABASE_URL": ""}, "Error: DATABASE_URL is set but empty;"),
    (["cron", "maintain", "--crontab-file", "{tmp}/crontab"], {"AUDITCTL_DSN": ""},
     "Error: AUDITCTL_DSN is set but empty;"),
], ids=["global-option", "command-option", "auditctl-dsn", "database-url", "cron-line"])
def test_empty_dsn_is_rejected(audited, cli, tmp_path, args, env, message):
    # libpq would otherwise reach the database that the PG* variables name.
    params = conninfo.conninfo_to_dict(audited.dsn)
    pg_variables = {"PGHOST": params["host"], "PGPORT": str(params["port"]), "PGDATABASE": audited.name,
                    "PGUSER": params["user"]}

    result = cli(*[arg.format(tmp=tmp_path) for arg in args], env={**pg_variables, **env})

    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(message)
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert not (tmp_path / "crontab").exists()


def test_cron_line_takes_dsn_before_command(cli, tmp_path):
    crontab = tmp_path / "crontab"
    dsn = "host=127.0.0.1 dbname=app user=app_owner"
    result = cli("--dsn", dsn, "cron", "maintain", "--crontab-file", str(crontab))
    assert result.exit_code == 0, result.stderr
    assert f"--dsn '{dsn}'" in crontab.read_text()


@pytest.mark.parametrize("command", [[], ["install"], ["maintain"], ["query"], ["backup"], ["rotate"], ["history"],
                                     ["event"]],
                         ids=["main", "install", "maintain", "query", "backup", "rotate", "history", "event"])
def test_help_shows_no_flag_type(cli, command):
    help_text = cli(*command, "--help").stdout
    assert "--help" in help_text
    assert "<bool>" not in help_text
    assert "<str>" not in help_text
    assert "<list[" not in help_text
    assert "<int range>" not in help_text
    assert "......" not in help_text
    assert not re.search(r"-v\s+<int>", help_text)
    assert re.search(r"--help\s+Show this message", help_text)
    assert re.search(r"^ *Usage: auditctl", help_text, re.MULTILINE)


@pytest.mark.parametrize("language", ["C.UTF-8", "ru_RU.UTF-8"])
def test_help_fits_eighty_columns(cli, language):
    env = {"COLUMNS": "80", "LANG": language}
    install = " ".join(cli("install", "--help", env=env).stdout.split())
    backup = " ".join(cli("backup", "--help", env=env).stdout.split())
    assert "session_replication_role" in install
    assert "--[no-]enable-always" in install
    assert "--[no-]globals" in backup
    assert "~/.config/auditctl." in backup
    assert "\\[mail]" not in backup
    rotate = " ".join(cli("rotate", "--help", env=env).stdout.split())
    assert "csv.gz, jsonl.zst" in rotate
    assert "<csv.gz" not in rotate


def test_switch_negative_form_parses(cli, tmp_path):
    result = cli("backup", "--no-globals", "--dir", str(tmp_path / "missing"))
    assert "No such option" not in result.stderr
    assert "does not exist" in result.stderr


def test_russian_messages(audited, cli):
    env = {"LANG": "ru_RU.UTF-8"}
    help_text = cli("--help", env=env).stdout
    assert "Журнал аудита и резервные копии для PostgreSQL" in help_text
    assert "Команды" in help_text
    assert re.search(r"--help\s+Показать эту справку и выйти", help_text)
    assert "Использование: auditctl query [ПАРАМЕТРЫ]" in cli("query", "--help", env=env).stdout
    assert "Usage" not in help_text
    assert "Show this" not in help_text
    error = cli("query", "--since", "вчера", env=env, dsn=audited.dsn)
    assert "Неверное значение --since «вчера»" in error.stderr
    key_error = cli("query", "--entity-id", '["a",', env=env, dsn=audited.dsn).stderr
    assert "Неверное значение --entity-id «[\"a\",»: это не JSON (ошибка в символе 6)" in key_error
    assert "Expecting" not in key_error
    table = cli("query", env=env, dsn=audited.dsn).stdout
    assert "Действие" in table


@pytest.mark.parametrize(("details", "got"), [
    ("[1]", "получен массив"),
    ('"text"', "получена строка"),
    ("true", "получено логическое значение"),
    ("null", "получен null"),
    ("5", "получено число"),
], ids=["array", "string", "boolean", "null", "number"])
def test_details_type_error_in_russian(details, got):
    from auditctl.audit.events import parse_details
    from auditctl.errors import InvalidArgumentError
    from auditctl.i18n import use_language
    with use_language("ru"), pytest.raises(InvalidArgumentError) as caught:
        parse_details(details)
    assert str(caught.value) == f"Неверное значение --details: ожидался JSON-объект, {got}."


@pytest.mark.parametrize(("args", "expected"), [
    (["maintain", "--ahead", "400"], "Ошибка: Неверное значение --ahead «400»: укажите число секций от 0 до 366.\n"),
    (["query", "--after", "-5"], "Ошибка: Неверное значение --after «-5»: укажите номер события.\n"),
    (["query", "--action", "updat"], "Ошибка: Неизвестное действие «updat»: в журнале нет событий с ним. "),
], ids=["ahead", "after", "action"])
def test_russian_error_quotes_value(audited, cli, args, expected):
    result = cli(*args, env={"LANG": "ru_RU.UTF-8"}, dsn=audited.dsn)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(expected)


def test_quiet_help_in_russian(cli):
    # In Russian "журнал" is the audit log, so the help of -q must not say it writes to one.
    help_text = cli("--help", env={"LANG": "ru_RU.UTF-8"}).stdout
    flowing = " ".join(help_text.replace("│", " ").split())
    assert "Сообщать только об ошибках; maintain тогда печатает только то, что требует внимания." in flowing
    assert "Записывать в журнал" not in flowing


def test_details_json_error_in_russian():
    from auditctl.audit.events import parse_details
    from auditctl.errors import InvalidArgumentError
    from auditctl.i18n import use_language
    with use_language("ru"), pytest.raises(InvalidArgumentError) as caught:
        parse_details("{bad")
    message = str(caught.value)
    assert "Expecting" not in message
    assert message == ("Неверное значение --details: это не JSON (ошибка в строке 1, столбце 2). "
                       "Передайте JSON-объект, например «{\"reason\": \"manual\"}».")


def test_install_names_tables_in_russian(db, cli):
    with db.connect() as connection:
        connection.execute('CREATE TABLE "Order" (id int PRIMARY KEY)')
    env = {"LANG": "ru_RU.UTF-8"}
    installed = cli("install", "--all", env=env, dsn=db.dsn)
    removed = cli("uninstall", "--all", env=env, dsn=db.dsn)
    assert installed.exit_code == 0, installed.stderr
    assert "Триггер аудита установлен для таблицы public.Order" in installed.stdout
    assert removed.exit_code == 0, removed.stderr
    assert "Триггер аудита снят с таблицы public.Order" in removed.stdout


@pytest.mark.parametrize("variable", ["LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"])
def test_locale_variables_choose_russian(cli, variable):
    env = {"LANG": "C.UTF-8", variable: "ru_RU.UTF-8"}
    if variable == "LANGUAGE":
        env["LANGUAGE"] = "ru"
    assert "Команды" in cli("--help", env=env).stdout


# Command lines that typer rejects before any command runs, with the
# English and the Russian line each must print.
USAGE_ERRORS = {
    "unknown-option": (["query", "--zzz"], "No such option: --zzz. See 'auditctl query --help'.",
                       "Нет такого параметра: --zzz. См. «auditctl query --help»."),
    "unknown-option-hint": (["query", "--limt", "5"],
                            "No such option: --limt (Possible options: --limit). See 'auditctl query --help'.",
                            "Нет такого параметра: --limt (похожие параметры: --limit). См. «auditctl query --help»."),
    "missing-argument": (["history"], "Missing argument 'TABLE'. Usage: auditctl history [OPTIONS] TABLE ID...",
                         "Не указан аргумент «ТАБЛИЦА». Использование: auditctl history [ПАРАМЕТРЫ] ТАБЛИЦА ID..."),
    "not-a-choice": (["query", "--format", "xml"],
                     "Invalid value for '--format': 'xml' is not one of 'table', 'json', 'csv'. "
                     "See 'auditctl query --help'.",
                     "Неверное значение «--format»: «xml» не входит в число допустимых значений: "
                     "«table», «json», «csv». См. «auditctl query --help»."),
    "directory-not-file": (["serve", "--token-file", "."],
                           "Invalid value for '--token-file': '.' is a directory, not a file. "
                           "See 'auditctl serve --help'.",
                           "Неверное значение «--token-file»: «.» — папка, а не файл. См. «auditctl serve --help»."),
    "extra-argument": (["status", "extra"], "Got unexpected extra argument(s) (extra). Usage: auditctl status [OPTIONS]",
                       "Лишние аргументы: extra. Использование: auditctl status [ПАРАМЕТРЫ]"),
    "unknown-command": (["stauts"], "No such command 'stauts'. Did you mean 'status'? See 'auditctl --help'.",
                        "Нет такой команды «stauts». Возможно, вы имели в виду «status»? См. «auditctl --help»."),
    "option-without-value": (["query", "--limit"], "Option '--limit' requires an argument. See 'auditctl query --help'.",
                             "Для параметра «--limit» нужно указать значение. См. «auditctl query --help»."),
    "subgroup-option-without-value": (["cron", "maintain", "--schedule"],
                                      "Option '--schedule' requires an argument. See 'auditctl cron maintain --help'.",
                                      "Для параметра «--schedule» нужно указать значение. "
                                      "См. «auditctl cron maintain --help»."),
    "flag-with-value": (["install", "--all=3"], "Option '--all' does not take a value. See 'auditctl install --help'.",
                        "Параметр «--all» не принимает значения. См. «auditctl install --help»."),
}


@pytest.mark.parametrize("case", USAGE_ERRORS.values(), ids=USAGE_ERRORS.keys())
@pytest.mark.parametrize(("env", "prefix"), [({"LANG": "C.UTF-8"}, "Error: "), ({"LC_ALL": "ru_RU.UTF-8"}, "Ошибка: ")],
                         ids=["en", "ru"])
def test_usage_error_one_line(cli, case, env, prefix):
    args, english, russian = case
    result = cli(*args, env=env)
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == prefix + (english if prefix == "Error: " else russian) + "\n"


def test_usage_error_follows_lc_all(cli):
    # LC_ALL=C outranks LANG, as in gettext.
    result = cli("query", "--zzz", env={"LANG": "ru_RU.UTF-8", "LC_ALL": "C"})
    assert result.exit_code == 2, result.stderr
    assert result.stderr == "Error: No such option: --zzz. See 'auditctl query --help'.\n"


# Values of number options and arguments that typer rejects, with the
# English and the Russian line each must print.
NUMBER_VALUE_ERRORS = {
    "transaction-text": (["revert", "--transaction", "X", "--dry-run"],
                         "Invalid --transaction value 'X': it is not an integer; give an integer of at least 1.",
                         "Неверное значение --transaction «X»: это не целое число; укажите целое число не меньше 1."),
    "limit-zero": (["query", "--limit", "0"],
                   "Invalid --limit value '0': it is out of range; give an integer of at least 1.",
                   "Неверное значение --limit «0»: оно вне допустимого диапазона; укажите целое число не меньше 1."),
    "limit-fraction": (["query", "--limit", "1.5"],
                       "Invalid --limit value '1.5': it is not an integer; give an integer of at least 1.",
                       "Неверное значение --limit «1.5»: это не целое число; укажите целое число не меньше 1."),
    "after-text": (["query", "--after", "x"], "Invalid --after value 'x': it is not an integer; give an integer.",
                   "Неверное значение --after «x»: это не целое число; укажите целое число."),
    "event-id-zero": (["revert", "0"], "Invalid EVENT_ID value '0': it is out of range; give an integer of at least 1.",
                      "Неверное значение НОМЕР_СОБЫТИЯ «0»: оно вне допустимого диапазона; "
                      "укажите целое число не меньше 1."),
    "lock-timeout-text": (["install", "--lock-timeout", "abc"],
                          "Invalid --lock-timeout value 'abc': it is not a number; give a number of at least 0.1.",
                          "Неверное значение --lock-timeout «abc»: это не число; укажите число не меньше 0.1."),
    "session-hours-above": (["serve", "--session-hours", "1000"],
                            "Invalid --session-hours value '1000': it is out of range; give a number from 0.1 to 720.",
                            "Неверное значение --session-hours «1000»: оно вне допустимого диапазона; "
                            "укажите число от 0.1 до 720."),
    "port-above": (["serve", "--port", "70000"],
                   "Invalid --port value '70000': it is out of range; give an integer from 1 to 65535.",
                   "Неверное значение --port «70000»: оно вне допустимого диапазона; укажите целое число от 1 до 65535."),
    "compress-above": (["backup", "--compress", "10"],
                       "Invalid --compress value '10': it is out of range; give an integer from 0 to 9.",
                       "Неверное значение --compress «10»: оно вне допустимого диапазона; "
                       "укажите целое число от 0 до 9."),
    "control-character": (["backup", "--keep-last", "\x1b[2J"],
                          "Invalid --keep-last value '\\x1b[2J': it is not an integer; give an integer of at least 0.",
                          "Неверное значение --keep-last «\\x1b[2J»: это не целое число; "
                          "укажите целое число не меньше 0."),
}


@pytest.mark.parametrize("case", NUMBER_VALUE_ERRORS.values(), ids=NUMBER_VALUE_ERRORS.keys())
@pytest.mark.parametrize(("env", "prefix"), [({"LANG": "C.UTF-8"}, "Error: "), ({"LC_ALL": "ru_RU.UTF-8"}, "Ошибка: ")],
                         ids=["en", "ru"])
def test_bad_number_value_one_line(cli, case, env, prefix):
    args, english, russian = case
    result = cli(*args, env=env)
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr == prefix + (english if prefix == "Error: " else russian) + "\n"


def test_no_arguments_prints_help(cli):
    result = cli()
    assert result.exit_code == 2
    assert "Commands" in result.stdout
    assert result.stderr == ""


def test_usage_error_falls_back_to_typer(monkeypatch, capsys):
    # The package's ``app`` attribute is the typer app, so import the module by name.
    cli_app = importlib.import_module("auditctl.cli.app")
    monkeypatch.setattr(cli_app, "find_click_error_classes", lambda: None)
    # -x fails before the group callback, which would reconfigure the auditctl logger.
    monkeypatch.setattr("sys.argv", ["auditctl", "-x"])
    with pytest.raises(SystemExit) as exit_info:
        cli_app.main()
    assert exit_info.value.code == 2
    assert "No such option: -x" in capsys.readouterr().err


def test_status_and_uninstall_commands(audited, cli):
    status = cli("status", dsn=audited.dsn)
    assert status.exit_code == 0, status.stderr
    assert "public.Order" in status.stdout
    assert "audited" in status.stdout
    removed = cli("uninstall", "--all", dsn=audited.dsn)
    assert removed.exit_code == 0, removed.stderr
    assert "Audit trigger removed from public.Order" in removed.stdout
    after = json.loads(cli("status", "--format", "json", dsn=audited.dsn).stdout)
    assert after["tables"] == [{"table": "public.Order", "state": "not_audited", "interim": False,
                                "has_primary_key": True, "events": 3, "firing": None, "exposed_columns": [],
                                "unused_rules": [], "uncovered_partitions": [], "foreign_partitions": [],
                                "disabled_partitions": [], "unrecorded_actions": [], "partition_of": None,
                                "recorded_as": None}]


def test_install_dry_run_prints_sql(db, cli):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
    result = cli("install", "--all", "--dry-run", dsn=db.dsn)
    assert result.exit_code == 0, result.stderr
    assert "CREATE OR REPLACE FUNCTION" in result.stdout
    with db.connect() as connection:
        assert connection.execute("SELECT to_regnamespace('audit')").fetchone()[0] is None


def test_demo_runs_without_a_server(cli, tmp_path):
    result = cli("demo", env={"TMPDIR": str(tmp_path)})
    assert result.exit_code == 0, result.stderr
    assert "librarian-olga" in result.stdout
    assert "librarian-ben" in result.stdout
    assert "copies: 2 → 3" in result.stdout
    # pgserver keeps its own lock folder (runtime-*); the demo's server files must be gone.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("auditctl-demo-")] == []


def test_query_table_of_dropped_table(audited, cli):
    with audited.connect() as connection:
        connection.execute('DROP TABLE "Order"')
    result = cli("query", "--table", "Order", "--format", "json", dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    actions = [row["action"] for row in json.loads(result.stdout)]
    # The DROP TABLE itself comes first, then the three row changes.
    assert actions == ["DDL", "DELETE", "UPDATE", "INSERT"]


@pytest.fixture
def payments(db):
    """An audited partitioned table with a partition that is partitioned in turn, and one event in each."""
    with db.connect() as connection:
        connection.execute("""
            CREATE TABLE payment (id int, paid date, amount numeric, PRIMARY KEY (id, paid)) PARTITION BY RANGE (paid);
            CREATE TABLE payment_p2022_05 PARTITION OF payment FOR VALUES FROM ('2022-05-01') TO ('2022-06-01');
            CREATE TABLE payment_p2022_06 PARTITION OF payment FOR VALUES FROM ('2022-06-01') TO ('2022-07-01')
                PARTITION BY LIST (id);
            CREATE TABLE payment_p2022_06_odd PARTITION OF payment_p2022_06 FOR VALUES IN (1, 3);
        """)
        install(connection, "audit", ["payment"])
        connection.execute("INSERT INTO payment VALUES (1, '2022-05-03', 5), (3, '2022-06-02', 7)")
    return db


@pytest.mark.parametrize(("args", "fix"), [
    (["query", "--table", "payment_p2022_05"], "Use --table payment."),
    (["export", "--table", "public.Payment_P2022_06_odd"], "Use --table payment."),
    (["history", "payment_p2022_05", "1", "2022-05-03"], "Name the table payment instead."),
], ids=["query", "export-subpartition", "history"])
def test_partition_names_its_table(payments, cli, args, fix):
    result = cli(*args, dsn=payments.dsn)
    name = args[2] if args[1] == "--table" else args[1]
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.strip() == (
        f"Error: Table '{name}' is a partition of public.payment: the events of its rows are recorded under "
        f"public.payment, with the partition's name in their details. {fix}")
    logged = cli("query", "--table", "payment", "--format", "json", dsn=payments.dsn)
    assert [event["details"] for event in json.loads(logged.stdout)] == [
        {"partition": "payment_p2022_06_odd"}, {"partition": "payment_p2022_05"}]


@pytest.mark.parametrize(("args", "first_line_start"), [
    (["query", "--format", "csv", "--limit", "10000"], "id,occurred_at"),
    (["export", "--format", "jsonl"], '{"id"'),
    # JSON and the table are written at once, in one write far larger than a pipe holds.
    (["query", "--format", "json", "--limit", "1000"], "["),
    (["query", "--format", "table", "--limit", "1000"], "┏"),
], ids=["query-csv", "export-jsonl", "query-json", "query-table"])
def test_closed_pipe_ends_like_cat(db, args, first_line_start):
    with db.connect() as connection:
        connection.execute("CREATE TABLE item (id int PRIMARY KEY, note text)")
        install(connection, "audit", ["item"])
        # About 1.5 MB of output, far more than a pipe holds.
        connection.execute("INSERT INTO item SELECT g, repeat('x', 200) FROM generate_series(1, 6000) AS g")
    process = start_cli(*args, dsn=db.dsn)
    first_line = process.stdout.readline()
    process.stdout.close()
    # communicate() then reads stderr only.
    process.stdout = None
    try:
        _, stderr = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"auditctl {' '.join(args)} hung after its reader closed the pipe")
    assert first_line.startswith(first_line_start)
    # Like cat or psql, whose reader has gone: ended by SIGPIPE, which a shell reports as 141.
    assert process.returncode == -signal.SIGPIPE, stderr
    assert stderr == ""


def test_narrow_terminal_shows_blocks(audited, cli):
    result = cli("query", env={"COLUMNS": "80"}, dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    assert "┃" not in result.stdout
    assert "total: 10 → 12" in result.stdout
    assert "user alice, IP 192.0.2.1, role postgres" in result.stdout


def test_global_flags_after_command(audited, cli):
    result = cli("status", "-q", "--format", "json", dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["installed"] is True


def test_export_reports_written_file(audited, cli, tmp_path):
    target = tmp_path / "out.csv"
    result = cli("export", "-o", str(target), dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    assert f"Events written to {target}." in result.stderr


def _exported_actions(path, export_format: str) -> list[str]:
    """Read an export file in the given format; return the action of each event."""
    if export_format == "parquet":
        import pyarrow.parquet

        return pyarrow.parquet.read_table(path).column("action").to_pylist()
    data = path.read_bytes()
    if export_format.endswith(".gz"):
        import gzip

        data = gzip.decompress(data)
    elif export_format.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    text = data.decode("utf-8")
    if export_format.startswith("csv"):
        return [row["action"] for row in csv.DictReader(io.StringIO(text, newline=""))]
    return [json.loads(line)["action"] for line in text.splitlines()]


@pytest.mark.parametrize(("name", "export_format"), [
    ("events.csv", "csv"),
    ("events.csv.gz", "csv.gz"),
    ("events.jsonl", "jsonl"),
    ("events.JSONL.ZST", "jsonl.zst"),
    ("events.parquet", "parquet"),
    ("events.txt", "csv"),
], ids=["csv", "csv-gz", "jsonl", "jsonl-zst-upper-case", "parquet", "unknown-suffix"])
def test_export_format_from_file_suffix(audited, cli, tmp_path, name, export_format):
    target = tmp_path / name
    result = cli("export", "-o", str(target), dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    assert _exported_actions(target, export_format) == ["AUDIT_INSTALL", "INSERT", "UPDATE", "DELETE"]


def test_export_given_format_beats_unknown_suffix(audited, cli, tmp_path):
    target = tmp_path / "events.out"
    result = cli("export", "--format", "jsonl.zst", "-o", str(target), dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    assert _exported_actions(target, "jsonl.zst") == ["AUDIT_INSTALL", "INSERT", "UPDATE", "DELETE"]


@pytest.mark.parametrize(("export_format", "name", "suffix", "implied"), [
    ("csv", "events.parquet", ".parquet", "parquet"),
    ("jsonl", "events.csv.gz", ".csv.gz", "csv.gz"),
    ("csv.gz", "events.csv", ".csv", "csv"),
], ids=["csv-as-parquet", "jsonl-as-csv-gz", "csv-gz-as-csv"])
def test_export_format_contradicts_suffix(audited, cli, tmp_path, export_format, name, suffix, implied):
    target = tmp_path / name
    result = cli("export", "--format", export_format, "-o", str(target), dsn=audited.dsn)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"Error: --format {export_format} does not match the output file {target}, whose suffix {suffix} means "
        f"{implied}; leave --format out or change one of them.")
    assert list(tmp_path.iterdir()) == []


def test_russian_numbers_and_units(audited, cli):
    result = cli("status", env={"LANG": "ru_RU.UTF-8", "COLUMNS": "200"}, dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    assert "Событий: 4;" in result.stdout
    assert "КБ" in result.stdout or "МБ" in result.stdout


def test_query_action_of_application_is_known(audited, cli):
    with audited.connect() as connection:
        connection.execute("SELECT audit.log_event('ARCHIVE_DONE', 'alice')")
    result = cli("query", "--action", "archive_done", "--format", "json", dsn=audited.dsn)
    assert result.exit_code == 0, result.stderr
    assert [row["action"] for row in json.loads(result.stdout)] == ["ARCHIVE_DONE"]


def test_query_composite_entity_id_any_spacing(db, cli):
    with db.connect() as connection:
        connection.execute('CREATE TABLE stage ("productId" text, "stageNo" int, title text, '
                           'PRIMARY KEY ("productId", "stageNo"))')
        install(connection, "audit", [], use_all=True)
        connection.execute("INSERT INTO stage VALUES ('pr1', 5, 'a'), ('pr1', 6, 'b')")
    for typed in ('["pr1", 5]', '["pr1",5]', ' [ "pr1" , 5 ] '):
        result = cli("query", "--entity-id", typed, "--format", "json", dsn=db.dsn)
        assert result.exit_code == 0, result.stderr
        assert [row["entity_id"] for row in json.loads(result.stdout)] == ['["pr1", 5]'], typed


def test_query_csv_first_page_hints_next(audited, cli):
    page = cli("query", "--format", "csv", "--limit", "2", dsn=audited.dsn)
    assert page.exit_code == 0, page.stderr
    rows = list(csv.DictReader(io.StringIO(page.stdout)))
    assert [r["action"] for r in rows] == ["DELETE", "UPDATE"]
    assert f"More events may follow: add --after {rows[-1]['id']} for the next page." in page.stderr

    following = cli("query", "--format", "csv", "--limit", "2", "--after", rows[-1]["id"], dsn=audited.dsn)
    assert following.exit_code == 0, following.stderr
    assert [r["action"] for r in csv.DictReader(io.StringIO(following.stdout))] == ["INSERT", "AUDIT_INSTALL"]

    whole = cli("query", "--format", "csv", "--limit", "5", dsn=audited.dsn)
    assert whole.exit_code == 0, whole.stderr
    assert "More events may follow" not in whole.stderr


def test_query_csv_pages_one_statement(audited, cli):
    """CSV pages through the events of one statement, which share their time, as JSON pages do."""
    with audited.connect() as connection:
        connection.execute("""INSERT INTO "Order" SELECT g, 'n', g FROM generate_series(2, 13) g""")
    expected = [row["id"] for row in json.loads(cli("query", "--format", "json", dsn=audited.dsn).stdout)]

    seen: list[int] = []
    after: list[str] = []
    while True:
        page = cli("query", "--format", "csv", "--limit", "5", *after, dsn=audited.dsn)
        assert page.exit_code == 0, page.stderr
        ids = [int(row["id"]) for row in csv.DictReader(io.StringIO(page.stdout))]
        if not ids:
            break
        seen.extend(ids)
        after = ["--after", str(ids[-1])]
    assert len(expected) == 16
    assert seen == expected


def test_version_option_prints_version(cli):
    from auditctl import __version__

    result = cli("--version")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"auditctl {__version__}\n"


def test_status_before_install_fails(db, cli):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
    for options in ([], ["--format", "json"]):
        result = cli("status", *options, dsn=db.dsn)
        assert result.exit_code == 1, result.stderr
        assert result.stderr.strip() == (
            "Error: The audit schema 'audit' is not installed in this database. "
            "Run `auditctl install` first, or pass --schema if it has another name.")
        assert "public.a" in result.stdout


def test_install_dry_run_logs_no_progress(db, cli):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
    result = cli("-v", "install", "--all", "--dry-run", dsn=db.dsn)
    assert result.exit_code == 0, result.stderr
    assert "installing triggers" not in result.stderr
    real = cli("-v", "install", "--all", dsn=db.dsn)
    assert real.exit_code == 0, real.stderr
    assert "installing triggers: 1 of 1" in real.stderr


@pytest.fixture
def owned_table_dsn(db):
    """Return the DSN of a role that is not a superuser and owns one table, so that DDL capture stays off."""
    with table_owner_dsn(db) as dsn:
        with psycopg.connect(dsn, autocommit=True) as connection:
            connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        yield dsn


def test_install_prints_ddl_capture_off_once(owned_table_dsn):
    result = run_cli("install", "--all", dsn=owned_table_dsn, env={"LANG": "ru_RU.UTF-8"})
    assert result.exit_code == 0, result.stderr
    # The notice is printed in the user's language, so no English log line repeats it.
    assert "may not create event triggers" not in result.stderr
    assert "Эта роль не может создавать событийные триггеры" in " ".join(result.stdout.split())


def test_maintain_warns_once_without_ddl_capture(owned_table_dsn):
    with psycopg.connect(owned_table_dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE b (id int PRIMARY KEY)")
    assert run_cli("install", "--all", dsn=owned_table_dsn).exit_code == 0
    with psycopg.connect(owned_table_dsn, autocommit=True) as connection:
        connection.execute("ALTER TABLE a ADD COLUMN note text")
        connection.execute("ALTER TABLE b ADD COLUMN note text")

    result = run_cli("maintain", dsn=owned_table_dsn)

    assert result.exit_code == 0, result.stderr
    assert "Regenerated the outdated audit trigger of public.a." in result.stdout
    assert "Regenerated the outdated audit trigger of public.b." in result.stdout
    assert result.stderr.count("may not create event triggers: DDL capture is off") == 1, result.stderr


def install_and_maintain(on_terminal: bool, dsn: str, *flags: str) -> str:
    """Run install, change the table, run maintain, on a terminal or with pipes, and return all that both printed.

    maintain regenerates the changed table's trigger and so logs its warning
    that the role may not create event triggers.
    """
    run = run_cli_in_terminal if on_terminal else run_cli
    output = ""
    for args in (["install", "--all"], ["maintain", "--ahead", "5"]):
        result = run(*args, *flags, dsn=dsn)
        assert result.exit_code == 0, result.stdout + result.stderr
        output += result.stdout + result.stderr
        if args[0] == "install":
            with psycopg.connect(dsn, autocommit=True) as connection:
                connection.execute("ALTER TABLE a ADD COLUMN note text")
    return output


# install and maintain print their results and log warnings. Only with -v
# do they log an INFO line for each object changed; through pipes, as under
# cron, these lines carry a timestamp. On a terminal they show a progress bar.
LOG_CASES = {
    "terminal": (True, [], ["Installing triggers", "Done: 1 installed or updated, 0 already up to date.",
                            "WARNING  role owner_", "Created partition events_p"],
                 ["INFO", "installed audit trigger on", "created partition"]),
    "terminal-verbose": (True, ["-v"], ["installed audit trigger on public.a", "created partition audit.events_p",
                                        "Done: 1 installed or updated, 0 already up to date."], []),
    "pipe": (False, [], ["Done: 1 installed or updated, 0 already up to date.", "auditctl WARNING role owner_",
                         "Created partition events_p"],
             ["INFO", "installing triggers", "installed audit trigger on", "created partition"]),
    "pipe-verbose": (False, ["-v"], ["auditctl INFO installing triggers: 1 of 1",
                                     "auditctl INFO installed audit trigger on public.a", "auditctl WARNING role owner_",
                                     "auditctl INFO created partition audit.events_p"], []),
}


@pytest.mark.parametrize(("on_terminal", "flags", "shown", "hidden"), LOG_CASES.values(), ids=LOG_CASES.keys())
def test_install_and_maintain_log_lines(owned_table_dsn, on_terminal, flags, shown, hidden):
    output = install_and_maintain(on_terminal, owned_table_dsn, *flags)
    for text in shown:
        assert text in output, text
    for text in hidden:
        assert text not in output, text


BRACKETED = "[draft] Plan [b]B[/b]"


@pytest.fixture
def bracketed(db):
    """A table whose name, rows, user id and masked and redacted values all contain rich markup."""
    with db.connect() as connection:
        connection.execute('CREATE TABLE "Note [v2]" (id int PRIMARY KEY, title text, secret text, owner text)')
        install(connection, "audit", [], use_all=True, column_rules=[('"Note [v2]".secret', Rule.MASK)])
        as_app_user(connection, "[ops] alice", "192.0.2.1",
                    f"""INSERT INTO "Note [v2]" VALUES (1, '{BRACKETED}', 'pw', 'bob')""",
                    f"""UPDATE "Note [v2]" SET title = '{BRACKETED} [/i]', secret = 'pw2' WHERE id = 1""")
    return db


@pytest.mark.parametrize("width", ["200", "80"], ids=["table", "blocks"])
def test_query_shows_brackets_literally(bracketed, cli, width):
    assert cli("redact", "--user", "bob", dsn=bracketed.dsn).exit_code == 0

    result = cli("query", env={"COLUMNS": width}, dsn=bracketed.dsn)

    assert result.exit_code == 0, result.stderr
    assert f"title: {BRACKETED}" in result.stdout
    assert f"{BRACKETED} [/i]" in result.stdout
    assert "secret: [masked]" in result.stdout
    assert "owner: [redacted]" in result.stdout
    assert "[ops] alice" in result.stdout
    assert "public.Note [v2]" in result.stdout


def test_history_and_status_show_brackets_literally(bracketed, cli):
    history = cli("history", "Note [v2]", "1", dsn=bracketed.dsn)
    assert history.exit_code == 0, history.stderr
    assert BRACKETED in history.stdout
    assert f"{BRACKETED} [/i]" in history.stdout
    assert "[masked]" in history.stdout
    assert "[ops] alice" in history.stdout

    status = cli("status", dsn=bracketed.dsn)
    assert status.exit_code == 0, status.stderr
    assert "public.Note [v2]" in status.stdout


@pytest.mark.parametrize("language", ["C.UTF-8", "ru_RU.UTF-8"], ids=["en", "ru"])
def test_help_keeps_brackets(cli, language):
    env = {"LANG": language}
    main_help = cli("--help", env=env)
    install_help = cli("install", "--help", env=env)
    assert main_help.exit_code == 0, main_help.stderr
    assert "[audit]" in main_help.stdout
    options = install_help.stdout.split("--[no-]auto-audit", 1)[1]
    assert options.count("[audit]") >= 4, install_help.stdout
    assert "[audit.tables]" in install_help.stdout


@pytest.mark.parametrize(("language", "command", "usage"), [
    ("C.UTF-8", ["history"], "Usage: auditctl history [OPTIONS] TABLE ID..."),
    ("C.UTF-8", ["backup", "restore"], "Usage: auditctl backup restore [OPTIONS] FILE"),
    ("C.UTF-8", ["install"], "Usage: auditctl install [OPTIONS] [TABLE]..."),
    ("ru_RU.UTF-8", ["history"], "Использование: auditctl history [ПАРАМЕТРЫ] ТАБЛИЦА ID..."),
    ("ru_RU.UTF-8", ["backup", "restore"], "Использование: auditctl backup restore [ПАРАМЕТРЫ] ФАЙЛ"),
], ids=["en-history", "en-restore", "en-install", "ru-history", "ru-restore"])
def test_usage_shows_required_arguments_plainly(cli, language, command, usage):
    result = cli(*command, "--help", env={"LANG": language})

    assert result.exit_code == 0, result.stderr
    assert usage in result.stdout
    usage_line = next(line for line in result.stdout.splitlines() if "auditctl" in line)
    assert "{" not in usage_line


def test_missing_argument_usage_without_braces(cli):
    result = cli("history", "Order")

    assert result.exit_code == 2
    assert "auditctl history [OPTIONS] TABLE ID..." in result.stderr


@pytest.mark.parametrize(("language", "lock_timeout", "port"), [
    ("C.UTF-8", "SECONDS [x>=0.1]", "[1<=x<=65535]"),
    ("ru_RU.UTF-8", "СЕКУНДЫ [от 0.1]", "[от 1 до 65535]"),
], ids=["en", "ru"])
def test_help_range_hints_translated(cli, language, lock_timeout, port):
    env = {"LANG": language}
    install_help = " ".join(cli("install", "--help", env=env).stdout.split())
    serve_help = " ".join(cli("serve", "--help", env=env).stdout.split())
    main_help = cli("--help", env=env).stdout

    assert f"--lock-timeout {lock_timeout}" in install_help
    assert f"--port N {port}" in serve_help
    assert "x>=0" not in main_help
    assert "[от 0]" not in main_help


def test_placeholders_have_translations():
    import typer

    from auditctl.cli.placeholders import untranslated_words
    cli_app = importlib.import_module("auditctl.cli.app")
    cli_app.register_commands()
    command = typer.main.get_command(cli_app.app)
    metavars = {parameter.metavar for each in cli_app.all_commands(command) for parameter in each.params
                if parameter.metavar}
    assert "TABLE.COLUMN" in metavars
    assert [metavar for metavar in sorted(metavars) if untranslated_words(metavar)] == []


def test_russian_help_placeholders(cli):
    env = {"LANG": "ru_RU.UTF-8", "COLUMNS": "120"}
    install_help = cli("install", "--help", env=env).stdout
    revert_help = cli("revert", "--help", env=env).stdout
    query_help = cli("query", "--help", env=env).stdout
    assert "auditctl install [ПАРАМЕТРЫ] [ТАБЛИЦА]..." in install_help
    assert re.search(r"--exclude-column +ТАБЛИЦА\.СТОЛБЕЦ", install_help)
    assert re.search(r"--config +ФАЙЛ", install_help)
    assert "auditctl revert [ПАРАМЕТРЫ] [НОМЕР_СОБЫТИЯ]" in revert_help
    assert re.search(r"--transaction +TXID", revert_help)
    assert re.search(r"--since +ВРЕМЯ +События не раньше времени ВРЕМЯ", query_help)
    for help_text in (install_help, revert_help, query_help):
        assert not re.search(r"\b(TABLE|COLUMN|FILE|WHEN|NAME|ROLE|SCHEMA|EVENT_ID)\b", help_text), help_text


@pytest.fixture
def readings(db):
    """A table keyed by a timestamptz and an integer, as Pagila's payment, written in Moscow time."""
    with db.connect() as connection:
        write_reading_in_two_zones(connection, "2022-01-29 01:58:52.222594+00", 16051)
    return db


@pytest.mark.parametrize("typed", [
    '["2022-01-29 01:58:52.222594+00", 16051]',
    '["2022-01-29 04:58:52.222594+03",16051]',
    '["2022-01-29T01:58:52.222594Z", "16051"]',
], ids=["utc", "moscow", "iso"])
def test_query_typed_entity_id_of_table(readings, cli, typed):
    result = cli("query", "--table", "reading", "--entity-id", typed, "--format", "json", dsn=readings.dsn)
    assert result.exit_code == 0, result.stderr
    assert sorted(row["action"] for row in json.loads(result.stdout)) == ["INSERT", "UPDATE"]


def test_export_typed_entity_id_of_table(readings, cli):
    result = cli("export", "--format", "jsonl", "--table", "public.reading", "--entity-id",
                 '["2022-01-29 01:58:52.222594+00", 16051]', dsn=readings.dsn)
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["action"] for line in result.stdout.splitlines()] == ["INSERT", "UPDATE"]


def test_query_entity_id_without_table_as_typed(readings, cli):
    with readings.connect() as connection:
        [stored] = connection.execute("SELECT DISTINCT entity_id FROM audit.events WHERE action = 'INSERT'").fetchone()
    exact = cli("query", "--entity-id", stored, "--format", "json", dsn=readings.dsn)
    typed = cli("query", "--entity-id", '["2022-01-29 01:58:52.222594+00", 16051]', "--format", "json",
                dsn=readings.dsn)
    assert [row["action"] for row in json.loads(exact.stdout)] == ["INSERT"]
    assert json.loads(typed.stdout) == []


@pytest.mark.parametrize(("entity_id", "message"), [
    ('["soon", 16051]', "Invalid key value 'soon' for column taken_at (timestamp with time zone) of public.reading: "
                        "invalid input syntax for type timestamp"),
    ("16051", "Invalid --entity-id value '16051': table public.reading has a primary key of 2 columns "
              "(taken_at, sensor); give their values as one JSON array"),
], ids=["bad-value", "too-few"])
def test_query_entity_id_of_table_rejects_bad_key(readings, cli, entity_id, message):
    result = cli("query", "--table", "reading", "--entity-id", entity_id, dsn=readings.dsn)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr


def test_ambiguous_table_name_is_refused(db, cli):
    with db.connect() as connection:
        connection.execute('CREATE TABLE film (id int PRIMARY KEY); CREATE TABLE "Film" (id int PRIMARY KEY)')
        install(connection, "audit", [], use_all=True)
        connection.execute('INSERT INTO film VALUES (1); INSERT INTO "Film" VALUES (2)')
    results = {
        "query": cli("query", "--table", "FILM", dsn=db.dsn),
        "uninstall": cli("uninstall", "FILM", dsn=db.dsn),
        "history": cli("history", "FILM", "1", dsn=db.dsn),
    }
    exact = cli("query", "--table", '"Film"', "--format", "json", dsn=db.dsn)
    for command, result in results.items():
        assert result.exit_code != 0, command
        assert result.stdout == "", command
        assert "Table name 'FILM' is ambiguous" in result.stderr, command
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert ('(public."Film", public.film); write the one you mean as listed, in single quotes for the shell, '
            'such as \'public."Film"\'.') in results["query"].stderr
    assert [event["entity_type"] for event in json.loads(exact.stdout)] == ["public.Film"]
    with db.connect() as connection:
        assert connection.execute("SELECT count(*) FROM audit.audited_tables").fetchone()[0] == 2


def test_export_to_fifo_writes_in_place(audited, cli, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()

    result = cli("export", "--format", "jsonl", "-o", str(fifo), dsn=audited.dsn)
    reader.join(timeout=60)

    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert [json.loads(line)["action"] for line in received[0].splitlines()] == [
        "AUDIT_INSTALL", "INSERT", "UPDATE", "DELETE"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pipe"]


def test_export_new_file_is_owner_only(audited, cli, tmp_path):
    output = tmp_path / "events.csv"
    previous_umask = os.umask(0o022)
    try:
        result = cli("export", "--format", "csv", "-o", str(output), dsn=audited.dsn)
    finally:
        os.umask(previous_umask)

    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(output.stat().st_mode) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")
def test_export_to_full_device_fails(audited, cli, tmp_path):
    # A device of its own with the numbers of /dev/full (1, 7), so the system's device is never touched.
    device = tmp_path / "full"
    os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 7))

    result = cli("export", "--format", "jsonl", "-o", str(device), dsn=audited.dsn)

    assert result.exit_code == 2, result.stderr
    assert result.stderr == (f"Error: Cannot write {device}: No space left on device; the output is incomplete.\n")
    assert stat.S_ISCHR(device.stat().st_mode)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["full"]


@pytest.mark.parametrize(("arguments", "message"), [
    (["export", "-o", ""], "Invalid --output value '': it is empty; name a file."),
    (["export", "-o", "{tmp}"], "Invalid --output value '{tmp}': it is a folder; name a file."),
    (["backup", "--dir", ""], "Invalid --dir value '': it is empty; name a folder."),
    (["backup", "list", "--dir", ""], "Invalid --dir value '': it is empty; name a folder."),
    (["doctor", "--dir", ""], "Invalid --dir value '': it is empty; name a folder."),
    (["backup", "list", "--dir", "{tmp}/file"],
     "Backup folder {tmp}/file is not a folder; check --dir or the dir setting."),
    (["rotate", "--keep", "1d", "--archive-dir", "", "--dry-run"],
     "Invalid --archive-dir value '': it is empty; name a folder."),
    (["cron", "maintain", "--crontab-file", "", "--dsn", "dbname=app"],
     "Invalid --crontab-file value '': it is empty; name a file."),
    (["cron", "maintain", "--log-file", "", "--dsn", "dbname=app"],
     "Invalid --log-file value '': it is empty; name a file."),
], ids=["export-empty", "export-folder", "backup", "list", "doctor", "list-file", "rotate", "crontab-file",
        "log-file"])
def test_empty_path_options_are_rejected(cli, tmp_path, user_folders, arguments, message):
    (tmp_path / "file").write_text("x")
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]

    result = cli(*arguments, dsn="dbname=nonexistent_database_for_this_test")

    assert result.exit_code == 2, result.stderr
    assert result.stderr == f"Error: {message.format(tmp=tmp_path)}\n"
    assert list(user_folders.workdir.iterdir()) == []


@pytest.mark.parametrize(("arguments", "environment", "origin"), [
    (["--s3-endpoint-url", "not a url"], {}, "--s3-endpoint-url"),
    ([], {"AWS_ENDPOINT_URL": "nope"}, "AWS_ENDPOINT_URL"),
    ([], {"AWS_ENDPOINT_URL_S3": "nope"}, "AWS_ENDPOINT_URL_S3"),
], ids=["option", "variable", "s3-variable"])
def test_bad_s3_endpoint_is_one_line(cli, arguments, environment, origin):
    result = cli("rotate", "--keep", "1d", "--archive-s3", "s3://bucket/prefix", *arguments, "--dry-run",
                 env=environment, dsn="dbname=nonexistent_database_for_this_test")

    value = "not a url" if arguments else "nope"
    assert result.exit_code == 2, result.stderr
    assert result.stderr == (f"Error: Invalid S3 endpoint URL {value!r} from {origin}: expected an http:// or "
                             "https:// URL such as https://s3.example.net.\n")


def test_demo_in_missing_locale(cli, tmp_path):
    # This machine may not have ru_RU.UTF-8 installed; the demo's cluster must start all the same.
    result = cli("demo", env={"TMPDIR": str(tmp_path), "LANG": "ru_RU.UTF-8"})
    assert result.exit_code == 0, result.stderr
    assert "librarian-olga" in result.stdout
    assert "Временный сервер остановлен" in result.stdout


def test_database_error_says_error_once(audited, cli):
    with audited.connect() as connection:
        connection.execute("REVOKE ALL ON SCHEMA audit FROM PUBLIC")
        connection.execute(f"CREATE ROLE {audited.name}_reader LOGIN")
    dsn = conninfo.make_conninfo(audited.dsn, user=f"{audited.name}_reader")

    english = cli("query", dsn=dsn)
    russian = cli("query", dsn=dsn, env={"LANG": "ru_RU.UTF-8"})

    assert english.stderr.startswith("Error: The database query failed: permission denied for schema audit")
    assert russian.stderr.startswith("Ошибка: Запрос к базе данных не выполнен: ")
    assert russian.stderr.count("Ошибка") == 1


def test_status_without_exclusions_omits_clause(audited, cli):
    installed = cli("install", "--auto-audit", "--auto-schema", "public", dsn=audited.dsn)
    english = cli("status", dsn=audited.dsn)
    russian = cli("status", dsn=audited.dsn, env={"LANG": "ru_RU.UTF-8"})
    assert installed.exit_code == 0, installed.stderr
    assert "New tables in public are audited on creation.\n" in english.stdout
    assert "Новые таблицы в public попадают под аудит при создании.\n" in russian.stdout



def test_status_names_unaudited_tables(audited, cli):
    with audited.connect() as connection:
        connection.execute('CREATE TABLE "Comment" (id int PRIMARY KEY, body text)')
    one_table = cli("status", dsn=audited.dsn)
    with audited.connect() as connection:
        connection.execute('CREATE TABLE "Tag" (id int PRIMARY KEY)')
    two_tables = cli("status", dsn=audited.dsn)
    russian = cli("status", dsn=audited.dsn, env={"LANG": "ru_RU.UTF-8"})
    assert one_table.exit_code == 0, one_table.stderr
    assert ("public.Comment is not audited, so its changes are not recorded. "
            "Run `auditctl install public.Comment` to audit it.") in " ".join(one_table.stdout.split())
    assert two_tables.exit_code == 0, two_tables.stderr
    assert ("2 tables are not audited, so their changes are not recorded: public.Comment, public.Tag."
            in " ".join(two_tables.stdout.split()))
    assert "public.Order is not audited" not in two_tables.stdout
    assert "public.Comment, public.Tag" in " ".join(russian.stdout.split())

# Sends SIGINT to the process while the entry point imports the CLI, the
# moment a user's Ctrl-C lands when it comes right after the command starts.
_INTERRUPTED_START = """
import builtins, os, signal, sys
real_import = builtins.__import__

def interrupting_import(name, *args, **kwargs):
    if name == "auditctl.cli":
        os.kill(os.getpid(), signal.SIGINT)
    return real_import(name, *args, **kwargs)

builtins.__import__ = interrupting_import
sys.argv = ["auditctl", "--help"]
from auditctl.entry import main
main()
"""


def test_ctrl_c_during_start_prints_nothing():
    completed = subprocess.run([sys.executable, "-c", _INTERRUPTED_START], capture_output=True, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, timeout=60, check=False)
    assert completed.returncode == -signal.SIGINT
    assert completed.stdout == ""
    assert completed.stderr == ""
