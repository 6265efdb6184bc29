"""Fixtures: real PostgreSQL servers, fresh databases, the sample databases and the CLI.

Which servers the suite runs against:
- ``AUDITCTL_TEST_DSN`` set: only that server (the DSN must allow CREATE DATABASE);
- otherwise every throwaway cluster that can be made here: Debian's
  ``/usr/lib/postgresql/*/bin`` and the PostgreSQL 16 of the pgserver wheel;
- ``AUDITCTL_TEST_PG=pg15,pgserver`` picks among those by label;
- ``AUDITCTL_TEST_DOCKER_IMAGE=postgres:17`` adds a testcontainers server when
  a Docker engine responds to a ping.
Every test that takes ``pg`` runs once per server.
"""

from __future__ import annotations

import logging
import os
import pty
import re
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from pgcluster import Cluster, ServerBinaries, debian_binaries, pgserver_binaries  # noqa: E402

pytest_plugins = ["backup_fixtures"]

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("AUDITCTL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@dataclass
class ServerSpec:
    """A server the suite can run against, before it is started."""

    label: str
    binaries: ServerBinaries | None = None
    dsn: str | None = None
    docker_image: str | None = None

    def version_text(self) -> str:
        if self.binaries:
            result = subprocess.run([str(self.binaries.bindir / "postgres"), "--version"],
                                    capture_output=True, text=True, check=False)
            return result.stdout.strip() or result.stderr.strip()
        if self.dsn:
            with psycopg.connect(self.dsn) as connection:
                return connection.execute("SELECT version()").fetchone()[0]
        return f"docker image {self.docker_image}"


def _docker_answers() -> bool:
    try:
        import docker
        docker.from_env().ping()
        return True
    except Exception:
        return False


def discover_servers() -> list[ServerSpec]:
    if os.environ.get("AUDITCTL_TEST_DSN"):
        return [ServerSpec("dsn", dsn=os.environ["AUDITCTL_TEST_DSN"])]
    specs = [ServerSpec(b.label, binaries=b) for b in debian_binaries()]
    bundled = pgserver_binaries()
    if bundled:
        specs.append(ServerSpec(bundled.label, binaries=bundled))
    image = os.environ.get("AUDITCTL_TEST_DOCKER_IMAGE")
    if image and _docker_answers():
        specs.append(ServerSpec("docker", docker_image=image))
    wanted = os.environ.get("AUDITCTL_TEST_PG")
    if wanted:
        labels = {label.strip() for label in wanted.split(",")}
        specs = [spec for spec in specs if spec.label in labels]
    return specs


SERVERS = discover_servers()


def pytest_report_header(config: pytest.Config) -> list[str]:
    if not SERVERS:
        return ["PostgreSQL: no server found (install postgresql or pgserver, or set AUDITCTL_TEST_DSN)"]
    return [f"PostgreSQL [{spec.label}]: {spec.version_text()}" for spec in SERVERS]


class Server:
    """A started server: its admin DSN, and a way to make databases on it."""

    def __init__(self, spec: ServerSpec):
        self.spec = spec
        self._cluster: Cluster | None = None
        self._container = None
        if spec.binaries:
            self._cluster = Cluster(spec.binaries)
            self._cluster.start()
            self.admin_dsn = self._cluster.dsn()
            self.bindir: Path | None = spec.binaries.bindir
        elif spec.docker_image:
            from testcontainers.postgres import PostgresContainer
            self._container = PostgresContainer(spec.docker_image, driver=None).start()
            self.admin_dsn = self._container.get_connection_url()
            self.bindir = None
        else:
            self.admin_dsn = spec.dsn
            self.bindir = None
        with psycopg.connect(self.admin_dsn) as connection:
            self.version = connection.info.server_version

    def dsn_for(self, dbname: str) -> str:
        params = psycopg.conninfo.conninfo_to_dict(self.admin_dsn)
        params["dbname"] = dbname
        return psycopg.conninfo.make_conninfo(**params)

    def create_database(self, template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as connection:
            clause = f" TEMPLATE {template}" if template else ""
            connection.execute(f"CREATE DATABASE {name}{clause}")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def psql(self) -> str:
        if self.bindir and (self.bindir / "psql").exists():
            return str(self.bindir / "psql")
        return "psql"

    def load_sql_files(self, dbname: str, files: list[Path]) -> None:
        args = [self.psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.dsn_for(dbname)]
        for path in files:
            args += ["-f", str(path)]
        subprocess.run(args, check=True, capture_output=True, text=True)

    def stop(self) -> None:
        if self._cluster:
            self._cluster.stop()
        if self._container:
            self._container.stop()


@pytest.fixture(scope="session", params=SERVERS, ids=[spec.label for spec in SERVERS])
def pg(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A running PostgreSQL server; tests using it run once per server."""
    server = Server(request.param)
    yield server
    server.stop()


@dataclass
class Database:
    """A fresh, empty database on one server."""

    server: Server
    name: str

    @property
    def dsn(self) -> str:
        return self.server.dsn_for(self.name)

    def connect(self, **kwargs) -> psycopg.Connection:
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.dsn, **kwargs)


@pytest.fixture
def db(pg: Server) -> Iterator[Database]:
    """A new empty database, dropped after the test."""
    name = pg.create_database()
    yield Database(pg, name)
    pg.drop_database(name)


def shared_data(*parts: str) -> Path:
    """Path to a file of the sample databases; skips the test when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"sample data not found at {path} (set AUDITCTL_SHARED_DATA to its folder)")
    return path


_templates: dict[tuple[str, str], str] = {}


def _template_database(server: Server, key: str, files: list[Path]) -> str:
    """Load sample SQL once per server into a template database."""
    cache_key = (server.spec.label, key)
    if cache_key not in _templates:
        name = server.create_database()
        server.load_sql_files(name, files)
        _templates[cache_key] = name
    return _templates[cache_key]


@pytest.fixture
def pagila(pg: Server) -> Iterator[Database]:
    """A fresh copy of the Pagila sample database."""
    files = [shared_data("pagila", "pagila-schema.sql"), shared_data("pagila", "pagila-data.sql")]
    template = _template_database(pg, "pagila", files)
    name = pg.create_database(template=template)
    yield Database(pg, name)
    pg.drop_database(name)


@pytest.fixture
def prisma_app(pg: Server) -> Iterator[Database]:
    """A fresh copy of the Prisma-style app database with its seed data."""
    files = [shared_data("prisma-app", "schema.sql"), shared_data("prisma-app", "seed.sql")]
    template = _template_database(pg, "prisma", files)
    name = pg.create_database(template=template)
    yield Database(pg, name)
    pg.drop_database(name)


@dataclass
class CliResult:
    """Outcome of one `auditctl` run in a subprocess."""

    exit_code: int
    stdout: str
    stderr: str


def _cli_environment(env: dict[str, str] | None, dsn: str | None) -> dict[str, str]:
    """Return the environment of a CLI run: English, 200 columns wide, this checkout first on the path."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("AUDITCTL_DSN", "DATABASE_URL", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")}
    environment.update({"LANG": "C.UTF-8", "COLUMNS": "200"})
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    if dsn:
        environment["AUDITCTL_DSN"] = dsn
    environment.update(env or {})
    return environment


def run_cli(*args: str, env: dict[str, str] | None = None, dsn: str | None = None,
            input_text: str | None = None, cwd: Path | None = None) -> CliResult:
    """Run ``python -m auditctl ARGS`` as a user would, in an English locale unless ``env`` sets another.

    The process runs in the current folder unless ``cwd`` names another, and
    imports auditctl from this checkout wherever it runs.
    """
    completed = subprocess.run([sys.executable, "-m", "auditctl", *args], capture_output=True, text=True,
                               env=_cli_environment(env, dsn), input=input_text, timeout=300, check=False, cwd=cwd)
    return CliResult(completed.returncode, completed.stdout, completed.stderr)


def start_cli(*args: str, env: dict[str, str] | None = None, dsn: str | None = None,
              new_session: bool = False) -> subprocess.Popen:
    """Start ``python -m auditctl ARGS`` as ``run_cli`` would, without waiting, for tests that signal it.

    With ``new_session`` the process leads a process group of its own, which ``os.killpg`` can signal as a
    terminal's Ctrl-C does.
    """
    return subprocess.Popen([sys.executable, "-m", "auditctl", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_cli_environment(env, dsn),
                            start_new_session=new_session)


# Control sequences that rich writes to a terminal: colours, cursor moves and line erasing.
_TERMINAL_CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_cli_in_terminal(*args: str, env: dict[str, str] | None = None, dsn: str | None = None,
                        timeout: float = 300) -> CliResult:
    """Run ``python -m auditctl ARGS`` on a pseudo-terminal, as typed in an interactive shell.

    stdin, stdout and stderr are all the terminal, so ``stdout`` of the
    result contains both output streams, without rich's control sequences,
    and ``stderr`` is empty.
    """
    environment = _cli_environment({"TERM": "xterm", **(env or {})}, dsn)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "-m", "auditctl", *args], stdin=terminal, stdout=terminal,
                                   stderr=terminal, env=environment)
    finally:
        os.close(terminal)

    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                process.kill()
                raise TimeoutError(f"auditctl {' '.join(args)} timed out after {timeout} s")
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                # Linux reports EIO once the child has closed its end of the terminal.
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(controller)

    exit_code = process.wait(timeout=timeout)
    output = b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")
    return CliResult(exit_code, _TERMINAL_CONTROL.sub("", output), "")


@dataclass
class UserFolders:
    """The empty working folder and home folder that each test runs in."""

    workdir: Path
    home: Path


@pytest.fixture(autouse=True)
def user_folders(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> UserFolders:
    """Run each test in an empty working folder with an empty HOME.

    auditctl reads ``./auditctl.toml`` and ``~/.config/auditctl/config.toml``
    when no --config is given, so a config file of the person running the
    tests would otherwise change what the commands under test do. The CLI
    subprocesses inherit both folders. Tests of that lookup write their
    files into these folders.
    """
    root = tmp_path_factory.mktemp("user")
    folders = UserFolders(workdir=root / "work", home=root / "home")
    folders.workdir.mkdir()
    folders.home.mkdir()
    monkeypatch.chdir(folders.workdir)
    monkeypatch.setenv("HOME", str(folders.home))
    monkeypatch.delenv("AUDITCTL_CONFIG", raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return folders


@pytest.fixture
def cli():
    """The ``run_cli`` helper, as a fixture."""
    return run_cli


@pytest.fixture
def auditctl_logging() -> Iterator[None]:
    """Put back the handlers and levels of auditctl's loggers after a test that sets logging up in this process.

    The CLI's configure_logging binds a handler to the sys.stderr of the
    moment, which pytest replaces for each test.
    """
    loggers = [logging.getLogger(name) for name in ("auditctl", "auditctl.progress")]
    saved = [(list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    yield
    for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
