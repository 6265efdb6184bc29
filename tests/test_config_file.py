"""Finding the config file without --config, and errors that name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from auditctl.config import find_config, read_config


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_lookup_order_without_config_option(user_folders):
    home_file = _write(user_folders.home / ".config" / "auditctl" / "config.toml", "[audit]\n")
    assert find_config(None) == home_file

    _write(user_folders.workdir / "auditctl.toml", "[audit]\n")
    assert find_config(None) == Path("auditctl.toml")

    explicit = _write(user_folders.workdir / "other.toml", "[audit]\n")
    assert find_config(explicit) == explicit


def test_lookup_finds_nothing_in_empty_folders(user_folders):
    assert list(user_folders.workdir.iterdir()) == []
    assert list(user_folders.home.iterdir()) == []
    assert find_config(None) is None


@pytest.mark.parametrize("location", ["workdir", "home"])
def test_install_reads_default_config(db, cli, user_folders, location):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
        connection.execute("CREATE TABLE b (id int PRIMARY KEY)")
    if location == "workdir":
        config = _write(user_folders.workdir / "auditctl.toml", '[audit]\nschemas = ["public"]\nexclude = ["b"]\n')
        shown_path = "auditctl.toml"
    else:
        config = _write(user_folders.home / ".config" / "auditctl" / "config.toml",
                        '[audit]\nschemas = ["public"]\nexclude = ["b"]\n')
        shown_path = str(config)

    result = cli("install", dsn=db.dsn)

    assert result.exit_code == 0, result.stderr
    assert f"Settings of [audit] read from {shown_path}." in result.stdout
    assert "Audit trigger installed on public.a" in result.stdout
    assert "public.b" not in result.stdout


@pytest.mark.parametrize(("text", "message"), [
    ('[audit]\nmax_value_bytes = "8k"\n',
     "Invalid value for max_value_bytes in [audit] of auditctl.toml: expected a whole number of 0 or more, "
     'got "8k".'),
    ('[audit]\nschema = ["public"]\n', "Unknown key schema in [audit] of auditctl.toml;"),
    ('[audit.tables."public.a"]\nhide = ["id"]\n', 'Unknown key hide in [audit.tables."public.a"] of auditctl.toml;'),
], ids=["wrong-type", "unknown-key", "unknown-rule-kind"])
def test_default_config_errors_name_the_file(db, cli, user_folders, text, message):
    with db.connect() as connection:
        connection.execute("CREATE TABLE a (id int PRIMARY KEY)")
    _write(user_folders.workdir / "auditctl.toml", text)

    result = cli("install", "a", dsn=db.dsn)

    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_backup_unknown_key_names_the_file(cli, user_folders):
    _write(user_folders.workdir / "auditctl.toml", '[backup]\ndirectory = "/tmp"\n')

    result = cli("backup")

    assert result.exit_code == 2, result.stderr
    assert "Unknown key directory in [backup] of auditctl.toml;" in result.stderr


def test_utf8_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "auditctl.toml"
    path.write_bytes("\ufeff[audit]\nschemas = [\"public\"]\n".encode())

    assert read_config(path) == {"audit": {"schemas": ["public"]}}


@pytest.mark.parametrize(("make", "message"), [
    (lambda path: path.write_text('[backup]\ndir = "/tmp"\n', encoding="utf-16"),
     "Config file {path} is not UTF-8 text; save it as UTF-8."),
    (lambda path: path.mkdir(),
     "Config file {path} is a folder; pass the path of a TOML file."),
], ids=["utf-16", "folder"])
def test_unreadable_config_gets_one_line(cli, tmp_path, make, message):
    path = tmp_path / "auditctl.toml"
    make(path)

    result = cli("backup", "--config", str(path))

    assert result.exit_code == 2, result.stderr
    assert message.format(path=path) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
