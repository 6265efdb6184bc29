"""The identity of a backup's source, stored in its manifest so that rotation never mixes two sources.

A database is identified by the server's host and port as the client
connected to them, and the database name. An endpoint of ``--from-url`` is
identified by its URL without user name, password, query and fragment. The
query is kept only as a SHA-256 digest, so a token in it never reaches the
manifest, while two URLs that differ only in their query stay apart.
"""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

KIND_DATABASE = "postgresql"
KIND_URL = "url"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def database_identity(host: str, port: int | str, database: str) -> dict[str, Any]:
    """Identify a database by host (a name, an address or a socket folder), port and name."""
    return {"kind": KIND_DATABASE, "host": host, "port": int(port), "database": database}


def url_identity(url: str) -> dict[str, Any]:
    """Identify an endpoint by its URL without credentials, fragment or query, and by a digest of the query."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    port_text = f":{port}" if port is not None and port != _DEFAULT_PORTS.get(scheme) else ""
    identity: dict[str, Any] = {"kind": KIND_URL, "url": f"{scheme}://{host}{port_text}{parts.path or '/'}"}
    if parts.query:
        # NOTE: the digest is unsalted, so it hides a random token but not a short value that can be guessed.
        identity["query_sha256"] = hashlib.sha256(parts.query.encode()).hexdigest()
    return identity

