"""Classified records (R-CLASS-1) end to end: "mật" and "tối mật" documents are stored
encrypted (no plaintext byte in the store), fixity passes without any key, only a read
with the keys decrypts, and a shredded data key makes the record unreadable."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import sample_metadata


def _stored(aenv, key: str) -> bytes:
    with aenv.instance().store.open(key) as fh:
        return fh.read()


@pytest.mark.parametrize("classification", ["mat", "tối mật"])
def test_classified_original_is_encrypted_at_rest(archive_env, tmp_path, classification):
    secret_text = "NOI DUNG MAT 4711"
    pdf = archive_env.sample("secret.pdf", text=secret_text, classification=classification)
    result = archive_env.json("ingest", str(pdf))["results"][0]
    assert result["status"] == "archived"
    rid = result["record_id"]
    stored = _stored(archive_env, result["storage_key"])
    assert secret_text.encode() not in stored
    assert pdf.read_bytes()[:200] not in stored
    shown = archive_env.json("records", "show", rid)
    original = next(f for f in shown["versions"][0]["files"] if f["role"] == "original")
    assert original["path"] == "data/content/document.enc"
    import hashlib

    plain_sha = hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert shown["fingerprint_sha256"] != plain_sha  # keyed, not the plain digest
    assert plain_sha.encode() not in stored  # nor in the PREMIS of the AIP

    # Only a read with the keys decrypts, and gives the original bytes.
    out = tmp_path / "plain.pdf"
    got = archive_env.invoke("records", "get", rid, "-o", str(out))
    assert got.exit_code == 0, got.output
    assert out.read_bytes() == pdf.read_bytes()

    # The same file again is a duplicate, even though the catalog has no plain digest.
    again = archive_env.json("ingest", str(pdf))["results"][0]
    assert again["status"] == "duplicate" and again["record_id"] == rid


def test_fixity_needs_no_key_and_reads_need_the_keys(local_archive, tmp_path):
    pdf = local_archive.sample("s.pdf", classification="mat")
    rid = local_archive.json("ingest", str(pdf))["results"][0]["record_id"]
    keys = local_archive.settings.keys_dir
    hidden = tmp_path / "keys-elsewhere"
    shutil.move(keys / "kek", hidden)
    try:
        assert local_archive.invoke("fixity", "check", rid).exit_code == 0
        got = local_archive.invoke("records", "get", rid, "-o", str(tmp_path / "x.pdf"))
        assert got.exit_code == 1 and "key" in got.stderr.lower()
        assert not (tmp_path / "x.pdf").exists()
    finally:
        shutil.move(hidden, keys / "kek")


def test_shredded_data_key_makes_the_record_unreadable(local_archive, tmp_path):
    from archive.keystore import KeyVault

    pdf = local_archive.sample("s.pdf", classification="mat")
    rid = local_archive.json("ingest", str(pdf))["results"][0]["record_id"]
    with local_archive.instance().catalog.unit_of_work(snapshot=True) as session:
        from sqlalchemy import select

        from archive.models import StoredFile

        meta = session.scalars(select(StoredFile.encryption)
                               .where(StoredFile.role == "original")).one()
    assert KeyVault.from_settings(local_archive.settings).destroy_data_key(meta["dek_id"])
    got = local_archive.invoke("records", "get", rid, "-o", str(tmp_path / "x.pdf"))
    assert got.exit_code == 1 and "destroyed" in got.stderr
    assert local_archive.invoke("fixity", "check", rid).exit_code == 0


def test_failed_classified_ingest_leaves_no_data_key(local_archive):
    from archive.keystore import KeyVault

    vault = KeyVault.from_settings(local_archive.settings)
    before = set(vault.data_key_ids())
    path = local_archive.tmp_path / "s.txt"
    path.write_text("secret but not a PDF")
    path.with_name("s.txt.json").write_text(json.dumps(sample_metadata(classification="mat")),
                                            encoding="utf-8")
    assert local_archive.invoke("ingest", str(path)).exit_code == 3
    assert set(vault.data_key_ids()) - before <= {_fp_key(vault)}


def _fp_key(vault) -> str:
    marker = vault.kek_dir / "FINGERPRINT-KEY"
    return marker.read_text().strip() if marker.exists() else ""
