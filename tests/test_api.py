"""The JSON API under /api/v1 (R-REPO-1, R-AUTH-1, R-AUDIT-1, R-FIX-1, R-INCIDENT-1),
driven through the Flask test client with real logins (password + TOTP pages) and
API tokens. The important paths run on SQLite + a local folder and on PostgreSQL +
SeaweedFS (``archive_env``); the rest on the embedded defaults."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
import threading
import urllib.request
import uuid
from datetime import timedelta
from http.client import IncompleteRead

import pytest
from sqlalchemy import select

from archive.errors import FixityMismatch
from archive.models import AuditEntry
from tests.accounts import WebArchive
from tests.conftest import ORG, ORG2, sample_metadata
from tests.test_fixity import _original, _raw_rewrite, _read

API = "/api/v1"

# Four records: three in the fonds PHONG-01 that the test users are granted (one of
# them classified "mật"), one of another fonds and organisation.
CORPUS = {
    "qd": {"number_symbol": "12-QĐ/TU", "doc_type": "quyet-dinh", "date": "2025-03-14",
           "summary": "Quyết định về việc ban hành quy chế lưu trữ số"},
    "bc": {"number_symbol": "3-BC/TU", "doc_type": "bao-cao", "date": "2025-01-20",
           "classification": "mat", "summary": "Báo cáo tình hình bảo vệ bí mật nhà nước"},
    "cv": {"number_symbol": "45-CV/BTCTU", "doc_type": "cong-van", "date": "2024-06-02",
           "issuing_org": ORG2, "summary": "Công văn về chuyển đổi số trong công tác tổ chức"},
    "tb": {"number_symbol": "9-TB/TU", "doc_type": "thong-bao", "date": "2023-12-01",
           "issuing_org": ORG2, "fonds": "PHONG-09",
           "summary": "Thông báo kết luận hội nghị cán bộ"},
}




def ingest(aenv, name: str, *, text: str | None = None, **meta) -> tuple[str, bytes]:
    """Ingest a sample PDF through the CLI; its record id and bytes."""
    pdf = aenv.sample(f"{name}.pdf", text=text or f"content of {name}", **meta)
    result = aenv.json("ingest", str(pdf))["results"][0]
    assert result["status"] == "archived", result
    return result["record_id"], pdf.read_bytes()


def corpus(aenv) -> dict[str, str]:
    return {name: ingest(aenv, name, **meta)[0] for name, meta in CORPUS.items()}


def audit_rows(web: WebArchive, **where) -> list[AuditEntry]:
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        for name, value in where.items():
            stmt = stmt.where(getattr(AuditEntry, name) == value)
        rows = list(db.scalars(stmt))
        db.expunge_all()
    return rows


def problem(response, status: int) -> dict:
    """The RFC 9457 problem body of an error response."""
    assert response.status_code == status, (response.status_code, response.data[:400])
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["title"] and "detail" in body
    return body


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


# ---- search ---------------------------------------------------------------------------


def test_search_with_every_filter(web):
    ids = corpus(web.aenv)
    names = {v: k for k, v in ids.items()}
    web.add_user("an", "clerk", "mat")
    client = web.login("an", REMOTE_ADDR="10.1.2.3")

    def found(**params):
        response = client.get(f"{API}/records", query_string=params,
                              environ_base={"REMOTE_ADDR": "10.1.2.3"})
        assert response.status_code == 200, response.data
        body = response.get_json()
        assert body["offset"] == int(params.get("offset", 0))
        assert body["limit"] == int(params.get("limit", 50))
        return [names[r["id"]] for r in body["records"]], body["total"]

    # Newest document date first; "tb" is outside the user's fonds and organisations.
    assert found() == (["qd", "bc", "cv"], 3)
    assert found(q="chuyển đổi số") == (["cv"], 1)  # summary
    assert found(q="QUY CHẾ") == (["qd"], 1)  # case does not matter
    assert found(q="45-cv/btctu") == (["cv"], 1)  # number and symbol
    assert found(q="/TU") == (["qd", "bc"], 2)
    assert found(q="không có") == ([], 0)
    assert found(type="bao-cao") == (["bc"], 1)
    assert found(org=ORG2) == (["cv"], 1)
    assert found(org=ORG) == (["qd", "bc"], 2)
    assert found(classification="mat") == (["bc"], 1)
    assert found(classification="normal") == (["qd", "cv"], 2)
    assert found(classification="toi-mat") == ([], 0)
    assert found(status="active") == (["qd", "bc", "cv"], 3)
    assert found(status="revoked") == ([], 0)
    assert found(**{"from": "2025-01-01"}) == (["qd", "bc"], 2)
    assert found(to="2025-01-20") == (["bc", "cv"], 2)  # inclusive
    assert found(**{"from": "2024-06-02", "to": "2024-06-02"}) == (["cv"], 1)
    assert found(q="tổ chức", type="cong-van", org=ORG2, classification="normal",
                 status="active", **{"from": "2024-01-01", "to": "2024-12-31"}) == (["cv"], 1)
    assert found(limit=2) == (["qd", "bc"], 3)
    assert found(limit=2, offset=2) == (["cv"], 3)
    assert found(offset=5) == ([], 3)

    body = client.get(f"{API}/records?type=quyet-dinh").get_json()
    [record] = body["records"]
    assert record["number_symbol"] == "12-QĐ/TU" and record["issuing_org"] == ORG
    assert record["summary"] == CORPUS["qd"]["summary"] and record["date"] == "2025-03-14"

    # Every search is in the audit log with its filter and the client address.
    searches = audit_rows(web, action="records.search", actor="user:an")
    assert len(searches) == 22
    assert searches[-1].client == "127.0.0.1"
    assert searches[1].client == "10.1.2.3"
    assert searches[1].detail["filter"]["text"] == "chuyển đổi số"
    assert searches[1].detail["returned"] == 1

    # Grants decide what a search finds: an organisation grant, a token's clearance.
    web.add_user("binh", "clerk", "mat", fonds=(), organisations=(ORG2,))
    other = web.login("binh")
    listed = other.get(f"{API}/records").get_json()["records"]
    assert sorted(names[r["id"]] for r in listed) == ["cv", "tb"]
    token = web.token(["records:read"])
    listed = web.client().get(f"{API}/records", headers=bearer(token)).get_json()["records"]
    assert [names[r["id"]] for r in listed] == ["qd", "cv"]  # not "mật"


def test_search_is_case_blind_for_vietnamese_capitals(web):
    """Full text over summary and number: "qđ" finds "12-QĐ/TU", "ĐẢNG" finds "Đảng"."""
    rid, _ = ingest(web.aenv, "dang", number_symbol="15-NQ/ĐU", doc_type="nghi-quyet",
                    summary="Nghị quyết của Đảng ủy về công tác cán bộ")
    token = web.token(["records:read"])
    client = web.client()
    for q in ("nq/đu", "NQ/ĐU", "đảng ủy", "ĐẢNG ỦY"):
        body = client.get(f"{API}/records", query_string={"q": q}, headers=bearer(token))
        assert [r["id"] for r in body.get_json()["records"]] == [rid], q


@pytest.mark.parametrize("url, name", [
    ("/records?from=yesterday", "from"),
    ("/records?from=20250314", "from"),  # ISO 8601 basic form: not YYYY-MM-DD
    ("/records?to=2025-W11-5", "to"),
    ("/records?to=2025-02-30", "to"),
    ("/records?from=2025-02-01&to=2025-01-01", "from"),
    ("/records?limit=0", "limit"),
    ("/records?limit=501", "limit"),
    ("/records?limit=ten", "limit"),
    ("/records?offset=-1", "offset"),
    ("/records?status=lost", "status"),
    ("/records?classification=secret", "classification"),
    ("/records?q=" + "x" * 201, "q"),
    ("/records?q=a%00b", "q"),
    ("/records?type=" + "t" * 51, "type"),
    ("/records?org=" + "o" * 65, "org"),
    ("/records/not-a-uuid", "record id"),
    ("/records/not-a-uuid/signatures", "record id"),
    ("/records/not-a-uuid/events", "record id"),
    ("/records/not-a-uuid/original", "record id"),
    ("/records/not-a-uuid/aip", "record id"),
    (f"/records/{uuid.UUID(int=1)}/aip?version=first", "version"),
    (f"/records/{uuid.UUID(int=1)}/aip?version=0", "version"),
    ("/agents?kind=robot", "kind"),
    ("/audit?outcome=maybe", "outcome"),
    ("/audit?from=2025-01-01T00:00:00", "from"),
    ("/audit?to=soon", "to"),
    ("/audit?to=9999-12-31", "to"),  # the day after is beyond the calendar
    ("/audit?from=0001-01-01T00:00:00%2B01:00", "from"),  # before year 1 in UTC
    ("/audit?to=9999-12-31T23:59:59-01:00", "to"),
    ("/audit?from=2025-01-01T00:00%2B07:00", "from"),  # RFC 3339 needs the seconds
    ("/audit?limit=1001", "limit"),
    ("/audit/export?format=xml", "format"),
    ("/audit/export?limit=100001", "limit"),
    ("/me/access?offset=x", "offset"),
])
def test_bad_parameters_are_400_problems_naming_the_parameter(local_web, url, name):
    token = local_web.token(["records:read", "records:download", "agents:read",
                             "audit:read"])
    body = problem(local_web.client().get(API + url, headers=bearer(token)), 400)
    assert body["detail"].startswith(name), body["detail"]


def test_empty_parameters_count_as_left_out(local_web):
    """As an HTML form sends them (and as the OpenAPI document says: allowEmptyValue)."""
    ingest(local_web.aenv, "qd", **CORPUS["qd"])
    token = local_web.token(["records:read", "audit:read"])
    empty = "q=&type=&org=&classification=&status=&from=&to=&limit=&offset="
    body = local_web.client().get(f"{API}/records?{empty}", headers=bearer(token)).get_json()
    assert body["total"] == 1 and body["limit"] == 50
    audit = local_web.client().get(f"{API}/audit?actor=&outcome=&from=&to=&limit=",
                                   headers=bearer(token))
    assert audit.status_code == 200 and audit.get_json()["limit"] == 100


def test_public_endpoints_ignore_credentials(local_web):
    for path in ("/healthz", f"{API}/health", f"{API}/openapi.json", "/metrics"):
        for header in ("Basic eDp5", "Bearer kls_revoked", "Bearer"):
            assert local_web.client().get(path, headers={"Authorization": header}
                                          ).status_code == 200, (path, header)


def test_a_form_part_without_a_name_is_bad_input(local_web):
    """A multipart part without a name used to crash the CSRF check (500)."""
    local_web.add_user("an", "clerk")
    client = local_web.login("an")
    body = (b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{}\r\n--b--\r\n")
    response = client.post(f"{API}/records", data=body,
                           content_type="multipart/form-data; boundary=b")
    assert problem(response, 400)["detail"] == "a form field has no name"


def test_unknown_record_is_404(local_web):
    token = local_web.token(["records:read", "records:download"])
    missing = uuid.uuid4()
    for suffix in ("", "/signatures", "/events", "/original", "/aip"):
        problem(local_web.client().get(f"{API}/records/{missing}{suffix}",
                                       headers=bearer(token)), 404)
    problem(local_web.client().get(f"{API}/nothing"), 404)


# ---- one record ---------------------------------------------------------------------


def test_record_detail_signatures_events_and_downloads(web):
    rid, pdf = ingest(web.aenv, "qd", **CORPUS["qd"])
    sha256 = hashlib.sha256(pdf).hexdigest()
    web.add_user("an", "clerk")
    client = web.login("an")

    detail = client.get(f"{API}/records/{rid}").get_json()
    assert detail["id"] == rid and detail["number_symbol"] == "12-QĐ/TU"
    assert detail["fingerprint_sha256"] == sha256 and detail["fonds"] == "PHONG-01"
    [version] = detail["versions"]
    assert version["storage_key"] == f"aip/{rid}/v0001.tar"
    original = next(f for f in version["files"] if f["role"] == "original")
    assert original["digests"]["sha256"] == sha256 and original["size"] == len(pdf)

    signatures = client.get(f"{API}/records/{rid}/signatures").get_json()
    assert signatures["record_id"] == rid
    assert signatures["report"]["policy"]["doc_type"] == "quyet-dinh"

    events = client.get(f"{API}/records/{rid}/events").get_json()
    assert events["record_id"] == rid
    types = [e["type"] for e in events["events"]]
    assert "ingestion" in types and "fixity check" in types
    assert all(e["outcome"] in ("success", "warning") for e in events["events"])

    download = client.get(f"{API}/records/{rid}/original")
    assert download.status_code == 200
    assert download.data == pdf and hashlib.sha256(download.data).hexdigest() == sha256
    assert download.mimetype == "application/pdf"
    assert download.content_length == len(pdf)
    assert download.headers["Content-Disposition"].startswith('attachment; filename="qd.pdf"')

    # The clerk's role does not export whole packages; a token with the scope does.
    problem(client.get(f"{API}/records/{rid}/aip"), 403)
    token = web.token(["records:read", "records:download"])
    aip = web.client().get(f"{API}/records/{rid}/aip", headers=bearer(token))
    assert aip.status_code == 200 and aip.mimetype == "application/x-tar"
    assert hashlib.sha256(aip.data).hexdigest() == version["digests"]["sha256"]
    with tarfile.open(fileobj=io.BytesIO(aip.data)) as tar:
        assert tar.extractfile(f"{rid}.v1/data/content/qd.pdf").read() == pdf
        assert f"{rid}.v1/bagit.txt" in tar.getnames()
    assert web.client().get(f"{API}/records/{rid}/aip?version=1",
                            headers=bearer(token)).data == aip.data
    problem(web.client().get(f"{API}/records/{rid}/aip?version=2", headers=bearer(token)), 404)
    by_token = web.client().get(f"{API}/records/{rid}/original", headers=bearer(token))
    assert by_token.data == pdf

    # Every read is an audit entry (R-AUDIT-1).
    mine = [(e.action, e.outcome) for e in audit_rows(web, actor="user:an")
            if e.target == f"record:{rid}"]
    assert mine == [("record.view", "ok"), ("record.signatures", "ok"),
                    ("record.history", "ok"), ("record.download", "ok"),
                    ("record.export", "denied")]
    tokens = [(e.action, e.outcome) for e in audit_rows(web, target=f"record:{rid}")
              if e.actor.startswith("token:")]
    assert tokens == [("record.export", "ok"), ("record.export", "ok"),
                      ("record.download", "ok")]


def test_classified_original_is_decrypted_for_a_cleared_user(web):
    rid, pdf = ingest(web.aenv, "bc", text="NOI DUNG MAT 4711", **CORPUS["bc"])
    web.add_user("an", "clerk", "mat")
    client = web.login("an")
    download = client.get(f"{API}/records/{rid}/original")
    assert download.status_code == 200
    assert download.data == pdf
    assert hashlib.sha256(download.data).hexdigest() == hashlib.sha256(pdf).hexdigest()
    assert download.headers["Content-Disposition"].startswith('attachment; filename="bc.pdf"')

    # The AIP keeps the original encrypted, as stored (R-CLASS-1).
    web.add_user("chi", "archivist", "mat")
    aip = web.login("chi").get(f"{API}/records/{rid}/aip")
    assert aip.status_code == 200
    assert b"NOI DUNG MAT 4711" not in aip.data and pdf[:200] not in aip.data
    with tarfile.open(fileobj=io.BytesIO(aip.data)) as tar:
        assert f"{rid}.v1/data/content/document.enc" in tar.getnames()


def test_a_crypto_shredded_original_is_gone(local_web):
    """R-DESTROY-1: once its data key is destroyed, the original is 410 Gone (not 500)."""
    from archive.keystore import KeyVault
    from archive.models import StoredFile

    rid, _ = ingest(local_web.aenv, "bc", **CORPUS["bc"])
    with local_web.instance.catalog.unit_of_work(snapshot=True) as db:
        meta = db.scalars(select(StoredFile.encryption)
                          .where(StoredFile.role == "original")).one()
    assert KeyVault.from_settings(local_web.aenv.settings).destroy_data_key(meta["dek_id"])
    token = local_web.token(["records:read", "records:download"], clearance="mat")
    gone = problem(local_web.client().get(f"{API}/records/{rid}/original",
                                          headers=bearer(token)), 410)
    assert gone["title"] == "DataKeyDestroyed" and "crypto-shredded" in gone["detail"]
    # The record's description and history stay readable.
    assert local_web.client().get(f"{API}/records/{rid}", headers=bearer(token)).status_code \
        == 200


def _flip_original_byte(aenv, rid: str) -> None:
    key = f"aip/{rid}/v0001.tar"
    data = bytearray(_read(aenv, key))
    _, offset = _original(aenv, rid)
    data[offset + 10] ^= 0x01
    _raw_rewrite(aenv, key, bytes(data))


def test_damaged_object_stops_the_download_and_raises_an_alert(web):
    """R-FIX-1: the digest is checked while streaming; the last chunk is held back, so
    a damaged file never arrives complete, and the failure is an alert event."""
    rid, pdf = ingest(web.aenv, "big", text="x" * (2 * 1024 * 1024 + 12345))
    _flip_original_byte(web.aenv, rid)
    web.add_user("an", "clerk")
    client = web.login("an")
    response = client.get(f"{API}/records/{rid}/original", buffered=False)
    assert response.status_code == 200  # the headers went out before the end
    received = bytearray()
    with pytest.raises(FixityMismatch):
        for chunk in response.response:
            received += chunk
    assert 0 < len(received) < len(pdf)
    response.close()

    events = client.get(f"{API}/records/{rid}/events").get_json()["events"]
    alert = events[-1]
    assert alert["type"] == "fixity check" and alert["outcome"] == "failure"
    assert alert["agent"] == "user:an" and "retrieval stopped" in alert["detail"]
    failed = audit_rows(web, action="record.download", outcome="failed")
    assert [(e.actor, e.target) for e in failed] == [("user:an", f"record:{rid}")]
    assert failed[0].detail["alert"] == "fixity"

    # The whole package is damaged too: its download fails the same way.
    token = web.token(["records:download"])
    with pytest.raises(FixityMismatch):
        web.client().get(f"{API}/records/{rid}/aip", headers=bearer(token)).get_data()
    assert len(audit_rows(web, action="record.download", outcome="failed")) == 2


def test_damaged_download_over_http_never_completes(local_web):
    """Through a real HTTP server: the client sees the connection end early."""
    from waitress.server import create_server

    rid, pdf = ingest(local_web.aenv, "big", text="y" * (3 * 1024 * 1024))
    _flip_original_byte(local_web.aenv, rid)
    token = local_web.token(["records:download"])
    server = create_server(local_web.app, host="127.0.0.1", port=0, threads=1)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.effective_port}{API}/records/{rid}/original"
        request = urllib.request.Request(url, headers=bearer(token))  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            assert answer.status == 200
            assert int(answer.headers["Content-Length"]) == len(pdf)
            with pytest.raises(IncompleteRead) as cut:
                answer.read()
        assert len(cut.value.partial) < len(pdf)
    finally:
        server.close()
        thread.join(timeout=10)


# ---- ingest -------------------------------------------------------------------------


def _upload(client, pdf: bytes, name: str, metadata, *, headers=None):
    text = metadata if isinstance(metadata, str) else json.dumps(metadata, ensure_ascii=False)
    return client.post(f"{API}/records", headers=headers or {},
                       data={"file": (io.BytesIO(pdf), name), "metadata": text},
                       content_type="multipart/form-data")


def test_multipart_ingest(web):
    from ingest.demo import make_pdf

    web.add_user("an", "clerk")
    client = web.login("an")
    csrf = {"X-CSRFToken": web.csrf(client)}
    pdf = make_pdf(["Quyết định 12", "ingested through the API"])

    created = _upload(client, pdf, "quyết định.pdf", sample_metadata(), headers=csrf)
    assert created.status_code == 201, created.data
    body = created.get_json()
    assert body["status"] == "archived" and body["version"] == 1
    assert body["source"] == "quyết định.pdf"  # the sender's name, not a server path
    rid = body["record_id"]
    assert client.get(f"{API}/records/{rid}/original").data == pdf
    again = _upload(client, pdf, "copy.pdf", sample_metadata(), headers=csrf)
    assert again.status_code == 200
    assert again.get_json()["status"] == "duplicate" and again.get_json()["record_id"] == rid

    bad = problem(_upload(client, make_pdf(["other"]), "x.pdf",
                          {"doc_type": "khong-co", "date": "hôm qua", "language": "vi"},
                          headers=csrf), 400)
    fields = {p["field"] for p in bad["problems"]}
    assert {"doc_type", "date", "number_symbol", "summary", "issuing_org"} <= fields
    assert problem(_upload(client, pdf, "x.pdf", "{not json", headers=csrf),
                   400)["detail"].startswith("metadata")
    assert problem(_upload(client, pdf, "x.pdf", "[1, 2]", headers=csrf),
                   400)["detail"].startswith("metadata")
    no_file = client.post(f"{API}/records", headers=csrf, data={"metadata": "{}"},
                          content_type="multipart/form-data")
    assert problem(no_file, 400)["detail"].startswith("file")
    refused = problem(_upload(client, b"plain text, not a PDF", "ghi chu.txt",
                              sample_metadata(), headers=csrf), 422)
    assert refused["detail"].startswith("ghi chu.txt: format Plain Text")
    assert "staging" not in json.dumps(refused)
    assert refused["submission_id"] and "not accepted" in refused["report"]["reason"]

    # A cookie-authenticated POST needs the CSRF token; a Bearer token does not.
    assert "CSRF" in problem(_upload(client, make_pdf(["csrf"]), "c.pdf",
                                     sample_metadata()), 400)["title"]
    token = web.token(["records:ingest"])
    by_token = _upload(web.client(), make_pdf(["by token"]), "t.pdf",
                       sample_metadata(number_symbol="13-QĐ/TU"), headers=bearer(token))
    assert by_token.status_code == 201, by_token.data

    # Refused by the policy: a token without the scope, a role without ingest, a
    # password-only session (R-AUTH-1). Each denial is audited.
    reader = web.token(["records:read"])
    problem(_upload(web.client(), make_pdf(["r"]), "r.pdf", sample_metadata(),
                    headers=bearer(reader)), 403)
    web.add_user("kiem", "auditor")
    auditor = web.login("kiem")
    problem(_upload(auditor, make_pdf(["a"]), "a.pdf", sample_metadata(),
                    headers={"X-CSRFToken": web.csrf(auditor)}), 403)
    web.add_user("chi", "clerk")
    web.enrol("chi")
    weak = web.login("chi", browse_only=True)
    refused = problem(_upload(weak, make_pdf(["w"]), "w.pdf", sample_metadata(),
                              headers={"X-CSRFToken": web.csrf(weak)}), 403)
    assert "password-only" in refused["reason"]
    denied = audit_rows(web, action="record.ingest", outcome="denied")
    assert [e.actor for e in denied][1:] == ["user:kiem", "user:chi"]
    assert denied[0].actor.startswith("token:")
    assert web.aenv.json("records", "list")["total"] == 2


# ---- agents, users, me --------------------------------------------------------------


def test_agents(local_web):
    token = local_web.token(["agents:read"])
    client = local_web.client()
    body = client.get(f"{API}/agents", headers=bearer(token)).get_json()
    orgs = {a["identifier"]: a["name"] for a in body["agents"] if a["kind"] == "organisation"}
    assert orgs == {ORG: "Văn phòng Tỉnh ủy", ORG2: "Ban Tổ chức Tỉnh ủy"}
    local_web.add_user("an", "clerk")
    people = client.get(f"{API}/agents?kind=person", headers=bearer(token)).get_json()
    assert [a["kind"] for a in people["agents"]] == ["person"]
    one = client.get(f"{API}/agents/{ORG}", headers=bearer(token)).get_json()
    assert one["identifier"] == ORG and one["kind"] == "organisation"
    problem(client.get(f"{API}/agents/999.99.99.Z99", headers=bearer(token)), 404)
    problem(client.get(f"{API}/agents", headers=bearer(local_web.token(["records:read"]))),
            403)
    assert local_web.login("an").get(f"{API}/agents").status_code == 200


def test_users_are_listed_for_administrators_only(local_web):
    local_web.add_user("quantri", "administrator")
    local_web.add_user("an", "clerk")
    users = local_web.login("quantri").get(f"{API}/users")
    assert users.status_code == 200
    listed = {u["username"]: u for u in users.get_json()["users"]}
    assert set(listed) == {"quantri", "an"}
    assert listed["an"]["role"] == "clerk" and listed["an"]["totp_enrolled"] is False
    assert not {"password_hash", "totp_secret"} & set(listed["an"])
    problem(local_web.login("an").get(f"{API}/users"), 403)
    problem(local_web.client().get(f"{API}/users",
                                   headers=bearer(local_web.token(["audit:read"]))), 403)
    problem(local_web.client().get(f"{API}/users"), 401)


def test_me_says_who_and_how(local_web):
    anonymous = problem(local_web.client().get(f"{API}/me"), 401)
    assert "not logged in" in anonymous["reason"]
    assert local_web.client().get(f"{API}/me").headers["WWW-Authenticate"].startswith("Bearer")
    bad = problem(local_web.client().get(f"{API}/me", headers=bearer("kls_nope")), 401)
    assert "invalid" in bad["reason"]
    problem(local_web.client().get(f"{API}/me", headers={"Authorization": "Basic eDp5"}), 400)

    token = local_web.token(["records:read", "audit:read"], clearance="mat")
    me = local_web.client().get(f"{API}/me", headers=bearer(token)).get_json()
    assert me["kind"] == "token" and me["method"] == "token" and me["strong"] is True
    assert me["scopes"] == ["audit:read", "records:read"] and me["clearance"] == "mat"
    assert me["organisations"] == [ORG]

    local_web.add_user("an", "clerk", "mat")
    me = local_web.login("an").get(f"{API}/me").get_json()
    assert (me["principal"], me["role"], me["method"], me["strong"]) == \
        ("user:an", "clerk", "totp", True)
    assert me["scopes"] is None and me["fonds"] == ["PHONG-01"]
    me = local_web.login("an", browse_only=True).get(f"{API}/me").get_json()
    assert me["method"] == "password" and me["strong"] is False


def test_own_access_history(local_web):
    ids = corpus(local_web.aenv)
    local_web.add_user("an", "clerk")
    local_web.add_user("binh", "clerk")
    an = local_web.login("an")
    an.get(f"{API}/records")
    an.get(f"{API}/records/{ids['qd']}")
    an.get(f"{API}/records/{ids['bc']}")  # "mật", above the clearance: denied
    local_web.login("binh").get(f"{API}/records")

    body = an.get(f"{API}/me/access").get_json()
    actions = [(e["action"], e["outcome"]) for e in body["entries"]]
    assert {e["actor"] for e in body["entries"]} == {"user:an"}
    assert ("records.search", "ok") in actions and ("record.view", "ok") in actions
    assert ("record.view", "denied") in actions
    assert body["total"] == len(body["entries"])
    only = an.get(f"{API}/me/access?action=record.view&outcome=denied").get_json()
    assert [e["target"] for e in only["entries"]] == [f"record:{ids['bc']}"]
    views = an.get(f"{API}/me/access?action=record.view").get_json()["entries"]
    page = an.get(f"{API}/me/access?action=record.view&limit=1&offset=1").get_json()
    assert page["total"] == 2 and page["entries"] == views[1:]
    problem(local_web.client().get(f"{API}/me/access",
                                   headers=bearer(local_web.token(["records:read"]))), 403)


# ---- the audit log ------------------------------------------------------------------


def test_audit_query_and_export(web):
    ids = corpus(web.aenv)
    web.add_user("an", "clerk")
    web.add_user("kiem", "auditor")
    an = web.login("an")
    an.get(f"{API}/records/{ids['qd']}")
    an.get(f"{API}/records/{ids['bc']}")  # denied
    auditor = web.login("kiem")

    def query(client=auditor, headers=None, **params):
        response = client.get(f"{API}/audit", query_string=params, headers=headers or {})
        assert response.status_code == 200, response.data
        return response.get_json()

    everything = query(limit=1000)
    assert everything["total"] == len(everything["entries"]) > 10
    seqs = [e["seq"] for e in everything["entries"]]
    assert seqs == sorted(seqs, reverse=True)  # newest first
    assert all(len(e["entry_hash"]) == 64 for e in everything["entries"])
    views = query(actor="user:an", action="record.view")["entries"]
    assert [(e["target"], e["outcome"]) for e in views] == [
        (f"record:{ids['bc']}", "denied"), (f"record:{ids['qd']}", "ok")]
    denied = query(outcome="denied")["entries"]
    assert [e["actor"] for e in denied] == ["user:an"]
    assert denied[0]["detail"]["reason"].startswith("the record is classified")
    assert query(target=f"record:{ids['qd']}", actor="user:an")["total"] == 1
    logins = query(action="auth.*", actor="user:kiem")["entries"]
    assert {e["action"] for e in logins} >= {"auth.password", "auth.totp", "auth.session-start"}
    today = web.clock.now().date().isoformat()
    assert query(**{"from": today, "to": today}, limit=1000)["total"] >= everything["total"]
    assert query(**{"from": "2001-01-01", "to": "2001-12-31"})["total"] == 0
    assert query(**{"from": f"{today}T00:00:00+00:00"})["total"] > 0
    assert query(**{"from": f"{today}T00:00:00.5Z", "to": "9999-12-30"})["total"] > 0
    of_an = query(actor="user:an", limit=1000)["entries"]
    assert query(actor="user:an", limit=2, offset=1)["entries"] == of_an[1:3]

    csv_export = auditor.get(f"{API}/audit/export?format=csv&actor=user:an")
    assert csv_export.status_code == 200 and csv_export.mimetype == "text/csv"
    assert 'filename="audit.csv"' in csv_export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(csv_export.get_data(as_text=True))))
    assert rows and {r["actor"] for r in rows} == {"user:an"}
    assert list(rows[0]) == ["seq", "occurred_at", "actor", "action", "target", "outcome",
                             "client", "detail", "entry_hash"]
    details = [json.loads(r["detail"]) for r in rows]
    assert all(d is None or isinstance(d, dict) for d in details)
    jsonl = auditor.get(f"{API}/audit/export?format=jsonl&outcome=denied")
    assert jsonl.mimetype == "application/jsonl"
    lines = [json.loads(line) for line in jsonl.get_data(as_text=True).splitlines()]
    assert [(e["actor"], e["target"]) for e in lines] == [("user:an", f"record:{ids['bc']}")]

    # The export is itself audited; only auditors (or the audit:read scope) may read.
    exports = audit_rows(web, action="audit.export")
    assert [e.actor for e in exports] == ["user:kiem", "user:kiem"]
    problem(an.get(f"{API}/audit"), 403)
    problem(an.get(f"{API}/audit/export"), 403)
    token = web.token(["audit:read"])
    assert query(client=web.client(), headers=bearer(token), actor="user:an")["total"] > 0
    problem(web.client().get(f"{API}/audit", headers=bearer(web.token(["records:read"]))),
            403)
    assert [e.actor for e in audit_rows(web, action="audit.read", outcome="denied")][:2] == \
        ["user:an", "user:an"]


# ---- health, metrics, headers, cookies, sessions ------------------------------------


def test_healthz_and_metrics(local_web):
    from prometheus_client.parser import text_string_to_metric_families

    ingest(local_web.aenv, "qd", **CORPUS["qd"])
    client = local_web.client()
    health = client.get("/healthz")
    assert health.status_code == 200
    body = health.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["storage"]["ok"]
    assert body["checks"]["jobs"]["fixity"]["packages_failing"] == 0
    assert client.get(f"{API}/health").get_json()["status"] == "ok"
    problem(client.get(f"{API}/records"), 401)
    problem(client.get(f"{API}/records", headers=bearer(local_web.token(["audit:read"]))), 403)

    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.mimetype == "text/plain"
    families = {f.name: f for f in text_string_to_metric_families(
        metrics.get_data(as_text=True))}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    assert families["archive_http_requests"].type == "counter"
    assert samples[("archive_http_requests_total", (("endpoint", "api.list_records"),
                                                    ("method", "GET"),
                                                    ("status", "401")))] == 1
    assert samples[("archive_http_requests_total", (("endpoint", "ops.healthz"),
                                                    ("method", "GET"),
                                                    ("status", "200")))] == 1
    assert samples[("archive_access_denied_total", ())] == 1
    assert samples[("archive_records", (("status", "active"),))] == 1
    assert samples[("archive_catalog_up", ())] == 1
    assert samples[("archive_packages_fixity_failing", ())] == 0
    assert families["archive_http_request_duration_seconds"].type == "histogram"


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/openapi.json", "/healthz", "/login",
                                  "/records", "/api/v1/nothing"])
def test_security_headers(local_web, path):
    response = local_web.client().get(path)
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    csp = headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp and "object-src 'none'" in csp
    assert "Strict-Transport-Security" not in headers  # plain HTTP
    secure = local_web.client().get(path, base_url="https://archive.example.org")
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


@pytest.mark.parametrize("mode, base_url, secure", [
    ("auto", "http://localhost", False),
    ("auto", "http://127.0.0.1:8000", False),
    ("auto", "http://archive.example.org", True),
    ("auto", "https://localhost", True),
    ("always", "http://localhost", True),
    ("never", "https://archive.example.org", False),
])
def test_session_cookie_flags(local_archive, mode, base_url, secure):
    web = WebArchive(local_archive, env={"ARCHIVE_AUTH__COOKIE_SECURE": mode})
    try:
        page = web.client().get("/login", base_url=base_url)
        [cookie] = [c for c in page.headers.getlist("Set-Cookie")
                    if c.startswith("kls_session=")]
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert "httponly" in flags
        assert "samesite=lax" in cookie.lower()
        assert ("secure" in flags) is secure
    finally:
        web.close()


def test_session_idle_expiry_lifetime_and_logout(local_web):
    local_web.add_user("an", "clerk")
    client = local_web.login("an")
    assert client.get(f"{API}/me").status_code == 200
    local_web.clock.offset += timedelta(minutes=31)  # auth.session_idle_minutes = 30
    problem(client.get(f"{API}/me"), 401)
    page = client.get("/records")
    assert page.status_code == 302 and "/login" in page.headers["Location"]

    client = local_web.login("an")
    started = local_web.clock.now()
    for _ in range(40):  # active every 25 minutes: still ends after 12 hours
        local_web.clock.offset += timedelta(minutes=25)
        if client.get(f"{API}/me").status_code != 200:
            break
    lasted = local_web.clock.now() - started
    assert timedelta(hours=12) <= lasted < timedelta(hours=12, minutes=25)
    problem(client.get(f"{API}/me"), 401)

    client = local_web.login("an")
    token = local_web.csrf(client)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    problem(client.get(f"{API}/me"), 401)
    assert "auth.logout" in [e.action for e in audit_rows(local_web, actor="user:an")]


def test_locking_an_account_ends_its_sessions_at_once(web):
    web.add_user("an", "clerk")
    client = web.login("an")
    other = web.login("an")
    assert client.get(f"{API}/me").status_code == 200
    locked = web.aenv.invoke("users", "lock", "an", "--reason", "điện thoại bị mất",
                             "--incident", "lost")
    assert locked.exit_code == 0, locked.output
    problem(client.get(f"{API}/me"), 401)
    page = other.get("/records")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    [entry] = audit_rows(web, action="user.lock")
    assert entry.detail["incident"] == "lost" and entry.detail["sessions_ended"] == 2
    with pytest.raises(AssertionError):
        web.login("an")  # the password step refuses a locked account
    assert audit_rows(web, action="auth.login", outcome="denied")[-1].detail["reason"] == \
        "account locked"
