"""Corrections, replacements and withdrawals (R-AMEND-1), end to end against the test PKI:
the successor is a new signed document ingested with full signature validation and
linked to the original; the original's bytes never change; every refusal is audited.
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from datetime import date

import pyotp
import pytest
from sqlalchemy import func, select, update

from archive.models import Agent, Record, RecordLink, Seal, SealRecord
from tests.accounts import WebArchive
from tests.conftest import ORG, sample_metadata
from tests.test_api import API, audit_rows, problem
from tests.test_signed_ingest import _signed_env, _submit

pytestmark = pytest.mark.services

CORRECTION = {"number_symbol": "13-QĐ/TU", "date": "2025-03-20",
              "summary": "Quyết định đính chính Quyết định số 12-QĐ/TU"}


def _web(kind, tmp_path, request, pki):
    aenv = _signed_env(kind, tmp_path, request, pki)
    return aenv, WebArchive(aenv)


@pytest.fixture(params=["local-sqlite", "s3-postgresql"])
def web(request, tmp_path, pki):
    aenv, archive = _web(request.param, tmp_path, request, pki)
    yield archive
    archive.close()
    aenv.close()


@pytest.fixture
def local_web(request, tmp_path, pki):
    aenv, archive = _web("local-sqlite", tmp_path, request, pki)
    yield archive
    archive.close()
    aenv.close()


def _original(web, signed_pdfs) -> str:
    code, result = _submit(web.aenv, signed_pdfs.signed("an", "org_vptu", text="Bản gốc 12"),
                           "original")
    assert code == 0, result
    return result["record_id"]


def _package_digest(web, rid: str) -> tuple[int, str, str]:
    """Versions, SHA-256 of the stored AIP object, and of the original file in it."""
    with web.db() as db:
        record = db.get(Record, rid)
        versions = len(record.versions)
        key = record.versions[-1].storage_key
        original = next(f for f in record.versions[-1].files if f.role == "original")
        offset, size = original.offset, original.size
    with web.instance.store.open(key) as fh:
        whole = fh.read()
    return (versions, hashlib.sha256(whole).hexdigest(),
            hashlib.sha256(whole[offset:offset + size]).hexdigest())


def _post(client, rid: str, pdf: bytes, *, kind="correction", reason="Sai ngày ban hành",
          metadata=None, csrf: str | None = None):
    data = {"file": (io.BytesIO(pdf), "dinh-chinh.pdf"),
            "metadata": json.dumps(metadata or sample_metadata(**CORRECTION),
                                   ensure_ascii=False),
            "kind": kind, "reason": reason}
    return client.post(f"{API}/records/{rid}/amendments", data=data,
                       content_type="multipart/form-data",
                       headers={"X-CSRFToken": csrf} if csrf else {})


def _links(web) -> int:
    with web.db() as db:
        return db.scalar(select(func.count()).select_from(RecordLink))


def _records(web) -> int:
    with web.db() as db:
        return db.scalar(select(func.count()).select_from(Record))


def test_correction_links_both_ways_and_leaves_the_original_unchanged(web, signed_pdfs):
    rid = _original(web, signed_pdfs)
    before = _package_digest(web, rid)
    web.add_user("van", "clerk")
    client = web.login("van")
    original_bytes = client.get(f"{API}/records/{rid}/original").data

    pdf = signed_pdfs.signed("an", "org_vptu", text="Đính chính 13").read_bytes()
    made = _post(client, rid, pdf, csrf=web.csrf(client))
    assert made.status_code == 201, made.data
    body = made.get_json()
    new = body["record_id"]
    assert body["status"] == "archived" and body["original_id"] == rid
    assert body["kind"] == "correction" and body["reason"] == "Sai ngày ban hành"

    # The link both ways, with the reason, through the API.
    [succ] = client.get(f"{API}/records/{rid}/links").get_json()["links"]
    assert succ["direction"] == "successor" and succ["record_id"] == new
    assert succ["kind"] == "correction" and succ["reason"] == "Sai ngày ban hành"
    assert succ["number_symbol"] == "13-QĐ/TU" and succ["created_by"] == "user:van"
    [pred] = client.get(f"{API}/records/{new}/links").get_json()["links"]
    assert pred["direction"] == "predecessor" and pred["record_id"] == rid

    # ... and on both record pages.
    page = client.get(f"/records/{rid}").get_data(as_text=True)
    assert 'id="successors"' in page and f"/records/{new}" in page
    assert "Sai ngày ban hành" in page and "13-QĐ/TU" in page
    page = client.get(f"/records/{new}").get_data(as_text=True)
    assert 'id="predecessors"' in page and f"/records/{rid}" in page

    # The original's package and file are byte for byte what they were.
    assert _package_digest(web, rid) == before
    assert client.get(f"{API}/records/{rid}/original").data == original_bytes

    # Both records carry an amendment event; the change is audited.
    events = {e["type"]: e for e in web.aenv.json("records", "history", rid)["events"]}
    assert events["amendment"]["detail"] == f"corrected by {new}: Sai ngày ban hành"
    events = {e["type"]: e for e in web.aenv.json("records", "history", new)["events"]}
    assert events["amendment"]["detail"] == f"corrects {rid}: Sai ngày ban hành"
    assert events["validation"]["outcome"] == "success"  # signatures really checked
    [entry] = audit_rows(web, action="record.amend")
    assert entry.target == f"record:{rid}" and entry.outcome == "ok"
    assert entry.actor == "user:van" and entry.detail["successor"] == new


def _seal(web, rid: str) -> None:
    with web.db() as db:
        org = db.scalar(select(Agent).where(Agent.identifier == ORG))
        seal = Seal(id=str(uuid.uuid4()), reference="05/QĐ-UBKT", decision_date=date(2025, 4, 1),
                    authority_id=org.id, scope="hồ sơ HS-2025-07", readers=[],
                    sealed_at=web.clock.now(), sealed_by="user:thanh-tra",
                    sealer_person="990000000099", manifest_key="seals/test.json",
                    manifest_sha256="0" * 64, status="active")
        db.add(seal)
        db.flush()
        db.add(SealRecord(seal_id=seal.id, record_id=rid))


def _destroy(web, rid: str) -> None:
    with web.db() as db:
        db.execute(update(Record).where(Record.id == rid).values(status="destroyed"))


@pytest.mark.parametrize("case, reason", [
    ("password-only", "password-only login"),
    ("archivist", "role archivist does not allow record.amend"),
    ("other-grants", "outside the fonds and organisations"),
    ("sealed", "sealed under decision 05/QĐ-UBKT"),
    ("destroyed", "destroyed"),
])
def test_refused_and_audited(local_web, signed_pdfs, case, reason):
    web = local_web
    rid = _original(web, signed_pdfs)
    before = _package_digest(web, rid)
    if case == "password-only":
        web.add_user("van", "clerk")
        web.enrol("van")
        client = web.login("van", browse_only=True)
    elif case == "archivist":
        web.add_user("luu", "archivist")
        client = web.login("luu")
    elif case == "other-grants":
        web.add_user("khac", "clerk", fonds=("PHONG-09",))
        client = web.login("khac")
    else:
        web.add_user("van", "clerk")
        client = web.login("van")
        (_seal if case == "sealed" else _destroy)(web, rid)
    records = _records(web)
    pdf = signed_pdfs.signed("an", "org_vptu", text="Đính chính 13").read_bytes()
    body = problem(_post(client, rid, pdf, csrf=web.csrf(client)), 403)
    assert reason in body["reason"], body
    assert _links(web) == 0 and _records(web) == records
    assert _package_digest(web, rid) == before
    denied = audit_rows(web, action="record.amend", outcome="denied")
    assert [e.target for e in denied] == [f"record:{rid}"]
    assert reason in denied[0].detail["reason"]


def test_invalid_signature_is_refused_with_a_report_and_nothing_linked(local_web,
                                                                        signed_pdfs):
    web = local_web
    rid = _original(web, signed_pdfs)
    web.add_user("van", "clerk")
    client = web.login("van")
    csrf = web.csrf(client)
    records = _records(web)
    # A quyết định needs the person and the organisation: the person alone is refused.
    refused = problem(_post(client, rid, signed_pdfs.signed("an", text="Chỉ cá nhân")
                            .read_bytes(), csrf=csrf), 422)
    assert refused["submission_id"] and refused["report"]["reason"]
    codes = {p["code"] for p in refused["report"]["policy"]["problems"]}
    assert "organisation_signature_missing" in codes
    # A tampered file: integrity.
    tampered = problem(_post(client, rid, signed_pdfs.bytes("tampered"), csrf=csrf,
                             metadata=sample_metadata(**CORRECTION, doc_type="bien-ban")),
                       422)
    assert tampered["report"]["signatures"]["verdict"] != "valid"
    assert _links(web) == 0 and _records(web) == records
    assert audit_rows(web, action="record.amend") == []
    assert len(audit_rows(web, action="submission.refuse")) == 2


def test_duplicate_file_is_reported_not_linked(local_web, signed_pdfs):
    web = local_web
    rid = _original(web, signed_pdfs)
    web.add_user("van", "clerk")
    client = web.login("van")
    same = signed_pdfs.signed("an", "org_vptu", text="Bản gốc 12").read_bytes()
    body = problem(_post(client, rid, same, csrf=web.csrf(client)), 422)
    assert body["existing_record_id"] == rid and "already archived" in body["detail"]
    assert _links(web) == 0
    [entry] = audit_rows(web, action="record.amend")
    assert entry.outcome == "refused" and entry.detail["existing"] == rid


def test_bad_input(local_web, signed_pdfs):
    web = local_web
    rid = _original(web, signed_pdfs)
    web.add_user("van", "clerk")
    client = web.login("van")
    csrf = web.csrf(client)
    pdf = signed_pdfs.signed("an", "org_vptu", text="Đính chính 13").read_bytes()
    assert "kind" in problem(_post(client, rid, pdf, kind="sửa", csrf=csrf), 400)["detail"]
    assert "reason" in problem(_post(client, rid, pdf, reason="  ", csrf=csrf),
                               400)["detail"]
    missing = str(uuid.uuid4())
    problem(_post(client, missing, pdf, csrf=csrf), 404)
    [entry] = audit_rows(web, action="record.amend", outcome="not_found")
    assert entry.target == f"record:{missing}"
    assert _links(web) == 0


def test_hidden_successor_is_shown_as_a_record_you_may_not_see(local_web, signed_pdfs):
    web = local_web
    rid = _original(web, signed_pdfs)
    web.add_user("van", "clerk", "mat")
    client = web.login("van")
    classified = sample_metadata(**CORRECTION, classification="mat")
    made = _post(client, rid, signed_pdfs.signed("an", "org_vptu", text="Mật 13").read_bytes(),
                 metadata=classified, csrf=web.csrf(client))
    assert made.status_code == 201, made.data
    new = made.get_json()["record_id"]

    web.add_user("doc", "clerk")  # cleared for unclassified records only
    reader = web.login("doc")
    [link] = reader.get(f"{API}/records/{rid}/links").get_json()["links"]
    assert link == {**link, "visible": False, "record_id": None, "number_symbol": None,
                    "summary": None, "reason": None}
    page = reader.get(f"/records/{rid}").get_data(as_text=True)
    assert new not in page and "13-QĐ/TU" not in page and "Mật 13" not in page
    # The cleared clerk sees it all.
    [link] = client.get(f"{API}/records/{rid}/links").get_json()["links"]
    assert link["visible"] and link["record_id"] == new


def test_cli_amend_as_a_named_clerk(local_web, signed_pdfs, tmp_path):
    web = local_web
    rid = _original(web, signed_pdfs)
    pdf = tmp_path / "thay-the.pdf"
    pdf.write_bytes(signed_pdfs.signed("an", "org_vptu", text="Thay thế 14").read_bytes())
    meta = tmp_path / "thay-the.json"
    meta.write_text(json.dumps(sample_metadata(number_symbol="14-QĐ/TU"), ensure_ascii=False),
                    encoding="utf-8")
    clerk = web.add_user("van", "clerk")
    done = web.aenv.json("amend", rid, str(pdf), "--metadata", str(meta), "--kind",
                         "replacement", "--reason", "Thay thế toàn văn", "--as", "van",
                         "--code", pyotp.TOTP(clerk.secret).now())
    assert done["kind"] == "replacement" and done["original_id"] == rid
    history = web.aenv.json("records", "history", rid)
    [link] = history["links"]
    assert link["record_id"] == done["record_id"] and link["kind"] == "replacement"

    archivist = web.add_user("luu", "archivist")
    refused = web.aenv.invoke("amend", rid, str(pdf), "--metadata", str(meta), "--kind",
                              "withdrawal", "--reason", "x", "--as", "luu", "--code",
                              pyotp.TOTP(archivist.secret).now())
    assert refused.exit_code == 3, refused.output
    assert audit_rows(web, action="record.amend", outcome="denied")[0].actor == "user:luu"
    usage = web.aenv.invoke("amend", rid, str(pdf), "--kind", "sửa", "--reason", "x",
                            "--as", "van", "--code", "000000")
    assert usage.exit_code == 2


def test_record_page_form(local_web, signed_pdfs):
    from tests.accounts import csrf_of

    web = local_web
    rid = _original(web, signed_pdfs)
    web.add_user("kiem", "auditor")
    assert 'id="amend-form"' not in web.login("kiem").get(f"/records/{rid}").get_data(
        as_text=True)
    web.add_user("van", "clerk")
    client = web.login("van")
    page = client.get(f"/records/{rid}")
    assert b'id="amend-form"' in page.data
    fields = {"csrf_token": csrf_of(page.data), "kind": "withdrawal", "reason": "Thu hồi",
              "number_symbol": "15-QĐ/TU", "date": "2025-04-02", "summary": "Thu hồi QĐ 12",
              "page_count": "1"}
    refused = client.post(f"/records/{rid}/amend", data={
        **fields, "file": (io.BytesIO(signed_pdfs.signed("an", text="Chỉ cá nhân")
                                      .read_bytes()), "thu-hoi.pdf")},
        content_type="multipart/form-data")
    assert refused.status_code == 422 and b'id="refusal"' in refused.data
    assert _links(web) == 0
    done = client.post(f"/records/{rid}/amend", data={
        **fields, "file": (io.BytesIO(signed_pdfs.signed("an", "org_vptu", text="Thu hồi 15")
                                      .read_bytes()), "thu-hoi.pdf")},
        content_type="multipart/form-data")
    assert done.status_code == 303, done.data
    new = done.headers["Location"].rsplit("/", 1)[-1]
    [link] = client.get(f"{API}/records/{new}/links").get_json()["links"]
    assert link["kind"] == "withdrawal" and link["record_id"] == rid
    shown = client.get(f"{API}/records/{new}").get_json()
    assert shown["fonds"] == "PHONG-01" and shown["number_symbol"] == "15-QĐ/TU"
