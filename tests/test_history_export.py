"""The full history of a record (R-HIST-1): JSON and PREMIS 3.0 (validated against the
shipped schema), with the accesses from the audit log for auditors only; a sealed
record's history for its decision's readers only; every read and denial audited."""

from __future__ import annotations

import io
import json
import uuid
from datetime import date, timedelta

from lxml import etree
from sqlalchemy import select

from archive.models import Agent, Rendition, Revocation, Seal, SealRecord
from archive.premis import PREMIS_NS
from tests.conftest import ORG, sample_metadata
from tests.test_api import API, audit_rows, ingest, problem
from tests.xml_schemas import validate_xml

P = {"p": PREMIS_NS}



def _lifecycle_rows(web, rid: str, reader: str | None = None, lifted: bool = True) -> None:
    """A revocation, a seal (lifted unless ``lifted`` is false) and a rendition, as
    their services record them (their own events are theirs to write)."""
    now = web.clock.now()
    with web.db() as db:
        org = db.scalar(select(Agent).where(Agent.identifier == ORG))
        db.add(Revocation(id=str(uuid.uuid4()), record_id=rid, action="revoke",
                          reason="Ban hành sai thẩm quyền", form="quyết định",
                          legal_basis="Điều 19", decision_ref="7/QĐ-TU",
                          decided_at=now, decided_by="user:duyet"))
        seal = Seal(id=str(uuid.uuid4()), reference="05/QĐ-UBKT", decision_date=date(2025, 4, 1),
                    authority_id=org.id, scope="hồ sơ", readers=[reader] if reader else [],
                    sealed_at=now, sealed_by="user:thanh-tra", sealer_person="990000000099",
                    manifest_key="seals/x.json", manifest_sha256="0" * 64,
                    status="lifted" if lifted else "active",
                    lifted_at=now + timedelta(seconds=5) if lifted else None,
                    lifted_by="user:thanh-tra" if lifted else None,
                    lift_reference="06/QĐ-UBKT" if lifted else None)
        db.add(seal)
        db.flush()
        db.add(SealRecord(seal_id=seal.id, record_id=rid))
        db.add(Rendition(id=str(uuid.uuid4()), record_id=rid, created_at=now,
                         created_by="user:van", converter="Người dùng van", sha256="0" * 64,
                         size=1, page_count=1, verify_url="http://x/verify"))


def _amend(web, client, rid: str) -> str:
    from ingest.demo import make_pdf

    made = client.post(f"{API}/records/{rid}/amendments", data={
        "file": (io.BytesIO(make_pdf(["Đính chính"])), "dinh-chinh.pdf"),
        "metadata": json.dumps(sample_metadata(number_symbol="13-QĐ/TU"), ensure_ascii=False),
        "kind": "correction", "reason": "Sai số trang"},
        content_type="multipart/form-data", headers={"X-CSRFToken": web.csrf(client)})
    assert made.status_code == 201, made.data
    return made.get_json()["record_id"]


def _premis_types(data: bytes) -> list[str]:
    doc = etree.fromstring(data)
    return [t.text for t in doc.iterfind("p:event/p:eventType", P)]


def test_export_has_every_kind_and_accesses_for_auditors_only(web, schemas):
    rid, _ = ingest(web.aenv, "qd")
    web.add_user("van", "clerk")
    web.add_user("kiem", "auditor")
    web.add_user("khac", "clerk", fonds=("PHONG-09",))
    clerk = web.login("van", REMOTE_ADDR="10.0.0.5")
    new = _amend(web, clerk, rid)
    assert clerk.get(f"/records/{rid}").status_code == 200
    assert clerk.get(f"{API}/records/{rid}/original").status_code == 200
    outsider = web.login("khac")
    problem(outsider.get(f"{API}/records/{rid}"), 403)
    # A clerk outside the grants is refused the history too, and that is audited.
    problem(outsider.get(f"{API}/records/{rid}/history"), 403)
    assert any(e.actor == "user:khac" for e in audit_rows(web, action="record.history",
                                                         outcome="denied"))
    _lifecycle_rows(web, rid)

    auditor = web.login("kiem")
    body = auditor.get(f"{API}/records/{rid}/history").get_json()
    types = {e["type"] for e in body["events"]}
    assert {"message digest calculation", "format identification", "validation",
            "ingestion", "fixity check", "amendment"} <= types
    [link] = body["links"]
    assert link["record_id"] == new and link["reason"] == "Sai số trang"
    assert body["revocations"][0]["legal_basis"] == "Điều 19"
    assert body["seals"][0]["lift_reference"] == "06/QĐ-UBKT"
    assert body["renditions"][0]["converter"] == "Người dùng van"
    assert body["accesses_included"] is True
    seen = {(a["actor"], a["action"], a["outcome"]) for a in body["accesses"]}
    assert {("user:van", "record.view", "ok"), ("user:van", "record.download", "ok"),
            ("user:khac", "record.view", "denied"), ("user:van", "record.amend", "ok")} <= seen

    premis = auditor.get(f"{API}/records/{rid}/history", query_string={"format": "premis"})
    assert premis.status_code == 200 and premis.mimetype == "application/xml"
    assert validate_xml(schemas["premis"], premis.data) == []
    kinds = _premis_types(premis.data)
    assert {"ingestion", "validation", "amendment", "revoke", "seal", "unseal", "rendition",
            "access"} <= set(kinds)
    doc = etree.fromstring(premis.data)
    related = doc.find("p:object/p:relationship/p:relatedObjectIdentifier/"
                       "p:relatedObjectIdentifierValue", P)
    assert related.text == new
    notes = [n.text for n in doc.iterfind(".//p:eventOutcomeDetailNote", P)]
    assert any("outside the fonds" in (n or "") for n in notes)  # the denial's reason

    # A clerk gets the same chain without the accesses.
    mine = clerk.get(f"{API}/records/{rid}/history").get_json()
    assert mine["accesses_included"] is False and "accesses" not in mine
    assert {"amendment", "validation"} <= {e["type"] for e in mine["events"]}
    premis = clerk.get(f"{API}/records/{rid}/history?format=premis")
    assert validate_xml(schemas["premis"], premis.data) == []
    assert "access" not in _premis_types(premis.data)
    reads = [e for e in audit_rows(web, action="record.history", outcome="ok")
             if "format" in e.detail]  # the record page's timeline reads are others
    assert {(e.actor, e.detail["format"]) for e in reads} >= {
        ("user:kiem", "json"), ("user:kiem", "premis"), ("user:van", "json"),
        ("user:van", "premis")}
    assert [e.detail["accesses"] is None for e in reads if e.actor == "user:van"] == [True] * 2

    # The record page links the exports.
    page = clerk.get(f"/records/{rid}").get_data(as_text=True)
    assert 'id="export-premis"' in page and "format=premis" in page


def test_sealed_history_only_for_the_decisions_readers(web):
    rid, _ = ingest(web.aenv, "qd")
    reader = web.add_user("kiem", "auditor")
    web.add_user("van", "clerk")
    _lifecycle_rows(web, rid, reader=reader.person, lifted=False)
    allowed = web.login("kiem").get(f"{API}/records/{rid}/history")
    assert allowed.status_code == 200 and allowed.get_json()["seals"][0]["status"] == "active"
    body = problem(web.login("van").get(f"{API}/records/{rid}/history"), 403)
    assert "sealed under decision 05/QĐ-UBKT" in body["reason"]
    [denied] = audit_rows(web, action="record.history", outcome="denied")
    assert denied.actor == "user:van" and denied.target == f"record:{rid}"


def test_cli_history_formats(web, schemas):
    rid, _ = ingest(web.aenv, "qd")
    web.aenv.json("records", "show", rid)
    as_json = web.aenv.json("records", "history", rid, "--format", "json")
    assert as_json["record_id"] == rid and as_json["accesses_included"] is True
    assert "record.view" in {a["action"] for a in as_json["accesses"]}
    result = web.aenv.invoke("records", "history", rid, "--format", "premis")
    assert result.exit_code == 0, result.output
    assert validate_xml(schemas["premis"], result.stdout.encode()) == []
    assert "ingestion" in _premis_types(result.stdout.encode())
    text = web.aenv.invoke("records", "history", rid)
    assert text.exit_code == 0 and "ingestion" in text.stdout and "record.view" in text.stdout
    missing = web.aenv.invoke("records", "history", str(uuid.uuid4()), "--format", "premis")
    assert missing.exit_code == 2
