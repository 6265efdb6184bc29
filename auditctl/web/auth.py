"""Login for the web page: the access token, signed session cookies and the failed-login limiter."""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import secrets
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgumentError
from ..i18n import _, ngettext

TOKEN_ENV = "AUDITCTL_WEB_TOKEN"
# Shorter tokens are easy to guess even at five tries per address and window.
MIN_TOKEN_LENGTH = 16


def load_token(token_file: Path | None, environ: dict[str, str] | None = None) -> str:
    """Read the access token from ``token_file``, else from AUDITCTL_WEB_TOKEN.

    The file must belong to the current user and be readable by that user
    only (mode 0600 or stricter), like an SSH key.
    """
    environ = os.environ if environ is None else environ
    if token_file is not None:
        try:
            info = token_file.stat()
        except OSError as exc:
            raise InvalidArgumentError(
                _("Cannot read the token file {path}: {error}.").format(path=token_file, error=exc.strerror)) from None
        if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise InvalidArgumentError(
                _("The token file {path} is readable by other users (mode {mode:o}); run chmod 600 {path}.")
                .format(path=token_file, mode=stat.S_IMODE(info.st_mode)))
        if info.st_uid != os.geteuid():
            raise InvalidArgumentError(
                _("The token file {path} belongs to another user; it must belong to the user that runs "
                  "auditctl serve.").format(path=token_file))
        token = token_file.read_text(encoding="utf-8").strip()
        origin = str(token_file)
    elif environ.get(TOKEN_ENV):
        token = environ[TOKEN_ENV].strip()
        origin = TOKEN_ENV
    else:
        raise InvalidArgumentError(
            _("No access token: set {variable} or pass --token-file with a file of mode 0600, "
              "or use --auth proxy behind a reverse proxy that checks passwords.").format(variable=TOKEN_ENV))
    if len(token) < MIN_TOKEN_LENGTH:
        raise InvalidArgumentError(
            ngettext("The access token from {origin} is shorter than {length} character; generate one with "
                     "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'.",
                     "The access token from {origin} is shorter than {length} characters; generate one with "
                     "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'.", MIN_TOKEN_LENGTH)
            .format(origin=origin, length=MIN_TOKEN_LENGTH))
    return token


def tokens_match(candidate: str, expected: str) -> bool:
    """Compare two tokens in constant time.

    Both sides are hashed first, so the time taken does not reveal the
    expected token's length either.
    """
    candidate_digest = hashlib.sha256(candidate.encode("utf-8")).digest()
    expected_digest = hashlib.sha256(expected.encode("utf-8")).digest()
    return hmac.compare_digest(candidate_digest, expected_digest)


class SessionState(enum.Enum):
    """Outcome of checking a session cookie."""

    VALID = "valid"
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass(frozen=True)
class Session:
    """A checked session cookie: its state and, when valid, the user id it was issued to."""

    state: SessionState
    user_id: str | None = None


class SessionSigner:
    """Issues and checks session cookies signed with HMAC-SHA256.

    The cookie carries its expiry time and user id, so the server keeps no
    session table. The key is random per process: restarting the server logs
    everybody out.
    """

    def __init__(self, lifetime_seconds: float, key: bytes | None = None):
        self.lifetime_seconds = lifetime_seconds
        self._key = key or secrets.token_bytes(32)

    def _signature(self, payload: str) -> str:
        digest = hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")

    def issue(self, user_id: str, now: float | None = None) -> str:
        """Return a cookie value for ``user_id`` that expires after the lifetime."""
        expires = int((now if now is not None else time.time()) + self.lifetime_seconds)
        user = base64.urlsafe_b64encode(user_id.encode("utf-8")).decode("ascii").rstrip("=")
        payload = f"v1.{expires}.{user}.{secrets.token_urlsafe(9)}"
        return f"{payload}.{self._signature(payload)}"

    def check(self, value: str | None, now: float | None = None) -> Session:
        """Verify a cookie value's signature and expiry."""
        if not value:
            return Session(SessionState.INVALID)
        payload, _dot, signature = value.rpartition(".")
        if not hmac.compare_digest(self._signature(payload).encode("ascii"), signature.encode("ascii", "replace")):
            return Session(SessionState.INVALID)
        version, expires, user, _nonce = payload.split(".")
        if version != "v1":
            return Session(SessionState.INVALID)
        if int(expires) <= (now if now is not None else time.time()):
            return Session(SessionState.EXPIRED)
        user_id = base64.urlsafe_b64decode(user + "=" * (-len(user) % 4)).decode("utf-8")
        return Session(SessionState.VALID, user_id)


class LoginLimiter:
    """Counts failed logins per client address and blocks an address after too many.

    An address is blocked once it has ``max_failures`` failures within
    ``window_seconds``, until the oldest of them leaves the window. At most
    ``max_addresses`` addresses are tracked; the least recently failing are
    forgotten first. Not thread-safe: the web app calls it from its event loop.
    """

    def __init__(self, max_failures: int = 5, window_seconds: float = 300.0, max_addresses: int = 10_000):
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> list[float]:
        times = [moment for moment in self._failures.get(address, []) if moment > now - self.window_seconds]
        if times:
            self._failures[address] = times
        else:
            self._failures.pop(address, None)
        return times

    def retry_after(self, address: str, now: float | None = None) -> int | None:
        """Return the seconds until ``address`` may try again, or None when it is not blocked."""
        now = time.monotonic() if now is None else now
        times = self._recent(address, now)
        if len(times) < self.max_failures:
            return None
        return max(1, int(times[-self.max_failures] + self.window_seconds - now) + 1)

    def record_failure(self, address: str, now: float | None = None) -> None:
        """Count one failed login of ``address``."""
        now = time.monotonic() if now is None else now
        times = self._recent(address, now)
        times.append(now)
        self._failures[address] = times
        self._failures.move_to_end(address)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)

    def reset(self, address: str) -> None:
        """Forget the failures of ``address`` after it logged in."""
        self._failures.pop(address, None)
