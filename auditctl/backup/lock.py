"""A lock file that keeps two backup runs from working in the same folder at once."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import BackupError, BackupLockedError
from ..files import os_reason
from ..i18n import _

logger = logging.getLogger(__name__)

LOCK_NAME = ".auditctl-backup.lock"


@contextlib.contextmanager
def backup_lock(folder: Path) -> Iterator[Path]:
    """Hold an exclusive ``flock`` on ``FOLDER/.auditctl-backup.lock`` or raise BackupLockedError at once.

    Raises BackupError when the lock file cannot be opened or created.

    The kernel releases a flock when its process dies, so a crashed run never
    leaves a stale lock. The file itself stays, because deleting a lock file
    while another process opens it would let two runs lock two different files.
    """
    path = folder / LOCK_NAME
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise BackupError(_("Cannot open the lock file {path}: {error}; check the backup folder set with --dir.")
                          .format(path=path, error=os_reason(exc))) from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "?"
            raise BackupLockedError(
                _("Another backup run (PID {pid}) holds the lock {path}; this run did nothing. "
                  "Wait for it to finish, or move the cron schedule so that runs do not overlap.")
                .format(pid=holder, path=path)) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        logger.debug("locked %s", path)
        yield path
    finally:
        os.close(descriptor)
