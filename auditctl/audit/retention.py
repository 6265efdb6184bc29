"""Rotation: archive partitions older than the keep window, verify the archive, then drop them.

A partition is dropped only after its archive was written under a scratch
name, stored under its final name, read back in full and found to hold the
same rows as the partition. Every step for one partition runs in one
transaction that holds a SHARE lock on it, so no write can slip in between
the export and the drop. Any failure rolls the transaction back, which keeps
the partition.
"""

from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
from psycopg import sql

from .. import __version__
from ..errors import AuditctlError, InvalidArgumentError
from ..i18n import _
from .archive import (ArchiveError, ArchiveExistsError, ArchiveFormat, Manifest, file_sha256, manifest_bytes,
                      partition_contents, read_contents, same_time, write_archive)
from .destinations import Destination
from .events import log_event
from .partitions import Partition, list_partitions
from .schema import require_log_owner

logger = logging.getLogger(__name__)

# Days or weeks; the unit may be upper case, as in --since.
_KEEP = re.compile(r"^\s*(\d+)\s*([dw])\s*$", re.IGNORECASE)

# Number of partitions that rotate never drops, counted back from the newest
# one that has started, whatever the keep window.
KEEP_NEWEST = 1


def parse_keep(text: str) -> timedelta:
    """Parse ``--keep`` such as ``180d`` or ``26w`` into a positive duration.

    Raises InvalidArgumentError unless the window starts after the year 1,
    the first that Python's datetime covers, since rotate and status count
    it back from now.
    """
    match = _KEEP.match(text)
    if not match or int(match.group(1)) < 1:
        raise InvalidArgumentError(
            _("Invalid --keep value {value!r}: use a number of days or weeks of at least 1, such as 180d or 26w.")
            .format(value=text))
    amount = int(match.group(1))
    try:
        keep = timedelta(days=amount) if match.group(2).lower() == "d" else timedelta(weeks=amount)
        datetime.now(timezone.utc) - keep
    except OverflowError:
        raise InvalidArgumentError(
            _("Invalid --keep value {value!r}: it reaches back before the year 1; use a shorter window such as "
              "180d or 26w.").format(value=text)) from None
    return keep


@dataclass
class RotationCandidate:
    """A partition that the keep window has passed, and where its archive goes."""

    partition: Partition
    archive_name: str
    location: str
    # Locations of the earlier archives or manifests that took the names before archive_name.
    taken_files: list[str] = field(default_factory=list)


@dataclass
class RotationOutcome:
    """Outcome of rotating one candidate partition."""

    partition: str
    rows: int
    location: str | None = None
    # The earlier files that took the names before the archive's, as in RotationCandidate.
    taken_files: list[str] = field(default_factory=list)
    archive_bytes: int = 0
    released_bytes: int = 0
    dropped: bool = False
    error: str | None = None


@dataclass
class RotationResult:
    """The result of ``rotate``: the cutoff and one outcome per candidate partition."""

    cutoff: datetime
    dry_run: bool
    outcomes: list[RotationOutcome] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(outcome.error for outcome in self.outcomes)


def rotation_candidates(partitions: list[Partition], keep: timedelta, now: datetime) -> list[Partition]:
    """Select the partitions whose whole range ends at or before ``now - keep``.

    The default partition, partitions with an open bound and the newest
    partition that has started are never selected.
    """
    cutoff = now - keep
    bounded = [p for p in partitions if not p.is_default and p.lower is not None and p.upper is not None]
    started = sorted((p for p in bounded if p.lower <= now), key=lambda p: p.upper)
    protected = {p.name for p in started[-KEEP_NEWEST:]}
    return [p for p in bounded if p.upper <= cutoff and p.name not in protected]


# Most numbered names tried for the archives of one partition name.
MAX_ARCHIVE_NUMBER = 1000


def archive_name(schema: str, partition: str, archive_format: ArchiveFormat, number: int = 1) -> str:
    """Return the archive name of a partition: ``SCHEMA.PARTITION.FORMAT``, then ``SCHEMA.PARTITION.2.FORMAT`` on."""
    if number == 1:
        return f"{schema}.{partition}.{archive_format.value}"
    return f"{schema}.{partition}.{number}.{archive_format.value}"


def manifest_name(name: str) -> str:
    return f"{name}.manifest.json"


@dataclass
class ArchiveSlot:
    """A free archive name and the locations of the files that took the names tried before it."""

    name: str
    taken_files: list[str]


def taking_file(destination: Destination, name: str) -> str | None:
    """Return the location of the archive or manifest that takes the archive name ``name``, or None if both are free."""
    for file_name in (name, manifest_name(name)):
        if destination.exists(file_name):
            return destination.describe(file_name)
    return None


def free_archive_name(destination: Destination, schema: str, partition: str, archive_format: ArchiveFormat,
                      after: str | None = None) -> ArchiveSlot:
    """Find the first archive name, after ``after`` if given, that neither an archive nor a manifest has.

    A partition dropped by rotate can be created again by ``maintain`` for a
    late event, and two databases can rotate into one folder, so the usual
    name may belong to an earlier archive, which must never be replaced.
    """
    names = [archive_name(schema, partition, archive_format, number) for number in range(1, MAX_ARCHIVE_NUMBER + 1)]
    taken_files = []
    for name in names[names.index(after) + 1 if after in names else 0:]:
        existing = taking_file(destination, name)
        if existing is None:
            return ArchiveSlot(name, taken_files)
        taken_files.append(existing)
    raise ArchiveError(_("Archives {first} to {last} all exist; move older archives of {partition} elsewhere.")
                       .format(first=destination.describe(names[0]), last=names[-1], partition=partition))


def plan_rotation(connection: psycopg.Connection, schema: str, keep: timedelta, destination: Destination | None,
                  archive_format: ArchiveFormat, now: datetime | None = None) -> list[RotationCandidate]:
    """List the partitions the next rotate would archive and drop, and where their archives would go.

    With a destination, each archive gets the first name that is free there.
    """
    now = now or datetime.now(timezone.utc)
    candidates = []
    for partition in rotation_candidates(list_partitions(connection, schema), keep, now):
        usual = archive_name(schema, partition.name, archive_format)
        if destination is None:
            candidates.append(RotationCandidate(partition, usual, usual))
            continue
        slot = free_archive_name(destination, schema, partition.name, archive_format)
        candidates.append(RotationCandidate(partition, slot.name, destination.describe(slot.name), slot.taken_files))
    return candidates


def rotate(connection: psycopg.Connection, schema: str, keep: timedelta, destination: Destination,
           archive_format: ArchiveFormat, *, dry_run: bool = False, now: datetime | None = None,
           lock_timeout_seconds: float = 10.0) -> RotationResult:
    """Archive and drop each partition past the keep window, one transaction per partition.

    A partition whose archive fails at any step is kept, and the error is
    recorded in its outcome; the other partitions are still processed. A dry
    run checks the role and the destination as a real run does, so that it
    fails the same way.
    """
    now = now or datetime.now(timezone.utc)
    # Only the log's owner, a member of it or a superuser can drop partitions,
    # so any other role would fail on every partition.
    require_log_owner(connection, schema, "rotate")
    destination.check()
    result = RotationResult(cutoff=now - keep, dry_run=dry_run)
    for candidate in plan_rotation(connection, schema, keep, destination, archive_format, now):
        outcome = RotationOutcome(candidate.partition.name, candidate.partition.rows, candidate.location,
                                  list(candidate.taken_files))
        result.outcomes.append(outcome)
        if dry_run:
            continue
        try:
            _rotate_one(connection, schema, candidate, destination, archive_format, outcome, lock_timeout_seconds)
        except (AuditctlError, psycopg.Error, OSError) as exc:
            outcome.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            # INFO, because the command prints the error itself once the run ends.
            logger.info("kept partition %s.%s: %s", schema, candidate.partition.name, outcome.error)
    return result


def _rotate_one(connection: psycopg.Connection, schema: str, candidate: RotationCandidate,
                destination: Destination, archive_format: ArchiveFormat, outcome: RotationOutcome,
                lock_timeout_seconds: float) -> None:
    partition = candidate.partition
    table = sql.Identifier(schema, partition.name)
    with connection.transaction():
        connection.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(f"{int(lock_timeout_seconds * 1000)}ms"))
        # The DDL below is auditctl's own; the ROTATE event records it instead of DDL events.
        connection.execute("SELECT pg_catalog.set_config('auditctl.internal', 'on', true)")
        # SHARE blocks writes to this partition but not reads, until commit.
        connection.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(table))
        expected = partition_contents(connection, schema, partition.name)
        released = connection.execute("SELECT pg_catalog.pg_total_relation_size(%s::regclass)",
                                      (table.as_string(connection),)).fetchone()[0]
        with _scratch_file(destination, candidate.archive_name) as scratch:
            sha256, size = write_archive(connection, schema, partition.name, archive_format, scratch)
            name, location, taken_since_plan = _store_archive(destination, scratch, candidate.archive_name, schema,
                                                              partition.name, archive_format)
        manifest = Manifest(
            partition=f"{schema}.{partition.name}", format=archive_format.value, file=name,
            rows=expected.rows, id_sum=expected.id_sum, first_event_at=expected.first_event_at,
            last_event_at=expected.last_event_at, range_from=partition.lower.isoformat(),
            range_to=partition.upper.isoformat(), sha256=sha256, bytes=size,
            created_at=datetime.now(timezone.utc).isoformat())
        stored = [name]
        try:
            _verify(destination, name, archive_format, manifest)
            _store_manifest(destination, name, manifest)
            stored.append(manifest_name(name))
            connection.execute(sql.SQL("ALTER TABLE {} DETACH PARTITION {}").format(
                sql.Identifier(schema, "events"), table))
            connection.execute(sql.SQL("DROP TABLE {}").format(table))
            log_event(connection, schema, "ROTATE", user_id=None, entity_type=f"{schema}.events",
                      details={"partition": partition.name, "rows": expected.rows, "archive": location,
                               "sha256": sha256, "bytes": size, "range_from": manifest.range_from,
                               "range_to": manifest.range_to, "auditctl_version": __version__})
        except BaseException:
            # The transaction rolls back and keeps the partition. Files left behind would hold
            # the same events as the next run's archive, or be a bad archive, so they go too.
            # NOTE: a failed COMMIT below leaves them, since the partition may be gone by then.
            _remove_stored(destination, stored)
            raise
    logger.info("archived partition %s.%s to %s and dropped it (rows: %d)", schema, partition.name, location,
                expected.rows)
    outcome.location = location
    outcome.taken_files = candidate.taken_files + taken_since_plan
    outcome.archive_bytes = size
    outcome.released_bytes = released
    outcome.dropped = True


def _remove_stored(destination: Destination, names: list[str]) -> None:
    """Delete the files that a failed rotation stored, and log a warning for each one that stays."""
    for name in names:
        try:
            destination.remove(name)
        except Exception as exc:
            # An S3 store that stopped responding also fails here. The rotation's own error is the one to raise.
            logger.warning("could not remove %s after the failed rotation; delete it before the next rotate, "
                           "which would archive the same events again: %s", destination.describe(name), exc)


def _store_archive(destination: Destination, local: Path, name: str, schema: str, partition: str,
                   archive_format: ArchiveFormat) -> tuple[str, str, list[str]]:
    """Store ``local`` under ``name``, or the next free name if another rotation took it.

    The plan chose a free name, but another rotation into the same
    destination may have taken it since. Returns the name used, its location
    and the locations of the files that took the names tried before it.
    """
    taken_files: list[str] = []
    while True:
        try:
            return name, destination.store(local, name), taken_files
        except ArchiveExistsError:
            logger.warning("%s appeared during rotation; trying the next free name", destination.describe(name))
            taken_files.append(destination.describe(name))
            slot = free_archive_name(destination, schema, partition, archive_format, after=name)
            taken_files.extend(slot.taken_files)
            name = slot.name


@contextlib.contextmanager
def _scratch_file(destination: Destination, name: str):
    """Yield a scratch path for an archive; remove it on every exit unless it was stored.

    The file has tempfile's mode 0600, whatever the umask, and an archive stored in a folder keeps it.
    """
    handle = tempfile.NamedTemporaryFile(dir=destination.scratch_dir(), prefix=f".{name}.", suffix=".tmp",
                                         delete=False)
    handle.close()
    path = Path(handle.name)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)


def _verify(destination: Destination, name: str, archive_format: ArchiveFormat, manifest: Manifest) -> None:
    """Read the stored archive back and compare it with the partition; raise ArchiveError on any difference."""
    with destination.fetch(name) as stored:
        digest = file_sha256(stored)
        if digest != manifest.sha256:
            raise ArchiveError(_("Archive {location} failed verification: its SHA-256 is {actual}, "
                                 "expected {expected}.").format(location=destination.describe(name),
                                                                actual=digest, expected=manifest.sha256))
        found = read_contents(stored, archive_format)
    mismatches = []
    if found.rows != manifest.rows:
        mismatches.append(f"rows {found.rows} != {manifest.rows}")
    if found.id_sum != manifest.id_sum:
        mismatches.append(f"id sum {found.id_sum} != {manifest.id_sum}")
    if not same_time(found.first_event_at, manifest.first_event_at):
        mismatches.append(f"first event {found.first_event_at} != {manifest.first_event_at}")
    if not same_time(found.last_event_at, manifest.last_event_at):
        mismatches.append(f"last event {found.last_event_at} != {manifest.last_event_at}")
    if mismatches:
        raise ArchiveError(_("Archive {location} failed verification: {differences}.").format(
            location=destination.describe(name), differences="; ".join(mismatches)))


def _store_manifest(destination: Destination, name: str, manifest: Manifest) -> None:
    with _scratch_file(destination, manifest_name(name)) as scratch:
        scratch.write_bytes(manifest_bytes(manifest))
        destination.store(scratch, manifest_name(name))
