"""Basic ingest end to end through the CLI, on local+SQLite and SeaweedFS+PostgreSQL
(R-PKG-1, R-META-1, R-FIX-1, R-HIST-1): the happy path and every refusal path."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from tests.conftest import ORG2, sample_metadata
from tests.xml_schemas import validate_xml


def _objects(aenv) -> list[str]:
    return [o.key for o in aenv.instance().store.list("aip/")]


def _record_count(aenv) -> int:
    from sqlalchemy import func, select

    from archive.models import Record

    with aenv.instance().catalog.unit_of_work(snapshot=True) as session:
        return session.scalar(select(func.count()).select_from(Record))


def test_ingest_show_history_and_get(archive_env, tmp_path):
    pdf = archive_env.sample("quyet-dinh 12.pdf", text="Nội dung")
    out = archive_env.json("ingest", str(pdf))
    assert out["summary"] == {"archived": 1, "duplicate": 0, "refused": 0, "failed": 0}
    result = out["results"][0]
    assert result["status"] == "archived"
    assert result["format_puid"] == "fmt/18"
    record_id = result["record_id"]

    shown = archive_env.json("records", "show", record_id)
    assert shown["number_symbol"] == "12-QĐ/TU"
    assert shown["summary"].startswith("Quyết định")
    assert shown["issuing_org"] == "000.00.00.H41"
    assert shown["retention_until"] == "permanent"
    assert shown["fingerprint_sha256"] == hashlib.sha256(pdf.read_bytes()).hexdigest()
    [version] = shown["versions"]
    original = next(f for f in version["files"] if f["role"] == "original")
    assert original["original_name"] == "quyet-dinh 12.pdf"
    assert original["digests"]["sha512"] == hashlib.sha512(pdf.read_bytes()).hexdigest()

    history = archive_env.json("records", "history", record_id)["events"]
    types = [e["type"] for e in history]
    for expected in ("message digest calculation", "format identification", "ingestion",
                     "fixity check"):
        assert expected in types

    target = tmp_path / "out.pdf"
    got = archive_env.invoke("records", "get", record_id, "-o", str(target))
    assert got.exit_code == 0, got.output
    assert target.read_bytes() == pdf.read_bytes()

    listed = archive_env.json("records", "list", "--text", "quy chế")
    assert [r["id"] for r in listed["records"]] == [record_id]
    assert archive_env.json("records", "list", "--type", "cong-van")["total"] == 0

    # Every read and change above is in a chain that verifies.
    assert archive_env.invoke("audit", "verify").exit_code == 0


def test_stored_aip_is_a_valid_bag_with_the_original_bytes(archive_env, tmp_path, schemas):
    pdf = archive_env.sample("a.pdf")
    record_id = archive_env.json("ingest", str(pdf))["results"][0]["record_id"]
    instance = archive_env.instance()
    [key] = _objects(archive_env)
    assert key == f"aip/{record_id}/v0001.tar"
    with instance.store.open(key) as fh:
        data = fh.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert all(n.startswith(f"{record_id}.v1") for n in names)
        tar.extractall(tmp_path / "bag", filter="data")
    bag = tmp_path / "bag" / f"{record_id}.v1"
    assert (bag / "data" / "content" / "a.pdf").read_bytes() == pdf.read_bytes()
    for name in ("manifest-sha256.txt", "manifest-sha512.txt", "tagmanifest-sha256.txt",
                 "tagmanifest-sha512.txt", "bag-info.txt", "data/METS.xml",
                 "data/metadata/preservation/premis.xml",
                 "data/metadata/descriptive/record.json"):
        assert (bag / name).is_file(), name
    info = (bag / "bag-info.txt").read_text(encoding="utf-8")
    assert f"External-Identifier: {record_id}" in info
    assert "Payload-Oxum:" in info
    validated = archive_env.invoke("bag", "validate", str(bag))
    assert validated.exit_code == 0, validated.output
    record = json.loads((bag / "data/metadata/descriptive/record.json").read_text("utf-8"))
    assert record["number_symbol"] == "12-QĐ/TU"
    # The stored AIP's METS and PREMIS are schema-valid (offline, shipped schemas).
    assert validate_xml(schemas["mets"], (bag / "data/METS.xml").read_bytes()) == []
    premis = (bag / "data/metadata/preservation/premis.xml").read_bytes()
    assert validate_xml(schemas["premis"], premis) == []
    assert record_id.encode() in premis and b"ingestion" in premis


def test_same_file_twice_is_reported_not_stored(archive_env):
    pdf = archive_env.sample("twice.pdf")
    first = archive_env.json("ingest", str(pdf))["results"][0]
    second = archive_env.json("ingest", str(pdf))["results"][0]
    assert second["status"] == "duplicate"
    assert second["record_id"] == first["record_id"]
    assert len(_objects(archive_env)) == 1
    assert _record_count(archive_env) == 1


def test_invalid_metadata_names_every_bad_field_and_changes_nothing(archive_env):
    pdf = archive_env.sample("bad.pdf", doc_type="thu-tay", date="2025-13-40",
                             issuing_org="not-an-org", page_count=0, summary=None,
                             language="xx", colour="red")
    result = archive_env.invoke("ingest", str(pdf), "--json")
    assert result.exit_code == 2
    problems = json.loads(result.stdout)["results"][0]["problems"]
    fields = {p["field"] for p in problems}
    assert fields == {"doc_type", "date", "issuing_org", "page_count", "summary",
                      "language", "colour"}
    assert _objects(archive_env) == []
    assert _record_count(archive_env) == 0


def test_unregistered_organisation_is_refused_with_the_hint(archive_env):
    pdf = archive_env.sample("unreg.pdf", issuing_org="999.99.99.Z99")
    result = archive_env.invoke("ingest", str(pdf))
    assert result.exit_code == 2
    assert "not registered" in result.stderr and "archive agents add-org" in result.stderr


def test_missing_file_is_bad_input(archive_env, tmp_path):
    result = archive_env.invoke("ingest", str(tmp_path / "nowhere.pdf"))
    assert result.exit_code == 2
    assert "nowhere.pdf" in result.stderr
    assert _record_count(archive_env) == 0


@pytest.mark.parametrize("classification, code, words", [
    ("tuyệt mật", 3, "tuyệt mật"),
    ("bí mật quốc gia", 2, "unknown classification"),
])
def test_classification_rules(local_archive, classification, code, words):
    pdf = local_archive.sample("c.pdf", classification=classification)
    result = local_archive.invoke("ingest", str(pdf))
    assert result.exit_code == code, result.output
    assert words in result.stderr
    assert _objects(local_archive) == []


def test_non_pdf_is_refused(local_archive):
    path = local_archive.tmp_path / "note.txt"
    path.write_text("plain text, not a PDF")
    path.with_name("note.txt.json").write_text(json.dumps(sample_metadata()),
                                               encoding="utf-8")
    result = local_archive.invoke("ingest", str(path))
    assert result.exit_code == 3
    assert "not accepted" in result.stderr
    assert _objects(local_archive) == []


def test_folder_ingest_reports_each_and_exits_with_the_worst(local_archive):
    good = local_archive.sample("g1.pdf", text="one")
    local_archive.sample("g2.pdf", text="two", issuing_org=ORG2)
    local_archive.sample("g3.pdf", text="three", page_count="many")
    out = local_archive.invoke("ingest", str(good.parent), "--json")
    assert out.exit_code == 2
    summary = json.loads(out.stdout)["summary"]
    assert summary == {"archived": 2, "duplicate": 0, "refused": 0, "failed": 1}


def test_unreachable_s3_is_a_clear_error_and_changes_nothing(local_archive):
    from tests.services.common import free_port

    env = dict(local_archive.env)
    env.update({"ARCHIVE_STORAGE__BACKEND": "s3",
                "ARCHIVE_STORAGE__S3_ENDPOINT": f"http://127.0.0.1:{free_port()}",
                "ARCHIVE_STORAGE__S3_BUCKET": "archive",
                "ARCHIVE_STORAGE__S3_ACCESS_KEY": "x", "ARCHIVE_STORAGE__S3_SECRET_KEY": "y",
                "ARCHIVE_STORAGE__S3_TIMEOUT": "2", "ARCHIVE_STORAGE__S3_MAX_ATTEMPTS": "1"})
    from tests.conftest import ArchiveEnv

    broken = ArchiveEnv("broken", env, local_archive.tmp_path)
    pdf = local_archive.sample("s3.pdf")
    result = broken.invoke("ingest", str(pdf))
    assert result.exit_code == 2
    assert "cannot reach S3 endpoint" in result.stderr
    assert _record_count(local_archive) == 0


def test_unknown_config_key_is_named(local_archive):
    env = dict(local_archive.env, ARCHIVE_STORAGE__BUKET="x")
    from tests.conftest import ArchiveEnv

    result = ArchiveEnv("bad", env, local_archive.tmp_path).invoke("records", "list")
    assert result.exit_code == 2
    assert "storage.buket" in result.stderr


def test_uninitialised_archive_says_run_init(tmp_path):
    from tests.conftest import ArchiveEnv, _base_env

    aenv = ArchiveEnv("empty", _base_env(tmp_path), tmp_path)
    result = aenv.invoke("records", "list")
    assert result.exit_code == 2
    assert "archive init" in result.stderr


def test_refusal_stores_a_report_and_notifies(archive_env):
    """R-SIG-2: a refused document gets a stored, retrievable return-to-sender report,
    notifications for the sending organisation and the clerk, an event and an audit
    entry; nothing is archived."""
    path = archive_env.tmp_path / "note.txt"
    path.write_text("not a PDF")
    path.with_name("note.txt.json").write_text(json.dumps(sample_metadata()),
                                               encoding="utf-8")
    result = archive_env.invoke("ingest", str(path), "--json")
    assert result.exit_code == 3
    refused = json.loads(result.stdout)["results"][0]
    submission_id = refused["submission_id"]
    assert refused["report"]["format"]["puid"]

    shown = archive_env.json("submissions", "show", submission_id)
    assert shown["sha256"] == hashlib.sha256(b"not a PDF").hexdigest()
    assert shown["sender_org"] == "000.00.00.H41" and "not accepted" in shown["reason"]
    with archive_env.instance().store.open(shown["report_key"]) as fh:
        stored = json.loads(fh.read())
    assert stored["submission_id"] == submission_id
    assert [s["id"] for s in archive_env.json("submissions", "list")] == [submission_id]

    recipients = {n["recipient"] for n in archive_env.json("notifications", "list")}
    assert "000.00.00.H41" in recipients and any(r.startswith("system:cli:")
                                                 for r in recipients)
    assert _objects(archive_env) == [] and _record_count(archive_env) == 0
    assert archive_env.invoke("audit", "verify").exit_code == 0
