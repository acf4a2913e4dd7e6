"""The signature gate of ingest (R-SIG-1, R-SIG-2, R-SIG-3, R-TS-1).

Every signature of a received PDF is validated (integrity, changes after signing,
chain to a configured root, validity and revocation at the proven signing time, key
usage); each signer certificate is looked up in the archive's registry to learn whose
it is (person or organisation) and whether it was revoked there; the document type's
policy then decides whether the required signatures are all present and valid. The
report and the validation material travel into the AIP so the decision can be
re-checked offline decades later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from archive.certificates import CatalogRegistry
from archive.db import Catalog
from archive.metadata import DescriptiveMetadata
from archive.records import SIGNATURE_REPORT_PATH
from archive.settings import Settings
from archive.signature_policy import PolicyResult, SignedBy, evaluate_policy
from ingest.signature_report import SignatureReport
from ingest.signatures import TrustConfig, Validator

REPORT_PATH = SIGNATURE_REPORT_PATH
EVIDENCE_PATH = "data/signatures/evidence.json"


@dataclass
class GateOutcome:
    accepted: bool
    reason: str
    report: SignatureReport
    policy: PolicyResult
    enforced: bool
    files: dict[str, bytes] = field(default_factory=dict)  # bag path -> bytes for the AIP

    def to_dict(self) -> dict:
        return {"accepted": self.accepted, "enforced": self.enforced, "reason": self.reason,
                "signatures": self.report.to_dict(), "policy": self.policy.to_dict()}

    @property
    def summary(self) -> str:
        signers = ", ".join(
            f"{(s.bound_agent or {}).get('identifier') or (s.signer.subject if s.signer else '?')}"
            f" ({s.role or 'unbound'}: {s.verdict})" for s in self.report.signatures)
        return f"signatures {self.report.verdict}: {signers or 'none'}; policy " \
               f"{'satisfied' if self.policy.ok else 'not satisfied'}"


class SignatureGate:
    """One per ingest process: shares the validator's OCSP/CRL cache across files."""

    def __init__(self, settings: Settings, catalog: Catalog):
        self.settings = settings
        self.registry = CatalogRegistry(catalog)
        self._validator: Validator | None = None

    def _get_validator(self) -> Validator:
        if self._validator is None:
            self._validator = Validator(TrustConfig.from_settings(self.settings.signatures))
        return self._validator

    def close(self) -> None:
        if self._validator is not None:
            self._validator.close()
            self._validator = None

    def check(self, pdf: bytes, meta: DescriptiveMetadata, *,
              required: tuple[str, ...] | None = None) -> GateOutcome:
        """Validate and apply the type's policy; ``required`` overrides the roles the
        type needs (a digitised copy: ``("organisation",)``, R-CONV-1)."""
        report = self._get_validator().check(pdf, registry=self.registry)
        if meta.classification != "normal":
            # R-CLASS-1: no plain digest of classified content in the AIP's report.
            report.sha256 = "(withheld: classified)"
        signed = [SignedBy(role=s.role, agent=(s.bound_agent or {}).get("identifier"),
                           authorised_for=tuple((s.bound_agent or {}).get("authorised_for")
                                                or ()),
                           valid=s.verdict == "valid", label=s.field_name)
                  for s in report.signatures]
        policy = evaluate_policy(meta.doc_type, meta.issuing_org, signed, self.settings,
                                 required=required)
        reasons = []
        if report.verdict != "valid":
            codes = sorted(p.code for p in report.all_problems()
                           if p.severity in ("error", "indeterminate"))
            reasons.append(f"signature check: {report.verdict}"
                           + (f" ({', '.join(dict.fromkeys(codes))})" if codes else ""))
        if not policy.ok:
            reasons.append("policy: " + "; ".join(p.message for p in policy.problems
                                                   if p.blocking))
        enforced = self.settings.signatures.enforce
        outcome = GateOutcome(accepted=not reasons or not enforced,
                              reason="; ".join(reasons), report=report, policy=policy,
                              enforced=enforced)
        outcome.files = {
            REPORT_PATH: _json(outcome.to_dict()),
            EVIDENCE_PATH: _json(report.evidence.to_dict()),
        }
        return outcome


def _json(data: dict) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2, sort_keys=True, default=str)
            + "\n").encode("utf-8")
