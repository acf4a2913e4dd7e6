"""`archive fixity check` finds every kind of damage to stored packages (R-FIX-1),
on the local store and on real SeaweedFS, and names the record, object and file."""

from __future__ import annotations

import json

import pytest


def _ingest(aenv, n=2):
    ids = []
    for i in range(n):
        pdf = aenv.sample(f"f{i}.pdf", text=f"document {i}")
        ids.append(aenv.json("ingest", str(pdf))["results"][0]["record_id"])
    return ids


def _raw_rewrite(aenv, key: str, data: bytes) -> None:
    """Change stored bytes behind the archive's back (what an attacker or a bad disk does)."""
    settings = aenv.settings
    if settings.storage.backend == "local":
        path = settings.local_store_path / key
        path.chmod(0o644)
        path.write_bytes(data)
    else:
        import boto3
        from botocore.config import Config

        s3 = boto3.client(
            "s3",
            endpoint_url=settings.storage.s3_endpoint,
            aws_access_key_id=settings.storage.s3_access_key,
            aws_secret_access_key=settings.storage.s3_secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.put_object(Bucket=settings.storage.s3_bucket, Key=key, Body=data)


def _raw_delete(aenv, key: str) -> None:
    settings = aenv.settings
    if settings.storage.backend == "local":
        (settings.local_store_path / key).unlink()
    else:
        aenv.instance().store.delete(key)


def _original(aenv, record_id: str) -> tuple[str, int]:
    """Bag path of the record's original and where its bytes start in the stored object."""
    from sqlalchemy import select

    from archive.models import PackageVersion, StoredFile

    with aenv.instance().catalog.unit_of_work(snapshot=True) as session:
        row = session.execute(
            select(StoredFile.path, StoredFile.offset)
            .join(PackageVersion, PackageVersion.id == StoredFile.package_id)
            .where(PackageVersion.record_id == record_id, StoredFile.role == "original")
        ).one()
    return row.path, row.offset


def _read(aenv, key: str) -> bytes:
    with aenv.instance().store.open(key) as fh:
        return fh.read()


def test_clean_archive_passes(archive_env):
    ids = _ingest(archive_env)
    out = archive_env.json("fixity", "check", "--all")
    assert out["ok"] and out["records_checked"] == 2
    out = archive_env.json("fixity", "check", ids[0])
    assert out["records_checked"] == 1
    history = archive_env.json("records", "history", ids[0])["events"]
    assert sum(e["type"] == "fixity check" for e in history) >= 2


@pytest.mark.parametrize("damage", ["flip-payload-byte", "flip-header-byte", "delete", "truncate"])
def test_damage_is_found_and_named(archive_env, damage):
    good, bad = _ingest(archive_env)
    key = f"aip/{bad}/v0001.tar"
    data = bytearray(_read(archive_env, key))
    if damage == "flip-payload-byte":
        original_path, offset = _original(archive_env, bad)
        data[offset + 10] ^= 0x01
        _raw_rewrite(archive_env, key, bytes(data))
    elif damage == "flip-header-byte":
        data[100] ^= 0x01  # inside the first tar header
        _raw_rewrite(archive_env, key, bytes(data))
    elif damage == "delete":
        _raw_delete(archive_env, key)
    else:
        _raw_rewrite(archive_env, key, bytes(data[: len(data) // 2]))

    result = archive_env.invoke("fixity", "check", "--all", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [f["record_id"] for f in report["failures"]] == [bad]
    [package] = report["failures"][0]["packages"]
    assert package["storage_key"] == key
    codes = {p["code"] for p in package["problems"]}
    if damage == "delete":
        assert codes == {"missing"}
    elif damage == "truncate":
        assert "size" in codes
    else:
        assert codes == {"digest"}
    if damage == "flip-payload-byte":
        assert [d["path"] for d in package["damaged_files"]] == [original_path]

    human = archive_env.invoke("fixity", "check", bad)
    assert human.exit_code == 1
    assert bad in human.stdout and key in human.stdout
    # the failure is a PREMIS event on the damaged record only
    events = archive_env.json("records", "history", bad)["events"]
    assert events[-1]["type"] == "fixity check" and events[-1]["outcome"] == "failure"
    events = archive_env.json("records", "history", good)["events"]
    assert all(e["outcome"] == "success" for e in events if e["type"] == "fixity check")


def test_download_of_damaged_original_stops_with_error(local_archive, tmp_path):
    [rid] = _ingest(local_archive, 1)
    key = f"aip/{rid}/v0001.tar"
    data = bytearray(_read(local_archive, key))
    _, offset = _original(local_archive, rid)
    data[offset + 5] ^= 0xFF
    _raw_rewrite(local_archive, key, bytes(data))
    target = tmp_path / "copy.pdf"
    result = local_archive.invoke("records", "get", rid, "-o", str(target))
    assert result.exit_code == 1
    assert "fixity mismatch" in result.stderr
    assert not target.exists()
    assert not list(tmp_path.glob(".copy.pdf*"))


def test_unknown_record_and_bad_usage(local_archive):
    assert local_archive.invoke("fixity", "check", "nope").exit_code == 2
    assert local_archive.invoke("fixity", "check").exit_code == 2
