"""Finding pg_dump, pg_restore and pg_dumpall of a major version the server accepts.

pg_dump refuses to dump a server of a newer major version, and pg_restore
cannot read archives of a newer pg_dump, so every tool must be at least as
new as the server. Candidates come from PATH, ``pg_config --bindir``,
Debian's ``/usr/lib/postgresql/*/bin`` and the pgserver wheel. The oldest
suitable one wins: the server's own major version is then preferred, so the
distribution's pg_restore of that version can read the archive.
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import PgToolNotFoundError
from ..i18n import _
from ..locales import child_environment

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@dataclass(frozen=True)
class PgTool:
    """One PostgreSQL client program and the version it reports."""

    path: Path
    major: int
    version_text: str


def tool_log_line(program: str, line: str) -> str:
    """Prefix a line of a PostgreSQL tool's stderr with the program's name, unless the tool already wrote it."""
    return line if line.startswith(f"{program}:") else f"{program}: {line}"


def candidate_bindirs() -> list[Path]:
    """List the folders searched for client programs, in search order, without duplicates."""
    folders: list[Path] = [Path(entry) for entry in os.environ.get("PATH", "").split(os.pathsep) if entry]
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            result = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False,
                                    env=child_environment())
            if result.returncode == 0 and result.stdout.strip():
                folders.append(Path(result.stdout.strip()))
        except (OSError, subprocess.TimeoutExpired) as exc:
            logger.debug("pg_config --bindir failed: %s", exc)
    folders += [Path(folder) for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.origin is not None:
        folders.append(Path(spec.origin).parent / "pginstall" / "bin")
    unique: list[Path] = []
    for folder in folders:
        if folder not in unique:
            unique.append(folder)
    return unique


def probe_tool(path: Path) -> PgTool | None:
    """Run ``PROGRAM --version`` and parse the major version; None if it does not run."""
    try:
        result = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10, check=False,
                                env=child_environment())
    except (OSError, subprocess.TimeoutExpired) as exc:
        logger.debug("%s --version failed: %s", path, exc)
        return None
    match = _VERSION.search(result.stdout)
    if result.returncode != 0 or not match:
        logger.debug("%s --version gave no PostgreSQL version: %r", path, result.stdout.strip())
        return None
    return PgTool(path, int(match.group(1)), result.stdout.strip())


def find_tool(name: str, server_major: int, explicit: Path | None = None) -> PgTool:
    """Return the oldest ``name`` (pg_dump, pg_restore, pg_dumpall) whose major version >= ``server_major``.

    With ``explicit`` (a configured path to the program or its folder) only
    that program is considered.
    """
    if explicit is not None:
        path = explicit / name if explicit.is_dir() else explicit
        tool = probe_tool(path)
        if tool is None:
            raise PgToolNotFoundError(
                _("{program} at {path} does not run or does not report a PostgreSQL version. "
                  "Check the pg_bindir setting.").format(program=name, path=path))
        if tool.major < server_major:
            raise PgToolNotFoundError(
                _("{path} is PostgreSQL {found}, older than the server ({server}); it cannot dump or restore it. "
                  "Install the PostgreSQL {server} client programs or point pg_bindir at them.")
                .format(path=path, found=tool.major, server=server_major))
        return tool

    seen: list[PgTool] = []
    for folder in candidate_bindirs():
        path = folder / name
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        tool = probe_tool(path)
        if tool is not None and all(tool.path.resolve() != other.path.resolve() for other in seen):
            seen.append(tool)
    suitable = [tool for tool in seen if tool.major >= server_major]
    if not suitable:
        found = ", ".join(f"{tool.path} ({tool.major})" for tool in seen) or _("none")
        raise PgToolNotFoundError(
            _("No {program} of PostgreSQL {server} or newer was found (found: {found}). Install the PostgreSQL "
              "{server} client programs or set pg_bindir.").format(program=name, server=server_major, found=found))
    best = min(suitable, key=lambda tool: tool.major)
    logger.debug("using %s (%s)", best.path, best.version_text)
    return best
