"""The checksum and manifest left behind when a backup file is deleted by hand, which rotation removes.

A file is removed only when auditctl provably wrote it for a backup of the
same source that is gone:

- nothing is at ``NAME``, not even a dangling symbolic link, and no
  partial file ``.NAME.partial`` is there;
- ``NAME.manifest.json`` is a regular file, an auditctl manifest of version
  2 or later that names ``NAME`` and records the given source identity;
- ``NAME.sha256`` is a regular file whose content is exactly the checksum
  lines that auditctl writes for that manifest. Any other ``NAME.sha256``
  stays.

Version 1 manifests (``NAME.json``) record no source, so they and their
checksums are never removed. The caller holds the folder's lock, so no other
run is writing a backup here. A run also renames its backup into place
before it writes these two files, so they never exist without the backup
while that run is alive.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Any

from ..files import os_reason
from .manifest import MANIFEST_SUFFIX, Manifest, checksum_text, read_manifest_file, sidecar_path
from .partials import partial_path

logger = logging.getLogger(__name__)


def remove_orphan_sidecars(folder: Path, identity: dict[str, Any]) -> list[Path]:
    """Delete the checksums and manifests of this source's backups that are gone; return the removed paths.

    The checksum goes first and the manifest last, so a file that cannot be
    removed leaves the manifest to find it again on the next run. Such a
    failure is logged as a warning and skipped.
    """
    removed: list[Path] = []
    for manifest_file in sorted(folder.glob("*" + MANIFEST_SUFFIX)):
        if manifest_file.name.startswith("."):
            continue
        backup = manifest_file.with_name(manifest_file.name.removesuffix(MANIFEST_SUFFIX))
        manifest = _orphan_manifest(backup, manifest_file, identity)
        if manifest is None:
            continue
        checksum_file = sidecar_path(backup)
        targets = [checksum_file] if _is_own_checksum(checksum_file, backup.name, manifest) else []
        targets.append(manifest_file)
        for path in targets:
            try:
                path.unlink()
            except OSError as exc:
                logger.warning("rotation could not remove %s of the missing backup %s: %s",
                               path, backup.name, os_reason(exc))
                break
            logger.info("rotation removed %s: its backup %s is no longer in the folder", path, backup.name)
            removed.append(path)
    return removed


def _orphan_manifest(backup: Path, manifest_file: Path, identity: dict[str, Any]) -> Manifest | None:
    """Read the manifest of ``backup`` if the backup is gone and the manifest is auditctl's of this source."""
    if not backup.name or os.path.lexists(backup) or os.path.lexists(partial_path(backup)):
        return None
    if not _is_regular_file(manifest_file):
        return None
    manifest = read_manifest_file(manifest_file)
    if manifest is None or manifest.file != backup.name or manifest.source_identity != identity:
        return None
    return manifest


def _is_own_checksum(checksum_file: Path, name: str, manifest: Manifest) -> bool:
    if not _is_regular_file(checksum_file):
        return False
    try:
        content = checksum_file.read_bytes()
    except OSError:
        return False
    return content == checksum_text(name, manifest).encode()


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False
