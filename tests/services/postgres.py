"""A private PostgreSQL 15 cluster on loopback for the test session.

``postgres_server`` (session) runs ``initdb`` + ``pg_ctl`` in a temporary folder (as
the ``postgres`` user when the tests run as root: initdb refuses root), listening on
127.0.0.1 only with its socket in that folder, fsync off. ``pg_url`` gives each test a
fresh empty database. ``catalog_url`` / ``catalog_engine`` run a catalog test on both
SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services.common import free_port, unavailable

PG_BIN = Path(os.environ.get("ARCHIVE_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "archive"


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    folder: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def admin_dsn(self) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname=postgres"


def _as_postgres() -> list[str]:
    """Command prefix to run PostgreSQL tools as the ``postgres`` user when root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        return []
    return ["runuser", "-u", "postgres", "--"]


def _run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


class PostgresUnavailable(Exception):
    """The private cluster could not be started; the message says why."""


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a private PostgreSQL cluster on loopback; stop and remove it afterwards.

    Used by the test fixture and by the benchmarks in ``bench/``.
    """
    for tool in ("initdb", "pg_ctl"):
        if not (PG_BIN / tool).exists():
            raise PostgresUnavailable(f"{PG_BIN / tool} not found (set ARCHIVE_PG_BIN)")
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        raise PostgresUnavailable(f"psycopg is not installed: {exc}") from exc

    folder = Path(tempfile.mkdtemp(prefix="archive-pg-"))
    data = folder / "data"
    prefix = _as_postgres()
    started = False
    try:
        if prefix:
            shutil.chown(folder, user="postgres", group="postgres")
        os.chmod(folder, 0o700)
        port = free_port()
        result = _run(prefix + [str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER,
                                "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8",
                                "--no-sync"])
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed: {result.stderr.strip()[-500:]}")
        options = (f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        result = _run(prefix + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                                str(folder / "pg.log"), "-w", "-t", "30", "-o", options,
                                "start"])
        started = True  # pg_ctl may have started it even when it reports a failure
        if result.returncode != 0:
            log = (folder / "pg.log").read_text(errors="replace")[-800:] \
                if (folder / "pg.log").exists() else ""
            raise PostgresUnavailable(f"pg_ctl start failed: {result.stderr.strip()} {log}")
        yield PostgresServer("127.0.0.1", port, PG_USER, folder)
    finally:
        if started:
            _run(prefix + [str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                           "-w", "stop"], timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def create_database(server: PostgresServer, name: str) -> str:
    import psycopg

    with psycopg.connect(server.admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url(name)


@pytest.fixture(scope="session")
def postgres_server():
    try:
        with running_postgres() as server:
            yield server
    except PostgresUnavailable as exc:
        unavailable("PostgreSQL", str(exc))


@pytest.fixture
def pg_url(postgres_server):
    """A fresh, empty database on the session's cluster, dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:16]}"
    url = create_database(postgres_server, name)
    try:
        yield url
    finally:
        with psycopg.connect(postgres_server.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request, tmp_path):
    """An empty catalog database URL: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite3'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def catalog_engine(catalog_url):
    """An engine on ``catalog_url`` with the schema migrated to head."""
    from archive.db import make_engine, upgrade

    upgrade(catalog_url)
    engine = make_engine(catalog_url)
    try:
        yield engine
    finally:
        engine.dispose()
