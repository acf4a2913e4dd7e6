"""Revocation of validity (R-REVOKE-1): an approver's decision, recorded, notified,
propagated, never silently undone; the package stays byte for byte and retrievable.

Every test runs on SQLite + local folder and on PostgreSQL + SeaweedFS (``archive_env``),
through the real services, API, pages and CLI.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, date, datetime

import pyotp
import pytest
from sqlalchemy import select

from archive.models import (
    Agent,
    AuditEntry,
    Event,
    Notification,
    PaperOriginal,
    Record,
    Rendition,
    Revocation,
    Seal,
    SealRecord,
)
from tests.accounts import WebArchive, csrf_of
from tests.conftest import ORG, ORG2
from tests.test_api import API, CORPUS, bearer, ingest, problem

DECISION = {"reason": "Ban hành sai thẩm quyền", "form": "Quyết định",
            "legal_basis": "Điều 19 Quy định về giao dịch điện tử",
            "decision_ref": "15-QĐ/TU"}



def _object_sha256(web: WebArchive, key: str) -> str:
    with web.instance.store.open(key) as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def _principal(web: WebArchive, username: str, method: str = "totp"):
    from archive.users import get_user, principal_for

    with web.db() as db:
        return principal_for(get_user(db, username), method)


def _rows(web: WebArchive, model, *where, order=None):
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        stmt = select(model).where(*where)
        if order is not None:
            stmt = stmt.order_by(order)
        rows = list(db.scalars(stmt))
        db.expunge_all()
    return rows


def _audit(web: WebArchive, action: str, target: str) -> list[AuditEntry]:
    return _rows(web, AuditEntry, AuditEntry.action == action, AuditEntry.target == target,
                 order=AuditEntry.seq)


def _post(client, url: str, body: dict):
    """A JSON POST from a logged-in browser (its CSRF token in the header)."""
    page = client.get("/records")
    return client.post(url, json=body, headers={"X-CSRFToken": csrf_of(page.data)})


def seal_record(web: WebArchive, record_id: str, reference: str = "07-QĐ/UBKT") -> str:
    """Seal a record as the sealing service does, in catalog rows (R-SEAL-2)."""
    with web.db() as db:
        org = db.scalar(select(Agent).where(Agent.identifier == ORG))
        seal = Seal(id=str(uuid.uuid4()), reference=reference, decision_date=date(2025, 5, 1),
                    authority_id=org.id, scope="hồ sơ kiểm tra", readers=[],
                    sealed_at=datetime.now(UTC), sealed_by="user:thanhtra",
                    manifest_key=f"seals/{reference}.json", manifest_sha256="0" * 64)
        db.add(seal)
        db.flush()
        db.add(SealRecord(seal_id=seal.id, record_id=record_id))
        return seal.id


def set_status(web: WebArchive, record_id: str, status: str) -> None:
    with web.db() as db:
        db.get(Record, record_id).status = status


# ---- revoking ------------------------------------------------------------------------


def test_an_approver_with_a_one_time_code_revokes(web):
    rid, pdf = ingest(web.aenv, "qd", recipients=[ORG2], **CORPUS["qd"])
    v1 = f"aip/{rid}/v0001.tar"
    before = _object_sha256(web, v1)
    web.add_user("duyet", "approver")
    client = web.session_client("duyet", "totp")

    answer = _post(client, f"{API}/records/{rid}/revocation", DECISION)
    assert answer.status_code == 201, answer.data
    body = answer.get_json()
    decision = body["revocation"]
    assert decision["action"] == "revoke" and decision["decided_by"] == "user:duyet"
    assert (decision["reason"], decision["form"], decision["legal_basis"],
            decision["decision_ref"]) == tuple(DECISION.values())
    # Every party recorded on the document: the issuing and the receiving organisation.
    assert [n["recipient"] for n in body["notifications"]] == [ORG, ORG2]
    assert body["delivery"] is not None and body["delivery"]["attempted"] == 2
    assert [v["version"] for v in body["versions"]] == [2] and body["warnings"] == []

    assert _rows(web, Record, Record.id == rid)[0].status == "revoked"
    [row] = _rows(web, Revocation, Revocation.record_id == rid)
    assert row.id == decision["id"] and row.action == "revoke"
    [event] = _rows(web, Event, Event.record_id == rid, Event.event_type == "revocation")
    assert event.outcome == "success" and event.agent == "user:duyet"
    assert "Ban hành sai thẩm quyền" in event.detail and event.data["renditions"] == []
    [entry] = _audit(web, "record.revoke", f"record:{rid}")
    assert entry.outcome == "ok" and entry.actor == "user:duyet"
    assert entry.detail["decision"] == row.id and entry.detail["notified"] == [ORG, ORG2]

    notes = _rows(web, Notification, Notification.related == f"record:{rid}",
                  order=Notification.recipient)
    assert [(n.recipient, n.kind) for n in notes] == [(ORG, "record.revoked"),
                                                       (ORG2, "record.revoked")]
    for note in notes:
        assert "12-QĐ/TU" in note.subject and "14/03/2025" in note.subject
        assert "revoked" in note.subject and "Hủy hiệu lực" in note.subject
        for text in ("Văn phòng Tỉnh ủy", DECISION["reason"], DECISION["legal_basis"],
                     DECISION["decision_ref"], CORPUS["qd"]["summary"]):
            assert text in note.body

    # R-REVOKE-1: the package stays byte for byte (the old version is never rewritten).
    assert _object_sha256(web, v1) == before
    # ... and stays retrievable for authorised inspection, marked revoked.
    download = client.get(f"{API}/records/{rid}/original")
    assert download.status_code == 200 and download.data == pdf
    assert download.headers["Archive-Record-Status"] == "revoked"
    web.add_user("thanhtra", "inspector")
    inspector = web.session_client("thanhtra", "totp")
    aip = inspector.get(f"{API}/records/{rid}/aip?version=1")
    assert aip.status_code == 200 and hashlib.sha256(aip.data).hexdigest() == before
    original = inspector.get(f"{API}/records/{rid}/original")
    assert original.data == pdf and original.headers["Archive-Record-Status"] == "revoked"

    # Marked invalid everywhere: API, search filter, badges, the record page's banner.
    shown = client.get(f"{API}/records/{rid}").get_json()
    assert shown["status"] == "revoked"
    found = client.get(f"{API}/records?status=revoked").get_json()
    assert [r["id"] for r in found["records"]] == [rid]
    assert client.get(f"{API}/records?status=active").get_json()["total"] == 0
    page = client.get("/records?status=revoked").data.decode()
    assert "badge-revoked" in page and rid in page
    record_page = client.get(f"/records/{rid}").data.decode()
    assert 'id="revoked-banner"' in record_page and "Hết hiệu lực" in record_page
    assert "badge-revoked" in record_page and DECISION["legal_basis"] in record_page
    listed = client.get(f"{API}/records/{rid}/revocations").get_json()
    assert listed["status"] == "revoked" and [d["id"] for d in listed["revocations"]] == [row.id]


def test_renditions_become_invalid_at_the_same_instant(web):
    """R-REVOKE-1, R-CONV-2: a rendition's verification reads the record's status."""
    from archive.renditions import verification
    from archive.revocation import revoke

    rid, _ = ingest(web.aenv, "qd", **CORPUS["qd"])
    rendition = str(uuid.uuid4())
    with web.db() as db:
        db.add(Rendition(id=rendition, record_id=rid, created_at=datetime.now(UTC),
                         created_by="user:vanthu", converter="Văn thư", sha256="0" * 64,
                         size=1, page_count=1, verify_url=f"http://x/verify/{rendition}"))
    with web.db() as db:
        assert verification(db, rendition)["status"] == "valid"
    web.add_user("duyet", "approver")
    approver = _principal(web, "duyet")
    with web.db() as db:
        decided = revoke(db, approver, rid, **DECISION).revocation.decided_at
    with web.db() as db:
        checked = verification(db, rendition)
    assert checked["status"] == "revoked"
    assert datetime.fromisoformat(checked["revoked_at"]) == decided
    [event] = _rows(web, Event, Event.record_id == rid, Event.event_type == "revocation")
    assert event.data["renditions"] == [rendition]


def test_a_classified_record_notification_has_no_number_or_summary(web):
    # R-CLASS-1: every person of a party's organisation reads its notifications, cleared
    # or not: a classified record is named by its archive id, never by number or summary.
    rid, _ = ingest(web.aenv, "bc", text="NOI DUNG MAT", recipients=[ORG2], **CORPUS["bc"])
    web.add_user("duyet", "approver", "mat")
    client = web.session_client("duyet", "totp")
    assert _post(client, f"{API}/records/{rid}/revocation", DECISION).status_code == 201
    notes = _rows(web, Notification, Notification.related == f"record:{rid}")
    assert sorted(n.recipient for n in notes) == [ORG, ORG2]
    for note in notes:
        assert rid in note.subject and "Classified record" in note.subject
        assert DECISION["reason"] in note.body
        assert f"classified record, archive record id {rid}" in note.body
        assert CORPUS["bc"]["number_symbol"] not in note.body + note.subject
        assert CORPUS["bc"]["summary"] not in note.body + note.subject
        assert "Trích yếu" not in note.body


@pytest.mark.parametrize("who", ["clerk", "password-only approver", "API token"])
def test_only_an_approver_with_a_strong_login_revokes(web, who):
    rid, _ = ingest(web.aenv, "qd", **CORPUS["qd"])
    if who == "API token":
        secret = web.token(["records:read", "records:download", "records:ingest",
                            "agents:read", "audit:read"])
        answer = web.client().post(f"{API}/records/{rid}/revocation", json=DECISION,
                                   headers=bearer(secret))
        reason = "no scope"
    elif who == "clerk":
        web.add_user("vanthu", "clerk")
        answer = _post(web.session_client("vanthu", "totp"),
                       f"{API}/records/{rid}/revocation", DECISION)
        reason = "role clerk"
    else:
        web.add_user("duyet", "approver")
        answer = _post(web.session_client("duyet", "password"),
                       f"{API}/records/{rid}/revocation", DECISION)
        reason = "password-only"
    assert reason in problem(answer, 403)["detail"]
    assert _rows(web, Record, Record.id == rid)[0].status == "active"
    assert _rows(web, Revocation, Revocation.record_id == rid) == []
    assert _rows(web, Notification, Notification.related == f"record:{rid}") == []
    [denied] = _audit(web, "record.revoke", f"record:{rid}")
    assert denied.outcome == "denied" and reason in denied.detail["reason"]


@pytest.mark.parametrize("state", ["revoked", "sealed", "destroyed"])
def test_a_revoked_sealed_or_destroyed_record_is_not_revoked(web, state):
    from archive.errors import AccessDenied
    from archive.revocation import revoke

    rid, _ = ingest(web.aenv, "qd", **CORPUS["qd"])
    web.add_user("duyet", "approver")
    approver = _principal(web, "duyet")
    if state == "revoked":
        with web.db() as db:
            revoke(db, approver, rid, **DECISION)
    elif state == "sealed":
        seal_record(web, rid)
    else:
        set_status(web, rid, "destroyed")
    expected = {"revoked": "already revoked", "sealed": "sealed under decision 07-QĐ/UBKT",
                "destroyed": "destroyed"}[state]
    with pytest.raises(AccessDenied, match=expected), web.db() as db:
        revoke(db, approver, rid, **DECISION)
    # Over HTTP too, as a problem naming the reason.
    answer = _post(web.session_client("duyet", "totp"), f"{API}/records/{rid}/revocation",
                   DECISION)
    assert expected in problem(answer, 403)["detail"]
    assert len(_rows(web, Revocation, Revocation.record_id == rid)) == \
        (1 if state == "revoked" else 0)
    denials = [e for e in _audit(web, "record.revoke", f"record:{rid}")
               if e.outcome == "denied"]
    assert len(denials) == 2 and all(expected in e.detail["reason"] for e in denials)


def test_bad_input_names_every_missing_field(web):
    rid, _ = ingest(web.aenv, "qd", **CORPUS["qd"])
    web.add_user("duyet", "approver")
    client = web.session_client("duyet", "totp")
    detail = problem(_post(client, f"{API}/records/{rid}/revocation",
                           {"reason": " ", "form": "x" * 201}), 400)["detail"]
    assert "reason: required" in detail and "form: at most 200" in detail
    assert "legal_basis: required" in detail
    assert "unknown field" in problem(_post(client, f"{API}/records/{rid}/revocation",
                                            {**DECISION, "status": "x"}), 400)["detail"]
    unknown = str(uuid.uuid4())
    assert problem(_post(client, f"{API}/records/{unknown}/revocation", DECISION),
                   404)["title"] == "NotFound"
    assert problem(client.get(f"{API}/records/{unknown}/revocations"), 404)
    assert [e.outcome for e in _audit(web, "record.revoke", f"record:{unknown}")] == \
        ["not_found"]
    assert [e.outcome for e in _audit(web, "record.revocations", f"record:{unknown}")] == \
        ["not_found"]
    assert _rows(web, Record, Record.id == rid)[0].status == "active"


# ---- reinstating -----------------------------------------------------------------------


def test_a_mistaken_revocation_is_corrected_by_a_new_decision(web):
    rid, _ = ingest(web.aenv, "qd", recipients=[ORG2], **CORPUS["qd"])
    web.add_user("duyet", "approver")
    client = web.session_client("duyet", "totp")
    correction = {**DECISION, "reason": "Thu hồi nhầm văn bản", "decision_ref": "16-QĐ/TU"}
    # Only a revoked record is reinstated.
    assert "not revoked" in problem(_post(client, f"{API}/records/{rid}/reinstatement",
                                          correction), 403)["detail"]
    first = _post(client, f"{API}/records/{rid}/revocation", DECISION).get_json()
    second = _post(client, f"{API}/records/{rid}/reinstatement", correction)
    assert second.status_code == 201, second.data
    reinstated = second.get_json()["revocation"]
    assert reinstated["action"] == "reinstate"
    assert reinstated["corrects_id"] == first["revocation"]["id"]

    rows = _rows(web, Revocation, Revocation.record_id == rid, order=Revocation.decided_at)
    # The revocation is never deleted or edited: both decisions stay on record.
    assert [(r.action, r.reason) for r in rows] == [("revoke", DECISION["reason"]),
                                                     ("reinstate", "Thu hồi nhầm văn bản")]
    assert _rows(web, Record, Record.id == rid)[0].status == "active"
    assert [e.event_type for e in _rows(web, Event, Event.record_id == rid,
                                        Event.event_type.in_(["revocation",
                                                              "reinstatement"]),
                                        order=Event.occurred_at)] == \
        ["revocation", "reinstatement"]
    kinds = sorted((n.kind, n.recipient) for n in _rows(
        web, Notification, Notification.related == f"record:{rid}"))
    assert kinds == [("record.reinstated", ORG), ("record.reinstated", ORG2),
                     ("record.revoked", ORG), ("record.revoked", ORG2)]
    [entry] = _audit(web, "record.reinstate", f"record:{rid}")[-1:]
    assert entry.outcome == "ok" and entry.detail["corrects"] == first["revocation"]["id"]
    denied = _audit(web, "record.reinstate", f"record:{rid}")[0]
    assert denied.outcome == "denied"
    listed = client.get(f"{API}/records/{rid}/revocations").get_json()["revocations"]
    assert [d["action"] for d in listed] == ["revoke", "reinstate"]
    # A clerk may read the decisions (VIEW) but not take one.
    web.add_user("vanthu", "clerk")
    clerk = web.session_client("vanthu", "totp")
    assert clerk.get(f"{API}/records/{rid}/revocations").status_code == 200
    assert problem(_post(clerk, f"{API}/records/{rid}/revocation", DECISION), 403)


# ---- paper originals -------------------------------------------------------------------


def _digitised(web: WebArchive, names: list[str], reference: str) -> list[str]:
    ids = [ingest(web.aenv, name, **{**CORPUS["qd"], "number_symbol": f"{n}-QĐ/TU"})[0]
           for n, name in enumerate(names, start=20)]
    with web.db() as db:
        paper = PaperOriginal(id=str(uuid.uuid4()), reference=reference,
                              description="bản giấy", holder="Văn thư Tỉnh ủy",
                              created_at=datetime.now(UTC), created_by="user:vanthu")
        db.add(paper)
        db.flush()
        for rid in ids:
            record = db.get(Record, rid)
            record.origin, record.paper_original_id = "digitised", paper.id
    return ids


def test_revoking_a_paper_original_revokes_its_digitised_copies(web):
    from archive.revocation import revoke_paper_original

    copies = _digitised(web, ["scan-a", "scan-b"], "SO-DEN-2025/117")
    other = ingest(web.aenv, "qd", **CORPUS["qd"])[0]
    web.add_user("duyet", "approver")
    approver = _principal(web, "duyet")
    with web.db() as db:
        outcome = revoke_paper_original(db, approver, "SO-DEN-2025/117", **DECISION)
        first, second = outcome.revocations
    assert [r.record_id for r in (first, second)] == copies
    assert first.cause_id is None and second.cause_id == first.id
    assert first.decided_at == second.decided_at  # the same instant
    assert _rows(web, PaperOriginal)[0].status == "revoked"
    assert {r.id: r.status for r in _rows(web, Record)} == \
        {copies[0]: "revoked", copies[1]: "revoked", other: "active"}
    events = _rows(web, Event, Event.event_type == "revocation")
    assert sorted(e.record_id for e in events) == sorted(copies)
    assert all(e.data["paper_original"] == "SO-DEN-2025/117" for e in events)
    [entry] = _audit(web, "paper.revoke", "paper:SO-DEN-2025/117")
    assert entry.outcome == "ok" and entry.detail["records"] == copies


def test_revoking_a_digitised_copy_leaves_the_paper_original_valid(web):
    from archive.revocation import revoke

    [copy] = _digitised(web, ["scan-c"], "SO-DEN-2025/118")
    web.add_user("duyet", "approver")
    approver = _principal(web, "duyet")
    with web.db() as db:
        revoke(db, approver, copy, **DECISION)
    assert _rows(web, PaperOriginal)[0].status == "active"
    assert _rows(web, Record, Record.id == copy)[0].status == "revoked"


def test_a_paper_original_revocation_is_refused_as_a_whole(web):
    """One copy the approver may not revoke (sealed) refuses the whole decision."""
    from archive.errors import AccessDenied, NotFound
    from archive.revocation import revoke_paper_original

    copies = _digitised(web, ["scan-d", "scan-e"], "SO-DEN-2025/119")
    seal_record(web, copies[1])
    web.add_user("duyet", "approver")
    approver = _principal(web, "duyet")
    with pytest.raises(AccessDenied, match="sealed"), web.db() as db:
        revoke_paper_original(db, approver, "SO-DEN-2025/119", **DECISION)
    assert _rows(web, PaperOriginal)[0].status == "active"
    assert {r.status for r in _rows(web, Record)} == {"active"}
    with pytest.raises(NotFound), web.db() as db:
        revoke_paper_original(db, approver, "NO-SUCH", **DECISION)
    assert _audit(web, "paper.revoke", "paper:NO-SUCH")[0].outcome == "not_found"


# ---- the CLI ---------------------------------------------------------------------------


def _code(account) -> str:
    """The account's one-time code now (the CLI checks it against the real time)."""
    return pyotp.TOTP(account.secret).now()


def test_cli_revoke_reinstate_and_exit_codes(web):
    rid, _ = ingest(web.aenv, "qd", recipients=[ORG2], **CORPUS["qd"])
    args = ["--reason", DECISION["reason"], "--form", DECISION["form"],
            "--basis", DECISION["legal_basis"]]
    accounts = [web.add_user(f"duyet{n}", "approver") for n in range(4)]

    done = web.aenv.json("revoke", rid, *args, "--decision", "15-QĐ/TU",
                         "--as", "duyet0", "--code", _code(accounts[0]))
    assert done["revocations"][0]["action"] == "revoke"
    assert [n["recipient"] for n in done["notifications"]] == [ORG, ORG2]
    assert [v["version"] for v in done["versions"]] == [2]
    assert _rows(web, Record, Record.id == rid)[0].status == "revoked"

    again = web.aenv.invoke("revoke", rid, *args, "--as", "duyet1", "--code",
                            _code(accounts[1]))
    assert again.exit_code == 3 and "already revoked" in again.stderr
    web.add_user("vanthu", "clerk")
    clerk = web.aenv.invoke("reinstate", rid, *args, "--as", "vanthu", "--code",
                            _code(web.accounts["vanthu"]))
    assert clerk.exit_code == 3 and "role clerk" in clerk.stderr
    wrong_code = web.aenv.invoke("reinstate", rid, *args, "--as", "duyet2", "--code", "000000")
    assert wrong_code.exit_code == 3
    blank = web.aenv.invoke("reinstate", rid, "--reason", " ", "--form", "QĐ", "--basis", "x",
                            "--as", "duyet2", "--code", _code(accounts[2]))
    assert blank.exit_code == 2 and "reason: required" in blank.stderr
    missing = web.aenv.invoke("revoke", rid, "--form", "QĐ", "--as", "duyet3")
    assert missing.exit_code == 2  # usage: --reason and --basis are required
    assert _rows(web, Record, Record.id == rid)[0].status == "revoked"

    back = web.aenv.json("reinstate", rid, *args, "--as", "duyet3", "--code",
                         _code(accounts[3]))
    assert back["revocations"][0]["corrects_id"] == done["revocations"][0]["id"]
    assert _rows(web, Record, Record.id == rid)[0].status == "active"
    outcomes = [(e.actor, e.outcome) for e in _audit(web, "record.revoke", f"record:{rid}")]
    assert outcomes == [("user:duyet0", "ok"), ("user:duyet1", "denied")]
    assert [(e.actor, e.outcome) for e in _audit(web, "record.reinstate", f"record:{rid}")] \
        == [("user:vanthu", "denied"), ("user:duyet3", "ok")]


def test_cli_paper_revoke(web):
    copies = _digitised(web, ["scan-f"], "SO-DEN-2025/120")
    account = web.add_user("duyet", "approver")
    result = web.aenv.invoke("paper", "revoke", "SO-DEN-2025/120", "--reason", "r",
                             "--form", "Quyết định", "--basis", "Điều 19", "--as", "duyet",
                             "--code", _code(account), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [r["record_id"] for r in data["revocations"]] == copies
    assert _rows(web, PaperOriginal)[0].status == "revoked"
    other = web.add_user("duyet2", "approver")  # a code is accepted once
    missing = web.aenv.invoke("paper", "revoke", "NOPE", "--reason", "r", "--form", "f",
                              "--basis", "b", "--as", "duyet2", "--code", _code(other))
    assert missing.exit_code == 2


# ---- the web form ------------------------------------------------------------------------


def test_the_record_page_form_confirms_before_revoking(web):
    rid, _ = ingest(web.aenv, "qd", **CORPUS["qd"])
    web.add_user("duyet", "approver")
    client = web.session_client("duyet", "totp")
    page = client.get(f"/records/{rid}").data.decode()
    assert 'id="revoke-form"' in page and 'id="revoked-banner"' not in page
    token = csrf_of(page)
    review = client.post(f"/records/{rid}/revoke", data={**DECISION, "csrf_token": token})
    assert review.status_code == 200 and b'id="confirm-form"' in review.data
    assert _rows(web, Record, Record.id == rid)[0].status == "active"  # not yet
    done = client.post(f"/records/{rid}/revoke", data={**DECISION, "csrf_token": token,
                                                       "confirmed": "1"})
    assert done.status_code == 302 and done.headers["Location"].endswith(
        f"/records/{rid}#revocation")
    assert _rows(web, Record, Record.id == rid)[0].status == "revoked"
    page = client.get(f"/records/{rid}").data.decode()
    assert 'id="revoked-banner"' in page and 'id="reinstate-form"' in page
    assert 'id="revoke-form"' not in page
    # A clerk sees the banner and the decision, and no form.
    web.add_user("vanthu", "clerk")
    clerk = web.session_client("vanthu", "totp")
    clerk_page = clerk.get(f"/records/{rid}").data.decode()
    assert 'id="revoked-banner"' in clerk_page and "<form" not in clerk_page.split(
        'id="revocation"')[1].split("</section>")[0]
    refused = clerk.post(
        f"/records/{rid}/reinstate", data={**DECISION, "csrf_token": csrf_of(clerk_page),
                                           "confirmed": "1"})
    assert refused.status_code == 403
