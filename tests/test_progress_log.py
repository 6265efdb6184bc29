"""Progress lines without a terminal, as under cron: at which verbosity they are logged, and how often."""

from __future__ import annotations

import pytest

from auditctl import render
from auditctl.cli.app import configure_logging


def advance_five_tables(capsys) -> list[str]:
    """Run a progress of five tables, with stderr captured, so not a terminal; return the lines logged."""
    capsys.readouterr()
    with render.progress("Installing triggers", 5, "installing triggers") as advance:
        for number in range(5):
            advance(f"table{number}", 1)
    return [line.split(" auditctl ", 1)[1] for line in capsys.readouterr().err.splitlines()]


def test_progress_short_work_logs_nothing(capsys, auditctl_logging):
    configure_logging(verbose=0, quiet=False)
    assert advance_five_tables(capsys) == []


def test_progress_long_work_logs_lines(capsys, monkeypatch, auditctl_logging):
    configure_logging(verbose=0, quiet=False)
    monkeypatch.setattr(render, "PROGRESS_LOG_INTERVAL_SECONDS", 0.0)
    assert advance_five_tables(capsys) == [f"INFO installing triggers: {done} of 5" for done in range(1, 6)]


def test_progress_verbose_logs_each_step(capsys, auditctl_logging):
    configure_logging(verbose=1, quiet=False)
    assert advance_five_tables(capsys) == [f"INFO installing triggers: {done} of 5" for done in range(1, 6)]


@pytest.mark.parametrize("verbose", [0, 1], ids=["default", "verbose"])
def test_progress_quiet_logs_nothing(capsys, monkeypatch, auditctl_logging, verbose):
    configure_logging(verbose=verbose, quiet=True)
    monkeypatch.setattr(render, "PROGRESS_LOG_INTERVAL_SECONDS", 0.0)
    assert advance_five_tables(capsys) == []
