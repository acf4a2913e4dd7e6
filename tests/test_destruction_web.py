"""Destruction in the web UI and the API (R-DESTROY-1, R-DESTROY-2), browserless, on
both configurations (local folder + SQLite, SeaweedFS + PostgreSQL).

An archivist proposes, an approver (another person) approves, an archivist executes,
each through the CSRF-protected forms; a clerk is refused (403) at every step, the
proposer's second account may not approve (the refusal is shown), the register page
finds the entry and exports it as CSV and JSON; the read-only API answers the
documented shapes; an uncleared reader never sees a classified record's number or
summary; a destroyed record's page says destroyed and offers no download; the public
verification page of its rendition says destroyed.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import jsonschema_rs
import pytest

from access.openapi import document
from tests.accounts import WebArchive
from tests.test_api import ingest

API = "/api/v1"


def _six_years_ago() -> str:
    today = datetime.now(UTC).date()
    return today.replace(year=today.year - 6, day=min(today.day, 28)).isoformat()


def expired(web: WebArchive, name: str, **meta) -> str:
    """A record whose 5-year retention ended a year ago."""
    meta.setdefault("number_symbol", f"{name}/TU")
    return ingest(web.aenv, name, retention_rule="5y", date=_six_years_ago(), **meta)[0]


def post(web: WebArchive, client, path: str, data: dict | None = None):
    return client.post(path, data={"csrf_token": web.csrf(client), **(data or {})})


def record_status(web: WebArchive, rid: str) -> str:
    from archive.models import Record

    with web.db() as db:
        return db.get(Record, rid).status


def propose_list(web: WebArchive, archivist) -> str:
    answer = post(web, archivist, "/destruction/propose", {"reason": "Rà soát hằng năm"})
    assert answer.status_code == 302, answer.get_data(as_text=True)
    return answer.headers["Location"].rsplit("/", 1)[1]


APPROVAL = {"approving_body": "Ban Thường vụ Tỉnh ủy", "decision_number": "45-QĐ/TU",
            "decision_date": "2026-11-20", "legal_basis": "Luật Lưu trữ 2024, Điều 19",
            "irreversible": "1"}


def validate(payload, schema_name: str) -> None:
    """The payload conforms to the OpenAPI document's component schema."""
    doc = document()
    schema = {"$ref": f"#/components/schemas/{schema_name}",
              "components": doc["components"]}
    jsonschema_rs.validator_for(schema).validate(payload)


@pytest.fixture
def people(web):
    web.add_user("luutru", "archivist", "mat")
    web.add_user("pheduyet", "approver", "mat")
    web.add_user("vanthu", "clerk")
    return web


def promote_to_approver(web: WebArchive, username: str):
    """The person's role changes to approver (one login per person, R-ID-1): she may now
    approve destruction lists, but never one she proposed. A fresh login has the role."""
    from archive.models import User

    with web.db() as db:
        db.query(User).filter(User.username == username).one().role = "approver"
    return web.login(username)


def test_propose_approve_execute_through_the_forms(people):
    web = people
    gone = expired(web, "huy-a", summary="Công văn về việc tổ chức hội nghị sơ kết")
    kept = expired(web, "giu-b")
    permanent = ingest(web.aenv, "vinh-vien", number_symbol="vv/TU", retention_rule="vv")[0]
    archivist, approver, clerk = (web.login(n) for n in ("luutru", "pheduyet", "vanthu"))

    page = archivist.get("/destruction").get_data(as_text=True)
    assert 'id="propose-form"' in page and 'href="/destruction"' in page  # menu entry
    assert clerk.get("/destruction").status_code == 403
    assert 'href="/destruction"' not in clerk.get("/records").get_data(as_text=True)
    assert post(web, clerk, "/destruction/propose").status_code == 403

    list_id = propose_list(web, archivist)
    page = archivist.get(f"/destruction/{list_id}").get_data(as_text=True)
    assert "huy-a/TU" in page and "giu-b/TU" in page and "vv/TU" not in page
    assert 'class="inline remove-form"' in page and 'id="execute-form"' not in page

    # Review: keep one record (with a note); a clerk may not.
    assert post(web, clerk, f"/destruction/{list_id}/remove",
                {"record_id": kept, "note": "x"}).status_code == 403
    removed = post(web, archivist, f"/destruction/{list_id}/remove",
                   {"record_id": kept, "note": "Còn giá trị tham khảo"})
    assert removed.status_code == 302

    # Approval: never by a clerk, never by the proposer (now an approver), never
    # without acknowledging that it is irreversible.
    assert post(web, clerk, f"/destruction/{list_id}/approve", APPROVAL).status_code == 403
    web.add_user("thukho", "archivist", "mat")
    own = promote_to_approver(web, "luutru")
    archivist = web.login("thukho")
    page = own.get(f"/destruction/{list_id}").get_data(as_text=True)
    assert 'id="approve-blocked"' in page
    refused = post(web, own, f"/destruction/{list_id}/approve", APPROVAL)
    assert refused.status_code == 403
    assert "proposer" in refused.get_data(as_text=True)
    page = approver.get(f"/destruction/{list_id}").get_data(as_text=True)
    assert 'id="approve-warning"' in page and 'id="approve-blocked"' not in page
    unticked = dict(APPROVAL, irreversible="")
    assert post(web, approver, f"/destruction/{list_id}/approve", unticked).status_code == 400
    assert post(web, approver, f"/destruction/{list_id}/approve", APPROVAL).status_code == 302
    page = archivist.get(f"/destruction/{list_id}").get_data(as_text=True)
    assert "45-QĐ/TU" in page and 'id="execute-form"' in page
    assert record_status(web, gone) == "active"  # approval destroys nothing

    # Execution: never by a clerk or an approver, never unconfirmed.
    assert post(web, clerk, f"/destruction/{list_id}/execute",
                {"confirm": "1"}).status_code == 403
    assert post(web, approver, f"/destruction/{list_id}/execute",
                {"confirm": "1"}).status_code == 403
    assert post(web, archivist, f"/destruction/{list_id}/execute").status_code == 400
    assert record_status(web, gone) == "active"
    done = post(web, archivist, f"/destruction/{list_id}/execute", {"confirm": "1"})
    assert done.status_code == 302
    assert record_status(web, gone) == "destroyed"
    assert record_status(web, kept) == "active" and record_status(web, permanent) == "active"
    assert not list(web.instance.store.list(f"aip/{gone}/"))
    assert list(web.instance.store.list(f"aip/{kept}/"))

    # The destroyed record's page says so and offers no download.
    page = archivist.get(f"/records/{gone}").get_data(as_text=True)
    assert 'id="destroyed-banner"' in page and "45-QĐ/TU" in page
    assert 'id="download"' not in page and 'id="download-denied"' in page
    assert archivist.get(f"/records/{gone}/download").status_code == 403

    # The register: found by number, by summary text and by date; exported.
    today = datetime.now(UTC).date().isoformat()
    for query in ({"q": "huy-a"}, {"q": "hội nghị sơ kết"}, {"from": today, "to": today}):
        page = approver.get("/destruction/register", query_string=query)
        assert page.status_code == 200
        assert "huy-a/TU" in page.get_data(as_text=True), query
    assert "huy-a/TU" not in approver.get("/destruction/register",
                                          query_string={"q": "không có"}).get_data(as_text=True)
    assert approver.get("/destruction/register",
                        query_string={"from": "not-a-date"}).status_code == 400
    exported = approver.get("/destruction/register/export", query_string={"format": "csv"})
    assert exported.status_code == 200 and exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    assert [(r["record_id"], r["number_symbol"], r["decision_number"]) for r in rows] == \
        [(gone, "huy-a/TU", "45-QĐ/TU")]
    exported = approver.get("/destruction/register/export", query_string={"format": "json"})
    entries = json.loads(exported.get_data())
    assert entries[0]["record_id"] == gone
    assert entries[0]["tombstone"]["packages"][0]["digests"]["sha256"]
    assert clerk.get("/destruction/register").status_code == 403
    assert clerk.get("/destruction/register/export").status_code == 403


def test_api_answers_the_documented_shapes_and_refuses_tokens(people):
    web = people
    gone = expired(web, "api-a")
    held = expired(web, "api-held")
    archivist, approver = web.login("luutru"), web.login("pheduyet")
    held_answer = post(web, archivist, f"/records/{held}/holds",
                       {"kind": "legal", "reason": "Đang thanh tra", "reference": "7/TTr"})
    assert held_answer.status_code == 302
    list_id = propose_list(web, archivist)
    post(web, approver, f"/destruction/{list_id}/approve", APPROVAL)
    post(web, archivist, f"/destruction/{list_id}/execute", {"confirm": "1"})

    lists = archivist.get(f"{API}/destruction/lists").get_json()
    validate(lists, "DestructionListPage")
    assert [dl["id"] for dl in lists["lists"]] == [list_id]
    assert lists["lists"][0]["status"] == "executed"
    one = archivist.get(f"{API}/destruction/lists/{list_id}").get_json()
    validate(one, "DestructionList")
    assert [(i["record_id"], i["status"]) for i in one["items"]] == [(gone, "destroyed")]
    register = approver.get(f"{API}/destruction/register",
                            query_string={"q": "api-a", "limit": 10}).get_json()
    validate(register, "DestructionRegisterPage")
    assert register["total"] == 1 and register["entries"][0]["record_id"] == gone
    assert register["entries"][0]["decision_number"] == "45-QĐ/TU"
    exported = approver.get(f"{API}/destruction/register/export",
                            query_string={"format": "json"})
    assert exported.status_code == 200 and exported.mimetype == "application/json"
    retention = archivist.get(f"{API}/records/{held}/retention").get_json()
    validate(retention, "RecordRetention")
    assert retention["on_hold"] and retention["holds"][0]["reference"] == "7/TTr"
    assert retention["expired"] and not retention["permanent"]
    destroyed = archivist.get(f"{API}/records/{gone}/retention").get_json()
    validate(destroyed, "RecordRetention")
    assert destroyed["status"] == "destroyed"
    assert destroyed["destroyed"]["decision_number"] == "45-QĐ/TU"

    assert archivist.get(f"{API}/destruction/lists/not-a-uuid").status_code == 400
    assert archivist.get(f"{API}/destruction/lists/00000000-0000-4000-8000-000000000000"
                         ).status_code == 404
    assert approver.get(f"{API}/destruction/register/export",
                        query_string={"format": "xml"}).status_code == 400
    # API tokens have no scope for the destruction lists and the register.
    token = web.token(["records:read", "records:download", "audit:read"], clearance="mat")
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/destruction/lists", f"/destruction/lists/{list_id}",
                 "/destruction/register", "/destruction/register/export"):
        assert web.client().get(f"{API}{path}", headers=headers).status_code == 403, path
    assert web.client().get(f"{API}/destruction/lists").status_code == 401
    # Decisions are web forms only: no API route takes them.
    assert archivist.post(f"{API}/destruction/lists",
                          headers={"X-CSRFToken": web.csrf(archivist)}).status_code == 405


def test_uncleared_readers_see_no_classified_number_or_summary(people):
    web = people
    secret = expired(web, "mat-a", number_symbol="77-BC/TU", classification="mat",
                     summary="Báo cáo tuyệt mật về công tác bảo vệ chính trị nội bộ")
    web.add_user("kiemtoan", "auditor", "normal", fonds=("*",))
    archivist, approver = web.login("luutru"), web.login("pheduyet")
    list_id = propose_list(web, archivist)
    assert "77-BC/TU" in archivist.get(f"/destruction/{list_id}").get_data(as_text=True)
    auditor = web.login("kiemtoan")

    def assert_hidden(text: str) -> None:
        assert "77-BC/TU" not in text and "tuyệt mật" not in text

    page = auditor.get(f"/destruction/{list_id}").get_data(as_text=True)
    assert_hidden(page)
    assert f'id="item-{secret}"' in page  # listed, shown as "a record you may not see"
    detail = auditor.get(f"{API}/destruction/lists/{list_id}").get_json()
    assert detail["items"][0]["hidden"] is True
    assert_hidden(json.dumps(detail, ensure_ascii=False))

    post(web, approver, f"/destruction/{list_id}/approve", APPROVAL)
    post(web, archivist, f"/destruction/{list_id}/execute", {"confirm": "1"})
    assert record_status(web, secret) == "destroyed"
    for path in ("/destruction", f"/destruction/{list_id}", "/destruction/register",
                 f"{API}/destruction/register", f"{API}/destruction/lists/{list_id}",
                 "/destruction/register/export?format=csv",
                 "/destruction/register/export?format=json"):
        answer = auditor.get(path)
        assert answer.status_code == 200, path
        assert_hidden(answer.get_data(as_text=True))
    entries = auditor.get(f"{API}/destruction/register").get_json()["entries"]
    assert entries[0]["hidden"] is True and entries[0]["record_id"] == secret
    # The cleared approver sees the number (never the classified summary: not kept).
    page = approver.get("/destruction/register").get_data(as_text=True)
    assert "77-BC/TU" in page and "tuyệt mật" not in page


def test_extension_and_holds_on_the_record_page_keep_records_off_lists(people):
    web = people
    extended = expired(web, "gia-han")
    held = expired(web, "tam-giu")
    archivist, clerk = web.login("luutru"), web.login("vanthu")
    page = archivist.get(f"/records/{extended}").get_data(as_text=True)
    assert 'id="extend-form"' in page and 'id="hold-form"' in page
    assert 'id="retention-ended"' in page
    page = clerk.get(f"/records/{extended}").get_data(as_text=True)
    assert 'id="retention"' in page and 'id="extend-form"' not in page
    assert post(web, clerk, f"/records/{extended}/retention",
                {"until": "2099-01-01", "reason": "x", "decision_ref": "1"}
                ).status_code == 403
    assert post(web, clerk, f"/records/{held}/holds",
                {"kind": "legal", "reason": "x"}).status_code == 403

    assert post(web, archivist, f"/records/{extended}/retention",
                {"until": "2040-12-31", "reason": "Còn giá trị", "decision_ref": "9-QĐ/TU"}
                ).status_code == 302
    shortened = post(web, archivist, f"/records/{extended}/retention",
                     {"until": "2030-01-01", "reason": "x", "decision_ref": "10"})
    assert shortened.status_code == 422  # retention is never shortened
    assert post(web, archivist, f"/records/{held}/holds",
                {"kind": "revocation-inquiry", "reason": "Đang xem xét hiệu lực"}
                ).status_code == 302
    page = archivist.get(f"/records/{extended}").get_data(as_text=True)
    assert "9-QĐ/TU" in page and "31/12/2040" in page
    assert 'id="on-hold"' in archivist.get(f"/records/{held}").get_data(as_text=True)

    nothing = post(web, archivist, "/destruction/propose")
    assert nothing.status_code == 200
    assert 'id="destruction-message"' in nothing.get_data(as_text=True)

    hold_id = archivist.get(f"{API}/records/{held}/retention").get_json()["holds"][0]["id"]
    assert post(web, clerk, f"/holds/{hold_id}/release", {"reason": "x"}).status_code == 403
    assert post(web, archivist, f"/holds/{hold_id}/release",
                {"reason": "Đã kết luận"}).status_code == 302
    list_id = propose_list(web, archivist)
    items = archivist.get(f"{API}/destruction/lists/{list_id}").get_json()["items"]
    assert [i["record_id"] for i in items] == [held]


def test_verification_page_of_a_destroyed_records_rendition_says_destroyed(people):
    web = people
    rid = expired(web, "ban-in")
    archivist, approver = web.login("luutru"), web.login("pheduyet")
    made = archivist.post(f"{API}/records/{rid}/renditions",
                          headers={"X-CSRFToken": web.csrf(archivist),
                                   "Accept": "application/json"})
    assert made.status_code == 201, made.get_data(as_text=True)
    rendition = made.get_json()["id"]
    visitor = web.client()
    assert 'data-status="valid"' in visitor.get(f"/verify/{rendition}").get_data(as_text=True)

    list_id = propose_list(web, archivist)
    post(web, approver, f"/destruction/{list_id}/approve", APPROVAL)
    post(web, archivist, f"/destruction/{list_id}/execute", {"confirm": "1"})
    page = visitor.get(f"/verify/{rendition}").get_data(as_text=True)
    assert 'data-status="destroyed"' in page and 'id="verify-destroyed"' in page
    assert not list(web.instance.store.list(f"renditions/{rid}/"))


def test_search_by_a_hidden_number_finds_nothing_for_an_uncleared_reader(people):
    web = people
    expired(web, "mat-b", number_symbol="78-BC/TU", classification="mat")
    web.add_user("kiemtoan", "auditor", "normal", fonds=("*",))
    archivist, approver = web.login("luutru"), web.login("pheduyet")
    list_id = propose_list(web, archivist)
    post(web, approver, f"/destruction/{list_id}/approve", APPROVAL)
    post(web, archivist, f"/destruction/{list_id}/execute", {"confirm": "1"})
    auditor = web.login("kiemtoan")
    assert auditor.get(f"{API}/destruction/register").get_json()["total"] == 1
    assert auditor.get(f"{API}/destruction/register",
                       query_string={"q": "78-BC"}).get_json()["total"] == 0
    page = auditor.get("/destruction/register", query_string={"q": "78-BC"})
    assert page.status_code == 200 and "78-BC/TU" not in page.get_data(as_text=True)
    exported = auditor.get("/destruction/register/export", query_string={"format": "csv"})
    assert "78-BC" not in exported.get_data(as_text=True)
    # the cleared approver finds it by its number
    assert approver.get(f"{API}/destruction/register",
                        query_string={"q": "78-BC"}).get_json()["total"] == 1
