"""From pyHanko's signature status to the archive's findings (R-SIG-2, R-SIG-3).

Each field of :class:`SignatureResult` is filled from a ``PdfSignatureStatus`` and the
validation context that produced it; every reason a signature is not valid becomes one
problem code (see :mod:`ingest.signature_report`).
"""

from __future__ import annotations

import contextlib
from datetime import datetime

from ingest.signature_inspect import crypto_strength, key_usage, revocation_source
from ingest.signature_report import Evidence, SignatureResult, TimestampInfo

_COVERAGE = {"ENTIRE_FILE": "entire_file", "ENTIRE_REVISION": "entire_revision"}
_LEVELS = {"NONE": "none", "LTA_UPDATES": "lta_updates", "FORM_FILLING": "form_filling",
           "ANNOTATIONS": "annotations", "OTHER": "other"}
# pyHanko's AdES sub-indications, by name
_WEAK_INDICS = frozenset({"CRYPTO_CONSTRAINTS_FAILURE", "CRYPTO_CONSTRAINTS_FAILURE_NO_POE"})
_VALIDITY_INDICS = frozenset({"OUT_OF_BOUNDS_NO_POE", "OUT_OF_BOUNDS_NOT_REVOKED", "EXPIRED",
                              "NOT_YET_VALID"})


def fill(res: SignatureResult, status, vc, cert, moment: datetime, mode: str) -> None:
    """Translate a ``PdfSignatureStatus`` into fields and problems of ``res``."""
    res.signing_time_claimed = status.signer_reported_dt
    tst = status.timestamp_validity
    if tst is not None:
        res.timestamp = TimestampInfo(True, tst.timestamp, subject_name(tst.signing_cert),
                                      bool(tst.intact and tst.valid), bool(tst.trusted))
    res.intact, res.valid = status.intact, status.valid
    res.coverage = coverage_name(status)
    res.modification_level = level_name(status)
    res.trusted = status.trusted
    if status.validation_path is not None:
        res.chain = [c.subject.human_friendly
                     for c in status.validation_path.iter_certs(include_root=True)]
    res.key_usage = key_usage(cert)
    res.crypto = crypto_strength(cert, status.md_algorithm,
                                 status.pkcs7_signature_mechanism)
    indic = status.trust_problem_indic
    indic_name = getattr(indic, "name", None)

    weak = res.crypto.get("weak_reasons") or []
    if weak:
        res.add("weak", reason="; ".join(weak))
    elif indic_name in _WEAK_INDICS:
        res.add("weak", reason="algorithm not allowed by the validation policy")
    if not status.intact:
        res.add("integrity", reason="the digest of the signed bytes does not match")
    elif not status.valid and not weak:
        res.add("integrity", reason="the signature value does not verify")
    if res.coverage not in ("entire_file", "entire_revision"):
        res.add("coverage", reason=res.coverage)
    level = res.modification_level
    res.modification_allowed = level != "other" and status.docmdp_ok is not False
    if not res.modification_allowed and "coverage" not in res.codes():
        reason = str(status.diff_result) if status.diff_result is not None else \
            f"modification level {level}"
        res.add("modified", reason=reason[:300], level=level)
    elif level not in (None, "none"):
        res.add("modified_allowed", level=level.replace("_", " "))

    # validity of the signer's certificate at the moment judged
    not_before, not_after = res.signer.not_before, res.signer.not_after
    if moment > not_after:
        res.validity_at_signing = "expired"
        res.add("expired", not_after=not_after)
    elif moment < not_before:
        res.validity_at_signing = "not_yet_valid"
        res.add("not_yet_valid", not_before=not_before)
    else:
        res.validity_at_signing = "ok"
    if not res.key_usage.get("non_repudiation"):
        res.add("key_usage")

    # revocation
    details = status.revocation_details
    source = revocation_source(cert, vc)
    if details is not None:
        res.revocation = {"status": "revoked", "revoked_at": details.revocation_date,
                          "reason": _native(details.revocation_reason), "source": source,
                          "ca_revoked": details.ca_revoked}
        res.add("revoked", revoked_at=details.revocation_date,
                ca=" (a CA certificate of its chain)" if details.ca_revoked else "",
                ca_vi=" (của tổ chức cấp)" if details.ca_revoked else "")
    else:
        res.revocation = {"status": "good" if (status.trusted and source) else "unknown",
                          "revoked_at": None, "reason": None, "source": source}

    # trust: what remains of pyHanko's indication once the above are accounted for
    codes = res.codes()
    if indic_name in ("REVOKED_NO_POE", "REVOKED_CA_NO_POE", "REVOKED"):
        if "revoked" not in codes:
            res.add("revoked", revoked_at="an unknown date")
    elif indic_name in _VALIDITY_INDICS:
        if not codes & {"expired", "not_yet_valid"}:
            # a CA certificate of the chain is outside its validity period
            res.add("untrusted", reason="a certificate of the chain is not valid at the "
                    "signing time")
    elif indic_name == "TRY_LATER":
        res.add("revocation_unknown", reason="no usable OCSP response or CRL")
    elif indic_name in _WEAK_INDICS:
        pass  # reported as weak above
    elif status.validation_path is None:
        res.add("untrusted", reason="no chain to a configured root" if indic_name in
                (None, "NO_CERTIFICATE_CHAIN_FOUND") else f"chain not validated: {indic_name}")
    elif (indic_name == "CERTIFICATE_CHAIN_GENERAL_FAILURE"
          and res.revocation["status"] == "unknown"):
        # the chain reaches a root but revocation information was required and missing
        res.add("revocation_unknown", reason=f"required in {mode} mode, none obtained")
    elif indic_name is not None and not codes & {"integrity", "key_usage", "weak"}:
        res.add("untrusted", reason=f"certificate validation failed ({indic_name})")
    if (res.revocation["status"] == "unknown" and "revocation_unknown" not in res.codes()
            and status.trusted):
        # soft-fail / hard-fail accepted the chain without revocation information
        res.add("revocation_unknown", severity="warning",
                reason=f"none available; accepted in {mode} mode")


def apply_registry(res: SignatureResult, registry: object, now: datetime) -> None:
    """Bound agent and role from the registry; its revocations count too (R-SIG-3)."""
    if res.signer is None:
        return
    lookup = registry.lookup if hasattr(registry, "lookup") else registry
    proven = res.signing_time_proven
    binding = lookup(res.signer.fingerprint, proven or res.signing_time_claimed or now)
    if binding is None:
        return
    res.bound_agent = {"identifier": binding.identifier, "kind": binding.kind,
                       "name": binding.name,
                       "authorised_for": list(getattr(binding, "authorised_for", []) or [])}
    res.role = binding.kind if binding.kind in ("person", "organisation") else None
    revoked_at = binding.revoked_at
    if revoked_at is None:
        return
    if proven is not None and revoked_at > proven:
        res.add("revoked_after_signing", revoked_at=revoked_at, signing_time=proven)
    elif revoked_at <= (proven or now):
        res.add("registry_revoked", revoked_at=revoked_at)


def collect_evidence(status, vc, emb) -> Evidence:
    ev = Evidence()
    paths = [status.validation_path]
    tst = getattr(status, "timestamp_validity", None)
    if tst is not None:
        paths.append(tst.validation_path)
    for path in paths:
        if path is not None:
            for cert in path.iter_certs(include_root=True):
                ev.add("certificates", cert.dump())
    with contextlib.suppress(Exception):  # a signature without a readable certificate
        ev.add("certificates", emb.signer_cert.dump())
    for resp in vc.ocsps:
        ev.add("ocsp_responses", resp.dump())
    for crl in vc.crls:
        ev.add("crls", crl.dump())
    for cert in vc.revinfo_manager.new_revocation_certs:
        ev.add("certificates", cert.dump())
    return ev


def claimed_timestamp_time(emb) -> datetime | None:
    from pyhanko.sign.validation.generic_cms import extract_tst_data_iter

    for sd in extract_tst_data_iter(emb.signer_info, signed=False):
        return sd["encap_content_info"]["content"].parsed["gen_time"].native
    return None


def field_name_of(emb, index: int) -> str:
    try:
        return str(emb.field_name) or f"signature {index + 1}"
    except Exception:  # noqa: BLE001
        return f"signature {index + 1}"


def coverage_name(status) -> str | None:
    cov = getattr(status, "coverage", None)
    return None if cov is None else _COVERAGE.get(cov.name, cov.name.lower())


def level_name(status) -> str | None:
    level = getattr(status, "modification_level", None)
    return None if level is None else _LEVELS.get(level.name, level.name.lower())


def subject_name(cert) -> str | None:
    return None if cert is None else cert.subject.human_friendly


def indication(status) -> str | None:
    indic = status.trust_problem_indic
    return None if indic is None else indic.name


def timestamp_reason(tst) -> str:
    if tst is None:
        return "the timestamp token could not be checked"
    if not (tst.intact and tst.valid):
        return "the token does not match the signature"
    return indication(tst) or "not trusted"


def _native(value):
    return getattr(value, "native", value)


def reason_of(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
