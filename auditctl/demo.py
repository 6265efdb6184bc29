"""``auditctl demo``: auditing shown end to end on an embedded PostgreSQL.

The server comes from the pgserver wheel and lives in a temporary
directory that is removed afterwards, so the demo needs no server of the
user's and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import psycopg

from .audit.install import install
from .audit.query import Event, EventFilter, query_events
from .audit.schema import DEFAULT_SCHEMA
from .errors import EmbeddedServerError
from .i18n import _
from .locales import fallback_locale
from .sqltext import sql_dir

logger = logging.getLogger(__name__)

# Requests of two librarians, each in its own transaction, as an application
# would send them after setting who acts and from where.
_REQUESTS = [
    ("librarian-olga", "192.0.2.10", [
        """INSERT INTO "Book" (title, author, copies) VALUES ('Солярис', 'Станислав Лем', 3)""",
        """UPDATE "Book" SET copies = copies + 1 WHERE title = 'Мастер и Маргарита'""",
    ]),
    ("librarian-ben", "2001:db8::7", [
        """INSERT INTO loan (book_id, member_id, due_on) VALUES (1, 'm-002', DATE '2027-01-15')""",
        """UPDATE member SET email = 'd.okafor@library.example' WHERE id = 'm-002'""",
        # Changes nothing, so it records nothing.
        """UPDATE member SET full_name = full_name WHERE id = 'm-001'""",
    ]),
    ("librarian-olga", "192.0.2.10", [
        """DELETE FROM loan WHERE book_id = 1 AND member_id = 'm-002'""",
    ]),
]


def run_demo(workdir: Path | None = None) -> list[Event]:
    """Start an embedded server, audit a sample schema, make changes, return the log."""
    try:
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset, as under cron or sudo.
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        raise EmbeddedServerError(
            _("The embedded PostgreSQL (pgserver package) is not installed; run `pip install pgserver`.")) from None

    with tempfile.TemporaryDirectory(prefix="auditctl-demo-", dir=workdir) as tmp:
        pgdata = Path(tmp) / "pgdata"
        pgdata.mkdir()
        try:
            with warnings.catch_warnings(), _installed_locale():
                warnings.simplefilter("ignore")
                server = pgserver.get_server(pgdata, cleanup_mode="stop")
        except Exception as exc:  # pgserver raises bare subprocess and OS errors
            raise EmbeddedServerError(
                _("Could not start the embedded PostgreSQL in {path}: {error}")
                .format(path=pgdata, error=exc)) from None
        try:
            return _run_against(server.get_uri())
        finally:
            server.cleanup()


@contextlib.contextmanager
def _installed_locale() -> Iterator[None]:
    """Set LC_ALL to an installed locale while pgserver runs initdb and starts the server.

    pgserver passes this process's variables on, and initdb refuses a locale
    that is not installed, such as LANG=ru_RU.UTF-8 on a machine with only C.UTF-8.
    The throwaway cluster gets the same locale whatever the user's variables.
    auditctl's own messages keep their language, which gettext chose at start-up.
    """
    previous = os.environ.get("LC_ALL")
    os.environ["LC_ALL"] = fallback_locale()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("LC_ALL", None)
        else:
            os.environ["LC_ALL"] = previous


def _run_against(uri: str) -> list[Event]:
    with psycopg.connect(uri, autocommit=True) as connection:
        connection.execute((sql_dir() / "demo" / "library.sql").read_text(encoding="utf-8"))
        install(connection, DEFAULT_SCHEMA, [], use_all=True)
        for user_id, address, statements in _REQUESTS:
            with connection.transaction():
                connection.execute("SELECT set_config('auditctl.user_id', %s, true), "
                                   "set_config('auditctl.ip_address', %s, true)", (user_id, address))
                for statement in statements:
                    connection.execute(statement)
        return query_events(connection, DEFAULT_SCHEMA, EventFilter(), limit=None)
