"""The read-only viewer role, and the `serve` command as a user starts it."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator

import psycopg
import psycopg.errors
import pytest
from starlette.testclient import TestClient

from auditctl.audit.install import install
from helpers import events
from webhelpers import TOKEN, make_app, seed_audit_log


@pytest.fixture
def viewer(db) -> Iterator[tuple[str, str]]:
    """A new login role with no privileges, and the test database's DSN for it."""
    role = f"viewer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db.server.admin_dsn, autocommit=True) as connection:
        connection.execute(f'CREATE ROLE "{role}" LOGIN')
    params = psycopg.conninfo.conninfo_to_dict(db.dsn)
    params["user"] = role
    yield role, psycopg.conninfo.make_conninfo(**params)
    with psycopg.connect(db.dsn, autocommit=True) as connection:
        connection.execute(f'DROP OWNED BY "{role}"')
    with psycopg.connect(db.server.admin_dsn, autocommit=True) as connection:
        connection.execute(f'DROP ROLE "{role}"')


def test_install_viewer_role_grants_read_only(cli, db, viewer):
    role, viewer_dsn = viewer
    with db.connect() as connection:
        seed_audit_log(connection)
    first = cli("install", "--all", "--viewer-role", role, dsn=db.dsn)
    again = cli("install", "--all", "--viewer-role", role, dsn=db.dsn)
    assert first.exit_code == 0, first.stderr
    assert again.exit_code == 0, again.stderr
    assert f"Role {role} can now read the audit log. Statements run:" in first.stdout

    with psycopg.connect(viewer_dsn, autocommit=True) as connection:
        assert connection.execute("SELECT count(*) FROM audit.events").fetchone()[0] > 0
        assert connection.execute("SELECT audit.log_event('LOGIN', 'lead')").fetchone()[0] > 0
        for statement in ("INSERT INTO audit.events (action) VALUES ('FORGED')",
                          "UPDATE audit.events SET user_id = 'someone'",
                          "DELETE FROM audit.events",
                          "TRUNCATE audit.events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(statement)


def test_viewer_role_runs_status(cli, db, viewer):
    role, viewer_dsn = viewer
    with db.connect() as connection:
        seed_audit_log(connection)
    assert cli("install", "--all", "--viewer-role", role, dsn=db.dsn).exit_code == 0

    result = cli("status", dsn=viewer_dsn)
    assert result.exit_code == 0, result.stderr
    with psycopg.connect(viewer_dsn, autocommit=True) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("SELECT * FROM audit.hash_key")


def test_viewer_role_must_exist(cli, db):
    result = cli("install", "--all", "--viewer-role", "no_such_role", dsn=db.dsn)
    assert result.exit_code == 2
    assert "Role 'no_such_role' does not exist" in result.stderr
    with db.connect() as connection:
        assert connection.execute("SELECT to_regnamespace('audit')").fetchone()[0] is None


def test_viewer_role_dry_run_prints_grants(cli, db):
    missing = cli("install", "--dry-run", "--viewer-role", "Read Only", dsn=db.dsn)
    with db.connect() as connection:
        connection.execute('CREATE ROLE "Read Only"')
    try:
        result = cli("install", "--dry-run", "--viewer-role", "Read Only", dsn=db.dsn)
    finally:
        with db.connect() as connection:
            connection.execute('DROP ROLE "Read Only"')
    assert missing.exit_code == 2
    assert "Role 'Read Only' does not exist" in missing.stderr
    assert result.exit_code == 0, result.stderr
    assert 'GRANT USAGE ON SCHEMA "audit" TO "Read Only";' in result.stdout
    assert 'GRANT SELECT ON "audit"."events" TO "Read Only";' in result.stdout


def test_page_works_as_viewer_role(db, viewer):
    role, viewer_dsn = viewer
    with db.connect() as connection:
        seed_audit_log(connection)
        from auditctl.audit.roles import grant_viewer
        grant_viewer(connection, "audit", role)
    with TestClient(make_app(viewer_dsn), base_url="https://testserver", client=("203.0.113.5", 1),
                    follow_redirects=False) as client:
        login = client.post("/login", data={"token": TOKEN})
        page = client.get("/?user=bob")
        export = client.get("/export?format=csv")
    assert login.status_code == 303
    assert page.status_code == 200
    assert export.status_code == 200
    with db.connect() as connection:
        recorded = events(connection, where="action IN ('LOGIN', 'EXPORT')")
    assert [(row["action"], row["db_user"]) for row in recorded] == [("LOGIN", role), ("EXPORT", role)]


def test_page_connection_is_read_only(db):
    with db.connect() as connection:
        connection.execute("CREATE TABLE note (id integer PRIMARY KEY)")
        install(connection, "audit", [], use_all=True)
    from auditctl.web.database import read_only_connection
    with read_only_connection(db.dsn) as connection:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            connection.execute("DELETE FROM audit.events")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(dsn: str, port: int, *extra: str, token: str | None = TOKEN,
                 language: str = "C.UTF-8") -> subprocess.Popen:
    """Start `auditctl serve` as a user would, on 127.0.0.1, with LANG set to ``language``."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("AUDITCTL_DSN", "DATABASE_URL", "AUDITCTL_WEB_TOKEN", "LANGUAGE", "LC_ALL")}
    environment.update({"LANG": language, "AUDITCTL_DSN": dsn})
    if token:
        environment["AUDITCTL_WEB_TOKEN"] = token
    return subprocess.Popen([sys.executable, "-m", "auditctl", "serve", "--port", str(port), *extra],
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_port(process: subprocess.Popen, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"auditctl serve exited with {process.returncode}: {process.stderr.read()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"auditctl serve did not listen on 127.0.0.1:{port} within {timeout} s")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_serve_listens_on_loopback_only(db):
    with db.connect() as connection:
        seed_audit_log(connection)
    port = _free_port()
    process = start_server(db.dsn, port)
    try:
        wait_for_port(process, port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as response:
            status, headers = response.status, response.headers
        listening = subprocess.run(["ss", "-Htln", f"sport = :{port}"], capture_output=True, text=True)
    finally:
        stop_server(process)
    assert status == 200
    assert "content-security-policy" in headers
    assert "server" not in headers
    if listening.returncode == 0:
        addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.stdout.splitlines()}
        assert addresses == {"127.0.0.1"}


def test_serve_without_token_says_how_to_set_one(db):
    with db.connect() as connection:
        seed_audit_log(connection)
    process = start_server(db.dsn, _free_port(), token=None)
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "AUDITCTL_WEB_TOKEN" in stderr


def test_serve_without_audit_schema_fails_fast(db):
    process = start_server(db.dsn, _free_port())
    _stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "is not installed" in stderr


def log_in_over_http(port: int) -> str:
    """Log in to `auditctl serve` with the token and return the Cookie header of the session."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/login", body=urllib.parse.urlencode({"token": TOKEN, "next": "/"}),
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 303
    return response.headers["set-cookie"].split(";", 1)[0]


def terminate_blocked_export(dsn: str, timeout: float = 30.0) -> None:
    """Terminate the backend of an export's COPY once it waits for the page to read, in the middle of the export."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as connection:
        while time.monotonic() < deadline:
            row = connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'COPY%' "
                "AND wait_event = 'ClientWrite'").fetchone()
            if row:
                connection.execute("SELECT pg_terminate_backend(%s)", row)
                return
            time.sleep(0.1)
        activity = connection.execute(
            "SELECT state, wait_event, left(query, 60) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
    raise AssertionError(f"no export waited for the page to read within {timeout} s: {activity}")


def add_large_table(db) -> None:
    """Seed the log and add a table whose CSV export is about 40 MB.

    That is more than the socket buffers between database, page and client
    hold, so an export of it is still running, its COPY waiting for the page
    and the page for the client, when the client stops reading. Each text
    stays below the 8 kB above which the log stores a digest.
    """
    with db.connect() as connection:
        seed_audit_log(connection)
        connection.execute("CREATE TABLE document (id integer PRIMARY KEY, body text)")
        install(connection, "audit", ["document"])
        connection.execute("INSERT INTO document SELECT i, repeat('x', 4000) FROM generate_series(1, 10000) i")


@contextlib.contextmanager
def running_export(db) -> Iterator[tuple[subprocess.Popen, http.client.HTTPConnection, http.client.HTTPResponse,
                                         bytes]]:
    """Start `auditctl serve`, log in and request the CSV export of the large table.

    Yields the server process, the client connection, the response and its
    first 64 KiB, and stops the server at the end of the block.
    """
    add_large_table(db)
    port = _free_port()
    process = start_server(db.dsn, port)
    try:
        wait_for_port(process, port)
        cookie = log_in_over_http(port)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/export?format=csv&table=document", headers={"Cookie": cookie})
        response = connection.getresponse()
        assert response.status == 200, (response.status, response.read(2000))
        yield process, connection, response, response.read(65536)
    finally:
        stop_server(process)


def wait_for_no_sessions(dsn: str, timeout: float = 10.0) -> None:
    """Wait until no other session is connected to the database, such as the page's after an export ends."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as connection:
        while time.monotonic() < deadline:
            if not connection.execute("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() "
                                      "AND pid <> pg_backend_pid())").fetchone()[0]:
                return
            time.sleep(0.1)
    raise AssertionError(f"sessions still connected after {timeout} s")


def test_serve_export_cut_logs_one_line(db):
    with running_export(db) as (process, connection, response, first_part):
        terminate_blocked_export(db.dsn)
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        connection.close()
    stderr = process.stderr.read()
    assert first_part.startswith(b"id,occurred_at,")
    assert "Traceback" not in stderr
    failures = [line for line in stderr.splitlines() if "export by auditctl-web failed after" in line]
    assert len(failures) == 1, stderr
    assert "no EXPORT event was recorded: " in failures[0]
    with db.connect() as connection:
        assert events(connection, where="action = 'EXPORT'") == []


def test_serve_export_cancelled_records_nothing(db):
    with running_export(db) as (process, connection, _response, _first_part):
        connection.close()
        wait_for_no_sessions(db.dsn)
    stderr = process.stderr.read()
    assert "Traceback" not in stderr
    assert "because the viewer went away; no EXPORT event was recorded" in stderr
    with db.connect() as connection:
        assert events(connection, where="action = 'EXPORT'") == []


def serve_on_taken_port(db, language: str) -> tuple[int, str, list[str]]:
    """Run `auditctl serve` on a port in use; return the port, stdout and the stderr lines that are not log lines.

    Through a pipe, log lines carry a timestamp and "auditctl LEVEL".
    """
    with db.connect() as connection:
        seed_audit_log(connection)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_server(db.dsn, port, language=language)
        stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 2
    return port, stdout, [line for line in stderr.splitlines() if " auditctl " not in line]


def test_serve_taken_port_one_line(db):
    port, stdout, lines = serve_on_taken_port(db, "C.UTF-8")
    assert stdout == ""
    errors = [line for line in lines if not line.startswith("Warning: ")]
    assert errors == [f"Error: Port {port} on 127.0.0.1 is already in use: pick another with --port, "
                      "or stop the program that listens there."]


def test_serve_warnings_follow_locale(db):
    role = psycopg.conninfo.conninfo_to_dict(db.dsn)["user"]
    _port, _stdout, lines = serve_on_taken_port(db, "ru_RU.UTF-8")
    assert lines[0] == (f"Предупреждение: Страница подключается как роль {role}, которая может изменять журнал "
                        "аудита; создайте роль только для чтения командой `auditctl install --viewer-role РОЛЬ` "
                        "и подключайтесь от её имени.")
    assert lines[1].startswith("Ошибка: Порт")
    assert len(lines) == 2


def _ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback_works(), reason="no IPv6 loopback on this machine")
def test_serve_listens_on_ipv6_loopback(db):
    with db.connect() as connection:
        seed_audit_log(connection)
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    process = start_server(db.dsn, port, "--host", "::1")
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket(socket.AF_INET6) as client:
                if client.connect_ex(("::1", port)) == 0:
                    break
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "auditctl serve did not listen on [::1]"
            time.sleep(0.1)
        with urllib.request.urlopen(f"http://[::1]:{port}/login", timeout=10) as response:
            status = response.status
    finally:
        stop_server(process)
    stdout = process.stdout.read()
    assert status == 200
    assert stdout.startswith(f"Serving the audit log on http://[::1]:{port}/")


@pytest.mark.parametrize(("arguments", "message"), [
    (["--host", ""], "Invalid --host value '': it is empty; give an address such as 127.0.0.1, or 0.0.0.0 or :: "
                     "to listen on every interface."),
    (["--host", "not a host"], "Invalid --host value 'not a host': "),
    (["--auth", "proxy", "--proxy-user-header", ""],
     "Invalid --proxy-user-header value '': give the name of the header in which the proxy sends the user, such "
     "as X-Remote-User."),
    (["--auth", "proxy", "--token-file", "{tmp}/token"],
     "--token-file is used only with --auth token; with --auth proxy the reverse proxy checks who logs in. Leave "
     "out one of the two."),
], ids=["empty-host", "bad-host", "empty-header", "proxy-with-token-file"])
def test_serve_rejects_bad_options_first(db, tmp_path, arguments, message):
    # Nothing listens in these runs, because every value is rejected before a socket is bound.
    with db.connect() as connection:
        seed_audit_log(connection)
    (tmp_path / "token").write_text("x" * 32)
    (tmp_path / "token").chmod(0o600)
    process = start_server(db.dsn, _free_port(), *[argument.format(tmp=tmp_path) for argument in arguments])
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 2, stderr
    assert stdout == ""
    [line] = stderr.splitlines()
    assert line.startswith(f"Error: {message}")
