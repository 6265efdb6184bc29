"""The entry point of the ``auditctl`` command and of ``python -m auditctl``.

Importing the CLI (typer, rich, psycopg) took about 0.3 s on a 2-core
development machine. Python turns Ctrl-C during that time into
KeyboardInterrupt, which would print a traceback before the CLI's own
handling is in place. So SIGINT keeps its default action, ending the
process, until then.
"""

from __future__ import annotations

import signal


def main() -> None:
    """Import the CLI with SIGINT at its default action, then run it with Python's usual KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    from auditctl.cli import main as run_cli

    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_cli()
