"""Signed ingest end to end (R-SIG-1, R-SIG-2, R-SIG-3, R-TS-1) against the test PKI
served over HTTP on loopback: OCSP, CRLs and the TSA are really fetched.

Each document goes through `archive ingest` with signatures.enforce on: valid and
complete documents are archived with their report, validation material and an archive
timestamp; every other case is refused (exit 3) with a stored return-to-sender report
naming the reason.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ORG, ORG2, ArchiveEnv, _base_env, sample_metadata

pytestmark = pytest.mark.services

PERSONS = ("an", "binh", "revoked_later", "revoked", "expired", "not_yet_valid",
           "untrusted", "no_non_repudiation")


def _signed_env(kind: str, tmp_path, request, pki) -> ArchiveEnv:
    from tests.conftest import make_archive_env

    aenv = make_archive_env(kind, tmp_path, request)
    aenv.env.update({
        "ARCHIVE_SIGNATURES__ENFORCE": "true",
        "ARCHIVE_SIGNATURES__ALLOW_FETCHING": "true",
        "ARCHIVE_SIGNATURES__TRUST_ROOTS": json.dumps([str(pki.trust_roots_path)]),
        "ARCHIVE_SIGNATURES__TSA_URL": pki.tsa_url,
        "ARCHIVE_SIGNATURES__REVOCATION_MODE": "require",
    })
    for name in PERSONS:
        assert aenv.invoke("agents", "add-person", pki.identifier(name),
                           pki.holders[name].label).exit_code == 0
        assert aenv.invoke("agents", "bind-cert", pki.identifier(name),
                           str(pki.cert_path(name))).exit_code == 0
    for name in ("org_vptu", "org_btctu", "org_vptu_revoked"):
        bound = aenv.invoke("agents", "bind-cert", pki.identifier(name),
                            str(pki.cert_path(name)))
        assert bound.exit_code == 0, bound.output
    # An and the people whose certificate cases we test are registered signers of ORG;
    # Bình is not.
    for name in ("an", "revoked_later", "revoked", "expired", "not_yet_valid",
                 "untrusted", "no_non_repudiation"):
        granted = aenv.invoke("agents", "grant-authority", pki.identifier(name), ORG,
                              "--position", "Chánh Văn phòng", "--from", "2020-01-01")
        assert granted.exit_code == 0, granted.output
    return aenv


@pytest.fixture
def signed_env(request, tmp_path, pki):
    aenv = _signed_env("local-sqlite", tmp_path, request, pki)
    yield aenv
    aenv.close()


def _submit(aenv: ArchiveEnv, pdf_path, name: str, **meta):
    inbox = aenv.tmp_path / "signed-inbox"
    inbox.mkdir(exist_ok=True)
    target = inbox / f"{name}.pdf"
    shutil.copyfile(pdf_path, target)
    target.with_name(target.name + ".json").write_text(
        json.dumps(sample_metadata(**meta), ensure_ascii=False), encoding="utf-8")
    result = aenv.invoke("ingest", str(target), "--json")
    assert "Traceback" not in result.stderr
    return result.exit_code, json.loads(result.stdout)["results"][0]


def _codes(result: dict) -> set[str]:
    report = result.get("report") or {}
    sigs = report.get("signatures") or {}
    codes = {p["code"] for p in sigs.get("problems", [])}
    for sig in sigs.get("signatures", []):
        codes |= {p["code"] for p in sig.get("problems", [])}
    codes |= {p["code"] for p in (report.get("policy") or {}).get("problems", [])}
    return codes


def test_person_and_organisation_document_is_archived_with_evidence(signed_env, pki,
                                                                    signed_pdfs):
    before = pki.requests.snapshot()
    code, result = _submit(signed_env, signed_pdfs.path("person_org_t"), "qd")
    assert code == 0, result
    rid = result["record_id"]
    after = pki.requests.snapshot()
    assert sum(after.values()) > sum(before.values())  # OCSP/CRL/TSA really fetched
    assert pki.requests.tsa >= 1

    with signed_env.instance().store.open(result["storage_key"]) as fh, \
            tarfile.open(fileobj=io.BytesIO(fh.read())) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        report = json.loads(tar.extractfile(f"{rid}.v1/data/signatures/report.json").read())
        evidence = json.loads(tar.extractfile(
            f"{rid}.v1/data/signatures/evidence.json").read())
    assert {"data/signatures/report.json", "data/signatures/evidence.json",
            "tags/timestamps/manifest-sha256.txt.tsr"} <= names
    roles = sorted(s["role"] for s in report["signatures"]["signatures"])
    assert roles == ["organisation", "person"] and report["policy"]["ok"]
    assert evidence["certificates"] and (evidence["ocsp_responses"] or evidence["crls"])

    history = signed_env.json("records", "history", rid)["events"]
    kinds = {e["type"]: e for e in history}
    assert kinds["validation"]["outcome"] == "success"
    assert kinds["timestamping"]["outcome"] == "success"

    # Re-validation from the stored evidence works offline (the PKI is not asked).
    quiet = pki.requests.snapshot()
    revalidated = signed_env.invoke("signatures", "revalidate", rid, "--json")
    assert revalidated.exit_code == 0, revalidated.output
    assert json.loads(revalidated.stdout)["verdict"] == "valid"
    assert pki.requests.snapshot() == quiet


@pytest.mark.parametrize("case, doc_type, expected_codes", [
    ("person_t", "quyet-dinh", {"organisation_signature_missing"}),
    ("org_t", "quyet-dinh", {"person_signature_missing"}),
    ("binh_org_t", "quyet-dinh", {"signer_not_authorised"}),
    ("person_revoked_org_t", "quyet-dinh", {"revoked"}),
    ("unsigned", "quyet-dinh", {"unsigned"}),
    ("tampered", "bien-ban", {"integrity"}),
    ("page_added_after_signing", "bien-ban", {"modified"}),
    ("page_overwritten_after_signing", "bien-ban", {"modified"}),
    ("revoked", "bien-ban", {"revoked"}),
    ("expired", "bien-ban", {"expired"}),
    ("not_yet_valid", "bien-ban", {"not_yet_valid"}),
    ("untrusted", "bien-ban", {"untrusted"}),
    ("no_non_repudiation", "bien-ban", {"key_usage"}),
    ("revoked_before_signing", "bien-ban", {"revoked"}),
    ("garbage", "bien-ban", set()),  # not identified as PDF: refused as a format
    ("broken_xref", "bien-ban", set()),
    ("truncated", "bien-ban", set()),
    ("encrypted", "bien-ban", {"encrypted"}),
])
def test_refused_with_a_report(signed_env, signed_pdfs, case, doc_type, expected_codes):
    code, result = _submit(signed_env, signed_pdfs.path(case), case, doc_type=doc_type)
    assert code == 3, result
    assert result["status"] == "refused" and result["submission_id"]
    assert expected_codes <= _codes(result), _codes(result)
    assert result["message"] and result["report"]["reason"]
    shown = signed_env.json("submissions", "show", result["submission_id"])
    assert shown["reason"] == result["report"]["reason"]
    assert signed_env.json("records", "list")["total"] == 0


@pytest.mark.parametrize("case, doc_type", [
    ("person_t", "bien-ban"),  # minutes need the personal signature only
    ("metadata_updated_after_signing", "bien-ban"),  # an allowed change after signing
    ("signed_before_revocation", "bien-ban"),  # CA revoked it after the timestamp
])
def test_accepted_cases(signed_env, signed_pdfs, case, doc_type):
    code, result = _submit(signed_env, signed_pdfs.path(case), case, doc_type=doc_type)
    assert code == 0, result


def test_registry_revocation_before_or_after_the_timestamp(signed_env, pki, signed_pdfs):
    """R-SIG-3: the archive's own record of a revoked certificate counts from its time:
    a signature timestamped before it stays valid, one made after is refused."""
    earlier = signed_pdfs.signed("an", "org_vptu", text="ký trước khi thu hồi")
    now = datetime.now(UTC)
    revoked = signed_env.invoke("agents", "revoke-cert", pki.fingerprint("an"),
                                "--at", now.isoformat(), "--reason", "mất thiết bị ký")
    assert revoked.exit_code == 0, revoked.output
    code, result = _submit(signed_env, earlier, "earlier")
    assert code == 0, result
    later = signed_pdfs.signed("an", "org_vptu",
                               text=f"ký sau khi thu hồi {now.timestamp()}")
    code, result = _submit(signed_env, later, "later")
    assert code == 3 and "registry_revoked" in _codes(result), result


def test_person_who_left_the_position_no_longer_counts(signed_env, pki, signed_pdfs):
    """R-SIG-3: ending a signing authority takes effect in later validations."""
    ended = signed_env.invoke("agents", "end-authority", pki.identifier("an"), ORG,
                              "--until", (datetime.now(UTC) - timedelta(days=1))
                              .date().isoformat())
    assert ended.exit_code == 0, ended.output
    pdf = signed_pdfs.signed("an", "org_vptu", text="sau khi thôi giữ chức vụ")
    code, result = _submit(signed_env, pdf, "left")
    assert code == 3 and "signer_not_authorised" in _codes(result)


def test_wrong_issuing_organisation_is_refused(signed_env, signed_pdfs):
    code, result = _submit(signed_env, signed_pdfs.path("person_org_t"), "wrong-org",
                           issuing_org=ORG2)
    assert code == 3, result


def test_signed_ingest_on_s3_and_postgresql(request, tmp_path, pki, signed_pdfs):
    aenv = _signed_env("s3-postgresql", tmp_path, request, pki)
    try:
        code, result = _submit(aenv, signed_pdfs.path("person_org_t"), "qd")
        assert code == 0, result
        code, result = _submit(aenv, signed_pdfs.path("person_t"), "qd-no-seal")
        assert code == 3
        assert aenv.invoke("fixity", "check", "--all").exit_code == 0
        assert aenv.invoke("audit", "verify").exit_code == 0
    finally:
        aenv.close()


def test_unsigned_environment_default_is_enforcing(tmp_path):
    """The shipped default refuses what it cannot prove (tests turn it off explicitly)."""
    from archive.settings import load_settings

    env = {k: v for k, v in _base_env(tmp_path).items()
           if k != "ARCHIVE_SIGNATURES__ENFORCE"}
    assert load_settings(environ=env).signatures.enforce is True


@pytest.mark.parametrize("case, verdict, code", [
    ("person_org_t", "valid", None),
    ("metadata_updated_after_signing", "valid", None),
    ("signed_before_revocation", "valid", None),
    ("revoked", "invalid", "revoked"),
    ("revoked_before_signing", "invalid", "revoked"),
    ("expired", "invalid", "expired"),
    ("not_yet_valid", "invalid", "not_yet_valid"),
    ("untrusted", "invalid", "untrusted"),
    ("no_non_repudiation", "invalid", "key_usage"),
    ("tampered", "invalid", "integrity"),
    ("page_added_after_signing", "invalid", "modified"),
    ("unsigned", "unsigned", "unsigned"),
    ("garbage", "malformed", "malformed"),
])
def test_signatures_check_gives_each_pki_case_its_verdict(local_archive, pki, signed_pdfs,
                                                          case, verdict, code):
    """`archive signatures check` (no ingest) against the live OCSP/CRL/TSA."""
    local_archive.env["ARCHIVE_SIGNATURES__ALLOW_FETCHING"] = "true"
    result = local_archive.invoke("signatures", "check", str(signed_pdfs.path(case)),
                                  "--trust-root", str(pki.trust_roots_path), "--json")
    assert result.exit_code == (0 if verdict == "valid" else 1), result.output
    report = json.loads(result.stdout)
    assert report["verdict"] == verdict
    if code:
        found = {p["code"] for p in report["problems"]}
        for sig in report["signatures"]:
            found |= {p["code"] for p in sig["problems"]}
        assert code in found, found
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["recursive", "deep nesting", "wrong escapes",
                                  "signature field junk", "broken xref"])
def test_hostile_pdfs_are_refused_clearly_through_ingest(signed_env, tmp_path, name):
    """Malformed or hostile PDFs get a refusal with a report, never a traceback."""
    from tests.test_signatures_unit import HOSTILE

    path = tmp_path / "hostile.pdf"
    path.write_bytes(HOSTILE[name])
    code, result = _submit(signed_env, path, name.replace(" ", "-"), doc_type="bien-ban")
    assert code == 3, result
    assert result["report"]["reason"]
    assert signed_env.json("records", "list")["total"] == 0
