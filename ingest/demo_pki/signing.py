"""Sign PDFs with a simulated PKI's keys (pyHanko): PAdES signatures (ETSI.CAdES.detached),
"B-T" with a signature timestamp from the PKI's TSA, "B-B" without (R-SIG-2, R-TS-1)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from io import BytesIO

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_signer import PdfCMSSignedAttributes

from ingest.demo_pki.authority import PKI
from ingest.demo_pki.config import BACKDATE

# Room for the CMS blob: an ECDSA signature with its chain and a timestamp token is
# ~4 KB; reserving a fixed size skips pyHanko's estimate (a dummy signing) per signature.
SIGNATURE_BYTES = 12 * 1024


def _field_name(pdf: bytes, holder: str) -> str:
    reader = PdfFileReader(BytesIO(pdf), strict=False)
    taken = {name for name, _, _ in fields.enumerate_sig_fields(reader, filled_status=None)}
    name, n = f"Sig_{holder}", 1
    while name in taken:
        n += 1
        name = f"Sig_{holder}_{n}"
    return name


def sign(pdf: bytes, pki: PKI, holder: str, *, timestamp: bool = True,
         backdated: bool = False, password: str | None = None) -> bytes:
    """Add one PAdES signature by ``holder`` as an incremental update.

    ``timestamp`` asks the PKI's TSA for a signature timestamp (B-T). ``backdated``
    makes it a signature made ``config.BACKDATE`` ago: the claimed signing time and
    the TSA's clock are both set back (the TSA at ``pki.backdated_tsa_url``).
    """
    writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    if password is not None:
        writer.encrypt(password)
    tag = pki.profile.tag
    meta = signers.PdfSignatureMetadata(
        field_name=_field_name(pdf, holder), subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256", reason=f"Ký số văn bản ({tag})", location=f"Tỉnh ủy ({tag})")
    timestamper = pki.timestamper(backdated=backdated) if timestamp else None
    pdf_signer = signers.PdfSigner(meta, signer=pki.signer(holder), timestamper=timestamper)
    signing_time = datetime.now(UTC) - BACKDATE if backdated else None
    return asyncio.run(_sign(pdf_signer, writer, signing_time)).getvalue()


async def _sign(pdf_signer: signers.PdfSigner, writer, signing_time: datetime | None):
    # pyHanko's interrupted-signing steps (as PdfSigner.async_sign_pdf runs them), so that
    # a back-dated signature can claim its own signing time.
    session = pdf_signer.init_signing_session(writer)
    if signing_time is not None:
        session.system_time = signing_time
    validation_info = await session.perform_presign_validation(writer)
    tbs = session.prepare_tbs_document(validation_info=validation_info,
                                       bytes_reserved=SIGNATURE_BYTES)
    digest, output = tbs.digest_tbs_document()
    post = await tbs.perform_signature(
        document_digest=digest.document_digest,
        pdf_cms_signed_attrs=PdfCMSSignedAttributes(signing_time=session.system_time))
    await post.post_signature_processing(output)
    return output
