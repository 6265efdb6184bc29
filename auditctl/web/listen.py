"""The listening sockets of ``auditctl serve``, bound before uvicorn starts so that bind errors are auditctl's."""

from __future__ import annotations

import contextlib
import errno
import logging
import socket

from ..errors import InvalidArgumentError
from ..i18n import _

logger = logging.getLogger(__name__)

# Ports below this one need root or CAP_NET_BIND_SERVICE on Linux, unless
# the sysctl net.ipv4.ip_unprivileged_port_start lowers it.
_FIRST_UNPRIVILEGED_PORT = 1024


Address = tuple[int, int, int, str, tuple]


def resolve_listen_addresses(host: str, port: int) -> list[Address]:
    """Return the addresses that ``host`` resolves to for listening on ``port``, each once.

    Raises InvalidArgumentError naming the host when it is empty or does not
    resolve, so that ``serve`` stops before it prints anything about the page.
    An empty host is refused rather than read as every interface, because it
    usually comes from a variable that was never set.
    """
    if not host:
        raise InvalidArgumentError(_("Invalid --host value '': it is empty; give an address such as 127.0.0.1, or "
                                     "0.0.0.0 or :: to listen on every interface."))
    try:
        addresses = socket.getaddrinfo(host, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidArgumentError(_("Invalid --host value {host!r}: {error}; use an IP address or a name of this "
                                     "machine.").format(host=host, error=exc.strerror)) from None
    # Repeated entries of getaddrinfo's result are bound once, as asyncio's create_server does.
    return list(dict.fromkeys(addresses))


def bind_sockets(host: str, port: int, addresses: list[Address]) -> list[socket.socket]:
    """Bind and listen on each of ``addresses``, which ``resolve_listen_addresses`` returned for ``host``.

    As asyncio's ``create_server`` does, ``localhost`` gets a socket on
    127.0.0.1 and one on ::1 where both resolve, and an IPv6 socket takes
    IPv6 only. Raises InvalidArgumentError naming the host and port when an
    address cannot be bound; then no socket is left open.
    """
    sockets: list[socket.socket] = []
    try:
        for family, kind, protocol, _canonical, address in addresses:
            listener = socket.socket(family, kind, protocol)
            sockets.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                listener.bind(address)
                listener.listen()
            except OSError as exc:
                raise InvalidArgumentError(_bind_error(host, port, exc)) from None
            logger.debug("listening on %s", address)
    except BaseException:
        for listener in sockets:
            with contextlib.suppress(OSError):
                listener.close()
        raise
    return sockets


def _bind_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return _("Port {port} on {host} is already in use: pick another with --port, or stop the program that "
                 "listens there.").format(port=port, host=host)
    if exc.errno == errno.EACCES and port < _FIRST_UNPRIVILEGED_PORT:
        return _("Cannot listen on port {port}: ports below 1024 usually need root; pick a port from 1024 up with "
                 "--port.").format(port=port)
    if exc.errno == errno.EADDRNOTAVAIL:
        return _("Cannot listen on {host}: the address does not belong to this machine; pick another with --host.") \
            .format(host=host)
    return _("Cannot listen on {host} port {port}: {error}.").format(host=host, port=port,
                                                                    error=exc.strerror or exc)
