"""The report mail over real SMTP (STARTTLS and implicit TLS, with AUTH) and real S3 for large files."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from auditctl.backup.mail import MESSAGE_OVERHEAD_BYTES, encoded_size
from backup_fixtures import SMTP_PASSWORD, SMTP_USER, sample_rows
from conftest import run_cli


def write_config(folder: Path, mail: dict, storage: dict | None = None, extra: str = "") -> Path:
    """Write an auditctl.toml with a [mail] (and optional [storage]) table."""
    def toml_value(value):
        return json.dumps(value, ensure_ascii=False) if not isinstance(value, bool) else str(value).lower()

    lines = ["[backup]", f"dir = {toml_value(str(folder))}", extra, "", "[mail]"]
    lines += [f"{key} = {toml_value(value)}" for key, value in mail.items()]
    if storage:
        lines += ["", "[storage]"] + [f"{key} = {toml_value(value)}" for key, value in storage.items()]
    path = folder.parent / "auditctl.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def smtp_mail(server, **overrides) -> dict:
    settings = {"to": ["ops@example.test", "lead@example.test"], "from": "backup@example.test",
                "host": "localhost", "port": server.port, "security": "starttls", "username": SMTP_USER,
                "password_env": "AUDITCTL_TEST_SMTP_PASSWORD"}
    settings.update(overrides)
    return settings


def mail_env(certificate, **extra) -> dict[str, str]:
    """Trust the test's self-signed certificate the standard OpenSSL way, and pass the password."""
    return {"SSL_CERT_FILE": str(certificate.cert_path), "AUDITCTL_TEST_SMTP_PASSWORD": SMTP_PASSWORD, **extra}


@pytest.fixture
def folder(tmp_path) -> Path:
    path = tmp_path / "backups"
    path.mkdir()
    return path


@pytest.fixture
def filled(db):
    with db.connect() as connection:
        sample_rows(connection)
    return db


def test_success_mail_over_starttls_with_attachment(filled, folder, smtp_starttls, loopback_certificate):
    config = write_config(folder, smtp_mail(smtp_starttls))

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn, env=mail_env(loopback_certificate))

    assert result.exit_code == 0, result.stderr
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    assert smtp_starttls.envelopes == [["ops@example.test", "lead@example.test"]]
    assert smtp_starttls.logins == [(SMTP_USER, True)]
    assert message["Subject"].startswith(f"[auditctl] Backup of {filled.name} succeeded")
    [dump] = folder.glob("*.dump")
    body = message.get_body(("plain",)).get_content()
    assert f"Database: {filled.name}" in body
    assert str(dump) in body
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == dump.name
    assert attachment.get_content() == dump.read_bytes()


def test_cyrillic_database_name_in_subject_and_file_name(pg, tmp_path, smtp_tls, loopback_certificate):
    name = "бухгалтерия"
    with psycopg.connect(pg.admin_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with psycopg.connect(pg.dsn_for(name), autocommit=True) as connection:
            sample_rows(connection)
        backups = tmp_path / "backups"
        backups.mkdir()
        password_file = tmp_path / "smtp-password"
        password_file.write_text(SMTP_PASSWORD + "\n")
        password_file.chmod(0o600)
        mail = smtp_mail(smtp_tls, security="tls", password_env=None, password_file=str(password_file))
        del mail["password_env"]
        config = write_config(backups, mail)

        result = run_cli("backup", "--config", str(config), dsn=pg.dsn_for(name),
                         env={"SSL_CERT_FILE": str(loopback_certificate.cert_path), "LANG": "ru_RU.UTF-8"})

        assert result.exit_code == 0, result.stderr
        smtp_tls.wait_for(1)
        [message] = smtp_tls.messages
        assert str(message["Subject"]).startswith(f"[auditctl] Резервная копия {name} создана (")
        assert message.as_bytes().isascii()
        body = message.get_body(("plain",)).get_content()
        assert "Результат: копия создана и проверена" in body
        assert re.search(r"^Длительность: \d+,\d с\r?$", body, re.M), body
        [attachment] = list(message.iter_attachments())
        assert attachment.get_filename().startswith(name + "_")
    finally:
        with psycopg.connect(pg.admin_dsn, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_message_headers_are_ascii_on_the_wire(filled, folder, smtp_starttls, loopback_certificate):
    from auditctl.backup.config import MailSettings
    from auditctl.backup.mail import MailReport, build_message

    attachment = folder / "бухгалтерия_20261204T020000Z.dump"
    attachment.write_bytes(b"PGDMP")
    settings = MailSettings(to=("ops@example.test",), sender="backup@example.test")
    wire = build_message(settings, MailReport("Резервная копия бухгалтерия", "тело\n", attachment)).as_bytes()
    assert wire.isascii()
    assert b"=?utf-8?" in wire
    assert b"filename*0*=utf-8''%D0%B1" in wire  # RFC 2231, split into continuations


@pytest.mark.parametrize("subject", [
    "[auditctl] Резервная копия app создана (891,0 КБ)",
    "[auditctl] Резервная копия appsomething создана (1,0 ГБ)",
    "[auditctl] ОШИБКА резервного копирования app",
    "[auditctl] Backup of app created (891.0 kB)",
])
def test_subject_keeps_spaces_after_decoding(subject):
    from email import message_from_bytes
    from email.policy import default

    from auditctl.backup.config import MailSettings
    from auditctl.backup.mail import MailReport, build_message

    settings = MailSettings(to=("ops@example.test",), sender="backup@example.test")
    wire = build_message(settings, MailReport(subject, "тело\n")).as_bytes()
    head = wire.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert str(message_from_bytes(wire, policy=default)["Subject"]) == subject


def test_password_file_readable_by_others_is_rejected(filled, folder, tmp_path, smtp_tls, loopback_certificate):
    password_file = tmp_path / "smtp-password"
    password_file.write_text(SMTP_PASSWORD)
    password_file.chmod(0o644)
    mail = smtp_mail(smtp_tls, security="tls", password_file=str(password_file))
    del mail["password_env"]
    config = write_config(folder, mail)

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn,
                     env={"SSL_CERT_FILE": str(loopback_certificate.cert_path)})

    # The password is read before the dump, as doctor reads it, so nothing is dumped without it.
    assert result.exit_code == 2
    assert "chmod 600" in result.stderr
    assert list(folder.glob("*.dump")) == []
    assert smtp_tls.messages == []


def test_plaintext_auth_is_refused_before_backup(filled, folder, smtp_starttls, loopback_certificate):
    config = write_config(folder, smtp_mail(smtp_starttls, security="none"))

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn, env=mail_env(loopback_certificate))

    assert result.exit_code == 2
    assert "Refusing to send the SMTP password over an unencrypted connection" in result.stderr
    assert list(folder.iterdir()) == []
    assert smtp_starttls.logins == []


def test_unreachable_smtp_keeps_backup_and_fails_run(filled, folder, loopback_certificate):
    from backup_fixtures import free_port
    port = free_port()
    config = write_config(folder, {"to": ["ops@example.test"], "from": "backup@example.test", "host": "127.0.0.1",
                                   "port": port, "security": "tls", "timeout_seconds": 5})

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn)
    # A wide terminal keeps each detail on one line of the table.
    doctor = run_cli("doctor", "--config", str(config), dsn=filled.dsn, env={"COLUMNS": "400"})

    assert result.exit_code == 3
    assert f"Sending mail through 127.0.0.1:{port} failed: Connection refused" in result.stderr
    assert "[Errno" not in result.stderr
    assert len(list(folder.glob("*.dump"))) == 1
    assert doctor.exit_code == 1
    [smtp_row] = [line for line in doctor.stdout.splitlines() if "SMTP" in line]
    assert f"127.0.0.1:{port}: Connection refused" in smtp_row
    assert "[Errno" not in smtp_row


def test_recipients_with_passphrase_send_no_mail(filled, folder, smtp_starttls, loopback_certificate):
    from pyrage import x25519
    recipient = x25519.Identity.generate().to_public()
    passphrase_file = folder.parent / "passphrase"
    passphrase_file.write_text("correct horse")
    passphrase_file.chmod(0o600)
    config = write_config(folder, smtp_mail(smtp_starttls),
                          extra=f'\n[backup.encryption]\nrecipients = ["{recipient}"]')

    result = run_cli("backup", "--config", str(config), "--passphrase-file", str(passphrase_file),
                     dsn=filled.dsn, env=mail_env(loopback_certificate))

    assert result.exit_code == 2
    assert "Use either age recipients or a passphrase file, not both" in result.stderr
    assert "Report mail sent" not in result.stdout
    time.sleep(0.5)
    assert smtp_starttls.messages == []
    assert list(folder.iterdir()) == []


def test_failure_mail_has_error_and_log_tail(pg, folder, smtp_starttls, loopback_certificate):
    config = write_config(folder, smtp_mail(smtp_starttls))

    result = run_cli("backup", "--config", str(config), dsn=pg.dsn_for("no_such_database"),
                     env=mail_env(loopback_certificate))

    assert result.exit_code == 1
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    assert message["Subject"] == "[auditctl] Backup of no_such_database FAILED"
    body = message.get_body(("plain",)).get_content()
    assert "Result: BACKUP FAILED" in body
    assert 'database "no_such_database" does not exist' in body
    assert "Last log lines:" in body
    assert "WARNING could not record BACKUP_FAILED in the audit log either" in body
    assert list(message.iter_attachments()) == []
    assert [path.name for path in folder.iterdir() if not path.name.startswith(".")] == []


def dump_size(folder: Path) -> int:
    [dump] = folder.glob("*.dump")
    return dump.stat().st_size


@pytest.mark.parametrize("margin", [0, -1], ids=["just-under-limit", "just-over-limit"])
def test_attachment_limit_counts_base64(filled, folder, smtp_starttls, loopback_certificate, s3_server, margin):
    # A first run measures the size of this database's dump; the limit is then set
    # around it. pg_dump of the same data gives the same size.
    assert run_cli("backup", "--dir", str(folder), dsn=filled.dsn).exit_code == 0
    size = dump_size(folder)
    for path in folder.iterdir():
        path.unlink()
    limit = encoded_size(size) + MESSAGE_OVERHEAD_BYTES + margin
    storage = {"bucket": s3_server.bucket, "endpoint_url": s3_server.endpoint_url, "prefix": "nightly",
               "link_expires_hours": 2}
    config = write_config(folder, smtp_mail(smtp_starttls, max_attachment_mb=limit / 1024 / 1024), storage)

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn,
                     env=mail_env(loopback_certificate, **s3_server.environment))

    assert result.exit_code == 0, result.stderr
    assert dump_size(folder) == size
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    [dump] = folder.glob("*.dump")
    attachments = list(message.iter_attachments())
    body = message.get_body(("plain",)).get_content()
    if margin == 0:
        assert len(attachments) == 1
        assert len(message.as_bytes()) <= limit
    else:
        assert attachments == []
        [url] = [line for line in body.splitlines() if line.startswith("http://127.0.0.1")]
        assert "nightly/" + dump.name in url
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.read() == dump.read_bytes()


@pytest.mark.parametrize("profile", [None, "backups"])
def test_storage_keys_from_credentials_file(filled, folder, smtp_starttls, loopback_certificate, s3_server, profile):
    credentials = Path(os.environ["HOME"]) / ".aws" / "credentials"
    credentials.parent.mkdir()
    credentials.write_text(f"[{profile or 'default'}]\naws_access_key_id = FILEKEYID\n"
                           "aws_secret_access_key = file-secret-value\n")
    credentials.chmod(0o600)
    storage = {"bucket": s3_server.bucket, "endpoint_url": s3_server.endpoint_url}
    if profile:
        storage["profile"] = profile
    config = write_config(folder, smtp_mail(smtp_starttls, max_attachment_mb=0.001), storage)

    environment = mail_env(loopback_certificate, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")

    # -v adds the INFO lines to the output checked for the secret.
    result = run_cli("-v", "backup", "--config", str(config), dsn=filled.dsn, env=environment)

    assert result.exit_code == 0, result.stderr
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    body = message.get_body(("plain",)).get_content()
    [url] = [line for line in body.splitlines() if line.startswith("http://127.0.0.1")]
    assert "FILEKEYID" in url
    [dump] = folder.glob("*.dump")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == dump.read_bytes()
    assert "file-secret-value" not in body + result.stdout + result.stderr


def test_unknown_storage_profile_is_missing_keys(filled, folder, smtp_starttls, loopback_certificate, s3_server):
    storage = {"bucket": s3_server.bucket, "endpoint_url": s3_server.endpoint_url, "profile": "absent"}
    config = write_config(folder, smtp_mail(smtp_starttls, max_attachment_mb=0.001), storage)
    environment = mail_env(loopback_certificate, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn, env=environment)

    assert result.exit_code == 2, result.stderr
    [error] = error_lines(result)
    assert "~/.aws/credentials (profile absent)" in error
    assert list(folder.glob("*.dump")) == []


def test_too_large_without_storage_names_path(filled, folder, smtp_starttls, loopback_certificate):
    config = write_config(folder, smtp_mail(smtp_starttls, max_attachment_mb=0.001))

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn, env=mail_env(loopback_certificate))

    assert result.exit_code == 0, result.stderr
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    [dump] = folder.glob("*.dump")
    body = message.get_body(("plain",)).get_content()
    assert "too large to attach" in body
    assert str(dump) in body
    assert list(message.iter_attachments()) == []


def test_sendmail_transport_gets_message_on_stdin(filled, folder, tmp_path):
    captured = tmp_path / "sendmail.eml"
    arguments = tmp_path / "sendmail.args"
    fake = tmp_path / "sendmail"
    fake.write_text(f'#!/bin/sh\necho "$@" > "{arguments}"\ncat > "{captured}"\n')
    fake.chmod(0o755)
    config = write_config(folder, {"to": ["ops@example.test", "lead@example.test"], "from": "backup@example.test",
                                   "transport": "sendmail", "sendmail_command": str(fake)})

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn)

    assert result.exit_code == 0, result.stderr
    assert arguments.read_text().split() == ["-i", "--", "ops@example.test", "lead@example.test"]
    assert b"Subject: [auditctl] Backup of" in captured.read_bytes()


def test_secrets_never_in_output_or_log(filled, folder, tmp_path, smtp_starttls, loopback_certificate):
    config = write_config(folder, smtp_mail(smtp_starttls))

    result = run_cli("-vv", "backup", "--config", str(config), dsn=filled.dsn, env=mail_env(loopback_certificate))

    assert result.exit_code == 0, result.stderr
    output = result.stdout + result.stderr
    assert "DEBUG" in output
    assert SMTP_PASSWORD not in output
    # AUTH PLAIN sends base64("\0user\0password"); that form must not leak either.
    plain_auth = base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode()
    assert plain_auth not in output
    smtp_starttls.wait_for(1)
    assert SMTP_PASSWORD not in smtp_starttls.messages[0].as_string()
    assert smtp_starttls.logins == [(SMTP_USER, True)]


def test_wrong_smtp_password_keeps_backup(filled, folder, smtp_starttls, loopback_certificate):
    config = write_config(folder, smtp_mail(smtp_starttls))
    environment = mail_env(loopback_certificate, AUDITCTL_TEST_SMTP_PASSWORD="not-the-password")

    # -v adds the INFO lines to the output checked for the password.
    result = run_cli("-v", "backup", "--config", str(config), dsn=filled.dsn, env=environment)

    assert result.exit_code == 3
    assert f"SMTP login to localhost:{smtp_starttls.port} as {SMTP_USER} failed: 535" in result.stderr
    assert "not-the-password" not in result.stdout + result.stderr
    assert len(list(folder.glob("*.dump"))) == 1
    # smtplib tries each mechanism the server offers (PLAIN, then LOGIN).
    assert {login for login in smtp_starttls.logins} == {(SMTP_USER, False)}


def test_directory_format_mail_names_folder(filled, folder, smtp_starttls, loopback_certificate):
    config = write_config(folder, smtp_mail(smtp_starttls))

    result = run_cli("backup", "--config", str(config), "--format", "directory", dsn=filled.dsn,
                     env=mail_env(loopback_certificate))

    assert result.exit_code == 0, result.stderr
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    [dump] = folder.glob("*.dir")
    body = message.get_body(("plain",)).get_content()
    assert "directory-format folder" in body
    assert str(dump) in body
    assert list(message.iter_attachments()) == []


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Error: ")]


def test_missing_bucket_mails_upload_failure(filled, folder, smtp_starttls, loopback_certificate, s3_server):
    storage = {"bucket": "no-such-bucket", "endpoint_url": s3_server.endpoint_url}
    config = write_config(folder, smtp_mail(smtp_starttls, max_attachment_mb=0.001), storage)

    # -v adds the INFO lines to the output checked for the secret key.
    result = run_cli("-v", "backup", "--config", str(config), dsn=filled.dsn,
                     env=mail_env(loopback_certificate, **s3_server.environment))

    assert result.exit_code == 3, result.stderr
    assert "Internal error" not in result.stderr
    [error] = error_lines(result)
    [dump] = folder.glob("*.dump")
    expected = (f"Upload of {dump.name} failed: bucket no-such-bucket does not exist at {s3_server.endpoint_url}; "
                "create it or correct bucket in [storage].")
    assert expected in error
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    assert "succeeded" in message["Subject"]
    body = message.get_body(("plain",)).get_content()
    assert "The backup is too large to attach and the upload failed: " + expected in body
    assert s3_server.environment["AWS_SECRET_ACCESS_KEY"] not in body + result.stdout + result.stderr


def test_missing_storage_credentials_stop_backup(filled, folder, smtp_starttls, loopback_certificate, s3_server):
    storage = {"bucket": s3_server.bucket, "endpoint_url": s3_server.endpoint_url}
    config = write_config(folder, smtp_mail(smtp_starttls, max_attachment_mb=0.001), storage)
    environment = mail_env(loopback_certificate, AWS_ACCESS_KEY_ID="", AWS_SECRET_ACCESS_KEY="")

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn, env=environment)

    # As doctor does, the run reads the storage keys before the dump, so a missing key is found at once.
    assert result.exit_code == 2, result.stderr
    assert error_lines(result) == [
        "Error: Storage credentials missing: set the environment variables AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or put the keys in the shared credentials file ~/.aws/credentials "
        "(profile default)."]
    assert list(folder.glob("*.dump")) == []
    assert smtp_starttls.messages == []


@pytest.mark.parametrize("problem", ["missing", "read-only"])
def test_folder_problem_sends_failure_mail(filled, tmp_path, smtp_starttls, loopback_certificate, problem):
    folder = tmp_path / "backups"
    config = write_config(folder, smtp_mail(smtp_starttls))
    mounted = False
    if problem == "read-only":
        folder.mkdir()
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                               capture_output=True, text=True)
        if mount.returncode != 0:
            pytest.skip(f"cannot mount a read-only tmpfs here: {mount.stderr.strip()}")
        mounted = True
    try:
        result = run_cli("backup", "--config", str(config), dsn=filled.dsn, env=mail_env(loopback_certificate))
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)

    assert result.exit_code == 2
    expected = f"Backup folder {folder} " + ("does not exist" if problem == "missing" else "is not writable")
    [error] = error_lines(result)
    assert expected in error
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    assert message["Subject"] == f"[auditctl] Backup of {filled.name} FAILED"
    assert expected in message.get_body(("plain",)).get_content()


def test_url_backup_mail_names_source_url(http_endpoint, folder, smtp_starttls, loopback_certificate):
    http_endpoint.body = b'{"users": []}'
    config = write_config(folder, smtp_mail(smtp_starttls))

    result = run_cli("backup", "--config", str(config), "--from-url", http_endpoint.url + "?token=s3cr3t",
                     env=mail_env(loopback_certificate))

    assert result.exit_code == 0, result.stderr
    smtp_starttls.wait_for(1)
    [message] = smtp_starttls.messages
    body = message.get_body(("plain",)).get_content()
    assert f"Source: {http_endpoint.url}" in body.splitlines()
    assert "Database:" not in body
    assert "s3cr3t" not in body


def test_success_mail_names_missing_file(tmp_path):
    from auditctl.backup.config import BackupSettings, MailSettings
    from auditctl.backup.dump import BackupResult
    from auditctl.backup.job import JobReport, success_report
    from auditctl.backup.manifest import Manifest

    manifest = Manifest(database="app", file="app_20261204T020000Z.dump", format="custom", size=1237,
                        sha256="0" * 64, started_at="2026-12-04T02:00:00+00:00",
                        finished_at="2026-12-04T02:00:01+00:00", encrypted=False)
    report = JobReport(started=time.monotonic(), result=BackupResult(tmp_path / manifest.file, manifest))
    settings = BackupSettings(folder=tmp_path, mail=MailSettings(to=("ops@example.test",),
                                                                 sender="backup@example.test"))

    mail = success_report(settings, report)

    assert "directory-format" not in mail.body
    assert "The backup is no longer at the path above; it was not attached or uploaded." in mail.body
    assert mail.attachment is None


def test_doctor_checks_sendmail_program(db, folder, tmp_path):
    config = write_config(folder, {"to": ["ops@example.test"], "from": "backup@example.test",
                                   "transport": "sendmail", "sendmail_command": "/nonexistent/sendmail"})
    not_executable = tmp_path / "sendmail-not-executable"
    not_executable.write_text("#!/bin/sh\ncat > /dev/null\n")

    missing = run_cli("doctor", "--config", str(config), dsn=db.dsn, env={"COLUMNS": "400"})
    config.write_text(config.read_text().replace("/nonexistent/sendmail", str(not_executable)))
    unusable = run_cli("doctor", "--config", str(config), dsn=db.dsn, env={"COLUMNS": "400"})
    not_executable.chmod(0o755)
    usable = run_cli("doctor", "--config", str(config), dsn=db.dsn, env={"COLUMNS": "400"})

    assert missing.exit_code == 1
    assert "/nonexistent/sendmail is not found or not executable" in missing.stdout
    assert unusable.exit_code == 1
    assert f"{not_executable} is not found or not executable" in unusable.stdout
    assert usable.exit_code == 0, usable.stdout + usable.stderr
    assert str(not_executable) in usable.stdout
