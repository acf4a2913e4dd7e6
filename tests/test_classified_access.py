"""No classified byte is served (R-CLASS-1, R-AUTH-1, R-AUDIT-1; issue #4 "must show").

For a record classified "mật", every GET route of the app that takes a record id, the
search endpoints and every page without parameters are requested by each principal
that must not read it: a user without clearance, a cleared user on a password-only
session, an API token without the record scopes, a token with the scopes but
clearance "normal", and nobody. No response may carry the record's content (plain or
encrypted), its summary or its number; a search must not list it; each denial is a
401/403 (or, for a page and nobody, the way to the login page) and is in the audit log
with outcome "denied". The routes are read from ``app.url_map``, so a route added later
is covered without changing this test.

The record also has a lifecycle (issue #5), made through the real API by cleared people
before the walk: a paper rendition, a seal (lifted again, so the record stays readable
by the cleared), a revocation (notifications to its issuing organisation, of which the
uncleared users are persons) and a classified draft. The routes naming a seal, a
draft or a rendition are walked with their ids, the listings (notifications, seals,
drafts) with that material in them, and the principals include an auditor, an
inspector and an ``audit:read`` token of clearance "normal" (they see every seal and
notification). The public verification of the rendition shows the status and times only.
"""

from __future__ import annotations

import json
import re

from sqlalchemy import func, select

from archive.models import AuditEntry, PackageVersion, StoredFile
from tests.accounts import WebArchive
from tests.conftest import ORG, sample_metadata

SECRET_TEXT = "NOI DUNG MAT 4711"
NUMBER = "3-BC/TU"
SUMMARY = "Báo cáo tình hình bảo vệ bí mật nhà nước"
# Route parameters that are not a record id (and the routes that have them). A destruction
# list (list_id) is walked with a classified, expired record by
# tests/test_destruction_web.py (test_uncleared_readers_see_no_classified_number_...).
# run_id names a preservation job run (issue #6): what it shows is counts and alerts that
# carry record ids and storage keys, never a number, a summary or content.
OTHER_PARAMETERS = {"code", "identifier", "filename", "list_id", "run_id"}
# Route parameters naming a lifecycle object of a record (issue #5): walked with the ids
# of the objects made about the classified record (:func:`_lifecycle`).
LIFECYCLE_PARAMETERS = {"seal_id", "rendition_id", "draft_id"}
DRAFT_NUMBER = "9-BC/TU"
DRAFT_SUMMARY = "Dự thảo báo cáo kiểm tra công tác giữ gìn bí mật"
# What the public verification may say of a classified record: status and times.
VERIFICATION_KEYS = {"rendition_id", "status", "rendered_at", "revoked_at", "destroyed_at",
                     "limited"}



def _classified_record(web: WebArchive) -> tuple[str, list[bytes]]:
    """Ingest the "mật" record; its id and the byte strings that must never be served."""
    aenv = web.aenv
    pdf = aenv.sample("bc.pdf", text=SECRET_TEXT, number_symbol=NUMBER, summary=SUMMARY,
                      doc_type="bao-cao", classification="mat")
    result = aenv.json("ingest", str(pdf))["results"][0]
    rid = result["record_id"]
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        stored = db.execute(select(StoredFile.offset, StoredFile.size, PackageVersion.storage_key)
                            .join(PackageVersion, PackageVersion.id == StoredFile.package_id)
                            .where(PackageVersion.record_id == rid,
                                   StoredFile.role == "original")).one()
    with web.instance.store.open(stored.storage_key, stored.offset, stored.size) as fh:
        ciphertext = fh.read()
    plain = pdf.read_bytes()
    forbidden = [SECRET_TEXT.encode(), NUMBER.encode(), NUMBER.replace("/", "\\/").encode(),
                 SUMMARY.encode(), "bảo vệ bí mật".encode(), b"b\\u1ea3o v\\u1ec7",
                 plain[-200:], ciphertext[:64], ciphertext[-64:]]
    forbidden += [plain[i:i + 64] for i in range(0, len(plain) - 64, 256)]
    return rid, forbidden


def _post(web: WebArchive, client, url: str, **kwargs):
    """A POST from a logged-in browser, its CSRF token in the header."""
    headers = {"X-CSRFToken": web.csrf(client), **kwargs.pop("headers", {})}
    response = client.post(url, headers=headers, **kwargs)
    assert response.status_code in (200, 201), (url, response.status_code, response.data)
    return response.get_json()


def _lifecycle(web: WebArchive, rid: str) -> tuple[dict[str, str], list[bytes]]:
    """Made by cleared people with a one-time code, through the API: a rendition of the
    record, a seal over it (lifted: a sealed record refuses renditions and reads), its
    revocation (notifications to the issuing organisation ``ORG``) and a classified
    draft. The ids to put in the lifecycle routes, and the draft's forbidden bytes."""
    web.add_user("inan", "clerk", "mat")
    clerk = web.login("inan")
    rendition = _post(web, clerk, f"/api/v1/records/{rid}/renditions",
                      headers={"Accept": "application/json"})
    web.add_user("niemphong", "inspector", "mat")
    inspector = web.login("niemphong")
    seal = _post(web, inspector, "/api/v1/seals", json={
        "records": [rid], "reference": "05/QĐ-UBKT", "date": "2026-03-02",
        "authority": ORG, "scope": "Kiểm tra việc chấp hành quy chế lưu trữ"})
    _post(web, inspector, f"/api/v1/seals/{seal['id']}/unseal",
          json={"reference": "09/QĐ-UBKT"})
    web.add_user("duyet", "approver", "mat")
    revoked = _post(web, web.login("duyet"), f"/api/v1/records/{rid}/revocation", json={
        "reason": "Ban hành sai thẩm quyền", "form": "Quyết định",
        "legal_basis": "Điều 19 Quy định về giao dịch điện tử", "decision_ref": "15-QĐ/TU"})
    assert ORG in [n["recipient"] for n in revoked["notifications"]]
    metadata = sample_metadata(number_symbol=DRAFT_NUMBER, summary=DRAFT_SUMMARY,
                               doc_type="bao-cao", classification="mat")
    draft = _post(web, clerk, "/api/v1/drafts", content_type="multipart/form-data",
                  data={"metadata": json.dumps(metadata, ensure_ascii=False)})
    draft_id = draft.get("id") or draft["draft"]["id"]
    ids = {"seal_id": seal["id"], "rendition_id": rendition["id"], "draft_id": draft_id}
    forbidden = [DRAFT_NUMBER.encode(), DRAFT_NUMBER.replace("/", "\\/").encode(),
                 DRAFT_SUMMARY.encode(), "giữ gìn bí mật".encode(), b"gi\\u1eef g\\u00ecn"]
    return ids, forbidden


def _routes(app) -> tuple[list[str], list[str], list[str]]:
    """GET rules taking a record id, GET rules naming a record's lifecycle object (a
    seal, a rendition, a draft), and GET rules without parameters."""
    with_id, lifecycle, plain = [], [], []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        arguments = set(rule.arguments)
        assert arguments <= {"record_id"} | LIFECYCLE_PARAMETERS | OTHER_PARAMETERS, \
            f"{rule.rule}: a new route parameter; say whether it names a record"
        if "record_id" in arguments:
            with_id.append(rule.rule)
        elif arguments & LIFECYCLE_PARAMETERS:
            lifecycle.append(rule.rule)
        elif not arguments:
            plain.append(rule.rule)
    return with_id, lifecycle, plain


def _fill(rule: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        rule = rule.replace(f"<{name}>", value)
    assert "<" not in rule, rule
    return rule


def _last_seq(web: WebArchive) -> int:
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        return db.scalar(select(func.max(AuditEntry.seq))) or 0


def _entries_since(web: WebArchive, seq: int) -> list[AuditEntry]:
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        rows = list(db.scalars(select(AuditEntry).where(AuditEntry.seq > seq)
                               .order_by(AuditEntry.seq)))
        db.expunge_all()
    return rows


def _principals(web: WebArchive):
    """(name, client, headers, audit actor) of everyone who must not read the record."""
    web.add_user("thuong", "clerk", "normal")
    web.add_user("mat", "archivist", "mat")
    web.enrol("mat")
    web.add_user("kiemtoan", "auditor", "normal")
    web.add_user("thanhtra", "inspector", "normal")
    no_scope = web.token(["agents:read"], clearance="mat")
    normal = web.token(["records:read", "records:download"], clearance="normal")
    auditing = web.token(["audit:read"], clearance="normal")
    return [
        ("user without clearance", web.login("thuong"), {}, "user:thuong"),
        ("cleared user, password only", web.login("mat", browse_only=True), {}, "user:mat"),
        ("token without the scope", web.client(), {"Authorization": f"Bearer {no_scope}"},
         "token:"),
        ("token with clearance normal", web.client(), {"Authorization": f"Bearer {normal}"},
         "token:"),
        ("auditor without clearance", web.login("kiemtoan"), {}, "user:kiemtoan"),
        ("inspector without clearance", web.login("thanhtra"), {}, "user:thanhtra"),
        ("audit token with clearance normal", web.client(),
         {"Authorization": f"Bearer {auditing}"}, "token:"),
        ("nobody", web.client(), {}, "anonymous:-"),
    ]


def test_no_classified_byte_is_served(web):
    rid, forbidden = _classified_record(web)
    ids, draft_forbidden = _lifecycle(web, rid)
    forbidden += draft_forbidden
    # A normal record of the same fonds, so searches have something to return.
    normal = web.aenv.sample("qd.pdf", text="public text")
    web.aenv.json("ingest", str(normal))
    with_id, lifecycle, plain = _routes(web.app)
    assert {"/api/v1/records/<record_id>", "/api/v1/records/<record_id>/original",
            "/api/v1/records/<record_id>/aip"} <= set(with_id)
    assert {"/api/v1/seals/<seal_id>", "/seals/<seal_id>", "/verify/<rendition_id>",
            "/api/v1/renditions/<rendition_id>/verification", "/drafts/<draft_id>",
            "/api/v1/drafts/<draft_id>"} <= set(lifecycle)
    assert {"/api/v1/notifications", "/notifications", "/api/v1/seals", "/seals",
            "/api/v1/drafts", "/drafts"} <= set(plain)
    searches = [p for p in plain if p.rstrip("/").endswith("/records")]
    assert {"/api/v1/records", "/records"} <= set(searches)
    checked = 0

    principals = _principals(web)

    def getter(name, client, headers):
        def get(url, **params):
            before = _last_seq(web)
            response = client.get(url, headers=headers, query_string=params)
            # A search page may show the caller's own query back; nothing else.
            typed = " ".join(str(v) for v in params.values())
            leaks = [f for f in forbidden if f in response.get_data()
                     and f.decode("utf-8", "replace") not in typed]
            assert not leaks, (name, url, params, leaks[:1])
            return response, _entries_since(web, before)
        return get

    # Everyone's pages first, before any search, so no history and no audit log (read
    # by the auditors) shows a query the test typed.
    for name, client, headers, actor in principals:
        get = getter(name, client, headers)
        # Pages without parameters.
        for url in plain:
            if url in searches or url.startswith("/static") or url == "/api/v1/openapi.json":
                continue
            get(url)
            checked += 1

        for rule in with_id:
            url = rule.replace("<record_id>", rid)
            response, entries = get(url)
            checked += 1
            if actor == "anonymous:-" and not url.startswith("/api/"):
                assert response.status_code == 302, (url, response.status_code)
                assert "/login" in response.headers["Location"]
                continue
            expected = 401 if actor == "anonymous:-" else 403
            assert response.status_code == expected, (name, url, response.status_code)
            denied = [e for e in entries if e.outcome == "denied"]
            assert denied, (name, url, "denial not in the audit log")
            assert denied[0].actor.startswith(actor), (name, url, denied[0].actor)
            assert denied[0].target in (f"record:{rid}", url), (name, url, denied[0].target)
            assert not [e for e in entries if e.outcome == "ok" and rid in e.target], \
                (name, url, "a read of the record was logged as served")

        for rule in lifecycle:
            url = _fill(rule, ids)
            response, entries = get(url)
            checked += 1
            if "<rendition_id>" in rule:
                # Public (R-CONV-2): the status and times only, for anyone.
                assert response.status_code == 200, (name, url, response.status_code)
                if url.startswith("/api/"):
                    body = response.get_json()
                    assert body["limited"] is True and body["status"] == "revoked", body
                    assert set(body) <= VERIFICATION_KEYS, (url, sorted(body))
                else:
                    html = response.get_data(as_text=True)
                    assert 'data-status="revoked"' in html and 'id="verify-limited"' in html
                continue
            if response.status_code == 200:
                # Allowed to see the object (an auditor or inspector sees every seal):
                # still nothing of the record but its id.
                assert "<seal_id>" in rule and actor.startswith(
                    ("user:kiemtoan", "user:thanhtra", "token:")), (name, url)
                assert rid.encode() in response.get_data(), (name, url)
                continue
            if actor == "anonymous:-" and not url.startswith("/api/"):
                assert response.status_code == 302, (url, response.status_code)
                assert "/login" in response.headers["Location"]
                continue
            expected = 401 if actor == "anonymous:-" else 403
            assert response.status_code == expected, (name, url, response.status_code)
            denied = [e for e in entries if e.outcome == "denied"]
            assert denied, (name, url, "denial not in the audit log")
            assert denied[0].actor.startswith(actor), (name, url, denied[0].actor)

    for name, client, headers, actor in principals:
        get = getter(name, client, headers)
        for url in searches:
            for params in ({}, {"q": NUMBER}, {"q": "bảo vệ bí mật"}, {"classification": "mat"},
                           {"type": "bao-cao"}):
                response, entries = get(url, **params)
                checked += 1
                if response.status_code == 200:
                    if url.startswith("/api/"):
                        body = response.get_json()
                        assert rid not in {r["id"] for r in body["records"]}, (name, params)
                        if params:
                            assert body["total"] == 0, (name, params, body["total"])
                    assert rid.encode() not in response.get_data(), (name, url, params)
                    continue
                if actor == "anonymous:-" and not url.startswith("/api/"):
                    assert response.status_code == 302
                    continue
                assert response.status_code in (401, 403), (name, url, response.status_code)
                assert [e for e in entries if e.outcome == "denied"], (name, url, params)

    assert checked > 50

    # The detector works: a cleared user with a one-time code does get the record.
    web.add_user("xem", "clerk", "mat")
    cleared = web.login("xem")
    original = cleared.get(f"/api/v1/records/{rid}/original").get_data()
    assert SECRET_TEXT.encode() in original
    found = cleared.get("/api/v1/records", query_string={"q": NUMBER}).get_json()
    assert [r["id"] for r in found["records"]] == [rid]


def test_denials_name_the_reason(web):
    rid, _ = _classified_record(web)
    reasons = {}
    for name, client, headers, _actor in _principals(web):
        response = client.get(f"/api/v1/records/{rid}/original", headers=headers)
        reasons[name] = response.get_json()["reason"]
    assert re.search("above the clearance", reasons["user without clearance"])
    assert "one-time code or a certificate" in reasons["cleared user, password only"]
    assert "no scope" in reasons["token without the scope"]
    assert "above the clearance" in reasons["token with clearance normal"]
    assert "not logged in" in reasons["nobody"]


def test_the_audit_log_keeps_classified_metadata_from_uncleared_auditors(local_archive):
    web = WebArchive(local_archive)
    try:
        _classified_record(web)
        web.add_user("kiem", "auditor", "normal")
        token = web.token(["audit:read"], clearance="normal")
        for client, headers in ((web.login("kiem"), {}),
                                (web.client(), {"Authorization": f"Bearer {token}"})):
            for url in ("/api/v1/audit", "/api/v1/audit/export?format=jsonl"):
                body = client.get(url, headers=headers).get_data()
                assert NUMBER.encode() not in body and SUMMARY.encode() not in body
    finally:
        web.close()
