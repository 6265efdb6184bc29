"""Hidden ``.NAME.partial`` files that a backup is written to before it gets its final name.

A run removes its own partial file on every failure it catches, SIGTERM
and SIGINT included. A SIGKILL, a power loss or a crash of the machine still
leaves one behind, so each run removes those of earlier runs while it holds
the folder's lock, and ``auditctl doctor`` lists them.
"""

from __future__ import annotations

import logging
import re
import shutil
import stat
from pathlib import Path

from ..files import os_reason

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"

# Exactly the names dump.py and http_source.py give partial files: "." + backup_name() with an
# optional "-N" from unused_stem(), one of the backup extensions, and ".partial".
_PARTIAL_NAME = re.compile(
    r"\.[\w.-]+_\d{8}T\d{6}Z(?:-\d+)?"
    r"(?:\.dump|\.dump\.age|\.dir|\.json|\.json\.age|\.globals\.sql|\.globals\.sql\.age)"
    + re.escape(PARTIAL_SUFFIX))


def partial_path(final: Path) -> Path:
    """Name the hidden file that ``final`` is written to: ``.NAME.partial`` in the same folder."""
    return final.with_name(f".{final.name}{PARTIAL_SUFFIX}")


def find_partials(folder: Path) -> list[Path]:
    """List the partial files (or directory-format folders) in ``folder`` named as auditctl names them."""
    try:
        names = sorted(entry.name for entry in folder.iterdir())
    except OSError:
        return []
    return [folder / name for name in names if _PARTIAL_NAME.fullmatch(name)]


def remove_stale_partials(folder: Path) -> list[Path]:
    """Delete the partial files of earlier runs; the caller holds the folder's lock, so none is in use.

    A symbolic link is removed, never followed. A file that cannot be
    removed is logged as a warning and skipped.
    """
    removed = []
    for path in find_partials(folder):
        try:
            if stat.S_ISDIR(path.lstat().st_mode):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as exc:
            logger.warning("could not remove the partial file %s of an earlier run: %s", path, os_reason(exc))
            continue
        # A warning, because only a run that was killed or crashed leaves a partial file behind.
        logger.warning("removed the partial file %s of an earlier run", path)
        removed.append(path)
    return removed
