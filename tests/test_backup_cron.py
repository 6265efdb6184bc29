"""cron install and doctor, with the crontab line run under a bare environment as cron would."""

from __future__ import annotations

import os
import stat
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


def command_of(line: str) -> str:
    """Return the shell command of a crontab line: without the five schedule fields and the marker."""
    return line.split(" ", 5)[5].rsplit(" # auditctl backup", 1)[0]


def fake_crontab(tmp_path: Path, list_error: str | None = None) -> tuple[dict[str, str], Path]:
    """Put a crontab program on PATH that keeps the crontab in a file; ``list_error`` makes ``crontab -l`` fail."""
    store = tmp_path / "crontab.txt"
    folder = tmp_path / "bin"
    folder.mkdir()
    if list_error is None:
        listing = f'cat "{store}"'
    else:
        listing = f"echo '{list_error}' >&2; exit 1"
    (folder / "crontab").write_text(f'#!/bin/sh\nif [ "$1" = -l ]; then {listing}; else cat > "{store}"; fi\n')
    (folder / "crontab").chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}, store


def test_installed_line_runs_in_bare_environment(filled, tmp_path, user_folders):
    folder = tmp_path / "etc" / "backups"
    folder.mkdir(parents=True)
    # dir is relative, so it is read from the config file's folder, not from the folder the job changes into.
    config = write_config(tmp_path / "etc" / "auditctl.toml", f'[backup]\ndir = "backups"\ndsn = "{filled.dsn}"\n')
    crontab = tmp_path / "crontab"
    log_file = tmp_path / "backup.log"

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--log-file",
                     str(log_file), "--crontab-file", str(crontab), env={"LANG": "ru_RU.UTF-8"})

    assert result.exit_code == 0, result.stderr
    [line] = crontab.read_text().splitlines()
    assert line.startswith(f"0 2 * * * cd {user_folders.workdir} && LANG=ru_RU.UTF-8 ")
    assert f"-P -m auditctl backup --config {config}" in line
    assert f">> {log_file} 2>&1" in line

    # A package of the same name in the job's folder must not replace the installed one.
    decoy = user_folders.workdir / "auditctl"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise SystemExit('imported the auditctl folder of the working folder')\n")
    # cron's environment: a default PATH and nothing else of this shell. PYTHONPATH only makes the
    # interpreter import this checkout, where the package may be installed from another one.
    ran = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", f"PYTHONPATH={REPO_ROOT}", "/bin/sh", "-c",
                          command_of(line)], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, log_file.read_text()
    [dump] = folder.glob("*.dump")
    assert str(dump) in log_file.read_text()


def test_install_replaces_earlier_entry_and_keeps_others(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", "[backup]\n")
    environment, store = fake_crontab(tmp_path)
    store.write_text("MAILTO=ops@example.test\n15 * * * * /usr/bin/true\n")

    for schedule in ("0 2 * * *", "30 3 * * *"):
        result = run_cli("cron", "install", "--schedule", schedule, "--config", str(config), env=environment)
        assert result.exit_code == 0, result.stderr

    lines = store.read_text().splitlines()
    assert lines[:2] == ["MAILTO=ops@example.test", "15 * * * * /usr/bin/true"]
    assert len(lines) == 3
    assert lines[2].startswith("30 3 * * * ")
    assert "Replaced the line marked # auditctl backup in crontab:" in result.stdout


def test_install_without_crontab_program(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{tmp_path}"\n')
    no_programs = tmp_path / "bin"
    no_programs.mkdir()
    crontab = tmp_path / "crontab"
    crontab.write_text("MAILTO=ops@example.test\n")
    arguments = ["cron", "install", "--schedule", "0 2 * * *", "--config", str(config)]

    missing = run_cli(*arguments, env={"PATH": str(no_programs)})
    to_file = run_cli(*arguments, "--crontab-file", str(crontab), env={"PATH": str(no_programs)})

    assert missing.exit_code == 1, missing.stderr
    assert missing.stderr == "Error: The crontab program was not found; install cron, or pass --crontab-file.\n"
    assert to_file.exit_code == 0, to_file.stderr
    lines = crontab.read_text().splitlines()
    assert lines[0] == "MAILTO=ops@example.test"
    assert lines[1].endswith(" # auditctl backup")
    assert f"Added to {crontab}:" in to_file.stdout


def test_missing_user_crontab_counts_as_empty(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{tmp_path}"\n')
    environment, store = fake_crontab(tmp_path, list_error="no crontab for postgres")

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), env=environment)

    assert result.exit_code == 0, result.stderr
    [line] = store.read_text().splitlines()
    assert line.endswith(" # auditctl backup")


def test_crontab_read_failure_changes_nothing(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{tmp_path}"\n')
    error = "crontab: cannot open /var/spool/cron/crontabs/postgres: Permission denied"
    environment, store = fake_crontab(tmp_path, list_error=error)
    store.write_text("15 * * * * /usr/local/bin/vacuum-all\n")

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), env=environment)

    assert result.exit_code == 1
    assert result.stderr == (f"Error: Reading the crontab with `crontab -l` failed: {error}. Nothing was changed; "
                             "fix the cause, or pass --crontab-file.\n")
    assert store.read_text() == "15 * * * * /usr/local/bin/vacuum-all\n"


@pytest.mark.parametrize(("log_file", "message"), [
    ("{tmp}/missing/backup.log",
     "Cannot write the log file {tmp}/missing/backup.log: folder {tmp}/missing does not exist"),
    ("{tmp}/file/backup.log", "Cannot write the log file {tmp}/file/backup.log: {tmp}/file is not a folder"),
    ("/proc/backup.log", "Cannot write the log file /proc/backup.log: folder /proc is not writable"),
    ("{tmp}", "The log file {tmp} is a folder; pass a file name with --log-file."),
], ids=["missing-folder", "file-as-folder", "proc", "folder"])
def test_unwritable_log_file_is_rejected(tmp_path, log_file, message):
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{tmp_path}"\n')
    (tmp_path / "file").write_text("x")
    crontab = tmp_path / "crontab"

    for extra in ([], ["--print"]):
        result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--crontab-file",
                         str(crontab), "--log-file", log_file.format(tmp=tmp_path), *extra)

        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith(f"Error: {message.format(tmp=tmp_path)}")
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stdout == ""
        assert not crontab.exists()


def test_line_carries_locale_and_certificates(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{tmp_path}"\n')
    crontab = tmp_path / "crontab"
    environment = {"LANG": "ru_RU.UTF-8", "LC_ALL": "", "SSL_CERT_FILE": "/etc/ssl/private CA/100%.pem",
                   "PGSSLMODE": "verify-full"}

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--crontab-file",
                     str(crontab), "--env", "PGSSLMODE", "--env", "TZ=Europe/Moscow", env=environment)

    assert result.exit_code == 0, result.stderr
    line = crontab.read_text()
    assert " LANG=ru_RU.UTF-8 " in line
    assert "LC_ALL" not in line
    # Quoted for the shell, and % escaped for cron.
    assert " SSL_CERT_FILE='/etc/ssl/private CA/100\\%.pem' " in line
    assert " PGSSLMODE=verify-full TZ=Europe/Moscow " in line


def test_env_carries_names_of_locations(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{tmp_path}"\n')
    crontab = tmp_path / "crontab"
    environment = {"SSH_AUTH_SOCK": "/run/user/0/agent.sock", "AWS_SHARED_CREDENTIALS_FILE": "/root/.aws/backup"}

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--crontab-file",
                     str(crontab), "--env", "SSH_AUTH_SOCK", "--env", "AWS_SHARED_CREDENTIALS_FILE", env=environment)

    assert result.exit_code == 0, result.stderr
    line = crontab.read_text()
    assert " SSH_AUTH_SOCK=/run/user/0/agent.sock " in line
    assert " AWS_SHARED_CREDENTIALS_FILE=/root/.aws/backup " in line


def test_line_defaults_to_utf8_locale(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{tmp_path}"\n')

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--print",
                     env={"LANG": ""})

    assert result.exit_code == 0, result.stderr
    assert " && LANG=C.UTF-8 " in result.stdout


@pytest.mark.parametrize(("arguments", "environment", "message"), [
    (["--env", "SMTP_SECRET_VAR"], {"SMTP_SECRET_VAR": "hunter2"},
     "--env SMTP_SECRET_VAR: the config file names SMTP_SECRET_VAR in password_env, so it contains a secret"),
    (["--env", "PGPASSWORD"], {"PGPASSWORD": "hunter2"}, "--env PGPASSWORD: the name looks like a secret"),
    (["--env", "API_KEY=hunter2"], {}, "--env API_KEY: the name looks like a secret"),
    (["--env", "AUDITCTL_DSN"], {"AUDITCTL_DSN": "host=db user=app password=hunter2"},
     "--env AUDITCTL_DSN: the value contains a password"),
    (["--env", "HOOK_URL=https://ops:hunter2@hooks.example.test/"], {}, "--env HOOK_URL: the value contains a password"),
    (["--env", "TZ=Europe/Moscow\n* * * * * rm -rf /"], {}, "--env TZ: the value contains a line break"),
    (["--env", "NOT_SET_ANYWHERE"], {}, "--env NOT_SET_ANYWHERE: NOT_SET_ANYWHERE is not set in this environment"),
    (["--env", "1BAD"], {}, "Invalid --env '1BAD': give a variable name"),
    (["--env", "PGPASSWORD"], {}, "--env PGPASSWORD: the name looks like a secret"),
    (["--env", "SMTP_SECRET_VAR"], {},
     "--env SMTP_SECRET_VAR: the config file names SMTP_SECRET_VAR in password_env, so it contains a secret"),
], ids=["config-secret", "secret-name", "secret-value-name", "dsn-password", "url-password", "line-break", "unset",
        "bad-name", "unset-secret-name", "unset-config-secret"])
def test_env_rejects_secrets_and_bad_values(tmp_path, arguments, environment, message):
    config = write_config(tmp_path / "auditctl.toml", f"""[backup]
dir = "{tmp_path}"

[mail]
to = ["ops@example.test"]
from = "backup@example.test"
username = "backup"
password_env = "SMTP_SECRET_VAR"
""")
    crontab = tmp_path / "crontab"

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--crontab-file",
                     str(crontab), *arguments, env=environment)

    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"Error: {message}")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "hunter2" not in result.stderr
    assert not crontab.exists()


def test_install_warns_about_missing_variables(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", f"""[backup]
dsn = "host=127.0.0.1 dbname=app"

[backup.source]
header_env = "APP_HEADER"

[mail]
to = ["ops@example.test"]
from = "backup@example.test"
username = "backup"
password_env = "SMTP_SECRET_VAR"

[storage]
bucket = "backups"
""")
    crontab = tmp_path / "crontab"
    environment = {"SMTP_SECRET_VAR": "hunter2", "PGPASSWORD": "hunter3", "PGUSER": "backup", "PGHOST": "db",
                   "DATABASE_URL": "postgresql://db/other"}

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--crontab-file",
                     str(crontab), env=environment)

    assert result.exit_code == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert any(line.startswith("Warning: cron will not set SMTP_SECRET_VAR (password_env in [mail])")
               for line in warnings), warnings
    assert any("APP_HEADER (header_env in [backup.source])" in line and "set header_file" in line
               for line in warnings), warnings
    assert any("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the keys of [storage])" in line
               for line in warnings), warnings
    assert any("cron will not set PGPASSWORD" in line and "~/.pgpass" in line for line in warnings), warnings
    # PGHOST and DATABASE_URL do not count: the config's dsn sets the host and replaces DATABASE_URL.
    assert any(line.startswith("Warning: This environment sets PGUSER, which the cron job will not have")
               for line in warnings), warnings
    assert any(f"sets no dir, so the cron job writes its backups into {Path.cwd()}" in line
               for line in warnings), warnings
    assert len(warnings) == 6, warnings
    text = crontab.read_text()
    assert "hunter" not in text + result.stdout + result.stderr
    assert "SMTP_SECRET_VAR" not in text


def test_reinstall_warns_about_dropped_variable(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{tmp_path}"\n')
    crontab = tmp_path / "crontab"
    crontab.write_text("MAILTO=ops@example.test\n"
                       "0 2 * * * cd /root && TZ=UTC LANG=C.UTF-8 /usr/bin/python3 -m auditctl backup "
                       "--dsn 'host=db dbname=app' >> /var/log/b.log 2>&1 # auditctl backup\n")

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--crontab-file",
                     str(crontab))

    assert result.exit_code == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Warning:")] == [
        "Warning: The replaced line set TZ, which the new line does not; to keep it, run cron install again with "
        "--env TZ=VALUE."]
    lines = crontab.read_text().splitlines()
    assert len(lines) == 2
    assert "TZ=" not in lines[1]


def test_reinstall_warns_about_changed_language(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{tmp_path}"\n')
    crontab = tmp_path / "crontab"
    crontab.write_text("0 2 * * * cd /root && LANG=ru_RU.UTF-8 LANGUAGE=ru /usr/bin/python3 -m auditctl backup "
                       ">> /var/log/b.log 2>&1 # auditctl backup\n")

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--crontab-file",
                     str(crontab), env={"LANG": "C.UTF-8"})

    assert result.exit_code == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Warning:")] == [
        "Warning: The replaced line set LANGUAGE, which the new line does not; to keep it, run cron install again "
        "with --env LANGUAGE=VALUE.",
        "Warning: The replaced line set LANG=ru_RU.UTF-8, but the new line sets LANG=C.UTF-8 from this shell, so "
        "the report mail and the job's messages may change language. To keep ru_RU.UTF-8, run cron install again "
        "with LANG=ru_RU.UTF-8 in front of it."]
    assert "LANG=C.UTF-8" in crontab.read_text()


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


@pytest.mark.parametrize(("key_file", "detail"), [
    ("recipient", None),
    ("other", "holds no private key of the age recipients, so backup verify and backup restore cannot decrypt new "
              "backups with it"),
    ("missing", "Cannot read"),
], ids=["recipient", "other-key", "missing"])
def test_doctor_checks_identity_file(db, tmp_path, key_file, detail):
    from pyrage import x25519
    recipient_key = x25519.Identity.generate()
    identity_file = tmp_path / "key.txt"
    if key_file != "missing":
        key = recipient_key if key_file == "recipient" else x25519.Identity.generate()
        identity_file.write_text(f"{key}\n")
        identity_file.chmod(0o600)
    config = write_config(tmp_path / "auditctl.toml", f"""
[backup]
dir = "{tmp_path}"
dsn = "{db.dsn}"

[backup.encryption]
recipients = ["{recipient_key.to_public()}"]
identity_file = "{identity_file}"
""")

    result = run_cli("doctor", "--config", str(config), env={"COLUMNS": "400"})

    [identity_row] = [line for line in result.stdout.splitlines() if line.startswith("│ identity file")]
    if detail is None:
        assert result.exit_code == 0, result.stdout + result.stderr
        assert "│ ok " in identity_row
    else:
        assert result.exit_code == 1
        assert "│ failed " in identity_row
        assert detail in identity_row


def test_doctor_explains_missing_bucket(pg, tmp_path, smtp_starttls, s3_server):
    config = doctor_config(tmp_path, pg.dsn_for("postgres"), smtp_starttls, s3_server)
    config.write_text(config.read_text().replace('bucket = "backups"', 'bucket = "no-such-bucket"'))
    # A wide terminal keeps the detail on one line of the table.
    environment = {"DOCTOR_SMTP_PASSWORD": SMTP_PASSWORD, "COLUMNS": "400", **s3_server.environment}

    result = run_cli("doctor", "--config", str(config), env=environment)

    assert result.exit_code == 1
    [storage_row] = [line for line in result.stdout.splitlines() if line.startswith("│ storage")]
    assert (f"bucket no-such-bucket does not exist at {s3_server.endpoint_url}; create it or correct bucket in "
            "[storage].") in storage_row
    assert "HeadBucket" not in storage_row


def test_doctor_explains_untrusted_certificate(pg, tmp_path, smtp_starttls, s3_server):
    config = doctor_config(tmp_path, pg.dsn_for("postgres"), smtp_starttls, s3_server)
    # Without SSL_CERT_FILE the test server's self-signed certificate is unknown.
    # A wide terminal keeps the detail on one line of the table.
    environment = {"DOCTOR_SMTP_PASSWORD": SMTP_PASSWORD, "COLUMNS": "400", **s3_server.environment}

    result = run_cli("doctor", "--config", str(config), env=environment)

    assert result.exit_code == 1
    [smtp_row] = [line for line in result.stdout.splitlines() if "SMTP" in line]
    assert "certificate verify failed (self-signed certificate)" in smtp_row
    assert ("set SSL_CERT_FILE to that certificate for this command and for `auditctl cron install`, which copies "
            "it into the cron line") in smtp_row


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


@pytest.mark.parametrize(("lang", "message"), [
    ("C.UTF-8", "This environment sets PGSSLMODE, which the cron job will not have, so it would run differently "
                "from `auditctl backup` here; pass --env PGSSLMODE, or set it in the config file."),
    ("ru_RU.UTF-8", "В этом окружении задана переменная PGSSLMODE, а у задачи cron её не будет"),
], ids=["english", "russian"])
def test_one_missing_variable_reads_singular(tmp_path, lang, message):
    config = write_config(tmp_path / "auditctl.toml", f'[backup]\ndir = "{tmp_path}"\n')

    result = run_cli("cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--crontab-file",
                     str(tmp_path / "crontab"), env={"LANG": lang, "PGSSLMODE": "verify-full"})

    assert result.exit_code == 0, result.stderr
    assert message in " ".join(result.stderr.split())


@pytest.mark.parametrize(("schedule", "message"), [
    ("61 3 * * *", "'61' is not a number from 0 to 59 in the minute field."),
    ("0 25 * * *", "'25' is not a number from 0 to 23 in the hour field."),
    ("0 2 0 * *", "'0' is not a number from 1 to 31 in the day of month field."),
    ("0 2 * 13 *", "'13' is not a number from 1 to 12 or a name such as jan in the month field."),
    ("0 2 * * 8", "'8' is not a number from 0 to 7 or a name such as sun in the day of week field."),
    ("*/0 2 * * *", "the step of '*/0' is not a number from 1 to 60 in the minute field."),
    ("0 5-2 * * *", "the range '5-2' runs backwards in the hour field."),
    ("@nightly", "cron accepts only @hourly, @daily, @midnight, @weekly, @monthly, @yearly, @annually."),
], ids=["minute", "hour", "day", "month", "weekday", "step", "range", "word"])
def test_schedule_fields_are_checked(tmp_path, schedule, message):
    config = write_config(tmp_path / "auditctl.toml", "[backup]\n")
    crontab = tmp_path / "crontab"

    backup = run_cli("cron", "install", "--schedule", schedule, "--config", str(config),
                     "--crontab-file", str(crontab))
    maintain = run_cli("cron", "maintain", "--schedule", schedule, "--dsn", "dbname=app",
                       "--crontab-file", str(crontab))

    for result in (backup, maintain):
        assert result.exit_code == 2, result.stderr
        assert result.stderr == f"Error: Invalid --schedule {schedule!r}: {message}\n"
    assert not crontab.exists()


@pytest.mark.parametrize("schedule", ["0 2 * * mon-fri", "*/15 1-5/2 1,15 jan-jun 7", "@weekly"])
def test_valid_schedules_are_written(tmp_path, schedule):
    crontab = tmp_path / "crontab"
    result = run_cli("cron", "maintain", "--schedule", schedule, "--dsn", "dbname=app", "--crontab-file",
                     str(crontab))
    assert result.exit_code == 0, result.stderr
    assert crontab.read_text().startswith(f"{schedule} ")


def test_maintain_line_checks_ahead(tmp_path):
    crontab = tmp_path / "crontab"
    result = run_cli("cron", "maintain", "--ahead", "-3", "--dsn", "dbname=app", "--crontab-file", str(crontab))
    assert result.exit_code == 2
    assert result.stderr == "Error: Invalid --ahead -3: use a number of partitions from 0 to 366.\n"
    assert not crontab.exists()


def test_crontab_file_keeps_mode_rejects_readonly(tmp_path):
    config = write_config(tmp_path / "auditctl.toml", "[backup]\n")
    shared = tmp_path / "shared"
    shared.write_text("MAILTO=ops@example.test\n")
    shared.chmod(0o644)
    readonly = tmp_path / "readonly"
    readonly.write_text("MAILTO=ops@example.test\n")
    readonly.chmod(0o444)
    arguments = ["cron", "install", "--schedule", "0 2 * * *", "--config", str(config), "--crontab-file"]

    shared_mode = run_cli(*arguments, str(shared))
    read_only = run_cli(*arguments, str(readonly))

    assert shared_mode.exit_code == 0, shared_mode.stderr
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    assert read_only.exit_code == 2
    assert read_only.stderr == (f"Error: Cannot write {readonly}: the file is read-only (mode 0444); make it writable "
                                f"with `chmod u+w {readonly}` or write to another file.\n")
    assert readonly.read_text() == "MAILTO=ops@example.test\n"
    assert stat.S_IMODE(readonly.stat().st_mode) == 0o444


def test_unset_mail_password_stops_before_dump(filled, tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir()
    config = write_config(tmp_path / "auditctl.toml", f"""
[backup]
dir = "{folder}"

[mail]
to = ["ops@example.test"]
from = "backup@example.test"
username = "backup"
password_env = "NOPE_UNSET"
""")

    result = run_cli("backup", "--config", str(config), dsn=filled.dsn)

    assert result.exit_code == 2, result.stderr
    assert result.stderr == "Error: Environment variable NOPE_UNSET (mail password_env) is not set or empty.\n"
    assert [path.name for path in folder.iterdir()] == []


def test_maintain_print_writes_nothing(tmp_path):
    crontab = tmp_path / "crontab"
    printed = run_cli("cron", "maintain", "--schedule", "17 3 * * *", "--dsn", "dbname=app", "--crontab-file",
                      str(crontab), "--print", env={"PGHOST": "db.example.test"})
    assert printed.exit_code == 0, printed.stderr
    assert not crontab.exists()
    installed = run_cli("cron", "maintain", "--schedule", "17 3 * * *", "--dsn", "dbname=app", "--crontab-file",
                        str(crontab), env={"PGHOST": "db.example.test"})
    assert installed.exit_code == 0, installed.stderr

    assert printed.stdout == crontab.read_text()
    assert "maintain --ahead 3 --interval monthly" in printed.stdout
    assert "PGHOST" in printed.stderr
