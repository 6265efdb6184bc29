"""The filters and page cursor of the web page, read from and written back to the URL."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from starlette.datastructures import QueryParams

from ..audit.browse import MAX_EVENT_ID
from ..audit.query import EventFilter, entity_id_as_stored
from ..errors import InvalidArgumentError
from ..i18n import _, ngettext

# Quick picks of the time range, as URL values and their lengths.
PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7),
           "30d": timedelta(days=30)}

# Maximum length of a text field's value, and maximum number of actions in one filter.
MAX_VALUE_LENGTH = 500
MAX_ACTIONS = 32
# Page numbers are only shown, never used to skip rows, but still bounded.
MAX_PAGE = 1_000_000

_ACTION = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID = re.compile(r"^[0-9]{1,19}$")
_PAGE = re.compile(r"^[0-9]{1,7}$")


class FilterError(ValueError):
    """An invalid URL parameter, with a translated message that explains how to fix it."""

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code


@dataclass
class FilterForm:
    """The filter values as the viewer typed them, to fill the form and build links."""

    user: str = ""
    date_from: str = ""
    date_to: str = ""
    period: str = ""
    actions: list[str] = field(default_factory=list)
    table: str = ""
    entity: str = ""
    text: str = ""

    def items(self) -> list[tuple[str, str]]:
        """Return the non-empty values as URL parameters, in a stable order."""
        pairs = [("user", self.user), ("from", self.date_from), ("to", self.date_to), ("period", self.period)]
        pairs += [("action", action) for action in self.actions]
        pairs += [("table", self.table), ("entity", self.entity), ("q", self.text)]
        return [(key, value) for key, value in pairs if value]

    def query(self, **extra: str | int | None) -> str:
        """Return the URL query of these filters plus ``extra`` parameters, without the ``?``."""
        pairs = self.items() + [(key, str(value)) for key, value in extra.items() if value is not None]
        return urlencode(pairs)

    def replaced(self, **changes: Any) -> FilterForm:
        """Return a copy with some values changed, for links such as the quick picks."""
        return replace(self, **changes)

    def is_empty(self) -> bool:
        return not self.items()


@dataclass
class PageRequest:
    """The requested page: a cursor from a previous page, and the page number to show."""

    older_than: int | None = None
    newer_than: int | None = None
    number: int = 1


def reject_nul(value: str, label: str) -> None:
    """Raise FilterError if ``value`` contains a NUL character, which PostgreSQL text cannot hold."""
    if "\x00" in value:
        raise FilterError(_("The {field} filter contains a NUL character (%00), which the database cannot "
                            "compare; remove it.").format(field=label))


def _text(params: QueryParams, name: str, label: str) -> str:
    value = params.get(name, "").strip()
    reject_nul(value, label)
    if len(value) > MAX_VALUE_LENGTH:
        raise FilterError(ngettext("The {field} filter is longer than {length} character; shorten it.",
                                   "The {field} filter is longer than {length} characters; shorten it.",
                                   MAX_VALUE_LENGTH)
                          .format(field=label, length=MAX_VALUE_LENGTH))
    return value


def parse_time(text: str, label: str, time_zone: ZoneInfo, end_of_day: bool = False) -> datetime | None:
    """Read a date or time from the form, in the viewer's time zone unless it has an offset.

    A date alone means midnight at its start, or at its end for the ``to``
    field, so that ``to=2026-12-04`` includes that whole day.
    """
    if not text:
        return None
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text)
            if end_of_day:
                day += timedelta(days=1)
            return datetime(day.year, day.month, day.day, tzinfo=time_zone)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FilterError(
            _("Invalid {field} date {value!r}: use a date such as 2026-12-01 or a time such as "
              "2026-12-01T09:30.").format(field=label, value=text)) from None
    except OverflowError:
        # The day after 9999-12-31, which the ``to`` field needs, is past the end of datetime.
        raise FilterError(
            _("Invalid {field} date {value!r}: the date is out of range; use a date before 9999-12-31.")
            .format(field=label, value=text)) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=time_zone)


def parse_filters(params: QueryParams, time_zone: ZoneInfo, now: datetime) -> tuple[EventFilter, FilterForm]:
    """Check the filter parameters of a URL and turn them into an EventFilter.

    Raises FilterError with a message for the viewer on any invalid value.
    Whether an action that auditctl does not know exists in the log is
    checked later, against the database.
    """
    form = FilterForm(
        user=_text(params, "user", _("user")),
        date_from=_text(params, "from", _("from")),
        date_to=_text(params, "to", _("to")),
        period=_text(params, "period", _("period")),
        table=_text(params, "table", _("table")),
        entity=_text(params, "entity", _("entity id")),
        text=_text(params, "q", _("search")),
    )
    actions = [value.strip().upper() for value in params.getlist("action") if value.strip()]
    if len(actions) > MAX_ACTIONS:
        raise FilterError(_("Too many actions: choose at most {count}.").format(count=MAX_ACTIONS))
    for action in actions:
        if not _ACTION.fullmatch(action):
            raise FilterError(
                _("Unknown action {action!r}: actions are upper-case words such as INSERT or LOGIN.")
                .format(action=action[:80]))
    form.actions = list(dict.fromkeys(actions))

    since = parse_time(form.date_from, _("from"), time_zone)
    until = parse_time(form.date_to, _("to"), time_zone, end_of_day=True)
    if form.period:
        if form.period not in PERIODS:
            raise FilterError(_("Invalid period {value!r}: use one of {choices}.")
                              .format(value=form.period[:80], choices=", ".join(PERIODS)))
        since = now - PERIODS[form.period]
    if since and until and since > until:
        raise FilterError(_("The from time is later than the to time; swap them."))

    try:
        # The same text form as `auditctl query --entity-id`, so a composite key matches however it is spaced.
        entity_id = entity_id_as_stored(form.entity, _("entity id")) if form.entity else None
    except InvalidArgumentError as exc:
        raise FilterError(str(exc)) from None
    filters = EventFilter(user_id=form.user or None, since=since, until=until,
                          tables=[form.table] if form.table else [], actions=form.actions,
                          entity_id=entity_id, text=form.text or None)
    return filters, form


def _event_id(params: QueryParams, name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not _ID.fullmatch(value) or not 1 <= int(value) <= MAX_EVENT_ID:
        raise FilterError(_("Invalid page cursor {value!r}: go back to the first page.").format(value=value[:80]))
    return int(value)


def parse_page(params: QueryParams) -> PageRequest:
    """Check the page cursor and page number of a URL."""
    request = PageRequest(older_than=_event_id(params, "before"), newer_than=_event_id(params, "after"))
    if request.older_than is not None and request.newer_than is not None:
        raise FilterError(_("A page link has both before and after set; go back to the first page."))
    number = params.get("page", "1")
    if not _PAGE.fullmatch(number) or not 1 <= int(number) <= MAX_PAGE:
        raise FilterError(
            _("Invalid page number {value!r}: use a number from 1 to {maximum}, or go back to the first page.")
            .format(value=number[:80], maximum=MAX_PAGE))
    request.number = int(number)
    return request
