"""Templates of the web page and the error that renders as a page."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from .. import __version__
from ..i18n import gettext, ngettext
from . import formatting

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"


class WebError(Exception):
    """An error shown to the viewer as a page with this HTTP status, a title and a message."""

    def __init__(self, status_code: int, title: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.title = title
        self.message = message
        self.headers = headers or {}


@cache
def templates() -> Jinja2Templates:
    """Build the template environment once: autoescaped HTML and gettext through auditctl's catalog."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # gettext follows the language that ViewerMiddleware chose for the request.
    environment.install_gettext_callables(gettext, ngettext, newstyle=True)
    environment.globals["version"] = __version__
    environment.filters["urlquote"] = lambda value: quote(str(value), safe="")
    return Jinja2Templates(env=environment)


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    """Render a template with the viewer's language, time zone and the formatting helpers."""
    language = request.state.language
    time_zone = request.state.time_zone
    current = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    page = {
        "language": language,
        "time_zone": time_zone.key,
        "current_path": current,
        "user": getattr(request.state, "user", None),
        "auth": request.app.state.config.auth,
        "format_time": lambda moment: formatting.format_time(moment, time_zone, language),
        "format_number": lambda value: formatting.format_number(value, language),
    }
    page.update(context)
    return templates().TemplateResponse(request, name, page, status_code=status_code)


def error_response(request: Request, error: WebError) -> Response:
    response = render(request, "error.html",
                      {"title": error.title, "message": error.message, "status_code": error.status_code},
                      status_code=error.status_code)
    for key, value in error.headers.items():
        response.headers[key] = value
    return response
