"""cron install and doctor, with the crontab line run under a bare environment as cron would."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from backup_fixtures import SMTP_PASSWORD, SMTP_USER, sample_rows
from conftest import REPO_ROOT, run_cli


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def filled(db):
    with db.connect() as connection:
        sample_rows(connection)
    return db


def test_printed_cron_line_runs_in_bare_environment(filled, tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{folder}"\ndsn = "{filled.dsn}"\n')
    log_file = tmp_path / "backup.log"

    # The line changes into the folder it was printed in, so that `python -m
    # auditctl` there imports this checkout rather than another installed copy.
    printed = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config),
                      "--log-file", str(log_file), "--print", cwd=REPO_ROOT)

    assert printed.exit_code == 0, printed.stderr
    line = printed.stdout.strip()
    assert line.startswith("0 2 * * * cd ")
    assert f"--config {config}" in line
    assert f">> {log_file} 2>&1" in line
    command = line[len("0 2 * * * "):].rsplit(" # auditctl backup", 1)[0]
    # cron's environment: no PATH beyond the default, no HOME-based settings, no locale.
    ran = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", "/bin/sh", "-c", command], capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 0, log_file.read_text()
    assert len(list(folder.glob("*.dump"))) == 1
    assert "INFO" in log_file.read_text()


def test_install_replaces_earlier_entry_and_keeps_others(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", "[backup]\n")
    store = tmp_path / "crontab.txt"
    store.write_text("MAILTO=ops@example.test\n15 * * * * /usr/bin/true\n")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "crontab").write_text(f'#!/bin/sh\nif [ "$1" = -l ]; then cat "{store}"; else cat > "{store}"; fi\n')
    (fake / "crontab").chmod(0o755)
    environment = {"PATH": f"{fake}:{os.environ['PATH']}"}

    for schedule in ("0 2 * * *", "30 3 * * *"):
        result = run_cli("cron", "install", "--schedule", schedule, "--config", str(config), env=environment)
        assert result.exit_code == 0, result.stderr

    lines = store.read_text().splitlines()
    assert lines[:2] == ["MAILTO=ops@example.test", "15 * * * * /usr/bin/true"]
    assert len(lines) == 3
    assert lines[2].startswith("30 3 * * * ")


@pytest.mark.parametrize("schedule", ["0 2 * *", "every night", "0 2 * * * rm"], ids=["four-fields", "words",
                                                                                      "six-fields"])
def test_invalid_schedule_is_rejected(tmp_path, schedule):
    config = write_config(tmp_path / "auditctl.toml", "[backup]\n")
    result = run_cli("cron", "install", "--schedule", schedule, "--config", str(config), "--print")
    assert result.exit_code == 2
    assert "Invalid --schedule" in result.stderr


def doctor_config(tmp_path: Path, dsn: str, smtp, s3, password_env: str = "DOCTOR_SMTP_PASSWORD") -> Path:
    folder = tmp_path / "backups"
    folder.mkdir(exist_ok=True)
    return write_config(tmp_path / "auditctl.toml", f"""
[backup]
dir = "{folder}"
dsn = "{dsn}"

[mail]
to = ["ops@example.test"]
from = "backup@example.test"
host = "localhost"
port = {smtp.port}
security = "starttls"
username = "{SMTP_USER}"
password_env = "{password_env}"

[storage]
bucket = "{s3.bucket}"
endpoint_url = "{s3.endpoint_url}"
""")


def test_doctor_passes_with_working_setup(filled, tmp_path, smtp_starttls, s3_server, loopback_certificate):
    config = doctor_config(tmp_path, filled.dsn, smtp_starttls, s3_server)
    environment = {"SSL_CERT_FILE": str(loopback_certificate.cert_path), "DOCTOR_SMTP_PASSWORD": SMTP_PASSWORD,
                   **s3_server.environment}

    result = run_cli("doctor", "--config", str(config), env=environment)

    assert result.exit_code == 0, result.stdout + result.stderr
    assert "login accepted" in result.stdout
    assert "is reachable" in result.stdout
    assert "failed" not in result.stdout
    assert SMTP_PASSWORD not in result.stdout + result.stderr
    assert smtp_starttls.messages == []


def test_doctor_names_each_failure(pg, tmp_path, smtp_starttls, s3_server, loopback_certificate):
    config = doctor_config(tmp_path, pg.dsn_for("missing_db"), smtp_starttls, s3_server)
    # A wide terminal keeps each detail on one line of the table.
    environment = {"SSL_CERT_FILE": str(loopback_certificate.cert_path), "DOCTOR_SMTP_PASSWORD": "wrong",
                   "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "COLUMNS": "400"}
    config.write_text(config.read_text().replace('bucket = "backups"', 'bucket = "no-such-bucket"'))

    result = run_cli("doctor", "--config", str(config), env=environment)

    assert result.exit_code == 1
    assert 'database "missing_db" does not exist' in result.stdout
    [smtp_row] = [line for line in result.stdout.splitlines() if "SMTP" in line]
    assert f"localhost:{smtp_starttls.port}: 535 5.7.8 Authentication credentials invalid" in smtp_row
    assert "(535, b'" not in smtp_row
    assert "no-such-bucket" in result.stdout
    assert "Some checks failed" in result.stderr


def test_doctor_explains_untrusted_certificate(pg, tmp_path, smtp_starttls, s3_server):
    config = doctor_config(tmp_path, pg.dsn_for("postgres"), smtp_starttls, s3_server)
    # Without SSL_CERT_FILE the test server's self-signed certificate is unknown.
    # A wide terminal keeps the detail on one line of the table.
    environment = {"DOCTOR_SMTP_PASSWORD": SMTP_PASSWORD, "COLUMNS": "400", **s3_server.environment}

    result = run_cli("doctor", "--config", str(config), env=environment)

    assert result.exit_code == 1
    [smtp_row] = [line for line in result.stdout.splitlines() if "SMTP" in line]
    assert "certificate verify failed (self-signed certificate)" in smtp_row
    assert "set SSL_CERT_FILE to that certificate for this command and in the cron line" in smtp_row


@pytest.mark.parametrize(("folder", "detail"), [
    ("/sys", "/sys is not writable (Permission denied); set dir to another folder."),
    ("{tmp}/file", "{tmp}/file is not a folder; set dir to a folder."),
], ids=["sys", "regular-file"])
def test_doctor_checks_folder_by_writing(db, tmp_path, folder, detail):
    (tmp_path / "file").write_text("x")
    config = write_config(tmp_path / "auditctl.toml",
                          f'[backup]\ndir = "{folder.format(tmp=tmp_path)}"\ndsn = "{db.dsn}"\n')

    result = run_cli("doctor", "--config", str(config), env={"COLUMNS": "400"})

    assert result.exit_code == 1
    assert detail.format(tmp=tmp_path) in result.stdout


def test_doctor_takes_own_dsn_and_dir(db, pg, tmp_path):
    config = write_config(tmp_path / "auditctl.toml",
                          f'[backup]\ndir = "{tmp_path}/missing"\ndsn = "{pg.dsn_for("missing_db")}"\n')
    folder = tmp_path / "other"
    folder.mkdir()

    result = run_cli("doctor", "--config", str(config), "--dsn", db.dsn, "--dir", str(folder),
                     env={"COLUMNS": "400"})

    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"{db.name} on PostgreSQL" in result.stdout
    assert f"{folder}: " in result.stdout
    assert "missing" not in result.stdout


def test_doctor_uses_dsn_before_command(db, pg, tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    config = write_config(tmp_path / "auditctl.toml",
                          f'[backup]\ndir = "{folder}"\ndsn = "{pg.dsn_for("missing_db")}"\n')

    result = run_cli("--dsn", db.dsn, "doctor", "--config", str(config))

    assert result.exit_code == 0, result.stdout + result.stderr
    assert f"{db.name} on PostgreSQL" in result.stdout
    assert "missing_db" not in result.stdout
