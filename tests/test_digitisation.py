"""Digitisation of paper (R-CONV-1, R-INCIDENT-1) against the real test PKI (OCSP, CRLs
and TSA over loopback), on local folder + SQLite and SeaweedFS + PostgreSQL.

A clerk with a strong login digitises scans (PNG/TIFF pages or a PDF); the archive
signs each copy with the issuing organisation's key (key files, or a PKCS#11 token in
SoftHSM2), ingests it through the normal ingest with the organisation-only policy,
links it to the paper original's reference and keeps the document's original date.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from archive.errors import AccessDenied, InputError, Refused
from archive.models import AuditEntry, Event, PaperOriginal, Record
from tests.accounts import WebArchive
from tests.conftest import ORG, ORG2, make_archive_env, sample_metadata

pytestmark = pytest.mark.services

ORIGINAL_DATE = "1998-05-20"  # handled on paper during an outage (R-INCIDENT-1)


# ---- fixtures -----------------------------------------------------------------------

def write_org_keys(pki, folder: Path, holder: str = "org_vptu",
                   identifier: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ident = identifier or pki.identifier(holder)
    (folder / f"{ident}.key.pem").write_bytes(pki.key_pem(holder))
    (folder / f"{ident}.cert.pem").write_bytes(pki.cert_pem(holder))
    (folder / f"{ident}.chain.pem").write_bytes(pki.cert_pem("interm") + pki.cert_pem("root"))


class DigEnv:
    """An archive with the test PKI trusted, the organisations' certificates bound, the
    key of the first organisation (ORG) in the key folder and a clerk."""

    def __init__(self, kind: str, tmp_path: Path, request, pki, extra_env=None):
        self.aenv = make_archive_env(kind, tmp_path, request)
        self.pki = pki
        self.key_dir = tmp_path / "org-keys"
        self.aenv.env.update({
            "ARCHIVE_SIGNATURES__ENFORCE": "true",
            "ARCHIVE_SIGNATURES__ALLOW_FETCHING": "true",
            "ARCHIVE_SIGNATURES__TRUST_ROOTS": json.dumps([str(pki.trust_roots_path)]),
            "ARCHIVE_SIGNATURES__TSA_URL": pki.tsa_url,
            "ARCHIVE_SIGNATURES__REVOCATION_MODE": "require",
            "ARCHIVE_DIGITISATION__KEY_DIR": str(self.key_dir),
            **(extra_env or {}),
        })
        for holder in ("org_vptu", "org_btctu"):
            bound = self.aenv.invoke("agents", "bind-cert", pki.identifier(holder),
                                     str(pki.cert_path(holder)))
            assert bound.exit_code == 0, bound.output
        write_org_keys(pki, self.key_dir)
        self.web = WebArchive(self.aenv)
        self.clerk = self.web.add_user("clerk", "clerk", fonds=("PHONG-01",))

    def close(self) -> None:
        self.web.close()
        self.aenv.close()

    @property
    def instance(self):
        return self.web.instance

    def principal(self, username: str = "clerk", method: str = "totp"):
        from archive.users import get_user, principal_for

        with self.web.db() as db:
            return principal_for(get_user(db, username), method)

    def service(self, principal=None):
        from ingest.digitise import DigitisationService

        inst = self.instance
        return DigitisationService(inst.settings, inst.catalog, inst.store,
                                   principal=principal or self.principal(), clock=inst.clock)

    def stored_original(self, record_id: str) -> bytes:
        from archive.records import open_original

        with self.web.db() as db:
            _, stream = open_original(db, self.instance.store, self.web.operator, record_id)
            with stream:
                return stream.read()

    def audit(self, action: str) -> list[AuditEntry]:
        with self.web.db() as db:
            return list(db.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                   .order_by(AuditEntry.seq)))


@pytest.fixture(params=["local-sqlite", "s3-postgresql"])
def dig_env(request, tmp_path, pki):
    env = DigEnv(request.param, tmp_path, request, pki)
    yield env
    env.close()


@pytest.fixture
def local_dig(request, tmp_path, pki):
    env = DigEnv("local-sqlite", tmp_path, request, pki)
    yield env
    env.close()


def page_image(path: Path, fmt: str, text: int, size=(620, 877)) -> Path:
    """A scanned page: white with black bars that differ per page (lossless formats)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB" if fmt != "TIFF" else "L", size, "white")
    draw = ImageDraw.Draw(image)
    for i in range(text % 7 + 3):
        draw.rectangle((40, 60 + 40 * i, 40 + 60 * (i + text % 5 + 1), 80 + 40 * i),
                       fill="black")
    # Lossless either way; LZW keeps a TIFF page small.
    image.save(path, fmt, dpi=(150, 150), **({"compression": "tiff_lzw"} if fmt == "TIFF"
                                             else {}))
    return path


def scan_pages(folder: Path, specs=(("PNG", 1), ("PNG", 2), ("TIFF", 3))) -> list:
    from ingest.digitise import ScanSource

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt, n in specs:
        path = page_image(folder / f"trang-{n}.{fmt.lower()}", fmt, n)
        out.append(ScanSource(path, path.name))
    return out


def metadata(**overrides) -> dict:
    data = {"date": ORIGINAL_DATE, "number_symbol": "45-QĐ/TU", "page_count": 3,
            "summary": "Quyết định xử lý trên giấy trong thời gian sự cố"}
    return sample_metadata(**{**data, **overrides})


def pdf_pages(data: bytes) -> int:
    from pyhanko.pdf_utils.reader import PdfFileReader

    return int(PdfFileReader(io.BytesIO(data), strict=False).root["/Pages"]["/Count"])


# ---- the copy: archived, signed, linked, original date kept -----------------------------

def test_three_pages_are_digitised_signed_and_linked(dig_env, pki):
    pages = scan_pages(dig_env.aenv.tmp_path / "scan")
    result = dig_env.service().digitise(
        pages, metadata(), "form", paper_reference="SỔ-ĐẾN-1998/0457",
        paper_description="Bản gốc giấy, 3 tờ", holder="Kho lưu trữ Văn phòng Tỉnh ủy")
    assert result.status == "archived", result
    assert result.pages == 3 and result.organisation == ORG
    assert result.certificate_sha256 == pki.fingerprint("org_vptu")

    # The archive's own check, at ingest: valid, and signed by the organisation.
    assert result.signatures["verdict"] == "valid"
    assert result.signatures["policy"]["ok"] and \
        result.signatures["policy"]["required"] == ["organisation"]
    assert [(s["role"], s["agent"], s["verdict"]) for s in result.signatures["signers"]] == \
        [("organisation", ORG, "valid")]

    # The bytes stored are exactly the signed PDF, with the three pages.
    stored = dig_env.stored_original(result.record_id)
    assert hashlib.sha256(stored).hexdigest() == result.signed_sha256
    assert len(stored) == result.signed_size and pdf_pages(stored) == 3

    with dig_env.web.db() as db:
        record = db.get(Record, result.record_id)
        assert record.origin == "digitised"
        assert record.doc_date == date.fromisoformat(ORIGINAL_DATE)
        paper = db.get(PaperOriginal, record.paper_original_id)
        assert (paper.reference, paper.holder, paper.status) == (
            "SỔ-ĐẾN-1998/0457", "Kho lưu trữ Văn phòng Tỉnh ủy", "active")
        event = db.scalar(select(Event).where(Event.record_id == record.id,
                                              Event.event_type == "digitization"))
        assert event.outcome == "success" and event.agent == "user:clerk"
        sources = event.data["sources"]
        assert [s["name"] for s in sources] == ["trang-1.png", "trang-2.png", "trang-3.tiff"]
        assert [s["sha256"] for s in sources] == [
            hashlib.sha256(p.path.read_bytes()).hexdigest() for p in pages]
        assert event.data["certificate_sha256"] == pki.fingerprint("org_vptu")
        assert event.data["paper_reference"] == "SỔ-ĐẾN-1998/0457"
    entries = dig_env.audit("record.digitise")
    assert len(entries) == 1 and entries[0].actor == "user:clerk"
    assert entries[0].detail["signed_sha256"] == result.signed_sha256

    # Must show: the stored copy validates as the organisation's signature through
    # the archive's own check.
    copy = dig_env.aenv.tmp_path / "copy.pdf"
    copy.write_bytes(stored)
    checked = dig_env.aenv.invoke("signatures", "check", str(copy), "--json")
    assert checked.exit_code == 0, checked.output
    report = json.loads(checked.stdout)
    assert report["verdict"] == "valid"
    [sig] = report["signatures"]
    assert sig["signer"]["fingerprint"] == pki.fingerprint("org_vptu")
    assert sig["timestamp"]["present"]


def test_a_second_copy_of_the_same_paper_links_to_the_same_original(local_dig):
    first = local_dig.service().digitise(
        scan_pages(local_dig.aenv.tmp_path / "a", (("PNG", 1),)), metadata(page_count=1),
        "form", paper_reference="HS-12/1998")
    second = local_dig.service().digitise(
        scan_pages(local_dig.aenv.tmp_path / "b", (("PNG", 4),)),
        metadata(page_count=1, number_symbol="46-QĐ/TU"), "form",
        paper_reference="HS-12/1998")
    with local_dig.web.db() as db:
        papers = list(db.scalars(select(PaperOriginal)))
        assert len(papers) == 1
        linked = {r.id for r in db.scalars(select(Record).where(
            Record.paper_original_id == papers[0].id))}
    assert linked == {first.record_id, second.record_id}
    assert len(local_dig.audit("paper.register")) == 1


def test_a_pdf_scan_with_a_qr_code_to_its_record(local_dig):
    from ingest.demo import make_pdf

    scan = local_dig.aenv.tmp_path / "scan.pdf"
    scan.write_bytes(make_pdf(["BAN GIAY (TEST)", "Quyet dinh 45-QD/TU"]))
    from ingest.digitise import ScanSource

    result = local_dig.service().digitise(
        [ScanSource(scan, scan.name)], metadata(page_count=1), "form",
        paper_reference="SỔ-ĐẾN-1998/0999", qr=True)
    assert result.status == "archived" and result.pages == 1
    assert result.qr_url.endswith(f"/records/{result.record_id}")
    stored = local_dig.stored_original(result.record_id)
    assert stored.startswith(scan.read_bytes())  # the scan's bytes kept, then updates
    assert qr_matrix_in(stored) == expected_matrix(result.qr_url)
    assert result.signatures["verdict"] == "valid"


def expected_matrix(url: str) -> list[list[bool]]:
    import segno

    return [[bool(v) for v in row] for row in segno.make(url, error="m").matrix_iter(
        scale=1, border=2)]


def qr_matrix_in(pdf: bytes) -> list[list[bool]]:
    """The QR modules as drawn on page 1: the grid of filled squares of the stamp."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    page = PdfFileReader(io.BytesIO(pdf), strict=False).root["/Pages"]["/Kids"][0]
    contents = page["/Contents"]
    streams = contents if isinstance(contents, list) else [contents]
    text = b"\n".join(s.get_object().data for s in streams).decode("latin-1")
    boxes = [tuple(map(float, m)) for m in re.findall(
        r"([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) re", text.split("0 0 0 rg", 1)[1])]
    module = boxes[0][2]
    background = [tuple(map(float, m)) for m in re.findall(
        r"([\d.]+) ([\d.]+) ([\d.]+) ([\d.]+) re f\n0 0 0 rg", text)][0]
    left, bottom, size = background[0], background[1], background[2]
    n = round(size / module)
    grid = [[False] * n for _ in range(n)]
    for x, y, _, _ in boxes:
        grid[n - 1 - round((y - bottom) / module)][round((x - left) / module)] = True
    return grid


def test_revoking_the_paper_original_revokes_its_digitised_copy(local_dig):
    """R-REVOKE-1 / R-CONV-1: the copy follows its paper original; a revoked paper
    original is not digitised again."""
    from archive.revocation import revoke_paper_original

    copy = local_dig.service().digitise(
        scan_pages(local_dig.aenv.tmp_path / "a", (("PNG", 1),)), metadata(page_count=1),
        "form", paper_reference="HS-THU-HOI")
    local_dig.web.add_user("pheduyet", "approver")
    approver = local_dig.principal("pheduyet")
    with local_dig.web.db() as db:
        revoke_paper_original(db, approver, "HS-THU-HOI",
                              reason="bản giấy bị hủy bỏ hiệu lực", form="quyết định",
                              legal_basis="Điều 15")
    with local_dig.web.db() as db:
        assert db.get(Record, copy.record_id).status == "revoked"
        paper = db.scalar(select(PaperOriginal).where(
            PaperOriginal.reference == "HS-THU-HOI"))
        assert paper.status == "revoked"
    shown = local_dig.aenv.json("paper", "show", "HS-THU-HOI")
    assert shown["status"] == "revoked" and shown["copies"][0]["status"] == "revoked"
    with pytest.raises(Refused, match="HS-THU-HOI' is revoked"):
        local_dig.service().digitise(
            scan_pages(local_dig.aenv.tmp_path / "b", (("PNG", 2),)),
            metadata(page_count=1, number_symbol="47-QĐ/TU"), "form",
            paper_reference="HS-THU-HOI")


# ---- refusals -----------------------------------------------------------------------------

def test_a_password_only_clerk_is_refused_and_audited(local_dig):
    pages = scan_pages(local_dig.aenv.tmp_path / "scan", (("PNG", 1),))
    weak = local_dig.principal(method="password")
    with pytest.raises(AccessDenied, match="password-only"):
        local_dig.service(weak).digitise(pages, metadata(page_count=1), "form",
                                         paper_reference="HS-1")
    denied = [e for e in local_dig.audit("record.ingest") if e.outcome == "denied"]
    assert [(e.actor, e.detail["reason"][:30]) for e in denied] == [
        ("user:clerk", "a password-only login may not ")]
    assert _counts(local_dig) == (0, 0)


def test_other_roles_may_not_digitise(local_dig):
    local_dig.web.add_user("kiemtoan", "auditor")
    pages = scan_pages(local_dig.aenv.tmp_path / "scan", (("PNG", 1),))
    with pytest.raises(AccessDenied, match="role auditor"):
        local_dig.service(local_dig.principal("kiemtoan")).digitise(
            pages, metadata(page_count=1), "form", paper_reference="HS-1")
    assert any(e.actor == "user:kiemtoan" and e.outcome == "denied"
               for e in local_dig.audit("record.ingest"))


def test_a_missing_organisation_key_is_refused_naming_the_file(local_dig):
    pages = scan_pages(local_dig.aenv.tmp_path / "scan", (("PNG", 1),))
    with pytest.raises(Refused) as caught:
        local_dig.service().digitise(pages, metadata(page_count=1, issuing_org=ORG2),
                                     "form", paper_reference="HS-2")
    assert str(local_dig.key_dir / f"{ORG2}.key.pem") in caught.value.message
    assert str(local_dig.key_dir / f"{ORG2}.cert.pem") in caught.value.message
    assert _counts(local_dig) == (0, 0)


def test_an_unbound_organisation_certificate_is_refused(local_dig, pki):
    # The key folder holds ORG2's key under ORG2's name, but its certificate is
    # unbound once the registry binding is revoked... instead: a certificate of the
    # wrong organisation under ORG's name.
    write_org_keys(pki, local_dig.key_dir, holder="org_btctu", identifier=ORG)
    pages = scan_pages(local_dig.aenv.tmp_path / "scan", (("PNG", 1),))
    with pytest.raises(Refused, match=f"bound to {ORG2}, not to the organisation {ORG}"):
        local_dig.service().digitise(pages, metadata(page_count=1), "form",
                                     paper_reference="HS-3")
    assert _counts(local_dig) == (0, 0)


@pytest.mark.parametrize("case", ["truncated", "garbage", "gif", "pdf_and_image",
                                  "encrypted_pdf", "empty"])
def test_bad_scans_are_refused_before_signing(local_dig, case):
    from PIL import Image

    from ingest.digitise import ScanSource

    folder = local_dig.aenv.tmp_path / "bad"
    folder.mkdir()
    good = page_image(folder / "good.png", "PNG", 1)
    if case == "truncated":
        data = good.read_bytes()
        bad = folder / "broken.png"
        bad.write_bytes(data[: len(data) // 2])
        files, message = [good, bad], "broken.png: the image is corrupt or truncated"
    elif case == "garbage":
        bad = folder / "noise.tiff"
        bad.write_bytes(b"II*\x00" + bytes(range(256)) * 8)
        files, message = [bad], "noise.tiff: "
    elif case == "gif":
        bad = folder / "page.gif"
        Image.new("P", (100, 100)).save(bad, "GIF")
        files, message = [bad], "page.gif: GIF images are not accepted"
    elif case == "empty":
        bad = folder / "blank.jpg"
        bad.write_bytes(b"")
        files, message = [good, bad], "blank.jpg: the file is empty"
    elif case == "pdf_and_image":
        from ingest.demo import make_pdf

        bad = folder / "scan.pdf"
        bad.write_bytes(make_pdf(["x"]))
        files, message = [bad, good], "a PDF scan comes alone"
    else:
        from ingest.demo import make_pdf
        from tests.pki.factories import encrypt

        bad = folder / "locked.pdf"
        bad.write_bytes(encrypt(make_pdf(["x"])))
        files, message = [bad], "locked.pdf: the PDF is encrypted"
    with pytest.raises(InputError) as caught:
        local_dig.service().digitise([ScanSource(f, f.name) for f in files],
                                     metadata(page_count=1), "form", paper_reference="HS-4")
    assert message in caught.value.message
    assert _counts(local_dig) == (0, 0)


def test_an_absurd_image_size_is_refused(local_dig):
    from PIL import Image

    from ingest.digitise import ScanSource

    big = local_dig.aenv.tmp_path / "huge.png"
    Image.new("1", (50_000, 20)).save(big, "PNG")
    with pytest.raises(InputError, match="not a page scan"):
        local_dig.service().digitise([ScanSource(big, big.name)], metadata(page_count=1),
                                     "form", paper_reference="HS-5")


def test_normal_ingest_of_an_organisation_only_decision_is_still_refused(local_dig,
                                                                         signed_pdfs):
    """The organisation-only policy is for digitised copies alone (R-SIG-1)."""
    target = local_dig.aenv.tmp_path / "org-only.pdf"
    shutil.copyfile(signed_pdfs.path("org_t"), target)
    target.with_name(target.name + ".json").write_text(
        json.dumps(sample_metadata(), ensure_ascii=False), encoding="utf-8")
    result = local_dig.aenv.invoke("ingest", str(target), "--json")
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)["results"][0]["report"]
    assert report["policy"]["required"] == ["person", "organisation"]
    assert "person_signature_missing" in {p["code"] for p in report["policy"]["problems"]}


def _counts(env) -> tuple[int, int]:
    with env.web.db() as db:
        return (len(list(db.scalars(select(Record.id)))),
                len(list(db.scalars(select(PaperOriginal.id)))))


# ---- a PKCS#11 token (SoftHSM2) -------------------------------------------------------------

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN, PIN = "archive-test", "564738"


def _softhsm_token(folder: Path, pki, monkeypatch) -> None:
    """A SoftHSM2 token holding ORG's key (imported) and certificate, in ``folder``."""
    from tests.services.common import unavailable

    util = shutil.which("softhsm2-util")
    if util is None or not Path(SOFTHSM_MODULE).is_file():
        unavailable("SoftHSM2", "softhsm2 is not installed (scripts/system-deps.sh)")
    (folder / "tokens").mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n",
                    encoding="utf-8")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    run = {"check": True, "capture_output": True, "env": {"SOFTHSM2_CONF": str(conf)}}
    subprocess.run([util, "--init-token", "--free", "--label", TOKEN, "--so-pin", "1234",
                    "--pin", PIN], **run)
    key = folder / "org.key.pem"
    key.write_bytes(pki.key_pem("org_vptu"))
    subprocess.run([util, "--import", str(key), "--token", TOKEN, "--label", ORG,
                    "--id", "0a01", "--pin", PIN], **run)
    key.unlink()
    import pkcs11
    from pkcs11 import Attribute, CertificateType, ObjectClass

    token = pkcs11.lib(SOFTHSM_MODULE).get_token(token_label=TOKEN)
    with token.open(user_pin=PIN, rw=True) as session:
        session.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
            Attribute.TOKEN: True, Attribute.LABEL: ORG, Attribute.ID: bytes.fromhex("0a01"),
            Attribute.VALUE: pki.cert_der("org_vptu"),
            Attribute.SUBJECT: pki.cert("org_vptu").subject.dump()})


def test_signing_with_a_pkcs11_token(request, tmp_path, pki, monkeypatch):
    """The organisation's key on a PKCS#11 token (SoftHSM2): no key file anywhere; the
    certificate comes from the token, the CA chain from the key folder."""
    _softhsm_token(tmp_path / "hsm", pki, monkeypatch)
    pin_file = tmp_path / "hsm" / "pin"
    pin_file.write_text(PIN + "\n", encoding="utf-8")
    env = DigEnv("local-sqlite", tmp_path, request, pki, extra_env={
        "ARCHIVE_DIGITISATION__PKCS11_MODULE": SOFTHSM_MODULE,
        "ARCHIVE_DIGITISATION__PKCS11_TOKEN_LABEL": TOKEN,
        "ARCHIVE_DIGITISATION__PKCS11_PIN_FILE": str(pin_file)})
    request.addfinalizer(env.close)
    for name in ("key", "cert"):  # only the chain stays in the key folder
        (env.key_dir / f"{ORG}.{name}.pem").unlink()
    result = env.service().digitise(scan_pages(tmp_path / "scan", (("PNG", 1), ("PNG", 2))),
                                    metadata(page_count=2), "form", paper_reference="HSM-1")
    assert result.status == "archived"
    assert result.certificate_sha256 == pki.fingerprint("org_vptu")
    assert [(s["role"], s["agent"], s["verdict"]) for s in result.signatures["signers"]] == \
        [("organisation", ORG, "valid")]
    with env.web.db() as db:
        event = db.scalar(select(Event).where(Event.event_type == "digitization"))
        assert event.data["key_source"] == "pkcs11"
    # ORG2 has no key on the token: refused, naming the label expected.
    with pytest.raises(Refused, match=f"labelled '{ORG2}'"):
        env.service().digitise(scan_pages(tmp_path / "scan2", (("PNG", 3),)),
                               metadata(page_count=1, issuing_org=ORG2), "form",
                               paper_reference="HSM-2")


# ---- the API and the web pages -------------------------------------------------------------

API = "/api/v1"


def _post_scan(client, files: list[Path], meta, *, headers=None, **fields):
    data = {"files": [(io.BytesIO(f.read_bytes()), f.name) for f in files],
            "metadata": meta if isinstance(meta, str) else json.dumps(meta), **fields}
    return client.post(f"{API}/digitisations", data=data, headers=headers or {},
                       content_type="multipart/form-data")


def test_api_digitisation_and_the_record_page(dig_env):
    web = dig_env.web
    pages = [s.path for s in scan_pages(dig_env.aenv.tmp_path / "api",
                                        (("PNG", 1), ("TIFF", 2)))]
    client = web.login("clerk")
    csrf = {"X-CSRFToken": web.csrf(client)}
    created = _post_scan(client, pages, metadata(page_count=2), headers=csrf,
                         paper_ref="SỔ-ĐẾN-1998/0600", holder="Kho 1", qr="true")
    assert created.status_code == 201, created.data
    body = created.get_json()
    assert body["status"] == "archived" and body["pages"] == 2
    assert [s["name"] for s in body["sources"]] == ["trang-1.png", "trang-2.tiff"]
    assert body["signatures"]["verdict"] == "valid" and body["qr_url"]
    rid = body["record_id"]
    assert hashlib.sha256(client.get(f"{API}/records/{rid}/original").data).hexdigest() == \
        body["signed_sha256"]

    detail = client.get(f"{API}/records/{rid}").get_json()
    assert detail["origin"] == "digitised"
    assert detail["paper_original"] == {"reference": "SỔ-ĐẾN-1998/0600", "status": "active"}

    page = client.get(f"/records/{rid}").get_data(as_text=True)
    assert 'id="digitisation"' in page and "SỔ-ĐẾN-1998/0600" in page
    assert 'id="paper-status"' in page and "Kho 1" in page

    # Bad input is a problem document naming the sender's file, not a server path.
    broken = dig_env.aenv.tmp_path / "api" / "hong.png"
    broken.write_bytes(pages[0].read_bytes()[:100])
    bad = _post_scan(client, [broken], metadata(page_count=1), headers=csrf,
                     paper_ref="HS-X")
    assert bad.status_code == 400 and bad.mimetype == "application/problem+json"
    assert "hong.png: the image is corrupt" in bad.get_json()["detail"]
    assert str(dig_env.instance.settings.staging_dir) not in bad.get_json()["detail"]
    assert _post_scan(client, pages, "{no", headers=csrf, paper_ref="HS-X").status_code == 400
    assert _post_scan(client, pages, metadata(), headers=csrf).status_code == 400


def test_api_refuses_tokens_and_password_only_sessions(local_dig):
    web = local_dig.web
    page = scan_pages(local_dig.aenv.tmp_path / "api", (("PNG", 1),))[0].path
    token = web.token(["records:ingest", "records:read"])
    by_token = _post_scan(web.client(), [page], metadata(page_count=1), paper_ref="HS-T",
                          headers={"Authorization": f"Bearer {token}"})
    assert by_token.status_code == 403
    assert "not with an API token" in by_token.get_json()["detail"]

    web.enrol("clerk")
    weak = web.login("clerk", browse_only=True)
    refused = _post_scan(weak, [page], metadata(page_count=1), paper_ref="HS-T",
                         headers={"X-CSRFToken": web.csrf(weak)})
    assert refused.status_code == 403 and "password-only" in refused.get_json()["detail"]
    assert weak.get("/digitise").status_code == 403
    denied = [(e.actor, e.action) for e in local_dig.audit("record.ingest")
              if e.outcome == "denied"]
    assert ("user:clerk", "record.ingest") in denied
    assert any(a.startswith("token:") for a, _ in denied)
    assert _counts(local_dig) == (0, 0)


def test_web_form_digitises_a_scan(local_dig):
    from tests.accounts import csrf_of

    web = local_dig.web
    client = web.login("clerk")
    form = client.get("/digitise")
    assert form.status_code == 200 and b'id="digitise-form"' in form.data
    page = scan_pages(local_dig.aenv.tmp_path / "web", (("PNG", 5),))[0].path
    meta = metadata(page_count=1)
    sent = client.post("/digitise", data={
        "csrf_token": csrf_of(form.data), "files": [(io.BytesIO(page.read_bytes()),
                                                     page.name)],
        "paper_ref": "SỔ-ĐẾN-1998/0700", "holder": "Kho 3", **{
            k: str(v) for k, v in meta.items()}}, content_type="multipart/form-data")
    assert sent.status_code == 200, sent.data
    assert b'id="digitise-result"' in sent.data and "SỔ-ĐẾN-1998/0700".encode() in sent.data
    missing = client.post("/digitise", data={"csrf_token": csrf_of(form.data),
                                             "paper_ref": "X", **{k: str(v) for k, v
                                                                  in meta.items()}},
                          content_type="multipart/form-data")
    assert missing.status_code == 400 and b'id="digitise-error"' in missing.data


# ---- the CLI ------------------------------------------------------------------------------

def _cli_clerk(env, name: str) -> tuple[str, str]:
    account = env.web.add_user(name, "clerk", fonds=("PHONG-01",))
    return account.username, env.web.next_code(account)


def test_cli_digitize_then_paper_list_and_show(dig_env):
    folder = dig_env.aenv.tmp_path / "cli-scan"
    pages = [s.path for s in scan_pages(folder, tuple(("PNG", n) for n in range(1, 7)))]
    meta = folder / "meta.json"
    meta.write_text(json.dumps(metadata(page_count=6), ensure_ascii=False), encoding="utf-8")
    user, code = _cli_clerk(dig_env, "vanthu1")
    result = dig_env.aenv.invoke("digitize", *map(str, pages), "--metadata", str(meta),
                                 "--paper-ref", "SỔ-ĐẾN-1998/0500", "--holder", "Kho 2",
                                 "--paper-description", "Quyết định bản giấy",
                                 "--as", user, "--code", code, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "archived" and data["pages"] == 6
    assert data["signatures"]["verdict"] == "valid"
    assert [s["name"] for s in data["sources"]] == list(map(str, pages))

    listed = dig_env.aenv.json("paper", "list")
    assert listed["total"] == 1
    assert listed["paper_originals"][0]["reference"] == "SỔ-ĐẾN-1998/0500"
    assert listed["paper_originals"][0]["copies"] == 1
    shown = dig_env.aenv.json("paper", "show", "SỔ-ĐẾN-1998/0500")
    assert shown["holder"] == "Kho 2" and shown["status"] == "active"
    assert [c["record_id"] for c in shown["copies"]] == [data["record_id"]]
    assert shown["copies"][0]["date"] == ORIGINAL_DATE
    missing = dig_env.aenv.invoke("paper", "show", "KHÔNG-CÓ")
    assert missing.exit_code == 2 and "no paper original" in missing.stderr
    assert [e.outcome for e in dig_env.audit("paper.view")] == ["ok", "not_found"]
    human = dig_env.aenv.invoke("paper", "show", "SỔ-ĐẾN-1998/0500")
    assert data["record_id"] in human.stdout


def test_cli_refusals_and_exit_codes(local_dig):
    folder = local_dig.aenv.tmp_path / "cli-bad"
    folder.mkdir()
    good = page_image(folder / "p1.png", "PNG", 1)
    bad = folder / "p2.png"
    bad.write_bytes(good.read_bytes()[:200])
    meta = folder / "meta.json"
    meta.write_text(json.dumps(metadata(page_count=2)), encoding="utf-8")
    user, code = _cli_clerk(local_dig, "vanthu2")
    corrupt = local_dig.aenv.invoke("digitize", str(good), str(bad), "--metadata", str(meta),
                                    "--paper-ref", "HS-9", "--as", user, "--code", code)
    assert corrupt.exit_code == 2 and "corrupt or truncated" in corrupt.stderr
    user, code = _cli_clerk(local_dig, "vanthu3")
    meta.write_text(json.dumps(metadata(page_count=1, issuing_org=ORG2)), encoding="utf-8")
    no_key = local_dig.aenv.invoke("digitize", str(good), "--metadata", str(meta),
                                   "--paper-ref", "HS-9", "--as", user, "--code", code,
                                   "--json")
    assert no_key.exit_code == 3, no_key.output
    assert f"{ORG2}.key.pem" in json.loads(no_key.stdout)["message"]
    wrong_code = local_dig.aenv.invoke("digitize", str(good), "--metadata", str(meta),
                                       "--paper-ref", "HS-9", "--as", "vanthu3",
                                       "--code", "000000")
    assert wrong_code.exit_code == 3 and "one-time code was not accepted" in wrong_code.stderr
    assert _counts(local_dig) == (0, 0)


# ---- the DEMO archive -----------------------------------------------------------------------

@pytest.mark.slow
def test_a_demo_clerk_digitises_with_the_demo_organisation_keys(tmp_path):
    """`make run`: the DEMO agencies' keys are written at first run (0600, DEMO-marked),
    so the DEMO clerk can digitise (docs/demo.md)."""
    import os
    import stat

    from click.testing import CliRunner

    from cli.main import cli
    from ingest.demo_pki.server import served

    data = tmp_path / "var"
    env = {k: None for k in os.environ if k.startswith("ARCHIVE_")}
    env["ARCHIVE_ARCHIVE__DATA_DIR"] = str(data)

    def run(*args, config=None):
        return CliRunner().invoke(cli, list(args), catch_exceptions=False,
                                  env={**env, "ARCHIVE_CONFIG": str(config) if config
                                       else None})

    assert run("init", "--if-needed").exit_code == 0
    seeded = run("demo", "seed", "--if-empty", "--json")
    assert seeded.exit_code == 0, seeded.output
    summary = json.loads(seeded.stdout)
    config = Path(summary["config"])
    keys = data / "keys" / "organisations"
    assert sorted(Path(k).name for k in summary["organisation_keys"]) == [
        f"{ORG}.key.pem", f"{ORG2}.key.pem"]
    for key in keys.glob("*.key.pem"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "DEMO" in (keys / "DEMO-KEYS.txt").read_text(encoding="utf-8")

    page = page_image(tmp_path / "trang-1.png", "PNG", 1)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(metadata(page_count=1)), encoding="utf-8")
    code = json.loads(run("demo", "code", "vanthu", "--json", config=config).stdout)["code"]
    with served(data / "demo-pki"):  # the DEMO OCSP, CRLs and TSA, as `make run` serves
        done = run("digitize", str(page), "--metadata", str(meta), "--paper-ref",
                   "DEMO-SỔ-1", "--as", "vanthu", "--code", code, "--json", config=config)
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["status"] == "archived" and result["organisation"] == ORG
    assert result["signatures"]["verdict"] == "valid"


def test_the_policy_override_is_an_explicit_subset_of_the_roles():
    """The gate's override (digitised copies) replaces the type's roles, nothing else."""
    from archive.settings import load_settings
    from archive.signature_policy import SignedBy, evaluate_policy

    settings = load_settings(environ={})
    org_only = [SignedBy("organisation", ORG, (ORG,), True, "Sig org")]
    assert not evaluate_policy("quyet-dinh", ORG, org_only, settings).ok
    assert evaluate_policy("quyet-dinh", ORG, org_only, settings,
                           required=("organisation",)).ok
    other_org = [SignedBy("organisation", ORG2, (ORG2,), True, "Sig org2")]
    assert not evaluate_policy("quyet-dinh", ORG, other_org, settings,
                               required=("organisation",)).ok
    unknown = evaluate_policy("khong-co", ORG, org_only, settings, required=("organisation",))
    assert not unknown.ok and unknown.problems[0].code == "unknown_document_type"
    with pytest.raises(ValueError):
        evaluate_policy("quyet-dinh", ORG, org_only, settings, required=("seal",))
