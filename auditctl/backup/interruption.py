"""Stopping a backup run cleanly on SIGTERM (cron, systemd, ``timeout``) and SIGINT (Ctrl-C).

Without a handler, SIGTERM ends Python at once: no ``finally`` block runs,
so the partial file stays and no failure is reported. The guard covers the
whole run, from the checks before the dump to the report. Within its
``raising()`` block, which covers the dump, the first signal raises
``Interrupted`` in the main thread. The exception unwinds through the dump,
which stops pg_dump and deletes the partial file, and the run then reports
the failure. Outside that block the first signal is only noted, so the
audit event and the mail of the run are complete, and the run ends as
interrupted. A repeat of the first signal within DUPLICATE_SECONDS is
ignored, because coreutils' ``timeout`` without --foreground sends its
signal twice: to the command, then to the command's process group. Any
later signal puts the previous handlers back and ends the process at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

GUARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Seconds after the first signal in which the same signal again counts as that one signal.
DUPLICATE_SECONDS = 1.0


class Interrupted(BaseException):
    """A guarded signal arrived; like KeyboardInterrupt, it is not an Exception, so no ``except Exception`` hides it."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """Context manager that turns SIGTERM and SIGINT into ``Interrupted`` within its block.

    Python lets only the main thread set signal handlers, so in any other
    thread the guard does nothing. ``received`` keeps the first signal's
    number, because code between the raise and the caller (such as
    pyrage's encryption) may turn the exception into an error of its own.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._received_at = 0.0
        self._previous: dict[int, Any] = {}
        self._raising = False

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in GUARDED_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.restore()
        if self.received is not None and time.monotonic() - self._received_at < DUPLICATE_SECONDS:
            # The command is about to exit with the signal's code, and the duplicate must not end it first.
            signal.signal(self.received, signal.SIG_IGN)

    def restore(self) -> None:
        """Put the previous handlers back; safe to call more than once."""
        previous, self._previous = self._previous, {}
        for signum, handler in previous.items():
            # None means a handler set outside Python; the default is the closest one Python can set.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)

    @contextlib.contextmanager
    def raising(self) -> Iterator[None]:
        """Raise ``Interrupted`` for the first signal within the block, or at its start for one noted before."""
        if self.received is not None:
            raise Interrupted(self.received)
        self._raising = True
        try:
            yield
        finally:
            self._raising = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.received is not None:
            if signum == self.received and now - self._received_at < DUPLICATE_SECONDS:
                return
            # A second signal: the previous handler acts on it, and SIG_DFL ends the process.
            self.restore()
            signal.raise_signal(signum)
            return
        self.received = signum
        self._received_at = now
        if self._raising:
            self._raising = False
            raise Interrupted(signum)
