"""Backups taken from an application's own HTTP endpoint that returns the data as JSON.

The response must be a 2xx with a body that is complete (as long as its
Content-Length header states) and parses as JSON; anything else is a failed backup.
Redirects are not followed: the secret header goes to the configured URL only.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from ..errors import BackupError, ConfigError, InvalidArgumentError
from ..files import os_reason
from ..i18n import _
from .dump import BackupResult, _open_exclusive, _removed_on_failure, require_folder, unused_stem
from .encryption import AGE_EXTENSION, Encryption
from .identity import url_identity
from .manifest import Manifest, backup_name, fsync_folder, utc_now, write_sidecars
from .streams import HashingWriter, copy_stream
from .urls import credentials_message, has_credentials, is_http_url, public_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class UrlSource:
    """The endpoint to call and where its secret header comes from."""

    url: str
    header_env: str | None = None
    header_file: Path | None = None
    timeout_seconds: float = 300.0
    max_body_bytes: int = 512 * 1024 * 1024

    @property
    def name(self) -> str:
        """The label used as the manifest's database and in file names: the URL's host."""
        return urlsplit(self.url).hostname or "url"


def read_header(source: UrlSource) -> tuple[str, str] | None:
    """Read the ``Name: value`` header line from the environment or a file only its owner can read."""
    if source.header_env:
        line = os.environ.get(source.header_env)
        if not line:
            raise ConfigError(_("Environment variable {name} (header_env) is not set or empty.").format(
                name=source.header_env))
    elif source.header_file:
        try:
            if source.header_file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(_("Header file {path} is readable by other users; run `chmod 600 {path}`.")
                                  .format(path=source.header_file))
            line = source.header_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(_("Cannot read header file {path}: {error}").format(
                path=source.header_file, error=exc.strerror)) from None
    else:
        return None
    name, separator, value = line.partition(":")
    if not separator or not name.strip() or "\n" in line:
        raise ConfigError(_("The header must be one line of the form 'Name: value', such as "
                            "'Authorization: Bearer TOKEN'."))
    return name.strip(), value.strip()


class _RejectRedirects(urllib.request.HTTPRedirectHandler):
    """Turn every 3xx response into an HTTPError instead of following it.

    urllib would repeat the request at the new address with the same
    headers, the secret one included, and turn a POST into a GET.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def check_endpoint_url(url: str) -> None:
    """Raise InvalidArgumentError unless ``url`` is an http(s) URL without credentials in it."""
    if not is_http_url(url):
        raise InvalidArgumentError(_("Invalid --from-url {url!r}: use an http:// or https:// URL.").format(
            url=public_url(url)))
    if has_credentials(url):
        raise InvalidArgumentError(credentials_message("--from-url"))


def fetch_body(source: UrlSource) -> bytes:
    """Fetch the endpoint and return its body after checking status, length and JSON syntax."""
    check_endpoint_url(source.url)
    request = urllib.request.Request(source.url, method="POST", headers={"Accept": "application/json"})
    header = read_header(source)
    if header is not None:
        request.add_header(*header)

    display_url = public_url(source.url)
    opener = urllib.request.build_opener(_RejectRedirects)
    try:
        with opener.open(request, timeout=source.timeout_seconds) as response:
            status = response.status
            expected = response.headers.get("Content-Length")
            body = response.read(source.max_body_bytes + 1)
    except urllib.error.HTTPError as exc:
        if 300 <= exc.code < 400:
            raise BackupError(redirect_message(display_url, exc.code, source.url,
                                               exc.headers.get("Location"))) from None
        raise BackupError(_("{url} returned HTTP {status} {reason}; no backup was saved.").format(
            url=display_url, status=exc.code, reason=exc.reason)) from None
    except http.client.IncompleteRead as exc:
        raise BackupError(_("The response of {url} is truncated: {got} bytes, then the connection closed.").format(
            url=display_url, got=len(exc.partial))) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, OSError):
            reason = os_reason(reason)
        raise BackupError(_("Request to {url} failed: {error}").format(url=display_url, error=reason)) from None

    if not 200 <= status < 300:
        raise BackupError(_("{url} returned HTTP {status}; no backup was saved.").format(url=display_url, status=status))
    if len(body) > source.max_body_bytes:
        raise BackupError(_("The response of {url} is larger than max_body_mb; raise it in [backup.source].")
                          .format(url=display_url))

    if expected is not None and expected.isdigit() and int(expected) != len(body):
        raise BackupError(_("The response of {url} is truncated: {got} of {expected} bytes.").format(
            url=display_url, got=len(body), expected=expected))

    try:
        json.loads(body)
    except ValueError as exc:
        raise BackupError(_("The response of {url} is not complete JSON ({error}); no backup was saved.").format(
            url=display_url, error=describe_json_error(exc))) from None
    return body


def describe_json_error(error: ValueError) -> str:
    """Word the error of ``json.loads`` in the active language, with where in the text it stopped.

    The json module's own messages ("Expecting value: line 1 column 1 (char 0)") are English only.
    """
    if not isinstance(error, json.JSONDecodeError):
        # json.loads decodes bytes as UTF-8, UTF-16 or UTF-32 first, and raises UnicodeDecodeError.
        return _("the body is not UTF-8, UTF-16 or UTF-32 text")
    if not error.doc[error.pos:].strip():
        return _("the text ends early, at line {line}, column {column}").format(
            line=error.lineno, column=error.colno)
    if error.msg == "Extra data":
        return _("more text follows the JSON value at line {line}, column {column}").format(
            line=error.lineno, column=error.colno)
    return _("invalid JSON at line {line}, column {column}").format(line=error.lineno, column=error.colno)


def redirect_message(display_url: str, status: int, request_url: str, location: str | None) -> str:
    """Word a rejected redirect: where it pointed, without credentials or query, and what to configure."""
    target = public_url(urljoin(request_url, location)) if location else _("no Location header")
    return _("{url} returned HTTP {status}, a redirect to {location}; no backup was saved. auditctl does not follow "
             "redirects, so that the header reaches no other address. Set --from-url (or url in [backup.source]) to "
             "the final URL.").format(url=display_url, status=status, location=target)


def backup_from_url(source: UrlSource, folder: Path, encryption: Encryption | None) -> BackupResult:
    """Fetch the JSON backup and save it like a dump: temporary name, fsync, rename, checksum, manifest.

    NOTE: the body is held in memory (up to max_body_bytes) because it must
    parse as complete JSON before anything is written, and with encryption on
    the plaintext must not touch the disk.
    """
    require_folder(folder)
    started = utc_now()
    body = fetch_body(source)
    extension = ".json" + (AGE_EXTENSION if encryption else "")
    final = folder / (unused_stem(folder, backup_name(source.name, started, ""), extension) + extension)
    temporary = folder / f".{final.name}.partial"
    with _removed_on_failure(temporary, final):
        with _open_exclusive(temporary) as handle:
            writer = HashingWriter(handle)
            if encryption is not None:
                encryption.encrypt(io.BytesIO(body), writer)
            else:
                copy_stream(io.BytesIO(body), writer)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.rename(final)
        fsync_folder(folder)
        manifest = Manifest(database=source.name, file=final.name, format="json", size=writer.size,
                            sha256=writer.digest.hexdigest(), started_at=started.isoformat(),
                            finished_at=utc_now().isoformat(), encrypted=encryption is not None, source="url",
                            source_identity=url_identity(source.url))
        write_sidecars(final, manifest)
    logger.info("saved the response of %s as %s (%d bytes)", source.name, final, writer.size)
    return BackupResult(final, manifest)
