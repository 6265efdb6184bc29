"""Application events (LOGIN, LOGOUT, PASSWORD_CHANGE, ...) written through log_event()."""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..db import first_line
from ..errors import DatabaseError, InvalidArgumentError
from ..i18n import _
from .schema import require_installed

_ACTION = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")
ROW_ACTIONS = frozenset({"INSERT", "UPDATE", "DELETE", "TRUNCATE"})


def parse_details(text: str | None) -> dict[str, Any] | None:
    """Parse ``--details`` as a JSON object."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg is the json module's English wording, so translations leave {error} out.
        raise InvalidArgumentError(
            _("Invalid --details JSON at line {line}, column {column}: {error}. Pass a JSON object such as "
              "'{{\"reason\": \"manual\"}}'.").format(line=exc.lineno, column=exc.colno, error=exc.msg)) from None
    if not isinstance(value, dict):
        raise InvalidArgumentError(_not_an_object_message(value))
    return value


def _not_an_object_message(value: Any) -> str:
    # One whole message per JSON type, because in Russian the participle agrees with the noun's gender.
    if isinstance(value, list):
        return _("Invalid --details value: expected a JSON object, got an array.")
    if isinstance(value, str):
        return _("Invalid --details value: expected a JSON object, got a string.")
    if isinstance(value, bool):
        return _("Invalid --details value: expected a JSON object, got a boolean.")
    if value is None:
        return _("Invalid --details value: expected a JSON object, got null.")
    return _("Invalid --details value: expected a JSON object, got a number.")


def log_event(connection: psycopg.Connection, schema: str, action: str, *, user_id: str | None,
              entity_type: str | None = None, entity_id: str | None = None, ip_address: str | None = None,
              details: dict[str, Any] | None = None) -> int:
    """Record one application event and return its id."""
    normalized = action.strip().upper()
    if not _ACTION.match(normalized):
        raise InvalidArgumentError(
            _("Invalid action {action!r}: use an upper-case word of letters, digits and underscores, "
              "such as LOGIN or PASSWORD_CHANGE.").format(action=action))
    if normalized in ROW_ACTIONS:
        raise InvalidArgumentError(
            _("Action {action} is reserved for row changes that triggers record; choose another name.")
            .format(action=normalized))
    if ip_address is not None:
        try:
            ipaddress.ip_interface(ip_address)
        except ValueError:
            raise InvalidArgumentError(
                _("Invalid --ip value {value!r}: use an IPv4 or IPv6 address.").format(value=ip_address)) from None
    if entity_id is not None and entity_type is None:
        raise InvalidArgumentError(_("--entity-id needs --entity-type as well."))
    require_installed(connection, schema)
    try:
        row = connection.execute(
            sql.SQL("SELECT {}.log_event(%s, %s, %s, %s, %s, %s)").format(sql.Identifier(schema)),
            (normalized, user_id, entity_type, entity_id, ip_address,
             Jsonb(details) if details is not None else None)).fetchone()
    except psycopg.Error as exc:
        raise DatabaseError(_("Could not record the event: {error}").format(error=first_line(str(exc)))) from None
    return row[0]
