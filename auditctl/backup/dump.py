"""Dumping a database with pg_dump into a checked, checksummed file.

The archive is written under a hidden temporary name, fsynced, read back by
``pg_restore --list`` and only then renamed to its final name, so a file
under a final name is always complete. Any failure removes what was written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from psycopg import conninfo

from ..db import connect, format_server_version, resolve_dsn
from ..errors import BackupError, InvalidArgumentError
from ..files import check_writable_folder
from ..i18n import _
from ..locales import child_environment
from .encryption import AGE_EXTENSION, Encryption, PipeWriter
from .identity import database_identity
from .manifest import Manifest, backup_name, fsync_folder, sha256_of_tree, utc_now, write_sidecars
from .partials import partial_path
from .pgtools import PgTool, find_tool, tool_log_line
from .streams import HashingWriter, StderrCollector, TeeReader, copy_stream

logger = logging.getLogger(__name__)

FORMATS = ("custom", "directory")

# pg_dump's error for a table it may not read, in the server's English, and the query it echoes after it.
_DENIED_TABLE = re.compile(r"permission denied for table (.+)")
_LOCK_QUERY = re.compile(r"\bLOCK TABLE (.+?) IN ACCESS SHARE MODE")


@dataclass(frozen=True)
class DumpOptions:
    """Settings of one dump, built by the CLI from flags and the config file."""

    folder: Path
    dsn: str | None = None
    dsn_origin: str = "--dsn"
    dump_format: str = "custom"
    jobs: int = 1
    compress: int | None = None
    with_globals: bool = False
    encryption: Encryption | None = None
    pg_bindir: Path | None = None


@dataclass
class BackupResult:
    """A finished, verified backup."""

    path: Path
    manifest: Manifest

    @property
    def database(self) -> str:
        return self.manifest.database

    @property
    def size(self) -> int:
        return self.manifest.size

    @property
    def duration_seconds(self) -> float:
        started = datetime.fromisoformat(self.manifest.started_at)
        return (datetime.fromisoformat(self.manifest.finished_at) - started).total_seconds()


@dataclass(frozen=True)
class ChildConnection:
    """libpq settings for a child program: a password-free conninfo for argv, the password for its environment."""

    conninfo: str
    environment: dict[str, str]


def child_connection(dsn: str | None) -> ChildConnection:
    """Split the resolved DSN so that the password never reaches a command line.

    The password goes into the child's PGPASSWORD, which only the same user
    and root can read (/proc/PID/environ); the rest goes into ``--dbname``.
    """
    text = resolve_dsn(dsn).dsn
    params = conninfo.conninfo_to_dict(text) if text else {}
    environment = child_environment()
    password = params.pop("password", None)
    if password:
        environment["PGPASSWORD"] = password
    params.setdefault("application_name", "auditctl backup")
    return ChildConnection(conninfo.make_conninfo(**params), environment)


@dataclass(frozen=True)
class ServerInfo:
    """The database a DSN reaches: its name, the server's version, the host and port libpq connected to, and the
    role the connection runs as."""

    database: str
    version: int
    host: str
    port: int
    role: str


def describe_server(dsn: str | None, dsn_origin: str = "--dsn") -> ServerInfo:
    with connect(dsn, option_origin=dsn_origin) as connection:
        database, role = connection.execute("SELECT pg_catalog.current_database(), current_user").fetchone()
        return ServerInfo(database, connection.info.server_version, connection.info.host, connection.info.port,
                          role)


def validate_options(options: DumpOptions) -> None:
    if options.dump_format not in FORMATS:
        raise InvalidArgumentError(
            _("Invalid dump format {value!r}: use custom or directory.").format(value=options.dump_format))
    if options.dump_format == "directory" and options.encryption is not None:
        raise InvalidArgumentError(
            _("The directory format cannot be encrypted; use the custom format with encryption."))
    if options.jobs < 1 or (options.jobs > 1 and options.dump_format != "directory"):
        raise InvalidArgumentError(_("--jobs above 1 needs --format directory (pg_dump dumps in parallel only there)."))
    if options.compress is not None and not 0 <= options.compress <= 9:
        raise InvalidArgumentError(_("Invalid compression level {value}: use 0 to 9.").format(value=options.compress))
    require_folder(options.folder)


def require_folder(folder: Path) -> None:
    """Raise InvalidArgumentError unless a file can be created in ``folder``."""
    problem = check_writable_folder(folder)
    if problem is not None:
        raise InvalidArgumentError(problem.message(
            missing=_("Backup folder {folder} does not exist; create it or set another with --dir."),
            not_a_folder=_("Backup folder {folder} is not a folder; set a folder with --dir."),
            not_writable=_("Backup folder {folder} is not writable ({error}); set another with --dir."),
            folder=folder))


@contextlib.contextmanager
def _removed_on_failure(*paths: Path) -> Iterator[None]:
    """Delete ``paths`` (files or folders) if the block raises; an OSError (such as a full disk) becomes BackupError."""
    try:
        yield
    except OSError as exc:
        _remove(paths)
        raise BackupError(_("Could not write the backup in {folder}: {error}").format(
            folder=paths[0].parent, error=exc.strerror or exc)) from None
    except BaseException:
        _remove(paths)
        raise


def _remove(paths: tuple[Path, ...]) -> None:
    for path in paths:
        if not path.exists() and not path.is_symlink():
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        logger.info("removed partial file %s", path)


def _open_exclusive(path: Path):
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(descriptor, "wb")


def _stop(process: subprocess.Popen | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()


def stream_child_to_file(args: list[str], environment: dict[str, str], target: Path, *,
                         program: str, encryption: Encryption | None,
                         check_args: list[str] | None, on_bytes: Callable[[int], None] | None,
                         role: str | None = None) -> tuple[int, str]:
    """Run ``args``, write its stdout (encrypted if asked) to ``target`` and fsync it.

    With encryption, the plaintext is also fed to ``check_args`` (``pg_restore
    --list`` reading stdin), because the encrypted file cannot be read back
    without the private key. ``role``, the role the child connects as, is
    named in the error when it may not read a table. Returns the size and
    sha256 of ``target``.
    """
    dump = checker = None
    try:
        dump = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment)
        errors = StderrCollector(dump, lambda line: logger.warning("%s", tool_log_line(program, line)))
        if encryption is not None and check_args is not None:
            checker = subprocess.Popen(check_args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, env=environment)
            check_errors = StderrCollector(
                checker, lambda line: logger.warning("%s", tool_log_line("pg_restore", line)))
        with _open_exclusive(target) as handle:
            writer = HashingWriter(handle, on_bytes)
            if encryption is not None:
                copy = PipeWriter(checker.stdin) if checker is not None else None
                encryption.encrypt(TeeReader(dump.stdout, copy), writer)
            else:
                copy_stream(dump.stdout, writer)
            handle.flush()
            os.fsync(handle.fileno())
        code = dump.wait()
        tail = errors.join()
        if code != 0:
            raise BackupError(child_failure(program, code, tail, role))
        if checker is not None:
            with contextlib.suppress(BrokenPipeError):
                checker.stdin.close()
            if checker.wait() != 0:
                raise BackupError(_("pg_restore --list could not read the dump: {error}").format(
                    error=check_errors.join() or _("no error output")))
        return writer.size, writer.digest.hexdigest()
    finally:
        _stop(dump)
        _stop(checker)


def check_archive(pg_restore: PgTool, path: Path, environment: dict[str, str]) -> None:
    """Run ``pg_restore --list`` on a written archive; raise BackupError if it cannot read it."""
    result = subprocess.run([str(pg_restore.path), "--list", str(path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=environment, check=False)
    if result.returncode != 0:
        raise BackupError(_("pg_restore --list could not read {path}: {error}").format(
            path=path.name, error=result.stderr.decode("utf-8", "replace").strip() or _("no error output")))


def fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    fsync_folder(folder)


def unused_stem(folder: Path, stem: str, extension: str) -> str:
    """Add ``-2``, ``-3``… to a name already taken by a run that started in the same second."""
    candidate, number = stem, 1
    while (folder / (candidate + extension)).exists() or partial_path(folder / (candidate + extension)).exists():
        number += 1
        candidate = f"{stem}-{number}"
    return candidate


def dump_database(options: DumpOptions, on_bytes: Callable[[int], None] | None = None) -> BackupResult:
    """Dump the database, check the archive, rename it into place and write its checksum and manifest."""
    validate_options(options)
    server = describe_server(options.dsn, options.dsn_origin)
    server_major = server.version // 10000
    pg_dump = find_tool("pg_dump", server_major, options.pg_bindir)
    pg_restore = find_tool("pg_restore", server_major, options.pg_bindir)
    pg_dumpall = find_tool("pg_dumpall", server_major, options.pg_bindir) if options.with_globals else None
    child = child_connection(options.dsn)

    started = utc_now()
    if options.dump_format == "directory":
        extension = ".dir"
    else:
        extension = ".dump" + (AGE_EXTENSION if options.encryption else "")
    stem = unused_stem(options.folder, backup_name(server.database, started, ""), extension)
    final = options.folder / (stem + extension)
    globals_path = options.folder / (stem + ".globals.sql" + (AGE_EXTENSION if options.encryption else ""))
    temporary = partial_path(final)
    logger.info("dumping database %s with %s into %s", server.database, pg_dump.path, final)

    args = [str(pg_dump.path), f"--format={options.dump_format}", f"--dbname={child.conninfo}"]
    if options.compress is not None:
        args.append(f"--compress={options.compress}")
    files: dict[str, str] = {}
    globals_name = globals_digest = None
    with _removed_on_failure(temporary, final, globals_path):
        if options.dump_format == "custom":
            check_args = [str(pg_restore.path), "--list"]
            size, digest = stream_child_to_file(args, child.environment, temporary, program="pg_dump",
                                                encryption=options.encryption, check_args=check_args,
                                                on_bytes=on_bytes, role=server.role)
            if options.encryption is None:
                check_archive(pg_restore, temporary, child.environment)
        else:
            args += [f"--jobs={options.jobs}", f"--file={temporary}"]
            run_to_folder(args, child.environment, server.role)
            fsync_tree(temporary)
            check_archive(pg_restore, temporary, child.environment)
            files = sha256_of_tree(temporary)
            size = sum((temporary / name).stat().st_size for name in files)
            digest = ""
        temporary.rename(final)
        fsync_folder(options.folder)
        if pg_dumpall is not None:
            globals_digest = dump_globals(pg_dumpall, child, options, globals_path)
            globals_name = globals_path.name

        manifest = Manifest(
            database=server.database, file=final.name, format=options.dump_format, size=size, sha256=digest,
            started_at=started.isoformat(), finished_at=utc_now().isoformat(),
            encrypted=options.encryption is not None, server_version=format_server_version(server.version),
            pg_dump_version=pg_dump.version_text, globals_file=globals_name, globals_sha256=globals_digest,
            files=files, source_identity=database_identity(server.host, server.port, server.database))
        write_sidecars(final, manifest)
    logger.info("wrote %s (%d bytes, sha256 %s)", final, size, digest or "per file")
    return BackupResult(final, manifest)


def run_to_folder(args: list[str], environment: dict[str, str], role: str | None = None) -> None:
    """Run pg_dump writing a directory-format dump itself, passing its stderr to the log."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    try:
        errors = StderrCollector(process, lambda line: logger.warning("pg_dump: %s", line))
        code = process.wait()
        tail = errors.join()
    finally:
        _stop(process)
    if code != 0:
        raise BackupError(child_failure("pg_dump", code, tail, role))


def child_failure(program: str, code: int, stderr_tail: str, role: str | None) -> str:
    """Word a failed pg_dump or pg_dumpall run: the table that ``role`` may not read, else the program's error."""
    table = unreadable_table(stderr_tail) if role else None
    if table is None:
        return _("{program} failed with exit code {code}: {error}").format(
            program=program, code=code, error=stderr_tail or _("no error output"))
    return _("{program} failed with exit code {code}: Role {role} may not read table {table}, but the backup role "
             "must be able to read every table in the database, the audit schema's included. As a superuser, run "
             "GRANT pg_read_all_data TO {role} (PostgreSQL 14 and later), or grant SELECT on each table, or back up "
             "as the role that owns the tables.").format(program=program, code=code, role=role, table=table)


def unreadable_table(stderr_tail: str) -> str | None:
    """Return the table that pg_dump could not lock or read for lack of privilege, schema-qualified where it can.

    The privilege error, recognised in English only, names the table without
    its schema. The LOCK TABLE query that pg_dump echoes after it lists the
    qualified names, one table or a batch of them depending on pg_dump's
    version, so the qualified name is taken from there when only one matches.
    """
    denied = _DENIED_TABLE.search(stderr_tail)
    if denied is None:
        return None
    name = denied.group(1).strip()
    locked = _LOCK_QUERY.search(stderr_tail)
    if locked:
        matches = [table.strip() for table in locked.group(1).split(",")
                   if table.strip().rsplit(".", 1)[-1].strip('"') == name]
        if len(matches) == 1:
            return matches[0]
    return name


def dump_globals(pg_dumpall: PgTool, child: ChildConnection, options: DumpOptions, target: Path) -> str:
    """Dump roles and tablespaces with ``pg_dumpall --globals-only`` into ``target``; return its sha256."""
    temporary = partial_path(target)
    args = [str(pg_dumpall.path), "--globals-only", f"--dbname={child.conninfo}"]
    with _removed_on_failure(temporary, target):
        _size, digest = stream_child_to_file(args, child.environment, temporary, program="pg_dumpall",
                                             encryption=options.encryption, check_args=None, on_bytes=None)
        temporary.rename(target)
        fsync_folder(options.folder)
    logger.info("wrote %s", target)
    return digest

