"""demo: auditing shown end to end on an embedded PostgreSQL."""

from __future__ import annotations

from .. import render
from ..demo import run_demo
from ..i18n import _
from .app import app


@app.command(help=_("Show auditing end to end on a temporary embedded PostgreSQL; needs no server."))
def demo() -> None:
    with render.error_console.status(_("Starting an embedded PostgreSQL and making sample changes…")):
        events = run_demo()
    render.console.print(_("Audit log of the sample library database, newest first:"))
    render.print_events(events)
    render.console.print(_("The temporary server has been stopped and its files removed."))
