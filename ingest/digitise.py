"""Digitisation of paper (R-CONV-1, R-INCIDENT-1): a scan becomes a signed digitised copy.

1. The clerk must hold a strong login (R-AUTH-1: a one-time code or a certificate) and
   the right to ingest; the paper original must not be revoked.
2. The scan is one PDF, or TIFF/JPEG/PNG pages assembled losslessly into one PDF
   (img2pdf: the image data is embedded as it is, never re-encoded). Corrupt images,
   other formats and absurd sizes are refused before anything is signed.
3. An optional QR code (segno, drawn as vector squares) on the first page points at the
   record's page.
4. The archive signs the copy with the issuing organisation's key
   (``ingest.organisation_keys``: key files or a PKCS#11 token), with an RFC 3161
   signature timestamp from ``signatures.tsa_url`` when set; the certificate must be
   bound to the organisation in the registry.
5. The signed PDF goes through the normal :class:`~ingest.services.IngestService`: the
   signature gate validates it, requiring the organisation's signature only (the
   archive vouches for the copy); in the transaction that registers the record, the
   paper original is found or registered and linked (``archive.paper``), with a
   ``digitization`` event and audit entries. The document keeps its original date.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

from archive import policy
from archive.bag import safe_payload_name
from archive.certificates import lookup
from archive.clock import Clock, SystemClock
from archive.db import Catalog
from archive.errors import ArchiveError, InputError, Refused
from archive.metadata import validate_metadata
from archive.paper import (
    DigitisationFacts,
    check_may_digitise,
    check_reference,
    clean_text,
    link_digitised_copy,
)
from archive.principal import Principal
from archive.settings import Settings
from archive.storage import ObjectStore
from ingest.organisation_keys import SigningKey, organisation_keys
from ingest.services import IngestHooks, IngestService, _org_exists

IMAGE_FORMATS = {"PNG": "image/png", "TIFF": "image/tiff", "JPEG": "image/jpeg"}
MAX_PAGES = 2000
MAX_SIDE_PIXELS = 40_000  # a page of 1.7 m at 600 dpi: anything larger is not a scan
QR_SIZE_PT = 64.0  # 2.3 cm, quiet zone included
QR_MARGIN_PT = 12.0
FIELD_NAME = "Sig_digitised_copy"
Progress = Callable[[int, int], None]


@dataclass
class ScanSource:
    """One received file of the scan, as the sender named it."""

    path: Path
    name: str


@dataclass
class AssembledScan:
    pdf: bytes
    pages: int
    sources: list[dict] = field(default_factory=list)  # name, sha256, size, format, pages


@dataclass
class DigitisationResult:
    status: str  # archived | duplicate
    record_id: str
    storage_key: str
    paper_reference: str
    pages: int
    organisation: str
    certificate_sha256: str
    signed_sha256: str
    signed_size: int
    qr_url: str | None
    sources: list[dict]
    signatures: dict | None = None  # the stored signature report's verdict and signers
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# ---- 2. the scan as one PDF -----------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_image(source: ScanSource) -> tuple[str, int]:
    """The image's format and frame count, after decoding every frame (a truncated or
    corrupt file fails here, not in the archive)."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    with warnings.catch_warnings():
        # A warning while decoding a scan (corrupt EXIF, a decompression bomb) is a
        # reason to refuse it, not to archive it with a note in a log.
        warnings.simplefilter("error")
        try:
            with Image.open(source.path) as image:
                fmt = image.format or "?"
                if fmt not in IMAGE_FORMATS:
                    raise InputError(f"{source.name}: {fmt} images are not accepted; send "
                                     "a PDF or TIFF, JPEG or PNG pages")
                width, height = image.size
                if max(width, height) > MAX_SIDE_PIXELS or min(width, height) < 1:
                    raise InputError(f"{source.name}: {width}x{height} pixels is not a "
                                     f"page scan (at most {MAX_SIDE_PIXELS} pixels a side)")
                frames = 0
                for frame in ImageSequence.Iterator(image):
                    frame.load()
                    frames += 1
            with Image.open(source.path) as image:
                image.verify()  # checksums (PNG CRCs ...) the decoder may skip
        except UnidentifiedImageError as exc:
            raise InputError(f"{source.name}: not a PDF nor a TIFF, JPEG or PNG image"
                             ) from exc
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise InputError(f"{source.name}: the image is too large to be a page scan "
                             f"({exc})") from exc
        except (OSError, SyntaxError, ValueError, EOFError, Warning) as exc:
            raise InputError(f"{source.name}: the image is corrupt or truncated ({exc})"
                             ) from exc
    return fmt, frames


def _check_pdf(source: ScanSource, data: bytes) -> int:
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        if reader.encrypted:
            raise InputError(f"{source.name}: the PDF is encrypted; send it without a "
                             "password")
        pages = int(reader.root["/Pages"]["/Count"])
    except InputError:
        raise
    except (PdfError, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise InputError(f"{source.name}: not a readable PDF ({exc})") from exc
    if pages < 1:
        raise InputError(f"{source.name}: the PDF has no page")
    return pages


def assemble(sources: Sequence[ScanSource], *, max_size: int = 0,
             progress: Progress | None = None) -> AssembledScan:
    """One PDF of the scan: a PDF as it is, or the images as pages in the given order."""
    import img2pdf

    if not sources:
        raise InputError("no scan given: a PDF, or TIFF/JPEG/PNG pages")
    described = []
    total = 0
    for source in sources:
        if not source.path.is_file():
            raise InputError(f"file not found: {source.name}")
        size = source.path.stat().st_size
        if size == 0:
            raise InputError(f"{source.name}: the file is empty")
        total += size
        if max_size and total > max_size:
            raise InputError(f"the scan is larger than ingest.max_file_size ({max_size} "
                             "bytes)")
        with open(source.path, "rb") as fh:
            is_pdf = fh.read(1024).lstrip().startswith(b"%PDF-")
        described.append((source, size, is_pdf))
    if any(is_pdf for _, _, is_pdf in described):
        if len(described) > 1:
            raise InputError("a PDF scan comes alone: send one PDF, or image pages only")
        source, size, _ = described[0]
        data = source.path.read_bytes()
        pages = _check_pdf(source, data)
        if progress:
            progress(1, 1)
        return AssembledScan(data, pages, [{"name": source.name, "sha256": _sha256(
            source.path), "size": size, "format": "PDF", "pages": pages}])
    described_images = []
    pages = 0
    for done, (source, size, _) in enumerate(described, 1):
        fmt, frames = _check_image(source)
        pages += frames
        if pages > MAX_PAGES:
            raise InputError(f"more than {MAX_PAGES} pages in one scan")
        described_images.append({"name": source.name, "sha256": _sha256(source.path),
                                 "size": size, "format": fmt, "pages": frames})
        if progress:
            progress(done, len(described))
    errors = (img2pdf.ImageOpenError, img2pdf.AlphaChannelError,
              img2pdf.JpegColorspaceError, img2pdf.UnsupportedColorspaceError,
              img2pdf.NegativeDimensionError, img2pdf.PdfTooLargeError,
              img2pdf.ExifOrientationError, ValueError, OSError)
    try:
        pdf = img2pdf.convert([str(s.path) for s, _, _ in described],
                              rotation=img2pdf.Rotation.ifvalid)
    except errors as exc:
        raise InputError(f"the pages cannot be assembled into a PDF: {exc}") from exc
    return AssembledScan(pdf, pages, described_images)


# ---- 3. the QR code -------------------------------------------------------------------

def stamp_qr(pdf: bytes, url: str) -> bytes:
    """Draw a QR code of ``url`` in the bottom right corner of the first page, as an
    incremental update (the scan's bytes stay a prefix of the result)."""
    import segno
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    page_ref, _ = writer.find_page_for_modification(0)
    x0, y0, x1, _ = _media_box(page_ref.get_object())
    size = min(QR_SIZE_PT, (x1 - x0) / 3)
    qr = segno.make(url, error="m")
    rows = list(qr.matrix_iter(scale=1, border=2))
    module = size / len(rows)
    left, bottom = x1 - QR_MARGIN_PT - size, y0 + QR_MARGIN_PT
    ops = ["Q", "q", "1 1 1 rg", f"{left:.3f} {bottom:.3f} {size:.3f} {size:.3f} re f",
           "0 0 0 rg"]
    for r, row in enumerate(rows):
        y = bottom + size - (r + 1) * module
        for c, dark in enumerate(row):
            if dark:
                ops.append(f"{left + c * module:.3f} {y:.3f} {module:.3f} {module:.3f} re")
    ops += ["f", "Q"]
    before = writer.add_object(generic.StreamObject(stream_data=b"q\n"))
    after = writer.add_object(generic.StreamObject(stream_data="\n".join(ops).encode()))
    writer.add_stream_to_page(0, before, prepend=True)
    writer.add_stream_to_page(0, after)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def _media_box(page) -> list[float]:
    node = page
    for _ in range(64):  # inherited from the page tree when the page does not say
        if "/MediaBox" in node:
            return [float(v) for v in node["/MediaBox"]]
        if "/Parent" not in node:
            break
        node = node["/Parent"]
    return [0.0, 0.0, 595.0, 842.0]  # A4, the default a reader would assume


def record_url(settings: Settings, record_id: str) -> str:
    return f"{settings.renditions.public_url.rstrip('/')}/records/{record_id}"


# ---- 4. the organisation's signature ----------------------------------------------------

def sign_copy(pdf: bytes, key: SigningKey, settings: Settings, reference: str) -> bytes:
    """Sign ``pdf`` with the organisation's key (PAdES), timestamped when a TSA is set."""
    from pkcs11 import PKCS11Error as TokenError
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers
    from pyhanko.sign.general import SigningError
    from pyhanko.sign.timestamps import HTTPTimeStamper

    tsa = settings.signatures.tsa_url
    meta = signers.PdfSignatureMetadata(
        field_name=FIELD_NAME, subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
        reason=f"Bản số hoá từ bản giấy {reference} (digitised copy of the paper "
               f"original {reference})",
        location=settings.archive.system_name)
    stamper = HTTPTimeStamper(tsa, timeout=settings.signatures.fetch_timeout) if tsa else None
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    try:
        out = signers.PdfSigner(meta, signer=key.signer, timestamper=stamper).sign_pdf(
            writer, output=BytesIO())
    except (SigningError, TokenError, OSError, ValueError) as exc:
        raise Refused(f"signing the digitised copy with the key of {key.organisation} "
                      f"({key.location}) failed: {exc}") from exc
    return out.getvalue()


# ---- the use case -----------------------------------------------------------------------

class DigitisationService:
    """Digitises scans for one acting principal (a clerk with a strong login)."""

    def __init__(self, settings: Settings, catalog: Catalog, store: ObjectStore, *,
                 principal: Principal, clock: Clock | None = None, client: str = ""):
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.principal = principal
        self.clock = clock or SystemClock()
        self.client = client

    def digitise(self, sources: Sequence[ScanSource], raw_metadata: dict,
                 metadata_source: str, *, paper_reference: str,
                 paper_description: str = "", holder: str = "", qr: bool = False,
                 progress: Progress | None = None) -> DigitisationResult:
        reference, description, holder, meta = self._check(
            raw_metadata, metadata_source, paper_reference, paper_description, holder)
        org = meta.issuing_org
        with organisation_keys(self.settings).open(org) as key:
            self._check_binding(key)
            staging = self.settings.staging_dir / f"digitise-{uuid.uuid4().hex}"
            staging.mkdir(parents=True)
            try:
                scan = assemble(sources, max_size=self.settings.ingest.max_file_size,
                                progress=progress)
                record_id = str(uuid.uuid4())
                url = record_url(self.settings, record_id) if qr else None
                pdf = stamp_qr(scan.pdf, url) if url else scan.pdf
                signed = sign_copy(pdf, key, self.settings, reference)
                name = safe_payload_name(f"{Path(sources[0].name).stem or 'scan'}"
                                         "-digitised.pdf")
                path = staging / name
                path.write_bytes(signed)
                facts = DigitisationFacts(
                    paper_reference=reference, paper_description=description,
                    paper_holder=holder, pages=scan.pages, sources=scan.sources,
                    organisation=org, certificate_sha256=key.fingerprint,
                    certificate_subject=key.subject,
                    signed_sha256=hashlib.sha256(signed).hexdigest(), qr_url=url,
                    key_source=key.source, timestamped=bool(self.settings.signatures.tsa_url))
                result = self._ingest(path, raw_metadata, metadata_source, facts, record_id)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        out = DigitisationResult(
            status=result.status, record_id=result.record_id,
            storage_key=result.storage_key, paper_reference=reference, pages=scan.pages,
            organisation=org, certificate_sha256=facts.certificate_sha256,
            signed_sha256=facts.signed_sha256, signed_size=len(signed), qr_url=url,
            sources=scan.sources, message=result.message)
        if result.status == "archived":
            out.signatures = self._stored_report(result.record_id)
            out.message = (f"digitised copy of {reference} archived as record "
                           f"{result.record_id}, signed by {org}")
        return out

    def _check(self, raw_metadata, metadata_source, reference, description, holder):
        with self.catalog.unit_of_work() as session:
            # R-AUTH-1 first: who may not digitise learns nothing more (denial audited).
            policy.require(self.principal, policy.INGEST, client=self.client)
            reference = check_reference(reference)
            check_may_digitise(session, self.principal, reference, client=self.client)
            description = clean_text(description, "paper description", 2000)
            holder = clean_text(holder, "holder", 500)
            meta = validate_metadata(
                raw_metadata, self.settings, source=metadata_source,
                today=self.clock.now().date(),
                org_registered=lambda ident: _org_exists(session, ident))
            policy.require(self.principal, policy.INGEST, policy.RecordFacts(
                id="(new)", classification=meta.classification, fonds=meta.fonds,
                issuing_org=meta.issuing_org), client=self.client)
        return reference, description, holder, meta

    def _check_binding(self, key: SigningKey) -> None:
        """The certificate must be the organisation's in the registry, else its
        signature counts for no one and the copy would be refused after signing."""
        with self.catalog.unit_of_work() as session:
            binding = lookup(session, key.fingerprint, datetime.now(UTC))
        hint = (f"bind it with `archive agents bind-cert {key.organisation} "
                f"<certificate file>`")
        if binding is None:
            raise Refused(f"the signing certificate of {key.organisation} ({key.location}, "
                          f"SHA-256 {key.fingerprint}) is not bound to it in the registry: "
                          + hint)
        if binding.kind != "organisation" or binding.identifier != key.organisation:
            raise Refused(f"the signing certificate at {key.location} is bound to "
                          f"{binding.identifier}, not to the organisation {key.organisation}")
        if binding.revoked_at is not None:
            raise Refused(f"the signing certificate of {key.organisation} (SHA-256 "
                          f"{key.fingerprint}) was revoked in the registry at "
                          f"{binding.revoked_at.isoformat()}")

    def _ingest(self, path: Path, raw_metadata, metadata_source, facts, record_id):
        def check(session, meta) -> None:
            check_may_digitise(session, self.principal, facts.paper_reference,
                               client=self.client)

        def register(session, record) -> None:
            link_digitised_copy(session, self.principal, record, facts,
                                client=self.client, clock=self.clock)

        service = IngestService(self.settings, self.catalog, self.store,
                                principal=self.principal, clock=self.clock)
        hooks = IngestHooks(check=check, register=register, record_id=record_id,
                            required_signatures=("organisation",))
        try:
            return service.ingest(path, raw_metadata, metadata_source, hooks=hooks)
        finally:
            service.close()

    def _stored_report(self, record_id: str) -> dict | None:
        """The verdict of the archive's own signature check, from the stored AIP."""
        from archive.records import signature_report

        try:
            with self.catalog.unit_of_work() as session:
                report = signature_report(session, self.store, self.principal, record_id,
                                          client=self.client, clock=self.clock)
        except ArchiveError:
            return None
        if not report:
            return None
        sigs = report.get("signatures") or {}
        return {"verdict": sigs.get("verdict"), "accepted": report.get("accepted"),
                "policy": report.get("policy"),
                "signers": [{"role": s.get("role"), "verdict": s.get("verdict"),
                             "agent": (s.get("bound_agent") or {}).get("identifier"),
                             "field": s.get("field_name")}
                            for s in sigs.get("signatures") or []]}
