"""Object Lock retention until a record's expiry, on real SeaweedFS (R-DESTROY-1): every
AIP version of a record whose retention has not ended carries COMPLIANCE retention until
the end of its ``retention_until`` day, so nobody can delete it earlier, not even with
the storage credentials; a record whose retention ended is not locked (beyond
``s3_retention_days``), a permanent one keeps only that; an extension extends the lock,
never shortens it."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from archive.errors import Refused
from archive.models import Record
from archive.storage.memory import MemoryStore
from archive.storage.object_lock import apply_retention, lock_record_versions, lock_until
from tests.conftest import ORG, ArchiveEnv, _base_env, make_archive_env


def _years_ago(years: int, plus_days: int = 0) -> date:
    today = datetime.now(UTC).date()
    try:
        start = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        start = today.replace(year=today.year - years, day=28)
    return start + timedelta(days=plus_days)


@pytest.fixture
def locked_archive(seaweed, pg_url, tmp_path, request):
    """SeaweedFS bucket with Object Lock, PostgreSQL, and no blanket retention days: the
    only retention is the record's own."""
    env = _base_env(tmp_path)
    env.update({
        "ARCHIVE_DATABASE__URL": pg_url,
        "ARCHIVE_STORAGE__BACKEND": "s3",
        "ARCHIVE_STORAGE__S3_ENDPOINT": seaweed.endpoint,
        "ARCHIVE_STORAGE__S3_BUCKET": seaweed.new_bucket(object_lock=True),
        "ARCHIVE_STORAGE__S3_ACCESS_KEY": seaweed.access_key,
        "ARCHIVE_STORAGE__S3_SECRET_KEY": seaweed.secret_key,
        "ARCHIVE_STORAGE__S3_RETENTION_DAYS": "0",
    })
    aenv = ArchiveEnv("locked", env, tmp_path)
    assert aenv.invoke("init").exit_code == 0
    assert aenv.invoke("agents", "add-org", ORG, "Văn phòng").exit_code == 0
    yield aenv
    aenv.close()


def _ingest(aenv: ArchiveEnv, name: str, **meta) -> str:
    pdf = aenv.sample(name, text=name, number_symbol=f"{name}/TU", **meta)
    return aenv.json("ingest", str(pdf))["results"][0]["record_id"]


def _raw_client(seaweed):
    """A plain S3 client holding the storage credentials (what an operator could use)."""
    return boto3.client("s3", endpoint_url=seaweed.endpoint, region_name="us-east-1",
                        aws_access_key_id=seaweed.access_key,
                        aws_secret_access_key=seaweed.secret_key)


def _record(instance, rid: str) -> Record:
    with instance.catalog.unit_of_work() as db:
        row = db.scalar(select(Record).where(Record.id == rid)
                        .options(selectinload(Record.versions)))
        db.expunge_all()
        return row


def test_unexpired_record_is_locked_until_its_expiry(locked_archive, seaweed):
    # 5-year rule, dated so that its retention ends in 40 days.
    rid = _ingest(locked_archive, "keep", retention_rule="5y",
                  date=_years_ago(5, plus_days=40).isoformat())
    instance = locked_archive.instance()
    store = instance.store
    record = _record(instance, rid)
    dated = _years_ago(5, plus_days=40)
    assert record.retention_until == dated.replace(year=dated.year + 5)
    key = f"aip/{rid}/v0001.tar"
    info = store.stat(key)
    assert info.extra.get("lock_mode") == "COMPLIANCE"
    assert info.extra["retain_until"] == lock_until(record.retention_until)
    assert info.extra["retain_until"] > datetime.now(UTC) + timedelta(days=40)

    # Nobody deletes it early: not the archive's store ...
    with pytest.raises(Refused):
        store.delete(key)
    # ... nor the owner of the storage credentials with a raw client, on every version,
    # even asking to bypass governance retention (COMPLIANCE has no bypass).
    client = _raw_client(seaweed)
    versions = client.list_object_versions(Bucket=store.bucket, Prefix=key)["Versions"]
    for version in versions:
        with pytest.raises(ClientError):
            client.delete_object(Bucket=store.bucket, Key=key, VersionId=version["VersionId"],
                                 BypassGovernanceRetention=True)
    # ... nor by shortening the retention.
    with pytest.raises(ClientError):
        client.put_object_retention(
            Bucket=store.bucket, Key=key, VersionId=versions[0]["VersionId"],
            Retention={"Mode": "COMPLIANCE",
                       "RetainUntilDate": datetime.now(UTC) + timedelta(days=1)},
            BypassGovernanceRetention=True)
    assert store.exists(key)
    assert locked_archive.invoke("fixity", "check", rid).exit_code == 0

    # The next AIP version carries the same retention.
    result = locked_archive.json("records", "repackage", rid)
    assert result["version"] == 2
    second = store.stat(f"aip/{rid}/v0002.tar")
    assert second.extra.get("lock_mode") == "COMPLIANCE"
    assert second.extra["retain_until"] == lock_until(record.retention_until)


def test_expired_and_permanent_records_are_not_locked(locked_archive):
    expired = _ingest(locked_archive, "old", retention_rule="5y",
                      date=_years_ago(6).isoformat())
    permanent = _ingest(locked_archive, "forever", retention_rule="vv")
    instance = locked_archive.instance()
    store = instance.store
    assert _record(instance, expired).retention_until < datetime.now(UTC).date()
    assert _record(instance, permanent).retention_until is None
    for rid in (expired, permanent):
        assert "retain_until" not in store.stat(f"aip/{rid}/v0001.tar").extra
    # The expired record's bytes can be deleted (what an approved destruction does).
    store.delete(f"aip/{expired}/v0001.tar")
    assert not store.exists(f"aip/{expired}/v0001.tar")


def test_extension_extends_the_lock_and_never_shortens_it(locked_archive):
    rid = _ingest(locked_archive, "extend", retention_rule="5y",
                  date=_years_ago(5, plus_days=10).isoformat())
    instance = locked_archive.instance()
    store = instance.store
    key = f"aip/{rid}/v0001.tar"
    before = store.stat(key).extra["retain_until"]

    later = datetime.now(UTC).date() + timedelta(days=400)
    with instance.catalog.unit_of_work() as db:
        db.get(Record, rid).retention_until = later  # as an extension decision does
    locked = lock_record_versions(store, _record(instance, rid))
    assert locked == {key: lock_until(later)}
    assert store.stat(key).extra["retain_until"] == lock_until(later) > before

    # An earlier date (a mistaken call) keeps the later retention in force.
    assert apply_retention(store, key, later - timedelta(days=100)) == lock_until(later)
    assert store.stat(key).extra["retain_until"] == lock_until(later)


def test_stores_without_object_lock_are_left_alone(seaweed, tmp_path, request):
    assert apply_retention(MemoryStore(), "aip/x/v0001.tar", date(2999, 1, 1)) is None
    plain = seaweed.store(seaweed.new_bucket())
    plain.put("aip/x/v0001.tar", io.BytesIO(b"x"))
    assert apply_retention(plain, "aip/x/v0001.tar", date(2999, 1, 1)) is None
    assert "retain_until" not in plain.stat("aip/x/v0001.tar").extra
    # A local archive ingests as before.
    aenv = make_archive_env("local-sqlite", tmp_path, request)
    try:
        assert _ingest(aenv, "local", retention_rule="5y")
    finally:
        aenv.close()
