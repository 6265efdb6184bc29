"""Parsing of WHEN values: ``30m``, ``12h``, ``7d``, ``2w``, a date or an ISO timestamp."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from .errors import InvalidArgumentError
from .i18n import _

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_when(text: str, option: str, now: datetime | None = None) -> datetime:
    """Turn a WHEN value into an aware datetime.

    A relative value counts back from ``now``. A date means local midnight,
    and a timestamp without an offset is taken in the local time zone.
    """
    now = now or datetime.now(timezone.utc)
    match = _RELATIVE.match(text)
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
            day = date.fromisoformat(text.strip())
            return datetime(day.year, day.month, day.day).astimezone()
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgumentError(
            _("Invalid {option} value {value!r}: use 30m, 12h, 7d, 2w, a date (2026-12-01) "
              "or an ISO timestamp (2026-12-01T09:30:00+03:00).").format(option=option, value=text)) from None
    return moment if moment.tzinfo else moment.astimezone()
