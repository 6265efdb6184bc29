"""Export of the filtered events as a CSV or JSON Lines file, recorded as an EXPORT event."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..audit.query import EventFilter, stream_csv, stream_jsonl
from ..audit.schema import require_installed
from ..errors import AuditctlError
from ..i18n import _
from .database import read_only_connection, record_event
from .login import apply_session, authenticate, client_address
from .pages import request_filters, resolve_filters
from .rendering import WebError

logger = logging.getLogger(__name__)


def _filter_details(filters: EventFilter) -> dict[str, Any]:
    details = {key: value for key, value in asdict(filters).items() if value not in (None, [], "")}
    for key in ("since", "until"):
        if key in details:
            details[key] = details[key].isoformat()
    return details


def _check_export(config, filters: EventFilter) -> EventFilter:
    """Check the filter against the database, so that a bad one gets an error page before the file starts."""
    with read_only_connection(config.dsn) as connection:
        require_installed(connection, config.schema)
        return resolve_filters(connection, config.schema, filters)


def _export_chunks(config, filters: EventFilter, export_format: str) -> Iterator[bytes]:
    # The connection lives as long as the response streams, and closes when
    # the generator finishes or is closed because the viewer went away.
    with read_only_connection(config.dsn) as connection:
        if export_format == "csv":
            yield from stream_csv(connection, config.schema, filters, formula_safe=True)
        else:
            yield from stream_jsonl(connection, config.schema, filters)


async def export_events(request: Request) -> Response:
    """Record an EXPORT event, then stream every event of the current filter as CSV or JSON Lines, oldest first."""
    user = await authenticate(request)
    config = request.app.state.config
    export_format = request.query_params.get("format", "csv")
    if export_format not in ("csv", "jsonl"):
        raise WebError(400, _("Invalid export format"),
                       _("Invalid export format {value!r}: use csv or jsonl.").format(value=export_format[:40]))
    filters, _form = request_filters(request)
    resolved = await run_in_threadpool(_check_export, config, filters)
    try:
        # The event names the filter as the viewer gave it, not as it was resolved.
        await run_in_threadpool(record_event, config.dsn, config.schema, "EXPORT", user_id=user,
                                client=client_address(request),
                                details={"format": export_format, "filter": _filter_details(filters), "via": "web"})
    except AuditctlError as exc:
        logger.error("export by %s rejected because recording it failed: %s", user, exc)
        raise WebError(503, _("Export not recorded"),
                       _("The export could not be written to the audit log, so it was refused: {error}")
                       .format(error=exc)) from None
    # The file name is built from the time alone, never from request values.
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    media_type = "text/csv; charset=utf-8" if export_format == "csv" else "application/jsonl; charset=utf-8"
    response = StreamingResponse(_export_chunks(config, resolved, export_format), media_type=media_type, headers={
        "content-disposition": f'attachment; filename="auditctl-events-{stamp}.{export_format}"'})
    return apply_session(request, response)
