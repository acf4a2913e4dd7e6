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
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from archive.models import AuditEntry, PackageVersion, StoredFile
from tests.accounts import WebArchive

SECRET_TEXT = "NOI DUNG MAT 4711"
NUMBER = "3-BC/TU"
SUMMARY = "Báo cáo tình hình bảo vệ bí mật nhà nước"
# Route parameters that are not a record id (and the routes that have them).
OTHER_PARAMETERS = {"code", "identifier", "filename"}


@pytest.fixture
def web(archive_env):
    archive = WebArchive(archive_env)
    yield archive
    archive.close()


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


def _routes(app) -> tuple[list[str], list[str]]:
    """GET rules taking a record id, and GET rules without parameters."""
    with_id, plain = [], []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        arguments = set(rule.arguments)
        assert arguments <= {"record_id"} | OTHER_PARAMETERS, \
            f"{rule.rule}: a new route parameter; say whether it names a record"
        if "record_id" in arguments:
            with_id.append(rule.rule)
        elif not arguments:
            plain.append(rule.rule)
    return with_id, plain


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
    no_scope = web.token(["agents:read"], clearance="mat")
    normal = web.token(["records:read", "records:download"], clearance="normal")
    return [
        ("user without clearance", web.login("thuong"), {}, "user:thuong"),
        ("cleared user, password only", web.login("mat", browse_only=True), {}, "user:mat"),
        ("token without the scope", web.client(), {"Authorization": f"Bearer {no_scope}"},
         "token:"),
        ("token with clearance normal", web.client(), {"Authorization": f"Bearer {normal}"},
         "token:"),
        ("nobody", web.client(), {}, "anonymous:-"),
    ]


def test_no_classified_byte_is_served(web):
    rid, forbidden = _classified_record(web)
    # A normal record of the same fonds, so searches have something to return.
    normal = web.aenv.sample("qd.pdf", text="public text")
    web.aenv.json("ingest", str(normal))
    with_id, plain = _routes(web.app)
    assert {"/api/v1/records/<record_id>", "/api/v1/records/<record_id>/original",
            "/api/v1/records/<record_id>/aip"} <= set(with_id)
    searches = [p for p in plain if p.rstrip("/").endswith("/records")]
    assert {"/api/v1/records", "/records"} <= set(searches)
    checked = 0

    for name, client, headers, actor in _principals(web):
        def get(url, _client=client, _headers=headers, _name=name, **params):
            before = _last_seq(web)
            response = _client.get(url, headers=_headers, query_string=params)
            # A search page may show the caller's own query back; nothing else.
            typed = " ".join(str(v) for v in params.values())
            leaks = [f for f in forbidden if f in response.get_data()
                     and f.decode("utf-8", "replace") not in typed]
            assert not leaks, (_name, url, params, leaks[:1])
            return response, _entries_since(web, before)

        # Pages without parameters (before any search, so no history shows our query).
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
