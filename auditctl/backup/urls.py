"""Checks and safe display of the URLs in the backup settings: the --from-url endpoint, heartbeat and storage."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ..i18n import _


def public_url(url: str) -> str:
    """Return the URL without user name, password, query and fragment, for messages and logs.

    Any of those parts can carry a secret, such as a token in the query string.
    """
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment=""))


def is_http_url(url: str) -> bool:
    """Tell whether ``url`` is an http:// or https:// URL with a host."""
    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def has_credentials(url: str) -> bool:
    """Tell whether ``url`` carries a user name or password before its host."""
    return "@" in urlsplit(url).netloc


def credentials_message(origin: str) -> str:
    """Word the error for credentials in the URL of ``origin`` (an option or a config key), with what to use instead."""
    return _("Credentials in the URL of {origin} are not supported: send them as a header line through "
             "--header-env NAME or --header-file FILE (header_env or header_file in [backup.source]), such as "
             "'Authorization: Basic …'.").format(origin=origin)
