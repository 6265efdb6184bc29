"""The read-only viewer role, and the `serve` command as a user starts it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
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
    assert f"Role {role} can now read the audit log." in first.stdout

    with psycopg.connect(viewer_dsn, autocommit=True) as connection:
        assert connection.execute("SELECT count(*) FROM audit.events").fetchone()[0] > 0
        assert connection.execute("SELECT audit.log_event('LOGIN', 'lead')").fetchone()[0] > 0
        for statement in ("INSERT INTO audit.events (action) VALUES ('FORGED')",
                          "UPDATE audit.events SET user_id = 'someone'",
                          "DELETE FROM audit.events",
                          "TRUNCATE audit.events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(statement)


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
