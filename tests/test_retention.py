"""Partition maintenance, rotation with verified archives, and the crontab line, on a real server."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import logging
import os
import socket
import stat
import subprocess
import threading
from datetime import datetime, timedelta, timezone

import pytest

from auditctl import render
from auditctl.audit.archive import ArchiveError, ArchiveExistsError, ArchiveFormat
from auditctl.audit.destinations import LocalDestination, S3Destination
from auditctl.audit.install import install
from auditctl.audit.partitions import Interval, list_partitions, maintain
from auditctl.audit.retention import rotate
from conftest import REPO_ROOT
from helpers import events, table_owner_dsn

NOW = datetime.now(timezone.utc)


def month_start(months_back: int) -> datetime:
    """Return the first instant (UTC) of the month ``months_back`` months before the current one."""
    year, month = NOW.year, NOW.month - months_back
    while month < 1:
        month += 12
        year -= 1
    return datetime(year, month, 1, tzinfo=timezone.utc)


# A keep window whose cutoff falls inside the month 7 back, so that rotate
# takes the partitions of months 9 and 8 back and keeps month 7 back.
KEEP_DAYS = (NOW - month_start(7)).days
KEEP = f"{KEEP_DAYS}d"


def add_events(connection, start: datetime, count: int, user: str = "u1") -> None:
    """Insert ``count`` application events one minute apart from ``start``, as the schema owner."""
    connection.execute(
        """INSERT INTO audit.events (occurred_at, user_id, action, entity_type, entity_id, details)
           SELECT %s + make_interval(mins => g), %s, 'LOGIN', 'public.users', g::text,
                  jsonb_build_object('n', g, 'note', 'Привет, "мир"')
           FROM generate_series(0, %s - 1) g""", (start, user, count))


def partition_rows(connection) -> dict[str, int]:
    return {p.name: p.rows for p in list_partitions(connection, "audit")}


@pytest.fixture
def old_log(db):
    """A log with 30 events in each of the months 9, 8 and 7 back, moved into monthly partitions."""
    with db.connect() as connection:
        install(connection, "audit", [])
        for months_back in (9, 8, 7):
            add_events(connection, month_start(months_back) + timedelta(days=2), 30)
        maintain(connection, "audit")
    return db


def old_names() -> list[str]:
    return [f"events_p{month_start(m):%Y_%m}" for m in (9, 8, 7)]


def test_maintain_moves_default_rows(db, cli):
    with db.connect() as connection:
        install(connection, "audit", [])
        add_events(connection, month_start(9) + timedelta(days=2), 12)
        add_events(connection, month_start(5) + timedelta(days=20), 7)
        assert partition_rows(connection)["events_default"] == 19

    first = cli("maintain", dsn=db.dsn)
    assert first.exit_code == 0, first.stderr
    assert "Moved 19 events out of the default partition." in first.stdout

    with db.connect() as connection:
        rows = partition_rows(connection)
        assert rows["events_default"] == 0
        assert rows[f"events_p{month_start(9):%Y_%m}"] == 12
        assert rows[f"events_p{month_start(5):%Y_%m}"] == 7
        assert len(events(connection)) == 19
        # VACUUM removed the moved rows' pages, so status does not show their size.
        assert connection.execute("SELECT pg_relation_size('audit.events_default')").fetchone()[0] == 0


def _index_sizes(connection, partition: str) -> dict[str, int]:
    return dict(connection.execute(
        """SELECT c.relname, pg_relation_size(c.oid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indrelid = %s::regclass""", (f"audit.{partition}",)).fetchall())


def _partition_comment(connection, partition: str) -> str | None:
    return connection.execute("SELECT obj_description(%s::regclass, 'pg_class')",
                              (f"audit.{partition}",)).fetchone()[0]


def test_maintain_packs_ended_partition_indexes(db, cli):
    past = f"events_p{month_start(2):%Y_%m}"
    with db.connect() as connection:
        install(connection, "audit", [])
        add_events(connection, month_start(2), 1)
        # Within that month nothing has ended yet: the partition is created and left as it is.
        maintain(connection, "audit", now=month_start(2) + timedelta(days=3))
        assert _partition_comment(connection, past) is None
        # Events of 20 users, each naming a row by a key written as text. In text order ("1", "10", "100", ...)
        # each key lands between earlier ones, so pages of the index by row split in halves that stay half full.
        connection.execute(
            """INSERT INTO audit.events (occurred_at, user_id, action, entity_type, entity_id)
               SELECT %s + make_interval(secs => g), 'user-' || (g %% 20), 'LOGIN', 'public.users', g::text
               FROM generate_series(1, 30000) g""", (month_start(2),))
        before = _index_sizes(connection, past)

    first = cli("maintain", dsn=db.dsn)
    second = cli("maintain", dsn=db.dsn)

    assert first.exit_code == 0, first.stderr
    assert (f"Rebuilt the indexes of partition {past}, whose period has ended, so that they take less space."
            in " ".join(first.stdout.split()))
    assert second.exit_code == 0, second.stderr
    assert "Rebuilt" not in second.stdout
    with db.connect() as connection:
        after = _index_sizes(connection, past)
        assert _partition_comment(connection, past).startswith("auditctl: indexes rebuilt after the period ended")
        current = f"events_p{month_start(0):%Y_%m}"
        assert _partition_comment(connection, current) is None
        # No DDL event records auditctl's own upkeep.
        assert events(connection, where="action = 'DDL'", system=True) == []
    row_index = next(name for name in before if "entity" in name)
    assert after[row_index] < before[row_index] * 0.75
    assert all(after[name] <= before[name] for name in before)


def test_maintain_is_idempotent(db, cli):
    with db.connect() as connection:
        install(connection, "audit", [])
        add_events(connection, month_start(4), 3)
    assert cli("maintain", "--ahead", "5", dsn=db.dsn).exit_code == 0
    with db.connect() as connection:
        before = [(p.name, p.lower, p.upper, p.rows) for p in list_partitions(connection, "audit")]

    second = cli("maintain", "--ahead", "5", dsn=db.dsn)
    assert second.exit_code == 0, second.stderr
    assert "Partitions are up to date." in second.stdout
    with db.connect() as connection:
        after = [(p.name, p.lower, p.upper, p.rows) for p in list_partitions(connection, "audit")]
    assert after == before
    # The current month and five after it, plus the moved month and the default partition.
    assert len(after) == 8


def test_quiet_maintain_prints_nothing_routine(db, cli):
    with db.connect() as connection:
        install(connection, "audit", [])
        add_events(connection, month_start(4), 3)

    first = cli("--quiet", "maintain", dsn=db.dsn)
    second = cli("maintain", "--quiet", dsn=db.dsn)

    assert first.exit_code == 0, first.stderr
    assert (first.stdout, first.stderr) == ("", "")
    assert second.exit_code == 0, second.stderr
    assert (second.stdout, second.stderr) == ("", "")


@pytest.mark.parametrize(("interval", "length"), [
    (Interval.daily, timedelta(days=1)),
    (Interval.weekly, timedelta(weeks=1)),
], ids=["daily", "weekly"])
def test_maintain_interval_partitions(db, interval, length):
    # A date past the monthly partitions that install creates.
    later = datetime(2031, 3, 12, 15, 0, tzinfo=timezone.utc)
    with db.connect() as connection:
        install(connection, "audit", [])
        result = maintain(connection, "audit", ahead=4, interval=interval, now=later)
        created = [p for p in list_partitions(connection, "audit") if p.name in result.created]
    assert len(created) == 5
    for partition in created:
        assert partition.upper - partition.lower == length
    assert created[0].lower <= later < created[0].upper
    if interval is Interval.weekly:
        assert all(p.lower.weekday() == 0 for p in created)


@pytest.mark.parametrize("interval", ["daily", "weekly"])
def test_maintain_names_periods_other_length_covers(db, cli, interval):
    with db.connect() as connection:
        install(connection, "audit", [])
        before = partition_rows(connection)
    result = cli("maintain", "--ahead", "3", "--interval", interval, dsn=db.dsn)
    again = cli("maintain", "--ahead", "3", "--interval", "monthly", dsn=db.dsn)
    with db.connect() as connection:
        after = partition_rows(connection)
    assert result.exit_code == 0, result.stderr
    # The monthly partitions of install cover the next four days or weeks, except for the days of this week
    # before the current month, if it began mid-week: those get a partition of their own.
    added = set(after) - set(before)
    assert {name: rows for name, rows in after.items() if name in before} == before
    assert all(name < f"events_p{month_start(0):%Y_%m}" for name in added), added
    assert len(added) <= (1 if interval == "weekly" else 0)
    assert "4 requested periods, up to " in result.stdout
    assert "overlap existing partitions of another length" in result.stdout
    assert "Partitions are up to date." not in result.stdout
    assert again.stdout.strip() == "Partitions are up to date."


def _uncovered_times(connection) -> list[tuple[datetime, datetime]]:
    """The ranges between the first and the last partition that no partition covers."""
    bounded = sorted((p.lower, p.upper) for p in list_partitions(connection, "audit", count_rows=False)
                     if p.lower is not None)
    return [(upper, lower) for (_, upper), (lower, _) in zip(bounded, bounded[1:]) if upper < lower]


def _monthly_end_midweek(connection) -> datetime:
    """Return the end of the last monthly partition, adding months until it falls on a day other than Monday.

    The first weekly period after it then overlaps the last monthly partition.
    """
    def last_end() -> datetime:
        return max(p.upper for p in list_partitions(connection, "audit", count_rows=False) if p.upper)

    while last_end().weekday() == 0:
        maintain(connection, "audit", ahead=1, now=last_end())
    return last_end()


def test_interval_change_leaves_no_gap(db):
    """Weekly partitions after monthly ones: the days between the last month's end and a Monday get a partition."""
    with db.connect() as connection:
        install(connection, "audit", [])
        last_month_end = _monthly_end_midweek(connection)
        result = maintain(connection, "audit", ahead=3, interval=Interval.weekly,
                          now=last_month_end - timedelta(days=1))
        gap_name = f"events_p{last_month_end:%Y_%m_%d}"
        add_events(connection, last_month_end + timedelta(hours=1), 1)
        partitions = {p.name: p for p in list_partitions(connection, "audit")}
        assert _uncovered_times(connection) == []

    assert gap_name in result.created
    gap = partitions[gap_name]
    assert gap.lower == last_month_end
    assert gap.upper.weekday() == 0
    assert gap.rows == 1
    assert partitions["events_default"].rows == 0


def test_maintain_moves_rows_of_partly_covered_period(db, cli):
    """Rows of a week that a monthly partition covers only in part move into a partition of the rest."""
    with db.connect() as connection:
        install(connection, "audit", [])
        last_month_end = _monthly_end_midweek(connection)
        add_events(connection, last_month_end + timedelta(hours=2), 5)
        assert partition_rows(connection)["events_default"] == 5

    result = cli("maintain", "--interval", "weekly", "--ahead", "0", dsn=db.dsn)

    assert result.exit_code == 0, result.stderr
    assert "Moved 5 events out of the default partition." in result.stdout
    with db.connect() as connection:
        rows = partition_rows(connection)
        assert rows["events_default"] == 0
        assert rows[f"events_p{last_month_end:%Y_%m_%d}"] == 5
        assert _uncovered_times(connection) == []


def test_maintain_rejects_bad_ahead(db, cli):
    with db.connect() as connection:
        install(connection, "audit", [])
        before = partition_rows(connection)
    result = cli("maintain", "--ahead", "1000", dsn=db.dsn)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "--ahead 1000" in result.stderr
    with db.connect() as connection:
        assert partition_rows(connection) == before


def test_maintain_pg_partman_needs_extension(db, cli):
    with db.connect() as connection:
        install(connection, "audit", [])
        before = partition_rows(connection)
    result = cli("maintain", "--pg-partman", dsn=db.dsn)
    assert result.exit_code == 2
    assert "pg_partman is not installed" in result.stderr
    with db.connect() as connection:
        assert partition_rows(connection) == before


def test_rotate_archives_then_drops(old_log, cli, tmp_path):
    result = cli("rotate", "--keep", KEEP, "--archive-dir", str(tmp_path), dsn=old_log.dsn)
    assert result.exit_code == 0, result.stderr

    with old_log.connect() as connection:
        rows = partition_rows(connection)
        rotate_events = events(connection, where="action = 'ROTATE'")
    for name in old_names()[:2]:
        assert name not in rows
        archive = tmp_path / f"audit.{name}.csv.gz"
        manifest = json.loads((tmp_path / f"audit.{name}.csv.gz.manifest.json").read_text())
        assert manifest["rows"] == 30
        assert manifest["partition"] == f"audit.{name}"
        with gzip.open(archive, "rt", encoding="utf-8", newline="") as handle:
            records = list(csv.DictReader(handle))
        assert len(records) == 30
        assert json.loads(records[0]["details"])["note"] == 'Привет, "мир"'
    assert "events_default" in rows
    assert f"events_p{NOW:%Y_%m}" in rows
    assert [e["details"]["partition"] for e in rotate_events] == old_names()[:2]
    assert list(tmp_path.glob(".*")) == []


def test_rotate_files_are_owner_only(old_log, cli, tmp_path):
    previous_umask = os.umask(0o022)
    try:
        result = cli("rotate", "--keep", KEEP, "--archive-dir", str(tmp_path), dsn=old_log.dsn)
    finally:
        os.umask(previous_umask)

    assert result.exit_code == 0, result.stderr
    written = sorted(tmp_path.iterdir())
    assert len(written) == 4
    assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in written} == {
        path.name: 0o600 for path in written}


@pytest.mark.parametrize("archive_format", [ArchiveFormat.jsonl_zst, ArchiveFormat.parquet],
                         ids=["jsonl.zst", "parquet"])
def test_rotate_other_formats(old_log, cli, tmp_path, archive_format):
    result = cli("rotate", "--keep", KEEP, "--archive-dir", str(tmp_path), "--format", archive_format.value,
                 dsn=old_log.dsn)
    assert result.exit_code == 0, result.stderr
    archive = tmp_path / f"audit.{old_names()[0]}.{archive_format.value}"
    if archive_format is ArchiveFormat.parquet:
        import pyarrow.parquet as pq
        table = pq.read_table(archive)
        assert table.num_rows == 30
        assert str(table.schema.field("occurred_at").type) == "timestamp[us, tz=UTC]"
        assert json.loads(table.column("details")[0].as_py())["n"] == 0
    else:
        import zstandard
        text = zstandard.ZstdDecompressor().stream_reader(archive.open("rb")).read().decode()
        records = [json.loads(line) for line in text.splitlines()]
        assert len(records) == 30
        assert records[0]["details"]["note"] == 'Привет, "мир"'


def test_rotate_dry_run_changes_nothing(old_log, cli, tmp_path):
    with old_log.connect() as connection:
        before = partition_rows(connection)
    result = cli("rotate", "--keep", KEEP, "--archive-dir", str(tmp_path), "--dry-run", dsn=old_log.dsn)
    assert result.exit_code == 0, result.stderr
    assert f"Would archive 30 events of {old_names()[0]}" in result.stdout
    with old_log.connect() as connection:
        assert partition_rows(connection) == before
    assert list(tmp_path.iterdir()) == []


def recreate_first_partition(database) -> None:
    """Add a late event to the oldest rotated month, so that ``maintain`` creates its partition again."""
    with database.connect() as connection:
        add_events(connection, month_start(9) + timedelta(days=5), 1, user="late")
        maintain(connection, "audit")
        assert partition_rows(connection)[old_names()[0]] == 1


def rotate_into_new_folder(database, cli, folder) -> None:
    """Create ``folder`` and rotate the old partitions of ``database`` into it."""
    folder.mkdir()
    first = cli("rotate", "--keep", KEEP, "--archive-dir", str(folder), dsn=database.dsn)
    assert first.exit_code == 0, first.stderr


def test_rotate_keeps_earlier_archive_of_name(old_log, cli, tmp_path):
    archive_dir = tmp_path / "archive"
    rotate_into_new_folder(old_log, cli, archive_dir)
    name = old_names()[0]
    earlier = {path.name: path.read_bytes() for path in archive_dir.iterdir()}
    recreate_first_partition(old_log)

    dry_run = cli("rotate", "--keep", KEEP, "--archive-dir", str(archive_dir), "--dry-run", dsn=old_log.dsn)
    second = cli("rotate", "--keep", KEEP, "--archive-dir", str(archive_dir), dsn=old_log.dsn)

    renamed = archive_dir / f"audit.{name}.2.csv.gz"
    for result in (dry_run, second):
        assert result.exit_code == 0, result.stderr
        assert f"An earlier archive file {archive_dir.resolve() / f'audit.{name}.csv.gz'} exists and is kept" \
            in result.stdout
        assert str(renamed) in result.stdout
    # The first archive and its manifest are untouched, byte for byte.
    assert {path.name: path.read_bytes() for path in archive_dir.iterdir() if path.name in earlier} == earlier
    manifest = json.loads((archive_dir / f"audit.{name}.2.csv.gz.manifest.json").read_text())
    assert (manifest["file"], manifest["rows"]) == (renamed.name, 1)
    with gzip.open(renamed, "rt", encoding="utf-8", newline="") as handle:
        assert [record["user_id"] for record in csv.DictReader(handle)] == ["late"]
    with old_log.connect() as connection:
        assert name not in partition_rows(connection)
        rotate_events = events(connection, where="action = 'ROTATE'")
    assert [e["details"]["archive"] for e in rotate_events if e["details"]["partition"] == name] == [
        str(archive_dir / f"audit.{name}.csv.gz"), str(renamed)]
    assert list(archive_dir.glob(".*")) == []


def test_rotate_skips_name_of_lone_manifest(old_log, tmp_path):
    name = f"audit.{old_names()[0]}.csv.gz"
    (tmp_path / f"{name}.manifest.json").write_text("{}")
    (tmp_path / f"audit.{old_names()[0]}.2.csv.gz").write_text("another database's archive")
    with old_log.connect() as connection:
        result = rotate(connection, "audit", timedelta(days=KEEP_DAYS), LocalDestination(tmp_path),
                        ArchiveFormat.csv_gz)
    assert not result.failed
    assert result.outcomes[0].location == str(tmp_path / f"audit.{old_names()[0]}.3.csv.gz")
    assert (tmp_path / f"{name}.manifest.json").read_text() == "{}"
    assert not (tmp_path / name).exists()
    assert (tmp_path / f"audit.{old_names()[0]}.2.csv.gz").read_text() == "another database's archive"


class RacingDestination(LocalDestination):
    """A local folder where another rotation writes the first chosen name just before this one stores its file."""

    raced = False

    def store(self, local, name):
        if not self.raced:
            self.raced = True
            (self.folder / name).write_text("written by another rotation")
        return super().store(local, name)


def test_rotate_never_replaces_racing_archive(old_log, tmp_path):
    with old_log.connect() as connection:
        result = rotate(connection, "audit", timedelta(days=KEEP_DAYS), RacingDestination(tmp_path),
                        ArchiveFormat.csv_gz)
    assert not result.failed
    name = old_names()[0]
    assert (tmp_path / f"audit.{name}.csv.gz").read_text() == "written by another rotation"
    assert result.outcomes[0].location == str(tmp_path / f"audit.{name}.2.csv.gz")
    assert json.loads((tmp_path / f"audit.{name}.2.csv.gz.manifest.json").read_text())["rows"] == 30


def test_rotate_records_absolute_archive_path(old_log, cli, tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "archive").mkdir()
    result = cli("rotate", "--keep", KEEP, "--archive-dir", "../archive", dsn=old_log.dsn, cwd=tmp_path / "work")
    assert result.exit_code == 0, result.stderr
    with old_log.connect() as connection:
        rotate_events = events(connection, where="action = 'ROTATE'")
    assert [e["details"]["archive"] for e in rotate_events] == [
        str(tmp_path / "archive" / f"audit.{name}.csv.gz") for name in old_names()[:2]]


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["real", "dry-run"])
@pytest.mark.parametrize(("folder", "problem"), [
    ("file", "is not a folder"),
    ("missing", "does not exist"),
    ("/proc/self", "is not writable"),
    ("/sys", "is not writable (Permission denied)"),
], ids=["file", "missing", "proc", "sys"])
def test_rotate_keeps_partition_when_dir_unusable(old_log, cli, tmp_path, folder, problem, dry_run):
    (tmp_path / "file").write_text("x")
    # /proc/self and /sys take no new files, not even from root, whose
    # permission checks always pass.
    archive_dir = tmp_path / folder
    with old_log.connect() as connection:
        before = partition_rows(connection)
    result = cli("rotate", "--keep", KEEP, "--archive-dir", str(archive_dir), *dry_run, dsn=old_log.dsn)
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"Archive folder {archive_dir} {problem}" in result.stderr
    assert "Would archive" not in result.stdout
    with old_log.connect() as connection:
        assert partition_rows(connection) == before
        assert events(connection, where="action = 'ROTATE'") == []


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["real", "dry-run"])
def test_rotate_rejects_role_not_owning_log(old_log, cli, tmp_path, dry_run):
    with table_owner_dsn(old_log) as other_dsn:
        with old_log.connect() as connection:
            before = partition_rows(connection)
        result = cli("rotate", "--keep", KEEP, "--archive-dir", str(tmp_path), *dry_run, dsn=other_dsn)
        with old_log.connect() as connection:
            after = partition_rows(connection)
    assert result.exit_code == 1, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert "owned by role postgres" in result.stderr
    assert "Run rotate as postgres" in result.stderr
    assert "Would archive" not in result.stdout
    assert after == before
    assert list(tmp_path.iterdir()) == []


class CorruptingDestination(LocalDestination):
    """A local folder whose stored files get one byte flipped, as a failing disk would."""

    def store(self, local, name):
        location = super().store(local, name)
        path = self.folder / name
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
        return location


@pytest.mark.parametrize("archive_format", list(ArchiveFormat), ids=[f.value for f in ArchiveFormat])
def test_rotate_keeps_partition_on_corrupt_archive(old_log, tmp_path, archive_format):
    with old_log.connect() as connection:
        before = partition_rows(connection)
        result = rotate(connection, "audit", timedelta(days=KEEP_DAYS), CorruptingDestination(tmp_path), archive_format)
        assert result.failed
        assert all("failed verification" in o.error for o in result.outcomes)
        assert partition_rows(connection) == before
        assert events(connection, where="action = 'ROTATE'") == []
    # Neither the bad archive nor a scratch file stays behind.
    assert list(tmp_path.iterdir()) == []


def test_rotate_lock_timeout_removes_archive(old_log, tmp_path, caplog):
    with old_log.connect() as connection, old_log.connect(autocommit=False) as reader:
        before = partition_rows(connection)
        # A long report on the events table makes the DETACH wait for its lock
        # until the timeout, after the archive and its manifest were stored.
        reader.execute("LOCK TABLE ONLY audit.events IN ACCESS SHARE MODE")
        result = rotate(connection, "audit", timedelta(days=KEEP_DAYS), LocalDestination(tmp_path),
                        ArchiveFormat.csv_gz, lock_timeout_seconds=0.5)
        reader.rollback()
        assert partition_rows(connection) == before
        assert events(connection, where="action = 'ROTATE'") == []
    assert [outcome.dropped for outcome in result.outcomes] == [False, False]
    assert all("lock timeout" in outcome.error for outcome in result.outcomes)
    # The next rotate would otherwise archive the same events again under a .2. name.
    assert list(tmp_path.iterdir()) == []
    # The command prints each kept partition's error, so a warning in the log would repeat it.
    assert [record.getMessage() for record in caplog.records
            if record.levelno >= logging.WARNING and "kept partition" in record.getMessage()] == []


class UnreachableDestination(LocalDestination):
    """A local folder that stops responding after the upload, as an S3 server that went down would."""

    def fetch(self, name):
        raise ArchiveError(f"Download of {self.describe(name)} for verification failed: connection refused")

    def remove(self, name):
        raise RuntimeError("Could not connect to the endpoint URL")


def test_rotate_survives_store_going_down(old_log, tmp_path, caplog):
    with old_log.connect() as connection:
        before = partition_rows(connection)
        result = rotate(connection, "audit", timedelta(days=KEEP_DAYS), UnreachableDestination(tmp_path),
                        ArchiveFormat.csv_gz)
        assert partition_rows(connection) == before
    assert len(result.outcomes) == 2
    assert all("for verification failed" in outcome.error for outcome in result.outcomes)
    left = [record.getMessage() for record in caplog.records if "could not remove" in record.getMessage()]
    assert len(left) == 2, caplog.text
    assert str(tmp_path / f"audit.{old_names()[0]}.csv.gz") in left[0]


def test_rotate_never_drops_newest_or_default(old_log, cli, tmp_path):
    with old_log.connect() as connection:
        # Drop every partition from the current month on, so the newest
        # partition that has started is month 7 back, long past any window.
        with connection.transaction():
            # Test set-up, not a change to record as a DDL event.
            connection.execute("SELECT set_config('auditctl.internal', 'on', true)")
            for partition in list_partitions(connection, "audit"):
                if partition.lower is not None and partition.lower >= month_start(0):
                    connection.execute(f'DROP TABLE audit."{partition.name}"')
        add_events(connection, NOW - timedelta(hours=1), 2)
    result = cli("rotate", "--keep", "1d", "--archive-dir", str(tmp_path), dsn=old_log.dsn)
    assert result.exit_code == 0, result.stderr
    with old_log.connect() as connection:
        rows = partition_rows(connection)
    assert old_names()[2] in rows
    assert old_names()[0] not in rows
    assert old_names()[1] not in rows
    # Two test rows and the two ROTATE events of this run.
    assert rows["events_default"] == 4


@pytest.mark.parametrize("arguments", [
    ["--keep", "soon", "--archive-dir", "."],
    ["--keep", "0d", "--archive-dir", "."],
    ["--keep", "10000000d", "--archive-dir", "."],
    ["--keep", KEEP],
    ["--keep", KEEP, "--archive-dir", ".", "--archive-s3", "s3://bucket"],
    ["--keep", KEEP, "--archive-s3", "http://bucket"],
], ids=["word", "zero", "before-year-one", "no-destination", "two-destinations", "not-s3"])
def test_rotate_rejects_bad_input(old_log, cli, arguments):
    with old_log.connect() as connection:
        before = partition_rows(connection)
    result = cli("rotate", *arguments, dsn=old_log.dsn)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith("Error: ")
    with old_log.connect() as connection:
        assert partition_rows(connection) == before


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """moto's S3 API in server mode on 127.0.0.1, and the environment that points boto3 at it."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    yield env
    server.stop()


def test_rotate_to_s3(old_log, cli, s3_server, tmp_path):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    bucket = f"archive-{old_log.name.replace('_', '-')}"
    client.create_bucket(Bucket=bucket)
    result = cli("rotate", "--keep", KEEP, "--archive-s3", f"s3://{bucket}/audit-log", env=s3_server,
                 dsn=old_log.dsn)
    assert result.exit_code == 0, result.stderr

    keys = sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"])
    name = old_names()[0]
    assert f"audit-log/audit.{name}.csv.gz" in keys
    assert f"audit-log/audit.{name}.csv.gz.manifest.json" in keys
    body = client.get_object(Bucket=bucket, Key=f"audit-log/audit.{name}.csv.gz")["Body"].read()
    records = list(csv.DictReader(io.StringIO(gzip.decompress(body).decode())))
    assert len(records) == 30
    with old_log.connect() as connection:
        assert name not in partition_rows(connection)


def test_rotate_names_files_in_the_way(old_log, cli, tmp_path):
    archive_dir = tmp_path / "archive"
    rotate_into_new_folder(old_log, cli, archive_dir)
    name = old_names()[0]
    # The first archive was moved away without its manifest, and a stray file takes the second name.
    (archive_dir / f"audit.{name}.csv.gz").unlink()
    (archive_dir / f"audit.{name}.2.csv.gz").write_bytes(b"stray")
    recreate_first_partition(old_log)

    dry_run = cli("rotate", "--keep", KEEP, "--archive-dir", str(archive_dir), "--dry-run", dsn=old_log.dsn)
    second = cli("rotate", "--keep", KEEP, "--archive-dir", str(archive_dir), dsn=old_log.dsn)

    folder = archive_dir.resolve()
    for result in (dry_run, second):
        assert result.exit_code == 0, result.stderr
        assert (f"Earlier archive files {folder / f'audit.{name}.csv.gz.manifest.json'}, "
                f"{folder / f'audit.{name}.2.csv.gz'} exist and are kept, so this archive gets a new name.") \
            in result.stdout
        assert str(folder / f"audit.{name}.3.csv.gz") in result.stdout
    assert (archive_dir / f"audit.{name}.2.csv.gz").read_bytes() == b"stray"


def test_rotate_to_s3_keeps_earlier_archive(old_log, cli, s3_server):
    import boto3

    client = boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="test", aws_secret_access_key="test")
    bucket = f"again-{old_log.name.replace('_', '-')}"
    client.create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/audit-log"
    first = cli("rotate", "--keep", KEEP, "--archive-s3", url, env=s3_server, dsn=old_log.dsn)
    assert first.exit_code == 0, first.stderr
    key = f"audit-log/audit.{old_names()[0]}.csv.gz"
    earlier = {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in (key, f"{key}.manifest.json")}
    recreate_first_partition(old_log)

    dry_run = cli("rotate", "--keep", KEEP, "--archive-s3", url, "--dry-run", env=s3_server, dsn=old_log.dsn)
    second = cli("rotate", "--keep", KEEP, "--archive-s3", url, env=s3_server, dsn=old_log.dsn)

    renamed = f"audit-log/audit.{old_names()[0]}.2.csv.gz"
    for result in (dry_run, second):
        assert result.exit_code == 0, result.stderr
        assert f"s3://{bucket}/{renamed}" in result.stdout
    assert {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in earlier} == earlier
    body = client.get_object(Bucket=bucket, Key=renamed)["Body"].read()
    assert [r["user_id"] for r in csv.DictReader(io.StringIO(gzip.decompress(body).decode()))] == ["late"]
    manifest = json.loads(client.get_object(Bucket=bucket, Key=f"{renamed}.manifest.json")["Body"].read())
    assert manifest["file"] == f"audit.{old_names()[0]}.2.csv.gz"
    with old_log.connect() as connection:
        rotate_events = events(connection, where="action = 'ROTATE'")
    assert rotate_events[-1]["details"]["archive"] == f"s3://{bucket}/{renamed}"


def moto_client(s3_server):
    """A boto3 S3 client of the moto server, for setting up and reading buckets apart from auditctl."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_server["AWS_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


@pytest.fixture
def race_bucket(old_log, s3_server, monkeypatch):
    """An empty bucket on the moto server, with boto3's variables set for an S3Destination made in the test."""
    for name, value in s3_server.items():
        monkeypatch.setenv(name, value)
    bucket = f"race-{old_log.name.replace('_', '-')}"
    moto_client(s3_server).create_bucket(Bucket=bucket)
    return bucket


def write_before_request(destination, operation, key, other_client, bucket) -> list[str]:
    """Make another writer store an object under ``key`` just before ``destination`` sends ``operation`` for it.

    The destination has checked that ``key`` is free by then. Returns a list
    that receives ``key`` once the other object is written.
    """
    raced: list[str] = []

    def write_first(params, **kwargs):
        if params["Key"] == key and not raced:
            other_client.put_object(Bucket=bucket, Key=key, Body=b"written by another rotation")
            raced.append(key)

    destination.client.meta.events.register(f"before-parameter-build.s3.{operation}", write_first)
    return raced


@pytest.mark.parametrize("operation", ["PutObject", "CompleteMultipartUpload"], ids=["single-part", "multipart"])
def test_rotate_s3_keeps_racing_archive(old_log, s3_server, race_bucket, operation):
    client = moto_client(s3_server)
    destination = S3Destination(f"s3://{race_bucket}/audit-log")
    if operation == "CompleteMultipartUpload":
        # Every file, however small, then goes up as a multipart upload of one part.
        destination.transfer_config.multipart_threshold = 1
    name = old_names()[0]
    key = f"audit-log/audit.{name}.csv.gz"
    raced = write_before_request(destination, operation, key, client, race_bucket)

    with old_log.connect() as connection:
        result = rotate(connection, "audit", timedelta(days=KEEP_DAYS), destination, ArchiveFormat.csv_gz)
        rotate_events = events(connection, where="action = 'ROTATE'")

    assert raced == [key]
    assert not result.failed, [outcome.error for outcome in result.outcomes]
    assert client.get_object(Bucket=race_bucket, Key=key)["Body"].read() == b"written by another rotation"
    renamed = f"s3://{race_bucket}/audit-log/audit.{name}.2.csv.gz"
    assert result.outcomes[0].location == renamed
    assert result.outcomes[0].taken_files == [f"s3://{race_bucket}/{key}"]
    manifest = client.get_object(Bucket=race_bucket, Key=f"audit-log/audit.{name}.2.csv.gz.manifest.json")
    assert json.loads(manifest["Body"].read())["rows"] == 30
    assert [e["details"]["archive"] for e in rotate_events if e["details"]["partition"] == name] == [renamed]
    # s3transfer aborts the multipart upload that the store refused to complete.
    assert client.list_multipart_uploads(Bucket=race_bucket).get("Uploads", []) == []


def test_rotate_s3_manifest_race_keeps_partition(old_log, s3_server, race_bucket, capsys):
    client = moto_client(s3_server)
    destination = S3Destination(f"s3://{race_bucket}/audit-log")
    name = old_names()[0]
    archive_key = f"audit-log/audit.{name}.csv.gz"
    manifest_key = f"{archive_key}.manifest.json"
    raced = write_before_request(destination, "PutObject", manifest_key, client, race_bucket)

    with old_log.connect() as connection:
        result = rotate(connection, "audit", timedelta(days=KEEP_DAYS), destination, ArchiveFormat.csv_gz)
        rows = partition_rows(connection)
        rotate_events = events(connection, where="action = 'ROTATE'")
    capsys.readouterr()
    render.print_rotation(result)
    printed = capsys.readouterr()

    assert raced == [manifest_key]
    # The CLI exits with status 1 when the result failed.
    assert result.failed
    assert result.outcomes[0].error == (f"s3://{race_bucket}/{manifest_key} already exists; auditctl never "
                                        "replaces an archive.")
    assert [line for line in printed.err.splitlines() if name in line] == [
        f"Error: Partition {name} was kept: {result.outcomes[0].error}"]
    assert client.get_object(Bucket=race_bucket, Key=manifest_key)["Body"].read() == b"written by another rotation"
    # The run deletes the archive that it stored, and nothing else.
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=race_bucket, Prefix=archive_key)["Contents"]]
    assert keys == [manifest_key]
    assert rows[name] == 30
    assert [e for e in rotate_events if e["details"]["partition"] == name] == []


class RejectConditionalWrites:
    """WSGI middleware that returns 501 NotImplemented to each PUT or POST carrying If-None-Match.

    Stores without conditional writes return this S3 error, which moto cannot
    be made to return. Every other request goes on to ``app``. ``requests``
    lists each request as (method, path, whether it carried If-None-Match).
    """

    BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NotImplemented</Code>'
            b"<Message>A header you provided implies functionality that is not implemented</Message>"
            b"<Header>If-None-Match</Header></Error>")

    def __init__(self, app):
        self.app = app
        self.requests: list[tuple[str, str, bool]] = []

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        conditional = "HTTP_IF_NONE_MATCH" in environ
        self.requests.append((method, environ.get("PATH_INFO", ""), conditional))
        if method not in ("PUT", "POST") or not conditional:
            return self.app(environ, start_response)
        # Read the unused body, so that the next request on this connection starts where it should.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length or environ.get("wsgi.input_terminated"):
            environ["wsgi.input"].read(length or -1)
        start_response("501 Not Implemented", [("Content-Type", "application/xml"),
                                               ("Content-Length", str(len(self.BODY)))])
        return [self.BODY]

    def rejected(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, conditional in self.requests
                if conditional and method in ("PUT", "POST")]


@pytest.fixture
def store_without_conditions(monkeypatch):
    """moto's S3 on 127.0.0.1 behind RejectConditionalWrites, with boto3's variables pointing at it.

    Yields the middleware, whose ``requests`` the test reads, and the environment for a CLI run.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    middleware = RejectConditionalWrites(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, middleware, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.server_address[1]}"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield middleware, env
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


FALLBACK_WARNING = "does not support conditional writes (If-None-Match: *)"


def destination_in_new_bucket(env: dict[str, str], bucket: str, multipart: bool):
    """Create ``bucket``; return a boto3 client and an S3Destination for it, forcing multipart uploads if asked."""
    client = moto_client(env)
    client.create_bucket(Bucket=bucket)
    destination = S3Destination(f"s3://{bucket}/audit-log")
    if multipart:
        # Every file, however small, then goes up as a multipart upload of one part.
        destination.transfer_config.multipart_threshold = 1
    return client, destination


@pytest.mark.parametrize("multipart", [False, True], ids=["single-part", "multipart"])
def test_rotate_s3_without_conditional_writes(old_log, store_without_conditions, caplog, multipart):
    middleware, env = store_without_conditions
    bucket = f"plain-{old_log.name.replace('_', '-')}"
    client, destination = destination_in_new_bucket(env, bucket, multipart)
    caplog.set_level(logging.WARNING, logger="auditctl")

    with old_log.connect() as connection:
        result = rotate(connection, "audit", timedelta(days=KEEP_DAYS), destination, ArchiveFormat.csv_gz)
        rows = partition_rows(connection)

    assert not result.failed, [outcome.error for outcome in result.outcomes]
    for name in old_names()[:2]:
        key = f"audit-log/audit.{name}.csv.gz"
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        manifest = json.loads(client.get_object(Bucket=bucket, Key=f"{key}.manifest.json")["Body"].read())
        assert hashlib.sha256(body).hexdigest() == manifest["sha256"]
        assert len(list(csv.DictReader(io.StringIO(gzip.decompress(body).decode())))) == 30
        assert name not in rows
    # Only the first upload tries the condition: two partitions, each an archive and a manifest.
    expected_method = "POST" if multipart else "PUT"
    assert middleware.rejected() == [(expected_method, f"/{bucket}/audit-log/audit.{old_names()[0]}.csv.gz")]
    warnings = [record for record in caplog.records if FALLBACK_WARNING in record.getMessage()]
    assert len(warnings) == 1, caplog.text
    assert warnings[0].levelno == logging.WARNING
    assert env["AWS_ENDPOINT_URL"] in warnings[0].getMessage()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("multipart", [False, True], ids=["single-part", "multipart"])
def test_s3_fallback_still_checks_key(store_without_conditions, tmp_path, multipart):
    middleware, env = store_without_conditions
    bucket = f"taken-{'multipart' if multipart else 'single'}"
    client, destination = destination_in_new_bucket(env, bucket, multipart)
    first = tmp_path / "first.csv.gz"
    first.write_bytes(b"first archive")
    destination.store(first, "first.csv.gz")
    assert not destination.conditional_writes
    client.put_object(Bucket=bucket, Key="audit-log/taken.csv.gz", Body=b"written by another rotation")
    second = tmp_path / "taken.csv.gz"
    second.write_bytes(b"second archive")
    requests_before = len(middleware.requests)

    with pytest.raises(ArchiveExistsError, match="already exists"):
        destination.store(second, "taken.csv.gz")
    store_requests = [method for method, _path, _conditional in middleware.requests[requests_before:]]

    assert client.get_object(Bucket=bucket, Key="audit-log/first.csv.gz")["Body"].read() == b"first archive"
    assert client.get_object(Bucket=bucket, Key="audit-log/taken.csv.gz")["Body"].read() == \
        b"written by another rotation"
    assert second.read_bytes() == b"second archive"
    # The check was the only request: a HEAD, and no upload.
    assert store_requests == ["HEAD"]


def test_rotate_cli_shows_fallback_warning_once(old_log, cli, store_without_conditions):
    middleware, env = store_without_conditions
    client = moto_client(env)
    bucket = f"shown-{old_log.name.replace('_', '-')}"
    client.create_bucket(Bucket=bucket)

    result = cli("rotate", "--keep", KEEP, "--archive-s3", f"s3://{bucket}/audit-log", env=env, dsn=old_log.dsn)

    assert result.exit_code == 0, result.stderr
    assert result.stderr.count(FALLBACK_WARNING) == 1, result.stderr
    keys = sorted(item["Key"] for item in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == sorted(f"audit-log/audit.{name}.csv.gz{suffix}"
                          for name in old_names()[:2] for suffix in ("", ".manifest.json"))
    assert len(middleware.rejected()) == 1


def test_rotate_to_missing_bucket_keeps_partitions(old_log, cli, s3_server):
    with old_log.connect() as connection:
        before = partition_rows(connection)
    result = cli("rotate", "--keep", KEEP, "--archive-s3", "s3://no-such-bucket/x", env=s3_server,
                 dsn=old_log.dsn)
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert (f"S3 bucket no-such-bucket does not exist at {s3_server['AWS_ENDPOINT_URL']}; create it or correct "
            "the bucket in --archive-s3.") in result.stderr
    with old_log.connect() as connection:
        assert partition_rows(connection) == before


def test_status_shows_partitions_and_next_rotate(old_log, cli):
    result = cli("status", "--format", "json", "--keep", KEEP, dsn=old_log.dsn)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    listed = {p["name"]: p for p in report["partition_list"]}
    first = listed[old_names()[0]]
    assert first["rows"] == 30
    assert first["bytes"] > 0
    assert datetime.fromisoformat(first["from"]) == month_start(9)
    assert datetime.fromisoformat(first["to"]) == month_start(8)
    assert listed["events_default"]["default"] is True
    assert report["next_rotate"] == old_names()[:2]

    table = cli("status", "--keep", KEEP, dsn=old_log.dsn)
    assert table.exit_code == 0, table.stderr
    assert old_names()[0] in table.stdout
    assert "archive and drop" in table.stdout


def test_cron_install_writes_one_line(db, cli, tmp_path):
    crontab = tmp_path / "crontab"
    crontab.write_text("MAILTO=dba@example.com\n0 1 * * * /usr/bin/backup\n")
    for _attempt in range(2):
        result = cli("cron", "maintain", "--crontab-file", str(crontab), "--interval", "weekly",
                     "--schedule", "5 4 * * *", "--dsn", "host=127.0.0.1 dbname=app", cwd=tmp_path)
        assert result.exit_code == 0, result.stderr
    lines = crontab.read_text().splitlines()
    assert lines[:2] == ["MAILTO=dba@example.com", "0 1 * * * /usr/bin/backup"]
    assert len(lines) == 3
    assert lines[2].startswith("5 4 * * * LANG=C.UTF-8 ")
    assert "-P -m auditctl --quiet maintain --ahead 3 --interval weekly --schema audit" in lines[2]
    assert lines[2].endswith(f">> {tmp_path / 'auditctl-maintain.log'} 2>&1 # auditctl maintain")
    assert "Replaced" in result.stdout


def test_cron_maintain_line_carries_locale(cli, tmp_path):
    crontab = tmp_path / "crontab"
    log_file = tmp_path / "logs" / "maintain.log"
    log_file.parent.mkdir()

    result = cli("cron", "maintain", "--crontab-file", str(crontab), "--dsn", "dbname=app",
                 "--log-file", str(log_file), env={"LANG": "ru_RU.UTF-8", "LC_MESSAGES": "ru_RU.UTF-8"})

    assert result.exit_code == 0, result.stderr
    line = crontab.read_text().strip()
    assert line.startswith("17 3 * * * LANG=ru_RU.UTF-8 LC_MESSAGES=ru_RU.UTF-8 ")
    assert line.endswith(f">> {log_file} 2>&1 # auditctl maintain")


def test_cron_maintain_checks_log_folder(cli, tmp_path):
    crontab = tmp_path / "crontab"
    result = cli("cron", "maintain", "--crontab-file", str(crontab), "--dsn", "dbname=app",
                 "--log-file", str(tmp_path / "missing" / "maintain.log"))

    assert result.exit_code == 2, result.stderr
    assert f"Cannot write the log file {tmp_path}/missing/maintain.log: folder {tmp_path}/missing does not exist" \
        in result.stderr
    assert not crontab.exists()


@pytest.mark.parametrize(("arguments", "env", "message"), [
    (["--schedule", "every day", "--dsn", "dbname=app"], {}, "Invalid --schedule 'every day'"),
    (["--dsn", "host=127.0.0.1 password=secret"], {}, "The DSN from --dsn contains a password"),
    ([], {"AUDITCTL_DSN": "postgresql://app:secret@127.0.0.1/app"}, "The DSN from AUDITCTL_DSN contains a password"),
    ([], {}, "No DSN for the crontab line: pass --dsn or set AUDITCTL_DSN or DATABASE_URL"),
    ([], {"PGHOST": "127.0.0.1", "PGDATABASE": "app"}, "No DSN for the crontab line"),
    (["--dsn", "host=127.0.0.1 nosuchkey=1"], {}, "Invalid DSN from --dsn"),
], ids=["schedule", "password", "env-password", "no-dsn", "pg-variables", "bad-dsn"])
def test_cron_install_rejects_bad_input(cli, tmp_path, arguments, env, message):
    crontab = tmp_path / "crontab"
    result = cli("cron", "maintain", "--crontab-file", str(crontab), *arguments, env=env)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert message in result.stderr
    assert "secret" not in result.stderr
    assert not crontab.exists()


def test_cron_maintain_warns_of_shell_variables(cli, tmp_path, monkeypatch):
    for name in [name for name in os.environ if name.startswith("PG")]:
        monkeypatch.delenv(name)
    crontab = tmp_path / "crontab"
    arguments = ["cron", "maintain", "--crontab-file", str(crontab), "--dsn", "host=127.0.0.1 dbname=app user=app"]
    shell = {"PGPASSFILE": str(tmp_path / "pgpass"), "PGSSLMODE": "require", "PGUSER": "bob",
             "PGPASSWORD": "s3cret-pw"}

    plain = cli(*arguments)
    warned = cli(*arguments, env=shell)

    assert plain.exit_code == 0, plain.stderr
    assert "Warning" not in plain.stderr
    assert warned.exit_code == 0, warned.stderr
    # PGUSER is not named, because the DSN sets user.
    assert [line for line in warned.stderr.splitlines() if line.startswith("Warning: ")] == [
        "Warning: This shell sets PGPASSWORD, which cron does not pass to `auditctl maintain`, and auditctl never "
        "writes a password into the crontab; put the password in ~/.pgpass (mode 0600), or in a file named by "
        "passfile=FILE in the DSN.",
        "Warning: This shell sets PGPASSFILE, PGSSLMODE, which cron does not pass to `auditctl maintain`, so it "
        "would connect differently there; add passfile=…, sslmode=… to the DSN."]
    assert "s3cret-pw" not in crontab.read_text()
    assert "PGPASS" not in crontab.read_text()


@pytest.mark.parametrize(("crontab", "message"), [
    ("/sys/crontab", "Cannot write /sys/crontab: folder /sys is not writable (Permission denied)"),
    ("/proc/crontab", "Cannot write /proc/crontab: folder /proc is not writable"),
    ("{tmp}/missing/crontab", "Cannot write {tmp}/missing/crontab: folder {tmp}/missing does not exist"),
    ("{tmp}/latin1-crontab", "Cannot read the crontab file {tmp}/latin1-crontab: it is not UTF-8 text"),
], ids=["sys", "proc", "missing-folder", "not-utf8"])
def test_cron_install_to_unusable_file(cli, tmp_path, crontab, message):
    latin1 = tmp_path / "latin1-crontab"
    latin1.write_bytes("MAILTO=andré@example.com\n".encode("latin-1"))

    result = cli("cron", "maintain", "--crontab-file", crontab.format(tmp=tmp_path), "--dsn", "dbname=app")

    assert result.exit_code == 2, result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert result.stderr.startswith(f"Error: {message.format(tmp=tmp_path)}")
    assert [path.name for path in tmp_path.iterdir()] == ["latin1-crontab"]
    assert latin1.read_bytes() == "MAILTO=andré@example.com\n".encode("latin-1")


def test_cron_line_takes_dsn_from_environment(db, cli, tmp_path):
    with db.connect() as connection:
        install(connection, "audit", [])
    crontab = tmp_path / "crontab"

    result = cli("cron", "maintain", "--crontab-file", str(crontab), "--ahead", "5", dsn=db.dsn)

    assert result.exit_code == 0, result.stderr
    [line] = crontab.read_text().splitlines()
    assert "--dsn" in line
    command = line[len("17 3 * * * "):].rsplit(" # auditctl maintain", 1)[0]
    # cron's environment: no AUDITCTL_DSN, no PG* variables, no locale.
    ran = subprocess.run(["env", "-i", "PATH=/usr/bin:/bin", f"PYTHONPATH={REPO_ROOT}", "/bin/sh", "-c", command],
                         capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    with db.connect() as connection:
        ahead = [p for p in list_partitions(connection, "audit") if p.lower and p.lower > NOW]
    assert len(ahead) == 5


def test_cron_line_escapes_percent_for_cron(cli, tmp_path):
    crontab = tmp_path / "crontab"
    result = cli("cron", "maintain", "--crontab-file", str(crontab),
                 "--dsn", "postgresql://%2Fvar%2Frun%2Fpostgresql/app")
    assert result.exit_code == 0, result.stderr
    assert "postgresql://\\%2Fvar\\%2Frun\\%2Fpostgresql/app" in crontab.read_text()


def test_rotate_keeps_fifo_of_archive_name(old_log, cli, tmp_path):
    fifo = tmp_path / f"audit.{old_names()[0]}.csv.gz"
    os.mkfifo(fifo)

    result = cli("rotate", "--keep", KEEP, "--archive-dir", str(tmp_path), dsn=old_log.dsn)

    assert result.exit_code == 0, result.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert (tmp_path / f"audit.{old_names()[0]}.2.csv.gz").is_file()
