"""Paper renditions with a verification QR code (R-CONV-2), end to end.

A multi-page document signed by a person and the organisation (test PKI: OCSP, CRL and
TSA over loopback, signature enforcement on) is archived; a clerk logged in with a
one-time code prints it through the API. Every page's text is extracted (pypdfium2) and
must carry every element of the footer; every page is rasterised and its QR code decoded
(zxing-cpp); the URL is followed with the Flask test client as an anonymous visitor.
Revoking the record (``archive.revocation.revoke``) flips the same URL to revoked with
the revocation time. Refusals (roles, password-only login, API token, sealed, revoked,
destroyed records) are 403 and in the audit log. Catalog tests run on SQLite + a local
folder and on PostgreSQL + SeaweedFS.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import urlparse

import pypdfium2 as pdfium
import pytest
import zxingcpp
from sqlalchemy import select

from archive.models import AuditEntry, Event, Record, Rendition, Seal, SealRecord
from ingest.demo import write_pdf
from tests.accounts import WebArchive, csrf_of
from tests.conftest import ORG2

API = "/api/v1"
PAGES = ["TRANG MOT: Quyet dinh ban hanh quy che", "TRANG HAI: Dieu 1 va Dieu 2",
         "TRANG BA: To chuc thuc hien"]
VN = timezone(timedelta(hours=7))
SUMMARY = "Quyết định về việc ban hành quy chế lưu trữ số"


# ---- documents ------------------------------------------------------------------------


def pages_pdf(texts: list[str], rotate: tuple[int, ...] = ()) -> bytes:
    """A valid PDF with one page per text (Helvetica, A4; ``rotate``: /Rotate of each)."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", None,
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for n, text in enumerate(texts):
        turn = f"/Rotate {rotate[n]} " if n < len(rotate) and rotate[n] else ""
        stream = f"BT /F1 14 Tf 72 760 Td ({text}) Tj ET".encode("ascii")
        objects.append(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream
                       + b"\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] {turn}"
                       f"/Resources << /Font << /F1 3 0 R >> >> "
                       f"/Contents {len(objects)} 0 R >>".encode())
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(texts)} >>".encode()
    return write_pdf(objects)


@pytest.fixture(scope="session")
def signed_multipage(pki, tmp_path_factory):
    """Three pages signed by Nguyễn Văn An, then sealed by the organisation (B-T)."""
    from ingest.demo_pki.signing import sign

    pdf = pages_pdf(PAGES)
    for holder in ("an", "org_vptu"):
        pdf = sign(pdf, pki, holder, timestamp=True)
    path = tmp_path_factory.mktemp("rendition-pdfs") / "qd-3-trang.pdf"
    path.write_bytes(pdf)
    return path


@pytest.fixture(params=["local-sqlite", "s3-postgresql"])
def signed_web(request, tmp_path, pki):
    from tests.test_signed_ingest import _signed_env

    aenv = _signed_env(request.param, tmp_path, request, pki)
    web = WebArchive(aenv)
    yield web
    web.close()
    aenv.close()




def ingest_signed(web: WebArchive, path) -> str:
    from tests.test_signed_ingest import _submit

    code, result = _submit(web.aenv, path, "qd-3-trang", page_count=3)
    assert code == 0 and result["status"] == "archived", result
    return result["record_id"]


def ingest_sample(web: WebArchive, name: str, **meta) -> tuple[str, bytes]:
    from tests.test_api import ingest

    return ingest(web.aenv, name, text=f"NOI DUNG {name.upper()}", **meta)


# ---- helpers --------------------------------------------------------------------------


def audit_rows(web: WebArchive, **where) -> list[AuditEntry]:
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        for name, value in where.items():
            stmt = stmt.where(getattr(AuditEntry, name) == value)
        rows = list(db.scalars(stmt))
        db.expunge_all()
    return rows


def print_api(web: WebArchive, client, rid: str, *, accept: str = "application/pdf",
              environ: dict | None = None):
    token = web.csrf(client)
    return client.post(f"{API}/records/{rid}/renditions",
                       headers={"X-CSRFToken": token, "Accept": accept},
                       environ_base=environ or {})


def page_texts(pdf: bytes) -> list[str]:
    doc = pdfium.PdfDocument(pdf)
    try:
        out = []
        for page in doc:
            textpage = page.get_textpage()
            out.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return out
    finally:
        doc.close()


def page_qr_codes(pdf: bytes) -> list[list[str]]:
    """The QR codes decoded on each rasterised page."""
    doc = pdfium.PdfDocument(pdf)
    try:
        out = []
        for page in doc:
            bitmap = page.render(scale=3)
            image = bitmap.to_pil()
            out.append([b.text for b in zxingcpp.read_barcodes(image)
                        if b.format == zxingcpp.BarcodeFormat.QRCode])
            bitmap.close()
            page.close()
        return out
    finally:
        doc.close()


def rendition_row(web: WebArchive, rendition_id: str) -> Rendition:
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        row = db.get(Rendition, rendition_id)
        db.expunge_all()
    return row


def revoke(web: WebArchive, rid: str) -> datetime:
    """Revoke through the revocation service (an approver's decision); its time."""
    from archive.models import Revocation
    from archive.revocation import revoke as revoke_validity
    from archive.users import get_user, principal_for

    if "duyet" not in web.accounts:
        web.add_user("duyet", "approver")
    with web.db() as db:
        approver = principal_for(get_user(db, "duyet"), "totp")
        revoke_validity(db, approver, rid, reason="Ban hành sai thẩm quyền",
                        form="Quyết định", legal_basis="Điều 12 Quy chế",
                        decision_ref="99-QĐ/TU", clock=web.clock)
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        return db.scalar(select(Revocation.decided_at).where(Revocation.record_id == rid))


# ---- the whole path ---------------------------------------------------------------------


def test_signed_multipage_rendition_carries_every_element_and_its_qr_verifies(
        signed_web, signed_multipage):
    web = signed_web
    rid = ingest_signed(web, signed_multipage)
    original = signed_multipage.read_bytes()
    settings = web.instance.settings
    web.add_user("van", "clerk")
    clerk = web.login("van")

    answer = print_api(web, clerk, rid, environ={"REMOTE_ADDR": "10.1.2.3"})
    assert answer.status_code == 201, answer.data[:400]
    assert answer.mimetype == "application/pdf"
    pdf = answer.data
    rendition_id = answer.headers["X-Rendition-Id"]
    url = f"{settings.renditions.public_url}/verify/{rendition_id}"
    assert answer.headers["Location"] == url

    row = rendition_row(web, rendition_id)
    assert row.record_id == rid and row.page_count == 3
    assert row.converter == "Người dùng van" and row.created_by == "user:van"
    assert row.sha256 == hashlib.sha256(pdf).hexdigest() and row.size == len(pdf)
    with web.instance.store.open(row.storage_key) as stored:
        assert stored.read() == pdf  # stored as given, under its own key
    assert row.storage_key == f"renditions/{rid}/{rendition_id}.pdf"

    # Every page of the original, each with the full footer (R-CONV-2).
    made = row.created_at.astimezone(VN).strftime("%d/%m/%Y %H:%M:%S")
    texts = page_texts(pdf)
    assert len(texts) == 3
    for number, (text, content) in enumerate(zip(texts, PAGES, strict=True), start=1):
        flat = " ".join(text.split())
        for element in (content,  # the original's page, in order
                        "BẢN IN TỪ VĂN BẢN ĐIỆN TỬ", "KHÔNG PHẢI BẢN GỐC CÓ CHỮ KÝ SỐ",
                        f"Xử lý trên hệ thống: {settings.archive.system_name}",
                        settings.archive.owner_name,
                        "Văn bản số: 12-QĐ/TU", f"Mã văn bản: {rid}",
                        "Người chuyển đổi: Người dùng van", f"Thời gian: {made}",
                        "giờ Việt Nam, UTC+07:00", f"Mã bản in: {rendition_id}",
                        f"Trang {number}/3", url):
            assert element in flat, (number, element, flat)
    # The QR code of every page holds the verification URL.
    assert page_qr_codes(pdf) == [[url], [url], [url]]

    # The rendition is recorded: event (for the next AIP version) and audit entry.
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        events = list(db.scalars(select(Event).where(Event.record_id == rid,
                                                     Event.event_type == "rendition")))
    assert [(e.agent, e.outcome, e.data["rendition_id"]) for e in events] == \
        [("user:van", "success", rendition_id)]
    renders = [(e.action, e.outcome, e.client, e.detail["rendition_id"])
               for e in audit_rows(web, actor="user:van", target=f"record:{rid}")
               if e.action == "record.render"]
    assert renders == [("record.render", "ok", "10.1.2.3", rendition_id)]

    # Follow the QR code as anyone: no login, no session, no content (R-CONV-2).
    visitor = web.client()
    path = urlparse(url).path
    shown = visitor.get(path, environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert shown.status_code == 200
    html = shown.get_data(as_text=True)
    assert 'data-status="valid"' in html and "Còn hiệu lực" in html and "Valid" in html
    assert "12-QĐ/TU" in html and "Văn phòng Tỉnh ủy" in html and "14/03/2025" in html
    assert SUMMARY not in html and "Trần Thị Bình" not in html and "TRANG MOT" not in html
    assert "kls_session" not in shown.headers.get("Set-Cookie", "")
    data = visitor.get(f"{API}/renditions/{rendition_id}/verification").get_json()
    assert data == {"rendition_id": rendition_id, "status": "valid",
                    "rendered_at": row.created_at.isoformat(), "number_symbol": "12-QĐ/TU",
                    "issuing_org": "Văn phòng Tỉnh ủy", "date": "2025-03-14",
                    "limited": False}
    checks = audit_rows(web, action="rendition.verify")
    assert [(e.actor, e.outcome, e.client, e.detail["status"]) for e in checks][:1] == \
        [("anonymous:-", "ok", "203.0.113.9", "valid")]

    # The original is untouched, byte for byte.
    download = clerk.get(f"{API}/records/{rid}/original")
    assert download.status_code == 200 and download.data == original

    # Revocation flips the same QR URL to revoked, with the revocation's time.
    revoked_at = revoke(web, rid)
    shown = visitor.get(path)
    html = shown.get_data(as_text=True)
    assert shown.status_code == 200 and 'data-status="revoked"' in html
    assert "Đã bị thu hồi hiệu lực" in html and "Revoked" in html
    assert revoked_at.astimezone(VN).strftime("%d/%m/%Y %H:%M:%S") in html
    data = visitor.get(f"{API}/renditions/{rendition_id}/verification").get_json()
    assert data["status"] == "revoked" and data["revoked_at"] == revoked_at.isoformat()

    # A revoked record is not printed again; the refusal is audited.
    again = print_api(web, clerk, rid)
    assert again.status_code == 403
    assert "revoked" in again.get_json()["reason"]
    denied = [e for e in audit_rows(web, actor="user:van", action="record.render")
              if e.outcome == "denied"]
    assert len(denied) == 1 and "revoked" in denied[0].detail["reason"]
    listing = clerk.get(f"{API}/records/{rid}/renditions").get_json()
    assert [r["id"] for r in listing["renditions"]] == [rendition_id]


def test_classified_record_is_printed_decrypted_and_verified_by_status_only(web):
    rid, _ = ingest_sample(web, "bc", number_symbol="3-BC/TU", classification="mat")
    web.add_user("mai", "archivist", "mat")
    answer = print_api(web, web.login("mai"), rid, accept="application/json")
    assert answer.status_code == 201 and answer.mimetype == "application/json"
    made = answer.get_json()
    assert made["record_id"] == rid and made["pages"] == 1
    with web.instance.store.open(made_key := f"renditions/{rid}/{made['id']}.pdf") as f:
        pdf = f.read()
    assert hashlib.sha256(pdf).hexdigest() == made["sha256"], made_key
    # The decrypted content is on the paper (R-CLASS-1: it is encrypted at rest).
    assert "NOI DUNG BC" in page_texts(pdf)[0]

    visitor = web.client()
    data = visitor.get(f"{API}/renditions/{made['id']}/verification").get_json()
    assert data == {"rendition_id": made["id"], "status": "valid",
                    "rendered_at": data["rendered_at"], "limited": True}
    html = visitor.get(f"/verify/{made['id']}").get_data(as_text=True)
    assert 'data-status="valid"' in html and 'id="verify-limited"' in html
    assert "3-BC/TU" not in html and "Văn phòng Tỉnh ủy</dd>" not in html


def test_unknown_and_malformed_ids_are_unknown_and_audited(local_web):
    visitor = local_web.client()
    missing = str(uuid.uuid4())
    page = visitor.get(f"/verify/{missing}")
    assert page.status_code == 404
    assert 'data-status="unknown"' in page.get_data(as_text=True)
    assert "Không xác định" in page.get_data(as_text=True)
    data = visitor.get(f"{API}/renditions/{missing}/verification")
    assert data.status_code == 200
    assert data.get_json() == {"rendition_id": missing, "status": "unknown"}
    bad = visitor.get(f"{API}/renditions/not-a-uuid/verification")
    assert bad.status_code == 400 and bad.mimetype == "application/problem+json"
    assert visitor.get("/verify/not-a-uuid").status_code == 404
    rows = audit_rows(local_web, action="rendition.verify")
    assert [(r.actor, r.outcome, r.target) for r in rows] == [
        ("anonymous:-", "not_found", f"rendition:{missing}"),
        ("anonymous:-", "not_found", f"rendition:{missing}"),
        ("anonymous:-", "not_found", "rendition:not-a-uuid"),
        ("anonymous:-", "not_found", "rendition:not-a-uuid")]


def test_public_verification_ignores_credentials_even_malformed_ones(local_web):
    response = local_web.client().get(f"/verify/{uuid.uuid4()}",
                                      headers={"Authorization": "Basic nonsense"})
    assert response.status_code == 404  # unknown, not a 400 about the header


def test_verification_is_rate_limited_per_client_address(local_archive):
    web = WebArchive(local_archive, env={"ARCHIVE_RENDITIONS__VERIFY_RATE_PER_MINUTE": "3"})
    try:
        visitor = web.client()
        rid = str(uuid.uuid4())
        first = {"REMOTE_ADDR": "198.51.100.7"}
        for _ in range(2):
            assert visitor.get(f"/verify/{rid}", environ_base=first).status_code == 404
        assert visitor.get(f"{API}/renditions/{rid}/verification",
                           environ_base=first).status_code == 200
        limited = visitor.get(f"{API}/renditions/{rid}/verification", environ_base=first)
        assert limited.status_code == 429 and limited.mimetype == "application/problem+json"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        page = visitor.get(f"/verify/{rid}", environ_base=first)
        assert page.status_code == 429 and page.headers["Retry-After"]
        # Another address is counted apart; after a minute the first may ask again.
        assert visitor.get(f"/verify/{rid}", environ_base={"REMOTE_ADDR": "198.51.100.8"}
                           ).status_code == 404
        web.clock.offset += timedelta(seconds=61)
        assert visitor.get(f"/verify/{rid}", environ_base=first).status_code == 404
        # The two refused requests were not verifications: five of seven are audited.
        assert len(audit_rows(web, action="rendition.verify")) == 5
    finally:
        web.close()


# ---- refusals -----------------------------------------------------------------------


def _seal(web: WebArchive, rid: str) -> None:
    """A seal put on the record directly in the catalog (the sealing service is another
    feature's; the policy reads the active seal from these rows)."""
    from archive.agents import find_agent

    with web.db() as db:
        seal = Seal(id=str(uuid.uuid4()), reference="01-QĐ/UBKT", decision_date=datetime(
            2025, 5, 1).date(), authority_id=find_agent(db, ORG2).id, scope="thanh tra",
            readers=[], sealed_at=web.clock.now(), sealed_by="user:thanhtra",
            sealer_person=None, manifest_key="seals/x.json", manifest_sha256="0" * 64,
            status="active")
        db.add(seal)
        db.flush()
        db.add(SealRecord(seal_id=seal.id, record_id=rid))


def _destroy(web: WebArchive, rid: str) -> None:
    """The record marked destroyed directly (destruction is issue #6's)."""
    with web.db() as db:
        db.get(Record, rid).status = "destroyed"


def test_who_may_not_print_is_refused_and_audited(web):
    rid, original = ingest_sample(web, "qd")
    sealed, _ = ingest_sample(web, "sealed", number_symbol="13-QĐ/TU")
    revoked, _ = ingest_sample(web, "revoked", number_symbol="14-QĐ/TU")
    destroyed, _ = ingest_sample(web, "destroyed", number_symbol="15-QĐ/TU")
    _seal(web, sealed)
    revoke(web, revoked)
    _destroy(web, destroyed)
    for name, role in (("kiem", "auditor"), ("quantri", "administrator"),
                       ("van", "clerk"), ("lan", "clerk")):
        web.add_user(name, role, fonds=("PHONG-01",))
    web.enrol("lan")
    cases = [
        ("user:kiem", web.login("kiem"), rid, "role auditor"),
        ("user:quantri", web.login("quantri"), rid, "role administrator"),
        ("user:lan", web.login("lan", browse_only=True), rid, "password-only"),
        ("user:van", web.login("van"), sealed, "sealed"),
        ("user:van", web.login("van"), revoked, "revoked"),
        ("user:van", web.login("van"), destroyed, "destroyed"),
    ]
    for actor, client, target, why in cases:
        answer = print_api(web, client, target)
        assert answer.status_code == 403, (why, answer.status_code, answer.data[:300])
        entries = [e for e in audit_rows(web, actor=actor, target=f"record:{target}")
                   if e.action == "record.render"]
        assert entries and entries[-1].outcome == "denied", why
    token = web.token(["records:read", "records:download", "records:ingest"])
    answer = web.client().post(f"{API}/records/{rid}/renditions",
                               headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 403 and "scope" in answer.get_json()["reason"]
    assert [e.outcome for e in audit_rows(web, action="record.render")
            if e.actor.startswith("token:")] == ["denied"]
    # Nothing was stored or registered; the original is as it was.
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        assert db.scalar(select(Rendition.id)) is None
    assert not list(web.instance.store.list("renditions/"))
    clerk = web.login("van")
    assert clerk.get(f"{API}/records/{rid}/original").data == original
    # A web form post without its CSRF token changes nothing.
    assert clerk.post(f"/records/{rid}/renditions").status_code == 400


def test_unknown_record_is_404_and_audited(local_web):
    local_web.add_user("van", "clerk")
    missing = str(uuid.uuid4())
    answer = print_api(local_web, local_web.login("van"), missing)
    assert answer.status_code == 404
    assert [(e.action, e.outcome) for e in audit_rows(local_web, target=f"record:{missing}")
            ] == [("record.render", "not_found")]


# ---- the PDF maker on its own ---------------------------------------------------------


def _footer(**changes):
    from archive.renditions import Footer

    values = dict(system_name="Kho lưu trữ số", owner_name="Văn phòng Tỉnh ủy",
                  record_id=str(uuid.uuid4()), number_symbol="12-QĐ/TU",
                  converter="Nguyễn Thị Ánh Tuyết", made_at=datetime(2025, 3, 14, 3, 4, 5,
                                                                      tzinfo=UTC),
                  rendition_id=str(uuid.uuid4()), verify_url="https://luutru.example/verify/x")
    values.update(changes)
    return Footer(**values)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "not_pdf", "empty"])
def test_malformed_originals_are_refused_clearly(damage):
    from access.rendition_pdf import PdfRenderer
    from archive.renditions import UnrenderableOriginal

    good = pages_pdf(["one"])
    data = {"garbage": b"%PDF-1.7\n" + bytes(range(256)) * 8, "truncated": good[:120],
            "not_pdf": b"GIF89a not a pdf at all", "empty": b""}[damage]
    footer = _footer()
    with pytest.raises(UnrenderableOriginal) as caught:
        PdfRenderer().render(data, footer)
    assert footer.record_id in caught.value.message
    assert "no paper rendition can be made" in caught.value.message


def test_rotated_pages_keep_their_orientation_and_vietnamese_text_extracts():
    from access.rendition_pdf import PdfRenderer

    original = pages_pdf(["PORTRAIT", "LANDSCAPE"], rotate=(0, 90))
    rendered = PdfRenderer().render(original, _footer())
    doc = pdfium.PdfDocument(rendered.data)
    try:
        sizes = [tuple(round(v) for v in page.get_size()) for page in doc]
    finally:
        doc.close()
    assert sizes == [(595, 842), (842, 595)]
    texts = page_texts(rendered.data)
    assert "Người chuyển đổi: Nguyễn Thị Ánh Tuyết" in " ".join(texts[1].split())
    assert "14/03/2025 10:04:05" in texts[0]  # 03:04:05 UTC is 10:04:05 in Vietnam


def test_a_missing_font_file_is_a_configuration_error(tmp_path):
    from access.rendition_pdf import PdfRenderer
    from archive.errors import ConfigError

    with pytest.raises(ConfigError, match="font_file"):
        PdfRenderer(tmp_path / "no-such-font.ttf")


# ---- the CLI --------------------------------------------------------------------------


def test_cli_prints_lists_and_verifies(web, tmp_path):
    rid, _ = ingest_sample(web, "qd")
    account = web.add_user("van", "clerk")
    out = tmp_path / "ban-in.pdf"
    made = web.aenv.json("rendition", rid, "--output", str(out), "--as", "van",
                         "--code", web.next_code(account))
    assert made["record_id"] == rid and made["output"] == str(out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == made["sha256"]
    assert "Người chuyển đổi: Người dùng van" in " ".join(page_texts(out.read_bytes())[0].split())
    again = web.aenv.invoke("rendition", rid, "--output", str(out), "--as", "van",
                            "--code", web.next_code(account))
    assert again.exit_code == 2 and "exists" in again.stderr  # never written over

    listed = web.aenv.json("renditions", "list", rid)
    assert [r["id"] for r in listed["renditions"]] == [made["id"]]
    checked = web.aenv.json("renditions", "verify", made["id"])
    assert checked["status"] == "valid" and checked["number_symbol"] == "12-QĐ/TU"
    unknown = web.aenv.invoke("renditions", "verify", str(uuid.uuid4()), "--json")
    assert unknown.exit_code == 1 and json.loads(unknown.stdout)["status"] == "unknown"

    # A wrong one-time code, or a role that may not print: refused (exit 3), audited.
    wrong = web.aenv.invoke("rendition", rid, "--output", str(tmp_path / "x.pdf"),
                            "--as", "van", "--code", "000000")
    assert wrong.exit_code == 3 and not (tmp_path / "x.pdf").exists()
    auditor = web.add_user("kiem", "auditor")
    refused = web.aenv.invoke("rendition", rid, "--output", str(tmp_path / "y.pdf"),
                              "--as", "kiem", "--code", web.next_code(auditor))
    assert refused.exit_code == 3 and not (tmp_path / "y.pdf").exists()
    assert [e.outcome for e in audit_rows(web, actor="user:kiem", action="record.render")] \
        == ["denied"]


def test_rendition_is_carried_in_the_record_history(local_web):
    rid, _ = ingest_sample(local_web, "qd", summary=SUMMARY)
    local_web.add_user("van", "clerk")
    clerk = local_web.login("van")
    answer = print_api(local_web, clerk, rid)
    assert answer.status_code == 201
    history = clerk.get(f"{API}/records/{rid}/events").get_json()["events"]
    assert [e["type"] for e in history].count("rendition") == 1
    page = clerk.get(f"/records/{rid}")
    html = page.get_data(as_text=True)
    assert 'id="renditions"' in html and answer.headers["X-Rendition-Id"] in html
    assert 'id="print-rendition"' in html
    # A clerk without a strong login sees why printing is not offered.
    local_web.add_user("lan", "clerk")
    local_web.enrol("lan")
    weak = local_web.login("lan", browse_only=True).get(f"/records/{rid}")
    assert 'id="rendition-denied"' in weak.get_data(as_text=True)
    assert 'id="print-rendition"' not in weak.get_data(as_text=True)
    # The web form: POST with the page's CSRF token downloads the PDF.
    form = clerk.post(f"/records/{rid}/renditions", data={"csrf_token": csrf_of(html)})
    assert form.status_code == 201 and form.data.startswith(b"%PDF-")
    assert form.headers["Content-Disposition"].startswith("attachment;")



def test_a_damaged_original_stops_the_rendition_and_raises_an_alert(local_web):
    """R-FIX-1: the original is checked while it is read for printing; a mismatch is a
    failed fixity event and audit entry, and no rendition is stored or registered."""
    from tests.test_api import _flip_original_byte

    rid, _ = ingest_sample(local_web, "qd")
    _flip_original_byte(local_web.aenv, rid)
    local_web.add_user("van", "clerk")
    answer = print_api(local_web, local_web.login("van"), rid)
    assert answer.status_code == 500 and answer.mimetype == "application/problem+json"
    with local_web.instance.catalog.unit_of_work(snapshot=True) as db:
        alerts = list(db.scalars(select(Event).where(Event.record_id == rid,
                                                     Event.event_type == "fixity check",
                                                     Event.outcome == "failure")))
        assert db.scalar(select(Rendition.id)) is None
    assert [a.agent for a in alerts] == ["user:van"]
    assert [e.actor for e in audit_rows(local_web, action="record.download",
                                        outcome="failed")] == ["user:van"]
    assert not list(local_web.instance.store.list("renditions/"))


def test_an_unreadable_pdf_original_is_refused_and_audited(local_web):
    rid, _ = ingest_sample(local_web, "broken")
    # Replace the stored original by a damaged PDF with matching digests: the catalog is
    # told the new digests, as if a broken PDF had been archived (ingest accepts any file
    # identified as PDF when signature enforcement is off).
    from archive.models import StoredFile

    broken = pages_pdf(["one"])[:150]
    with local_web.db() as db:
        stored = db.scalar(select(StoredFile).where(StoredFile.role == "original"))
        key = stored.package.storage_key
        offset, size = stored.offset, stored.size
    assert len(broken) <= size
    from tests.test_fixity import _raw_rewrite, _read

    data = bytearray(_read(local_web.aenv, key))
    data[offset:offset + size] = broken + b" " * (size - len(broken))
    _raw_rewrite(local_web.aenv, key, bytes(data))
    padded = broken + b" " * (size - len(broken))
    with local_web.db() as db:
        stored = db.scalar(select(StoredFile).where(StoredFile.role == "original"))
        stored.digests = {**stored.digests, "sha256": hashlib.sha256(padded).hexdigest()}
    local_web.add_user("van", "clerk")
    answer = print_api(local_web, local_web.login("van"), rid)
    assert answer.status_code == 422, answer.data[:300]
    assert "no paper rendition can be made" in answer.get_json()["detail"]
    failed = audit_rows(local_web, action="record.render", outcome="failed")
    assert [(e.actor, e.target) for e in failed] == [("user:van", f"record:{rid}")]
    assert "not a readable PDF" in failed[0].detail["reason"]
    with local_web.instance.catalog.unit_of_work(snapshot=True) as db:
        assert db.scalar(select(Rendition.id)) is None
