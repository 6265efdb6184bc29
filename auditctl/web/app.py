"""The ASGI application of ``auditctl serve``: routes, middleware and error pages."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..audit.browse import CursorNotFoundError
from ..db import first_line
from ..errors import AuditctlError, ConnectionFailedError, InvalidArgumentError, NotInstalledError, TableNotFoundError
from ..i18n import _
from . import export, login, pages
from .auth import LoginLimiter, SessionSigner
from .middleware import SecurityHeadersMiddleware, ViewerMiddleware
from .rendering import STATIC_DIR, WebError, error_response

logger = logging.getLogger(__name__)


@dataclass
class WebConfig:
    """Settings of one web server."""

    dsn: str | None
    schema: str = "audit"
    # "token": the login form checks an access token; "proxy": a reverse proxy
    # checks passwords and names the user in ``proxy_user_header``.
    auth: str = "token"
    token: str = ""
    # User id recorded in the log for logins and exports with the token.
    token_user: str = "auditctl-web"
    proxy_user_header: str = "X-Remote-User"
    session_seconds: float = 8 * 3600
    page_size: int = 50
    max_failed_logins: int = 5
    failed_login_window_seconds: float = 300.0


async def _web_error(request: Request, exc: Exception) -> Response:
    return error_response(request, exc)


async def _login_required(request: Request, exc: Exception) -> Response:
    return login.login_required_response(request, exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    titles = {404: _("Page not found"), 405: _("Method not allowed")}
    messages = {404: _("There is no page at {path}.").format(path=request.url.path),
                405: _("This page does not accept {method} requests.").format(method=request.method)}
    title = titles.get(exc.status_code, _("Request failed"))
    message = messages.get(exc.status_code, str(exc.detail))
    return error_response(request, WebError(exc.status_code, title, message, dict(exc.headers or {})))


async def _auditctl_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, CursorNotFoundError):
        status, title = 404, _("Page not found")
    elif isinstance(exc, (InvalidArgumentError, TableNotFoundError)):
        status, title = 400, _("Invalid filter")
    elif isinstance(exc, ConnectionFailedError):
        # The connection details (host, port, role, where the DSN came from) are for the operator, not every viewer.
        logger.error("%s", exc)
        return error_response(request, WebError(503, _("Audit log unavailable"), _(
            "The page could not connect to the database of the audit log. Try again later; the server's log "
            "says why.")))
    elif isinstance(exc, NotInstalledError):
        status, title = 503, _("Audit log unavailable")
        logger.error("%s", exc)
    else:
        status, title = 500, _("Request failed")
        logger.error("%s", exc)
    return error_response(request, WebError(status, title, str(exc)))


async def _database_error(request: Request, exc: Exception) -> Response:
    logger.error("database error on %s: %s", request.url.path, first_line(str(exc)))
    return error_response(request, WebError(
        503, _("Audit log unavailable"),
        _("The database reported an error: {error}. Try again; if it persists, check the server's log.")
        .format(error=first_line(str(exc)))))


class UnexpectedErrorMiddleware:
    """Shows a plain 500 page for any exception that no handler took, and logs the traceback.

    It sits inside the security and language middleware, so the page gets
    their headers and language; Starlette's own handler for Exception sits
    outside all middleware.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception:
            # The traceback goes to the server's log only, never to the page.
            logger.exception("unexpected error on %s", scope.get("path"))
            if started:
                # NOTE: a streamed export that fails midway ends the connection, so
                # the viewer gets a cut-off file without an error page.
                raise
            request = Request(scope, receive)
            response = error_response(request, WebError(
                500, _("Internal error"),
                _("The page failed because of an internal error; the server's log has details.")))
            await response(scope, receive, send)


def create_app(config: WebConfig) -> Starlette:
    """Build the web application for one database and audit schema."""
    if config.auth not in ("token", "proxy"):
        raise InvalidArgumentError(_("Invalid --auth {value!r}: use token or proxy.").format(value=config.auth))
    routes = [
        Route("/", pages.events_page),
        Route("/events/{event_id}", pages.event_page),
        Route("/history", pages.history_page),
        Route("/export", export.export_events),
        Route("/login", login.login_form, methods=["GET"]),
        Route("/login", login.login_submit, methods=["POST"]),
        Route("/logout", login.logout, methods=["POST"]),
        Route("/preferences", pages.preferences_page),
        Route("/preferences/apply", pages.apply_preferences),
        Mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeadersMiddleware), Middleware(ViewerMiddleware),
                    Middleware(UnexpectedErrorMiddleware)],
        exception_handlers={
            WebError: _web_error,
            login.LoginRequired: _login_required,
            HTTPException: _http_error,
            AuditctlError: _auditctl_error,
            psycopg.Error: _database_error,
        },
    )
    app.state.config = config
    app.state.signer = SessionSigner(config.session_seconds)
    app.state.limiter = LoginLimiter(config.max_failed_logins, config.failed_login_window_seconds)
    return app
