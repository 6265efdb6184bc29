"""Backup file names, the sha256 sidecar and the JSON manifest beside each backup.

A backup ``NAME`` (a file, or a folder for the directory format) has
``NAME.sha256`` in ``sha256sum`` format and ``NAME.manifest.json``, the
manifest. Manifests of version 1 are named ``NAME.json`` and are still
read. Only a manifest written by auditctl, naming the database, marks
a file as ours: rotation and ``backup list`` look at nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import BackupError
from ..files import special_file_kind
from ..i18n import _

logger = logging.getLogger(__name__)

MANIFEST_KIND = "auditctl-backup"
# Version 2 added source_identity and moved the manifest from NAME.json to NAME.manifest.json.
MANIFEST_VERSION = 2
MANIFEST_SUFFIX = ".manifest.json"
LEGACY_MANIFEST_SUFFIX = ".json"
_UNSAFE = re.compile(r"[^\w.-]+")
_CHUNK = 1024 * 1024


@dataclass
class Manifest:
    """Record of one backup, as stored in ``NAME.manifest.json`` beside it.

    ``source_identity`` (see ``identity.py``) is None in version 1
    manifests, which recorded only the database name or the URL's host.
    """

    database: str
    file: str
    format: str
    size: int
    sha256: str
    started_at: str
    finished_at: str
    encrypted: bool
    source: str = "pg_dump"
    server_version: str | None = None
    pg_dump_version: str | None = None
    globals_file: str | None = None
    globals_sha256: str | None = None
    tool_version: str = __version__
    kind: str = MANIFEST_KIND
    manifest_version: int = MANIFEST_VERSION
    files: dict[str, str] = field(default_factory=dict)
    source_identity: dict[str, Any] | None = None

    @property
    def started(self) -> datetime:
        return datetime.fromisoformat(self.started_at)


@dataclass(frozen=True)
class BackupEntry:
    """A backup found in a folder: its path and its manifest."""

    path: Path
    manifest: Manifest

    @property
    def manifest_path(self) -> Path:
        return manifest_path(self.path)


def file_stem(database: str) -> str:
    """Turn a database name into a file-name part: letters (any script), digits, ``.``, ``-`` and ``_``."""
    normalized = unicodedata.normalize("NFC", database)
    return _UNSAFE.sub("_", normalized).strip("._") or "db"


def backup_name(database: str, started: datetime, extension: str) -> str:
    """Name a backup after its database and UTC start time, e.g. ``app_20261204T020000Z.dump``."""
    return f"{file_stem(database)}_{started.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}{extension}"


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def manifest_path(path: Path) -> Path:
    return path.with_name(path.name + MANIFEST_SUFFIX)


def legacy_manifest_path(path: Path) -> Path:
    """Name a version 1 manifest, ``NAME.json``."""
    return path.with_name(path.name + LEGACY_MANIFEST_SUFFIX)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def sha256_of_file(path: Path) -> str:
    """Hash a file in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_of_tree(folder: Path) -> dict[str, str]:
    """Hash each file of a directory-format dump, keyed by its path relative to ``folder``."""
    return {str(path.relative_to(folder)): sha256_of_file(path)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def write_durably(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write a small file under a temporary name, fsync it and rename it into place.

    The file gets ``mode`` (less the umask): by default only its owner may
    read it, as the backup itself. A FIFO or a device at ``path`` is written
    in place, because a rename would replace it with a regular file. A FIFO
    that no process reads fails at once rather than holding up the end of
    the run.
    """
    if special_file_kind(path) is not None:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_NONBLOCK), "wb") as handle:
            handle.write(data)
        return
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        temporary.unlink(missing_ok=True)
        with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def checksum_text(name: str, manifest: Manifest) -> str:
    """Render the ``sha256sum`` lines of backup ``name``: its file or each file of its folder, then its globals."""
    if manifest.files:
        lines = "".join(f"{digest}  {name}/{file}\n" for file, digest in manifest.files.items())
    else:
        lines = f"{manifest.sha256}  {name}\n"
    if manifest.globals_file and manifest.globals_sha256:
        lines += f"{manifest.globals_sha256}  {manifest.globals_file}\n"
    return lines


def write_sidecars(path: Path, manifest: Manifest) -> None:
    """Write ``NAME.sha256`` (``sha256sum -c`` reads it) and ``NAME.manifest.json``."""
    write_durably(sidecar_path(path), checksum_text(path.name, manifest).encode())
    text = json.dumps(asdict(manifest), ensure_ascii=False, indent=2) + "\n"
    write_durably(manifest_path(path), text.encode())


def read_manifest(path: Path) -> Manifest | None:
    """Read the manifest of backup ``path``, else its version 1 manifest; None when neither is auditctl's."""
    for candidate in (manifest_path(path), legacy_manifest_path(path)):
        manifest = read_manifest_file(candidate)
        if manifest is not None:
            return manifest
    return None


def read_manifest_file(candidate: Path) -> Manifest | None:
    """Read one manifest file; None when it cannot be read or is not an auditctl manifest."""
    try:
        data = json.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("kind") != MANIFEST_KIND:
        return None
    known = set(Manifest.__dataclass_fields__)
    try:
        return Manifest(**{key: value for key, value in data.items() if key in known})
    except TypeError:
        return None


def require_manifest(path: Path) -> Manifest:
    """Read the manifest of ``path`` or raise BackupError naming the missing file."""
    manifest = read_manifest(path)
    if manifest is None:
        raise BackupError(
            _("{path} has no auditctl manifest ({manifest} is missing or invalid); auditctl checks and restores "
              "only its own backups, so use pg_restore for other dumps.").format(path=path, manifest=manifest_path(path)))
    return manifest


def find_backups(folder: Path, database: str | None = None) -> list[BackupEntry]:
    """List the backups in ``folder`` that auditctl made, oldest first, optionally of one database only."""
    entries = []
    if not folder.is_dir():
        return entries
    # Every NAME.manifest.json also ends in .json, so one glob finds both manifest names. The
    # manifest.file check below drops the wrong reading, such as NAME.manifest as a backup.
    paths: set[Path] = set()
    for candidate in folder.glob("*" + LEGACY_MANIFEST_SUFFIX):
        if candidate.name.startswith("."):
            continue
        paths.add(candidate.with_name(candidate.name.removesuffix(LEGACY_MANIFEST_SUFFIX)))
        if candidate.name.endswith(MANIFEST_SUFFIX):
            paths.add(candidate.with_name(candidate.name.removesuffix(MANIFEST_SUFFIX)))
    for path in paths:
        manifest = read_manifest(path)
        if manifest is None or manifest.file != path.name or not path.exists():
            continue
        if database is not None and manifest.database != database:
            continue
        entries.append(BackupEntry(path, manifest))
    entries.sort(key=lambda entry: (entry.manifest.started, entry.path.name))
    return entries
