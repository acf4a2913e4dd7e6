"""A sealed record refuses every read and change path to everyone outside the sealing
decision, and every attempt is in the audit log (R-SEAL-2, the issue's "Must show").

One record is sealed through the API by an inspector (one-time code login). Then, for
every role outside the decision (clerk, archivist, approver, an inspector who is not a
reader, auditor, administrator), an API token with every scope and the CLI operator:
the original, the AIP, the events and full history, the signature report, the web
download, revocation, a rendition, an amendment and a second seal are refused (403 or
exit 3) and each refusal is audited; the metadata still shows, marked sealed. The
readers named in the decision read the history and download. Runs on SQLite + local
folder and PostgreSQL + SeaweedFS; sealing one record does not block work on another
(PostgreSQL: a seal transaction held open while another record is downloaded and a new
one ingested).
"""

from __future__ import annotations

import io
import json
import threading

import pytest
from sqlalchemy import select

from archive.models import AuditEntry
from tests.accounts import csrf_of
from tests.conftest import make_archive_env, sample_metadata
from tests.test_api import API, bearer, ingest
from tests.test_sealing import AUTHORITY, Sealing

ALL_SCOPES = ["records:read", "records:download", "records:ingest", "agents:read",
              "audit:read"]
OUTSIDERS = {"van": "clerk", "luu": "archivist", "duyet": "approver", "tra": "inspector",
             "kt": "auditor", "qt": "administrator"}
REFERENCE = "05/QĐ-UBKT"


@pytest.fixture
def setup(archive_env):
    s = Sealing(archive_env)
    web = s.web
    for username, role in OUTSIDERS.items():
        if username not in web.accounts:
            web.add_user(username, role, "mat" if role != "administrator" else "normal")
    reader = web.add_user("doc", "clerk")  # named in the decision
    s.reader = reader
    s.sealed_id, s.sealed_bytes = ingest(archive_env, "sealed")
    s.other_id, s.other_bytes = ingest(archive_env, "other")
    s.token = web.token(ALL_SCOPES, clearance="mat")
    yield s
    s.close()


def _routes(app) -> set[str]:
    return {rule.rule for rule in app.url_map.iter_rules()}


def _paths(s, rid: str) -> dict:
    """Every way to read, copy or change record ``rid``: name -> (method, url, kwargs)."""
    routes = _routes(s.web.app)
    paths = {
        "original": ("get", f"{API}/records/{rid}/original", {}),
        "aip": ("get", f"{API}/records/{rid}/aip", {}),
        "events": ("get", f"{API}/records/{rid}/events", {}),
        "signatures": ("get", f"{API}/records/{rid}/signatures", {}),
        "web-download": ("get", f"/records/{rid}/download", {}),
    }
    if "/api/v1/records/<record_id>/history" in routes:  # the full history (R-HIST-1)
        paths["history"] = ("get", f"{API}/records/{rid}/history", {})
    if "/api/v1/records/<record_id>/revocation" in routes:  # R-REVOKE-1
        paths["revocation"] = ("post", f"{API}/records/{rid}/revocation", {"json": {
            "reason": "thử", "form": "Quyết định", "legal_basis": "Điều 1"}})
    if "/api/v1/records/<record_id>/renditions" in routes:  # R-CONV-2
        paths["rendition"] = ("post", f"{API}/records/{rid}/renditions",
                              {"headers": {"Accept": "application/json"}})
    if "/api/v1/records/<record_id>/amendments" in routes:  # R-AMEND-1
        paths["amendment"] = ("post", f"{API}/records/{rid}/amendments", {"data": {
            "kind": "correction", "reason": "đính chính",
            "metadata": json.dumps(sample_metadata(number_symbol="13-QĐ/TU")),
            "file": (io.BytesIO(b"%PDF-1.4 correction"), "dinh-chinh.pdf")},
            "content_type": "multipart/form-data"})
    paths["second-seal"] = ("post", f"{API}/seals", {"json": {
        "records": [rid], "reference": "07/QĐ-UBKT", "date": "2026-03-05",
        "authority": AUTHORITY, "scope": "second"}})
    return paths


def _call(client, method: str, url: str, kwargs: dict, *, csrf: str | None = None,
          headers: dict | None = None):
    kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in kwargs.items()}
    if "data" in kwargs:  # a fresh file object per call
        data = kwargs["data"]
        if "file" in data:
            data["file"] = (io.BytesIO(b"%PDF-1.4 correction"), "dinh-chinh.pdf")
    all_headers = {**kwargs.pop("headers", {}), **(headers or {})}
    if csrf and method == "post":
        all_headers["X-CSRFToken"] = csrf
    response = getattr(client, method)(url, headers=all_headers, **kwargs)
    response.close()
    return response


def _denials(s, actor: str, rid: str, since: int) -> list[AuditEntry]:
    with s.web.instance.catalog.unit_of_work(snapshot=True) as db:
        rows = list(db.scalars(select(AuditEntry).where(
            AuditEntry.seq > since, AuditEntry.actor == actor, AuditEntry.outcome == "denied",
            AuditEntry.target.in_([f"record:{rid}"]))))
        db.expunge_all()
    return rows


def _head(s) -> int:
    with s.web.instance.catalog.unit_of_work(snapshot=True) as db:
        return db.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1))


def test_a_sealed_record_refuses_every_path_outside_the_decision(setup):
    s = setup
    web = s.web
    rid = s.sealed_id
    clients = {name: web.login(name) for name in [*OUTSIDERS, "doc", "thanh"]}
    csrf = {name: web.csrf(c) for name, c in clients.items()}
    actors = {**{f"user:{n}": (clients[n], csrf[n], None) for n in OUTSIDERS},
              "token": (web.client(), None, bearer(s.token))}

    # Before sealing: which read paths each actor may use (so a refusal after sealing is
    # the seal's doing, not the role's). Change paths are not tried on the live record.
    reads = ("original", "aip", "events", "signatures", "web-download", "history")
    paths = _paths(s, rid)
    allowed_before: dict[str, set[str]] = {}
    for actor, (client, token_csrf, headers) in actors.items():
        allowed_before[actor] = {
            name for name, (method, url, kwargs) in paths.items() if name in reads and
            _call(client, method, url, kwargs, csrf=token_csrf, headers=headers
                  ).status_code == 200}
    assert {"original", "events", "signatures", "web-download"} <= allowed_before["user:van"]
    assert "aip" in allowed_before["user:luu"] and "aip" in allowed_before["user:tra"]
    assert {"original", "aip", "events"} <= allowed_before["token"]

    # The inspector seals through the API (one-time code session, CSRF on the cookie call).
    sealed = clients["thanh"].post(f"{API}/seals", headers={"X-CSRFToken": csrf["thanh"]},
                                   json={"records": [rid], "reference": REFERENCE,
                                         "date": "2026-03-02", "authority": AUTHORITY,
                                         "scope": "Thanh tra công tác lưu trữ",
                                         "readers": [s.reader.person]})
    assert sealed.status_code == 201, sealed.data
    seal = sealed.get_json()
    assert seal["status"] == "active" and seal["readers"] == [s.reader.person]

    since = _head(s)
    for actor, (client, token_csrf, headers) in actors.items():
        audit_actor = actor if actor != "token" else None
        for name, (method, url, kwargs) in paths.items():
            response = _call(client, method, url, kwargs, csrf=token_csrf, headers=headers)
            assert response.status_code == 403, (actor, name, response.status_code,
                                                 response.data[:300])
            if name in allowed_before[actor]:
                body = response.get_json(silent=True)
                text = json.dumps(body, ensure_ascii=False) if body else response.text
                assert REFERENCE in text, (actor, name, text[:300])
        if audit_actor is None:  # the token's principal is token:<id>
            with web.instance.catalog.unit_of_work(snapshot=True) as db:
                audit_actor = db.scalar(select(AuditEntry.actor).where(
                    AuditEntry.seq > since, AuditEntry.actor.like("token:%")).limit(1))
        denied = _denials(s, audit_actor, rid, since)
        # Every refused attempt is in the log (the second seal is refused per record too).
        assert len(denied) >= len(paths), (actor, len(denied), len(paths))
        assert {"record.download", "record.export", "record.history",
                "record.signatures"} <= {d.action for d in denied}, actor

    # The metadata still shows, marked sealed, to whoever may view the record.
    shown = clients["van"].get(f"{API}/records/{rid}").get_json()
    assert shown["sealed"] is True and shown["seal"]["reference"] == REFERENCE
    page = clients["van"].get(f"/records/{rid}")
    assert page.status_code == 200
    html = page.text
    assert 'id="sealed-banner"' in html and "Đang niêm phong" in html and REFERENCE in html
    assert "badge-sealed" in html and 'id="download"' not in html
    assert 'id="signatures-denied"' in html and 'id="seal-form"' not in html
    assert 'id="unseal-form"' not in html
    # The API token and every outsider still find it in a search.
    found = web.client().get(f"{API}/records", headers=bearer(s.token)).get_json()
    assert rid in [r["id"] for r in found["records"]]

    # The CLI operator: refused, exit 3, audited.
    for args in (("records", "get", rid, "-o", str(s.aenv.tmp_path / "x.pdf")),
                 ("records", "history", rid)):
        result = s.aenv.invoke(*args)
        assert result.exit_code == 3 and REFERENCE in result.stderr, result.output
    cli_denials = [e for e in _all_denials(s, since) if e.actor.startswith("system:cli:")]
    assert {e.action for e in cli_denials} >= {"record.download", "record.history"}

    # Readers named in the decision read the history and download; the sealer is the
    # authority that may lift the seal, not a reader.
    doc = clients["doc"]
    assert doc.get(f"{API}/records/{rid}/events").status_code == 200
    original = doc.get(f"{API}/records/{rid}/original")
    assert original.status_code == 200 and original.data == s.sealed_bytes
    assert doc.get(f"{API}/records/{rid}/signatures").status_code == 200
    reader_page = doc.get(f"/records/{rid}").text
    assert 'id="download"' in reader_page and 'id="history"' in reader_page
    assert clients["thanh"].get(f"{API}/records/{rid}/original").status_code == 403

    # Unseal by an inspector outside the authority: 403, audited; by the sealer: lifted.
    refused = clients["tra"].post(f"{API}/seals/{seal['id']}/unseal",
                                  headers={"X-CSRFToken": csrf["tra"]},
                                  json={"reference": "X"})
    assert refused.status_code == 403 and "sealing authority" in refused.get_json()["reason"]
    assert [d.action for d in _denials(s, "user:tra", rid, since)].count("record.unseal") == 1
    lifted = clients["thanh"].post(f"{API}/seals/{seal['id']}/unseal",
                                   headers={"X-CSRFToken": csrf["thanh"]},
                                   json={"reference": "09/QĐ-UBKT"})
    assert lifted.status_code == 200 and lifted.get_json()["ok"] is True
    assert clients["van"].get(f"{API}/records/{rid}/original").data == s.sealed_bytes
    assert s.aenv.invoke("audit", "verify").exit_code == 0


def _all_denials(s, since: int) -> list[AuditEntry]:
    with s.web.instance.catalog.unit_of_work(snapshot=True) as db:
        rows = list(db.scalars(select(AuditEntry).where(AuditEntry.seq > since,
                                                        AuditEntry.outcome == "denied")))
        db.expunge_all()
    return rows


def test_the_web_forms_seal_show_and_unseal(setup):
    s = setup
    web = s.web
    rid = s.sealed_id
    inspector = web.login("thanh")
    page = inspector.get(f"/records/{rid}")
    assert 'id="seal-form"' in page.text and 'id="seal-whole-file"' in page.text
    token = csrf_of(page.text)
    # A password-only login may not seal (R-AUTH-1): refused and audited.
    web.enrol("tra")
    browse = web.login("tra", browse_only=True)
    weak = browse.post(f"/records/{rid}/seal", data={
        "csrf_token": web.csrf(browse), "reference": REFERENCE, "date": "2026-03-02",
        "authority": AUTHORITY, "scope": "x"})
    assert weak.status_code == 403
    assert any("password-only" in (d.detail or {}).get("reason", "")
               for d in _denials(s, "user:tra", rid, 0))

    sent = inspector.post(f"/records/{rid}/seal", data={
        "csrf_token": token, "reference": REFERENCE, "date": "2026-03-02",
        "authority": AUTHORITY, "scope": "Kiểm tra hồ sơ", "readers": s.reader.person})
    assert sent.status_code == 302 and "/seals/" in sent.headers["Location"]
    seal_page = inspector.get(sent.headers["Location"])
    assert seal_page.status_code == 200 and REFERENCE in seal_page.text
    assert 'id="unseal-form"' in seal_page.text  # the sealer is the authority
    record_page = inspector.get(f"/records/{rid}").text
    assert 'id="sealed-banner"' in record_page and 'id="unseal-form"' in record_page
    assert 'id="seal-form"' not in record_page  # already sealed
    listing = inspector.get("/seals?status=active")
    assert listing.status_code == 200 and REFERENCE in listing.text
    assert 'href="/seals"' in record_page  # the menu leads inspectors to the seals
    # A clerk outside the decision sees the banner but not the seal's page.
    clerk = web.login("van")
    clerk_page = clerk.get(f"/records/{rid}").text
    assert 'id="sealed-banner"' in clerk_page and 'href="/seals"' not in clerk_page
    assert clerk.get(sent.headers["Location"]).status_code == 403

    # A byte changed in storage while sealed: the unseal report page shows it.
    from tests.test_fixity import _original, _raw_rewrite, _read

    key = f"aip/{rid}/v0001.tar"
    data = bytearray(_read(s.aenv, key))
    path, offset = _original(s.aenv, rid)
    data[offset] ^= 0x01
    _raw_rewrite(s.aenv, key, bytes(data))
    seal_id = sent.headers["Location"].rsplit("/", 1)[1]
    done = inspector.post(f"/seals/{seal_id}/unseal",
                          data={"csrf_token": token, "reference": "09/QĐ-UBKT"})
    assert done.status_code == 302
    report = inspector.get(f"/seals/{seal_id}").text
    assert 'id="lift-differences"' in report and path in report
    assert 'id="lift-failed"' in report
    history = inspector.get(f"/records/{rid}").text
    assert 'id="seal-history"' in history and "outcome-failed" in history


def test_api_seal_input_and_listing(setup):
    s = setup
    web = s.web
    inspector = web.login("thanh")
    token = web.csrf(inspector)
    headers = {"X-CSRFToken": token}

    def post(body):
        return inspector.post(f"{API}/seals", headers=headers, json=body)

    base = {"records": [s.sealed_id], "reference": REFERENCE, "date": "2026-03-02",
            "authority": AUTHORITY, "scope": "x"}
    for change, message in ((dict(date="02/03/2026"), "date"),
                            (dict(records=["nope"]), "not a UUID"),
                            (dict(authority="000.00.09.H41"), "not a registered"),
                            (dict(extra=1), "unknown field"),
                            (dict(readers="880000000001"), "list of strings"),
                            (dict(file_ref="HS-2025-07"), "not both")):
        response = post({**base, **change})
        assert response.status_code == 400, (change, response.data)
        assert message in response.get_json()["detail"], change
    # An API token (even with every scope) cannot seal: 403, audited.
    refused = web.client().post(f"{API}/seals", headers=bearer(s.token), json=base)
    assert refused.status_code == 403
    # The whole file through the API.
    made = post({**{k: v for k, v in base.items() if k != "records"},
                 "file_ref": "HS-2025-07"})
    assert made.status_code == 201
    assert sorted(r["id"] for r in made.get_json()["records"]) == sorted(
        [s.sealed_id, s.other_id])
    listed = inspector.get(f"{API}/seals", query_string={"record": s.other_id}).get_json()
    assert listed["total"] == 1 and listed["seals"][0]["id"] == made.get_json()["id"]
    one = inspector.get(f"{API}/seals/{made.get_json()['id']}").get_json()
    assert one["lift_report"] is None and one["status"] == "active"
    assert inspector.get(f"{API}/seals/00000000-0000-4000-8000-000000000000"
                         ).status_code == 404
    clerk = web.login("van")
    assert clerk.get(f"{API}/seals").get_json()["total"] == 0
    assert clerk.get(f"{API}/seals/{made.get_json()['id']}").status_code == 403


# ---- sealing never blocks work on other records (PostgreSQL row locks) -----------------


@pytest.fixture
def pg_setup(request, tmp_path):
    aenv = make_archive_env("s3-postgresql", tmp_path, request)
    s = Sealing(aenv)
    s.sealed_id, _ = ingest(aenv, "sealed")
    s.other_id, s.other_bytes = ingest(aenv, "other")
    yield s
    s.close()
    aenv.close()


def test_an_open_seal_transaction_does_not_block_other_records(pg_setup):
    """On PostgreSQL the sealing locks only the sealed records' rows (and the audit
    chain's head for an instant at the end). SQLite serialises every write transaction
    by design (BEGIN IMMEDIATE), so this is shown on PostgreSQL only."""
    from archive.keys import load_system_key
    from archive.sealing import seal
    from archive.users import get_user, principal_for

    s = pg_setup
    web = s.web
    inst = web.instance
    with web.db() as db:
        inspector = principal_for(get_user(db, "thanh"), "totp")
    reached, release = threading.Event(), threading.Event()
    outcome: dict = {}

    def slow_timestamp(data: bytes) -> dict:  # the TSA answers late: the seal stays open
        reached.set()
        assert release.wait(60)
        return {"token": b"not a real token", "info": {"tsa": "slow test TSA"}}

    def run():
        try:
            with inst.catalog.unit_of_work() as db:
                outcome["seal"] = seal(db, inst.store, inspector, record_ids=[s.sealed_id],
                                       reference=REFERENCE, decision_date=__import__(
                                           "datetime").date(2026, 3, 2),
                                       authority=AUTHORITY, scope="x", readers=[],
                                       signing_key=load_system_key(inst.settings.keys_dir),
                                       timestamp=slow_timestamp, clock=inst.clock).id
        except Exception as exc:  # reported by the assertion below
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert reached.wait(60), "the seal did not start"
        # Meanwhile: another record is downloaded and a new one ingested, at once.
        token = web.token(ALL_SCOPES)
        client = web.client()
        done = threading.Event()
        results: dict = {}

        def other_work():
            response = client.get(f"{API}/records/{s.other_id}/original",
                                  headers=bearer(token))
            results["status"], results["bytes"] = response.status_code, response.data
            response.close()
            results["ingest"] = s.aenv.invoke("ingest", str(s.aenv.sample("new.pdf")),
                                              "--json")
            done.set()

        threading.Thread(target=other_work, daemon=True).start()
        assert done.wait(30), "work on other records waited for the seal"
        assert results["status"] == 200 and results["bytes"] == s.other_bytes
        assert results["ingest"].exit_code == 0, results["ingest"].output
        assert worker.is_alive()  # the seal transaction was open all along
    finally:
        release.set()
        worker.join(60)
    assert "error" not in outcome, outcome.get("error")
    refused = web.client().get(f"{API}/records/{s.sealed_id}/original",
                               headers=bearer(token))
    assert refused.status_code == 403 and REFERENCE in refused.get_json()["reason"]
