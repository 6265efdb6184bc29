"""ASGI middleware of the web page: security headers, and the viewer's language and time zone."""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..i18n import LANGUAGES, use_language

LANGUAGE_COOKIE = "auditctl_lang"
TIME_ZONE_COOKIE = "auditctl_tz"

# Everything the page loads comes from its own origin: no inline script or
# style, no frames, and forms post only back to the page.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


class SecurityHeadersMiddleware:
    """Adds the security headers to every response, and forbids caching anything but static files."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if not scope["path"].startswith("/static/"):
                    headers["cache-control"] = "no-store"
                if scope.get("scheme") == "https":
                    headers["strict-transport-security"] = "max-age=31536000"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _cookies(scope: Scope) -> dict[str, str]:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                parsed = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                return {}
            return {key: morsel.value for key, morsel in parsed.items()}
    return {}


def _header(scope: Scope, header_name: bytes) -> str:
    for name, value in scope.get("headers", []):
        if name == header_name:
            return value.decode("latin-1")
    return ""


def negotiate_language(cookie: str | None, accept_language: str) -> str:
    """Pick the page language: the switch's cookie, else the best match of Accept-Language, else English."""
    if cookie in LANGUAGES:
        return cookie
    choices = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _semicolon, parameters = part.strip().partition(";")
        quality = 1.0
        if parameters.strip().startswith("q="):
            try:
                quality = float(parameters.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            choices.append((-quality, position, primary))
    return min(choices)[2] if choices else "en"


def viewer_time_zone(cookie: str | None) -> ZoneInfo:
    """Return the time zone from the page's cookie, or UTC when it is missing or unknown."""
    if cookie:
        try:
            return ZoneInfo(cookie)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


class ViewerMiddleware:
    """Stores the viewer's language and time zone in ``request.state`` and translates the request into it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        language = negotiate_language(cookies.get(LANGUAGE_COOKIE), _header(scope, b"accept-language"))
        state = scope.setdefault("state", {})
        state["language"] = language
        state["time_zone"] = viewer_time_zone(cookies.get(TIME_ZONE_COOKIE))
        with use_language(language):
            await self.app(scope, receive, send)
