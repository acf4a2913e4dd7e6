"""Signed PDFs for tests, made with pyHanko and the test PKI's real services.

Pure functions work on bytes (``sign`` from ``ingest.demo_pki.signing``, ``update_info``,
``overwrite_page``, ...); ``SignedPdfFactory`` caches what they produce in a folder for a
whole session and names every case the archive must judge (``CASES``). Signatures are
PAdES (ETSI.CAdES.detached); "B-T" means a signature timestamp from the PKI's TSA, "B-B"
none (R-SIG-2, R-TS-1).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import copy_into_new_writer

from ingest.demo_pki.signing import sign
from tests.pki.authority import TestPKI

ENCRYPTED_USER_PASSWORD = "user-secret"
ENCRYPTED_OWNER_PASSWORD = "owner-secret"


def base_pdf(text: str = "Quyết định số 12-QĐ/TU (TEST)") -> bytes:
    """A small valid one-page PDF (the repo's own demo generator)."""
    from ingest.demo import make_pdf

    return make_pdf(["DANG CONG SAN VIET NAM - TEST DOCUMENT", text,
                     "Noi dung van ban dung cho kiem thu chu ky so."])


# ---- changes after signing -------------------------------------------------------------

def update_info(pdf: bytes, title: str = "Văn bản đã tiếp nhận (TEST)") -> bytes:
    """An incremental update that only changes the document information dictionary
    (title, modification date): pyHanko's difference analysis allows it."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    writer.document_meta.title = title
    writer.document_meta.keywords = ["tiep-nhan", "test"]
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def overwrite_page(pdf: bytes, text: str = "NOI DUNG DA BI THAY DOI") -> bytes:
    """An incremental update that replaces page 1's content: not allowed after signing."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    stream = generic.StreamObject(
        stream_data=f"BT /F1 12 Tf 72 770 Td ({text}) Tj ET".encode("ascii"))
    page[generic.NameObject("/Contents")] = writer.add_object(stream)
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def add_page(pdf: bytes, text: str = "TRANG BO SUNG SAU KHI KY") -> bytes:
    """An incremental update that appends a page: not allowed after signing."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    stream = writer.add_object(generic.StreamObject(
        stream_data=f"BT /F1 12 Tf 72 770 Td ({text}) Tj ET".encode("ascii")))
    first = writer.root["/Pages"]["/Kids"][0].get_object()
    page = generic.DictionaryObject({
        generic.NameObject("/Type"): generic.NameObject("/Page"),
        generic.NameObject("/MediaBox"): first["/MediaBox"],
        generic.NameObject("/Resources"): first["/Resources"],
        generic.NameObject("/Contents"): stream,
    })
    writer.insert_page(page)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def flip_signed_byte(pdf: bytes) -> bytes:
    """Change one character of the page text, inside the first signature's byte range
    (the file still parses; only the digest no longer matches)."""
    match = re.search(rb"\(([A-Za-z])[^()]*\) Tj", pdf)
    if match is None:
        raise ValueError("no text operator to tamper with")
    at = match.start(1)
    out = bytearray(pdf)
    out[at] ^= 0x20  # swap the letter's case
    return bytes(out)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def truncate(pdf: bytes) -> bytes:
    return pdf[: len(pdf) // 2]


def break_xref(pdf: bytes) -> bytes:
    """Point every startxref at a wrong offset and garble the xref tables."""
    out = re.sub(rb"startxref\s+\d+", b"startxref\n999999999", pdf)
    return re.sub(rb"\d{10} 00000 n", b"abcdefghij 00000 n", out)


def garbage(size: int = 4096) -> bytes:
    """A PDF header followed by bytes that are no PDF at all (deterministic)."""
    body = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(size // 32))
    return b"%PDF-1.7\n" + body


def encrypt(pdf: bytes, user_password: str = ENCRYPTED_USER_PASSWORD,
            owner_password: str = ENCRYPTED_OWNER_PASSWORD) -> bytes:
    """The same document, encrypted (AES-256, PDF 2.0 standard security handler)."""
    reader = PdfFileReader(BytesIO(pdf), strict=False)
    writer = copy_into_new_writer(reader)
    writer.encrypt(owner_password, user_password)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


# ---- the named cases, cached for a session ---------------------------------------------

@dataclass(frozen=True)
class Case:
    """How to make one kind of PDF: ``signers`` in order, then ``after`` applied."""

    signers: tuple[str, ...] = ()
    timestamp: bool = True
    backdated: bool = False
    after: str = ""  # update_info | overwrite | add_page | tamper | truncate
    #                  | break_xref | garbage | encrypted
    description: str = ""


CASES: dict[str, Case] = {
    "unsigned": Case(description="no signature at all"),
    "person": Case(("an",), timestamp=False, description="person, B-B (no timestamp)"),
    "person_t": Case(("an",), description="person, B-T (signature timestamp)"),
    "person_org": Case(("an", "org_vptu"), timestamp=False,
                       description="person then organisation seal, B-B"),
    "person_org_t": Case(("an", "org_vptu"),
                         description="person then organisation seal, both B-T"),
    "org_t": Case(("org_vptu",), description="organisation seal only"),
    "binh_org_t": Case(("binh", "org_vptu"), description="Trần Thị Bình + organisation"),
    "cuong_org2_t": Case(("cuong", "org_btctu"),
                         description="Lê Văn Cường + the second agency's seal"),
    "person_revoked_org_t": Case(("an", "org_vptu_revoked"),
                                 description="person + an organisation cert revoked 30 days ago"),
    "metadata_updated_after_signing": Case(("an",), after="update_info",
                                           description="allowed update: document info "
                                                       "(title, keywords) changed after signing"),
    "page_overwritten_after_signing": Case(("an",), after="overwrite",
                                           description="disallowed: page content replaced"),
    "page_added_after_signing": Case(("an",), after="add_page",
                                     description="disallowed: page appended"),
    "tampered": Case(("an",), after="tamper", description="one signed byte changed"),
    "truncated": Case(("an",), after="truncate", description="cut in half"),
    "broken_xref": Case(("an",), after="break_xref", description="xref/startxref garbled"),
    "garbage": Case(after="garbage", description="a PDF header then noise"),
    "encrypted": Case(("an",), after="encrypted",
                      description=f"encrypted (user password {ENCRYPTED_USER_PASSWORD!r}), "
                                  "then signed by the person"),
    "revoked": Case(("revoked",), description="cert revoked 30 days ago, signed now (B-T)"),
    "revoked_before_signing": Case(("revoked_later",),
                                   description="cert revoked 1 day ago, signed now (B-T): "
                                               "the timestamp is after the revocation"),
    "signed_before_revocation": Case(("revoked_later",), backdated=True,
                                     description="signed and timestamped 2 days ago, "
                                                 "cert revoked 1 day ago"),
    "expired": Case(("expired",), description="cert expired a year ago"),
    "not_yet_valid": Case(("not_yet_valid",), description="cert valid from in 30 days"),
    "untrusted": Case(("untrusted",), description="cert from a root that is not trusted"),
    "no_non_repudiation": Case(("no_non_repudiation",),
                               description="key usage lacks non-repudiation"),
}


def make_case(case: Case, pki: TestPKI, text: str | None = None) -> bytes:
    """Produce the bytes of ``case`` (no caching)."""
    if case.after == "garbage":
        return garbage()
    pdf = base_pdf(text) if text else base_pdf()
    password = None
    if case.after == "encrypted":
        pdf, password = encrypt(pdf), ENCRYPTED_USER_PASSWORD
    for holder in case.signers:
        pdf = sign(pdf, pki, holder, timestamp=case.timestamp, backdated=case.backdated,
                   password=password)
    after = {"update_info": update_info, "overwrite": overwrite_page, "add_page": add_page,
             "tamper": flip_signed_byte, "truncate": truncate, "break_xref": break_xref}
    if case.after in after:
        pdf = after[case.after](pdf)
    return pdf


class SignedPdfFactory:
    """Signed PDFs for a session: each case is made once, kept in ``folder``."""

    def __init__(self, pki: TestPKI, folder: Path):
        self.pki = pki
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        """The file for case ``name`` (see ``CASES``), made on first use."""
        target = self.folder / f"{name}.pdf"
        with self._lock:
            if not target.exists():
                tmp = target.with_suffix(".part")
                tmp.write_bytes(make_case(CASES[name], self.pki))
                tmp.replace(target)
        return target

    def bytes(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def signed(self, *holders: str, timestamp: bool = True, backdated: bool = False,
               text: str | None = None) -> Path:
        """A document signed by ``holders`` in order (any combination), cached."""
        key = "-".join([*holders, "t" if timestamp else "b", "back" if backdated else "now",
                        _digest(text) if text else "base"])
        target = self.folder / f"signed-{key}.pdf"
        with self._lock:
            if not target.exists():
                case = Case(tuple(holders), timestamp=timestamp, backdated=backdated)
                tmp = target.with_suffix(".part")
                tmp.write_bytes(make_case(case, self.pki, text))
                tmp.replace(target)
        return target
