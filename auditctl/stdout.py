"""Writes to stdout that finish or raise, so that the CLI notices a pipe whose reader has gone.

On Python 3.11.7, BufferedWriter.write of more than its buffer size to a
pipe whose reader left during the write returned the number of bytes that
got through, fewer than it was given, without an error. TextIOWrapper.write
ignores that number, so the rest of the output was dropped and a command
such as ``auditctl query --format json | head -c 10`` ended with status 0.
Writing the rest again fails with EPIPE, which the CLI turns into SIGPIPE.
"""

from __future__ import annotations

import sys
from typing import Any, BinaryIO

from rich.console import Console


def write_fully(stream: BinaryIO, data: bytes) -> None:
    """Write all of ``data`` to a binary stream, writing the rest again after each short write."""
    view = memoryview(data)
    while view:
        written = stream.write(view)
        if written is None:
            # A stream that returns no count, such as a non-blocking raw file; TextIOWrapper takes it as whole too.
            return
        view = view[written:]


class FullStdout:
    """A text stream that writes to the current ``sys.stdout`` with write_fully.

    It looks up sys.stdout on each call, so output still goes wherever a
    caller or a test has redirected it, and passes every other attribute,
    such as ``isatty`` and ``encoding`` that rich reads, to sys.stdout.
    """

    def write(self, text: str) -> int:
        stream = sys.stdout
        binary = getattr(stream, "buffer", None)
        if binary is None:
            return stream.write(text)
        # Text written through sys.stdout itself before this call goes out first.
        stream.flush()
        write_fully(binary, text.encode(stream.encoding or "utf-8", stream.errors or "strict"))
        return len(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(sys.stdout, name)


full_stdout = FullStdout()


class StdoutConsole(Console):
    """A rich console that writes to stdout through full_stdout and lets BrokenPipeError reach the CLI.

    rich's own on_broken_pipe exits with status 1, but the CLI ends the
    process by SIGPIPE, as cat does, for every output format.
    """

    def __init__(self, **options: Any):
        super().__init__(file=full_stdout, **options)

    def on_broken_pipe(self) -> None:
        # rich calls this inside its ``except BrokenPipeError`` block, so this re-raises that error.
        raise
