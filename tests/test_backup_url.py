"""auditctl backup --from-url against a real HTTP endpoint on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import stat

import pyrage
import pytest
from pyrage import x25519

from auditctl.backup.identity import url_identity
from backup_fixtures import read_json, serve_endpoint
from conftest import run_cli

BODY = json.dumps({"users": [{"id": 1, "name": "Анна"}], "exported_at": "2026-12-04T02:00:00Z"},
                  ensure_ascii=False).encode()


def saved(folder):
    return sorted(path.name for path in folder.iterdir() if not path.name.startswith("."))


def test_json_backup_is_saved_with_manifest(http_endpoint, tmp_path):
    http_endpoint.body = BODY

    # -v adds the INFO lines to the output checked for the token.
    result = run_cli("-v", "backup", "--dir", str(tmp_path), "--from-url", http_endpoint.url, "--header-env",
                     "APP_TOKEN", env={"APP_TOKEN": "Authorization: Bearer s3cr3t-token"})

    assert result.exit_code == 0, result.stderr
    [backup] = tmp_path.glob("127.0.0.1_*Z.json")
    assert backup.read_bytes() == BODY
    manifest = read_json(tmp_path / (backup.name + ".manifest.json"))
    assert not (tmp_path / (backup.name + ".json")).exists()
    assert manifest["source"] == "url"
    assert manifest["source_identity"] == {"kind": "url", "url": http_endpoint.url}
    assert manifest["sha256"] == hashlib.sha256(BODY).hexdigest()
    assert http_endpoint.requests[0]["Authorization"] == "Bearer s3cr3t-token"
    assert "s3cr3t-token" not in result.stdout + result.stderr
    assert run_cli("backup", "verify", str(backup)).exit_code == 0


def test_restore_of_json_backup_exits_2(http_endpoint, tmp_path):
    http_endpoint.body = BODY
    assert run_cli("backup", "--dir", str(tmp_path), "--from-url", http_endpoint.url).exit_code == 0
    [backup] = tmp_path.glob("127.0.0.1_*Z.json")

    # No server is reached: the file alone shows that pg_restore cannot restore it.
    result = run_cli("backup", "restore", str(backup), "--target-dsn", "host=127.0.0.1 port=1 dbname=none")

    assert result.exit_code == 2
    assert "is a JSON backup from --from-url; pg_restore cannot restore it." in result.stderr
    assert "Traceback" not in result.stderr


def test_dump_without_manifest_points_to_pg_restore(tmp_path):
    dump = tmp_path / "other.dump"
    dump.write_bytes(b"PGDMP")

    result = run_cli("backup", "verify", str(dump))

    assert result.exit_code != 0
    assert "auditctl checks and restores only its own backups, so use pg_restore for other dumps." in " ".join(
        result.stderr.split())


def test_json_backup_encrypted_decrypts(http_endpoint, tmp_path):
    http_endpoint.body = BODY
    identity = x25519.Identity.generate()
    header_file = tmp_path / "header"
    header_file.write_text("Authorization: Bearer from-file\n")
    header_file.chmod(0o600)
    folder = tmp_path / "backups"
    folder.mkdir()

    result = run_cli("backup", "--dir", str(folder), "--from-url", http_endpoint.url, "--header-file",
                     str(header_file), "--recipient", str(identity.to_public()))

    assert result.exit_code == 0, result.stderr
    [backup] = folder.glob("*.json.age")
    assert pyrage.decrypt(backup.read_bytes(), [identity]) == BODY
    assert saved(folder) == sorted([backup.name, backup.name + ".manifest.json", backup.name + ".sha256"])
    assert http_endpoint.requests[0]["Authorization"] == "Bearer from-file"


@pytest.mark.parametrize(("status", "content_type", "body", "declared", "message"), [
    (500, "application/json", b'{"error": "boom"}', None, "returned HTTP 500"),
    (200, "text/html", b"<html><body>502 Bad Gateway</body></html>", None,
     "is not complete JSON (invalid JSON at line 1, column 1); no backup was saved."),
    (200, "application/json", b'{"users": [{"id": 1}, {"id"', None,
     "is not complete JSON (the text ends early, at line 1, column 28); no backup was saved."),
    (200, "application/json", b'{"users": []}\n{"users": []}', None,
     "is not complete JSON (more text follows the JSON value at line 2, column 1); no backup was saved."),
    (200, "application/json", b'{"users": []', 4096, "is truncated"),
], ids=["http-500", "html-error-page", "truncated-json", "two-values", "short-body"])
def test_bad_response_fails_and_leaves_nothing(http_endpoint, tmp_path, status, content_type, body, declared,
                                               message):
    http_endpoint.status = status
    http_endpoint.content_type = content_type
    http_endpoint.body = body
    http_endpoint.declared_length = declared

    result = run_cli("backup", "--dir", str(tmp_path), "--from-url", http_endpoint.url, "--keep-last", "1")

    assert result.exit_code == 1
    assert message in result.stderr
    assert saved(tmp_path) == []


def test_invalid_json_error_is_translated(http_endpoint, tmp_path):
    http_endpoint.content_type = "text/html"
    http_endpoint.body = b"<html><body>502 Bad Gateway</body></html>"

    result = run_cli("backup", "--dir", str(tmp_path), "--from-url", http_endpoint.url, env={"LANG": "ru_RU.UTF-8"})

    assert result.exit_code == 1
    assert "не является полным JSON (ошибка JSON в строке 1, столбце 1); копия не сохранена." in result.stderr
    assert "Expecting" not in result.stderr
    assert saved(tmp_path) == []


def test_unreachable_endpoint_names_reason(tmp_path):
    from backup_fixtures import free_port
    url = f"http://127.0.0.1:{free_port()}/api/backup/create"

    result = run_cli("backup", "--dir", str(tmp_path), "--from-url", url)

    assert result.exit_code == 1
    assert f"Error: Request to {url} failed: Connection refused" in result.stderr
    assert "[Errno" not in result.stderr
    assert saved(tmp_path) == []


def test_missing_header_variable_is_config_error(http_endpoint, tmp_path):
    result = run_cli("backup", "--dir", str(tmp_path), "--from-url", http_endpoint.url, "--header-env", "NOT_SET_X")
    assert result.exit_code == 2
    assert "NOT_SET_X" in result.stderr
    assert saved(tmp_path) == []


def test_heartbeat_and_metrics_on_success_then_failure(http_endpoint, tmp_path, pg):
    folder = tmp_path / "backups"
    folder.mkdir()
    metrics = tmp_path / "auditctl.prom"
    base = http_endpoint.url.rsplit("/api/", 1)[0]
    config = tmp_path / "auditctl.toml"
    config.write_text(f'[backup]\ndir = "{folder}"\n\n[backup.monitoring]\nheartbeat_url = "{base}/ping/abc"\n'
                      f'metrics_file = "{metrics}"\n')
    database = pg.create_database()
    try:
        ok = run_cli("backup", "--config", str(config), dsn=pg.dsn_for(database))
        assert ok.exit_code == 0, ok.stderr
        assert http_endpoint.paths == ["/ping/abc/start", "/ping/abc"]
        text = metrics.read_text()
        assert f'auditctl_backup_last_success{{database="{database}"}} 1' in text
        # node_exporter runs as another user and must read it.
        assert stat.S_IMODE(metrics.stat().st_mode) == 0o644
        success_line = [line for line in text.splitlines()
                        if line.startswith("auditctl_backup_last_success_timestamp_seconds{")][0]

        http_endpoint.paths.clear()
        old_tools = tmp_path / "bin"
        old_tools.mkdir()
        (old_tools / "pg_dump").write_text('#!/bin/sh\necho "pg_dump (PostgreSQL) 9.6.24"\n')
        (old_tools / "pg_dump").chmod(0o755)
        failed = run_cli("backup", "--config", str(config), "--pg-bindir", str(old_tools), dsn=pg.dsn_for(database))
        assert failed.exit_code == 1
        assert http_endpoint.paths == ["/ping/abc/start", "/ping/abc/fail"]
        assert b"older than the server" in http_endpoint.bodies[-1]
    finally:
        pg.drop_database(database)
    text = metrics.read_text()
    assert f'auditctl_backup_last_success{{database="{database}"}} 0' in text
    assert success_line in text


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_fails_without_following(http_endpoint, other_http_endpoint, tmp_path, status):
    other_http_endpoint.body = BODY
    final = other_http_endpoint.url.replace("://", "://redirect-user:redirect-pw@") + "?token=query-secret"
    http_endpoint.status = status
    http_endpoint.headers = {"Location": final}

    # -v adds the INFO lines to the output checked for the secrets.
    result = run_cli("-v", "backup", "--dir", str(tmp_path), "--from-url", http_endpoint.url, "--header-env",
                     "APP_TOKEN", env={"APP_TOKEN": "Authorization: Bearer s3cr3t-token"})

    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: {http_endpoint.url} returned HTTP {status}, a redirect to {other_http_endpoint.url}; "
                      "no backup was saved. auditctl does not follow redirects, so that the header reaches no "
                      "other address. Set --from-url (or url in [backup.source]) to the final URL."]
    for secret in ("redirect-pw", "query-secret", "s3cr3t-token"):
        assert secret not in result.stdout + result.stderr
    assert http_endpoint.methods == ["POST"]
    assert other_http_endpoint.requests == []
    assert saved(tmp_path) == []


def test_relative_redirect_names_full_location(http_endpoint, tmp_path):
    http_endpoint.status = 302
    http_endpoint.headers = {"Location": "/login?next=/api/backup/create"}

    result = run_cli("backup", "--dir", str(tmp_path), "--from-url", http_endpoint.url)

    assert result.exit_code == 1
    base = http_endpoint.url.rsplit("/api/", 1)[0]
    assert f"a redirect to {base}/login;" in result.stderr
    assert "next=" not in result.stderr
    assert saved(tmp_path) == []


def test_credentials_in_url_are_rejected(http_endpoint, tmp_path):
    url = http_endpoint.url.replace("://", "://backup:pa55word@")

    result = run_cli("backup", "--dir", str(tmp_path), "--from-url", url)

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: Credentials in the URL of --from-url are not supported: send them as a header line through "
        "--header-env NAME or --header-file FILE (header_env or header_file in [backup.source]), such as "
        "'Authorization: Basic …'."]
    assert "pa55word" not in result.stdout + result.stderr
    assert http_endpoint.requests == []
    assert saved(tmp_path) == []


def test_url_identity_drops_credentials_and_query():
    identity = url_identity("HTTPS://backup:pa55@App.Example.com:443/api/backup?token=s3cr3t#top")

    assert identity == {"kind": "url", "url": "https://app.example.com/api/backup",
                        "query_sha256": hashlib.sha256(b"token=s3cr3t").hexdigest()}
    assert "pa55" not in json.dumps(identity)
    assert "s3cr3t" not in json.dumps(identity)
    assert url_identity("http://127.0.0.1:5066/ok") != url_identity("http://127.0.0.1:5067/ok")
    assert url_identity("http://127.0.0.1/ok?tenant=a") != url_identity("http://127.0.0.1/ok?tenant=b")


def test_rotation_separates_url_sources(tmp_path):
    with serve_endpoint() as first, serve_endpoint() as second:
        first.body = BODY
        second.body = b'{"users": []}'
        assert run_cli("backup", "--dir", str(tmp_path), "--from-url", first.url).exit_code == 0
        [first_backup] = tmp_path.glob("127.0.0.1_*Z.json")

        result = run_cli("backup", "--dir", str(tmp_path), "--from-url", second.url, "--keep-last", "1")

    assert result.exit_code == 0, result.stderr
    assert "Rotation deleted" not in result.stdout
    assert first_backup.read_bytes() == BODY
    # Two runs in one second name the second backup 127.0.0.1_…Z-2.json.
    backups = [path for path in tmp_path.glob("127.0.0.1_*.json") if not path.name.endswith(".manifest.json")]
    assert len(backups) == 2
