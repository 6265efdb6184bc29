"""Rules for backup setting values beyond their TOML type: choices, ranges, addresses, URLs, DSNs and keys.

``load_settings`` applies them to every value of the config file and to
every flag the user typed, so that a bad value stops the command with exit
code 2 before it locks, dumps or sends anything.
"""

from __future__ import annotations

import email.errors
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address
from typing import Any

import psycopg
from psycopg import conninfo

from ..db import strip_prisma_parameters
from ..errors import ConfigError
from ..i18n import _
from .dump import FORMATS
from .encryption import parse_recipient
from .urls import is_http_url, public_url

SMTP_SECURITY = ("tls", "starttls", "none")
MAIL_TRANSPORTS = ("smtp", "sendmail")
# SigV4 presigned links expire after 7 days at the most.
MAX_LINK_EXPIRES_SECONDS = 7 * 24 * 3600

# Flags that set a settings field, for messages about a typed value.
FLAG_NAMES = {"dump_format": "--format", "jobs": "--jobs", "compress": "--compress", "dsn": "--dsn",
              "from_url": "--from-url", "recipients": "--recipient", "to": "--mail-to"}


def is_address(text: str) -> bool:
    """Tell whether ``text`` is one plain e-mail address (``local@domain``), as the stdlib email parser reads it."""
    try:
        address = Address(addr_spec=text)
    except (ValueError, IndexError, email.errors.MessageError):
        # IndexError: Python 3.11's parser fails that way on "user@" with nothing after the @.
        return False
    return bool(address.username and address.domain) and address.addr_spec == text


def is_dsn(text: str) -> bool:
    """Tell whether libpq can parse ``text`` as a connection string or URL, after removing Prisma's parameters."""
    try:
        conninfo.conninfo_to_dict(strip_prisma_parameters(text))
    except psycopg.ProgrammingError:
        return False
    return True


def is_recipient(text: str) -> bool:
    try:
        parse_recipient(text)
    except ConfigError:
        return False
    return True


def _as_written(value: Any) -> Any:
    return value


def _withheld(value: Any) -> None:
    return None


@dataclass(frozen=True)
class _Rule:
    """The values one settings field accepts, and the form of a value that an error quotes (None for a secret)."""

    accepts: Callable[[Any], bool]
    expected: Callable[[], str]
    display: Callable[[Any], Any] = _as_written


@dataclass(frozen=True)
class InvalidValue:
    """A value that breaks its rule: what the rule expects, and the value to quote (None when it may be secret)."""

    expected: str
    quoted_value: Any


_URL_RULE = _Rule(is_http_url, lambda: _("an http:// or https:// URL"), lambda value: public_url(str(value)))

_RULES: dict[str, _Rule] = {
    "dump_format": _Rule(lambda value: value in FORMATS, lambda: _("custom or directory")),
    "jobs": _Rule(lambda value: value >= 1, lambda: _("a whole number of 1 or more")),
    "compress": _Rule(lambda value: 0 <= value <= 9, lambda: _("a whole number from 0 to 9")),
    "dsn": _Rule(is_dsn, lambda: _("a libpq connection string or a postgresql:// URL"), _withheld),
    "recipients": _Rule(is_recipient, lambda: _("an age1… public key or an SSH public key"),
                        lambda value: str(value)[:80]),
    "from_url": _URL_RULE,
    "heartbeat_url": _URL_RULE,
    "endpoint_url": _URL_RULE,
    "to": _Rule(is_address, lambda: _("e-mail addresses such as ops@example.com")),
    "sender": _Rule(is_address, lambda: _("an e-mail address such as backups@example.com")),
    "transport": _Rule(lambda value: value in MAIL_TRANSPORTS, lambda: _("smtp or sendmail")),
    "security": _Rule(lambda value: value in SMTP_SECURITY, lambda: _("tls, starttls or none")),
    "port": _Rule(lambda value: 1 <= value <= 65535, lambda: _("a port number from 1 to 65535")),
    "link_expires_seconds": _Rule(lambda value: value <= MAX_LINK_EXPIRES_SECONDS,
                                  lambda: _("a number of hours above 0 and at most 168 (7 days)")),
}


def describe_valid(field: str) -> str | None:
    """Describe the values a settings field accepts, or return None when its type alone decides."""
    rule = _RULES.get(field)
    return rule.expected() if rule is not None else None


def find_invalid(field: str, value: Any, written: Any = None) -> InvalidValue | None:
    """Check the converted ``value`` of a settings field against its rule.

    ``written`` is the value as the user wrote it, when conversion changed
    it (hours into seconds). In a list, the first invalid item is quoted.
    """
    rule = _RULES.get(field)
    if rule is None:
        return None
    is_list = isinstance(value, tuple | list)
    for item in value if is_list else [value]:
        if not rule.accepts(item):
            quoted = item if is_list or written is None else written
            return InvalidValue(rule.expected(), rule.display(quoted))
    return None
