"""The restore drill (R-BACKUP-1, R-INCIDENT-1), on embedded defaults (local folder +
SQLite, backup store a folder) and on SeaweedFS + PostgreSQL (backup store a second
SeaweedFS bucket): an archive of a few hundred records is backed up with `archive
backup`, wiped (catalog deleted or dropped, primary store emptied; the keys stay, as
they are kept apart), restored with `archive restore --from`; then every record, event
and audit entry is back, `archive fixity check --all` and `archive audit verify` pass,
a classified record decrypts for a cleared reader (and not for an uncleared one), and
the drill's timing is printed and written to test-artifacts/restore-drill.json."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import select

from archive.models import AuditEntry, Event, Record, StoredFile
from tests.conftest import sample_metadata
from tests.test_catalog_backup import _wipe

RECORDS = 300
ARTIFACT = Path(__file__).resolve().parent.parent / "test-artifacts" / "restore-drill.json"


def _use_second_bucket(aenv, request) -> str:
    """The s3 configuration backs up to a second SeaweedFS bucket; returns --from."""
    if aenv.name == "local-sqlite":
        return str(aenv.settings.backup_local_path)
    seaweed = request.getfixturevalue("seaweed")
    bucket = seaweed.new_bucket()
    aenv.env.update({
        "ARCHIVE_BACKUP__BACKEND": "s3",
        "ARCHIVE_BACKUP__S3_ENDPOINT": seaweed.endpoint,
        "ARCHIVE_BACKUP__S3_BUCKET": bucket,
        "ARCHIVE_BACKUP__S3_ACCESS_KEY": seaweed.access_key,
        "ARCHIVE_BACKUP__S3_SECRET_KEY": seaweed.secret_key,
    })
    assert aenv.env["ARCHIVE_STORAGE__S3_BUCKET"] != bucket
    return f"s3://{bucket}"


def _fill(aenv) -> tuple[list[str], int]:
    """~300 small unsigned PDFs through bulk ingest, plus two classified 'mat' records."""
    from ingest.demo import make_pdf

    inbox = aenv.tmp_path / "bulk"
    inbox.mkdir()
    for i in range(RECORDS):
        path = inbox / f"doc-{i:04d}.pdf"
        path.write_bytes(make_pdf([f"Drill document {i}", f"text {i}"]))
        meta = sample_metadata(number_symbol=f"{i}-QĐ/TU", summary=f"Văn bản diễn tập {i}")
        path.with_name(path.name + ".json").write_text(json.dumps(meta, ensure_ascii=False),
                                                       encoding="utf-8")
    result = aenv.invoke("ingest", str(inbox))
    assert result.exit_code == 0, result.output[-2000:]
    secret = []
    for i in range(2):
        pdf = aenv.sample(f"mat-{i}.pdf", text=f"NOI DUNG MAT {i}", classification="mat",
                          number_symbol=f"M{i}-QĐ/TU")
        secret.append(aenv.json("ingest", str(pdf))["results"][0]["record_id"])
    return secret, sum(p.stat().st_size for p in inbox.glob("*.pdf"))


def _snapshot(aenv) -> dict:
    instance = aenv.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        return {
            "records": set(session.scalars(select(Record.id))),
            "events": set(session.scalars(select(Event.id))),
            "audit": dict(session.execute(select(AuditEntry.seq, AuditEntry.entry_hash)).all()),
            "files": dict(session.execute(select(StoredFile.id, StoredFile.digests)).all()),
        }


def _read_original(aenv, record_id: str, principal) -> bytes:
    from archive.keystore import KeyVault
    from archive.records import open_original

    instance = aenv.instance()
    with instance.catalog.unit_of_work() as session:
        _, stream = open_original(session, instance.store, principal, record_id,
                                  vault=KeyVault.from_settings(instance.settings))
        with stream:
            return stream.read()


def _reader(clearance: str):
    from archive.principal import Principal

    return Principal("user", f"reader-{clearance}", role="clerk", clearance=clearance,
                     fonds=("*",), organisations=("*",), method="totp",
                     person=f"P-{clearance}")


def test_restore_drill(archive_env, request):
    import pytest

    from archive.errors import AccessDenied

    source = _use_second_bucket(archive_env, request)
    secret, payload_bytes = _fill(archive_env)
    plain = {rid: _read_original(archive_env, rid, _reader("mat")) for rid in secret}
    assert all(b"NOI DUNG MAT" in data for data in plain.values())

    started = time.monotonic()
    result = archive_env.invoke("backup", "--json")
    backup_seconds = time.monotonic() - started
    assert result.exit_code == 0, (result.stdout[-3000:], result.stderr[-3000:])
    backup = json.loads(result.stdout)
    assert backup["objects"]["failed"] == 0 and backup["objects"]["copied"] >= RECORDS + 2
    catalog = backup["catalog"]
    before = _snapshot(archive_env)
    assert len(before["records"]) == RECORDS + 2

    _wipe(archive_env)
    assert archive_env.invoke("records", "list").exit_code != 0  # the archive is gone

    started = time.monotonic()
    result = archive_env.invoke("restore", "--from", source, "--yes", "--json")
    restore_seconds = time.monotonic() - started
    assert result.exit_code == 0, (result.stdout[-3000:], result.stderr[-3000:])
    report = json.loads(result.stdout)
    assert report["ok"] and report["audit_ok"] and report["fixity_ok"], report["problems"]
    assert report["backup"] == catalog["name"]
    assert report["records"] == RECORDS + 2 and report["fixity_checked"] == RECORDS + 2
    assert report["newer_checkpoints"] == [] and report["entries_known_lost"] == 0

    after = _snapshot(archive_env)
    assert after["records"] == before["records"]
    assert before["events"] <= after["events"]  # plus the restore's fixity events
    lost = {seq for seq, digest in before["audit"].items() if after["audit"].get(seq) != digest}
    assert lost == set(), f"audit entries lost or changed: {sorted(lost)[:20]}"
    assert after["files"] == before["files"]
    with archive_env.instance().catalog.unit_of_work(snapshot=True) as session:
        restore_entry = session.get(AuditEntry, report["recorded_as"])
    assert restore_entry.action == "backup.restore" and restore_entry.outcome == "ok"
    assert restore_entry.seq == max(before["audit"]) + 1  # right after the restored chain

    fixity = archive_env.invoke("fixity", "check", "--all")
    assert fixity.exit_code == 0, fixity.output[-2000:]
    verify = archive_env.json("audit", "verify")
    assert verify["ok"] and verify["checkpoints_checked"] >= 1

    # Keys were kept apart: a cleared reader still decrypts, an uncleared one is refused.
    for rid, data in plain.items():
        assert _read_original(archive_env, rid, _reader("mat")) == data
    with pytest.raises(AccessDenied):
        _read_original(archive_env, secret[0], _reader("normal"))

    drill = {
        "configuration": archive_env.name,
        "records": report["records"], "events": report["events"],
        "audit_entries": report["audit_entries"], "objects": report["objects"],
        "bytes": report["bytes"], "payload_bytes": payload_bytes,
        "catalog_backup_bytes": catalog["size"],
        "backup_seconds": round(backup_seconds, 2),
        "restore_seconds": round(restore_seconds, 2),
        "restore_phase_seconds": report["phase_seconds"],
        "data_lost_audit_entries": len(lost),
        "newest_restored_audit_entry": report["newest_audit_entry_at"],
    }
    print(f"\nrestore drill [{archive_env.name}]: {drill['records']} records, "
          f"{drill['objects']} objects, {drill['bytes']} bytes; backup "
          f"{drill['backup_seconds']} s, restore {drill['restore_seconds']} s "
          f"({drill['restore_phase_seconds']}); data lost: {len(lost)} audit entries")
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(ARTIFACT.read_text()) if ARTIFACT.exists() else {}
    existing[archive_env.name] = drill
    ARTIFACT.write_text(json.dumps(existing, indent=2) + "\n")
