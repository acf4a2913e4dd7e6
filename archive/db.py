"""The catalog database: engines, one transaction per use case, and the schema version.

SQLite (the default, one file in the data directory) and PostgreSQL are both supported.
The schema is owned by the Alembic migrations in ``archive/migrations``; they run
programmatically (no ``alembic.ini`` at runtime) through :func:`upgrade`.

SQLite: every transaction takes the write lock at ``BEGIN IMMEDIATE`` so concurrent
writers queue (``busy_timeout``) instead of failing with "database is locked" when a
reader upgrades to a writer. Nearly every use case writes (R-AUDIT-1: reads are
audited too), so this costs little; long read-only scans use ``snapshot=True``, which
starts a deferred transaction (a WAL snapshot) that does not block writers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.orm import Session, sessionmaker

from archive.errors import (
    AccessDenied,
    ArchiveError,
    ConfigError,
    DatabaseUnavailable,
    NotInitialised,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30
NOT_INITIALISED = "catalog not initialised or out of date: run `archive init`"

# Execution option read by the SQLite "begin" hook: which BEGIN to emit.
_BEGIN_OPTION = "archive_sqlite_begin"


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///...`` or ``postgresql+psycopg://...``)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database.url: not a valid database URL: {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.drivername != "postgresql+psycopg":
            raise ConfigError(f"database.url: use the psycopg driver "
                              f"(postgresql+psycopg://...), got {parsed.drivername}")
        return create_engine(parsed, pool_pre_ping=True,
                             connect_args={"connect_timeout": 10})
    raise ConfigError(f"database.url: unsupported database {backend!r} "
                      "(use sqlite or postgresql)")


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Disable pysqlite's own (late, DML-only) BEGIN; the "begin" hook emits ours.
        dbapi_connection.isolation_level = None
        # SQLite's lower() folds ASCII only; search must find "ĐẢNG" with "đảng".
        dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def _unicode_lower(value):
    return value.lower() if isinstance(value, str) else value


def _snapshot_bind(engine: Engine) -> Engine:
    """The same engine, with transactions that read one consistent snapshot."""
    if engine.dialect.name == "sqlite":
        # A deferred transaction in WAL mode reads a snapshot and never blocks writers.
        return engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})
    return engine.execution_options(isolation_level="REPEATABLE READ",
                                    postgresql_readonly=True)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session], *, snapshot: bool = False
                 ) -> Iterator[Session]:
    """One transaction per use case: commit on success, roll back on any error.

    ``snapshot=True`` gives a read-only view of one moment (long scans such as audit
    verification); writing in it fails on PostgreSQL.
    """
    engine = factory.kw["bind"]
    session = factory(bind=_snapshot_bind(engine)) if snapshot else factory()
    try:
        try:
            session.connection()  # BEGIN now, so an unreachable database fails here
        except (OperationalError, SAInterfaceError) as exc:
            raise DatabaseUnavailable(safe_url(str(engine.url)), _reason(exc)) from exc
        yield session
        session.commit()
    except AccessDenied as exc:
        session.rollback()
        session.close()
        log_denial(factory, exc)
        raise
    except ArchiveError as exc:
        session.rollback()
        session.close()
        _log_after_rollback(factory, exc)
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _log_after_rollback(factory: sessionmaker[Session], exc: ArchiveError) -> None:
    entry = exc.audit_after_rollback
    if not entry:
        return
    from archive import audit

    exc.audit_after_rollback = None  # once, even if re-raised through outer units
    with unit_of_work(factory) as session:
        audit.append(session, **entry)


def log_denial(factory: sessionmaker[Session], exc: AccessDenied) -> None:
    """Write a denial to the audit log in its own transaction, once (R-AUDIT-1).

    The use case that was refused rolls back, but the attempt must stay on record.
    """
    if exc.logged:
        return
    from archive import audit

    d = exc.denial
    with unit_of_work(factory) as session:
        audit.append(session, d.principal, d.action, d.target, outcome="denied",
                     detail={"reason": d.reason}, client=exc.client)
    exc.logged = True


class Catalog:
    """An engine plus its session factory: what a service needs to open transactions."""

    def __init__(self, url: str, *, engine: Engine | None = None):
        self.url = url
        self.engine = engine if engine is not None else make_engine(url)
        self.sessions = session_factory(self.engine)

    @classmethod
    def from_settings(cls, settings, *, require: bool = True) -> Catalog:
        """The catalog named by ``settings``; by default checks the schema is current."""
        catalog = cls(settings.database_url)
        if require:
            try:
                catalog.require_current()
            except ArchiveError:
                catalog.dispose()
                raise
        return catalog

    def unit_of_work(self, *, snapshot: bool = False):
        return unit_of_work(self.sessions, snapshot=snapshot)

    def log_denial(self, exc: AccessDenied) -> None:
        """Audit a denial that was raised outside any unit of work (once)."""
        log_denial(self.sessions, exc)

    def require_current(self) -> None:
        require_current(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


# ---- schema version (Alembic, programmatic) -----------------------------------------


def alembic_config(url: str | None = None):
    """An Alembic ``Config`` built in code: no ``alembic.ini`` needed at runtime."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal "%" must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(url: str, revision: str = "head") -> None:
    """Create or bring the catalog schema up to date (``archive init``)."""
    from alembic import command

    _check_sqlite_dir(url)
    engine = make_engine(url)
    try:
        config = alembic_config(url)
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
        except (OperationalError, SAInterfaceError) as exc:
            raise DatabaseUnavailable(safe_url(url), _reason(exc)) from exc
    finally:
        engine.dispose()


def current_revision(url: str) -> str | None:
    """The schema revision the database is at, or None when it has none."""
    if _sqlite_missing(url):
        return None
    engine = make_engine(url)
    try:
        return _revision_of(engine)
    finally:
        engine.dispose()


def require_current(engine: Engine) -> None:
    """Raise ``NotInitialised`` unless the schema exists and is at the head revision."""
    if _sqlite_missing(str(engine.url)):
        raise NotInitialised(NOT_INITIALISED)
    if _revision_of(engine) != head_revision():
        raise NotInitialised(NOT_INITIALISED)


def _revision_of(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            return MigrationContext.configure(connection).get_current_revision()
    except (OperationalError, SAInterfaceError) as exc:
        raise DatabaseUnavailable(safe_url(str(engine.url)), _reason(exc)) from exc


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_missing(url: str) -> bool:
    """True for a SQLite file that does not exist (connecting would create it)."""
    path = _sqlite_path(url)
    return path is not None and not path.exists()


def _check_sqlite_dir(url: str) -> None:
    path = _sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise DatabaseUnavailable(safe_url(url), f"folder {path.parent} does not exist")


def _reason(exc: Exception) -> str:
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return text[0] if text else type(original).__name__
