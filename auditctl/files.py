"""Folders and files that auditctl writes: a real writability check and atomic replacement.

Permission bits are not enough to tell whether a folder takes new files: root
passes ``os.access`` everywhere, yet cannot create files in /sys or /proc, or
on a read-only mount. So the check creates and removes a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from .errors import OutputFileError
from .i18n import _


class FolderState(Enum):
    """The reason a folder cannot take a new file."""

    MISSING = "missing"
    NOT_A_FOLDER = "not a folder"
    NOT_WRITABLE = "not writable"


@dataclass(frozen=True)
class FolderProblem:
    """A folder that cannot take a new file: the state, and the operating system's reason where it gave one."""

    state: FolderState
    reason: str = ""

    def message(self, *, missing: str, not_a_folder: str, not_writable: str, **values: object) -> str:
        """Pick the caller's message for this state and fill in ``values`` and the reason as ``{error}``."""
        chosen = {FolderState.MISSING: missing, FolderState.NOT_A_FOLDER: not_a_folder,
                  FolderState.NOT_WRITABLE: not_writable}[self.state]
        return chosen.format(error=self.reason, **values)


def os_reason(exc: OSError) -> str:
    """Return the operating system's text for ``exc``, such as 'Permission denied'."""
    return exc.strerror or str(exc)


def check_writable_folder(folder: Path) -> FolderProblem | None:
    """Create and remove a temporary file in ``folder``; return why that is impossible, or None when it works."""
    try:
        mode = os.stat(folder).st_mode
    except FileNotFoundError:
        return FolderProblem(FolderState.MISSING)
    except NotADirectoryError:
        # A parent on the path is a file.
        return FolderProblem(FolderState.MISSING)
    except OSError as exc:
        return FolderProblem(FolderState.NOT_WRITABLE, os_reason(exc))
    if not stat.S_ISDIR(mode):
        return FolderProblem(FolderState.NOT_A_FOLDER)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".auditctl-write-check-"):
            pass
    except OSError as exc:
        # /proc returns ENOENT for a new file in a folder that exists, which would read as nonsense.
        reason = _("new files cannot be created there") if exc.errno == errno.ENOENT else os_reason(exc)
        return FolderProblem(FolderState.NOT_WRITABLE, reason)
    return None


def _cannot_write(path: Path, folder: Path, problem: FolderProblem) -> str:
    return problem.message(
        missing=_("Cannot write {path}: folder {folder} does not exist; create it or write to another folder."),
        not_a_folder=_("Cannot write {path}: {folder} is not a folder; write to a file in a folder."),
        not_writable=_("Cannot write {path}: folder {folder} is not writable ({error}); write to another folder."),
        path=path, folder=folder)


def special_file_kind(path: Path) -> str | None:
    """Return the kind of ``path`` when it exists and is neither a regular file nor a folder, else None.

    A FIFO, a device or a socket must be written in place: a rename over
    it would replace the device with a regular file.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISFIFO(mode):
        return "fifo"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device"
    if stat.S_ISSOCK(mode):
        return "socket"
    return None


@contextlib.contextmanager
def replace_when_complete(path: Path) -> Iterator[BinaryIO]:
    """Yield a temporary file beside ``path``, and rename it to ``path`` once the block has written it.

    The temporary file is removed on every failure, so ``path`` contains either
    its old content or the complete new one. A file that is replaced keeps
    its mode, and its owner where the process may set it. A new file keeps
    the temporary file's mode, 0600 from tempfile, whatever the umask. An
    OSError while creating, writing or renaming the file becomes
    OutputFileError naming ``path``. A FIFO or a device is written in place
    instead, since a rename would replace it.
    """
    kind = special_file_kind(path)
    if kind is not None:
        with _write_in_place(path, kind) as handle:
            yield handle
        return
    previous = _existing_file(path)
    folder = path.resolve().parent
    problem = check_writable_folder(folder)
    if problem is not None:
        raise OutputFileError(_cannot_write(path, folder, problem))
    try:
        handle = tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    except OSError as exc:
        raise OutputFileError(_cannot_write(path, folder, FolderProblem(FolderState.NOT_WRITABLE,
                                                                        os_reason(exc)))) from None
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            if previous is not None:
                _copy_mode_and_owner(handle.fileno(), previous)
        os.replace(handle.name, path)
    except OSError as exc:
        _remove_quietly(handle.name)
        raise OutputFileError(_("Cannot write {path}: {error}; the file was left unchanged.").format(
            path=path, error=os_reason(exc))) from None
    except BaseException:
        _remove_quietly(handle.name)
        raise


def _existing_file(path: Path) -> os.stat_result | None:
    """Return the status of the regular file at ``path``, or None when there is none; reject a read-only one.

    A file without its owner's write permission is rejected rather than
    replaced, as its owner's shell redirection would be, even for root,
    because someone made it read-only on purpose and a rename would undo that.
    """
    try:
        status = os.stat(path)
    except OSError:
        return None
    if stat.S_ISREG(status.st_mode) and not status.st_mode & stat.S_IWUSR:
        raise OutputFileError(_("Cannot write {path}: the file is read-only (mode {mode:04o}); make it writable "
                                "with `chmod u+w {path}` or write to another file.")
                              .format(path=path, mode=stat.S_IMODE(status.st_mode)))
    return status if stat.S_ISREG(status.st_mode) else None


def _copy_mode_and_owner(descriptor: int, previous: os.stat_result) -> None:
    os.fchmod(descriptor, stat.S_IMODE(previous.st_mode))
    if os.geteuid() == 0:
        # Root replacing another user's file, such as a crontab file in their home, leaves it theirs.
        os.fchown(descriptor, previous.st_uid, previous.st_gid)


@contextlib.contextmanager
def _write_in_place(path: Path, kind: str) -> Iterator[BinaryIO]:
    """Yield ``path``, a FIFO or a device, opened for writing; an OSError becomes OutputFileError naming it."""
    if kind == "socket":
        raise OutputFileError(_("Cannot write {path}: it is a socket; write to a file, a FIFO or a device.")
                              .format(path=path))
    try:
        handle = open(path, "wb")  # noqa: SIM115 - closed below, where a late write error is reported too
    except OSError as exc:
        raise OutputFileError(_("Cannot write {path}: {error}.").format(path=path, error=os_reason(exc))) from None
    try:
        with handle:
            yield handle
    except OSError as exc:
        raise OutputFileError(_("Cannot write {path}: {error}; the output is incomplete.").format(
            path=path, error=os_reason(exc))) from None


def _remove_quietly(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)
