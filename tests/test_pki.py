"""The test PKI behaves like the real one: OCSP, CRLs and the TSA answer over HTTP on
loopback, and pyHanko's validation of the factories' PDFs gives the expected verdicts
(R-SIG-2, R-SIG-3, R-TS-1)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import urllib.request
from datetime import UTC, datetime, timedelta
from io import BytesIO

import pytest

pytestmark = pytest.mark.services


@pytest.fixture(autouse=True)
def _quiet_revocation_tracebacks(caplog):
    # pyHanko logs a traceback for a revoked or untrusted signer: that is logging only.
    caplog.set_level(logging.CRITICAL, logger="pyhanko")


def _http(url: str, body: bytes | None = None, **headers: str) -> bytes:
    """GET (or POST ``body``) over plain HTTP to the loopback test PKI."""
    assert url.startswith("http://127.0.0.1:")
    request = urllib.request.Request(url, data=body, headers=headers)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.read()


def _post(url: str, body: bytes, content_type: str) -> bytes:
    return _http(url, body, **{"Content-Type": content_type})


def _get(url: str) -> bytes:
    return _http(url)


def _ocsp_status(pki, name: str):
    from asn1crypto import ocsp

    cert, issuer = pki.cert(name), pki.cert("interm")
    request = ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": {
        "hash_algorithm": {"algorithm": "sha256"},
        "issuer_name_hash": issuer.subject.sha256,
        "issuer_key_hash": issuer.public_key.sha256,
        "serial_number": cert.serial_number,
    }}]}})
    response = ocsp.OCSPResponse.load(_post(pki.ocsp_url, request.dump(),
                                            "application/ocsp-request"))
    assert response["response_status"].native == "successful"
    basic = response["response_bytes"]["response"].parsed
    single = basic["tbs_response_data"]["responses"][0]
    assert single["cert_id"]["serial_number"].native == cert.serial_number
    return single["cert_status"]


def _signatures(data: bytes, password: str | None = None):
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(BytesIO(data))
    if password is not None:
        reader.decrypt(password)
    return reader.embedded_signatures


def _validate(pki, data: bytes, password: str | None = None, **context):
    from pyhanko.sign.validation import validate_pdf_signature

    return [validate_pdf_signature(sig, pki.validation_context(**context))
            for sig in _signatures(data, password)]


# ---- the PKI itself --------------------------------------------------------------------

def test_certificates_carry_identifiers_and_the_served_urls(pki):
    an = pki.cert("an")
    assert an.subject.native["common_name"] == "Nguyễn Văn An"
    assert an.subject.native["serial_number"] == "001085012345"
    assert pki.cert("org_vptu").subject.native["serial_number"] == "000.00.00.H41"
    assert pki.cert("org_vptu").subject.native["organization_name"] == "Văn phòng Tỉnh ủy"
    assert an.ocsp_urls == [pki.ocsp_url]
    assert [p.url for p in an.crl_distribution_points] == [pki.crl_url("interm")]
    assert pki.ocsp_url.startswith("http://127.0.0.1:")
    assert an.key_usage_value.native >= {"digital_signature", "non_repudiation"}
    assert "non_repudiation" not in pki.cert("no_non_repudiation").key_usage_value.native
    assert pki.cert("untrusted").issuer == pki.cert("root2").subject
    # the archive binds certificates by fingerprint, never by name
    assert pki.fingerprint("an") == hashlib.sha256(an.dump()).hexdigest()
    assert pki.fingerprint("org_vptu") != pki.fingerprint("org_vptu_revoked")
    assert len({pki.fingerprint(name) for name in pki.names}) == len(pki.names)
    assert pki.trust_roots_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert pki.trust_roots_path.read_bytes() == pki.trust_roots_pem
    now = datetime.now(UTC)
    assert pki.cert("expired").not_valid_after < now
    assert pki.cert("not_yet_valid").not_valid_before > now


def test_ocsp_answers_good_and_revoked(pki):
    before = pki.requests.ocsp
    assert _ocsp_status(pki, "an").name == "good"
    assert _ocsp_status(pki, "org_vptu").name == "good"
    revoked = _ocsp_status(pki, "revoked")
    assert revoked.name == "revoked"
    when = revoked.chosen["revocation_time"].native
    assert abs(when - (pki.now - timedelta(days=30))) < timedelta(seconds=1)
    assert revoked.chosen["revocation_reason"].native == "key_compromise"
    later = _ocsp_status(pki, "revoked_later")
    assert later.name == "revoked"
    assert later.chosen["revocation_time"].native == pki.now - timedelta(days=1)
    assert pki.requests.ocsp == before + 4


def test_crl_is_served_signed_and_lists_the_revoked_serials(pki):
    from asn1crypto import crl
    from cryptography import x509 as pyca_x509
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    before = pki.requests.crl
    der = _get(pki.crl_url("interm"))
    assert pki.requests.crl == before + 1
    listed = {entry["user_certificate"].native
              for entry in crl.CertificateList.load(der)["tbs_cert_list"]["revoked_certificates"]}
    assert {pki.cert(n).serial_number
            for n in ("revoked", "revoked_later", "org_vptu_revoked")} <= listed
    assert pki.cert("an").serial_number not in listed
    parsed = pyca_x509.load_der_x509_crl(der)
    interm_key = load_der_public_key(pki.cert("interm").public_key.dump())
    assert parsed.is_signature_valid(interm_key)
    assert parsed.next_update_utc > datetime.now(UTC)
    assert crl.CertificateList.load(_get(pki.crl_url("root")))  # the CA's own CRL


@pytest.mark.parametrize("backdated", [False, True], ids=["live", "backdated"])
def test_tsa_returns_a_valid_token_over_a_digest(pki, backdated):
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data

    digest = hashlib.sha256(b"kho luu tru so").digest()
    before = pki.requests.tsa
    token = asyncio.run(pki.timestamper(backdated=backdated).async_timestamp(digest, "sha256"))
    assert pki.requests.tsa == before + 1
    signed_data = token["content"]
    info = signed_data["encap_content_info"]["content"].parsed
    assert info["message_imprint"]["hashed_message"].native == digest
    context = pki.validation_context()

    async def validate():
        try:
            return await validate_tst_signed_data(signed_data, context, lambda _algo: digest)
        finally:
            await context.aclose()

    status = asyncio.run(validate())
    assert status["intact"] and status["valid"]
    assert status["trust_problem_indic"] is None and status["validation_path"] is not None
    assert status["signing_cert"].dump() == pki.cert_der("tsa")
    expected = datetime.now(UTC) - (timedelta(days=2) if backdated else timedelta(0))
    assert abs(info["gen_time"].native - expected) < timedelta(minutes=1)


def test_a_forged_clock_header_is_ignored(pki):
    """Nobody outside the server can move the live TSA's clock (certomancer's fake-time
    header is dropped); only /backdated is set back, and it serves the TSA only."""
    from asn1crypto import algos, tsp

    request = tsp.TimeStampReq({"version": 1, "message_imprint": {
        "hash_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "hashed_message": hashlib.sha256(b"x").digest()}, "cert_req": True})
    reply = tsp.TimeStampResp.load(_http(pki.tsa_url, request.dump(), **{
        "Content-Type": "application/timestamp-query",
        "X-Certomancer-Fake-Time": "2001-01-01T00:00:00+00:00"}))
    gen_time = reply["time_stamp_token"]["content"]["encap_content_info"]["content"] \
        .parsed["gen_time"].native
    assert abs(gen_time - datetime.now(UTC)) < timedelta(minutes=1)
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(pki.url_prefix + "/backdated" + pki.crl_url("interm")[len(pki.url_prefix):])
    assert refused.value.code == 404
    refused.value.close()


# ---- pyHanko's verdicts on the factories' PDFs ------------------------------------------

@pytest.mark.parametrize("case", ["person", "person_t", "person_org", "person_org_t",
                                  "org_t", "cuong_org2_t", "metadata_updated_after_signing",
                                  "encrypted"])
def test_good_signatures_are_intact_trusted_and_valid(pki, signed_pdfs, case):
    from tests.pki.factories import CASES, ENCRYPTED_USER_PASSWORD

    password = ENCRYPTED_USER_PASSWORD if case == "encrypted" else None
    statuses = _validate(pki, signed_pdfs.bytes(case), password)
    assert len(statuses) == max(1, len(CASES[case].signers))
    for status in statuses:
        assert status.intact and status.valid and status.trusted, status.pretty_print_details()
        assert not status.revoked
        assert status.bottom_line
        assert (status.timestamp_validity is not None) == CASES[case].timestamp
        if status.timestamp_validity is not None:
            assert status.timestamp_validity.trusted


def test_person_and_organisation_signatures_are_told_apart_by_certificate(pki, signed_pdfs):
    first, second = _signatures(signed_pdfs.bytes("person_org_t"))
    assert hashlib.sha256(first.signer_cert.dump()).hexdigest() == pki.fingerprint("an")
    assert hashlib.sha256(second.signer_cert.dump()).hexdigest() == pki.fingerprint("org_vptu")


def test_revoked_expired_and_untrusted_certificates(pki, signed_pdfs):
    from pyhanko.sign.ades.report import AdESIndeterminate

    (revoked,) = _validate(pki, signed_pdfs.bytes("revoked"))
    assert revoked.intact and revoked.revoked and not revoked.bottom_line
    (untrusted,) = _validate(pki, signed_pdfs.bytes("untrusted"))
    assert untrusted.intact and not untrusted.trusted and not untrusted.revoked
    assert untrusted.trust_problem_indic == AdESIndeterminate.NO_CERTIFICATE_CHAIN_FOUND
    (expired,) = _validate(pki, signed_pdfs.bytes("expired"))
    assert expired.intact and not expired.trusted and not expired.bottom_line
    assert expired.trust_problem_indic == AdESIndeterminate.OUT_OF_BOUNDS_NO_POE
    (early,) = _validate(pki, signed_pdfs.bytes("not_yet_valid"))
    assert early.intact and not early.bottom_line
    _, org = _validate(pki, signed_pdfs.bytes("person_revoked_org_t"))
    assert org.revoked and not org.bottom_line


def test_signer_without_non_repudiation_is_not_accepted(pki, signed_pdfs):
    (status,) = _validate(pki, signed_pdfs.bytes("no_non_repudiation"))
    assert status.intact and not status.bottom_line


def test_tampered_and_modified_documents(pki, signed_pdfs):
    (tampered,) = _validate(pki, signed_pdfs.bytes("tampered"))
    assert not tampered.intact and not tampered.bottom_line
    for case in ("page_overwritten_after_signing", "page_added_after_signing"):
        (status,) = _validate(pki, signed_pdfs.bytes(case))
        assert status.intact and status.trusted
        assert not status.docmdp_ok and not status.bottom_line, case
    (allowed,) = _validate(pki, signed_pdfs.bytes("metadata_updated_after_signing"))
    assert allowed.docmdp_ok and allowed.bottom_line
    assert signed_pdfs.bytes("metadata_updated_after_signing") != signed_pdfs.bytes("person_t")


@pytest.mark.parametrize("case", ["truncated", "broken_xref", "garbage"])
def test_malformed_files_raise_pdf_errors(signed_pdfs, case):
    from pyhanko.pdf_utils.misc import PdfError

    with pytest.raises(PdfError):
        _signatures(signed_pdfs.bytes(case))


def test_encrypted_file_needs_its_password(signed_pdfs):
    from pyhanko.pdf_utils.misc import PdfError

    with pytest.raises(PdfError):
        _signatures(signed_pdfs.bytes("encrypted"))


def test_revocation_after_a_timestamped_signature_spares_it(pki, signed_pdfs):
    """R-SIG-3: validated at the time its timestamp proves, a signature made before the
    revocation is good; one made (timestamped) after it is revoked."""
    (before,) = _validate(pki, signed_pdfs.bytes("signed_before_revocation"))
    (after,) = _validate(pki, signed_pdfs.bytes("revoked_before_signing"))
    revoked_at = pki.now - timedelta(days=1)
    assert before.timestamp_validity.trusted and after.timestamp_validity.trusted
    assert before.timestamp_validity.timestamp < revoked_at < after.timestamp_validity.timestamp
    assert before.revoked and after.revoked  # validated "now", both are revoked
    for status, revoked in ((before, False), (after, True)):
        (at_ts,) = _validate(pki, signed_pdfs.bytes("signed_before_revocation" if not revoked
                                                    else "revoked_before_signing"),
                             moment=status.timestamp_validity.timestamp,
                             retroactive_revinfo=True)
        assert at_ts.revoked is revoked
        assert at_ts.bottom_line is not revoked


def test_validation_really_fetched_ocsp_crl_and_timestamps(pki, signed_pdfs):
    data = signed_pdfs.bytes("person_t")  # made before the counters are read
    counts = pki.requests.snapshot()
    _validate(pki, data)
    after = pki.requests.snapshot()
    for url in (pki.ocsp_url, pki.crl_url("root")):
        path = url[len(pki.url_prefix):]
        assert after[path] > counts[path], path
    before_sign = pki.requests.tsa
    signed_pdfs.signed("binh", timestamp=True, text="fresh signature for the TSA counter")
    assert pki.requests.tsa == before_sign + 1


def test_timings_are_reasonable(pki, signed_pdfs):
    import time

    assert pki.setup_seconds is not None and pki.setup_seconds < 10
    started = time.perf_counter()
    signed_pdfs.signed("cuong", timestamp=True, text="timing")
    assert time.perf_counter() - started < 5
