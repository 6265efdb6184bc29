"""Export of the filtered events as a CSV or JSON Lines file, recorded as an EXPORT event."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import psycopg
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ..audit.query import EventFilter, stream_csv, stream_jsonl
from ..audit.schema import require_installed
from ..db import first_line
from ..errors import AuditctlError
from ..i18n import _
from .database import insert_event, log_recorded_event, read_only_connection
from .login import apply_session, authenticate, client_address
from .pages import request_filters, resolve_filters
from .rendering import WebError

logger = logging.getLogger(__name__)


class ExportInterrupted(Exception):
    """An export that failed after its response started; the cause is already logged."""


class ExportResponse(StreamingResponse):
    """A streamed export that ends without its last chunk when the export fails midway.

    The server then closes the connection, so the viewer's download fails
    instead of ending as a complete but shortened file.
    """

    def __init__(self, chunks: Iterator[bytes], **kwargs: Any):
        super().__init__(chunks, **kwargs)
        self._chunks = chunks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except ExportInterrupted:
            # Returning without the last body message makes uvicorn close the
            # connection; it logs one line of its own about that.
            pass
        finally:
            # Closing the generator rolls back the EXPORT event of an export
            # that did not finish, such as one the viewer cancelled. A failed
            # rollback is logged there and needs nothing more here.
            with contextlib.suppress(ExportInterrupted):
                await run_in_threadpool(self._chunks.close)


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


def _recorded_export(config, filters: EventFilter, export_format: str, user: str, client: str | None,
                     details: dict[str, Any]) -> Iterator[bytes]:
    """Insert the EXPORT event, yield an empty chunk, then yield the export and commit the event.

    The caller takes the empty chunk before the response starts, so that an
    export the log cannot record is refused with an error page. The event
    commits after the last row, before the response ends, so the log records
    only exports that were made. A database error while streaming rolls the
    event back, logs one line and raises ExportInterrupted. Closing the
    generator early, as when the viewer cancels the download, rolls it back
    too.
    """
    started = False
    sent = 0
    try:
        with read_only_connection(config.dsn) as connection, connection.transaction():
            event_id = insert_event(connection, config.schema, "EXPORT", user_id=user, client=client,
                                    details=details)
            # The transaction stays idle while the file streams, so a server-wide
            # idle_in_transaction_session_timeout would end a long export.
            connection.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            started = True
            yield b""
            with contextlib.closing(_export_chunks(config, filters, export_format)) as chunks:
                for chunk in chunks:
                    sent += len(chunk)
                    yield chunk
    except (psycopg.Error, AuditctlError) as exc:
        if not started:
            raise
        logger.error("export by %s failed after %d bytes, so the viewer got an incomplete file and no EXPORT "
                     "event was recorded: %s", user, sent, first_line(str(exc)))
        raise ExportInterrupted from None
    except GeneratorExit:
        logger.info("export by %s stopped after %d bytes because the viewer went away; no EXPORT event was "
                    "recorded", user, sent)
        raise
    log_recorded_event("EXPORT", event_id, user, client)


async def export_events(request: Request) -> Response:
    """Stream every event of the current filter as CSV or JSON Lines, oldest first, and record an EXPORT event."""
    user = await authenticate(request)
    config = request.app.state.config
    export_format = request.query_params.get("format", "csv")
    if export_format not in ("csv", "jsonl"):
        raise WebError(400, _("Invalid export format"),
                       _("Invalid export format {value!r}: use csv or jsonl.").format(value=export_format[:40]))
    filters, _form = request_filters(request)
    resolved = await run_in_threadpool(_check_export, config, filters)
    # The event names the filter as the viewer gave it, not as it was resolved.
    details = {"format": export_format, "filter": _filter_details(filters), "via": "web"}
    chunks = _recorded_export(config, resolved, export_format, user, client_address(request), details)
    try:
        await run_in_threadpool(next, chunks)
    except AuditctlError as exc:
        logger.error("export by %s rejected because recording it failed: %s", user, exc)
        raise WebError(503, _("Export not recorded"),
                       _("The export could not be written to the audit log, so it was refused: {error}")
                       .format(error=exc)) from None
    # The file name is built from the time alone, never from request values.
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    media_type = "text/csv; charset=utf-8" if export_format == "csv" else "application/jsonl; charset=utf-8"
    response = ExportResponse(chunks, media_type=media_type, headers={
        "content-disposition": f'attachment; filename="auditctl-events-{stamp}.{export_format}"'})
    return apply_session(request, response)
