"""Checks and safe display of the URLs in the backup settings: the --from-url endpoint, heartbeat and storage."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import InvalidArgumentError
from ..i18n import _

# The variables that botocore reads an S3 endpoint from when none is passed, the service's own first.
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")


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


def check_endpoint_url(url: str | None, origin: str) -> None:
    """Raise InvalidArgumentError unless ``url``, an S3 endpoint from ``origin`` (an option or a variable), is usable.

    None stands for no endpoint; then the variables that botocore would read
    instead are checked, each named in the error.
    """
    if url is None:
        for name in ENDPOINT_VARIABLES:
            if os.environ.get(name):
                check_endpoint_url(os.environ[name], name)
                return
        return
    if not is_http_url(url):
        raise InvalidArgumentError(_("Invalid S3 endpoint URL {url!r} from {origin}: expected an http:// or https:// "
                                     "URL such as https://s3.example.net.").format(url=public_url(url), origin=origin))


def make_s3_client(create: Callable[..., Any], endpoint_url: str | None, origin: str, **options: Any) -> Any:
    """Check the endpoint, then call ``create("s3", endpoint_url=..., **options)``, a boto3 client factory.

    botocore raises a bare ValueError for an endpoint it cannot use, such as
    one from ``endpoint_url`` in ~/.aws/config, which becomes one line here.
    """
    check_endpoint_url(endpoint_url, origin)
    try:
        return create("s3", endpoint_url=endpoint_url, **options)
    except ValueError as exc:
        raise InvalidArgumentError(_("Cannot use the S3 endpoint: {error}. Check endpoint_url in the AWS config "
                                     "files and the AWS_ENDPOINT_URL variables.").format(error=exc)) from None
