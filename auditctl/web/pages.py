"""The pages: the filtered event list with its dashboard, one event, a record's history and preferences."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, time, timezone
from urllib.parse import urlencode
from zoneinfo import ZoneInfo, available_timezones

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..audit import browse
from ..audit.history import entity_history
from ..audit.query import EventFilter
from ..audit.records import typed_entity_filter
from ..i18n import LANGUAGES, _
from . import formatting
from .database import read_only_connection
from .filters import PERIODS, FilterError, FilterForm, PageRequest, parse_filters, parse_page, reject_nul
from .login import apply_session, authenticate, safe_next
from .middleware import LANGUAGE_COOKIE, TIME_ZONE_COOKIE
from .rendering import WebError, render

# Number of top users and tables in the dashboard strip.
TOP_COUNT = 5


@dataclass
class Dashboard:
    chart: formatting.Chart
    top_users: list[browse.TopValue]
    top_tables: list[browse.TopValue]
    # True when the top lists cover the chart's 30 days because the filter has no start.
    top_window: bool


def request_filters(request: Request) -> tuple[EventFilter, FilterForm]:
    """Read the filters of the request's URL; raise WebError (400) on an invalid value."""
    try:
        return parse_filters(request.query_params, request.state.time_zone, datetime.now(timezone.utc))
    except FilterError as exc:
        raise WebError(exc.status_code, _("Invalid filter"), str(exc)) from None


def resolve_filters(connection, schema: str, filters: EventFilter) -> EventFilter:
    """Check the filter against the database and return it with its tables and entity id as the log stores them.

    The checks are those of `auditctl query`. An unknown action raises
    WebError (400). An unknown table, or an entity id that does not fit the
    table's primary key, raises an AuditctlError that the app shows as a
    400 page.
    """
    try:
        browse.check_actions(connection, schema, filters.actions)
    except browse.UnknownActionError as exc:
        raise WebError(400, _("Invalid filter"), str(exc)) from None
    filters = browse.resolve_tables(connection, schema, filters)
    if filters.entity_id is not None:
        filters = typed_entity_filter(connection, schema, filters, filters.entity_id, label=_("entity id"))
    return filters


@dataclass
class ListData:
    """Contents of the main view, read in one connection."""

    page: browse.Page
    days: list[browse.DayCount]
    top_users: list[browse.TopValue]
    top_tables: list[browse.TopValue]
    top_window: bool
    entity_types: list[str]
    # Actions of the application's own seen in the chart's days, for the action list.
    other_actions: list[str]


def _load_list(config, filters: EventFilter, page: PageRequest, time_zone: ZoneInfo) -> ListData:
    with read_only_connection(config.dsn) as connection:
        filters = resolve_filters(connection, config.schema, filters)
        result = browse.browse_events(connection, config.schema, filters, size=config.page_size,
                                      older_than=page.older_than, newer_than=page.newer_than)
        days = browse.daily_counts(connection, config.schema, filters, time_zone)
        # Counting users and tables over the whole log would scan all of it on
        # every page view, so a filter without a start counts the chart's days.
        window_start = datetime.combine(days[0].day, time.min, tzinfo=time_zone)
        top_filter = filters if filters.since is not None else replace(filters, since=window_start)
        top_users = browse.top_values(connection, config.schema, top_filter, "user_id", TOP_COUNT)
        top_tables = browse.top_values(connection, config.schema, top_filter, "entity_type", TOP_COUNT)
        entity_types = browse.audited_entity_types(connection, config.schema)
        other_actions = browse.recent_actions(connection, config.schema, window_start)
    return ListData(result, days, top_users, top_tables, filters.since is None, entity_types, other_actions)


async def events_page(request: Request) -> Response:
    """Render the main view: filter bar, dashboard strip and one page of events."""
    await authenticate(request)
    config = request.app.state.config
    filters, form = request_filters(request)
    try:
        page = parse_page(request.query_params)
    except FilterError as exc:
        raise WebError(exc.status_code, _("Invalid page"), str(exc)) from None
    data = await run_in_threadpool(_load_list, config, filters, page, request.state.time_zone)
    result = data.page
    dashboard = Dashboard(formatting.bar_chart(data.days, request.state.language), data.top_users,
                          data.top_tables, data.top_window)
    rows = [(event, *formatting.summary(event)) for event in result.events]
    older = form.query(before=result.older_than, page=page.number + 1) if result.older_than else None
    newer = None
    if result.newer_than:
        newer = form.query(after=result.newer_than, page=page.number - 1) if page.number > 2 else form.query()
    response = render(request, "events.html", {
        "form": form, "rows": rows, "page_number": page.number, "older_query": older, "newer_query": newer,
        "dashboard": dashboard, "entity_types": data.entity_types, "known_actions": [*browse.KNOWN_ACTIONS, *data.other_actions],
        "periods": list(PERIODS), "filter_query": form.query(), "event_query": request.url.query,
    })
    return apply_session(request, response)


def _load_event(config, event_id: int):
    with read_only_connection(config.dsn) as connection:
        return browse.get_event(connection, config.schema, event_id)


def history_query(event) -> str | None:
    """Return the URL query that lists every event of this event's record, or None for events of no record."""
    if not event.entity_type:
        return None
    pairs = [("table", browse.quote_entity_type(event.entity_type))]
    if event.entity_id is not None:
        pairs.append(("entity", event.entity_id))
    return urlencode(pairs)


def record_history_query(event) -> str | None:
    """Return the URL query of the history page of this event's record, or None for events of no record."""
    if not event.entity_type or event.entity_id is None:
        return None
    return urlencode([("table", event.entity_type), ("entity", event.entity_id)])


def _load_history(config, entity_type: str, entity_id: str):
    with read_only_connection(config.dsn) as connection:
        return entity_history(connection, config.schema, entity_type, entity_id)


async def history_page(request: Request) -> Response:
    """Render the life of one record as a timeline, oldest event first."""
    await authenticate(request)
    entity_type = request.query_params.get("table", "")
    entity_id = request.query_params.get("entity", "")
    if not entity_type or not entity_id or len(entity_type) > 300 or len(entity_id) > 1000:
        raise WebError(400, _("Invalid record"),
                       _("Open a record's history from one of its events: the address needs table and entity."))
    try:
        reject_nul(entity_type, _("table"))
        reject_nul(entity_id, _("entity id"))
    except FilterError as exc:
        raise WebError(exc.status_code, _("Invalid record"), str(exc)) from None
    history = await run_in_threadpool(_load_history, request.app.state.config, entity_type, entity_id)
    entries = [(entry.event, formatting.change_lines(entry.event, shorten=False)) for entry in history.entries]
    record = history.record
    list_query = urlencode([("table", browse.quote_entity_type(record.entity_type)), ("entity", record.entity_id)])
    response = render(request, "history.html", {
        "history": history, "entries": entries, "list_query": list_query,
    })
    return apply_session(request, response)


async def event_page(request: Request) -> Response:
    """Render one event with its old and new values side by side."""
    await authenticate(request)
    text = request.path_params["event_id"]
    if not text.isascii() or not text.isdigit() or len(text) > 19 or not 1 <= int(text) <= browse.MAX_EVENT_ID:
        raise WebError(400, _("Invalid event id"),
                       _("Invalid event id {value!r}: use a whole number such as 42.").format(value=text[:80]))
    event = await run_in_threadpool(_load_event, request.app.state.config, int(text))
    if event is None:
        raise WebError(404, _("Event not found"),
                       _("Event {id} is not in the audit log. It may have been removed by retention.")
                       .format(id=text))
    response = render(request, "event.html", {
        "event": event, "lines": formatting.change_lines(event, shorten=False),
        "details": formatting.pretty_json(event.details) if event.details else None,
        "history_query": history_query(event), "record_history_query": record_history_query(event),
        "back_query": request.url.query,
    })
    return apply_session(request, response)


async def preferences_page(request: Request) -> Response:
    """Render the form that sets the language and time zone, for viewers without JavaScript."""
    zones = sorted(zone for zone in available_timezones() if "/" in zone or zone == "UTC")
    return render(request, "preferences.html", {
        "zones": zones, "languages": LANGUAGES, "next": safe_next(request.query_params.get("next"))})


async def apply_preferences(request: Request) -> Response:
    """Store the chosen language and time zone in cookies and go back to the page the viewer came from."""
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    language = request.query_params.get("lang")
    if language:
        if language not in LANGUAGES:
            raise WebError(400, _("Invalid language"),
                           _("Unknown language {value!r}: choose en or ru.").format(value=language[:20]))
        response.set_cookie(LANGUAGE_COOKIE, language, max_age=365 * 86400, path="/", secure=True,
                            httponly=True, samesite="lax")
    zone = request.query_params.get("tz")
    if zone:
        if zone not in available_timezones():
            raise WebError(400, _("Invalid time zone"),
                           _("Unknown time zone {value!r}: choose one such as Europe/Moscow or UTC.")
                           .format(value=zone[:60]))
        response.set_cookie(TIME_ZONE_COOKIE, zone, max_age=365 * 86400, path="/", secure=True,
                            samesite="lax")
    return response
