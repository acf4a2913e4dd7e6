"""The catalog database on SQLite and PostgreSQL: migrations, models, transactions."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, StatementError

from archive.db import (
    Catalog,
    current_revision,
    head_revision,
    make_engine,
    require_current,
    session_factory,
    unit_of_work,
    upgrade,
)
from archive.errors import ConfigError, DatabaseUnavailable, NotInitialised
from archive.models import (
    Agent,
    AuditEntry,
    AuditHead,
    Base,
    Event,
    PackageVersion,
    Record,
    StoredFile,
)
from tests.services.common import free_port

HANOI = timezone(timedelta(hours=7))


def test_migrations_match_models(catalog_engine):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    # The trigram search indexes exist on PostgreSQL only (migration 0006), outside the
    # models: an expression GIN index has no portable declaration.
    pg_only = {"ix_records_summary_trgm", "ix_records_number_symbol_trgm"}

    def include(obj, name, type_, reflected, compare_to):
        return not (type_ == "index" and name in pg_only)

    with catalog_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "compare_server_default": True,
                                                         "include_object": include})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_upgrade_sets_revision_and_genesis_head(catalog_url):
    assert current_revision(catalog_url) is None
    engine = make_engine(catalog_url)
    try:
        with pytest.raises(NotInitialised, match="run `archive init`"):
            require_current(engine)
        upgrade(catalog_url)
        upgrade(catalog_url)  # idempotent
        assert current_revision(catalog_url) == head_revision() == "0006"
        require_current(engine)
        with unit_of_work(session_factory(engine)) as session:
            head = session.get(AuditHead, 1)
            assert (head.seq, head.entry_hash) == (0, "0" * 64)
    finally:
        engine.dispose()


def test_upgrade_from_0001_keeps_data(catalog_url):
    """An archive initialised by an older version is migrated in place by `archive init`."""
    upgrade(catalog_url, "0001")
    engine = make_engine(catalog_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO agents (kind, identifier, name, status, created_at) "
                              "VALUES ('organisation', '000.00.00.H41', 'VP', 'active', "
                              "'2025-01-01 00:00:00+00:00')"))
        upgrade(catalog_url)
        assert current_revision(catalog_url) == head_revision()
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM agents")).scalar() == "VP"
            assert conn.execute(text("SELECT count(*) FROM certificates")).scalar() == 0
    finally:
        engine.dispose()


def test_stale_schema_is_not_current(catalog_engine):
    with catalog_engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    with pytest.raises(NotInitialised, match="out of date"):
        require_current(catalog_engine)


def test_missing_sqlite_file_is_not_created(tmp_path):
    path = tmp_path / "none.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    with pytest.raises(NotInitialised):
        require_current(engine)
    engine.dispose()
    assert not path.exists()


def test_unreachable_postgresql_is_a_clear_error():
    url = f"postgresql+psycopg://archive:secret@127.0.0.1:{free_port()}/nothing"
    engine = make_engine(url)
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            require_current(engine)
        assert "secret" not in info.value.message
        with pytest.raises(DatabaseUnavailable), unit_of_work(session_factory(engine)):
            pass
    finally:
        engine.dispose()
    with pytest.raises(DatabaseUnavailable):
        upgrade(url)


def test_bad_urls_are_config_errors(tmp_path):
    with pytest.raises(ConfigError):
        make_engine("mysql://x@y/z")
    with pytest.raises(ConfigError):
        make_engine("not a url")
    with pytest.raises(DatabaseUnavailable, match="does not exist"):
        upgrade(f"sqlite:///{tmp_path / 'missing' / 'c.sqlite3'}")


def _agent(identifier: str = "000.00.00.H41", **kw) -> Agent:
    values = dict(kind="organisation", identifier=identifier, name="Văn phòng Tỉnh ủy",
                  created_at=datetime(2025, 3, 14, 8, 30, 0, 123456, tzinfo=HANOI))
    values.update(kw)
    return Agent(**values)


def test_every_model_round_trips(catalog_engine):
    catalog = Catalog(str(catalog_engine.url), engine=catalog_engine)
    extra = {"recipients": ["Ban Tổ chức", "Ủy ban Kiểm tra"], "sent": "2025-03-14T08:00",
             "nested": {"a": [1, 2.5, None, True]}, "tiếng việt": "đính chính"}
    created = datetime(2025, 3, 14, 23, 59, 59, 999999, tzinfo=HANOI)
    record_id = str(uuid.uuid4())
    with catalog.unit_of_work() as s:
        org = _agent()
        s.add(org)
        s.flush()
        person = _agent("001234567890", kind="person", name="Trần Thị Bình",
                        parent_id=org.id, position="Chánh Văn phòng")
        record = Record(id=record_id, number_symbol="12-QĐ/TU", doc_type="quyet-dinh",
                        doc_date=date(2025, 3, 14), issuing_org=org,
                        summary="Quyết định về việc ban hành quy chế", signer="Trần Thị Bình",
                        classification="normal", retention_rule="vv", fonds="PHONG-01",
                        page_count=3, language="vi", extra=extra, fingerprint="a" * 64,
                        created_at=created, created_by="system:test")
        package = PackageVersion(record=record, version=1, storage_key=f"aip/{record_id}/v1",
                                 size=2**40, digests={"sha256": "b" * 64, "sha512": "c" * 128},
                                 created_at=created)
        package.files.append(StoredFile(path="data/content/x.pdf", role="original",
                                        offset=512, size=1234, digests={"sha256": "d" * 64}))
        s.add_all([person, record, package])
        s.flush()  # events have no relationship to order them after their record
        s.add_all([Event(id=str(uuid.uuid4()), record_id=record_id, event_type="ingestion",
                         occurred_at=created, agent="system:test", outcome="success",
                         data={"k": "v"}),
                   AuditEntry(seq=1, occurred_at=created, actor="a", action="x", target="t",
                              outcome="ok", detail={"n": 1}, prev_hash="0" * 64,
                              entry_hash="e" * 64)])

    with catalog.unit_of_work() as s:
        record = s.get(Record, record_id)
        assert record.extra == extra
        assert record.status == "active"
        assert record.issuing_org.identifier == "000.00.00.H41"
        assert record.doc_date == date(2025, 3, 14)
        # The same instant comes back, as aware UTC, on both databases.
        assert record.created_at == created
        assert record.created_at.tzinfo == UTC
        assert record.created_at.microsecond == 999999
        (package,) = record.versions
        assert package.size == 2**40
        assert package.digests["sha512"] == "c" * 128
        assert package.files[0].offset == 512
        person = s.execute(select(Agent).where(Agent.kind == "person")).scalar_one()
        assert person.parent_id == record.issuing_org_id and person.status == "active"
        event = s.execute(select(Event)).scalar_one()
        assert event.detail == "" and event.data == {"k": "v"}
        assert s.get(AuditEntry, 1).detail == {"n": 1}
        # Comparisons use the instant, whatever zone the parameter is in.
        later = s.execute(select(Record.id).where(
            Record.created_at > datetime(2025, 3, 14, 16, 59, 59, tzinfo=UTC))).all()
        assert [r.id for r in later] == [record_id]


def test_naive_datetime_is_refused(catalog_engine):
    with pytest.raises(StatementError, match="naive datetime"), \
            unit_of_work(session_factory(catalog_engine)) as s:
        s.add(_agent(created_at=datetime(2025, 1, 1)))
        s.flush()


def test_unit_of_work_rolls_back_on_error(catalog_engine):
    factory = session_factory(catalog_engine)
    with pytest.raises(ZeroDivisionError), unit_of_work(factory) as s:
        s.add(_agent())
        s.flush()
        1 / 0  # noqa: B018
    with unit_of_work(factory) as s:
        assert s.execute(select(Agent)).all() == []


def test_foreign_keys_are_enforced(catalog_engine):
    with pytest.raises(DBAPIError), unit_of_work(session_factory(catalog_engine)) as s:
        s.add(_agent(parent_id=4242))
        s.flush()


def test_snapshot_is_read_only_on_postgresql(pg_url):
    # PostgreSQL only: SQLite snapshots are deferred transactions, not read-only.
    upgrade(pg_url)
    engine = make_engine(pg_url)
    try:
        with pytest.raises(DBAPIError, match="read-only"), \
                unit_of_work(session_factory(engine), snapshot=True) as s:
            s.add(_agent())
            s.flush()
    finally:
        engine.dispose()


def test_sqlite_settings_and_begin_immediate(tmp_path):
    path = tmp_path / "c.sqlite3"
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = make_engine(url)
    try:
        factory = session_factory(engine)
        with unit_of_work(factory) as s:
            pragmas = {name: s.execute(text(f"PRAGMA {name}")).scalar()
                       for name in ("journal_mode", "foreign_keys", "busy_timeout",
                                    "synchronous")}
            assert pragmas == {"journal_mode": "wal", "foreign_keys": 1,
                               "busy_timeout": 30000, "synchronous": 1}
            # The write lock is held from BEGIN, before this transaction wrote anything.
            other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
                # ...while readers still read (WAL).
                assert other.execute("SELECT count(*) FROM agents").fetchone() == (0,)
            finally:
                other.close()
        # A snapshot transaction does not take the write lock.
        with unit_of_work(factory, snapshot=True) as s:
            s.execute(text("SELECT 1 FROM agents")).all()
            other = sqlite3.connect(path, timeout=0.1, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
            finally:
                other.close()
    finally:
        engine.dispose()


def test_postgresql_text_search_uses_trigram_indexes(pg_url):
    """R-REPO-1: `lower(summary) LIKE '%…%'` is served by the pg_trgm GIN indexes of
    migration 0006, not a scan of every record (issue #4's search benchmark)."""
    from sqlalchemy import create_engine, text

    from archive.db import upgrade

    upgrade(pg_url)
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            names = set(conn.scalars(text(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'records'")))
            assert {"ix_records_summary_trgm", "ix_records_number_symbol_trgm"} <= names
            conn.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(conn.scalars(text(
                "EXPLAIN SELECT id FROM records WHERE lower(summary) LIKE '%chuyển đổi%' "
                "OR lower(number_symbol) LIKE '%chuyển đổi%'")))
        assert "ix_records_summary_trgm" in plan and "ix_records_number_symbol_trgm" in plan
    finally:
        engine.dispose()
