"""Backup settings: the example file, precedence of typed flags, and bad input on the command line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from auditctl.backup.config import check_dump_options, load_settings
from auditctl.errors import ConfigError, InvalidArgumentError
from conftest import REPO_ROOT, run_cli

EXAMPLE = REPO_ROOT / "auditctl.example.toml"


def test_example_config_is_valid_and_complete():
    settings = load_settings(EXAMPLE, {})
    assert settings.folder == Path("/var/backups/auditctl")
    assert (settings.keep_last, settings.keep_daily, settings.keep_weekly, settings.keep_monthly) == (3, 7, 4, 6)
    assert settings.mail.to == ("ops@example.com", "lead@example.com")
    assert settings.mail.max_attachment_bytes == 20 * 1024 * 1024
    # Encryption keys and storage are examples to fill in, so they stay off.
    assert not settings.recipients
    assert settings.storage is None


def test_typed_flags_override_config_and_defaults_do_not(tmp_path):
    config = tmp_path / "auditctl.toml"
    config.write_text('[backup]\ndir = "dumps"\ncompress = 3\n[backup.rotation]\nkeep_last = 5\n')

    from_file = load_settings(config, {})
    typed = load_settings(config, {"keep_last": 2, "folder": Path("/srv/other")})

    assert from_file.folder == tmp_path / "dumps"
    assert from_file.keep_last == 5
    assert typed.keep_last == 2
    assert typed.folder == Path("/srv/other")
    assert typed.compress == 3


@pytest.mark.parametrize(("text", "message"), [
    ('[backup]\njobs = "four"\n', "Invalid value for jobs in [backup] of PATH: expected"),
    ('[backup]\ndirectory = "/tmp"\n', "Unknown key directory in [backup] of PATH;"),
    ('[backup.rotation]\nkeep_days = 3\n', "Unknown key keep_days in [backup.rotation] of PATH;"),
    ('[mail]\nport = "25"\n', "Invalid value for port in [mail] of PATH: expected"),
    ("[backup]\nrotation = 3\n", "[backup.rotation] in PATH must be a table."),
    ("[backup\n", "Invalid TOML in PATH"),
    ('[mail]\nto = ["a@example.test"]\n', "[mail] in PATH needs both"),
    ('[storage]\nregion = "eu"\n', "[storage] in PATH needs `bucket`."),
], ids=["wrong-type", "unknown-key", "unknown-subtable-key", "mail-wrong-type", "subtable-not-table", "bad-toml",
        "mail-without-from", "storage-without-bucket"])
def test_invalid_config_is_rejected(tmp_path, text, message):
    config = tmp_path / "auditctl.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    assert message.replace("PATH", str(config)) in str(caught.value)


MAIL = '[mail]\nto = ["ops@example.test"]\nfrom = "backup@example.test"\n'


@pytest.mark.parametrize(("text", "message"), [
    (MAIL + "port = 99999\n",
     "Invalid value for port in [mail] of PATH: expected a port number from 1 to 65535, got 99999."),
    (MAIL + 'security = "ssl"\n',
     'Invalid value for security in [mail] of PATH: expected tls, starttls or none, got "ssl".'),
    (MAIL + 'transport = "smtps"\n',
     'Invalid value for transport in [mail] of PATH: expected smtp or sendmail, got "smtps".'),
    ('[mail]\nto = ["ops@example.test", "not an address"]\nfrom = "backup@example.test"\n',
     "Invalid value for to in [mail] of PATH: expected e-mail addresses such as ops@example.com, "
     'got "not an address".'),
    ('[mail]\nto = ["ops@example.test"]\nfrom = "backups"\n',
     "Invalid value for from in [mail] of PATH: expected an e-mail address such as backups@example.com, "
     'got "backups".'),
    (MAIL + 'username = "bot"\npassword = "hunter2-secret"\n',
     "Unknown key password in [mail] of PATH: the config file must not contain secrets. Name the environment "
     "variable or the file of mode 0600 that contains it with password_env / password_file."),
    (MAIL + 'password_env = "SMTP_PASSWORD"\n',
     "[mail] in PATH names a password (password_env or password_file) but no username; set username too."),
    (MAIL + 'username = "bot"\npassword_env = "SMTP_PASSWORD"\nsecurity = "none"\nhost = "relay.example.test"\n',
     'Refusing to send the SMTP password over an unencrypted connection to relay.example.test (security = "none" '
     "in [mail] of PATH)."),
    ('[backup]\nformat = "tar"\n',
     'Invalid value for format in [backup] of PATH: expected custom or directory, got "tar".'),
    ("[backup]\ncompress = 12\n",
     "Invalid value for compress in [backup] of PATH: expected a whole number from 0 to 9, got 12."),
    ("[backup]\njobs = 0\n",
     "Invalid value for jobs in [backup] of PATH: expected a whole number of 1 or more, got 0."),
    ('[backup]\ndsn = "host=db password=hunter2-secret nosuchkey=1"\n',
     "Invalid value for dsn in [backup] of PATH: expected a libpq connection string or a postgresql:// URL."),
    ('[backup.encryption]\nrecipients = ["age1notakey"]\n',
     "Invalid value for recipients in [backup.encryption] of PATH: expected an age1… public key or an SSH public "
     'key, got "age1notakey".'),
    ('[backup.source]\nurl = "ftp://files.example.test/backup?token=hunter2-secret"\n',
     "Invalid value for url in [backup.source] of PATH: expected an http:// or https:// URL, "
     'got "ftp://files.example.test/backup".'),
    ('[backup.source]\nurl = "https://app:hunter2-secret@app.example.test/api/backup"\n',
     "Credentials in the URL of url in [backup.source] of PATH are not supported"),
    ('[backup.source]\nheader = "Authorization: Bearer hunter2-secret"\n',
     "Unknown key header in [backup.source] of PATH: the config file must not contain secrets."),
    ('[backup.monitoring]\nheartbeat_url = "hc-ping.com/abc"\n',
     "Invalid value for heartbeat_url in [backup.monitoring] of PATH: expected an http:// or https:// URL"),
    ('[storage]\nbucket = "b"\nlink_expires_hours = 200\n',
     "Invalid value for link_expires_hours in [storage] of PATH: expected a number of hours above 0 and at most "
     "168 (7 days), got 200."),
], ids=["port", "security", "transport", "to", "from", "password", "password-without-username", "plaintext-auth",
        "format", "compress", "jobs-zero", "dsn", "recipient",
        "url-scheme", "url-credentials", "header", "heartbeat-url", "link-expires"])
def test_invalid_value_is_rejected_on_load(tmp_path, text, message):
    config = tmp_path / "auditctl.toml"
    config.write_text(text)

    with pytest.raises(InvalidArgumentError) as caught:
        load_settings(config, {})

    assert message.replace("PATH", str(config)) in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(("text", "message"), [
    ("[backup.rotation]\nkeep_last = true\n",
     "Invalid value for keep_last in [backup.rotation] of PATH: expected a whole number of 0 or more, got true."),
    ('[backup]\njobs = "2"\n',
     'Invalid value for jobs in [backup] of PATH: expected a whole number of 1 or more, got "2".'),
    ('[mail]\nto = ["ops@example.test"]\nfrom = "backup@example.test"\nport = "25"\n',
     'Invalid value for port in [mail] of PATH: expected a port number from 1 to 65535, got "25".'),
    ('[mail]\nto = [1]\nfrom = "backup@example.test"\n',
     "Invalid value for to in [mail] of PATH: expected e-mail addresses such as ops@example.com, got [1]."),
], ids=["bool-for-number", "string-for-jobs", "string-for-port", "number-for-addresses"])
def test_wrong_type_quoted_as_toml(tmp_path, text, message):
    config = tmp_path / "auditctl.toml"
    config.write_text(text)

    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})

    assert str(caught.value) == message.replace("PATH", str(config))


@pytest.mark.parametrize(("text", "message"), [
    ("[backup]\njobs = 4\n", 'jobs = 4 in [backup] of PATH needs format = "directory", because pg_dump dumps in '
     'parallel only in that format. Set format = "directory" or jobs = 1 there.'),
    ('[backup]\nformat = "directory"\n[backup.encryption]\npassphrase_file = "/etc/passphrase"\n',
     "The directory format cannot be encrypted"),
    ('[backup.encryption]\nrecipients_file = "/etc/recipients"\npassphrase_file = "/etc/passphrase"\n',
     "Use either age recipients or a passphrase file, not both"),
], ids=["jobs-without-directory", "directory-encrypted", "recipients-and-passphrase"])
def test_impossible_dump_options_are_rejected(tmp_path, text, message):
    config = tmp_path / "auditctl.toml"
    config.write_text(text)
    settings = load_settings(config, {})

    with pytest.raises(InvalidArgumentError) as caught:
        check_dump_options(settings)

    assert message.replace("PATH", str(config)) in str(caught.value)


def test_typed_jobs_names_format_key(tmp_path):
    config = tmp_path / "auditctl.toml"
    config.write_text('[backup]\nformat = "custom"\n')
    settings = load_settings(config, {"jobs": 2})

    with pytest.raises(InvalidArgumentError) as caught:
        check_dump_options(settings)

    assert f'but format in [backup] of {config} is "custom". Pass --format directory as well' in str(caught.value)


def test_decryption_key_loads_with_directory_format(tmp_path):
    config = tmp_path / "auditctl.toml"
    config.write_text('[backup]\nformat = "directory"\n')

    settings = load_settings(config, {"passphrase_file": tmp_path / "passphrase"})

    assert settings.dump_format == "directory"
    assert settings.passphrase_file == tmp_path / "passphrase"


@pytest.mark.parametrize("text", [
    MAIL + "port = 99999\n",
    MAIL + 'security = "ssl"\n',
    '[mail]\nto = ["not an address"]\nfrom = "backup@example.test"\n',
    MAIL + 'password = "hunter2-secret"\n',
    '[backup]\nformat = "tar"\n',
    "[backup]\ncompress = 12\n",
], ids=["port", "security", "to", "password", "format", "compress"])
def test_invalid_config_stops_before_any_work(db, tmp_path, text):
    folder = tmp_path / "backups"
    folder.mkdir()
    config = tmp_path / "auditctl.toml"
    config.write_text(f'[backup]\ndir = "{folder}"\n' + text.replace("[backup]\n", ""))

    result = run_cli("backup", "--config", str(config), dsn=db.dsn)

    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: Invalid value for ") or result.stderr.startswith("Error: Unknown key ")
    assert str(config) in result.stderr
    assert "hunter2" not in result.stderr
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--config", "/nonexistent/auditctl.toml"], "Config file /nonexistent/auditctl.toml does not exist"),
    (["--dir", "/nonexistent/backups"], "Backup folder /nonexistent/backups does not exist"),
    (["--jobs", "2"], "--jobs above 1 needs --format directory"),
    (["--format", "tar"], "Invalid value for --format: expected custom or directory, got 'tar'."),
    (["--recipient", "age1notakey"], "Invalid value for --recipient: expected an age1… public key or an SSH public "
                                     "key, got 'age1notakey'."),
    (["--from-url", "ftp://127.0.0.1/x"], "Invalid value for --from-url: expected an http:// or https:// URL, got "
                                          "'ftp://127.0.0.1/x'."),
    (["--mail-to", "not an address"], "Invalid value for --mail-to: expected e-mail addresses such as "
                                      "ops@example.com, got 'not an address'."),
    (["--dsn", "host=127.0.0.1 nosuchkey=1"], "Invalid value for --dsn: expected a libpq connection string or a "
                                              "postgresql:// URL."),
    (["--mail-to", "ops@example.com"], "--mail-to needs the [mail] settings of a config file, `from` at least, but "
                                       "no config file was found."),
], ids=["missing-config", "missing-dir", "jobs-without-directory", "bad-format", "bad-recipient", "bad-url",
        "bad-mail-to", "bad-dsn", "mail-to-without-config"])
def test_bad_input_gives_one_line_and_leaves_nothing(db, tmp_path, args, message):
    before = sorted(tmp_path.iterdir())
    folder_args = [] if "--dir" in args or "--config" in args else ["--dir", str(tmp_path)]

    result = run_cli("backup", *folder_args, *args, dsn=db.dsn)

    assert result.exit_code == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1
    assert message in errors[0]
    assert "Traceback" not in result.stderr
    after = sorted(path for path in tmp_path.iterdir() if path.name != ".auditctl-backup.lock")
    assert after == before


@pytest.mark.parametrize(("folder", "message"), [
    ("/sys", "Backup folder /sys is not writable (Permission denied); set another with --dir."),
    ("/proc/sys", "Backup folder /proc/sys is not writable"),
    ("{tmp}/file", "Backup folder {tmp}/file is not a folder; set a folder with --dir."),
], ids=["sys", "proc", "regular-file"])
def test_unusable_backup_dir_is_one_line(db, tmp_path, folder, message):
    # Root passes every permission check, yet /sys and /proc take no new files.
    (tmp_path / "file").write_text("x")

    result = run_cli("backup", "--dir", folder.format(tmp=tmp_path), dsn=db.dsn)

    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith(f"Error: {message.format(tmp=tmp_path)}")
    assert [path.name for path in tmp_path.iterdir()] == ["file"]


def test_unopenable_lock_file_is_one_line(db, tmp_path):
    (tmp_path / ".auditctl-backup.lock").mkdir()

    result = run_cli("backup", "--dir", str(tmp_path), dsn=db.dsn)

    assert result.exit_code == 1, result.stderr
    assert result.stderr.strip() == (f"Error: Cannot open the lock file {tmp_path}/.auditctl-backup.lock: "
                                     "Is a directory; check the backup folder set with --dir.")
    assert [path.name for path in tmp_path.iterdir()] == [".auditctl-backup.lock"]


def test_verify_of_missing_file_is_one_line():
    result = run_cli("backup", "verify", "/nonexistent/app_20261204T020000Z.dump")
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: Backup /nonexistent/app_20261204T020000Z.dump does not exist."


def test_connection_error_names_config_file_as_dsn_origin(pg, tmp_path):
    config = tmp_path / "auditctl.toml"
    config.write_text(f'[backup]\ndir = "{tmp_path}"\ndsn = "{pg.dsn_for("no_such_database")}"\n')

    result = run_cli("backup", "--config", str(config))

    assert result.exit_code == 1
    assert f"(DSN from {config})" in result.stderr
    assert f"Check the DSN in {config}." in result.stderr
    assert "Check --dsn" not in result.stderr


def test_restore_error_names_target_dsn(pg, tmp_path):
    dump = tmp_path / "x.dump"
    dump.write_bytes(b"PGDMP")
    manifest = {"kind": "auditctl-backup", "database": "x", "file": "x.dump", "format": "custom", "size": 5,
                "sha256": hashlib.sha256(b"PGDMP").hexdigest(), "started_at": "2026-12-04T02:00:00+00:00",
                "finished_at": "2026-12-04T02:00:01+00:00", "encrypted": False}
    (tmp_path / "x.dump.json").write_text(json.dumps(manifest))

    result = run_cli("backup", "restore", str(dump), "--target-dsn", pg.dsn_for("no_such_database"))

    assert result.exit_code == 1
    assert "(DSN from --target-dsn)" in result.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("[backup]\nglobals = 1\n", "ожидается true или false, получено значение 1."),
    ('[mail]\nto = ["not an address"]\nfrom = "backup@example.test"\n',
     'ожидается список адресов электронной почты вида ops@example.com, получено значение "not an address".'),
], ids=["boolean", "addresses"])
def test_russian_expected_kind_reads_correctly(tmp_path, text, message):
    config = tmp_path / "auditctl.toml"
    config.write_text(text)

    result = run_cli("backup", "--config", str(config), env={"LANG": "ru_RU.UTF-8"})

    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert " or " not in result.stderr
