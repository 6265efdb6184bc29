"""Command-line parsing shared by every command: option values that are really the next option."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from auditctl.audit.install import install
from helpers import events

# main() moves these to the front of the command line, so they never reach a command's parser.
GLOBAL_FLAGS = {"-v", "--verbose", "-q", "--quiet"}


def _command_tree() -> Any:
    import typer

    cli_app = importlib.import_module("auditctl.cli.app")
    cli_app.register_commands()
    return typer.main.get_command(cli_app.app)


def _walk(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
    yield path, command
    for name, subcommand in sorted(getattr(command, "commands", {}).items()):
        yield from _walk(subcommand, [*path, name])


def _value_option_cases() -> list[Any]:
    """One case per option that takes a value, in every command: the words of a command line that leaves it out."""
    cases = []
    for path, command in _walk(_command_tree(), []):
        names = [name for parameter in command.params if getattr(parameter, "param_type_name", None) == "option"
                 for name in parameter.opts if name.startswith("--") and name not in GLOBAL_FLAGS]
        for parameter in command.params:
            if parameter.param_type_name != "option" or parameter.is_flag or parameter.count:
                continue
            option = max(parameter.opts, key=len)
            following = next((name for name in names if name not in parameter.opts), "--help")
            # An option of two values, such as redact --entity TABLE ID, gets all but its last one.
            words = [*path, option, *["x"] * (parameter.nargs - 1), following]
            cases.append(pytest.param(words, option, following, id=" ".join([*path, option])))
    return cases


@pytest.fixture
def in_process_main(monkeypatch, tmp_path, auditctl_logging):
    """Run auditctl's main() in this process with the given arguments; return its exit status.

    The run happens in an empty folder, with no DSN and no config file, so
    that a command that wrongly went ahead reaches no server and writes no
    file of the user's.
    """
    monkeypatch.chdir(tmp_path)
    for variable in ("AUDITCTL_DSN", "DATABASE_URL", "AUDITCTL_CONFIG", "AUDITCTL_BACKUP_DIR", "PGSERVICE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PGHOST", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))

    def run(*args: str) -> int:
        from auditctl.cli.app import main

        monkeypatch.setattr(sys, "argv", ["auditctl", *args])
        with pytest.raises(SystemExit) as exit_info:
            main()
        return exit_info.value.code

    return run


def test_option_value_walk_reaches_subcommands():
    ids = {case.id for case in _value_option_cases()}
    for expected in ["--dsn", "export --output", "rotate --archive-dir", "maintain --ahead", "backup --dir",
                     "backup restore --target-dsn", "serve --port", "cron maintain --log-file", "history --format",
                     "status --keep", "redact --entity"]:
        assert expected in ids


@pytest.mark.parametrize(("words", "option", "following"), _value_option_cases())
def test_option_value_is_next_option(in_process_main, capsys, words, option, following):
    exit_status = in_process_main(*words)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert exit_status == 2, captured.err
    assert len(lines) == 1, captured.err
    assert option in lines[0]
    assert following in lines[0]
    assert captured.out == ""


@pytest.mark.parametrize(("args", "message"), [
    (["query", "--user", "--since", "7d"], "Error: Option --user is missing its value: it got --since, which is an "
                                           "option of this command; give the value right after --user."),
    (["event", "LOGIN", "--user", "--ip", "192.0.2.1"], "Error: Option --user is missing its value: it got --ip,"),
    (["export", "--format", "csv", "-o", "z.csv", "--user", "--since"],
     "Error: Option --user is missing its value: it got --since,"),
    (["export", "--table", "Order", "-o", "--since"], "Error: Option --output is missing its value: it got --since,"),
    (["query", "--user", "--since=7d"], "Error: Option --user is missing its value: it got --since=7d,"),
    (["backup", "restore", "app.dump", "--target-dsn", "--identity", "key.txt"],
     "Error: Option --target-dsn is missing its value: it got --identity,"),
], ids=["query-extra-word", "event-extra-word", "export-user", "export-output", "attached-value",
        "restore-target"])
def test_missing_value_names_option(db, cli, tmp_path, args, message):
    result = cli(*args, dsn=db.dsn, cwd=tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_rotate_archive_dir_named_like_option(db, cli, tmp_path):
    with db.connect() as connection:
        connection.execute("CREATE TABLE item (id int PRIMARY KEY)")
        install(connection, "audit", [], use_all=True)
    (tmp_path / "--dry-run").mkdir()

    result = cli("rotate", "--keep", "180d", "--archive-dir", "--dry-run", dsn=db.dsn, cwd=tmp_path)

    assert result.exit_code == 2
    assert result.stderr.strip() == ("Error: Option --archive-dir is missing its value: it got --dry-run, which is "
                                     "an option of this command; give the value right after --archive-dir.")
    assert list((tmp_path / "--dry-run").iterdir()) == []
    with db.connect() as connection:
        assert events(connection, where="action = 'ROTATE'", system=True) == []
