"""Throwaway PostgreSQL clusters for the tests.

A cluster is made with initdb in a temporary directory, listens on
127.0.0.1 at a free port and on a Unix socket in that directory, and is
removed when the test session ends. PostgreSQL refuses to run as root, so
when the tests run as root the server runs as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerBinaries:
    """A directory of PostgreSQL server binaries and a label for reports."""

    label: str
    bindir: Path


def debian_binaries() -> list[ServerBinaries]:
    """Find the Debian/Ubuntu server packages under /usr/lib/postgresql."""
    found = []
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin")):
        if Path(bindir, "postgres").exists() and Path(bindir, "initdb").exists():
            found.append(ServerBinaries(f"pg{Path(bindir).parent.name}", Path(bindir)))
    return found


def pgserver_binaries() -> ServerBinaries | None:
    """Find the PostgreSQL binaries shipped in the pgserver wheel."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    return ServerBinaries("pgserver", bindir) if (bindir / "postgres").exists() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """A running throwaway cluster; ``dsn(dbname)`` connects over TCP to 127.0.0.1."""

    def __init__(self, binaries: ServerBinaries, *, durable: bool = False):
        self.binaries = binaries
        # Tests trade durability for speed; benchmarks keep the defaults so
        # that commit costs are real.
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix=f"auditctl-test-{binaries.label}-"))
        self.datadir = self.root / "data"
        self.port = _free_port()
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self.log_path = self.root / "server.log"
        # When the tests run as root, initdb refuses to run as root as well;
        # the server files then belong to the postgres user.
        if self.run_as:
            user = pwd.getpwnam(self.run_as)
            os.chmod(self.root, 0o755)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            _ensure_traversable(self.binaries.bindir)

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(args, check=True, capture_output=True, text=True,
                              user=self.run_as, cwd=self.root, **kwargs)

    def start(self) -> None:
        self._run([str(self.binaries.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                   "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", *([] if self.durable else ["--no-sync"])])
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                   "-c max_connections=50 ")
        if self.durable:
            options += "-c shared_buffers=1GB -c max_wal_size=4GB"
        else:
            options += "-c fsync=off -c full_page_writes=off -c synchronous_commit=off -c shared_buffers=128MB"
        self._run([str(self.binaries.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.log_path),
                   "-o", options, "-w", "-t", "60", "start"])

    def stop(self) -> None:
        try:
            self._run([str(self.binaries.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate",
                       "-w", "stop"])
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"server on port {self.port} did not start; see {self.log_path}")


def _ensure_traversable(path: Path) -> None:
    """Let the postgres user reach binaries that a root-owned virtualenv holds."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & 0o005 != 0o005:
            parent.chmod(mode | 0o005)
