"""Signature policies per document type (R-SIG-1).

A document type's ``signatures`` (``[document_types.CODE]`` in config) lists the roles it
needs: ``"person"``, a valid signature of a person who was a registered signer of the
issuing organisation at signing time, and ``"organisation"``, a valid signature of the
issuing organisation itself (its seal). A signature's role comes from its certificate's
binding in the registry (:mod:`archive.certificates`), never from field names; an
unbound signature counts for no one.

The policy does not validate signatures: it takes what the validator and the registry
found (:class:`SignedBy`) and says whether the required set is there, and if not, why,
in plain words (English and Vietnamese).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from archive.settings import SIGNATURE_ROLES, Settings


@dataclass(frozen=True)
class SignedBy:
    """One signature as the validator and the registry see it.

    ``role`` is the bound agent's kind ("person" or "organisation"), ``None`` when the
    certificate is bound to no agent. ``authorised_for`` is the registry's answer for the
    signing time (see ``archive.certificates.Binding``). ``valid``: the validator's
    verdict on the signature (integrity, chain, revocation at signing time ...).
    ``label`` names the signature in messages (field name, signer's subject ...).
    """

    role: str | None
    agent: str | None
    authorised_for: Sequence[str] = ()
    valid: bool = True
    label: str = ""

    @classmethod
    def from_binding(cls, binding, valid: bool, label: str = "") -> SignedBy:
        """From a registry ``Binding`` (or ``None`` for an unbound certificate)."""
        if binding is None:
            return cls(None, None, (), valid, label)
        return cls(binding.kind, binding.identifier, tuple(binding.authorised_for), valid,
                   label)


@dataclass(frozen=True)
class PolicyProblem:
    """One finding. ``blocking`` findings are why the policy is not met."""

    code: str
    message: str
    message_vi: str
    signature: int | None = None  # index into the evaluated signatures
    blocking: bool = True

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "message_vi": self.message_vi,
                "signature": self.signature, "blocking": self.blocking}


@dataclass(frozen=True)
class PolicyResult:
    ok: bool
    problems: list[PolicyProblem] = field(default_factory=list)
    required: tuple[str, ...] = ()
    doc_type: str = ""
    issuing_org: str = ""

    def to_dict(self) -> dict:
        return {"ok": self.ok, "doc_type": self.doc_type, "issuing_org": self.issuing_org,
                "required": list(self.required),
                "problems": [p.to_dict() for p in self.problems]}


def required_roles(doc_type: str, settings: Settings) -> tuple[str, ...] | None:
    entry = settings.document_types.get(doc_type)
    return None if entry is None else entry.signatures


def evaluate_policy(doc_type: str, issuing_org: str, signatures: Sequence[SignedBy],
                    settings: Settings, *,
                    required: Sequence[str] | None = None) -> PolicyResult:
    """Does the document carry the signatures its type requires? (R-SIG-1)

    ``required`` replaces the type's roles for a submission the archive itself vouches
    for: a digitised copy of paper carries only the issuing organisation's signature,
    put on it by the archive (R-CONV-1, Art. 12.5); the type must still be known.
    ``ok`` exactly when every required role is met by a valid signature of the right
    agent. Signatures that do not count are explained: unbound, invalid, by a person not
    registered for the issuing organisation at signing time, by another organisation.
    Such a finding is blocking when the role it could have filled is unmet; otherwise
    it is reported as a non-blocking note (nothing is silently accepted).
    """
    type_roles = required_roles(doc_type, settings)
    if type_roles is not None and required is not None:
        unknown = set(required) - set(SIGNATURE_ROLES)
        if unknown or not required:
            raise ValueError(f"required signature roles {sorted(required)} are not a "
                             f"non-empty subset of {SIGNATURE_ROLES}")
        type_roles = tuple(required)
    required = type_roles
    if required is None:
        problem = PolicyProblem(
            "unknown_document_type",
            f"document type {doc_type!r} has no signature policy in the configuration",
            f"Loại văn bản {doc_type!r} chưa có chính sách chữ ký số trong cấu hình.")
        return PolicyResult(False, [problem], (), doc_type, issuing_org)

    def counts(sig: SignedBy) -> bool:
        if not sig.valid or sig.role is None:
            return False
        if sig.role == "person":
            return issuing_org in sig.authorised_for
        if sig.role == "organisation":
            return sig.agent == issuing_org
        return False

    met = {role: any(s.role == role and counts(s) for s in signatures)
           for role in SIGNATURE_ROLES}
    all_met = all(met[r] for r in required)
    problems = [_missing(role, issuing_org) for role in required if not met[role]]
    for index, sig in enumerate(signatures):
        name = sig.label or f"signature {index + 1}"
        if sig.role is None:
            problems.append(PolicyProblem(
                "unbound_signature",
                f"{name}: the signer's certificate is not bound to any registered person or "
                "organisation, so this signature does not count",
                f"{name}: chứng thư số của người ký chưa được gắn với cá nhân hoặc tổ chức "
                "nào đã đăng ký, nên chữ ký này không được tính.",
                index, not all_met))
            continue
        blocking = sig.role in required and not met[sig.role]
        if not sig.valid:
            problems.append(PolicyProblem(
                "invalid_signature",
                f"{name}: the signature of {sig.agent} is not valid (see the signature "
                "report), so it does not count",
                f"{name}: chữ ký số của {sig.agent} không hợp lệ (xem kết quả kiểm tra chữ "
                "ký), nên không được tính.", index, blocking))
        elif sig.role == "person" and issuing_org not in sig.authorised_for:
            problems.append(PolicyProblem(
                "signer_not_authorised",
                f"{name}: {sig.agent} was not a registered signer of {issuing_org} at "
                "signing time",
                f"{name}: {sig.agent} không phải là người có thẩm quyền ký đã đăng ký của "
                f"{issuing_org} tại thời điểm ký.", index, blocking))
        elif sig.role == "organisation" and sig.agent != issuing_org:
            problems.append(PolicyProblem(
                "wrong_organisation",
                f"{name}: organisation signature of {sig.agent}, not of the issuing "
                f"organisation {issuing_org}",
                f"{name}: chữ ký số cơ quan là của {sig.agent}, không phải của cơ quan ban "
                f"hành {issuing_org}.", index, blocking))
    return PolicyResult(all_met, problems, tuple(required), doc_type, issuing_org)


def _missing(role: str, issuing_org: str) -> PolicyProblem:
    if role == "person":
        return PolicyProblem(
            "person_signature_missing",
            f"no valid personal signature of a registered signer of {issuing_org}",
            f"Thiếu chữ ký số cá nhân hợp lệ của người có thẩm quyền ký của {issuing_org}.")
    return PolicyProblem(
        "organisation_signature_missing",
        f"no valid signature of the issuing organisation {issuing_org}",
        f"Thiếu chữ ký số hợp lệ của cơ quan, tổ chức ban hành {issuing_org}.")
