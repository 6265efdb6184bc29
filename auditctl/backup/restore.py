"""Restoring a backup into an existing database with pg_restore, in one transaction.

``pg_restore --single-transaction`` makes the restore atomic: when any
statement fails, the target database is left exactly as it was, --clean's
drops included. It rules out pg_restore's parallel jobs (``--jobs``), so a
restore runs as one process, for the directory format too.
"""

from __future__ import annotations

import logging
import re
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import conninfo

from ..db import connect, resolve_dsn
from ..errors import BackupError, ConnectionFailedError
from ..i18n import _, ngettext
from ..locales import child_environment
from .clean_order import AttachedIndex, attached_indexes, reorder_listing
from .dump import child_connection
from .encryption import Decryption
from .manifest import Manifest, require_manifest
from .pgtools import PgTool, find_tool, tool_log_line
from .verify import archive_major, run_on_decrypted, verify_checksum

logger = logging.getLogger(__name__)

# Tables (partitioned and foreign ones too), views, materialized views and sequences: the kinds the
# "not empty" error names. Indexes and composite types are left out because the error does not name them.
_USER_OBJECTS = """
SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
  AND n.nspname NOT LIKE 'pg\\_temp%%' AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
"""

# Server messages of a failed privilege check (SQLSTATE 42501 and the ownership checks), in English only.
_PERMISSION_ERRORS = re.compile(r"permission denied|must be owner of|must be member of role|must be able to SET ROLE|"
                                r"must be superuser|must have admin option|42501")


@dataclass
class RestoreResult:
    path: Path
    manifest: Manifest
    database: str
    cleaned: bool


@dataclass
class TargetState:
    """Facts about the target database that the restore reads before it starts."""

    database: str
    relations: int
    server_major: int
    attached: list[AttachedIndex] = field(default_factory=list)


def count_user_relations(connection: psycopg.Connection) -> int:
    return connection.execute(_USER_OBJECTS).fetchone()[0]


def restore_backup(path: Path, target_dsn: str, *, clean: bool = False, decryption: Decryption | None = None,
                   pg_bindir: Path | None = None) -> RestoreResult:
    """Check the checksum, then restore ``path`` into the existing database ``target_dsn`` in one transaction.

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
    target = inspect_target(target_dsn)
    if target.relations and not clean:
        raise BackupError(
            ngettext("Target database {database} is not empty ({count} table, view or sequence); restore into an "
                     "empty database, or pass --clean to drop and re-create the backup's objects.",
                     "Target database {database} is not empty ({count} tables, views or sequences); restore into an "
                     "empty database, or pass --clean to drop and re-create the backup's objects.", target.relations)
            .format(database=target.database, count=target.relations))
    pg_restore = find_tool("pg_restore", max(target.server_major, archive_major(manifest)), pg_bindir)
    child = child_connection(target_dsn)
    args = [str(pg_restore.path), f"--dbname={child.conninfo}", "--single-transaction", "--exit-on-error"]
    if clean:
        args += ["--clean", "--if-exists"]
    logger.info("restoring %s into database %s in one transaction", path, target.database)
    with tempfile.TemporaryDirectory(prefix="auditctl-restore-") as scratch:
        if clean and target.attached:
            listing = list_archive(pg_restore, path, manifest, decryption, Path(scratch) / "archive.list")
            reordered = reorder_listing(listing, target.attached)
            if reordered is not None:
                order_file = Path(scratch) / "clean-order.list"
                order_file.write_text(reordered, encoding="utf-8")
                args.append(f"--use-list={order_file}")
        code, error = _run_pg_restore(args, child.environment, path, manifest, decryption)
    if code != 0:
        raise BackupError(restore_failure(code, error, target.database, clean))
    return RestoreResult(path, manifest, target.database, clean)


def inspect_target(target_dsn: str) -> TargetState:
    """Connect to the target database, which must exist, and read what the restore checks and reorders."""
    try:
        with connect(target_dsn, option_origin="--target-dsn") as connection:
            return TargetState(
                database=connection.execute("SELECT pg_catalog.current_database()").fetchone()[0],
                relations=count_user_relations(connection),
                server_major=connection.info.server_version // 10000,
                attached=attached_indexes(connection))
    except ConnectionFailedError as exc:
        name = _database_name(target_dsn)
        # NOTE: this matches the server's English message only, so with other lc_messages the hint is left out.
        if name and f'database "{name}" does not exist' in str(exc):
            raise ConnectionFailedError(
                _("{error} The target database must exist: create it first, for example with createdb {name}.")
                .format(error=exc, name=shlex.quote(name))) from None
        raise


def _database_name(target_dsn: str) -> str | None:
    try:
        return conninfo.conninfo_to_dict(resolve_dsn(target_dsn).dsn).get("dbname")
    except psycopg.ProgrammingError:
        return None


def list_archive(pg_restore: PgTool, path: Path, manifest: Manifest, decryption: Decryption,
                 list_file: Path) -> str:
    """Return the archive's table of contents as ``pg_restore --list`` prints it."""
    args = [str(pg_restore.path), "--list", f"--file={list_file}"]
    if manifest.encrypted:
        code, error = run_on_decrypted(args, path, decryption)
    else:
        result = subprocess.run([*args, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
                                env=child_environment())
        code, error = result.returncode, result.stderr.decode("utf-8", "replace").strip()
    if code != 0:
        raise BackupError(_("pg_restore --list could not read {path}: {error}").format(path=path, error=error))
    return list_file.read_text(encoding="utf-8", errors="replace")


def _run_pg_restore(args: list[str], environment: dict[str, str], path: Path, manifest: Manifest,
                    decryption: Decryption) -> tuple[int, str]:
    if manifest.encrypted:
        return run_on_decrypted(args, path, decryption, environment)
    result = subprocess.run([*args, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=environment, check=False)
    error = result.stderr.decode("utf-8", "replace")
    for line in error.splitlines():
        logger.warning("%s", tool_log_line("pg_restore", line))
    return result.returncode, error


def restore_failure(code: int, stderr: str, database: str, clean: bool) -> str:
    """Word a failed restore as one line: pg_restore's error, that nothing changed, and what to do with --clean."""
    message = _("pg_restore failed with exit code {code}: {error}. The restore ran in one transaction, so database "
                "{database} is unchanged.").format(code=code, error=summarize_pg_error(stderr), database=database)
    # NOTE: pg_restore prints the server's message without its SQLSTATE, so with lc_messages other than English
    # a permission failure gets the --clean advice below.
    if _PERMISSION_ERRORS.search(summarize_pg_error(stderr)):
        message += " " + _("Restoring this backup needs a superuser, or the role that owns the objects it names, "
                           "because the backup contains objects that only they may create or change, such as "
                           "auditctl's event triggers. Run the restore as that role.")
    elif clean:
        message += " " + _("Objects that are not in the backup can block --clean, so restore into a new, empty "
                           "database instead.")
    return message


def summarize_pg_error(stderr: str) -> str:
    """Reduce pg_restore's stderr to its first error and that error's DETAIL line, on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return _("no error output")
    start = next((index for index, line in enumerate(lines) if line.startswith("pg_restore: error:")), 0)
    parts = [lines[start].removeprefix("pg_restore: error:").strip()]
    if start + 1 < len(lines) and lines[start + 1].startswith("DETAIL:"):
        parts.append(lines[start + 1])
    return re.sub(r"\s+", " ", "; ".join(parts)).rstrip(".")
