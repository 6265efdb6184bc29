"""Restoring a backup into a database with pg_restore."""

from __future__ import annotations

import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ..db import connect
from ..errors import BackupError
from ..i18n import _, ngettext
from .dump import child_connection
from .encryption import Decryption
from .manifest import Manifest, require_manifest
from .pgtools import find_tool
from .verify import archive_major, run_on_decrypted, verify_checksum

logger = logging.getLogger(__name__)

_USER_OBJECTS = """
SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
  AND n.nspname NOT LIKE 'pg\\_temp%%'
"""


@dataclass
class RestoreResult:
    path: Path
    manifest: Manifest
    database: str
    cleaned: bool


def count_user_relations(connection: psycopg.Connection) -> int:
    return connection.execute(_USER_OBJECTS).fetchone()[0]


def restore_backup(path: Path, target_dsn: str, *, clean: bool = False, decryption: Decryption | None = None,
                   pg_bindir: Path | None = None) -> RestoreResult:
    """Check the checksum, then restore ``path`` into ``target_dsn``.

    A target that already contains tables, views or sequences is rejected unless
    ``clean`` is set, which drops the archive's objects before re-creating them.
    """
    manifest = require_manifest(path)
    if manifest.source != "pg_dump":
        raise BackupError(_("{path} is a JSON backup from --from-url; pg_restore cannot restore it.")
                          .format(path=path))
    decryption = decryption or Decryption()
    if manifest.encrypted and not decryption.available:
        raise BackupError(_("{path} is encrypted; pass --identity with the age private key or --passphrase-file.")
                          .format(path=path))
    verify_checksum(path, manifest)
    with connect(target_dsn, option_origin="--target-dsn") as connection:
        database = connection.execute("SELECT pg_catalog.current_database()").fetchone()[0]
        relations = count_user_relations(connection)
        target_major = connection.info.server_version // 10000
    if relations and not clean:
        raise BackupError(
            ngettext("Target database {database} is not empty ({count} table, view or sequence); restore into an "
                     "empty database, or pass --clean to drop and re-create the backup's objects.",
                     "Target database {database} is not empty ({count} tables, views or sequences); restore into an "
                     "empty database, or pass --clean to drop and re-create the backup's objects.", relations)
            .format(database=database, count=relations))
    pg_restore = find_tool("pg_restore", max(target_major, archive_major(manifest)), pg_bindir)
    child = child_connection(target_dsn)
    args = [str(pg_restore.path), f"--dbname={child.conninfo}", "--exit-on-error"]
    if clean:
        args += ["--clean", "--if-exists"]
    logger.info("restoring %s into database %s", path, database)
    if manifest.encrypted:
        _restore_encrypted(args, child.environment, path, decryption)
    else:
        result = subprocess.run([*args, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=child.environment, check=False)
        for line in result.stderr.decode("utf-8", "replace").splitlines():
            logger.warning("pg_restore: %s", line)
        if result.returncode != 0:
            raise BackupError(_("pg_restore failed with exit code {code}: {error}").format(
                code=result.returncode, error=result.stderr.decode("utf-8", "replace").strip()))
    return RestoreResult(path, manifest, database, clean)


def _restore_encrypted(args: list[str], environment: dict[str, str], path: Path, decryption: Decryption) -> None:
    code, error = run_on_decrypted(args, path, decryption, environment)
    if code != 0:
        raise BackupError(_("pg_restore failed with exit code {code}: {error}").format(code=code, error=error))
