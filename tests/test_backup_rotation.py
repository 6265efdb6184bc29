"""Rotation: which backups are kept, and that only auditctl's own files of one source are touched."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from auditctl.backup.identity import database_identity
from auditctl.backup.manifest import BackupEntry, Manifest, write_sidecars
from auditctl.backup.orphans import remove_orphan_sidecars
from auditctl.backup.partials import partial_path
from auditctl.backup.rotation import RotationPolicy, plan_rotation, rotate
from backup_fixtures import read_json, sample_rows, tcp_forwarder
from conftest import run_cli

NOW = datetime(2026, 12, 4, 3, 0, tzinfo=timezone.utc)


def entry(started: datetime) -> BackupEntry:
    name = f"app_{started:%Y%m%dT%H%M%SZ}.dump"
    manifest = Manifest(database="app", file=name, format="custom", size=1, sha256="0" * 64,
                        started_at=started.isoformat(), finished_at=started.isoformat(), encrypted=False)
    return BackupEntry(Path("/backups") / name, manifest)


def nightly(days: int, end: datetime = NOW) -> list[BackupEntry]:
    """One backup at 02:00 for each of ``days`` nights up to ``end``, oldest first."""
    return [entry(end.replace(hour=2) - timedelta(days=offset)) for offset in reversed(range(days))]


def kept_days(result) -> list[str]:
    return sorted(path.name[4:12] for path in result.kept)


@pytest.mark.parametrize(("policy", "expected_count"), [
    (RotationPolicy(), 60),
    (RotationPolicy(keep_last=5), 5),
    (RotationPolicy(keep_daily=7), 7),
    # 2026-12-04 is a Friday: the ISO weeks add the Sundays Nov 22 and Nov 15.
    (RotationPolicy(keep_daily=7, keep_weekly=4), 7 + 2),
    # The months add Oct 31; the 60 nights start on Oct 6, so there is no September.
    (RotationPolicy(keep_daily=7, keep_weekly=4, keep_monthly=6), 7 + 2 + 1),
], ids=["no-policy-keeps-all", "last-5", "daily-7", "daily-7-weekly-4", "daily-weekly-monthly"])
def test_plan_keeps_slots(policy, expected_count):
    result = plan_rotation(nightly(60), policy, NOW)
    assert len(result.kept) == expected_count
    assert len(result.kept) + len(result.deleted) == 60
    assert "20261204" in kept_days(result)


def test_plan_weekly_keeps_newest_of_each_iso_week():
    result = plan_rotation(nightly(60), RotationPolicy(keep_weekly=4), NOW)
    assert kept_days(result) == ["20261115", "20261122", "20261129", "20261204"]


def test_plan_monthly_keeps_newest_of_each_month():
    result = plan_rotation(nightly(60), RotationPolicy(keep_monthly=3), NOW)
    assert kept_days(result) == ["20261031", "20261130", "20261204"]


def test_failed_nights_keep_newest_good_backup():
    last_good = NOW - timedelta(days=10)
    backups = nightly(20, end=last_good)
    result = plan_rotation(backups, RotationPolicy(keep_daily=7), NOW)
    assert [path.name for path in result.kept] == [backups[-1].path.name]
    assert len(result.deleted) == 19


def test_plan_keep_last_zero_with_slots_never_empties():
    result = plan_rotation(nightly(3, end=NOW - timedelta(days=400)), RotationPolicy(keep_monthly=1), NOW)
    assert len(result.kept) == 1


@pytest.mark.parametrize("policy", [RotationPolicy(keep_last=1), RotationPolicy(keep_daily=1)],
                         ids=["last-1", "daily-1"])
def test_plan_keeps_fresh_over_later_manifest(policy):
    backups = nightly(3)
    fresh = entry(NOW.replace(hour=2, minute=30))
    # Written a night earlier, while the clock ran a day ahead.
    ahead = entry(NOW + timedelta(days=1))
    result = plan_rotation([*backups, ahead, fresh], policy, NOW, fresh.path)
    assert result.kept == [fresh.path]
    assert ahead.path in result.deleted


def age_backup(folder: Path, dump: Path, days: int) -> Path:
    """Copy a real backup and its sidecars as if it had been made ``days`` earlier."""
    manifest = json.loads((folder / (dump.name + ".manifest.json")).read_text())
    started = datetime.fromisoformat(manifest["started_at"]) - timedelta(days=days)
    database_part = dump.name.rsplit("_", 1)[0]
    name = f"{database_part}_{started:%Y%m%dT%H%M%SZ}.dump"
    shutil.copy(dump, folder / name)
    checksums = (folder / (dump.name + ".sha256")).read_text()
    (folder / (name + ".sha256")).write_text(checksums.replace(dump.name, name))
    manifest.update(file=name, started_at=started.isoformat(), finished_at=started.isoformat())
    (folder / (name + ".manifest.json")).write_text(json.dumps(manifest))
    return folder / name


def make_version_1(path: Path) -> None:
    """Turn a backup's manifest into one of manifest version 1: named NAME.json, without a source identity."""
    manifest_file = path.with_name(path.name + ".manifest.json")
    manifest = json.loads(manifest_file.read_text())
    del manifest["source_identity"]
    manifest["manifest_version"] = 1
    path.with_name(path.name + ".json").write_text(json.dumps(manifest))
    manifest_file.unlink()


def make_database(pg, name: str) -> str:
    with psycopg.connect(pg.admin_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(pg.dsn_for(name), autocommit=True) as connection:
        sample_rows(connection, rows=5)
    return pg.dsn_for(name)


def drop_database(pg, name: str) -> None:
    with psycopg.connect(pg.admin_dsn, autocommit=True) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def app_and_staging(pg, tmp_path):
    """Back up new databases app and app-staging once each into tmp_path; yield the app DSN and both dumps."""
    app_dsn = make_database(pg, "app")
    staging_dsn = make_database(pg, "app-staging")
    try:
        assert run_cli("backup", "--dir", str(tmp_path), dsn=staging_dsn).exit_code == 0
        assert run_cli("backup", "--dir", str(tmp_path), dsn=app_dsn).exit_code == 0
        [staging_dump] = tmp_path.glob("app-staging_*.dump")
        [app_dump] = [path for path in tmp_path.glob("app_*.dump")]
        yield app_dsn, app_dump, staging_dump
    finally:
        drop_database(pg, "app")
        drop_database(pg, "app-staging")


def test_rotation_touches_only_this_databases_backups(app_and_staging, tmp_path):
    app_dsn, app_dump, staging_dump = app_and_staging
    old_staging = [age_backup(tmp_path, staging_dump, days) for days in (3, 9, 40)]
    old_app = [age_backup(tmp_path, app_dump, days) for days in (3, 9, 40)]
    (tmp_path / "notes.txt").write_text("not a backup")
    (tmp_path / "app_20200101T000000Z.dump").write_bytes(b"a stranger's file without a manifest")

    result = run_cli("backup", "--dir", str(tmp_path), "--keep-last", "2", dsn=app_dsn)

    assert result.exit_code == 0, result.stderr
    remaining_app = sorted(path.name for path in tmp_path.glob("app_2*.dump"))
    assert app_dump.name in remaining_app
    assert len(remaining_app) == 3  # two kept by --keep-last 2, plus the stranger's file
    assert "app_20200101T000000Z.dump" in remaining_app
    for path in old_app:
        assert not path.exists()
        assert not path.with_name(path.name + ".manifest.json").exists()
        assert not path.with_name(path.name + ".sha256").exists()
    for path in [staging_dump, *old_staging]:
        assert path.exists()
        assert path.with_name(path.name + ".manifest.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "not a backup"


def test_failed_run_rotates_nothing(pg, tmp_path):
    app_dsn = make_database(pg, "app")
    try:
        assert run_cli("backup", "--dir", str(tmp_path), dsn=app_dsn).exit_code == 0
        [dump] = tmp_path.glob("app_*.dump")
        for days in range(1, 11):
            age_backup(tmp_path, dump, days)
        before = sorted(path.name for path in tmp_path.iterdir())
        broken = app_dsn.replace("dbname=app", "dbname=app_missing")

        result = run_cli("backup", "--dir", str(tmp_path), "--keep-last", "1", dsn=broken)

        assert result.exit_code == 1
        assert sorted(path.name for path in tmp_path.iterdir()) == before
    finally:
        drop_database(pg, "app")


def test_fresh_backup_survives_clock_skew(pg, tmp_path):
    app_dsn = make_database(pg, "app")
    try:
        assert run_cli("backup", "--dir", str(tmp_path), dsn=app_dsn).exit_code == 0
        [first] = tmp_path.glob("app_*.dump")
        # An older backup whose manifest starts a day later: the clock was ahead that night.
        ahead = age_backup(tmp_path, first, days=-1)

        result = run_cli("backup", "--dir", str(tmp_path), "--keep-last", "1", dsn=app_dsn)

        assert result.exit_code == 0, result.stderr
        [fresh] = tmp_path.glob("app_*.dump")
        assert fresh not in (first, ahead)
        assert f"written to {fresh}" in result.stdout
        assert fresh.with_name(fresh.name + ".manifest.json").exists()
        assert f"Rotation deleted {fresh.name}" not in result.stdout
        assert f"Rotation deleted {ahead.name}.\n" in result.stdout
        assert f"Rotation deleted {first.name}.\n" in result.stdout
    finally:
        drop_database(pg, "app")


def test_rotation_separates_servers_with_same_database(pg, tmp_path):
    app_dsn = make_database(pg, "app")
    params = psycopg.conninfo.conninfo_to_dict(app_dsn)
    try:
        # A second port forwarded to the same server acts as a second server with a database "app".
        with tcp_forwarder(params["host"], int(params["port"])) as other_port:
            other_dsn = psycopg.conninfo.make_conninfo(**{**params, "port": str(other_port)})
            assert run_cli("backup", "--dir", str(tmp_path), dsn=other_dsn).exit_code == 0
            [other] = tmp_path.glob("app_*.dump")
            old_other = age_backup(tmp_path, other, days=3)

            result = run_cli("backup", "--dir", str(tmp_path), "--keep-last", "1", dsn=app_dsn)

        assert result.exit_code == 0, result.stderr
        assert "Rotation deleted" not in result.stdout
        assert other.exists()
        assert old_other.exists()
        assert len(list(tmp_path.glob("app_*.dump"))) == 3
        identity = read_json(other.with_name(other.name + ".manifest.json"))["source_identity"]
        assert identity == {"kind": "postgresql", "host": params["host"], "port": other_port, "database": "app"}
    finally:
        drop_database(pg, "app")


def test_rotation_keeps_version_1_backups(pg, tmp_path):
    app_dsn = make_database(pg, "app")
    try:
        assert run_cli("backup", "--dir", str(tmp_path), dsn=app_dsn).exit_code == 0
        [dump] = tmp_path.glob("app_*.dump")
        legacy = age_backup(tmp_path, dump, days=5)
        make_version_1(legacy)

        result = run_cli("backup", "--dir", str(tmp_path), "--keep-last", "1", dsn=app_dsn)

        assert result.exit_code == 0, result.stderr
        assert not dump.exists()
        assert legacy.exists()
        assert legacy.with_name(legacy.name + ".json").exists()
        assert "Rotation kept 1 backup of app whose manifest records no source" in result.stdout
        assert legacy.name in run_cli("backup", "list", "--dir", str(tmp_path)).stdout
    finally:
        drop_database(pg, "app")


@pytest.mark.parametrize(("args", "message"), [
    ([], "No backups made by auditctl in this folder."),
    (["--database", "app"], "No backups of database app made by auditctl in this folder."),
], ids=["all", "one-database"])
def test_empty_list_names_database(tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("not a backup")

    result = run_cli("backup", "list", "--dir", str(tmp_path), *args)

    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == message


def sidecars(path: Path) -> list[Path]:
    return [path.with_name(path.name + ".sha256"), path.with_name(path.name + ".manifest.json")]


def test_rotation_removes_hand_deleted_sidecars(app_and_staging, tmp_path):
    app_dsn, app_dump, staging_dump = app_and_staging
    deleted_app = age_backup(tmp_path, app_dump, days=2)
    deleted_staging = age_backup(tmp_path, staging_dump, days=2)
    deleted_app.unlink()
    deleted_staging.unlink()
    foreign = tmp_path / "app_20200101T000000Z.dump"
    (tmp_path / (foreign.name + ".sha256")).write_text("0" * 64 + f"  {foreign.name}\n")
    (tmp_path / (foreign.name + ".manifest.json")).write_text('{"kind": "another-tool", "file": "%s"}' % foreign.name)

    result = run_cli("-v", "backup", "--dir", str(tmp_path), "--keep-last", "5", dsn=app_dsn)

    assert result.exit_code == 0, result.stderr
    for path in sidecars(deleted_app):
        assert not path.exists()
        assert f"Rotation removed {path.name}, whose backup is no longer in the folder." in result.stdout
        log_line = f"rotation removed {path}: its backup {deleted_app.name} is no longer in the folder"
        assert result.stderr.count(log_line) == 1
    for path in [*sidecars(app_dump), *sidecars(staging_dump), *sidecars(deleted_staging), *sidecars(foreign)]:
        assert path.exists()
    assert result.stdout.count("Rotation removed") == 2


IDENTITY = database_identity("127.0.0.1", 5432, "app")


def write_backup_sidecars(folder: Path, name: str = "app_20261201T020000Z.dump", **fields) -> Path:
    """Write the checksum and manifest of a backup ``name`` of IDENTITY, without the backup itself."""
    started = "2026-12-01T02:00:00+00:00"
    values = dict(database="app", file=name, format="custom", size=4, sha256="ab" * 32, started_at=started,
                  finished_at=started, encrypted=False, source_identity=IDENTITY)
    values.update(fields)
    write_sidecars(folder / name, Manifest(**values))
    return folder / name


def test_orphan_sidecars_removed_with_folder_format(tmp_path):
    backup = write_backup_sidecars(tmp_path, "app_20261201T020000Z.dir", format="directory", sha256="",
                                   files={"toc.dat": "cd" * 32, "3001.dat.gz": "ef" * 32},
                                   globals_file="app_20261201T020000Z.globals.sql", globals_sha256="12" * 32)
    globals_file = tmp_path / "app_20261201T020000Z.globals.sql"
    globals_file.write_text("CREATE ROLE app;\n")

    removed = remove_orphan_sidecars(tmp_path, IDENTITY)

    assert removed == sidecars(backup)
    assert sorted(path.name for path in tmp_path.iterdir()) == [globals_file.name]


@pytest.mark.parametrize("change", [
    lambda backup: backup.write_bytes(b"dump"),
    lambda backup: backup.symlink_to(backup.with_name("moved-away.dump")),
    lambda backup: partial_path(backup).write_bytes(b"half a dump"),
    lambda backup: write_backup_sidecars(backup.parent, source_identity=database_identity("127.0.0.1", 5433, "app")),
    lambda backup: write_backup_sidecars(backup.parent, source_identity=None),
    lambda backup: write_backup_sidecars(backup.parent, file="app_20261130T020000Z.dump"),
], ids=["backup-exists", "dangling-symlink", "partial-file", "other-port", "no-identity", "names-other-file"])
def test_orphan_sidecars_kept_unless_provable(tmp_path, change):
    backup = write_backup_sidecars(tmp_path)
    change(backup)
    before = sorted(path.name for path in tmp_path.iterdir())

    removed = remove_orphan_sidecars(tmp_path, IDENTITY)

    assert removed == []
    assert sorted(path.name for path in tmp_path.iterdir()) == before


def test_orphan_checksum_of_other_file_kept(tmp_path):
    backup = write_backup_sidecars(tmp_path)
    checksum, manifest = sidecars(backup)
    checksum.write_text("ab" * 32 + "  app_20261130T020000Z.dump\n")

    removed = remove_orphan_sidecars(tmp_path, IDENTITY)

    assert removed == [manifest]
    assert checksum.exists()
    assert not manifest.exists()


def test_rotation_off_keeps_orphan_sidecars(tmp_path):
    orphan = write_backup_sidecars(tmp_path)
    fresh = write_backup_sidecars(tmp_path, "app_20261204T020000Z.dump", started_at=NOW.isoformat())
    fresh.write_bytes(b"dump")
    manifest = Manifest(**read_json(fresh.with_name(fresh.name + ".manifest.json")))

    result = rotate([BackupEntry(fresh, manifest)], RotationPolicy(), NOW, BackupEntry(fresh, manifest))

    assert result.removed_sidecars == []
    for path in sidecars(orphan):
        assert path.exists()
