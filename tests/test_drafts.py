"""Drafts: only drafts change, and every change records who, when, what and why
(R-AMEND-1, R-HIST-1). Driven through the API, the pages and the CLI with real logins."""

from __future__ import annotations

import io
import json

import pyotp

from ingest.demo import make_pdf
from tests.accounts import csrf_of
from tests.conftest import sample_metadata
from tests.test_api import API, audit_rows, problem

REFUSAL = "archived records are never edited: ingest a correction (R-AMEND-1)"




def _create(client, csrf, metadata=None, pdf: bytes | None = None, name="du-thao.pdf"):
    data = {"metadata": json.dumps(metadata if metadata is not None else
                                   sample_metadata(summary="Dự thảo quy chế"),
                                   ensure_ascii=False)}
    if pdf is not None:
        data["file"] = (io.BytesIO(pdf), name)
    return client.post(f"{API}/drafts", data=data, content_type="multipart/form-data",
                       headers={"X-CSRFToken": csrf})


def _patch(client, csrf, draft_id, changes=None, reason="Sửa theo góp ý", pdf=None):
    data = {"reason": reason}
    if changes is not None:
        data["changes"] = json.dumps(changes, ensure_ascii=False)
    if pdf is not None:
        data["file"] = (io.BytesIO(pdf), "ban-2.pdf")
    return client.patch(f"{API}/drafts/{draft_id}", data=data,
                        content_type="multipart/form-data", headers={"X-CSRFToken": csrf})


def test_changes_are_recorded_and_an_archived_draft_never_changes(web):
    web.add_user("van", "clerk")
    client = web.login("van")
    csrf = web.csrf(client)
    first = make_pdf(["Dự thảo", "bản 1"])
    made = _create(client, csrf, pdf=first)
    assert made.status_code == 201, made.data
    draft = made.get_json()
    did, first_key = draft["id"], f"drafts/{draft['id']}/1-du-thao.pdf"
    assert draft["status"] == "draft" and draft["created_by"] == "user:van"

    changed = _patch(client, csrf, did, {"summary": "Quy chế lưu trữ số", "file_ref": None})
    assert changed.status_code == 200, changed.data
    change = changed.get_json()
    assert change["changes"] == {"summary": {"from": "Dự thảo quy chế",
                                             "to": "Quy chế lưu trữ số"},
                                 "file_ref": {"from": "HS-2025-07", "to": None}}
    assert change["changed_by"] == "user:van" and change["reason"] == "Sửa theo góp ý"
    assert change["changed_at"]

    second = make_pdf(["Dự thảo", "bản 2"])
    changed = _patch(client, csrf, did, pdf=second, reason="Bản ký mới")
    assert changed.status_code == 200, changed.data
    assert set(changed.get_json()["changes"]) == {"file"}
    store = web.instance.store
    # A new file is a new object; the first one is still there, unchanged.
    assert store.exists(first_key) and store.exists(f"drafts/{did}/2-ban-2.pdf")
    with store.open(first_key) as fh:
        assert fh.read() == first

    shown = client.get(f"{API}/drafts/{did}").get_json()
    assert [c["reason"] for c in shown["changes"]] == ["Sửa theo góp ý", "Bản ký mới"]
    page = client.get(f"/drafts/{did}").get_data(as_text=True)
    assert 'id="draft-changes"' in page and "Bản ký mới" in page and "Quy chế lưu trữ số" in page

    submitted = client.post(f"{API}/drafts/{did}/submit", headers={"X-CSRFToken": csrf})
    assert submitted.status_code == 201, submitted.data
    rid = submitted.get_json()["record_id"]
    assert client.get(f"{API}/records/{rid}/original").data == second
    shown = client.get(f"{API}/drafts/{did}").get_json()
    assert shown["status"] == "archived" and shown["record_id"] == rid
    assert shown["changes"][-1]["changes"]["status"] == {"from": "draft", "to": "archived"}

    body = problem(_patch(client, csrf, did, {"summary": "Sửa sau khi lưu"}), 422)
    assert body["detail"] == REFUSAL
    body = problem(client.post(f"{API}/drafts/{did}/discard", data={"reason": "x"},
                               headers={"X-CSRFToken": csrf}), 422)
    assert body["detail"] == REFUSAL
    refused = audit_rows(web, outcome="refused", target=f"draft:{did}")
    assert [e.action for e in refused] == ["draft.update", "draft.discard"]
    assert client.get(f"{API}/records/{rid}").get_json()["summary"] == "Quy chế lưu trữ số"

    # The record's history names the draft and its changes (R-HIST-1).
    history = client.get(f"{API}/records/{rid}/history").get_json()
    assert [c["reason"] for c in history["draft"]["changes"]] == \
        ["Sửa theo góp ý", "Bản ký mới", "submitted for archiving"]
    assert "creation" in {e["type"] for e in history["events"]}
    actions = [e.action for e in audit_rows(web, target=f"draft:{did}")]
    assert actions[:4] == ["draft.create", "draft.update", "draft.update", "draft.view"]
    assert "draft.submit" in actions


def test_discard_is_recorded(local_web):
    web = local_web
    web.add_user("van", "clerk")
    client = web.login("van")
    csrf = web.csrf(client)
    did = _create(client, csrf).get_json()["id"]
    assert "reason" in problem(client.post(f"{API}/drafts/{did}/discard", data={},
                                           headers={"X-CSRFToken": csrf}), 400)["detail"]
    done = client.post(f"{API}/drafts/{did}/discard", data={"reason": "Không ban hành nữa"},
                       headers={"X-CSRFToken": csrf})
    assert done.status_code == 200, done.data
    assert done.get_json()["changes"] == {"status": {"from": "draft", "to": "discarded"}}
    shown = client.get(f"{API}/drafts/{did}").get_json()
    assert shown["status"] == "discarded"
    assert shown["changes"][0]["reason"] == "Không ban hành nữa"
    [entry] = audit_rows(web, action="draft.discard", outcome="ok")
    assert entry.actor == "user:van" and entry.detail["reason"] == "Không ban hành nữa"
    assert "discarded" in problem(_patch(client, csrf, did, {"summary": "x"}), 422)["detail"]
    listed = client.get(f"{API}/drafts", query_string={"status": "discarded"}).get_json()
    assert [d["id"] for d in listed["drafts"]] == [did]
    assert client.get(f"{API}/drafts").get_json()["drafts"] == []


def test_refusals_are_audited(local_web):
    web = local_web
    web.add_user("van", "clerk")
    client = web.login("van")
    csrf = web.csrf(client)
    did = _create(client, csrf).get_json()["id"]

    assert "reason" in problem(_patch(client, csrf, did, {"summary": "x"}, reason=""),
                               400)["detail"]
    assert "nothing changed" in problem(_patch(client, csrf, did, {}), 400)["detail"]
    assert "fonds" in problem(_create(client, csrf, {"summary": "không phông"}), 400)["detail"]
    # Nobody moves a draft out of their own reach.
    moved = problem(_patch(client, csrf, did, {"fonds": "PHONG-09", "issuing_org": "x"}), 403)
    assert "outside the fonds" in moved["reason"]

    web.add_user("khac", "clerk", fonds=("PHONG-09",))
    other = web.login("khac")
    assert "outside the fonds" in problem(other.get(f"{API}/drafts/{did}"), 403)["reason"]
    assert other.get(f"{API}/drafts").get_json()["drafts"] == []
    web.add_user("luu", "archivist")
    archivist = web.login("luu")
    problem(archivist.get(f"{API}/drafts/{did}"), 403)
    web.add_user("yeu", "clerk")
    web.enrol("yeu")
    weak = web.login("yeu", browse_only=True)
    body = problem(_patch(weak, web.csrf(weak), did, {"summary": "x"}), 403)
    assert "password-only" in body["reason"]

    denied = audit_rows(web, outcome="denied")
    assert {e.actor for e in denied} == {"user:van", "user:khac", "user:luu", "user:yeu"}
    assert all(e.action == "record.ingest" for e in denied)
    assert len(client.get(f"{API}/drafts/{did}").get_json()["changes"]) == 0


def test_pages_edit_with_a_required_reason(local_web):
    web = local_web
    web.add_user("van", "clerk")
    client = web.login("van")
    page = client.get("/drafts")
    assert page.status_code == 200
    made = client.post("/drafts", data={"csrf_token": csrf_of(page.data), "fonds": "PHONG-01",
                                        "summary": "Dự thảo từ trang", "number_symbol": "1"})
    assert made.status_code == 303, made.data
    url = made.headers["Location"]
    form = client.get(url)
    no_reason = client.post(url, data={"csrf_token": csrf_of(form.data), "action": "edit",
                                       "fonds": "PHONG-01", "summary": "Đổi", "reason": ""})
    assert no_reason.status_code == 400 and b"draft-error" in no_reason.data
    saved = client.post(url, data={"csrf_token": csrf_of(form.data), "action": "edit",
                                   "fonds": "PHONG-01", "summary": "Đổi",
                                   "reason": "Theo ý kiến lãnh đạo"})
    assert saved.status_code == 303
    page = client.get(url).get_data(as_text=True)
    assert "Theo ý kiến lãnh đạo" in page and "Dự thảo từ trang" in page
    did = url.rsplit("/", 1)[-1]
    [change] = client.get(f"{API}/drafts/{did}").get_json()["changes"]
    # The emptied number is removed, the summary changed.
    assert change["changes"] == {"number_symbol": {"from": "1", "to": None},
                                 "summary": {"from": "Dự thảo từ trang", "to": "Đổi"}}
    listed = client.get("/drafts").get_data(as_text=True)
    assert url in listed


def _acting(web, name: str) -> list[str]:
    account = web.add_user(name, "clerk")
    return ["--as", name, "--code", pyotp.TOTP(account.secret).now()]


def test_cli(local_web, tmp_path):
    web = local_web
    aenv = web.aenv
    meta = tmp_path / "draft.json"
    meta.write_text(json.dumps(sample_metadata(summary="Dự thảo CLI"), ensure_ascii=False),
                    encoding="utf-8")
    pdf = aenv.sample("draft.pdf", text="dự thảo CLI")
    made = aenv.json("drafts", "create", "--metadata", str(meta), "--file", str(pdf),
                     *_acting(web, "a1"))
    did = made["id"]
    change = aenv.json("drafts", "edit", did, "--set", "page_count=2", "--set",
                       "summary=Quy chế", "--reason", "Đếm lại trang", *_acting(web, "a2"))
    assert change["changes"]["page_count"] == {"from": 1, "to": 2}
    assert change["changed_by"] == "user:a2"
    shown = aenv.json("drafts", "show", did)
    assert shown["metadata"]["summary"] == "Quy chế" and len(shown["changes"]) == 1
    assert [d["id"] for d in aenv.json("drafts", "list")["drafts"]] == [did]
    done = aenv.json("drafts", "submit", did, *_acting(web, "a3"))
    assert done["status"] == "archived"
    refused = aenv.invoke("drafts", "edit", did, "--set", "summary=x", "--reason", "x",
                          *_acting(web, "a4"))
    assert refused.exit_code == 3 and REFUSAL in refused.stderr
    other = aenv.json("drafts", "create", "--metadata", str(meta), *_acting(web, "a5"))
    gone = aenv.json("drafts", "discard", other["id"], "--reason", "Trùng",
                     *_acting(web, "a6"))
    assert gone["changes"]["status"]["to"] == "discarded"
    missing_reason = aenv.invoke("drafts", "edit", did, "--set", "summary=x", "--as", "a1",
                                 "--code", "000000")
    assert missing_reason.exit_code == 2
