"""Which old backups to delete: keep the last N and daily, weekly and monthly slots.

Rotation only ever gets backups that auditctl made of one source (see
``backups_of_source``), and it never deletes the backup just written nor the
newest one. It also removes the checksum and manifest of a backup of that
source that is gone (see ``orphans.py``).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from .manifest import BackupEntry, legacy_manifest_path, manifest_path, sidecar_path
from .orphans import remove_orphan_sidecars

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RotationPolicy:
    """How many backups to keep; 0 turns a rule off, all zero keeps everything."""

    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    @property
    def enabled(self) -> bool:
        return any((self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly))


@dataclass
class RotationResult:
    """The backups of one source that rotation kept and deleted, and the backups of unknown source that it kept.

    ``removed_sidecars`` lists the checksums and manifests of this source whose backup was already gone.
    """

    kept: list[Path] = field(default_factory=list)
    deleted: list[Path] = field(default_factory=list)
    unknown_source: list[Path] = field(default_factory=list)
    removed_sidecars: list[Path] = field(default_factory=list)


def backups_of_source(backups: list[BackupEntry], identity: dict[str, Any]) -> list[BackupEntry]:
    """Pick the backups whose manifest records exactly this source identity.

    Version 1 manifests record no identity, so they are never picked: their
    database name alone cannot tell two servers, or two ports of one host, apart.
    """
    return [entry for entry in backups if entry.manifest.source_identity == identity]


def _period_keys(now: datetime, count: int, step: str) -> list[tuple]:
    """List the calendar periods (UTC) counted back from ``now``: days, ISO weeks or months."""
    keys: list[tuple] = []
    day = now.date()
    if step == "day":
        return [(day - timedelta(days=offset),) for offset in range(count)]
    if step == "week":
        return [tuple((day - timedelta(weeks=offset)).isocalendar()[:2]) for offset in range(count)]
    year, month = day.year, day.month
    for _offset in range(count):
        keys.append((year, month))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return keys


def _key_of(moment: datetime, step: str) -> tuple:
    day = moment.astimezone(timezone.utc).date()
    if step == "day":
        return (day,)
    if step == "week":
        return tuple(day.isocalendar()[:2])
    return (day.year, day.month)


def plan_rotation(backups: list[BackupEntry], policy: RotationPolicy, now: datetime,
                  fresh: Path | None = None) -> RotationResult:
    """Split ``backups`` (one source, any order) into kept and to be deleted.

    A slot rule keeps the newest backup in each of the last N calendar days,
    ISO weeks or months, counting the current one. ``fresh``, the backup just
    written, counts as the newest whatever its manifest's start time, because
    an older backup made while the clock was ahead can carry a later one. The
    newest backup is always kept, even when every slot has passed, so that a
    run of failed nights never leaves the folder empty.
    """
    ordered = sorted(backups, key=lambda entry: entry.manifest.started, reverse=True)
    # A stable sort moves the fresh backup to the front and keeps the others newest first.
    ordered.sort(key=lambda entry: entry.path != fresh)
    if not policy.enabled or not ordered:
        return RotationResult(kept=[entry.path for entry in ordered])
    keep: set[Path] = {ordered[0].path}
    keep.update(entry.path for entry in ordered[: policy.keep_last])
    for count, step in ((policy.keep_daily, "day"), (policy.keep_weekly, "week"), (policy.keep_monthly, "month")):
        wanted = set(_period_keys(now, count, step))
        filled: set[tuple] = set()
        for entry in ordered:
            key = _key_of(entry.manifest.started, step)
            if key in wanted and key not in filled:
                filled.add(key)
                keep.add(entry.path)
    return RotationResult(kept=[entry.path for entry in ordered if entry.path in keep],
                          deleted=[entry.path for entry in ordered if entry.path not in keep])


def delete_backup(entry_path: Path, globals_file: str | None) -> None:
    """Delete a backup, its checksum, its manifest (last, so a half-deleted backup stays listed) and its globals."""
    if entry_path.is_dir():
        shutil.rmtree(entry_path)
    else:
        entry_path.unlink(missing_ok=True)
    if globals_file:
        (entry_path.parent / globals_file).unlink(missing_ok=True)
    sidecar_path(entry_path).unlink(missing_ok=True)
    legacy_manifest_path(entry_path).unlink(missing_ok=True)
    manifest_path(entry_path).unlink(missing_ok=True)
    logger.info("rotation deleted %s", entry_path)


def rotate(backups: list[BackupEntry], policy: RotationPolicy, now: datetime, fresh: BackupEntry) -> RotationResult:
    """Delete the backups of ``fresh``'s source that ``plan_rotation`` does not keep.

    ``backups`` may hold any backups of the folder: only those of the same
    source identity are considered. When a policy is set, those of the same
    database name without an identity are kept and listed in ``unknown_source``,
    and the checksums and manifests of the same source whose backup is gone
    are removed.
    """
    identity = fresh.manifest.source_identity
    same_source = backups_of_source(backups, identity) if identity is not None else []
    if fresh.path not in {entry.path for entry in same_source}:
        same_source.append(fresh)
    result = plan_rotation(same_source, policy, now, fresh.path)
    if policy.enabled:
        result.unknown_source = [entry.path for entry in backups
                                 if entry.manifest.source_identity is None and entry.path != fresh.path
                                 and entry.manifest.database == fresh.manifest.database]
    globals_of = {entry.path: entry.manifest.globals_file for entry in same_source}
    for path in result.deleted:
        delete_backup(path, globals_of.get(path))
    if policy.enabled and identity is not None:
        result.removed_sidecars = remove_orphan_sidecars(fresh.path.parent, identity)
    return result
