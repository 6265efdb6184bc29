"""File objects that count, hash and copy bytes on their way to disk or to a child process."""

from __future__ import annotations

import hashlib
import io
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from typing import BinaryIO

CHUNK = 256 * 1024


class HashingWriter(io.RawIOBase):
    """Write through to ``target`` while counting bytes and computing their sha256."""

    def __init__(self, target: BinaryIO, on_bytes: Callable[[int], None] | None = None):
        self._target = target
        self._on_bytes = on_bytes
        self.digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._target.write(data)
        self.digest.update(data)
        self.size += len(data)
        if self._on_bytes:
            self._on_bytes(len(data))
        return len(data)


class TeeReader(io.RawIOBase):
    """Read from ``source`` and copy every chunk read to ``copy`` as well."""

    def __init__(self, source: BinaryIO, copy: io.RawIOBase | None):
        self._source = source
        self._copy = copy
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._source.read(len(buffer))
        if not data:
            return 0
        buffer[: len(data)] = data
        self.size += len(data)
        if self._copy is not None:
            self._copy.write(data)
        return len(data)


def copy_stream(reader: BinaryIO, writer: BinaryIO) -> None:
    while chunk := reader.read(CHUNK):
        writer.write(chunk)


class StderrCollector:
    """Read a child's stderr in a thread, pass each line to ``log_line`` and keep the last lines."""

    def __init__(self, process: subprocess.Popen, log_line: Callable[[str], None], keep: int = 20):
        self.lines: deque[str] = deque(maxlen=keep)
        self._process = process
        self._log_line = log_line
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for raw in self._process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.lines.append(line)
                self._log_line(line)

    def join(self) -> str:
        """Wait for the child's stderr to close and return its last lines."""
        self._thread.join(timeout=30)
        return "\n".join(self.lines)
