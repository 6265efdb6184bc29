"""Checks that decide whether revert can undo a logged row change.

Masked, hashed, redacted and summarized values are markers, not the old
values, so an event whose revert would write one back is rejected. So is an
event of a table without a primary key whose row can only be found by a
value that the log does not hold, and an event that names a column the
table no longer has.
"""

from __future__ import annotations

from typing import Any

from ..errors import RevertRefusedError
from ..i18n import _
from .catalog import Table
from .query import Event
from .redact import REDACTED_MARKER
from .rules import MASK_MARKER, Rule

REVERTIBLE_ACTIONS = ("INSERT", "UPDATE", "DELETE")
_HASH_PREFIX = "hmac-sha256:"


def check_revertible(event: Event, tables: dict[str, Table], rules: dict) -> None:
    """Raise RevertRefusedError when no check of the current row could make this event revertible."""
    if event.action == "TRUNCATE":
        raise RevertRefusedError(
            _("Event {id} is a TRUNCATE of {table}; the log does not hold the removed rows, so it cannot be "
              "reverted.").format(id=event.id, table=event.entity_type))
    if event.action not in REVERTIBLE_ACTIONS:
        raise RevertRefusedError(
            _("Event {id} is {action}, not a row change; only INSERT, UPDATE and DELETE events can be reverted.")
            .format(id=event.id, action=event.action))

    table = tables.get(event.entity_type)
    if table is None:
        raise RevertRefusedError(
            _("Event {id} is on {table}, which no longer exists. Create the table again first.")
            .format(id=event.id, table=event.entity_type))
    keyless = event.entity_id is None
    if not keyless and not table.has_primary_key:
        raise RevertRefusedError(
            _("Event {id} is on {table}, which now has no primary key, so the row cannot be found safely.")
            .format(id=event.id, table=event.entity_type))

    # The logged value of a renamed or dropped column can be neither written back nor compared.
    missing = [column for column in logged_row(event) if column not in table.columns]
    if missing:
        raise RevertRefusedError(
            _("Event {id} cannot be reverted: column {column} of {table} no longer exists, because it was renamed "
              "or dropped after the event. Add the column again first, or restore the row by hand from "
              "`auditctl history`.").format(id=event.id, column=missing[0], table=event.entity_type))

    # Values the revert writes back must be real values, not markers.
    for column, value in _restored_values(event).items():
        reason = protected_reason(value)
        if reason:
            raise RevertRefusedError(
                _("Event {id} cannot be reverted: column {column} of {table} was stored {reason}, so its old value "
                  "is unknown.").format(id=event.id, column=column, table=event.entity_type, reason=reason))

    # Without a primary key, every stored value is needed to find the row.
    if keyless and event.action != "DELETE":
        for column, value in row_after_event(event).items():
            reason = protected_reason(value)
            if reason:
                raise RevertRefusedError(
                    _("Event {id} cannot be reverted: {table} has no primary key and its column {column} was "
                      "stored {reason}, so the row cannot be identified.")
                    .format(id=event.id, table=event.entity_type, column=column, reason=reason))

    _check_excluded(event, table, rules)


def _check_excluded(event: Event, table: Table, rules: dict) -> None:
    """Raise RevertRefusedError when an excluded column is missing from a row that the revert needs whole.

    A re-inserted row needs every column, and so does finding a row of a
    table without a primary key. Columns added after the event are missing
    too, but they are left to their defaults and not compared.
    """
    if event.action == "DELETE":
        stored = event.old
    elif event.entity_id is None:
        stored = row_after_event(event)
    else:
        return
    table_rules = rules.get((table.schema, table.name), {})
    excluded = [column for column in table.columns
                if column not in stored and table_rules.get(column) is Rule.EXCLUDE]
    if not excluded:
        return
    if event.action == "DELETE":
        raise RevertRefusedError(
            _("Event {id} cannot be reverted: column {column} of {table} is excluded from the audit log, "
              "so the deleted row is incomplete.").format(id=event.id, column=excluded[0], table=event.entity_type))
    raise RevertRefusedError(
        _("Event {id} cannot be reverted: {table} has no primary key and its column {column} is excluded from "
          "the audit log, so the row cannot be identified.")
        .format(id=event.id, table=event.entity_type, column=excluded[0]))


def _restored_values(event: Event) -> dict[str, Any]:
    """Return the logged old values that reverting the event writes back."""
    if event.action == "INSERT":
        return {}
    if event.action == "UPDATE" and event.entity_id is None:
        # The whole old row is logged, but only the changed columns are written.
        return {column: value for column, value in event.old.items() if column in event.new}
    return event.old or {}


def logged_row(event: Event) -> dict[str, Any]:
    """Return the logged values that reverting the event writes back or compares with the current row."""
    if event.action == "DELETE":
        return event.old
    if event.entity_id is None:
        return row_after_event(event)
    return event.new


def row_after_event(event: Event) -> dict[str, Any]:
    """Return the logged values of a row without a primary key, as an INSERT or UPDATE left it."""
    if event.action == "INSERT":
        return event.new
    return event.old | event.new


def protected_reason(value: Any) -> str | None:
    """Return how a logged value was stored in place of the real one, for messages, or None for a real value."""
    if value == MASK_MARKER:
        return _("masked")
    if value == REDACTED_MARKER:
        return _("redacted")
    if isinstance(value, str) and value.startswith(_HASH_PREFIX):
        return _("as a keyed hash")
    if isinstance(value, dict) and set(value) == {"bytes", "sha256"}:
        # bytea values and long text are kept as size and hash only.
        return _("as its size and SHA-256")
    return None
