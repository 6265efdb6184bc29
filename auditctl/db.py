"""Database connections: where the DSN comes from, and the server checks.

The DSN is taken from ``--dsn``, else ``AUDITCTL_DSN``, else ``DATABASE_URL``,
else left empty so that libpq reads its ``PG*`` variables and ``~/.pgpass``.
A source that is given but empty is an error rather than a silent fallback.
A password therefore never needs to be on the command line.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo

from .errors import AuditctlWarning, ConnectionFailedError, InvalidArgumentError, ServerVersionError
from .jsonvalues import keep_numbers_exact
from .i18n import _

logger = logging.getLogger(__name__)

# CREATE OR REPLACE TRIGGER first appeared in PostgreSQL 14.
MIN_SERVER_VERSION = 140000

# Query parameters that Prisma adds to DATABASE_URL and libpq rejects.
PRISMA_ONLY_PARAMETERS = frozenset({
    "schema", "connection_limit", "pool_timeout", "socket_timeout", "pgbouncer",
    "statement_cache_size", "sslaccept", "sslidentity", "connect_timeout_ms",
})

# Origins (such as "--dsn") whose DSN this process has already warned about for carrying a password.
_warned_password_origins: set[str] = set()


# The origin of an empty DSN, with which libpq reads its PG* variables and ~/.pgpass.
PG_VARIABLES_ORIGIN = "PG* environment variables"

# The environment variables read for the DSN when no option gives one, in order.
_DSN_VARIABLES = ("AUDITCTL_DSN", "DATABASE_URL")


@dataclass(frozen=True)
class DsnSource:
    """A DSN and the place it was read from, for messages."""

    dsn: str
    origin: str


def resolve_dsn(dsn_option: str | None, option_origin: str = "--dsn") -> DsnSource:
    """Pick the DSN from the option or the environment, in documented order.

    ``option_origin`` names where ``dsn_option`` came from, for messages
    (another flag such as ``--target-dsn``, or a config file). Raises
    InvalidArgumentError when the chosen source is set but empty, which is
    most likely a script's mistake.
    """
    # An empty DSN makes libpq read its PG* variables, which may name another database, so it is an error.
    if dsn_option is not None:
        if not dsn_option.strip():
            raise InvalidArgumentError(
                _("The DSN from {origin} is empty; give a libpq connection string or a postgresql:// URL, or leave "
                  "it out.").format(origin=option_origin))
        check_url(dsn_option, option_origin)
        return DsnSource(strip_prisma_parameters(dsn_option), option_origin)
    for name in _DSN_VARIABLES:
        if name not in os.environ:
            continue
        if not os.environ[name].strip():
            raise InvalidArgumentError(
                _("{name} is set but empty; set it to a libpq connection string or a postgresql:// URL, or unset "
                  "it.").format(name=name))
        check_url(os.environ[name], name)
        return DsnSource(strip_prisma_parameters(os.environ[name]), name)
    return DsnSource("", PG_VARIABLES_ORIGIN)


_URL_PREFIXES = ("postgres://", "postgresql://")
# A % that does not start a percent-encoded byte, or that encodes a zero byte: libpq rejects both and
# quotes the whole value in its message.
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")


def check_url(dsn: str, origin: str) -> None:
    """Reject a postgresql:// URL that libpq would read differently from what was meant.

    libpq ends the user name and password at the first @, and the host part
    at the first /. A raw @ or / in a password therefore turns the rest of it
    into the host name, port or database name, which messages would show.
    Only the @ that ends the user part may be raw. A stray % makes
    libpq quote the whole value, the password included. Neither error
    quotes the URL.
    """
    if not dsn.startswith(_URL_PREFIXES):
        return
    rest = dsn.split("://", 1)[1]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if rest.count("@") > (1 if "@" in authority else 0):
        raise InvalidArgumentError(
            _("The postgresql:// URL from {origin} is malformed: it has an @ other than the one that ends the user "
              "name and password, so libpq could read part of the password as the host, port or database. Write "
              "every other @ as %40, and a /, ? or # in the user name or password as %2F, %3F or %23.")
            .format(origin=origin))
    if _BAD_PERCENT.search(dsn):
        raise InvalidArgumentError(
            _("The postgresql:// URL from {origin} is malformed: it has a % that is not followed by two hexadecimal "
              "digits, or it encodes a zero byte as %00. Write a % in the user name, password or another value as "
              "%25.").format(origin=origin))


def strip_prisma_parameters(dsn: str) -> str:
    """Drop Prisma's own URL parameters (``?schema=public`` and the like).

    libpq refuses unknown URI parameters, and Prisma's DATABASE_URL usually
    carries some, so the same variable can serve the app and auditctl.
    """
    if not dsn.startswith(_URL_PREFIXES):
        return dsn
    parts = urlsplit(dsn)
    if not parts.query:
        return dsn
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k not in PRISMA_ONLY_PARAMETERS]
    return urlunsplit(parts._replace(query=urlencode(kept)))


def describe_dsn(dsn: str) -> str:
    """Describe a DSN for messages and logs, without its password."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return _("an unparsable DSN")
    shown = {key: params[key] for key in ("host", "port", "dbname", "user") if params.get(key)}
    return " ".join(f"{key}={value}" for key, value in shown.items()) or _("libpq defaults")


def dsn_has_password(dsn: str) -> bool:
    """Tell whether a DSN carries a password in its text."""
    try:
        return bool(conninfo.conninfo_to_dict(dsn).get("password"))
    except psycopg.ProgrammingError:
        return False


def connect(dsn_option: str | None, *, autocommit: bool = True, option_origin: str = "--dsn") -> psycopg.Connection:
    """Open a connection and check that the server is new enough.

    Connections are in autocommit mode unless asked otherwise; the library
    opens explicit transactions where it needs them.
    """
    source = resolve_dsn(dsn_option, option_origin)
    if dsn_option and dsn_has_password(source.dsn) and source.origin not in _warned_password_origins:
        # One command may connect several times, such as a backup and its audit event; one warning is enough.
        _warned_password_origins.add(source.origin)
        logger.debug("the DSN from %s contains a password", source.origin)
        warnings.warn(AuditctlWarning(
            _("The DSN from {origin} contains a password; keep it in AUDITCTL_DSN, PGPASSWORD or ~/.pgpass "
              "instead.").format(origin=source.origin)), stacklevel=2)
    params = parse_dsn(source)
    params.setdefault("connect_timeout", 10)
    params.setdefault("application_name", "auditctl")
    logger.debug("connecting to %s (DSN from %s)", describe_dsn(source.dsn), source.origin)
    try:
        connection = psycopg.connect(autocommit=autocommit, **params)
    except psycopg.OperationalError as exc:
        raise ConnectionFailedError(
            _("Could not connect to {target} (DSN from {origin}): {error}. {hint}")
            .format(target=describe_dsn(source.dsn), origin=source.origin, error=first_line(str(exc)),
                    hint=connection_hint(source.origin))
        ) from None
    check_server_version(connection)
    keep_numbers_exact(connection)
    return connection


# A password keyword or URL parameter, or a password in a URL's user part.
_PASSWORD_TEXT = re.compile(r"password\s*=|^postgres(ql)?://[^@/?#]*:[^@]*@", re.IGNORECASE)


def parse_dsn(source: DsnSource) -> dict[str, str]:
    """Parse a DSN into libpq's parameters; raise InvalidArgumentError with libpq's reason if it cannot be parsed.

    libpq's reason quotes the words it stumbled on. In a DSN that contains a
    password, such as one with a space in an unquoted password, those words
    may be part of the password, so the reason is left out there.
    """
    try:
        return conninfo.conninfo_to_dict(source.dsn)
    except psycopg.ProgrammingError as exc:
        if _PASSWORD_TEXT.search(source.dsn):
            raise InvalidArgumentError(
                _("Invalid DSN from {origin}: libpq cannot parse it, and its reason is not shown because it may "
                  "quote part of the password. Put a value that has spaces or quotes in single quotes, with \\' "
                  "for a quote and \\\\ for a backslash, or keep the password in ~/.pgpass.")
                .format(origin=source.origin)) from None
        raise InvalidArgumentError(
            _("Invalid DSN from {origin}: {error}. Use a libpq connection string or a postgresql:// URL.")
            .format(origin=source.origin, error=first_line(str(exc)))) from None


def connection_hint(origin: str) -> str:
    """Say where to correct a DSN that came from ``origin``: an option, a variable or a config file."""
    if origin == PG_VARIABLES_ORIGIN:
        return _("Check the PG* variables and ~/.pgpass, or pass --dsn.")
    return _("Check the DSN in {origin}.").format(origin=origin)


def check_server_version(connection: psycopg.Connection) -> None:
    """Raise ServerVersionError on servers older than MIN_SERVER_VERSION."""
    version = connection.info.server_version
    if version < MIN_SERVER_VERSION:
        connection.close()
        raise ServerVersionError(
            _("PostgreSQL {found} is not supported: auditctl needs PostgreSQL 14 or later.")
            .format(found=format_server_version(version)))


def format_server_version(version: int) -> str:
    """Turn libpq's integer version (160002) into text ("16.2")."""
    return f"{version // 10000}.{version % 100}"


def first_line(text: str) -> str:
    """Return the first non-empty line of a (server) message, stripped."""
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return text.strip()
