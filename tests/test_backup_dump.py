"""auditctl backup with pg_dump: the file, its checks, its failures and restore, on a real server."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import psycopg
import pyrage
import pytest
from psycopg import sql
from pyrage import x25519

from auditctl.audit.install import install
from auditctl.backup.lock import backup_lock
from auditctl.backup.pgtools import find_tool
from backup_fixtures import SMTP_PASSWORD, SMTP_USER, read_json, sample_rows
from conftest import run_cli, start_cli
from helpers import events


def backup_files(folder: Path) -> list[str]:
    """Every entry of the folder except the lock file, sorted."""
    return sorted(path.name for path in folder.iterdir() if path.name != ".auditctl-backup.lock")


def only_backup(folder: Path, suffix: str = ".dump") -> Path:
    [path] = [path for path in folder.iterdir() if path.name.endswith(suffix)]
    return path


def pg_tool(pg, name: str) -> str:
    """The server's own client program (for wrappers that must match the server)."""
    return str(pg.bindir / name) if pg.bindir else name


def newest_pg_restore(pg) -> str:
    """The pg_restore that can read what auditctl wrote: the same choice as for its pg_dump."""
    return str(find_tool("pg_restore", pg.version // 10000).path)


def error_lines(result) -> int:
    """Count the ``Error:`` lines the CLI printed; log lines under cron come on top of them."""
    return sum(1 for line in result.stderr.splitlines() if line.startswith("Error: "))


def write_script(path: Path, text: str) -> Path:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)
    return path


@pytest.fixture
def filled(db):
    with db.connect() as connection:
        sample_rows(connection)
    return db


def test_backup_writes_verified_dump_with_manifest(filled, tmp_path):
    result = run_cli("backup", "--dir", str(tmp_path), dsn=filled.dsn)

    assert result.exit_code == 0, result.stderr
    dump = only_backup(tmp_path)
    assert dump.name.startswith(f"{filled.name}_")
    assert backup_files(tmp_path) == sorted([dump.name, dump.name + ".manifest.json", dump.name + ".sha256"])
    digest = hashlib.sha256(dump.read_bytes()).hexdigest()
    assert (tmp_path / (dump.name + ".sha256")).read_text() == f"{digest}  {dump.name}\n"
    manifest = read_json(tmp_path / (dump.name + ".manifest.json"))
    assert manifest["database"] == filled.name
    assert manifest["sha256"] == digest
    assert manifest["size"] == dump.stat().st_size
    assert manifest["format"] == "custom"
    assert manifest["encrypted"] is False
    assert manifest["server_version"].split(".")[0] == str(filled.server.version // 10000)
    assert "PostgreSQL" in manifest["pg_dump_version"]
    assert manifest["started_at"] <= manifest["finished_at"]
    # The sidecars name the database and its server, so only the owner reads them, as the dump.
    for path in (dump, tmp_path / (dump.name + ".sha256"), tmp_path / (dump.name + ".manifest.json")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    listing = subprocess.run([newest_pg_restore(filled.server), "--list", str(dump)],
                             capture_output=True, text=True, check=True)
    assert "TABLE public invoice" in listing.stdout


def test_russian_report_uses_decimal_commas(filled, tmp_path):
    result = run_cli("backup", "--dir", str(tmp_path), dsn=filled.dsn, env={"LANG": "ru_RU.UTF-8"})

    assert result.exit_code == 0, result.stderr
    assert re.search(r"\(\d+(,\d)? (Б|КБ|МБ), \d+,\d с\)", result.stdout), result.stdout


def test_verify_reports_checks_and_detects_damage(filled, tmp_path):
    assert run_cli("backup", "--dir", str(tmp_path), dsn=filled.dsn).exit_code == 0
    dump = only_backup(tmp_path)

    good = run_cli("backup", "verify", str(dump))
    assert good.exit_code == 0, good.stderr
    assert "checksum, pg_restore --list" in good.stdout

    with dump.open("r+b") as handle:
        handle.seek(dump.stat().st_size // 2)
        handle.write(b"\x00garbage\x00")
    damaged = run_cli("backup", "verify", str(dump))
    assert damaged.exit_code == 1
    assert "Checksum mismatch" in damaged.stderr
    assert error_lines(damaged) == 1


def test_restore_gives_same_rows(filled, tmp_path):
    assert run_cli("backup", "--dir", str(tmp_path), dsn=filled.dsn).exit_code == 0
    target = filled.server.create_database()
    try:
        result = run_cli("backup", "restore", str(only_backup(tmp_path)), "--target-dsn",
                         filled.server.dsn_for(target))
        assert result.exit_code == 0, result.stderr
        with psycopg.connect(filled.server.dsn_for(target)) as connection:
            rows = connection.execute("SELECT id, note FROM invoice ORDER BY id").fetchall()
        with filled.connect() as connection:
            assert rows == connection.execute("SELECT id, note FROM invoice ORDER BY id").fetchall()
    finally:
        filled.server.drop_database(target)


def test_restore_rejects_non_empty_target_without_clean(filled, tmp_path):
    assert run_cli("backup", "--dir", str(tmp_path), dsn=filled.dsn).exit_code == 0
    dump = only_backup(tmp_path)
    target = filled.server.create_database()
    try:
        with psycopg.connect(filled.server.dsn_for(target), autocommit=True) as connection:
            connection.execute("CREATE TABLE invoice (id integer PRIMARY KEY, note text NOT NULL)")
            connection.execute("INSERT INTO invoice VALUES (999, 'stranger')")

        refused = run_cli("backup", "restore", str(dump), "--target-dsn", filled.server.dsn_for(target))
        assert refused.exit_code == 1
        assert "is not empty" in refused.stderr
        assert "--clean" in refused.stderr

        cleaned = run_cli("backup", "restore", str(dump), "--target-dsn", filled.server.dsn_for(target), "--clean")
        assert cleaned.exit_code == 0, cleaned.stderr
        with psycopg.connect(filled.server.dsn_for(target)) as connection:
            assert connection.execute("SELECT count(*), max(id) FROM invoice").fetchone() == (50, 50)
    finally:
        filled.server.drop_database(target)


@pytest.mark.shared_data
def test_restore_of_pagila_gives_same_rows(pagila, tmp_path):
    assert run_cli("backup", "--dir", str(tmp_path), dsn=pagila.dsn).exit_code == 0
    target = pagila.server.create_database()
    query = """SELECT 'SELECT ' || string_agg(format('(SELECT md5(string_agg(t::text, '','' ORDER BY t::text))
                   FROM %I.%I t)', schemaname, tablename), ' || ' ORDER BY schemaname, tablename)
               FROM pg_tables WHERE schemaname = 'public'"""
    try:
        result = run_cli("backup", "restore", str(only_backup(tmp_path)), "--target-dsn",
                         pagila.server.dsn_for(target))
        assert result.exit_code == 0, result.stderr
        fingerprints = []
        for dsn in (pagila.dsn, pagila.server.dsn_for(target)):
            with psycopg.connect(dsn) as connection:
                statement = connection.execute(query).fetchone()[0]
                fingerprints.append(connection.execute(statement).fetchone()[0])
        assert fingerprints[0] == fingerprints[1]
    finally:
        pagila.server.drop_database(target)


@pytest.mark.parametrize("name", ["my db", "бухгалтерия"], ids=["space", "cyrillic"])
def test_backup_and_restore_database_with_unusual_name(pg, tmp_path, name):
    with psycopg.connect(pg.admin_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(pg.dsn_for(name), autocommit=True) as connection:
            sample_rows(connection, "журнал")
        result = run_cli("backup", "--dir", str(tmp_path), dsn=pg.dsn_for(name))
        assert result.exit_code == 0, result.stderr
        dump = only_backup(tmp_path)
        assert dump.name.startswith(name.replace(" ", "_") + "_")
        assert read_json(tmp_path / (dump.name + ".manifest.json"))["database"] == name

        listed = run_cli("backup", "list", "--dir", str(tmp_path))
        assert name in listed.stdout

        target = pg.create_database()
        try:
            restored = run_cli("backup", "restore", str(dump), "--target-dsn", pg.dsn_for(target))
            assert restored.exit_code == 0, restored.stderr
            with psycopg.connect(pg.dsn_for(target)) as connection:
                assert connection.execute('SELECT count(*) FROM "журнал"').fetchone()[0] == 50
        finally:
            pg.drop_database(target)
    finally:
        with psycopg.connect(pg.admin_dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_encrypted_backup_decrypts_with_age_identity(filled, tmp_path):
    identity = x25519.Identity.generate()
    key_file = tmp_path / "key.txt"
    key_file.write_text(f"# test key\n{identity}\n")
    key_file.chmod(0o600)
    folder = tmp_path / "backups"
    folder.mkdir()

    result = run_cli("backup", "--dir", str(folder), "--recipient", str(identity.to_public()), dsn=filled.dsn)

    assert result.exit_code == 0, result.stderr
    encrypted = only_backup(folder, ".dump.age")
    assert not any(name.endswith(".dump") for name in backup_files(folder))
    assert encrypted.read_bytes().startswith(b"age-encryption.org/v1\n")
    plaintext = pyrage.decrypt(encrypted.read_bytes(), [identity])
    assert plaintext.startswith(b"PGDMP")
    listing = subprocess.run([newest_pg_restore(filled.server), "--list"], input=plaintext,
                             capture_output=True, check=True)
    assert b"TABLE public invoice" in listing.stdout

    without_key = run_cli("backup", "verify", str(encrypted))
    assert without_key.exit_code == 0
    assert "--identity" in without_key.stdout
    with_key = run_cli("backup", "verify", str(encrypted), "--identity", str(key_file))
    assert with_key.exit_code == 0, with_key.stderr
    assert "decrypt+pg_restore --list" in with_key.stdout

    target = filled.server.create_database()
    try:
        restored = run_cli("backup", "restore", str(encrypted), "--target-dsn", filled.server.dsn_for(target),
                           "--identity", str(key_file))
        assert restored.exit_code == 0, restored.stderr
        with psycopg.connect(filled.server.dsn_for(target)) as connection:
            assert connection.execute("SELECT count(*) FROM invoice").fetchone()[0] == 50
    finally:
        filled.server.drop_database(target)


def test_encrypted_backup_decrypts_with_age_cli(filled, tmp_path):
    if shutil.which("age") is None or shutil.which("age-keygen") is None:
        pytest.skip("the age command-line tool is not installed (Debian package age)")
    key_file = tmp_path / "key.txt"
    generated = subprocess.run(["age-keygen", "-o", str(key_file)], capture_output=True, text=True, check=True)
    public_key = generated.stderr.split("Public key: ")[1].strip()
    folder = tmp_path / "backups"
    folder.mkdir()

    result = run_cli("backup", "--dir", str(folder), "--recipient", public_key, dsn=filled.dsn)

    assert result.exit_code == 0, result.stderr
    encrypted = only_backup(folder, ".dump.age")
    decrypted = subprocess.run(["age", "-d", "-i", str(key_file), str(encrypted)], capture_output=True, check=True)
    assert decrypted.stdout.startswith(b"PGDMP")
    listing = subprocess.run([newest_pg_restore(filled.server), "--list"], input=decrypted.stdout,
                             capture_output=True, check=True)
    assert b"TABLE public invoice" in listing.stdout


def test_passphrase_encrypted_backup_decrypts_with_rage(filled, tmp_path):
    passphrase = "p@ss:w/rd%&'\"x Пароль"
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(passphrase + "\n")
    passphrase_file.chmod(0o600)
    folder = tmp_path / "backups"
    folder.mkdir()

    result = run_cli("backup", "--dir", str(folder), "--passphrase-file", str(passphrase_file), dsn=filled.dsn)

    assert result.exit_code == 0, result.stderr
    encrypted = only_backup(folder, ".dump.age")
    assert pyrage.passphrase.decrypt(encrypted.read_bytes(), passphrase).startswith(b"PGDMP")
    checked = run_cli("backup", "verify", str(encrypted), "--passphrase-file", str(passphrase_file))
    assert checked.exit_code == 0, checked.stderr
    assert "decrypt+pg_restore --list" in checked.stdout
    target = filled.server.create_database()
    try:
        restored = run_cli("backup", "restore", str(encrypted), "--target-dsn", filled.server.dsn_for(target),
                           "--passphrase-file", str(passphrase_file))
        assert restored.exit_code == 0, restored.stderr
        with psycopg.connect(filled.server.dsn_for(target)) as connection:
            assert connection.execute("SELECT count(*) FROM invoice").fetchone()[0] == 50
    finally:
        filled.server.drop_database(target)
    assert passphrase not in result.stdout + result.stderr + checked.stdout + checked.stderr


def test_typed_passphrase_beats_config_identity(filled, tmp_path):
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("correct horse")
    passphrase_file.chmod(0o600)
    identity_file = tmp_path / "key.txt"
    identity_file.write_text(f"{x25519.Identity.generate()}\n")
    identity_file.chmod(0o600)
    config = tmp_path / "auditctl.toml"
    config.write_text(f'[backup.encryption]\nidentity_file = "{identity_file}"\n')
    folder = tmp_path / "backups"
    folder.mkdir()
    assert run_cli("backup", "--dir", str(folder), "--passphrase-file", str(passphrase_file),
                   dsn=filled.dsn).exit_code == 0
    encrypted = only_backup(folder, ".dump.age")

    checked = run_cli("backup", "verify", str(encrypted), "--config", str(config),
                      "--passphrase-file", str(passphrase_file))

    assert checked.exit_code == 0, checked.stderr
    assert "decrypt+pg_restore --list" in checked.stdout


def test_both_keys_open_either_backup(filled, tmp_path):
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("correct horse")
    passphrase_file.chmod(0o600)
    identity = x25519.Identity.generate()
    identity_file = tmp_path / "key.txt"
    identity_file.write_text(f"{identity}\n")
    identity_file.chmod(0o600)
    config = tmp_path / "auditctl.toml"
    config.write_text(f'[backup.encryption]\nidentity_file = "{identity_file}"\n'
                      f'passphrase_file = "{passphrase_file}"\n')
    by_key, by_passphrase = tmp_path / "by-key", tmp_path / "by-passphrase"
    by_key.mkdir()
    by_passphrase.mkdir()
    assert run_cli("backup", "--dir", str(by_key), "--recipient", str(identity.to_public()),
                   dsn=filled.dsn).exit_code == 0
    assert run_cli("backup", "--dir", str(by_passphrase), "--passphrase-file", str(passphrase_file),
                   dsn=filled.dsn).exit_code == 0

    for folder in (by_key, by_passphrase):
        checked = run_cli("backup", "verify", str(only_backup(folder, ".dump.age")), "--config", str(config))
        assert checked.exit_code == 0, checked.stderr
        assert "decrypt+pg_restore --list" in checked.stdout


def test_passphrase_backup_decrypts_with_age_cli(filled, tmp_path):
    if shutil.which("age") is None or shutil.which("script") is None:
        pytest.skip("needs the age command-line tool (Debian package age) and script (util-linux)")
    passphrase = "p@ss:w/rd%&'\"x"
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text(passphrase)
    passphrase_file.chmod(0o600)
    folder = tmp_path / "backups"
    folder.mkdir()
    assert run_cli("backup", "--dir", str(folder), "--passphrase-file", str(passphrase_file),
                   dsn=filled.dsn).exit_code == 0
    encrypted = only_backup(folder, ".dump.age")
    plaintext = tmp_path / "plain.dump"

    # age reads a passphrase only from a terminal, so script(1) gives it one and types the passphrase.
    typist = subprocess.Popen(["script", "-qec", f"age -d -o {plaintext} {encrypted}", "/dev/null"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1)
    typist.communicate((passphrase + "\n").encode(), timeout=60)

    assert typist.returncode == 0
    assert plaintext.read_bytes().startswith(b"PGDMP")


def test_passphrase_file_readable_by_others_is_rejected(filled, tmp_path):
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("secret")
    passphrase_file.chmod(0o644)
    folder = tmp_path / "backups"
    folder.mkdir()

    result = run_cli("backup", "--dir", str(folder), "--passphrase-file", str(passphrase_file), dsn=filled.dsn)

    assert result.exit_code == 2
    assert "chmod 600" in result.stderr
    assert backup_files(folder) == []


def test_directory_format_with_jobs_and_globals(filled, tmp_path):
    result = run_cli("backup", "--dir", str(tmp_path), "--format", "directory", "--jobs", "2", "--globals",
                     dsn=filled.dsn)

    assert result.exit_code == 0, result.stderr
    folder = only_backup(tmp_path, ".dir")
    assert folder.is_dir()
    manifest = read_json(tmp_path / (folder.name + ".manifest.json"))
    assert "toc.dat" in manifest["files"]
    globals_file = tmp_path / manifest["globals_file"]
    assert "CREATE ROLE postgres" in globals_file.read_text()
    sidecar = (tmp_path / (folder.name + ".sha256")).read_text()
    checked = subprocess.run(["sha256sum", "-c", "-"], input=sidecar, cwd=tmp_path, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert run_cli("backup", "verify", str(folder)).exit_code == 0
    target = filled.server.create_database()
    try:
        restored = run_cli("backup", "restore", str(folder), "--target-dsn", filled.server.dsn_for(target))
        assert restored.exit_code == 0, restored.stderr
        with psycopg.connect(filled.server.dsn_for(target)) as connection:
            assert connection.execute("SELECT count(*) FROM invoice").fetchone()[0] == 50
    finally:
        filled.server.drop_database(target)


def test_older_pg_dump_is_rejected_before_dumping(filled, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    write_script(fake / "pg_dump", 'echo "pg_dump (PostgreSQL) 9.6.24"\n')
    folder = tmp_path / "backups"
    folder.mkdir()

    result = run_cli("backup", "--dir", str(folder), "--pg-bindir", str(fake), dsn=filled.dsn)

    assert result.exit_code == 1
    assert "PostgreSQL 9, older than the server" in result.stderr
    assert error_lines(result) == 1
    assert "Traceback" not in result.stderr
    assert backup_files(folder) == []


def failing_pg_dump(pg, folder: Path) -> Path:
    """A pg_dump that writes part of a real dump, then fails as a dropped connection would."""
    folder.mkdir()
    real = Path(pg_tool(pg, "pg_dump"))
    if not real.is_absolute():
        pytest.skip("needs the server's own pg_dump")
    write_script(folder / "pg_dump", f'[ "$1" = --version ] && exec "{real}" --version\n'
                                     f'"{real}" "$@" | head -c 3000\n'
                                     'echo "pg_dump: error: connection to server lost" >&2\nexit 1\n')
    (folder / "pg_restore").symlink_to(real.parent / "pg_restore")
    return folder


def mail_config(folder: Path, smtp, tmp_path: Path) -> Path:
    """A config that mails reports through the loopback STARTTLS server and keeps one backup."""
    config = tmp_path / "auditctl.toml"
    config.write_text(f"""
[backup]
dir = "{folder}"

[backup.rotation]
keep_last = 1

[mail]
to = ["ops@example.test"]
from = "backup@example.test"
host = "localhost"
port = {smtp.port}
security = "starttls"
username = "{SMTP_USER}"
password_env = "TEST_SMTP_PASSWORD"
""")
    return config


def test_pg_dump_failing_midway_leaves_nothing(filled, tmp_path, smtp_starttls, loopback_certificate):
    with filled.connect() as connection:
        install(connection, "audit", [], use_all=True)
    folder = tmp_path / "backups"
    folder.mkdir()
    assert run_cli("backup", "--dir", str(folder), dsn=filled.dsn).exit_code == 0
    (folder / "notes.txt").write_text("keep me")
    before = backup_files(folder)
    bindir = failing_pg_dump(filled.server, tmp_path / "bin")
    config = mail_config(folder, smtp_starttls, tmp_path)
    environment = {"SSL_CERT_FILE": str(loopback_certificate.cert_path), "TEST_SMTP_PASSWORD": SMTP_PASSWORD}

    result = run_cli("backup", "--config", str(config), "--pg-bindir", str(bindir), dsn=filled.dsn,
                     env=environment)

    assert result.exit_code == 1
    assert "pg_dump failed with exit code 1" in result.stderr
    assert "WARNING pg_dump: error: connection to server lost" in result.stderr
    assert "pg_dump: pg_dump:" not in result.stderr
    assert backup_files(folder) == before
    with filled.connect() as connection:
        [event] = events(connection, where="action = 'BACKUP_FAILED'")
    assert "connection to server lost" in event["details"]["error"]
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    assert message["Subject"] == f"[auditctl] Backup of {filled.name} FAILED"
    assert "connection to server lost" in message.get_body(("plain",)).get_content()


def test_full_disk_removes_partial_file(filled, tmp_path, smtp_starttls, loopback_certificate):
    with filled.connect() as connection:
        connection.execute("CREATE TABLE blob (data text)")
        connection.execute("INSERT INTO blob SELECT md5(g::text) || repeat(md5(random()::text), 40) "
                           "FROM generate_series(1, 20000) g")
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        (folder / "notes.txt").write_text("keep me")
        config = mail_config(folder, smtp_starttls, tmp_path)
        environment = {"SSL_CERT_FILE": str(loopback_certificate.cert_path), "TEST_SMTP_PASSWORD": SMTP_PASSWORD}

        result = run_cli("backup", "--config", str(config), "--compress", "0", dsn=filled.dsn, env=environment)

        assert result.exit_code == 1, result.stderr
        assert "No space left on device" in result.stderr
        assert error_lines(result) == 1
        assert "Traceback" not in result.stderr
        assert backup_files(folder) == ["notes.txt"], result.stderr
        smtp_starttls.wait_for(1)
        assert len(smtp_starttls.messages) == 1, result.stderr
        [message] = smtp_starttls.messages
        assert "No space left on device" in message.get_body(("plain",)).get_content()
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_second_run_exits_75_while_locked(filled, tmp_path):
    with backup_lock(tmp_path):
        result = run_cli("backup", "--dir", str(tmp_path), dsn=filled.dsn)
    assert result.exit_code == 75
    assert "Another backup run" in result.stderr
    assert backup_files(tmp_path) == []


def test_overlapping_cli_runs_second_exits_75(filled, tmp_path):
    slow = tmp_path / "bin"
    slow.mkdir()
    real = Path(pg_tool(filled.server, "pg_dump"))
    write_script(slow / "pg_dump", f'[ "$1" = --version ] && exec "{real}" --version\nsleep 3\nexec "{real}" "$@"\n')
    (slow / "pg_restore").symlink_to(real.parent / "pg_restore")
    folder = tmp_path / "backups"
    folder.mkdir()
    environment = {**os.environ, "AUDITCTL_DSN": filled.dsn, "LANG": "C.UTF-8"}
    import sys
    first = subprocess.Popen([sys.executable, "-m", "auditctl", "backup", "--dir", str(folder), "--pg-bindir",
                              str(slow)], env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = folder / ".auditctl-backup.lock"
    for _ in range(100):
        if lock.exists() and lock.read_text().strip():
            break
        subprocess.run(["sleep", "0.05"])
    second = run_cli("backup", "--dir", str(folder), dsn=filled.dsn)
    first.communicate(timeout=60)

    assert second.exit_code == 75
    assert first.returncode == 0
    assert len([name for name in backup_files(folder) if name.endswith(".dump")]) == 1


def test_backup_records_event_when_audit_installed(filled, tmp_path):
    with filled.connect() as connection:
        install(connection, "audit", [], use_all=True)

    assert run_cli("backup", "--dir", str(tmp_path), dsn=filled.dsn).exit_code == 0

    dump = only_backup(tmp_path)
    with filled.connect() as connection:
        [event] = events(connection, where="action = 'BACKUP_CREATE'")
    assert event["details"]["file"] == dump.name
    assert event["details"]["size"] == dump.stat().st_size
    assert event["details"]["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()

    target = filled.server.create_database()
    try:
        assert run_cli("backup", "restore", str(dump), "--target-dsn", filled.server.dsn_for(target)).exit_code == 0
        with psycopg.connect(filled.server.dsn_for(target)) as connection:
            [restore_event] = events(connection, where="action = 'BACKUP_RESTORE'")
        assert restore_event["details"]["file"] == dump.name
    finally:
        filled.server.drop_database(target)


def test_backup_without_audit_schema_records_nothing(filled, tmp_path):
    result = run_cli("-v", "backup", "--dir", str(tmp_path), dsn=filled.dsn)
    assert result.exit_code == 0, result.stderr
    with filled.connect() as connection:
        assert connection.execute("SELECT to_regclass('audit.events')").fetchone()[0] is None


def test_dsn_password_never_on_a_command_line(filled, tmp_path):
    password = "p@ss:w/rd%&'\"x"
    with filled.connect() as connection:
        connection.execute(sql.SQL("CREATE ROLE backup_user LOGIN SUPERUSER PASSWORD {}").format(password))
    spy = tmp_path / "bin"
    spy.mkdir()
    real = Path(pg_tool(filled.server, "pg_dump"))
    argv_log = tmp_path / "argv.log"
    write_script(spy / "pg_dump", f'echo "$@" >> "{argv_log}"\nexec "{real}" "$@"\n')
    (spy / "pg_restore").symlink_to(real.parent / "pg_restore")
    params = psycopg.conninfo.conninfo_to_dict(filled.dsn)
    dsn = psycopg.conninfo.make_conninfo(**{**params, "user": "backup_user", "password": password})
    folder = tmp_path / "backups"
    folder.mkdir()

    result = run_cli("-vv", "backup", "--dir", str(folder), "--pg-bindir", str(spy), dsn=dsn)

    assert result.exit_code == 0, result.stderr
    assert "user=backup_user" in argv_log.read_text()
    assert password not in argv_log.read_text()
    assert password not in result.stdout + result.stderr
    for path in folder.iterdir():
        assert password.encode() not in path.read_bytes() if path.is_file() else True


@pytest.mark.parametrize("dump_format", ["custom", "directory"])
def test_unreadable_table_named_in_error(filled, tmp_path, dump_format):
    role = f"reader_{filled.name}"
    with filled.connect() as connection:
        install(connection, "audit", [], use_all=True)
        connection.execute(f"CREATE ROLE {role} LOGIN")
        connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
    dsn = psycopg.conninfo.make_conninfo(filled.dsn, user=role)
    try:
        result = run_cli("backup", "--dir", str(tmp_path), "--format", dump_format, dsn=dsn)
    finally:
        with filled.connect() as connection:
            connection.execute(f"DROP OWNED BY {role}; DROP ROLE {role}")

    assert result.exit_code == 1
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert re.search(rf"Role {role} may not read table audit\.\w+", line), line
    assert "the backup role must be able to read every table" in line
    assert f"GRANT pg_read_all_data TO {role}" in line


def test_connection_failure_printed_once(pg, tmp_path):
    result = run_cli("backup", "--dir", str(tmp_path), dsn=pg.dsn_for("no_such_database"))

    assert result.exit_code == 1
    assert result.stderr.count('database "no_such_database" does not exist') == 1, result.stderr
    assert error_lines(result) == 1
    assert "could not record BACKUP_FAILED in the audit log either, because of the same error" in result.stderr


def test_dsn_password_warned_once(filled, tmp_path):
    with filled.connect() as connection:
        install(connection, "audit", [], use_all=True)
    params = psycopg.conninfo.conninfo_to_dict(filled.dsn)
    # The test server trusts loopback connections, so libpq sends no password at all.
    dsn = psycopg.conninfo.make_conninfo(**{**params, "password": "unused-password"})

    result = run_cli("backup", "--dir", str(tmp_path), "--dsn", dsn)

    assert result.exit_code == 0, result.stderr
    assert result.stderr.count("contains a password") == 1, result.stderr


def wait_for_lock_wait(database, timeout: float = 60) -> None:
    """Wait until the backup's pg_dump waits for a table lock, as it does behind a long migration."""
    deadline = time.monotonic() + timeout
    with database.connect() as connection:
        while time.monotonic() < deadline:
            waiting = connection.execute(
                "SELECT count(*) FROM pg_catalog.pg_stat_activity "
                "WHERE application_name = 'auditctl backup' AND wait_event_type = 'Lock'").fetchone()[0]
            if waiting:
                return
            time.sleep(0.1)
    pytest.fail("pg_dump never waited for the table lock")


@pytest.mark.parametrize("delay", [0.0, 0.2, 1.0], ids=lambda delay: f"{delay}s")
@pytest.mark.parametrize(("signum", "exit_code", "delivery"),
                         [(signal.SIGTERM, 143, "process"), (signal.SIGINT, 130, "process"),
                          (signal.SIGINT, 130, "group"), (signal.SIGTERM, 143, "process-then-group")],
                         ids=["sigterm", "sigint", "sigint-group", "sigterm-timeout"])
def test_signal_during_dump_cleans_up(filled, tmp_path, smtp_starttls, loopback_certificate, signum, exit_code,
                                      delivery, delay):
    with filled.connect() as connection:
        install(connection, "audit", [], use_all=True)
    folder = tmp_path / "backups"
    folder.mkdir()
    config = mail_config(folder, smtp_starttls, tmp_path)
    environment = {"SSL_CERT_FILE": str(loopback_certificate.cert_path), "TEST_SMTP_PASSWORD": SMTP_PASSWORD}
    blocker = filled.connect(autocommit=False)
    blocker.execute("LOCK TABLE invoice IN ACCESS EXCLUSIVE MODE")
    # -v logs the removal of the partial file.
    process = start_cli("-v", "backup", "--config", str(config), dsn=filled.dsn, env=environment,
                        new_session=delivery != "process")
    try:
        wait_for_lock_wait(filled)
        [partial] = [name for name in backup_files(folder) if name.endswith(".partial")]
        time.sleep(delay)
        if delivery == "group":
            # Ctrl-C in a terminal signals the whole process group, pg_dump included.
            os.killpg(process.pid, signum)
        elif delivery == "process-then-group":
            # coreutils' timeout signals the command, then its whole process group, so auditctl gets the signal
            # twice. The pause lets the first handler run before the second signal comes.
            process.send_signal(signum)
            time.sleep(0.1)
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        blocker.rollback()
        blocker.close()

    name = signal.Signals(signum).name
    assert process.returncode == exit_code, stderr
    assert [line for line in stderr.splitlines() if line.startswith("Error: ")] == [
        f"Error: Interrupted by {name} before the backup was complete; no backup file was kept."]
    assert f"removed partial file {folder / partial}" in stderr
    assert backup_files(folder) == []
    with filled.connect() as connection:
        [event] = events(connection, where="action = 'BACKUP_FAILED'")
    assert f"Interrupted by {name}" in event["details"]["error"]
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    assert message["Subject"] == f"[auditctl] Backup of {filled.name} INTERRUPTED"
    assert f"Interrupted by {name}" in message.get_body(("plain",)).get_content()


def test_run_removes_stale_partial_files(filled, tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    stale_file = folder / f".{filled.name}_20261201T020000Z.dump.age.partial"
    stale_file.write_bytes(b"age-encryption.org/v1")
    stale_folder = folder / f".{filled.name}_20261201T020000Z-2.dir.partial"
    stale_folder.mkdir()
    (stale_folder / "toc.dat").write_bytes(b"PGDMP")
    strangers = [".notes.partial", f".{filled.name}.dump.partial", f"{filled.name}_20261201T020000Z.dump.partial",
                 f".{filled.name}_20261201T020000Z.dump.partial.bak", f".{filled.name}_20261201T020000Z.sql.partial"]
    for name in strangers:
        (folder / name).write_text("not auditctl's")
    config = tmp_path / "auditctl.toml"
    config.write_text(f'[backup]\ndir = "{folder}"\n')

    doctor = run_cli("doctor", "--config", str(config), dsn=filled.dsn)
    result = run_cli("backup", "--config", str(config), dsn=filled.dsn)

    assert doctor.exit_code == 0, doctor.stdout + doctor.stderr
    assert "partial files" in doctor.stdout
    assert stale_file.name in doctor.stdout
    assert stale_folder.name in doctor.stdout
    assert result.exit_code == 0, result.stderr
    assert not stale_file.exists()
    assert not stale_folder.exists()
    assert f"removed the partial file {stale_file} of an earlier run" in result.stderr
    for name in strangers:
        assert (folder / name).read_text() == "not auditctl's"



@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_signal_while_mailing_still_reports(filled, tmp_path, signum):
    with filled.connect() as connection:
        install(connection, "audit", [], use_all=True)
    folder = tmp_path / "backups"
    folder.mkdir()
    delivered = tmp_path / "mail.eml"
    # The mail program signals auditctl, its parent, while the report is being sent.
    sendmail = write_script(tmp_path / "sendmail", f'kill -{signum.name[3:]} $PPID\nsleep 0.2\ncat > "{delivered}"\n')
    config = tmp_path / "auditctl.toml"
    config.write_text(f'[backup]\ndir = "{folder}"\n\n[mail]\nto = ["ops@example.test"]\n'
                      f'from = "backup@example.test"\ntransport = "sendmail"\nsendmail_command = "{sendmail}"\n')

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn)

    assert result.exit_code == 128 + signum, result.stderr
    [backup] = [name for name in backup_files(folder) if name.endswith(".dump")]
    assert error_lines(result) == 1, result.stderr
    assert (f"Error: Interrupted by {signum.name} after {folder / backup} was written and verified"
            in result.stderr)
    assert "Backup of" in delivered.read_text()


def test_backup_in_missing_locale_is_quiet(filled, tmp_path):
    # ru_RU.UTF-8 may not be installed here; Debian's pg_wrapper, a Perl script, then warned on every start.
    folder = tmp_path / "backups"
    folder.mkdir()

    result = run_cli("backup", "--dir", str(folder), dsn=filled.dsn, env={"LANG": "ru_RU.UTF-8"})

    assert result.exit_code == 0, result.stderr
    assert "perl: warning" not in result.stderr
    assert "записана" in result.stdout
