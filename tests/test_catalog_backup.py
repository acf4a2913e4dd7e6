"""Catalog backups (R-BACKUP-1) on SQLite and PostgreSQL: a consistent snapshot stored in
the backup store with a signed manifest, verified, pruned to the newest N, audited; and
the refusals of `archive restore` (tampered backup, forged manifest, non-empty target)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess

import pytest
from sqlalchemy import select

from archive.models import AuditEntry
from preservation.catalog_backup import manifest_key, public_key, read_manifest, signed_manifest


def _ingest(aenv, name: str = "a.pdf", **meta) -> str:
    path = aenv.sample(name, text=name, number_symbol=f"{name}-QĐ/TU", **meta)
    return aenv.json("ingest", str(path))["results"][0]["record_id"]


def _backup_store(aenv):
    instance = aenv.instance()
    return instance, instance.backup_store


def _read(store, key: str) -> bytes:
    with store.open(key) as stream:
        return stream.read()


def test_catalog_backup_stored_signed_verified_and_audited(archive_env, tmp_path):
    record_id = _ingest(archive_env)
    result = archive_env.json("backup", "--no-objects")
    cat = result["catalog"]
    assert result["objects"] is None and result["ok"]
    database = "sqlite" if archive_env.name == "local-sqlite" else "postgresql"
    assert cat["database"] == database
    assert cat["key"] == f"catalog/{cat['name']}.{'sqlite3' if database == 'sqlite' else 'pgdump'}"

    instance, store = _backup_store(archive_env)
    dump = _read(store, cat["key"])
    assert len(dump) == cat["size"]
    import hashlib

    assert hashlib.sha256(dump).hexdigest() == cat["sha256"]
    assert hashlib.sha512(dump).hexdigest() == cat["sha512"]
    doc, why = read_manifest(_read(store, cat["manifest_key"]), public_key(instance.settings))
    assert why is None, why
    assert doc["sha512"] == cat["sha512"] and doc["size"] == cat["size"]
    assert doc["audit"]["seq"] == cat["audit_seq"] and doc["alembic_revision"]

    # The backup holds its own `backup.catalog` entry, and the ingested record.
    with instance.catalog.unit_of_work(snapshot=True) as session:
        entries = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "backup.catalog")).all()
    assert [(e.outcome, e.target) for e in entries] == [("started", f"backup:{cat['name']}")]
    assert entries[0].seq == int(cat["name"].rsplit("-", 1)[1]) <= cat["audit_seq"]
    if database == "sqlite":
        path = tmp_path / "copy.sqlite3"
        path.write_bytes(dump)
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("SELECT id FROM records").fetchall() == [(record_id,)]
            assert conn.execute("SELECT max(seq) FROM audit_log").fetchone()[0] == \
                cat["audit_seq"]
        finally:
            conn.close()
    else:
        assert dump[:5] == b"PGDMP"  # pg_dump's custom format
        path = tmp_path / "copy.pgdump"
        path.write_bytes(dump)
        listing = subprocess.run(["pg_restore", "--list", str(path)], capture_output=True,
                                 text=True, check=True).stdout
        assert "TABLE DATA public records" in listing
        assert "TABLE DATA public audit_log" in listing

    listed = archive_env.json("backup", "list")
    assert [(b["name"], b["ok"], b["signature_ok"]) for b in listed] == \
        [(cat["name"], True, True)]


def test_keep_newest_catalog_backups(archive_env):
    archive_env.env["ARCHIVE_BACKUP__KEEP_CATALOG_BACKUPS"] = "2"
    names = [archive_env.json("backup", "--no-objects")["catalog"]["name"] for _ in range(3)]
    assert names == sorted(names)
    listed = archive_env.json("backup", "list")
    assert [b["name"] for b in listed] == names[1:]
    instance, store = _backup_store(archive_env)
    assert not [i.key for i in store.list(f"catalog/{names[0]}")]
    with instance.catalog.unit_of_work(snapshot=True) as session:
        prunes = session.scalars(select(AuditEntry).where(
            AuditEntry.action == "backup.prune")).all()
    assert [p.detail["deleted"] for p in prunes] == [[names[0]]]


def test_backup_refused_when_backups_are_off(local_archive):
    local_archive.env["ARCHIVE_BACKUP__BACKEND"] = "none"
    result = local_archive.invoke("backup", "--no-objects")
    assert result.exit_code == 2
    assert 'backups are off (backup.backend = "none")' in result.stderr
    result = local_archive.invoke("backup", "list")
    assert result.exit_code == 2
    with local_archive.instance().catalog.unit_of_work(snapshot=True) as session:
        assert not session.scalars(select(AuditEntry).where(
            AuditEntry.action.like("backup.%"))).all()


@pytest.fixture
def pg_archive(request, tmp_path):
    """pg_dump serves PostgreSQL catalogs only: this test runs on SeaweedFS + PostgreSQL."""
    from tests.conftest import make_archive_env

    aenv = make_archive_env("s3-postgresql", tmp_path, request)
    yield aenv
    aenv.close()


def test_failed_catalog_backup_is_audited(pg_archive):
    """A snapshot that cannot be taken is refused and the attempt recorded as failed."""
    archive_env = pg_archive
    archive_env.env["ARCHIVE_BACKUP__PG_DUMP"] = "/nonexistent/pg_dump"
    result = archive_env.invoke("backup", "--no-objects")
    assert result.exit_code == 1
    assert "pg_dump" in result.stderr and "not found" in result.stderr
    with archive_env.instance().catalog.unit_of_work(snapshot=True) as session:
        outcomes = [e.outcome for e in session.scalars(select(AuditEntry).where(
            AuditEntry.action == "backup.catalog").order_by(AuditEntry.seq))]
    assert outcomes == ["started", "failed"]
    assert archive_env.json("backup", "list") == []


# ---- refusals of `archive restore` ---------------------------------------------------


def _wipe(aenv) -> None:
    """Lose the catalog and the primary store (the keys and the backup store stay)."""
    settings = aenv.settings
    aenv.close()
    if settings.database_url.startswith("sqlite"):
        path = settings.data_dir / "catalog.sqlite3"
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)
    else:
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(settings.database_url)
        admin = f"host={url.host} port={url.port} user={url.username} dbname=postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{url.database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{url.database}"')
    from archive.storage import open_store

    store = open_store(settings)
    for info in list(store.list("")):
        if hasattr(store, "root"):  # local files are read-only
            os.chmod(store.root / info.key, 0o644)
        store.delete(info.key)
    assert next(iter(store.list("")), None) is None


def _backup_folder(aenv) -> str:
    return str(aenv.settings.backup_local_path)


def _assert_nothing_restored(aenv) -> None:
    from archive import db
    from archive.storage import open_store

    settings = aenv.settings
    assert db.current_revision(settings.database_url) is None
    assert next(iter(open_store(settings).list("")), None) is None


def test_restore_refuses_a_tampered_dump(archive_env):
    _ingest(archive_env)
    cat = archive_env.json("backup", "--no-objects")["catalog"]
    _wipe(archive_env)
    instance, store = _backup_store(archive_env)
    data = bytearray(_read(store, cat["key"]))
    data[len(data) // 2] ^= 0x01  # one changed byte
    if archive_env.name == "local-sqlite":
        path = instance.settings.backup_local_path / cat["key"]
        os.chmod(path, 0o644)
        path.write_bytes(bytes(data))
    else:
        store.delete(cat["key"])
        import io

        store.put(cat["key"], io.BytesIO(bytes(data)), size=len(data))
    result = archive_env.invoke("restore", "--from", _source(archive_env), "--yes")
    assert result.exit_code == 1, result.output
    assert "does not match its signed manifest" in result.stderr
    assert "nothing was restored" in result.stderr
    _assert_nothing_restored(archive_env)


def test_restore_refuses_a_forged_manifest(archive_env):
    _ingest(archive_env)
    cat = archive_env.json("backup", "--no-objects")["catalog"]
    _wipe(archive_env)
    instance, store = _backup_store(archive_env)
    mkey = manifest_key(cat["name"])
    doc = json.loads(_read(store, mkey))
    doc["audit"]["seq"] += 100  # a forger's edit, signature kept
    forged = (json.dumps(doc, indent=2) + "\n").encode()
    _overwrite(archive_env, store, mkey, forged)
    result = archive_env.invoke("restore", "--from", _source(archive_env), "--yes", "--json")
    assert result.exit_code == 1, result.output
    assert "manifest signature invalid" in result.stderr
    assert json.loads(result.stdout)["error"]
    # A manifest signed by another key is refused too.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    doc.pop("signature")
    _overwrite(archive_env, store, mkey, signed_manifest(doc, Ed25519PrivateKey.generate()))
    result = archive_env.invoke("restore", "--from", _source(archive_env), "--yes",
                                "--catalog", cat["name"])
    assert result.exit_code == 1
    assert "not the archive's system key" in result.stderr
    _assert_nothing_restored(archive_env)
    listed = archive_env.json("backup", "list", "--from", _source(archive_env))
    assert [(b["ok"], b["signature_ok"]) for b in listed] == [(False, False)]


def _overwrite(aenv, store, key: str, data: bytes) -> None:
    import io

    if hasattr(store, "root"):
        os.chmod(store.root / key, 0o644)
    store.delete(key)
    store.put(key, io.BytesIO(data), size=len(data))


def _source(aenv) -> str:
    env = aenv.env
    if env.get("ARCHIVE_BACKUP__BACKEND") == "s3":
        return f"s3://{env['ARCHIVE_BACKUP__S3_BUCKET']}"
    return _backup_folder(aenv)


def test_restore_refuses_a_non_empty_archive(archive_env):
    record_id = _ingest(archive_env)
    archive_env.json("backup", "--no-objects")
    result = archive_env.invoke("restore", "--from", _source(archive_env), "--yes")
    assert result.exit_code == 3, result.output
    assert "is not empty" in result.stderr and "1 records" in result.stderr
    # Only the catalog wiped: the primary store still holds objects.
    settings = archive_env.settings
    if archive_env.name == "local-sqlite":
        archive_env.close()
        (settings.data_dir / "catalog.sqlite3").unlink()
        for suffix in ("-wal", "-shm"):
            (settings.data_dir / f"catalog.sqlite3{suffix}").unlink(missing_ok=True)
        result = archive_env.invoke("restore", "--from", _source(archive_env), "--yes")
        assert result.exit_code == 3
        assert "primary store" in result.stderr and "is not empty" in result.stderr
        assert not (settings.data_dir / "catalog.sqlite3").exists()
    else:
        listed = archive_env.json("records", "show", record_id)
        assert listed["id"] == record_id  # untouched


def test_restore_needs_the_keys_from_escrow(local_archive):
    _ingest(local_archive)
    local_archive.json("backup", "--no-objects")
    _wipe(local_archive)
    keys = local_archive.settings.keys_dir
    moved = keys.with_name("keys-escrow")
    keys.rename(moved)
    result = local_archive.invoke("restore", "--from", _backup_folder(local_archive), "--yes")
    assert result.exit_code == 2
    assert "from the key escrow" in result.stderr
    _assert_nothing_restored(local_archive)


def test_restore_from_an_older_backup_reports_what_was_lost(local_archive):
    """Entries written after the catalog backup are lost; the signed checkpoints in the
    backup store say how many, and are moved aside so the restored chain verifies."""
    _ingest(local_archive, "a.pdf")
    cat = local_archive.json("backup")["catalog"]
    _ingest(local_archive, "b.pdf")  # after the catalog backup
    local_archive.json("backup", "--no-catalog")  # its objects and checkpoints copied
    _wipe(local_archive)
    report = local_archive.json("restore", "--from", _backup_folder(local_archive), "--yes")
    assert report["ok"] and report["backup"] == cat["name"] and report["records"] == 1
    assert report["entries_known_lost"] > 0
    assert report["newer_checkpoints"][-1] == report["audit_seq"] + report["entries_known_lost"]
    _instance, store = _backup_store(local_archive)
    moved = [i.key for i in store.list(f"audit/superseded/{cat['name']}/")]
    assert moved and all(int(k.rsplit("/", 1)[1][:12]) > report["audit_seq"] for k in moved)
    verify = local_archive.json("audit", "verify")
    assert verify["ok"], verify["problems"]
