"""Values of the web page as text for the viewer: times, numbers, changes and the bar chart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_datetime, format_skeleton
from babel.numbers import format_decimal

from .. import jsonvalues
from ..audit.browse import DayCount
from ..audit.query import Event

# Maximum length of a value in the results table before it is cut with an ellipsis.
SUMMARY_VALUE_CHARS = 60
# Columns of a change shown in the results table. The event page shows all of them.
SUMMARY_COLUMNS = 4


def format_time(moment: datetime, time_zone: ZoneInfo, language: str) -> str:
    """Show a timestamp in the viewer's time zone, to the second, as the language writes it."""
    return format_datetime(moment, "medium", tzinfo=time_zone, locale=language)


def format_number(value: int, language: str) -> str:
    """Show a whole number with the language's digit grouping."""
    return format_decimal(value, locale=language)


def format_day(moment: datetime, language: str) -> str:
    """Show a day as the language abbreviates it, such as "Dec 4" or "4 дек."."""
    return format_skeleton("MMMd", moment, locale=language)


def value_text(value: Any) -> str:
    """Show a JSON value: strings as they are, everything else as compact JSON."""
    # NOTE: psycopg loads JSON numbers as float, so a stored 99.50 shows as 99.5;
    # the exports keep the stored text.
    if isinstance(value, str):
        return value
    return jsonvalues.dumps(value, ensure_ascii=False)


def _short(value: Any) -> str:
    text = value_text(value)
    return text if len(text) <= SUMMARY_VALUE_CHARS else text[: SUMMARY_VALUE_CHARS - 1] + "…"


@dataclass
class ChangeLine:
    """One column of a change: its old and new value as text, None for a side that has no value."""

    column: str
    old: str | None
    new: str | None
    changed: bool


def change_lines(event: Event, shorten: bool) -> list[ChangeLine]:
    """List the columns an event touched, with the old and new value of each.

    An UPDATE lists the changed columns, an INSERT the new row, a DELETE the
    old row, and other events their details.
    """
    show = _short if shorten else value_text
    old = event.old or {}
    new = event.new or {}
    if event.old is None and event.new is None:
        return [ChangeLine(key, None, show(value), False) for key, value in (event.details or {}).items()]
    lines = []
    for key in list(dict.fromkeys([*old, *new])):
        old_text = show(old[key]) if key in old else None
        new_text = show(new[key]) if key in new else None
        changed = event.old is not None and event.new is not None and old.get(key) != new.get(key)
        lines.append(ChangeLine(key, old_text, new_text, changed))
    return lines


def summary(event: Event) -> tuple[list[ChangeLine], int]:
    """Return the first columns of an event's change for the results table, and how many more there are."""
    lines = change_lines(event, shorten=True)
    return lines[:SUMMARY_COLUMNS], max(0, len(lines) - SUMMARY_COLUMNS)


def pretty_json(value: Any) -> str:
    """Show a JSON value indented, non-ASCII text kept as is."""
    return jsonvalues.dumps(value, ensure_ascii=False, indent=2, sort_keys=True)


@dataclass
class Bar:
    """One bar of the events-per-day chart, in SVG user units."""

    x: float
    y: float
    width: float
    height: float
    label: str
    count: int


@dataclass
class Chart:
    """The events-per-day chart: its size, bars and axis labels."""

    width: int
    height: int
    bars: list[Bar]
    maximum: int
    first_day: str
    last_day: str
    total: int


def bar_chart(days: list[DayCount], language: str, width: int = 720, height: int = 90) -> Chart:
    """Lay out one bar per day, scaled so that the busiest day fills the height."""
    maximum = max((day.events for day in days), default=0)
    slot = width / max(len(days), 1)
    bars = []
    for index, day in enumerate(days):
        bar_height = 0.0 if maximum == 0 else max(1.0, day.events / maximum * height) if day.events else 0.0
        moment = datetime(day.day.year, day.day.month, day.day.day)
        bars.append(Bar(x=round(index * slot + 1, 2), y=round(height - bar_height, 2),
                        width=round(max(slot - 2, 1), 2), height=round(bar_height, 2),
                        label=format_day(moment, language), count=day.events))
    return Chart(width=width, height=height, bars=bars, maximum=maximum,
                 first_day=bars[0].label if bars else "", last_day=bars[-1].label if bars else "",
                 total=sum(day.events for day in days))
