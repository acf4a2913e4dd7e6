"""The certificate registry: signing certificates bound to agents, and signing authority
(R-ID-1, R-SIG-1, R-SIG-3).

Which signature on a document is a person's and which an organisation's is decided by
the binding of its certificate to one registered agent, never by signature field names.
A person counts as a signer of an organisation at a moment when a signing-authority
period covers it. Revocations and ended authorities are recorded, never deleted, and
:func:`lookup` (what the signature validator asks) reflects them from then on.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID, ObjectIdentifier
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from archive import audit
from archive.agents import find_agent, get_agent
from archive.clock import Clock, SystemClock
from archive.errors import InputError, NotFound
from archive.models import Agent, Certificate, SigningAuthority
from archive.principal import Principal
from archive.settings import Settings

# Dates without a time are days of the Vietnamese calendar: they start at 00:00 in
# Vietnam (UTC+07:00, no daylight saving), where appointments and revocations are decided.
LEGAL_TZ = timezone(timedelta(hours=7), "ICT")
SIGNING_KINDS = ("person", "organisation")
_A = {"person": "a natural person", "organisation": "an organisation"}
MAX_PEM_BYTES = 256 * 1024
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
# ETSI EN 319 412-5 QCStatements: the issuer's statement of what the subject is. The
# extension is opaque to cryptography; the DER-encoded OIDs are found in its bytes.
_QC_STATEMENTS = ObjectIdentifier("1.3.6.1.5.5.7.1.3")
_QC_TYPE = b"\x06\x06\x04\x00\x8e\x46\x01\x06"  # 0.4.0.1862.1.6 (id-etsi-qcs-QcType)
_QCT_ESIGN = b"\x06\x07\x04\x00\x8e\x46\x01\x06\x01"  # 0.4.0.1862.1.6.1 natural person
_QCT_ESEAL = b"\x06\x07\x04\x00\x8e\x46\x01\x06\x02"  # 0.4.0.1862.1.6.2 legal person


class CertificateAlreadyBound(InputError):
    """R-ID-1: a certificate belongs to exactly one agent, for good."""

    def __init__(self, fingerprint: str, agent: str):
        self.fingerprint = fingerprint
        self.agent = agent
        super().__init__(f"certificate {fingerprint} is already bound to agent {agent} "
                         "(a certificate belongs to exactly one agent)")


class CertificateAlreadyRevoked(InputError):
    def __init__(self, fingerprint: str, revoked_at: datetime):
        self.fingerprint = fingerprint
        self.revoked_at = revoked_at
        super().__init__(f"certificate {fingerprint} is already revoked (effective "
                         f"{revoked_at.isoformat()})")


@dataclass(frozen=True)
class Binding:
    """What the registry knows about a signing certificate at one moment (R-SIG-3).

    ``revoked_at`` is the recorded revocation time whenever one is recorded, even if it
    is later than the moment asked about: the validator compares it with the proven
    signing time. ``authorised_for``: for a person, the organisations they were a
    registered signer of at that moment; for an organisation, its own identifier.
    """

    identifier: str
    kind: str  # person | organisation
    name: str
    revoked_at: datetime | None
    authorised_for: list[str]
    fingerprint: str = ""
    at: datetime | None = None

    def revoked_by(self, moment: datetime) -> bool:
        """Was the certificate revoked (archive-side) at or before ``moment``?"""
        return self.revoked_at is not None and self.revoked_at <= moment


@dataclass
class BindResult:
    certificate: Certificate
    warnings: list[str] = field(default_factory=list)


# ---- input helpers ------------------------------------------------------------------


def normalise_fingerprint(text: str) -> str:
    """SHA-256 fingerprint as 64 lower-case hex digits (colons and spaces allowed)."""
    value = re.sub(r"[\s:]", "", text or "").lower()
    if value.startswith("sha256"):
        value = value[len("sha256"):]
    if not _FINGERPRINT.match(value):
        raise InputError(f"{text!r} is not a SHA-256 certificate fingerprint (64 hex digits)")
    return value


def parse_instant(text: str, what: str) -> datetime:
    """An ISO 8601 datetime with a UTC offset, or a date (00:00 Vietnam time that day).

    A datetime without an offset is refused: its instant is unknown.
    """
    value = (text or "").strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return datetime.combine(date.fromisoformat(value), time(), LEGAL_TZ).astimezone(UTC)
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{what}: {text!r} is not an ISO 8601 date or datetime") from exc
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError(f"{what}: {text!r} has no UTC offset; write e.g. "
                         f"{value}+07:00 or {value}Z")
    return moment.astimezone(UTC)


def _aware(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise InputError(f"{what}: expected a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InputError(f"{what}: naive datetime {moment.isoformat()} refused (its instant "
                         "is unknown); give a UTC offset")
    return moment.astimezone(UTC)


def _text(value: str | None, what: str, limit: int, *, required: bool) -> str | None:
    value = (value or "").strip()
    if not value:
        if required:
            raise InputError(f"{what} is required")
        return None
    if len(value) > limit:
        raise InputError(f"{what} is longer than {limit} characters")
    return value


def load_certificate(data: bytes) -> x509.Certificate:
    """Exactly one X.509 certificate, PEM or DER; anything else is an ``InputError``."""
    if len(data) > MAX_PEM_BYTES:
        raise InputError(f"not a certificate: {len(data)} bytes is too large")
    if b"-----BEGIN" in data:
        try:
            certs = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise InputError("not a certificate: no readable PEM CERTIFICATE block "
                             f"({exc})") from exc
        if len(certs) != 1:
            raise InputError(f"the file holds {len(certs)} certificates; give only the "
                             "signer's own certificate")
        return certs[0]
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise InputError("not a certificate: neither PEM nor DER X.509") from exc


def fingerprint_of(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def subject_kind(cert: x509.Certificate) -> str | None:
    """"person" or "organisation" when the certificate itself says so, else ``None``.

    Only structured statements count, never names: an ETSI QcType (esign: natural
    person, eseal: legal person), or givenName/surname attributes in the subject
    (ETSI EN 319 412-2 natural-person profile).
    """
    try:
        ext = cert.extensions.get_extension_for_oid(_QC_STATEMENTS)
    except x509.ExtensionNotFound:
        ext = None
    if ext is not None and isinstance(ext.value, x509.UnrecognizedExtension):
        der = ext.value.value
        if _QC_TYPE in der:
            has_esign, has_eseal = _QCT_ESIGN in der, _QCT_ESEAL in der
            if has_esign != has_eseal:
                return "person" if has_esign else "organisation"
    if (cert.subject.get_attributes_for_oid(NameOID.GIVEN_NAME)
            or cert.subject.get_attributes_for_oid(NameOID.SURNAME)):
        return "person"
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _signs_documents(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.digital_signature or usage.content_commitment


# ---- services -----------------------------------------------------------------------


def bind_certificate(session: Session, settings: Settings, principal: Principal,
                     agent_identifier: str, pem_bytes: bytes,
                     clock: Clock | None = None) -> BindResult:
    """Bind a signing certificate to a registered person or organisation (R-ID-1).

    Refused: not exactly one certificate, a CA certificate, unknown or inactive agent,
    an agent that is not a person or organisation, a certificate already bound (to
    anyone, even after revocation), a certificate that says it is a natural person's
    bound to an organisation or a legal person's bound to a person. Expired, not yet
    valid or non-signing certificates are bound with a warning.
    """
    clock = clock or SystemClock()
    now = clock.now()
    cert = load_certificate(pem_bytes)
    agent = get_agent(session, agent_identifier.strip())
    if agent.kind not in SIGNING_KINDS:
        raise InputError(f"agent {agent.identifier} is a {agent.kind}; only persons and "
                         "organisations hold signing certificates")
    if agent.status != "active":
        raise InputError(f"agent {agent.identifier} is {agent.status}; certificates are "
                         "bound to active agents only")
    if _is_ca(cert):
        raise InputError("this is a CA certificate, not a signer's certificate")
    fingerprint = fingerprint_of(cert)
    existing = session.scalar(select(Certificate).where(Certificate.fingerprint == fingerprint))
    if existing is not None:
        raise CertificateAlreadyBound(fingerprint, existing.agent.identifier)
    said = subject_kind(cert)
    if said is not None and said != agent.kind:
        raise InputError(f"the certificate says it is issued to {_A[said]} but agent "
                         f"{agent.identifier} is {_A[agent.kind]}")
    subject = cert.subject.rfc4514_string()
    issuer = cert.issuer.rfc4514_string()
    for what, value in (("subject", subject), ("issuer", issuer)):
        if len(value) > 1000:
            raise InputError(f"certificate {what} is longer than 1000 characters")
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    warnings = []
    if not_after < now:
        warnings.append(f"the certificate expired on {not_after.isoformat()}: signatures "
                        "made with it are valid only if a timestamp proves they came first")
    if not_before > now:
        warnings.append(f"the certificate is not valid before {not_before.isoformat()}")
    if not _signs_documents(cert):
        warnings.append("the certificate's key usage allows neither digitalSignature nor "
                        "nonRepudiation: document signatures made with it will not validate")
    serial = cert.serial_number
    row = Certificate(
        agent_id=agent.id, fingerprint=fingerprint, subject=subject, issuer=issuer,
        serial=format(serial, "x") if serial >= 0 else "-" + format(-serial, "x"),
        not_before=not_before, not_after=not_after,
        pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        status="active", bound_at=now, bound_by=str(principal))
    session.add(row)
    try:
        session.flush()
    except DBIntegrityError as exc:  # bound by a concurrent transaction meanwhile
        raise CertificateAlreadyBound(fingerprint, "(bound by a concurrent command)") from exc
    audit.append(session, principal, "certificate.bind", f"certificate:{fingerprint}",
                 detail={"agent": agent.identifier, "kind": agent.kind, "subject": subject,
                         "issuer": issuer, "serial": row.serial,
                         "not_before": not_before.isoformat(),
                         "not_after": not_after.isoformat(), "warnings": warnings},
                 clock=clock)
    return BindResult(row, warnings)


def revoke_certificate(session: Session, settings: Settings, principal: Principal,
                       fingerprint: str, revoked_at: datetime, reason: str,
                       clock: Clock | None = None) -> Certificate:
    """Record that a bound certificate is revoked from ``revoked_at`` on (R-SIG-3).

    ``revoked_at`` may lie in the past (the CA's revocation date, the day a key was
    reported compromised) but not in the future. The row is kept; revoking twice is
    refused so the first recorded effective time cannot be silently moved.
    """
    clock = clock or SystemClock()
    fingerprint = normalise_fingerprint(fingerprint)
    revoked_at = _aware(revoked_at, "revocation time")
    reason = _text(reason, "revocation reason", 500, required=True)
    now = clock.now()
    if revoked_at > now:
        raise InputError(f"revocation time {revoked_at.isoformat()} is in the future")
    row = get_certificate(session, fingerprint)
    if row.status == "revoked":
        raise CertificateAlreadyRevoked(fingerprint, row.revoked_at)
    row.status = "revoked"
    row.revoked_at = revoked_at
    row.revocation_reason = reason
    session.flush()
    audit.append(session, principal, "certificate.revoke", f"certificate:{fingerprint}",
                 detail={"agent": row.agent.identifier, "revoked_at": revoked_at.isoformat(),
                         "reason": reason}, clock=clock)
    return row


def grant_signing_authority(session: Session, principal: Principal, person: str,
                            organisation: str, position: str, valid_from: datetime,
                            basis: str | None = None,
                            clock: Clock | None = None) -> SigningAuthority:
    """Record that ``person`` signs for ``organisation`` from ``valid_from`` (R-SIG-1).

    One period per person and organisation at a time: a grant overlapping an existing
    period is refused (end it first).
    """
    clock = clock or SystemClock()
    valid_from = _aware(valid_from, "valid from")
    position = _text(position, "position", 200, required=True)
    basis = _text(basis, "basis", 500, required=False)
    person_row, org_row = _pair(session, person, organisation)
    for period in _periods(session, person_row, org_row):
        if period.valid_until is None or period.valid_until > valid_from:
            until = period.valid_until.isoformat() if period.valid_until else "open"
            raise InputError(
                f"{person_row.identifier} already holds signing authority for "
                f"{org_row.identifier} ({period.position}, {period.valid_from.isoformat()} "
                f"to {until}); end it before granting a new period")
    row = SigningAuthority(person_id=person_row.id, organisation_id=org_row.id,
                           position=position, valid_from=valid_from, valid_until=None,
                           recorded_by=str(principal), recorded_at=clock.now(), basis=basis)
    session.add(row)
    session.flush()
    audit.append(session, principal, "authority.grant",
                 f"authority:{person_row.identifier}@{org_row.identifier}",
                 detail={"position": position, "valid_from": valid_from.isoformat(),
                         "basis": basis}, clock=clock)
    return row


def end_signing_authority(session: Session, principal: Principal, person: str,
                          organisation: str, valid_until: datetime,
                          basis: str | None = None,
                          clock: Clock | None = None) -> SigningAuthority:
    """Close the open authority period: from ``valid_until`` on the person no longer
    signs for the organisation (left the position). The row is kept (R-SIG-3)."""
    clock = clock or SystemClock()
    valid_until = _aware(valid_until, "valid until")
    basis = _text(basis, "basis", 240, required=False)
    person_row, org_row = _pair(session, person, organisation)
    open_rows = [p for p in _periods(session, person_row, org_row) if p.valid_until is None]
    if not open_rows:
        raise InputError(f"{person_row.identifier} holds no open signing authority for "
                         f"{org_row.identifier}")
    row = open_rows[0]
    if valid_until <= row.valid_from:
        raise InputError(f"end {valid_until.isoformat()} is not after the start of the "
                         f"period ({row.valid_from.isoformat()})")
    row.valid_until = valid_until
    if basis:
        # The column keeps both decisions; the audit entry keeps each in full.
        combined = f"{row.basis} | ended: {basis}" if row.basis else f"ended: {basis}"
        row.basis = combined[:500]
    session.flush()
    audit.append(session, principal, "authority.end",
                 f"authority:{person_row.identifier}@{org_row.identifier}",
                 detail={"position": row.position, "valid_from": row.valid_from.isoformat(),
                         "valid_until": valid_until.isoformat(), "basis": basis},
                 clock=clock)
    return row


def lookup(session: Session, fingerprint: str, at: datetime) -> Binding | None:
    """The agent a certificate is bound to, as the registry stands for moment ``at``.

    ``None`` when the certificate is bound to nobody (its signature then counts for no
    one). Read-only: the caller's validation is what gets audited.
    """
    at = _aware(at, "lookup time")
    try:
        fingerprint = normalise_fingerprint(fingerprint)
    except InputError:
        return None
    row = session.scalar(select(Certificate).where(Certificate.fingerprint == fingerprint))
    if row is None:
        return None
    agent = row.agent
    if agent.kind == "organisation":
        authorised = [agent.identifier]
    else:
        authorised = sorted({p.organisation.identifier for p in session.scalars(
            select(SigningAuthority).where(SigningAuthority.person_id == agent.id))
            if _covers(p, at)})
    return Binding(identifier=agent.identifier, kind=agent.kind, name=agent.name,
                   revoked_at=row.revoked_at, authorised_for=authorised,
                   fingerprint=fingerprint, at=at)


class CatalogRegistry:
    """The registry port for the signature validator: ``lookup(fingerprint, at)``, each
    call in its own short read transaction on the catalog."""

    def __init__(self, catalog):
        self.catalog = catalog

    def lookup(self, fingerprint: str, at: datetime) -> Binding | None:
        with self.catalog.unit_of_work() as session:
            return lookup(session, fingerprint, at)


# ---- reading ------------------------------------------------------------------------


def get_certificate(session: Session, fingerprint: str) -> Certificate:
    fingerprint = normalise_fingerprint(fingerprint)
    row = session.scalar(select(Certificate).where(Certificate.fingerprint == fingerprint))
    if row is None:
        raise NotFound(f"no certificate with fingerprint {fingerprint} is bound")
    return row


def list_certificates(session: Session, principal: Principal,
                      agent_identifier: str | None = None,
                      clock: Clock | None = None) -> list[Certificate]:
    query = select(Certificate).join(Agent, Certificate.agent_id == Agent.id)
    if agent_identifier:
        query = query.where(Agent.id == get_agent(session, agent_identifier.strip()).id)
    rows = list(session.scalars(query.order_by(Agent.identifier, Certificate.not_before,
                                               Certificate.fingerprint)))
    audit.append(session, principal, "certificates.list", "certificates",
                 detail={"agent": agent_identifier, "count": len(rows)}, clock=clock)
    return rows


def list_authorities(session: Session, principal: Principal, person: str | None = None,
                     organisation: str | None = None,
                     clock: Clock | None = None) -> list[SigningAuthority]:
    query = select(SigningAuthority)
    if person:
        query = query.where(SigningAuthority.person_id == get_agent(session, person).id)
    if organisation:
        query = query.where(
            SigningAuthority.organisation_id == get_agent(session, organisation).id)
    rows = list(session.scalars(query.order_by(SigningAuthority.valid_from,
                                               SigningAuthority.id)))
    audit.append(session, principal, "authorities.list", "signing-authorities",
                 detail={"person": person, "organisation": organisation,
                         "count": len(rows)}, clock=clock)
    return rows


def certificate_status(row: Certificate, now: datetime) -> str:
    """revoked | expired | not-yet-valid | active, as of ``now``."""
    if row.revoked_at is not None and row.revoked_at <= now:
        return "revoked"
    if row.not_after < now:
        return "expired"
    if row.not_before > now:
        return "not-yet-valid"
    return "active"


def certificate_to_dict(row: Certificate, now: datetime) -> dict:
    return {"fingerprint": row.fingerprint, "agent": row.agent.identifier,
            "agent_kind": row.agent.kind, "subject": row.subject, "issuer": row.issuer,
            "serial": row.serial, "not_before": row.not_before.isoformat(),
            "not_after": row.not_after.isoformat(), "status": certificate_status(row, now),
            "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
            "revocation_reason": row.revocation_reason,
            "bound_at": row.bound_at.isoformat(), "bound_by": row.bound_by}


def authority_to_dict(row: SigningAuthority) -> dict:
    return {"person": row.person.identifier, "organisation": row.organisation.identifier,
            "position": row.position, "valid_from": row.valid_from.isoformat(),
            "valid_until": row.valid_until.isoformat() if row.valid_until else None,
            "basis": row.basis, "recorded_by": row.recorded_by}


# ---- internals ----------------------------------------------------------------------


def _pair(session: Session, person: str, organisation: str) -> tuple[Agent, Agent]:
    """Both agents, the person's row locked: grants and ends for one person queue
    (PostgreSQL row lock; SQLite's BEGIN IMMEDIATE already serialises writers)."""
    # of=Agent: the joined parent (an outer join) cannot be locked on PostgreSQL.
    person_row = session.scalar(select(Agent).where(Agent.identifier == (person or "").strip())
                                .with_for_update(of=Agent))
    if person_row is None:
        raise NotFound(f"no agent with identifier {person!r}")
    org_row = find_agent(session, (organisation or "").strip())
    if org_row is None:
        raise NotFound(f"no agent with identifier {organisation!r}")
    if person_row.kind != "person":
        raise InputError(f"{person_row.identifier} is not a person")
    if org_row.kind != "organisation":
        raise InputError(f"{org_row.identifier} is not an organisation")
    return person_row, org_row


def _periods(session: Session, person: Agent, org: Agent) -> list[SigningAuthority]:
    return list(session.scalars(select(SigningAuthority).where(
        SigningAuthority.person_id == person.id, SigningAuthority.organisation_id == org.id)
        .order_by(SigningAuthority.valid_from)))


def _covers(period: SigningAuthority, at: datetime) -> bool:
    return period.valid_from <= at and (period.valid_until is None or at < period.valid_until)
