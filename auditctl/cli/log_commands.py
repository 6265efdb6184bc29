"""query, export and event: reading the log and adding application events."""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from .. import render
from ..audit.events import log_event, parse_details
from ..audit.archive import write_parquet_batches
from ..audit.browse import check_actions
from ..audit.query import (MAX_QUERY_LIMIT, EventFilter, count_events, entity_id_as_stored, query_events,
                           stream_csv, stream_jsonl, stream_row_batches)
from ..audit.records import typed_entity_filter
from ..audit.schema import DEFAULT_SCHEMA
from ..db import connect
from ..errors import InvalidArgumentError
from ..files import replace_when_complete
from ..i18n import _
from ..timeparse import parse_when
from .app import app
from .export_format import ExportFormat, choose_format, compressed
from .options import DsnOption, SchemaOption, file_parser, require_value

UserOption = Annotated[str | None, typer.Option("--user", metavar="ID", help=_("Application user id."))]
SinceOption = Annotated[str | None, typer.Option(
    "--since", metavar="WHEN", help=_("Events at or after WHEN: 30m, 12h, 7d, 2w, a date or an ISO timestamp."))]
UntilOption = Annotated[str | None, typer.Option(
    "--until", metavar="WHEN", help=_("Events before WHEN, in the same forms as --since."))]
TableOption = Annotated[list[str] | None, typer.Option(
    "--table", metavar="TABLE", help=_("Table as TABLE or SCHEMA.TABLE; may be repeated."))]
ActionOption = Annotated[list[str] | None, typer.Option(
    "--action", metavar="ACTION", help=_("INSERT, UPDATE, DELETE, TRUNCATE, LOGIN and so on, in any case; "
                                         "may be repeated."))]
EntityIdOption = Annotated[str | None, typer.Option(
    "--entity-id", metavar="ID", help=_("Primary key value; a composite key as a JSON array, e.g. '[\"a\", 5]'."))]


class QueryFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def build_filter(user: str | None, since: str | None, until: str | None, tables: list[str] | None,
                 actions: list[str] | None, entity_id: str | None) -> EventFilter:
    """Turn the shared filter options into an EventFilter, checking each value."""
    for action in actions or []:
        if not action.strip():
            # EventFilter ignores empty actions, which the web page's filter form
            # sends, so `--action "$ACTION"` with an unset variable would match all.
            raise InvalidArgumentError(
                _("Invalid --action value {value!r}: it is empty; give an action such as UPDATE or LOGIN, "
                  "or leave --action out.").format(value=action))
    if user is not None and not user.strip():
        # The triggers store an empty auditctl.user_id as NULL, so an empty --user would match nothing.
        raise InvalidArgumentError(
            _("Invalid --user value {value!r}: it is empty; give an application user id, "
              "or leave --user out.").format(value=user))
    require_value("--entity-id", entity_id, _("give a primary key value, or a JSON array for a composite key, "
                                              "or leave --entity-id out"))
    for table in tables or []:
        if not table.strip():
            raise InvalidArgumentError(
                _("Invalid --table value {value!r}: it is empty; give a table as TABLE or SCHEMA.TABLE, "
                  "or leave --table out.").format(value=table))
    return EventFilter(
        user_id=user,
        since=parse_when(since, "--since") if since is not None else None,
        until=parse_when(until, "--until") if until is not None else None,
        tables=tables or [],
        actions=actions or [],
        entity_id=entity_id_as_stored(entity_id) if entity_id is not None else None,
    )


@app.command(help=_("Show audit events, newest first."))
def query(
    user: UserOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    table: TableOption = None,
    action: ActionOption = None,
    entity_id: EntityIdOption = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help=_("Show at most this many events."))] = 100,
    after: Annotated[int | None, typer.Option(
        "--after", metavar="ID", help=_("Start after this event id, the last one of the previous page."))] = None,
    output_format: Annotated[QueryFormat, typer.Option("--format", help=_("Output format."))] = QueryFormat.table,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    if limit > MAX_QUERY_LIMIT:
        raise InvalidArgumentError(
            _("Invalid --limit {value}: a page holds at most {max} events; fetch the next page with --after ID, "
              "or use export for every event.").format(value=limit, max=MAX_QUERY_LIMIT))
    filters = build_filter(user, since, until, table, action, entity_id)
    with connect(dsn) as connection:
        check_actions(connection, schema, action or [])
        if entity_id is not None:
            filters = typed_entity_filter(connection, schema, filters, entity_id)
        if output_format is QueryFormat.csv and after is None:
            # Closing the stream ends its COPY, which keeps the connection locked, before the connection closes.
            with contextlib.closing(stream_csv(connection, schema, filters, limit=limit, newest_first=True)) as chunks:
                count, last_id = _write_csv_page(chunks)
            if count == limit:
                render.print_next_page_hint(last_id)
            return
        events = query_events(connection, schema, filters, limit=limit, after_id=after)
    if output_format is QueryFormat.json:
        render.print_json([render.event_to_json(event) for event in events])
    elif output_format is QueryFormat.csv:
        render.print_events_csv(events)
    else:
        render.print_events(events)
    if len(events) == limit:
        render.print_next_page_hint(events[-1].id)


def _write_csv_page(chunks: Iterator[bytes]) -> tuple[int, int | None]:
    """Copy the chunks of ``stream_csv`` to stdout; return the number of events and the id of the last one.

    Each chunk contains whole CSV records, the header line first, so each can
    be parsed on its own.
    """
    count, last_id = 0, None
    for index, chunk in enumerate(chunks):
        sys.stdout.buffer.write(chunk)
        if index == 0:
            continue
        records = list(csv.reader(io.StringIO(chunk.decode("utf-8"), newline="")))
        if records:
            count += len(records)
            last_id = int(records[-1][0])
    sys.stdout.buffer.flush()
    return count, last_id


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[BinaryIO]:
    """Yield stdout, or a file that replaces ``path`` only when complete."""
    if path is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with replace_when_complete(path) as handle:
        yield handle


@app.command(help=_("Stream every matching event, oldest first, as CSV, JSON Lines or Parquet."))
def export(
    given_format: Annotated[ExportFormat | None, typer.Option(
        "--format", help=_("Output format; csv.gz and jsonl.zst are compressed. Defaults to the format that the "
                           "suffix of --output names: .csv, .csv.gz, .jsonl, .jsonl.zst or .parquet; CSV for any "
                           "other name and for stdout."))] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE",
        help=_("Write to FILE (replaced only when complete) instead of stdout; required for Parquet."),
        parser=file_parser("--output"))] = None,
    user: UserOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    table: TableOption = None,
    action: ActionOption = None,
    entity_id: EntityIdOption = None,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    filters = build_filter(user, since, until, table, action, entity_id)
    output_format = choose_format(given_format, output)
    if output_format is ExportFormat.parquet and output is None:
        raise InvalidArgumentError(_("--format parquet needs --output FILE: Parquet is not written to stdout."))
    with connect(dsn) as connection:
        check_actions(connection, schema, action or [])
        if entity_id is not None:
            filters = typed_entity_filter(connection, schema, filters, entity_id)
        # Counting costs a scan, so it is done only when a progress bar will show it.
        show_bar = output is not None and render.error_console.is_terminal
        total = count_events(connection, schema, filters) if show_bar else None
        with _output(output) as sink, render.progress(_("Exporting events"), total, "exporting events",
                                                             show_rate=True) as advance:
            if output_format is ExportFormat.parquet:
                write_parquet_batches(stream_row_batches(connection, schema, filters), sink,
                                      on_batch=lambda rows: advance("", rows))
            else:
                is_csv = output_format in (ExportFormat.csv, ExportFormat.csv_gz)
                stream = stream_csv if is_csv else stream_jsonl
                # The CSV header line is not an event.
                uncounted_lines = 1 if is_csv else 0
                with contextlib.closing(stream(connection, schema, filters)) as chunks, \
                        compressed(sink, output_format) as writer:
                    for chunk in chunks:
                        writer.write(chunk)
                        if show_bar:
                            lines = chunk.count(b"\n")
                            advance("", lines - min(lines, uncounted_lines))
                            uncounted_lines -= min(lines, uncounted_lines)
    if output is not None:
        render.error_console.print(_("Events written to {path}.").format(path=output), markup=False)


@app.command(help=_("Record an application event such as LOGIN, LOGOUT, LOGIN_FAILED, PASSWORD_CHANGE or EXPORT."))
def event(
    action: Annotated[str, typer.Argument(metavar="ACTION", help=_("Event name, an upper-case word."))],
    user: Annotated[str, typer.Option("--user", metavar="ID", help=_("Application user id."))],
    entity_type: Annotated[str | None, typer.Option("--entity-type", metavar="TYPE",
                                                    help=_("What the event is about, e.g. a table."))] = None,
    entity_id: Annotated[str | None, typer.Option("--entity-id", metavar="ID",
                                                  help=_("Id of the entity the event is about."))] = None,
    ip: Annotated[str | None, typer.Option("--ip", metavar="ADDR",
                                           help=_("Client IP address (IPv4 or IPv6)."))] = None,
    details: Annotated[str | None, typer.Option("--details", metavar="JSON",
                                                help=_("Extra fields as a JSON object."))] = None,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    require_value("--user", user, _("give the application user id the event is about"))
    require_value("--entity-type", entity_type, _("give what the event is about, such as a table, "
                                                   "or leave --entity-type out"))
    require_value("--entity-id", entity_id, _("give the id of the entity, or leave --entity-id out"))
    parsed = parse_details(details)
    with connect(dsn) as connection:
        event_id = log_event(connection, schema, action, user_id=user, entity_type=entity_type,
                             entity_id=entity_id, ip_address=ip, details=parsed)
    render.console.print(_("Event {id} recorded.").format(id=event_id))
