"""Reading records: list, show, history, retrieve the original (R-HIST-1, R-AUDIT-1).

Every read asks the policy decision point first (:mod:`archive.policy`; a denial is
audited by the unit of work) and appends an audit entry in the same transaction.
Search returns only what the principal may see. Retrieval streams the stored bytes
through a :class:`~archive.fixity.VerifyingReader` (R-FIX-1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import BinaryIO

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive.clock import Clock
from archive.encryption import associated_data, open_decrypting
from archive.errors import AccessDenied, InputError, IntegrityError, NotFound
from archive.fixity import VerifyingReader
from archive.keystore import KeyVault
from archive.models import Agent, Event, PackageVersion, Record, StoredFile
from archive.principal import Principal
from archive.storage import ObjectStore

# Where ingest keeps the signature validation report inside every AIP (R-SIG-2).
SIGNATURE_REPORT_PATH = "data/signatures/report.json"


@dataclass(frozen=True)
class RecordFilter:
    text: str | None = None
    doc_type: str | None = None
    issuing_org: str | None = None
    status: str | None = None
    classification: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    limit: int = 50
    offset: int = 0

    def to_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, date) else v)
                for k, v in self.__dict__.items() if v is not None}


# Events of one step share its time; within a time they are listed in the order the
# steps happen at ingest (R-HIST-1), other types after them.
_STEPS = ("message digest calculation", "format identification", "validation",
          "encryption", "ingestion", "timestamping", "fixity check")
_STEP_ORDER = case({name: n for n, name in enumerate(_STEPS)}, value=Event.event_type,
                   else_=len(_STEPS))


def _get(session: Session, record_id: str) -> Record:
    record = session.scalar(select(Record).where(Record.id == record_id)
                            .options(selectinload(Record.versions)
                                     .selectinload(PackageVersion.files),
                                     selectinload(Record.issuing_org)))
    if record is None:
        raise NotFound(f"no record with id {record_id!r}")
    return record


def _find(session: Session, principal: Principal, record_id: str, action: str,
          client: str) -> Record:
    """The record, or NotFound; the attempt is audited even though the use case fails."""
    try:
        return _get(session, record_id)
    except NotFound as exc:
        exc.audit_after_rollback = {"principal": principal, "action": action,
                                    "target": f"record:{record_id}", "outcome": "not_found",
                                    "client": client}
        raise


def list_records(session: Session, principal: Principal, flt: RecordFilter, *,
                 client: str = "", clock: Clock | None = None) -> tuple[int, list[Record]]:
    """Records matching ``flt`` that ``principal`` may see (newest document date
    first), and their total count."""
    policy.require(principal, policy.SEARCH, client=client)
    scope = policy.search_scope(principal)
    query = select(Record).join(Agent, Agent.id == Record.issuing_org_id) \
        .where(Record.classification.in_(scope.classifications))
    if not scope.everything:
        query = query.where(or_(Record.fonds.in_(scope.fonds or ("",)),
                                Agent.identifier.in_(scope.organisations or ("",))))
    if flt.text:
        like = f"%{flt.text.lower()}%"
        query = query.where(or_(func.lower(Record.summary).like(like),
                                func.lower(Record.number_symbol).like(like)))
    if flt.doc_type:
        query = query.where(Record.doc_type == flt.doc_type)
    if flt.issuing_org:
        query = query.where(Agent.identifier == flt.issuing_org)
    if flt.status:
        query = query.where(Record.status == flt.status)
    if flt.classification:
        query = query.where(Record.classification == flt.classification)
    if flt.date_from:
        query = query.where(Record.doc_date >= flt.date_from)
    if flt.date_to:
        query = query.where(Record.doc_date <= flt.date_to)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = list(session.scalars(
        query.options(selectinload(Record.issuing_org))
        .order_by(Record.doc_date.desc(), Record.created_at.desc())
        .limit(flt.limit).offset(flt.offset)))
    audit.append(session, principal, "records.search", "records", client=client,
                 detail={"filter": flt.to_dict(), "returned": len(rows), "total": total},
                 clock=clock)
    return total, rows


def show_record(session: Session, principal: Principal, record_id: str, *,
                client: str = "", clock: Clock | None = None) -> Record:
    record = _find(session, principal, record_id, "record.view", client)
    policy.require(principal, policy.VIEW, policy.facts_of(record), client=client)
    audit.append(session, principal, "record.view", f"record:{record_id}", client=client,
                 clock=clock)
    return record


def record_history(session: Session, principal: Principal, record_id: str, *,
                   client: str = "", clock: Clock | None = None) -> list[Event]:
    record = _find(session, principal, record_id, "record.history", client)
    policy.require(principal, policy.HISTORY, policy.facts_of(record), client=client)
    events = list(session.scalars(select(Event).where(Event.record_id == record_id)
                                  .order_by(Event.occurred_at, _STEP_ORDER, Event.id)))
    from archive.amendments import redact_events  # R-AMEND-1: hidden successors stay hidden

    events = redact_events(session, principal, events)
    audit.append(session, principal, "record.history", f"record:{record_id}", client=client,
                 detail={"events": len(events)}, clock=clock)
    return events


def open_original(session: Session, store: ObjectStore, principal: Principal,
                  record_id: str, *, client: str = "", clock: Clock | None = None,
                  vault: KeyVault | None = None) -> tuple[StoredFile, BinaryIO]:
    """A verifying stream over the record's original file (latest AIP version).

    The stored bytes are checked against the catalog digests while streaming; an
    encrypted original (R-CLASS-1) is decrypted with ``vault`` and its GCM tag checked
    at the end. Either failure is raised from the final read, so callers must publish
    the output only after the stream ended cleanly.
    """
    record = _find(session, principal, record_id, "record.download", client)
    policy.require(principal, policy.DOWNLOAD, policy.facts_of(record), client=client)
    version = record.versions[-1]
    original = next(f for f in version.files if f.role == "original")
    if original.encryption and vault is None:
        raise InputError(f"record {record_id} is encrypted (classified); its keys are "
                         "needed to read it")
    raw = store.open(version.storage_key, original.offset, original.size)
    try:
        stream = VerifyingReader(raw, name=f"{version.storage_key}:{original.path}",
                                 size=original.size, digests=retrieval_digests(original.digests))
        if original.encryption:
            stream = open_decrypting(stream, original.encryption, original.size, vault,
                                     aad=associated_data(record_id, original.path))
        # Last before the commit: the audit chain's head row stays locked only briefly.
        audit.append(session, principal, "record.download", f"record:{record_id}",
                     client=client, detail={"path": original.path,
                                            "storage_key": version.storage_key,
                                            "size": original.size}, clock=clock)
    except BaseException:
        raw.close()
        raise
    return original, stream


def retrieval_digests(digests: dict) -> dict:
    """The digests checked while a file is retrieved (R-FIX-1): SHA-256 alone.

    Every stored file carries SHA-256 and SHA-512; SHA-256 is collision-resistant on
    its own and three times cheaper to check as bytes stream out, so retrievals check
    it and the scheduled fixity audits check both.
    """
    return {"sha256": digests["sha256"]} if "sha256" in digests else dict(digests)


def open_package(session: Session, store: ObjectStore, principal: Principal,
                 record_id: str, version: int | None = None, *, client: str = "",
                 clock: Clock | None = None) -> tuple[PackageVersion, BinaryIO]:
    """A verifying stream over one whole stored AIP (the latest version by default).

    Classified files inside stay encrypted, as stored (R-CLASS-1).
    """
    record = _find(session, principal, record_id, "record.export", client)
    policy.require(principal, policy.EXPORT, policy.facts_of(record), client=client)
    chosen = record.versions[-1] if version is None else \
        next((v for v in record.versions if v.version == version), None)
    if chosen is None:
        raise NotFound(f"record {record_id} has no package version {version}")
    raw = store.open(chosen.storage_key)
    try:
        audit.append(session, principal, "record.export", f"record:{record_id}",
                     client=client, detail={"version": chosen.version,
                                            "storage_key": chosen.storage_key,
                                            "size": chosen.size}, clock=clock)
    except BaseException:
        raw.close()
        raise
    return chosen, VerifyingReader(raw, name=chosen.storage_key, size=chosen.size,
                                   digests=retrieval_digests(chosen.digests))


def signature_report(session: Session, store: ObjectStore, principal: Principal,
                     record_id: str, *, client: str = "", clock: Clock | None = None
                     ) -> dict | None:
    """The signature validation report kept in the AIP at ingest (None: none kept)."""
    import json

    record = _find(session, principal, record_id, "record.signatures", client)
    facts = policy.facts_of(record)
    policy.require(principal, policy.VIEW, facts, client=client)
    # R-SEAL-2: the report is read from the sealed package: the decision's readers only.
    if facts.seal is not None and not policy.decide(principal, policy.HISTORY, facts):
        raise AccessDenied(str(principal), "record.signatures", f"record:{record_id}",
                           f"the record is sealed under decision {facts.seal.reference}",
                           client=client)
    version = record.versions[-1]
    stored = next((f for f in version.files if f.path == SIGNATURE_REPORT_PATH), None)
    audit.append(session, principal, "record.signatures", f"record:{record_id}",
                 client=client, clock=clock, detail={"found": stored is not None})
    if stored is None:
        return None
    with VerifyingReader(store.open(version.storage_key, stored.offset, stored.size),
                         name=f"{version.storage_key}:{stored.path}", size=stored.size,
                         digests=dict(stored.digests)) as reader:
        data = b"".join(iter(lambda: reader.read(65536), b""))
    try:
        return json.loads(data)
    except ValueError as exc:
        raise IntegrityError(f"stored signature report of {record_id} is not JSON") from exc


def report_retrieval_failure(session: Session, principal: Principal, record_id: str,
                             problem: str, *, client: str = "",
                             clock: Clock | None = None) -> None:
    """R-FIX-1 / R-INCIDENT-1: a download stopped because the stored bytes did not match
    their digests. Recorded as a failed fixity event (an alert) and an audit entry."""
    import uuid

    from archive.clock import SystemClock

    now = (clock or SystemClock()).now()
    session.add(Event(id=str(uuid.uuid4()), record_id=record_id, event_type="fixity check",
                      occurred_at=now, agent=str(principal), outcome="failure",
                      detail=f"retrieval stopped: {problem}",
                      data={"alert": True, "during": "retrieval"}))
    audit.append(session, principal, "record.download", f"record:{record_id}",
                 outcome="failed", client=client, clock=clock,
                 detail={"alert": "fixity", "problem": problem})


def record_to_dict(record: Record, *, detail: bool = False) -> dict:
    data = {
        "id": record.id,
        "number_symbol": record.number_symbol,
        "doc_type": record.doc_type,
        "date": record.doc_date.isoformat(),
        "issuing_org": record.issuing_org.identifier if record.issuing_org else None,
        "issuing_org_name": record.issuing_org.name if record.issuing_org else None,
        "summary": record.summary,
        "classification": record.classification,
        "status": record.status,
        "created_at": record.created_at.isoformat(),
    }
    if detail:
        seal = record.active_seal  # R-SEAL-3: the record shows as sealed
        data.update({
            "sealed": seal is not None,
            "seal": None if seal is None else {
                "id": seal.id, "reference": seal.reference,
                "date": seal.decision_date.isoformat(),
                "authority": seal.authority.identifier if seal.authority else None,
                "scope": seal.scope, "sealed_at": seal.sealed_at.isoformat()},
            "origin": record.origin,  # R-CONV-1: born-digital | digitised
            "paper_original": None if record.paper_original is None else {
                "reference": record.paper_original.reference,
                "status": record.paper_original.status},
            "signer": record.signer,
            "retention_rule": record.retention_rule,
            "retention_until": record.retention_until.isoformat()
            if record.retention_until else "permanent",
            "fonds": record.fonds,
            "file_ref": record.file_ref,
            "page_count": record.page_count,
            "language": record.language,
            "format": {"puid": record.format_puid, "name": record.format_name,
                       "pdfa": record.pdfa},
            "fingerprint_sha256": record.fingerprint,
            "created_by": record.created_by,
            **(record.extra or {}),
            "versions": [
                {"version": v.version, "storage_key": v.storage_key, "size": v.size,
                 "digests": v.digests, "created_at": v.created_at.isoformat(),
                 "last_fixity_at": v.last_fixity_at.isoformat() if v.last_fixity_at else None,
                 "last_fixity_outcome": v.last_fixity_outcome,
                 "files": [{"path": f.path, "role": f.role, "size": f.size,
                            "digests": f.digests, "format_puid": f.format_puid,
                            "original_name": f.original_name} for f in v.files]}
                for v in record.versions
            ],
        })
    return data


def event_to_dict(event: Event) -> dict:
    return {"id": event.id, "type": event.event_type,
            "occurred_at": event.occurred_at.isoformat(), "agent": event.agent,
            "outcome": event.outcome, "detail": event.detail}
