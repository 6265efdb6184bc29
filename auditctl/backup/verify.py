"""Checking a backup after the fact: checksum, decryption and ``pg_restore --list``."""

from __future__ import annotations

import hmac
import io
import json
import logging
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BackupError, InvalidArgumentError
from ..i18n import _
from ..locales import child_environment
from .encryption import Decryption, PipeWriter
from .http_source import describe_json_error
from .manifest import Manifest, require_manifest, sha256_of_file, sha256_of_tree
from .pgtools import find_tool, tool_log_line
from .streams import StderrCollector

logger = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    """The checks ``backup verify`` passed, in order; a failed check raises instead."""

    path: Path
    manifest: Manifest
    checks: list[str] = field(default_factory=list)


def verify_checksum(path: Path, manifest: Manifest) -> None:
    if manifest.files:
        actual = sha256_of_tree(path)
        if actual != manifest.files:
            changed = sorted(set(actual) ^ set(manifest.files) | {name for name in actual
                                                                  if actual[name] != manifest.files.get(name)})
            raise BackupError(_("Checksum mismatch in {path}: {files} changed since the backup was made.")
                              .format(path=path, files=", ".join(changed)))
        return
    actual = sha256_of_file(path)
    if not hmac.compare_digest(actual, manifest.sha256):
        raise BackupError(_("Checksum mismatch for {path}: expected sha256 {expected}, found {actual}. "
                            "The file is damaged or was changed.").format(
            path=path, expected=manifest.sha256, actual=actual))


def archive_major(manifest: Manifest) -> int:
    """The major version pg_restore needs: that of the pg_dump which wrote the archive, else of the server."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+)", manifest.pg_dump_version or "")
    if match:
        return int(match.group(1))
    return int((manifest.server_version or "0").split(".")[0])


def verify_backup(path: Path, decryption: Decryption | None = None, pg_bindir: Path | None = None) -> VerifyReport:
    """Check the checksum, then decrypt (when ``decryption`` has a key) and list the archive with pg_restore."""
    decryption = decryption or Decryption()
    manifest = require_manifest(path)
    report = VerifyReport(path, manifest)
    verify_checksum(path, manifest)
    report.checks.append("checksum")

    if manifest.source == "url":
        if manifest.encrypted:
            if not decryption.available:
                return report
            body = decrypt_to_bytes(path, decryption)
        else:
            body = path.read_bytes()
        try:
            json.loads(body)
        except ValueError as exc:
            raise BackupError(_("{path} does not hold valid JSON: {error}").format(
                path=path, error=describe_json_error(exc))) from None
        report.checks.append("decrypt+json" if manifest.encrypted else "json")
        return report

    pg_restore = find_tool("pg_restore", archive_major(manifest), pg_bindir)
    if not manifest.encrypted:
        result = subprocess.run([str(pg_restore.path), "--list", str(path)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, check=False, env=child_environment())
        if result.returncode != 0:
            raise BackupError(_("pg_restore --list could not read {path}: {error}").format(
                path=path, error=result.stderr.decode("utf-8", "replace").strip()))
        report.checks.append("pg_restore --list")
        return report
    if not decryption.available:
        return report
    code, error = run_on_decrypted([str(pg_restore.path), "--list"], path, decryption)
    if code != 0:
        raise BackupError(_("pg_restore --list could not read the decrypted {path}: {error}").format(
            path=path, error=error))
    report.checks.append("decrypt+pg_restore --list")
    return report


def run_on_decrypted(args: list[str], path: Path, decryption: Decryption,
                     environment: dict[str, str] | None = None) -> tuple[int, str]:
    """Run pg_restore with the decrypted backup on its stdin; return its exit code and stderr.

    The plaintext only passes through the pipe, never the disk. The child is
    killed if decryption fails half-way.
    """
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env=child_environment(environment))
    try:
        errors = StderrCollector(process, lambda line: logger.warning("%s", tool_log_line("pg_restore", line)))
        with path.open("rb") as source:
            decryption.decrypt(source, PipeWriter(process.stdin))
        try:
            process.stdin.close()
        except BrokenPipeError:
            pass
        return process.wait(), errors.join()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def decrypt_to_bytes(path: Path, decryption: Decryption) -> bytes:
    """Decrypt a small backup (a JSON body from --from-url) into memory."""
    buffer = io.BytesIO()
    with path.open("rb") as source:
        decryption.decrypt(source, buffer)
    return buffer.getvalue()


def require_file(path: Path) -> None:
    if not path.exists():
        raise InvalidArgumentError(_("Backup {path} does not exist.").format(path=path))
