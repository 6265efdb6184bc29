"""Time values of --since, --until and --keep, parsed without a database."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from auditctl.audit.retention import parse_keep
from auditctl.errors import InvalidArgumentError
from auditctl.timeparse import parse_when

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", NOW - timedelta(minutes=30)),
    ("2w", NOW - timedelta(weeks=2)),
    ("7D", NOW - timedelta(days=7)),
    ("12H", NOW - timedelta(hours=12)),
    (" 2W ", NOW - timedelta(weeks=2)),
    ("2026-12-01T09:30:00+03:00", datetime(2026, 12, 1, 6, 30, tzinfo=timezone.utc)),
    ("0001-01-01T00:00:00+00:00", datetime(1, 1, 1, tzinfo=timezone.utc)),
    ("9999-12-31T23:59:59+00:00", datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)),
], ids=["minutes", "weeks", "upper-case-days", "upper-case-hours", "upper-case-weeks-spaced",
        "timestamp-with-offset", "first-moment", "last-moment"])
def test_when_accepts_valid_values(text, expected):
    assert parse_when(text, "--since", now=NOW) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("10000000d", "the moment is out of range"),
    ("99999999999999999999999d", "the moment is out of range"),
    ("1000000000w", "the moment is out of range"),
    ("0001-01-01", "the moment is out of range"),
    ("yesterday", "use 30m, 12h, 7d, 2w"),
    ("2026-02-30", "use 30m, 12h, 7d, 2w"),
    ("", "it is empty; give 30m, 12h, 7d, 2w"),
    ("  ", "it is empty; give 30m, 12h, 7d, 2w"),
    ("3M", "M could mean minutes or months, so it is not accepted; use 3m for minutes"),
    ("7x", "use 30m, 12h, 7d, 2w"),
], ids=["days-before-year-one", "days-past-c-int", "weeks-past-timedelta", "local-first-day", "word", "no-such-day",
        "empty", "blank", "upper-case-m", "unknown-unit"])
def test_when_rejects_with_option_named(text, reason):
    with pytest.raises(InvalidArgumentError) as caught:
        parse_when(text, "--until", now=NOW)
    assert str(caught.value).startswith(f"Invalid --until value {text!r}: {reason}")


@pytest.mark.parametrize(("text", "expected"), [
    ("180d", timedelta(days=180)),
    ("26w", timedelta(weeks=26)),
    ("700000d", timedelta(days=700000)),
    ("180D", timedelta(days=180)),
    ("26W", timedelta(weeks=26)),
], ids=["days", "weeks", "nearly-two-millennia", "upper-case-days", "upper-case-weeks"])
def test_keep_accepts_valid_windows(text, expected):
    assert parse_keep(text) == expected


@pytest.mark.parametrize(("text", "reason"), [
    ("0d", "use a number of days or weeks of at least 1"),
    ("soon", "use a number of days or weeks of at least 1"),
    ("999999d", "it reaches back before the year 1"),
    ("2000000w", "it reaches back before the year 1"),
    ("99999999999999999999999999w", "it reaches back before the year 1"),
], ids=["zero", "word", "days-before-year-one", "weeks-before-year-one", "weeks-past-c-int"])
def test_keep_rejects_with_reason(text, reason):
    with pytest.raises(InvalidArgumentError) as caught:
        parse_keep(text)
    assert str(caught.value).startswith(f"Invalid --keep value {text!r}: {reason}")
