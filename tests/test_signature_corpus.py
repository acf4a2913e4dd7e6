"""The public PDF signature corpus through `archive signatures check` (R-SIG-2, issue #3 item 6).

One test per row of ``../shared/conformance/pdf-signatures/cases.csv``: the row's trust
roots are given with ``--trust-root``, pyHanko's frozen validation time with ``--at``.
No network here: the corpus files name public OCSP/CRL/CA URLs that cannot be reached, so
every check runs ``--offline`` (only what the PDF carries) with
``signatures.revocation_mode = "soft-fail"`` (missing revocation data is a warning, not a
verdict). A case whose outcome differs from its category is listed in ``DEVIATIONS`` with
the reason, and the test asserts the outcome we do give, so any change is noticed.
"""

from __future__ import annotations

import csv
import json
import time

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.conftest import CONFORMANCE

CORPUS = CONFORMANCE / "pdf-signatures"
ENV = {"ARCHIVE_SIGNATURES__REVOCATION_MODE": "soft-fail",
       "ARCHIVE_SIGNATURES__ALLOW_FETCHING": "false", "ARCHIVE_CONFIG": ""}


def _rows() -> list[dict]:
    if not (CORPUS / "cases.csv").is_file():
        return []
    with open(CORPUS / "cases.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


ROWS = _rows()


def _args(row: dict) -> list[str]:
    """Trust roots and validation time of the row's validation_context column."""
    vc = row["validation_context"]
    args = []
    if "Testing Authority" in vc:
        args += ["--trust-root", str(CORPUS / "pyhanko/trust/testing-ca-roots.pem")]
    if "costa-rica" in vc:
        args += ["--trust-root", str(CORPUS / "dss/trust/costa-rica-CA-RAIZ-NACIONAL-v2.pem")]
    if "certipost" in vc:
        args += ["--trust-root",
                 str(CORPUS / "dss/trust/certipost-e-trust-primary-qualified-ca.pem")]
    if row["corpus"] == "siva":
        args += ["--trust-root", str(CORPUS / "siva/trust/TESTofEECertificationCentreRootCA.crt")]
    if row["corpus"] == "pyhanko":
        # pyHanko's tests freeze the clock: 2021-01-05 for the Adobe files, else 2020-11-01
        args += ["--at", "2021-01-05T00:00:00Z" if "2021-01-05" in vc else "2020-11-01T00:00:00Z"]
    return args


def _check(row: dict) -> tuple[dict, str, int]:
    result = CliRunner().invoke(
        cli, ["signatures", "check", str(CORPUS / row["file"]), "--offline", "--json",
              *_args(row)], env=ENV)
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        result.exception
    return json.loads(result.stdout), result.stderr, result.exit_code


def _codes(report: dict) -> set[str]:
    codes = {p["code"] for p in report["problems"]}
    for s in report["signatures"]:
        codes |= {p["code"] for p in s["problems"]}
    return codes


# category -> (verdicts accepted, codes that must be present (any of), codes that must not)
EXPECT: dict[str, tuple[set[str], set[str], set[str]]] = {
    "INTACT_TRUSTED": ({"valid"}, set(), set()),
    "LTV_OK": ({"valid"}, set(), set()),
    "INTACT_UNTRUSTED": ({"invalid"}, {"untrusted"}, {"integrity", "modified", "coverage"}),
    # DSS "INTACT": intact and valid asserted, trust not (no anchors upstream)
    "INTACT": ({"invalid", "valid"}, set(), {"integrity", "modified", "coverage"}),
    "TAMPERED": ({"invalid"}, {"integrity", "coverage"}, set()),
    "NONSTANDARD_COVERAGE": ({"invalid"}, {"coverage"}, set()),
    "MODIFIED_AFTER_SIGNING_ALLOWED": ({"valid", "invalid", "indeterminate"}, set(),
                                       {"modified", "integrity", "coverage"}),
    "MODIFIED_AFTER_SIGNING_DISALLOWED": ({"invalid"}, {"modified", "coverage"}, set()),
    "REVOKED": ({"invalid"}, {"revoked"}, set()),
    "EXPIRED": ({"invalid"}, {"expired"}, set()),
    "CRYPTO_WEAK": ({"invalid"}, {"weak"}, set()),
    "MALFORMED_REJECT": ({"malformed"}, {"signature_malformed", "malformed"}, set()),
    "NO_SIGNATURE": ({"unsigned"}, {"unsigned"}, set()),
    "REFERENCE": ({"unsigned"}, {"unsigned"}, set()),
    # upstream: INDETERMINATE / TOTAL-FAILED; never valid here
    "INDETERMINATE": ({"invalid", "indeterminate"}, set(), set()),
    "INVALID_POLICY": ({"invalid", "indeterminate"}, set(), set()),
    # several signatures, at least one not valid
    "MIXED": ({"invalid", "indeterminate"}, set(), set()),
    # profile detection: asserted through the timestamps below, not the verdict
    "PROFILE_B": ({"valid", "invalid", "indeterminate"}, set(), {"integrity", "modified"}),
    "PROFILE_T": ({"valid", "invalid", "indeterminate"}, set(), {"integrity", "modified"}),
    "PROFILE_LT": ({"valid", "invalid", "indeterminate"}, set(), {"integrity", "modified"}),
    "PROFILE_LTA": ({"valid", "invalid", "indeterminate"}, set(), {"integrity", "modified"}),
}

_LIVE_EE = ("chains to the live Estonian SK CAs (ESTEID-SK 2011/2015, KLASS3-SK 2010) whose root "
            "is not in the corpus (only the EE trusted list XML, which we do not parse)")
_EXPIRED_NOW = ("validated now: no SiVa/DSS trust anchor covers its signature timestamp, so "
                "the signing time is unproven and the long-expired certificate is judged today")
_NEG_RSA = ("the signing certificate's RSA modulus is DER-encoded as a negative integer (old "
            "ESTEID cards); asn1crypto cannot size the key inside pyHanko's algorithm policy, "
            "so we refuse the signature as unreadable")
_HYBRID_DTS = ("a document timestamp with /Type /Sig; pyHanko refuses it, we report it as an "
               "invalid document timestamp (warning)")

# file -> (why, verdict we give, codes we must report). Asserted, so changes are noticed.
DEVIATIONS: dict[str, tuple[str, str, set[str]]] = {
    "dss/files/pdf-signed-corrupted.pdf": (
        "the corrupted bytes break the PDF syntax itself (dictionary read error), so the "
        "file is refused as malformed before any signature is read: still refused",
        "malformed", {"malformed"}),
    "dss/files/pades-signed-annot-added.pdf": (
        "an annotation added after an approval signature: DSS allows it; pyHanko's default "
        "DocMDP policy for signed documents allows only form filling, and the archive follows "
        "it (an annotation can overlay signed content)", "invalid", {"modified"}),
    "dss/files/dss-2236/hide.pdf": (
        "shadow attack 'hide': pyHanko cannot parse the hidden revision's stream (no "
        "'endstream'), so the signature is refused as unreadable: still refused",
        "malformed", {"signature_malformed"}),
    "dss/files/dss-2236/replace.pdf": (
        "shadow attack 'replace': pyHanko's difference analysis does not flag the replaced "
        "content stream, but the file is still invalid here (untrusted, expired, no "
        "non-repudiation) - a known limit: integrity alone would not catch it",
        "invalid", {"untrusted"}),
    "dss/files/pdf-spoofing-attack.pdf": (
        "the spoofed revision carries a malformed /Encrypt entry; pyHanko refuses to read the "
        "file: refused as malformed", "malformed", {"malformed"}),
    "dss/files/doc-firmado-LT.pdf": (
        "trusted anchor given, but the signature timestamp's TSA chain does not reach it "
        "offline; validated now the 2019 certificate is expired", "invalid", {"expired"}),
    "dss/files/PAdES-LT.pdf": (
        "DSS asserts the structure only (no trust anchors): untrusted and expired here; no "
        "disallowed-change or integrity finding on the first two signatures",
        "invalid", {"untrusted"}),
    "dss/files/pades-ltv.pdf": (
        "a DSS /VRI entry points at a missing object; pyHanko's strict object lookup refuses "
        "the signature as unreadable", "malformed", {"signature_malformed"}),
    "dss/files/Test.signed_Certipost-2048-SHA512.extended-LTA.pdf": (
        "the 2013 signature uses SHA-1 in its CMS (weak) and the signer certificate has "
        "expired; the archive timestamps do not rescue weak crypto", "invalid", {"weak"}),
    "siva/files/PdfValidSingleSignature.pdf": (_LIVE_EE, "invalid", {"untrusted"}),
    "siva/files/hellopades-pades-lt-sha256-sign.pdf": (_NEG_RSA, "malformed",
                                                        {"signature_malformed"}),
    "siva/files/pades-baseline-lta-live-aj.pdf": (_LIVE_EE, "invalid", {"untrusted"}),
    "siva/files/hellopades-lt1-lt2-Serial.pdf": (
        "SHA-1 / RSA-1024 era test signatures: weak crypto (archive policy: RSA >= 2048, no "
        "SHA-1), and " + _EXPIRED_NOW, "invalid", {"weak"}),
    "siva/files/pades_lt_two_valid_sig.pdf": (_LIVE_EE, "invalid", {"untrusted"}),
    "siva/files/pades_lt_revoked.pdf": (
        "revocation is proven upstream by the live EE OCSP responder; offline, with the live "
        "chain unknown, we can only say untrusted (still refused)", "invalid", {"untrusted"}),
    "siva/files/hellopades-lt-sha256-rsa1024-not-expired.pdf": (
        "RSA-1024: weak under the archive's policy (SiVa POLv3 accepted it); " + _EXPIRED_NOW,
        "invalid", {"weak"}),
    "siva/files/hellopades-lt-sha256-rsa2048-7d.pdf": (
        _EXPIRED_NOW + "; its timestamp/OCSP chain uses a weak key", "invalid", {"expired"}),
    "siva/files/hellopades-lt-sha256-ocsp-15min1s.pdf": (_NEG_RSA, "malformed",
                                                          {"signature_malformed"}),
    "siva/files/hellopades-lt-sha256-rsa1024.pdf": (
        "RSA-1024: weak under the archive's policy (SiVa accepted it under POLv3)",
        "invalid", {"weak"}),
    "siva/files/hellopades-lt-sha256-rsa2047.pdf": (
        "RSA-2047 < 2048 bits: weak under the archive's policy (SiVa accepted it)",
        "invalid", {"weak"}),
    "siva/files/hellopades-lt-sha256-ec256.pdf": (
        "ECDSA P-256 signer fine, but " + _EXPIRED_NOW + " and the test chain is weak",
        "invalid", {"expired"}),
    "siva/files/hellopades-lt-sha512.pdf": (_NEG_RSA, "malformed", {"signature_malformed"}),
    "siva/files/hellopades-lt-sha1.pdf": (_NEG_RSA, "malformed", {"signature_malformed"}),
    "siva/files/hellopades-pades-b-sha256-auth.pdf": (
        _NEG_RSA + " (refused either way: upstream TOTAL-FAILED)", "malformed",
        {"signature_malformed"}),
    "siva/files/hellopades-pades-b-lt-sha256-auth.pdf": (
        "signature [0] refused (" + _NEG_RSA + "); [1] untrusted offline: " + _LIVE_EE,
        "malformed", {"signature_malformed", "untrusted"}),
    "siva/files/hellopades-lt-b.pdf": (
        _NEG_RSA + "; both signatures refused (upstream: 1 of 2 valid)", "malformed",
        {"signature_malformed"}),
    "siva/files/hellopades-pades-lt-sha256-auth.pdf": (
        _NEG_RSA + " (refused either way: upstream INDETERMINATE)", "malformed",
        {"signature_malformed"}),
    "siva/files/hellopades-lt-sha256-ocsp-28h.pdf": (
        _NEG_RSA + " (refused either way: upstream 0/1 valid)", "malformed",
        {"signature_malformed"}),
}


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_case(row):
    report, stderr, code = _check(row)
    codes = _codes(report)
    verdict = report["verdict"]
    assert code == (0 if verdict == "valid" else 1)
    assert "Traceback" not in stderr
    if row["file"] in DEVIATIONS:
        why, expected_verdict, expected_codes = DEVIATIONS[row["file"]]
        assert why
        assert verdict == expected_verdict, (why, codes)
        assert expected_codes <= codes, (why, codes)
        return
    verdicts, any_of, none_of = EXPECT[row["category"]]
    assert verdict in verdicts, (row["category"], codes)
    if any_of:
        assert codes & any_of, (row["category"], codes)
    assert not codes & none_of, (row["category"], codes)
    if row["category"] == "MIXED" or int(row["byteranges_found"] or 0) > 1:
        assert report["signatures"] or report["document_timestamps"]
    if row["category"] in ("PROFILE_T", "PROFILE_LT", "PROFILE_LTA"):
        assert report["signatures"][0]["timestamp"]["present"]
    if row["category"] == "PROFILE_B":
        assert not report["signatures"][0]["timestamp"]["present"]
    if row["category"] == "PROFILE_LTA":
        assert report["document_timestamps"]


def test_deviations_name_corpus_files():
    files = {r["file"] for r in ROWS}
    assert set(DEVIATIONS) <= files


def test_whole_corpus_quick_and_never_a_traceback():
    """Every corpus file, one process: no exception escapes, nothing on stderr looks like
    a traceback, and the whole corpus takes reasonable time."""
    if not ROWS:
        pytest.skip("conformance corpus not present")
    started = time.perf_counter()
    for row in ROWS:
        report, stderr, code = _check(row)
        assert code in (0, 1)
        assert "Traceback" not in stderr and "Error" not in stderr, (row["file"], stderr)
        assert report["verdict"] in ("valid", "invalid", "indeterminate", "unsigned",
                                     "malformed")
    assert time.perf_counter() - started < 120
