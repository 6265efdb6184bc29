"""Messages with a count, rendered without a database: English singular and plural, Russian plural forms."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from auditctl import render
from auditctl.audit.partitions import MaintainResult
from auditctl.audit.redact import RedactResult
from auditctl.audit.retention import RotationOutcome, RotationResult
from auditctl.i18n import use_language

CUTOFF = datetime(2026, 6, 1, tzinfo=timezone.utc)


def rotation(rows: int, *, dry_run: bool) -> RotationResult:
    outcome = RotationOutcome("events_2025_01", rows, "/archive/audit.events_2025_01.csv.gz", archive_bytes=2048,
                              released_bytes=8192, dropped=not dry_run)
    return RotationResult(CUTOFF, dry_run, [outcome])


def printed(capsys: pytest.CaptureFixture[str], show, *args, language: str = "en") -> str:
    """Call a render function in ``language``; return its output with line wrapping undone."""
    with use_language(language):
        show(*args)
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(("rows", "dry_run", "expected"), [
    (1, True, "Would archive 1 event of events_2025_01"),
    (2, True, "Would archive 2 events of events_2025_01"),
    (1, False, "Archived 1 event of events_2025_01"),
    (1000, False, "Archived 1,000 events of events_2025_01"),
], ids=["dry-run-one", "dry-run-two", "one", "thousand"])
def test_rotation_counts_events_in_english(capsys, rows, dry_run, expected):
    assert expected in printed(capsys, render.print_rotation, rotation(rows, dry_run=dry_run))


@pytest.mark.parametrize(("rows", "expected"), [
    (1, "Было бы заархивировано 1 событие секции"),
    (3, "Были бы заархивированы 3 события секции"),
    (5, "Было бы заархивировано 5 событий секции"),
    (21, "Было бы заархивировано 21 событие секции"),
], ids=["one", "few", "many", "twenty-one"])
def test_rotation_uses_russian_plural_forms(capsys, rows, expected):
    assert expected in printed(capsys, render.print_rotation, rotation(rows, dry_run=True), language="ru")


@pytest.mark.parametrize(("result", "expected"), [
    (MaintainResult(moved_rows=1), "Moved 1 event out of the default partition."),
    (MaintainResult(moved_rows=7), "Moved 7 events out of the default partition."),
    (MaintainResult(covered_periods=1, covered_until=CUTOFF),
     "1 requested period, up to 2026-06-01 00:00 (UTC), overlaps existing partitions"),
    (MaintainResult(covered_periods=4, covered_until=CUTOFF),
     "4 requested periods, up to 2026-06-01 00:00 (UTC), overlap existing partitions"),
], ids=["moved-one", "moved-seven", "covered-one", "covered-four"])
def test_maintenance_counts_events(capsys, result, expected):
    assert expected in printed(capsys, render.print_maintenance, result)


@pytest.mark.parametrize(("result", "expected"), [
    (RedactResult(1, None, dry_run=True), "Dry run: 1 event would be redacted; nothing was changed."),
    (RedactResult(1, 42, dry_run=False), "Redacted 1 event; recorded as REDACT event 42."),
    (RedactResult(2, 43, dry_run=False), "Redacted 2 events; recorded as REDACT event 43."),
], ids=["dry-run-one", "one", "two"])
def test_redaction_counts_events(capsys, result, expected):
    assert printed(capsys, render.print_redact, result) == expected
