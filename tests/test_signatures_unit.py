"""check_pdf on hostile input, the registry port and offline re-validation (R-SIG-2,
R-SIG-3, R-TS-1). Fast: no network, corpus files with pyHanko's frozen time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from ingest.signature_report import Evidence
from ingest.signatures import TrustConfig, Validator, load_trust_roots, revalidate_offline
from tests.conftest import CONFORMANCE

CORPUS = CONFORMANCE / "pdf-signatures"
TRUSTED = CORPUS / "pyhanko/files/certified-with-indirect-refs-in-dir.pdf"
AT = datetime(2020, 11, 1, tzinfo=UTC)
MINIMAL = (b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
           b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
           b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 3 3]>>endobj\n"
           b"xref\n0 4\n0000000000 65535 f \n0000000009 00000 n \n0000000052 00000 n \n"
           b"0000000101 00000 n \ntrailer<</Size 4/Root 1 0 R>>\nstartxref\n160\n%%EOF\n")


def _validator(**kw) -> Validator:
    roots = load_trust_roots([CORPUS / "pyhanko/trust/testing-ca-roots.pem"]) \
        if CORPUS.is_dir() else ()
    return Validator(TrustConfig(trust_roots=roots, revocation_mode="soft-fail",
                                 allow_fetching=False, **kw))


def _encrypted() -> bytes:
    from io import BytesIO

    from pyhanko.pdf_utils.crypt import StandardSecurityHandler
    from pyhanko.pdf_utils.writer import PdfFileWriter

    w = PdfFileWriter()
    w.encrypt = None
    w.security_handler = StandardSecurityHandler.build_from_pw("owner", "user")
    w._encrypt = w.add_object(w.security_handler.as_pdf_object())
    out = BytesIO()
    w.write(out)
    return out.getvalue()


HOSTILE = {
    "not a pdf": b"PK\x03\x04 this is a zip file",
    "empty": b"",
    "truncated": MINIMAL[:70],
    "broken xref": MINIMAL.replace(b"startxref\n160", b"startxref\n99999"),
    "garbage xref": MINIMAL.replace(b"0000000052 00000 n", b"00000zz052 00000 n"),
    "wrong escapes": MINIMAL.replace(b"/Type/Page/", b"/Type/Pa#zzge(\\9\\q/"),
    "recursive": MINIMAL.replace(b"/Kids[3 0 R]", b"/Kids[2 0 R]"),
    "deep nesting": MINIMAL.replace(b"/MediaBox[0 0 3 3]", b"/X" + b"[" * 50000 + b"]" * 50000),
    "signature field junk": MINIMAL.replace(
        b"/Type/Catalog", b"/Type/Catalog/AcroForm<</Fields[<</FT/Sig/T(x)/V<</Type/Sig"
        b"/Filter/Adobe.PPKLite/SubFilter/adbe.pkcs7.detached/ByteRange[0 1 2 3]"
        b"/Contents<00ff>>>>>]>>"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_input_is_a_finding_never_an_exception(name):
    with _validator() as v:
        started = time.perf_counter()
        report = v.check(HOSTILE[name])
        assert time.perf_counter() - started < 10
    assert report.verdict in ("malformed", "unsigned")
    d = report.to_dict()
    assert all(p["message"] and p["message_vi"] for p in d["problems"])


def test_encrypted_pdf_refused_clearly():
    with _validator() as v:
        report = v.check(_encrypted())
    assert report.verdict == "malformed" and "encrypted" in report.codes()


def test_size_limit():
    with _validator(max_pdf_bytes=100) as v:
        report = v.check(MINIMAL)
    assert report.verdict == "malformed" and "too_large" in report.codes()


def test_missing_file_is_input_error(tmp_path):
    from archive.errors import InputError

    with _validator() as v, pytest.raises(InputError):
        v.check(tmp_path / "nope.pdf")


@dataclass
class FakeBinding:
    identifier: str
    kind: str
    name: str
    revoked_at: datetime | None = None
    authorised_for: list[str] = field(default_factory=list)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="conformance corpus not present")
def test_report_fields_registry_and_offline_revalidation():
    calls = []

    def registry(fingerprint, at):
        calls.append((fingerprint, at))
        return FakeBinding("000.00.00.H41", "organisation", "Văn phòng Tỉnh ủy")

    with _validator() as v:
        report = v.check(TRUSTED, at=AT, registry=registry)
    assert report.verdict == "valid", report.to_dict()
    sig = report.signatures[0]
    assert sig.signer.common_name == "Lord Testerino" and len(sig.signer.fingerprint) == 64
    assert sig.signer.pem.startswith("-----BEGIN CERTIFICATE-----")
    assert sig.coverage == "entire_file" and sig.modification_level == "none"
    assert sig.key_usage["non_repudiation"] and sig.validity_at_signing == "ok"
    assert sig.bound_agent["identifier"] == "000.00.00.H41" and sig.role == "organisation"
    assert calls[0][0] == sig.signer.fingerprint
    assert report.evidence.certificates
    assert "evidence" not in report.to_dict()
    stored = report.evidence.to_dict()  # what the AIP keeps (base64 DER)
    again = revalidate_offline(TRUSTED.read_bytes(), stored,
                               load_trust_roots([CORPUS / "pyhanko/trust/testing-ca-roots.pem"]),
                               AT, revocation_mode="soft-fail")
    assert again.verdict == "valid"
    assert Evidence.from_dict(stored).certificates == report.evidence.certificates


@pytest.mark.skipif(not CORPUS.is_dir(), reason="conformance corpus not present")
def test_registry_revocation_without_timestamp_invalidates():
    """R-SIG-3: no trusted timestamp proves the signature came before the revocation."""
    def registry(fingerprint, at):
        return FakeBinding("012345678901", "person", "Nguyễn Văn A",
                           revoked_at=AT - timedelta(days=1))

    with _validator() as v:
        report = v.check(TRUSTED, at=AT, registry=registry)
    assert report.verdict == "invalid" and "registry_revoked" in report.codes()


def test_validator_shares_fetchers_until_ttl():
    clock = [0.0]
    with Validator(TrustConfig(), cache_ttl=60, monotonic=lambda: clock[0]) as v:
        first = v.fetchers()
        assert v.fetchers() is first
        clock[0] = 61
        assert v.fetchers() is not first
