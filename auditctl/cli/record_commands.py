"""history, revert and redact: one record's life, undoing changes, and erasure requests."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from .. import render
from ..audit.history import record_history
from ..audit.redact import redact_entity, redact_user
from ..audit.revert import revert_event, revert_transaction
from ..audit.schema import DEFAULT_SCHEMA
from ..db import connect
from ..errors import InvalidArgumentError
from ..i18n import _
from .app import app
from .options import DsnOption, SchemaOption, require_value


class HistoryFormat(StrEnum):
    table = "table"
    json = "json"


@app.command(help=_("Show the life of one record, oldest event first: who changed which field from what to what."))
def history(
    table: Annotated[str, typer.Argument(metavar="TABLE", help=_("Table as TABLE or SCHEMA.TABLE."))],
    record_id: Annotated[list[str], typer.Argument(
        metavar="ID", help=_("Primary key value; for a composite key one value per column, "
                                "or one JSON array such as '[\"pr00000010\", 5]'."))],
    output_format: Annotated[HistoryFormat, typer.Option("--format", help=_("Output format."))] = HistoryFormat.table,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    with connect(dsn) as connection:
        result = record_history(connection, schema, table, record_id)
    if output_format is HistoryFormat.json:
        render.print_json(render.history_to_json(result))
    else:
        render.print_history(result)


@app.command(help=_("Restore rows as they were before an event, or before a whole transaction."))
def revert(
    event_id: Annotated[int | None, typer.Argument(metavar="EVENT_ID", min=1,
                                                   help=_("Id of the INSERT, UPDATE or DELETE event to undo."))] = None,
    transaction: Annotated[int | None, typer.Option(
        "--transaction", metavar="TXID", min=1, help=_("Undo every row change of this database transaction, "
                                                       "newest first."))] = None,
    user: Annotated[str | None, typer.Option(
        "--user", metavar="ID", help=_("Application user id recorded for the revert and its row changes."))] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help=_("Check and run the revert, then roll it back: shows what would change."))] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    require_value("--user", user, _("give the application user id to record, or leave --user out"))
    if (event_id is None) == (transaction is None):
        raise InvalidArgumentError(_("Give exactly one of EVENT_ID and --transaction TXID."))
    with connect(dsn) as connection:
        if transaction is not None:
            result = revert_transaction(connection, schema, transaction, user_id=user, dry_run=dry_run)
        else:
            result = revert_event(connection, schema, event_id, user_id=user, dry_run=dry_run)
    render.print_revert(result)


@app.command(help=_("Erase one person's or one record's values from the audit log, for erasure requests."))
def redact(
    user: Annotated[str | None, typer.Option(
        "--user", metavar="ID", help=_("Application user id to erase: from the events they made and from "
                                       "values equal to it."))] = None,
    entity: Annotated[tuple[str, str] | None, typer.Option(
        "--entity", metavar="TABLE ID", help=_("Record whose stored values to erase; a composite key as a "
                                               "JSON array."))] = None,
    actor: Annotated[str | None, typer.Option(
        "--actor", metavar="ID", help=_("Application user id recorded as the author of the REDACT event."))] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help=_("Count the events that would be rewritten and change nothing."))] = False,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    if (user is None) == (entity is None):
        raise InvalidArgumentError(_("Give exactly one of --user ID and --entity TABLE ID."))
    # An empty user id would redact every top-level empty string in the log.
    require_value("--user", user, _("give the application user id whose data to erase"))
    if entity is not None:
        require_value("--entity", entity[1], _("give the primary key value of the record after its table"))
    require_value("--actor", actor, _("give the application user id of whoever redacts, or leave --actor out"))
    with connect(dsn) as connection:
        if user is not None:
            result = redact_user(connection, schema, user, actor=actor, dry_run=dry_run)
        else:
            result = redact_entity(connection, schema, entity[0], [entity[1]], actor=actor, dry_run=dry_run)
    render.print_redact(result)
