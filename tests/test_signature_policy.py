"""Signature policies per document type (R-SIG-1): configuration and evaluation, and the
registry feeding them so later evaluations reflect revocations and ended authority
(R-SIG-3)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from archive.certificates import (
    CatalogRegistry,
    bind_certificate,
    end_signing_authority,
    grant_signing_authority,
    revoke_certificate,
)
from archive.clock import FixedClock
from archive.errors import ConfigError
from archive.settings import load_settings
from archive.signature_policy import PolicyResult, SignedBy, evaluate_policy
from tests.conftest import ORG, ORG2
from tests.test_certificates import NOW, OPERATOR, PERSON, PERSON2, make_cert, pem

BOTH_TYPES = ("nghi-quyet", "quyet-dinh", "chi-thi", "ket-luan", "quy-dinh", "huong-dan",
              "thong-bao", "bao-cao", "to-trinh", "ke-hoach", "cong-van")


@pytest.fixture(scope="module")
def settings():
    return load_settings(environ={})


# ---- configuration ------------------------------------------------------------------


def test_default_policies(settings):
    for code in BOTH_TYPES:
        assert settings.document_types[code].signatures == ("person", "organisation")
    assert settings.document_types["bien-ban"].signatures == ("person",)


def _load(tmp_path, toml: str):
    path = tmp_path / "archive.toml"
    path.write_text(toml, encoding="utf-8")
    return load_settings(path, environ={})


def test_policy_is_configurable(tmp_path):
    s = _load(tmp_path, '[document_types.quyet-dinh]\nsignatures = ["person"]\n'
                        '[document_types.phieu-trinh]\nlabel = "Phiếu trình"\n'
                        '[document_types.ban-sao]\nlabel = "Bản sao"\n'
                        'signatures = ["organisation", "person"]\n')
    assert s.document_types["quyet-dinh"].signatures == ("person",)
    assert s.document_types["quyet-dinh"].label == "Quyết định"  # merged with defaults
    # A new type that does not say needs both: the safe choice.
    assert s.document_types["phieu-trinh"].signatures == ("person", "organisation")
    assert s.document_types["ban-sao"].signatures == ("person", "organisation")


@pytest.mark.parametrize("value, words", [
    ('["person", "stamp"]', "document_types.quyet-dinh.signatures: unknown signature role "
                            "'stamp'"),
    ('"person"', "document_types.quyet-dinh.signatures: expected a list"),
    ('[1]', "document_types.quyet-dinh.signatures: expected a list"),
    ('[]', "document_types.quyet-dinh.signatures: must require at least one"),
    ('["person", "person"]', "document_types.quyet-dinh.signatures: a role is listed twice"),
], ids=["unknown-role", "not-a-list", "not-strings", "empty", "repeated"])
def test_bad_policy_is_refused_naming_the_key(tmp_path, value, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        _load(tmp_path, f"[document_types.quyet-dinh]\nsignatures = {value}\n")


def test_unknown_key_in_a_document_type_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown configuration key "
                                          "document_types.quyet-dinh.signature$"):
        _load(tmp_path, '[document_types.quyet-dinh]\nsignature = ["person"]\n')


# ---- evaluation matrix --------------------------------------------------------------

PERSON_OK = SignedBy("person", PERSON, (ORG,), True, "Signature1")
ORG_OK = SignedBy("organisation", ORG, (ORG,), True, "Signature2")


def codes(result: PolicyResult, blocking: bool | None = True) -> list[str]:
    return [p.code for p in result.problems if blocking is None or p.blocking == blocking]


CASES = {
    "both-present": ([PERSON_OK, ORG_OK], True, []),
    "person-missing": ([ORG_OK], False, ["person_signature_missing"]),
    "organisation-missing": ([PERSON_OK], False, ["organisation_signature_missing"]),
    "nothing": ([], False, ["person_signature_missing", "organisation_signature_missing"]),
    "wrong-organisation": (
        [PERSON_OK, SignedBy("organisation", ORG2, (ORG2,), True)], False,
        ["organisation_signature_missing", "wrong_organisation"]),
    "person-not-authorised-at-signing-time": (
        [SignedBy("person", PERSON2, (), True), ORG_OK], False,
        ["person_signature_missing", "signer_not_authorised"]),
    "person-authorised-for-another-org": (
        [SignedBy("person", PERSON2, (ORG2,), True), ORG_OK], False,
        ["person_signature_missing", "signer_not_authorised"]),
    "unbound-certificate": (
        [SignedBy(None, None, (), True, "Signature1"), ORG_OK], False,
        ["person_signature_missing", "unbound_signature"]),
    "invalid-person-signature": (
        [SignedBy("person", PERSON, (ORG,), False), ORG_OK], False,
        ["person_signature_missing", "invalid_signature"]),
    "revoked-organisation-certificate": (  # the validator says: not valid
        [PERSON_OK, SignedBy("organisation", ORG, (ORG,), False)], False,
        ["organisation_signature_missing", "invalid_signature"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_decision_needs_person_and_organisation(settings, case):
    signatures, ok, expected = CASES[case]
    result = evaluate_policy("quyet-dinh", ORG, signatures, settings)
    assert result.ok is ok
    assert codes(result) == expected
    assert result.required == ("person", "organisation")
    for problem in result.problems:
        assert problem.message and problem.message_vi
    assert result.to_dict()["ok"] is ok


def test_messages_are_plain_words(settings):
    result = evaluate_policy("quyet-dinh", ORG, [SignedBy(None, None, (), True, "Sig A")],
                             settings)
    messages = {p.code: (p.message, p.message_vi) for p in result.problems}
    assert messages["person_signature_missing"] == (
        f"no valid personal signature of a registered signer of {ORG}",
        f"Thiếu chữ ký số cá nhân hợp lệ của người có thẩm quyền ký của {ORG}.")
    assert messages["organisation_signature_missing"][1] == (
        f"Thiếu chữ ký số hợp lệ của cơ quan, tổ chức ban hành {ORG}.")
    assert messages["unbound_signature"][0].startswith("Sig A: the signer's certificate is "
                                                       "not bound to any registered")
    assert [p.signature for p in result.problems] == [None, None, 0]


def test_person_only_policy(settings):
    assert evaluate_policy("bien-ban", ORG, [PERSON_OK], settings).ok
    result = evaluate_policy("bien-ban", ORG, [ORG_OK], settings)
    assert not result.ok and codes(result) == ["person_signature_missing"]
    # The person must still be a registered signer of the issuing organisation.
    result = evaluate_policy("bien-ban", ORG, [SignedBy("person", PERSON2, (), True)],
                             settings)
    assert codes(result) == ["person_signature_missing", "signer_not_authorised"]


def test_extra_signatures_are_noted_without_blocking(settings):
    extra = [PERSON_OK, ORG_OK, SignedBy(None, None, (), True, "Witness"),
             SignedBy("person", PERSON2, (), True), SignedBy("organisation", ORG2, (ORG2,), True)]
    result = evaluate_policy("quyet-dinh", ORG, extra, settings)
    assert result.ok
    assert codes(result) == []
    assert codes(result, blocking=False) == ["unbound_signature", "signer_not_authorised",
                                             "wrong_organisation"]


def test_unknown_document_type(settings):
    result = evaluate_policy("thu-moi", ORG, [PERSON_OK, ORG_OK], settings)
    assert not result.ok and codes(result) == ["unknown_document_type"]


# ---- registry + policy: later evaluations reflect what was recorded (R-SIG-3) -------


def test_registry_feeds_the_policy(catalog_engine, settings):
    from archive.agents import register_agent
    from archive.db import Catalog

    catalog = Catalog(str(catalog_engine.url), engine=catalog_engine)
    clock = FixedClock(NOW)
    person_cert, org_cert = make_cert("Trần Thị Bình"), make_cert("Văn phòng Tỉnh ủy")
    with catalog.unit_of_work() as s:
        register_agent(s, settings, OPERATOR, kind="organisation", identifier=ORG,
                       name="Văn phòng Tỉnh ủy", clock=clock)
        register_agent(s, settings, OPERATOR, kind="person", identifier=PERSON,
                       name="Trần Thị Bình", clock=clock)
        person_fp = bind_certificate(s, settings, OPERATOR, PERSON, pem(person_cert),
                                     clock).certificate.fingerprint
        org_fp = bind_certificate(s, settings, OPERATOR, ORG, pem(org_cert),
                                  clock).certificate.fingerprint
        grant_signing_authority(s, OPERATOR, PERSON, ORG, "Chánh Văn phòng",
                                NOW - timedelta(days=100), clock=clock)
    registry = CatalogRegistry(catalog)
    signed_at = NOW - timedelta(days=10)
    unknown_fp = "ee" * 32

    def evaluate(at, *, org_valid=True, fingerprints=(person_fp, org_fp)):
        sigs = []
        for fp in fingerprints:
            binding = registry.lookup(fp, at)
            # What the validator decides from the binding: an archive-side revocation
            # at or before the proven signing time makes the signature invalid.
            valid = binding is None or not binding.revoked_by(at)
            if binding is not None and binding.kind == "organisation":
                valid = valid and org_valid
            sigs.append(SignedBy.from_binding(binding, valid, fp[:8]))
        return evaluate_policy("quyet-dinh", ORG, sigs, settings)

    assert evaluate(signed_at).ok
    assert codes(evaluate(signed_at, fingerprints=(unknown_fp, org_fp))) == [
        "person_signature_missing", "unbound_signature"]

    # The person leaves the position: later signatures no longer count, earlier ones do.
    with catalog.unit_of_work() as s:
        end_signing_authority(s, OPERATOR, PERSON, ORG, NOW - timedelta(days=5),
                              "Quyết định thôi giữ chức vụ", clock=clock)
    assert evaluate(signed_at).ok
    assert codes(evaluate(NOW - timedelta(days=1))) == ["person_signature_missing",
                                                        "signer_not_authorised"]

    # The organisation's certificate is revoked from a past date: signatures proven to
    # be older still count, later ones do not.
    with catalog.unit_of_work() as s:
        revoke_certificate(s, settings, OPERATOR, org_fp, NOW - timedelta(days=20),
                           "seal key compromised", clock)
    assert evaluate(NOW - timedelta(days=30)).ok
    assert codes(evaluate(signed_at)) == ["organisation_signature_missing",
                                          "invalid_signature"]
