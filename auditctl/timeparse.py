"""Parsing of WHEN values: ``30m``, ``12h``, ``7d``, ``2w``, a date or an ISO timestamp."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from .errors import InvalidArgumentError
from .i18n import _

_RELATIVE = re.compile(r"^(\d+)\s*([a-z])$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# In ISO 8601 durations M means months (P1M), or minutes after the T (PT1M),
# so an upper-case M is rejected rather than guessed.
_AMBIGUOUS_UNIT = "M"


def parse_when(text: str, option: str, now: datetime | None = None) -> datetime:
    """Turn a WHEN value into an aware datetime.

    A relative value counts back from ``now``. A date means local midnight,
    and a timestamp without an offset is taken in the local time zone.
    A unit may be upper case, except M. Raises InvalidArgumentError naming
    ``option`` for empty text, for text of another form, and for a moment at
    or beyond the ends of the years 1 to 9999 that Python's datetime covers.
    """
    now = now or datetime.now(timezone.utc)
    stripped = text.strip()
    if not stripped:
        # An unset shell variable in `--since "$SINCE"` must not mean "no time limit".
        raise InvalidArgumentError(
            _("Invalid {option} value {value!r}: it is empty; give 30m, 12h, 7d, 2w, a date (2026-12-01) "
              "or an ISO timestamp, or leave {option} out.").format(option=option, value=text))
    relative = _RELATIVE.match(stripped)
    if relative and relative.group(2) == _AMBIGUOUS_UNIT:
        raise InvalidArgumentError(
            _("Invalid {option} value {value!r}: M could mean minutes or months, so it is not accepted; use "
              "{amount}m for minutes, or days (90d) or a date for months. Units: s, m, h, d, w, and S, H, D, W.")
            .format(option=option, value=text, amount=relative.group(1)))
    try:
        return _parse(stripped, now)
    except OverflowError:
        raise InvalidArgumentError(
            _("Invalid {option} value {value!r}: the moment is out of range; use a shorter time back such as 30d "
              "or 2w, or a date such as 2026-12-01.").format(option=option, value=text)) from None
    except ValueError:
        raise InvalidArgumentError(
            _("Invalid {option} value {value!r}: use 30m, 12h, 7d, 2w, a date (2026-12-01) "
              "or an ISO timestamp (2026-12-01T09:30:00+03:00).").format(option=option, value=text)) from None


def _parse(text: str, now: datetime) -> datetime:
    match = _RELATIVE.match(text)
    if match:
        unit = _UNITS.get(match.group(2).lower())
        if unit is None:
            raise ValueError(f"unknown unit {match.group(2)!r}")
        return now - timedelta(**{unit: int(match.group(1))})
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        day = date.fromisoformat(text)
        return _in_local_zone(datetime(day.year, day.month, day.day))
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else _in_local_zone(moment)


def _in_local_zone(moment: datetime) -> datetime:
    try:
        return moment.astimezone()
    except ValueError as exc:
        # Near the ends of the datetime range, astimezone() raises ValueError
        # ("year 0 is out of range") where arithmetic raises OverflowError.
        raise OverflowError(str(exc)) from None
