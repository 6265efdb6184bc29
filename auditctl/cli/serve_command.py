"""serve: the read-only web page of the audit log."""

from __future__ import annotations

import ipaddress
import logging
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from .. import render
from ..audit.schema import DEFAULT_SCHEMA, require_installed
from ..errors import InvalidArgumentError
from ..i18n import _
from .app import app, configure_service_logging
from .options import DsnOption, SchemaOption

logger = logging.getLogger(__name__)


class AuthMode(StrEnum):
    token = "token"
    proxy = "proxy"


def startup_warnings(role: str, writable: bool, host: str) -> list[str]:
    """Return the translated warnings about how the page is served, each telling what to change."""
    warnings = []
    if writable:
        warnings.append(_("The page connects as role {role}, which can change the audit log; create a read-only "
                          "role with `auditctl install --viewer-role ROLE` and connect as that role.")
                        .format(role=role))
    if not _is_loopback(host):
        warnings.append(_("The page listens on {host}, which other machines can reach; serve it through a reverse "
                          "proxy with TLS, since session cookies are sent over HTTPS only.").format(host=host))
    return warnings


# The characters of an HTTP header name, a "token" of RFC 9110.
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def check_auth_options(auth: AuthMode, token_file: Path | None, proxy_user_header: str) -> None:
    """Raise InvalidArgumentError for a header name that no request can carry, and for a token file with a proxy.

    A token file given with --auth proxy is rejected rather than ignored,
    because the user expects the token to guard the page, while with a proxy
    only the header does.
    """
    if auth is AuthMode.proxy and token_file is not None:
        raise InvalidArgumentError(_("--token-file is used only with --auth token; with --auth proxy the reverse "
                                     "proxy checks who logs in. Leave out one of the two."))
    if auth is AuthMode.proxy and not _HEADER_NAME.match(proxy_user_header):
        raise InvalidArgumentError(_("Invalid --proxy-user-header value {value!r}: give the name of the header in "
                                     "which the proxy sends the user, such as X-Remote-User.")
                                   .format(value=proxy_user_header))


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command(help=_("Serve a read-only web page of the audit log, with filters and export."))
def serve(
    host: Annotated[str, typer.Option(
        "--host", metavar="ADDRESS",
        help=_("Address to listen on. Anything but a loopback address exposes the page to the network."))]
        = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help=_("TCP port to listen on."))] = 8765,
    auth: Annotated[AuthMode, typer.Option(
        "--auth", help=_("token: log in with an access token; proxy: a reverse proxy checks passwords "
                         "and sends the user name in a header."))] = AuthMode.token,
    token_file: Annotated[Path | None, typer.Option(
        "--token-file", metavar="FILE", dir_okay=False,
        help=_("File with the access token, mode 0600. Defaults to the AUDITCTL_WEB_TOKEN variable."))] = None,
    token_user: Annotated[str, typer.Option(
        "--token-user", metavar="ID",
        help=_("User id recorded in the audit log for logins and exports with the token."))] = "auditctl-web",
    proxy_user_header: Annotated[str, typer.Option(
        "--proxy-user-header", metavar="HEADER",
        help=_("Header in which the reverse proxy sends the checked user name (with --auth proxy)."))]
        = "X-Remote-User",
    proxy_headers: Annotated[bool, typer.Option(
        "--proxy-headers", help=_("Trust X-Forwarded-For and X-Forwarded-Proto from a proxy on 127.0.0.1, "
                                  "so that logins record the viewer's address."))] = False,
    session_hours: Annotated[float, typer.Option(
        "--session-hours", min=0.1, max=720, help=_("Hours until a login expires."))] = 8.0,
    page_size: Annotated[int, typer.Option(
        "--page-size", min=1, max=500, help=_("Events shown per page."))] = 50,
    dsn: DsnOption = None,
    schema: SchemaOption = DEFAULT_SCHEMA,
) -> None:
    import uvicorn

    from ..web import WebConfig, create_app
    from ..web.auth import load_token
    from ..web.database import can_modify_log, read_only_connection
    from ..web.listen import bind_sockets, resolve_listen_addresses

    configure_service_logging()
    # Every option is checked before the first line about the page is printed.
    addresses = resolve_listen_addresses(host, port)
    check_auth_options(auth, token_file, proxy_user_header)
    token = load_token(token_file) if auth is AuthMode.token else ""
    with read_only_connection(dsn) as connection:
        require_installed(connection, schema)
    role, writable = can_modify_log(dsn, schema)
    render.print_warnings(startup_warnings(role, writable, host))
    # English lines for the log, at INFO so that a terminal shows each warning once, in the user's language.
    if writable:
        logger.info("the page connects as role %s, which can change the audit log", role)
    if not _is_loopback(host):
        logger.info("listening on %s, which is not a loopback address", host)

    config = WebConfig(dsn=dsn, schema=schema, auth=auth.value, token=token, token_user=token_user,
                       proxy_user_header=proxy_user_header, session_seconds=session_hours * 3600, page_size=page_size)
    server = uvicorn.Server(uvicorn.Config(
        create_app(config), host=host, port=port, proxy_headers=proxy_headers, forwarded_allow_ips="127.0.0.1",
        server_header=False, log_level="info" if logger.isEnabledFor(logging.INFO) else "warning"))
    # Bound here, so that a port in use is one line of ours and not uvicorn's log.
    sockets = bind_sockets(host, port, addresses)
    shown_host = f"[{host}]" if ":" in host else host
    render.console.print(_("Serving the audit log on http://{host}:{port}/ (press Ctrl+C to stop)")
                         .format(host=shown_host, port=port), markup=False)
    try:
        server.run(sockets=sockets)
    except KeyboardInterrupt:
        # uvicorn has shut down gracefully and re-raised the signal; Ctrl+C is the way to stop it.
        pass
    finally:
        for listener in sockets:
            listener.close()
