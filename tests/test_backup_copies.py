"""Backup copies of every stored object (R-BACKUP-1): copied to a second, independent
store, re-read and verified before they are registered; nothing is copied twice; a copy
that does not verify is an alert and is not registered. Both configurations: a local
folder + SQLite, and SeaweedFS (a second bucket) + PostgreSQL."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from archive.audit import CHECKPOINT_PREFIX
from archive.models import AuditEntry, BackupCopy, Record
from archive.principal import Principal
from preservation import backup as backup_job
from preservation.jobspec import JobContext
from tests.conftest import sample_metadata
from tests.test_fixity import _ingest, _read

JOB_PRINCIPAL = Principal.system("job:backup")


def with_backup_store(archive_env, request):
    """``archive_env`` with its backup store: the default local folder, or a second
    SeaweedFS bucket for the S3 configuration."""
    if archive_env.name == "s3-postgresql":
        seaweed = request.getfixturevalue("seaweed")
        archive_env.env.update({
            "ARCHIVE_BACKUP__BACKEND": "s3",
            "ARCHIVE_BACKUP__S3_ENDPOINT": seaweed.endpoint,
            "ARCHIVE_BACKUP__S3_BUCKET": seaweed.new_bucket(),
            "ARCHIVE_BACKUP__S3_ACCESS_KEY": seaweed.access_key,
            "ARCHIVE_BACKUP__S3_SECRET_KEY": seaweed.secret_key,
        })
    return archive_env


@pytest.fixture
def backed_up(archive_env, request):
    return with_backup_store(archive_env, request)


def raw_backup_rewrite(aenv, key: str, data: bytes) -> None:
    """Change a backup copy behind the archive's back."""
    settings = aenv.settings
    if settings.backup.backend == "local":
        path = settings.backup_local_path / key
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.chmod(0o644)
        path.write_bytes(data)
    else:
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", endpoint_url=settings.backup.s3_endpoint,
                          aws_access_key_id=settings.backup.s3_access_key,
                          aws_secret_access_key=settings.backup.s3_secret_key,
                          region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        s3.put_object(Bucket=settings.backup.s3_bucket, Key=key, Body=data)


def raw_backup_delete(aenv, key: str) -> None:
    settings = aenv.settings
    if settings.backup.backend == "local":
        (settings.backup_local_path / key).unlink()
    else:
        aenv.instance().backup_store.delete(key)


def read_backup(aenv, key: str) -> bytes:
    with aenv.instance().backup_store.open(key) as fh:
        return fh.read()


def copies(aenv) -> dict[str, BackupCopy]:
    instance = aenv.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        rows = session.scalars(select(BackupCopy)).all()
        session.expunge_all()
    return {row.object_key: row for row in rows}


def _refuse_one(aenv) -> str:
    """A refused submission: its return-to-sender report is a stored object."""
    path = aenv.tmp_path / "note.txt"
    path.write_text("not a PDF")
    path.with_name("note.txt.json").write_text(json.dumps(sample_metadata()),
                                               encoding="utf-8")
    result = aenv.invoke("ingest", str(path), "--json")
    assert result.exit_code == 3
    return json.loads(result.stdout)["results"][0]["submission_id"]


def test_every_object_is_copied_verified_and_registered_once(backed_up):
    ids = _ingest(backed_up, 2)
    _refuse_one(backed_up)
    instance = backed_up.instance()
    instance.checkpoint()
    primary = {info.key for info in instance.store.list()}
    aips = {f"aip/{rid}/v0001.tar" for rid in ids}
    checkpoints = {k for k in primary if k.startswith(CHECKPOINT_PREFIX)}
    reports = {k for k in primary if k.startswith("reports/")}
    assert aips <= primary and checkpoints and reports

    seen: list[int] = []
    out = backup_job.copy_objects(instance, JOB_PRINCIPAL, progress=seen.append)
    expected = aips | checkpoints | reports
    assert out["failed"] == 0 and out["alerts"] == []
    # checkpoints may already be in the backup store (written to both): verified, not copied
    assert out["copied"] + out["verified"] == len(expected) == sum(seen)
    rows = copies(backed_up)
    assert set(rows) == expected
    assert {rows[k].kind for k in aips} == {"aip"}
    assert {rows[k].kind for k in checkpoints} == {"checkpoint"}
    assert {rows[k].kind for k in reports} == {"report"}
    for key in expected:
        assert read_backup(backed_up, key) == _read(backed_up, key)
        assert rows[key].last_outcome == "ok" and rows[key].last_verified_at is not None
        assert set(rows[key].digests) >= {"sha256", "sha512"}
        assert rows[key].store == instance.backup_store.name
    with instance.catalog.unit_of_work(snapshot=True) as session:
        for key in aips:
            assert rows[key].record_id in ids
        entries = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "backup.copy")).all()
        assert entries and entries[-1].actor == str(JOB_PRINCIPAL)
        assert entries[-1].outcome == "ok"

    again = backup_job.copy_objects(backed_up.instance(), JOB_PRINCIPAL)
    assert again["copied"] == again["verified"] == 0 and again["batches"] == 0
    assert set(copies(backed_up)) == expected


def test_copy_that_does_not_verify_is_not_registered(backed_up):
    good, bad = _ingest(backed_up, 2)
    key = f"aip/{bad}/v0001.tar"
    data = bytearray(_read(backed_up, key))
    data[len(data) // 2] ^= 0x01
    # a wrong object already sits at the key in the backup store (a bad disk, a
    # half-restored folder): put-if-absent keeps it, and its verification fails
    raw_backup_rewrite(backed_up, key, bytes(data))

    out = backup_job.copy_objects(backed_up.instance(), JOB_PRINCIPAL)
    assert out["failed"] == 1
    assert any(key in alert for alert in out["alerts"])
    rows = copies(backed_up)
    assert key not in rows
    assert f"aip/{good}/v0001.tar" in rows
    instance = backed_up.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "backup.copy")
                                .order_by(AuditEntry.seq.desc())).first()
        assert entry.outcome == "failed" and key in json.dumps(entry.detail)
    # the primary is untouched
    assert _read(backed_up, key) != bytes(data)


def test_damaged_primary_is_not_copied(local_archive):
    [rid] = _ingest(local_archive, 1)
    key = f"aip/{rid}/v0001.tar"
    path = local_archive.settings.local_store_path / key
    data = bytearray(path.read_bytes())
    data[600] ^= 0x01
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    out = backup_job.copy_objects(local_archive.instance(), JOB_PRINCIPAL)
    assert out["failed"] == 1 and key not in copies(local_archive)
    assert not local_archive.instance().backup_store.exists(key)


def test_destroyed_records_are_not_copied(backed_up):
    keep, gone = _ingest(backed_up, 2)
    instance = backed_up.instance()
    with instance.catalog.unit_of_work() as session:
        session.execute(update(Record).where(Record.id == gone).values(status="destroyed"))
    ctx = JobContext(instance=instance, run_id="t", job="backup", principal=JOB_PRINCIPAL,
                     clock=instance.clock, worker="test")
    planned = {key for batch in backup_job.plan(ctx, {}) for _, key, _ in batch["objects"]}
    assert f"aip/{keep}/v0001.tar" in planned
    assert f"aip/{gone}/v0001.tar" not in planned


def test_batches_follow_the_batch_size(local_archive):
    _ingest(local_archive, 3)
    local_archive.env["ARCHIVE_SCHEDULER__BATCH_SIZE"] = "2"
    instance = local_archive.instance()
    ctx = JobContext(instance=instance, run_id="t", job="backup", principal=JOB_PRINCIPAL,
                     clock=instance.clock, worker="test")
    batches = backup_job.plan(ctx, {})
    assert [len(b["objects"]) for b in batches][:1] == [2]
    assert all(len(b["objects"]) <= 2 for b in batches)
    # a batch run twice (a reclaimed lease) registers nothing twice
    backup_job.run_batch(ctx, batches[0])
    again = backup_job.run_batch(ctx, batches[0])
    assert again["copied"] == again["verified"] == 0
    assert len(copies(local_archive)) == 2


def test_backups_off_copy_nothing(local_archive):
    _ingest(local_archive, 1)
    local_archive.env["ARCHIVE_BACKUP__BACKEND"] = "none"
    out = backup_job.copy_objects(local_archive.instance(), JOB_PRINCIPAL)
    assert out["batches"] == 0 and out["copied"] == 0
    assert copies(local_archive) == {}


def test_job_finish_backs_up_the_catalog(local_archive):
    """The scheduled job's finish also backs up the catalog (when that module exists)."""
    import importlib.util

    if importlib.util.find_spec("preservation.catalog_backup") is None:
        pytest.skip("preservation.catalog_backup is not installed yet")
    _ingest(local_archive, 1)
    instance = local_archive.instance()
    ctx = JobContext(instance=instance, run_id="t", job="backup", principal=JOB_PRINCIPAL,
                     clock=instance.clock, worker="test")
    extra = backup_job.finish(ctx, {})
    assert extra == {"catalog_backups": 1}, ctx.alerts
    assert [i.key for i in instance.backup_store.list("catalog/")]


def test_renewed_timestamps_and_draft_files_are_copied_against_catalog_digests(backed_up):
    """R-TS-1, R-AMEND-1: a renewal's input and token (``timestamps/``) and a draft's
    staged file are backed up too, each checked against the digest the catalog holds;
    a renewal object whose bytes differ from the catalog's digest is not registered."""
    import hashlib
    import io
    import uuid
    from datetime import UTC, datetime

    from archive.models import ArchiveTimestamp, Draft

    (rid,) = _ingest(backed_up, 1)
    instance = backed_up.instance()
    now = datetime.now(UTC)
    blobs = {f"timestamps/{rid}/1.json": b'{"renewal": 1}',
             f"timestamps/{rid}/1.tsr": b"token bytes",
             f"drafts/{uuid.uuid4()}/file.pdf": b"%PDF-1.7 draft"}
    for key, data in blobs.items():
        instance.store.put(key, io.BytesIO(data))
    input_key, token_key, draft_key = blobs
    sha = {k: hashlib.sha256(v).hexdigest() for k, v in blobs.items()}
    with instance.catalog.unit_of_work() as session:
        session.add(ArchiveTimestamp(
            id=str(uuid.uuid4()), record_id=rid, source="renewal", object_key=token_key,
            member=input_key, covers_sha256=sha[input_key],
            # the catalog says the token is other bytes: its copy must not be registered
            token_sha256=hashlib.sha256(b"other").hexdigest(),
            hash_algorithm="sha512", gen_time=now, created_at=now))
        session.add(Draft(id=str(uuid.uuid4()), created_at=now, created_by="user:x",
                          metadata_={}, file_key=draft_key, file_name="file.pdf",
                          file_sha256=sha[draft_key], status="draft", updated_at=now))

    out = backup_job.copy_objects(instance, JOB_PRINCIPAL)
    rows = copies(backed_up)
    assert rows[input_key].kind == "timestamp" and rows[draft_key].kind == "draft"
    assert rows[input_key].digests["sha256"] == sha[input_key]
    assert read_backup(backed_up, draft_key) == blobs[draft_key]
    assert token_key not in rows and out["failed"] == 1 and out["alerts"]
