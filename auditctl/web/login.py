"""Viewer identity: the token login form, proxy-checked users, sessions and the events they record."""

from __future__ import annotations

import logging
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..errors import AuditctlError
from ..i18n import _, ngettext
from .auth import SessionState, tokens_match
from .database import record_event
from .rendering import WebError, render

logger = logging.getLogger(__name__)

SESSION_COOKIE = "__Host-auditctl_session"
# Maximum size of one part of a multipart login form, in bytes. Real tokens are far shorter.
MAX_TOKEN_FORM_LENGTH = 4096


class LoginRequired(Exception):
    """The request has no valid session, so the handler shows or redirects to the login form."""

    def __init__(self, state: SessionState | None):
        super().__init__(state)
        self.state = state


def safe_next(target: str | None) -> str:
    """Return ``target`` when it is a path on this site, else ``/``, so that logins cannot redirect elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(ord(character) < 0x20 for character in target):
        return "/"
    return target


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def authenticate(request: Request) -> str:
    """Return the logged-in user id and store it in ``request.state.user``, or raise LoginRequired.

    In token mode the signed session cookie names the user. In proxy mode the
    reverse proxy has checked the password and names the user in a header.
    The first request of each proxy user records a LOGIN and gets a session
    cookie, so that later requests do not record it again.
    """
    config = request.app.state.config
    signer = request.app.state.signer
    session = signer.check(request.cookies.get(SESSION_COOKIE))
    if config.auth != "proxy":
        if session.state is not SessionState.VALID:
            raise LoginRequired(session.state if SESSION_COOKIE in request.cookies else None)
        request.state.user = session.user_id
        return session.user_id

    user = request.headers.get(config.proxy_user_header, "").strip()
    if not user:
        raise WebError(401, _("Login required"),
                       _("The reverse proxy did not send the {header} header with the user name. "
                         "Check the proxy's auth_basic and proxy_set_header settings.")
                       .format(header=config.proxy_user_header))
    if session.state is not SessionState.VALID or session.user_id != user:
        await _record_login(request, user, via="proxy")
        request.state.new_session = signer.issue(user)
    request.state.user = user
    return user


def apply_session(request: Request, response: Response) -> Response:
    """Set the session cookie that authenticate() issued for this request, if any."""
    value = getattr(request.state, "new_session", None)
    if value:
        config = request.app.state.config
        response.set_cookie(SESSION_COOKIE, value, max_age=int(config.session_seconds), path="/", secure=True,
                            httponly=True, samesite="strict")
    return response


async def _record_login(request: Request, user: str, via: str) -> None:
    config = request.app.state.config
    address = client_address(request)
    try:
        await run_in_threadpool(record_event, config.dsn, config.schema, "LOGIN", user_id=user,
                                client=address, details={"via": via})
    except AuditctlError as exc:
        logger.error("login of %s from %s rejected because recording it failed: %s", user, address, exc)
        raise WebError(503, _("Login not recorded"),
                       _("The login could not be written to the audit log, so it was refused: {error}")
                       .format(error=exc)) from None


def login_required_response(request: Request, exc: LoginRequired) -> Response:
    """Redirect a first visit to the login form; tell a viewer with a bad cookie why they must log in again."""
    next_path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if exc.state is None:
        return RedirectResponse(f"/login?next={quote(next_path, safe='')}", status_code=303)
    if exc.state is SessionState.EXPIRED:
        message = _("Your session has expired. Log in again.")
    else:
        message = _("Your session is not valid (the server may have restarted). Log in again.")
    response = render(request, "login.html", {"error": message, "next": next_path}, status_code=401)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


async def login_form(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    if request.app.state.config.auth == "proxy":
        return RedirectResponse(next_path, status_code=303)
    session = request.app.state.signer.check(request.cookies.get(SESSION_COOKIE))
    if session.state is SessionState.VALID:
        return RedirectResponse(next_path, status_code=303)
    return render(request, "login.html", {"error": None, "next": next_path})


async def _record_failure(request: Request, reason: str) -> None:
    config = request.app.state.config
    try:
        await run_in_threadpool(record_event, config.dsn, config.schema, "LOGIN_FAILED", user_id=None,
                                client=client_address(request), details={"reason": reason, "via": "token"})
    except AuditctlError as exc:
        logger.error("could not record a failed login from %s: %s", client_address(request), exc)


async def login_submit(request: Request) -> Response:
    """Check the token, record LOGIN or LOGIN_FAILED, and set the session cookie on success."""
    config = request.app.state.config
    limiter = request.app.state.limiter
    address = client_address(request) or "unknown"
    form = await request.form(max_files=0, max_fields=10, max_part_size=MAX_TOKEN_FORM_LENGTH)
    next_path = safe_next(str(form.get("next") or "/"))

    retry_after = limiter.retry_after(address)
    if retry_after is not None:
        logger.warning("login from %s rejected: too many failed logins", address)
        response = render(request, "login.html", {
            "error": ngettext("Too many failed logins from your address. Try again in {seconds} second.",
                              "Too many failed logins from your address. Try again in {seconds} seconds.",
                              retry_after).format(seconds=retry_after), "next": next_path}, status_code=429)
        response.headers["retry-after"] = str(retry_after)
        return response

    token = str(form.get("token") or "")
    if not token.strip():
        limiter.record_failure(address)
        await _record_failure(request, "missing token")
        return render(request, "login.html", {"error": _("Enter the access token."), "next": next_path},
                      status_code=400)
    if not tokens_match(token.strip(), config.token):
        limiter.record_failure(address)
        logger.warning("failed login from %s: wrong token", address)
        await _record_failure(request, "wrong token")
        return render(request, "login.html", {"error": _("Wrong access token."), "next": next_path},
                      status_code=401)

    limiter.reset(address)
    await _record_login(request, config.token_user, via="token")
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(SESSION_COOKIE, request.app.state.signer.issue(config.token_user),
                        max_age=int(config.session_seconds), path="/", secure=True, httponly=True,
                        samesite="strict")
    return response


async def logout(request: Request) -> Response:
    """Forget the session cookie and record LOGOUT."""
    config = request.app.state.config
    session = request.app.state.signer.check(request.cookies.get(SESSION_COOKIE))
    if session.state is SessionState.VALID:
        try:
            await run_in_threadpool(record_event, config.dsn, config.schema, "LOGOUT", user_id=session.user_id,
                                    client=client_address(request), details={"via": config.auth})
        except AuditctlError as exc:
            logger.error("could not record a logout from %s: %s", client_address(request), exc)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response
