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
from ..errors import BackupError, ConnectionFailedError, InvalidArgumentError
from ..i18n import _, ngettext
from ..locales import child_environment
from ..sqltext import quote_ident
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
# The object of a failed privilege check, as the server names it in English. pg_restore prints no SQLSTATE.
_DENIED_DATABASE = re.compile(r"permission denied for database (.+)")
_DENIED_SCHEMA = re.compile(r"permission denied for schema (.+)")
# Statements that pg_restore echoes after "Command was:". They are SQL, so they read the same in every language.
_EVENT_TRIGGER_COMMAND = re.compile(r"\b(?:CREATE|ALTER|DROP|COMMENT ON) EVENT TRIGGER\b")
_OWNER_COMMAND = re.compile(r'\bALTER [^;]*? OWNER TO ("(?:[^"]|"")+"|[^\s;]+);')
_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")


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
    role: str
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
        raise InvalidArgumentError(_("{path} is a JSON backup from --from-url; pg_restore cannot restore it. "
                                     "Restore it with the application that produced it.").format(path=path))
    decryption = decryption or Decryption()
    if manifest.encrypted and not decryption.available:
        raise BackupError(_("{path} is encrypted; pass --identity with the age private key or --passphrase-file.")
                          .format(path=path))
    if manifest.encrypted:
        decryption.check(path)
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
        raise BackupError(restore_failure(code, error, target, clean))
    return RestoreResult(path, manifest, target.database, clean)


def inspect_target(target_dsn: str) -> TargetState:
    """Connect to the target database, which must exist, and read what the restore checks and reorders."""
    try:
        with connect(target_dsn, option_origin="--target-dsn") as connection:
            return TargetState(
                database=connection.execute("SELECT pg_catalog.current_database()").fetchone()[0],
                role=connection.execute("SELECT current_user").fetchone()[0],
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


def restore_failure(code: int, stderr: str, target: TargetState, clean: bool) -> str:
    """Word a failed restore as one line: pg_restore's error, that nothing changed, and what to do next."""
    message = _("pg_restore failed with exit code {code}: {error}. The restore ran in one transaction, so database "
                "{database} is unchanged.").format(code=code, error=summarize_pg_error(stderr),
                                                   database=target.database)
    block = first_error_block(stderr)
    hint = permission_hint(block, target)
    # NOTE: with lc_messages other than English, a permission failure outside the event triggers and the OWNER TO
    # statements gets no hint, and with --clean it gets the --clean advice below.
    if hint:
        message += " " + hint
    elif clean and not _PERMISSION_ERRORS.search(block):
        message += " " + _("Objects that are not in the backup can block --clean, so restore into a new, empty "
                           "database instead.")
    return message


def permission_hint(block: str, target: TargetState) -> str | None:
    """Say which privilege the failed statement in ``block`` lacked and how to get it; None for other failures.

    The statement that pg_restore echoes is SQL in every language. The object
    that the server names in "permission denied for ..." is read from its
    English message only.
    """
    role = _sql_name(target.role)
    if _EVENT_TRIGGER_COMMAND.search(block):
        return _("Only a superuser may create or change event triggers, such as auditctl's DDL capture, which "
                 "this backup contains. Run the restore as a superuser.")
    owner = _OWNER_COMMAND.search(block)
    if owner and not _DENIED_DATABASE.search(block) and not _DENIED_SCHEMA.search(block):
        return _("The backup gives its objects to role {owner}, and role {role} is not a member of {owner}. Run the "
                 "restore as {owner}, as a member of {owner}, or as a superuser.").format(owner=owner.group(1),
                                                                                          role=role)
    database = _DENIED_DATABASE.search(block)
    if database:
        name = _sql_name(database.group(1).strip())
        return _("Role {role} lacks the CREATE privilege on database {database}, which the restore needs to create "
                 "the backup's schemas. As the database owner or a superuser, run GRANT CREATE ON DATABASE "
                 "{database} TO {role}, or restore into a database that {role} owns.").format(role=role,
                                                                                             database=name)
    schema = _DENIED_SCHEMA.search(block)
    if schema:
        return _("Role {role} lacks a privilege on schema {schema} that the restore needs. As the schema's owner "
                 "or a superuser, run GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}.").format(
                     role=role, schema=_sql_name(schema.group(1).strip()))
    return None


def first_error_block(stderr: str) -> str:
    """Return pg_restore's first error with the lines that follow it (DETAIL, HINT, the failed command)."""
    lines = stderr.splitlines()
    starts = [index for index, line in enumerate(lines) if line.startswith("pg_restore: error:")]
    if not starts:
        return stderr
    end = starts[1] if len(starts) > 1 else len(lines)
    return "\n".join(lines[starts[0]:end])


def _sql_name(name: str) -> str:
    """Quote a name for an SQL statement in a message, only where SQL needs the quotes."""
    return name if _PLAIN_NAME.fullmatch(name) else quote_ident(name)


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
