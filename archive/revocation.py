"""Revocation of validity (hủy hiệu lực, R-REVOKE-1) and its correction by a new decision.

Revoking ends a document's legal value without touching its bytes: the stored AIP
versions stay as they are (a later AIP version carries the decision, see
``ingest/versions.py``), the record is marked ``revoked`` everywhere, the decision
(who, when, reason, form, legal basis, decision reference) is a :class:`Revocation` row
that is never edited or deleted, and every party recorded on the document (the issuing
organisation and each receiving organisation) gets a notification in the same
transaction. Paper renditions read their validity from the record's status, so they
become invalid at the same instant (R-CONV-2). Revoking a paper original revokes each
digitised copy made of it (R-CONV-1); revoking a copy leaves the paper alone.

A mistaken revocation is corrected by a reinstatement: a new decision row (action
``reinstate``) pointing at the revocation it corrects. Each function is one unit of
work: policy check, rows, PREMIS-style event, notifications and one audit entry.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive.clock import Clock, SystemClock
from archive.errors import InputError, NotFound, Refused
from archive.models import Event, Notification, PaperOriginal, Record, Rendition, Revocation
from archive.notifications import record_notification
from archive.principal import Principal

REVOKE, REINSTATE = "revoke", "reinstate"
KIND_REVOKED, KIND_REINSTATED = "record.revoked", "record.reinstated"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Longest accepted text of each field (the columns: form and decision_ref are 200).
_LIMITS = {"reason": 4000, "form": 200, "legal_basis": 4000, "decision_ref": 200}


@dataclass(frozen=True)
class Decision:
    """What a revocation or reinstatement decision says (validated)."""

    reason: str
    form: str  # hình thức, e.g. "Quyết định"
    legal_basis: str  # căn cứ
    decision_ref: str | None = None  # the decision's number, if any

    @classmethod
    def of(cls, *, reason: str, form: str, legal_basis: str, decision_ref: str | None,
           require_ref: bool = False) -> Decision:
        """Check every field at once; :class:`InputError` lists all problems."""
        values = {"reason": reason, "form": form, "legal_basis": legal_basis,
                  "decision_ref": decision_ref}
        problems, clean = [], {}
        for name, value in values.items():
            text = " ".join(str(value).split()) if name != "reason" and value is not None \
                else (str(value).strip() if value is not None else "")
            if value is not None and not isinstance(value, str):
                problems.append(f"{name}: must be text")
            elif not text and (name != "decision_ref" or require_ref):
                problems.append(f"{name}: required")
            elif _CONTROL.search(text):
                problems.append(f"{name}: must not contain control characters")
            elif len(text) > _LIMITS[name]:
                problems.append(f"{name}: at most {_LIMITS[name]} characters")
            clean[name] = text or None
        if problems:
            raise InputError("; ".join(problems))
        return cls(reason=clean["reason"], form=clean["form"],
                   legal_basis=clean["legal_basis"], decision_ref=clean["decision_ref"])


@dataclass
class Outcome:
    """A recorded decision and the notifications it caused (for delivery after commit)."""

    revocations: list[Revocation]
    notifications: list[Notification]

    @property
    def revocation(self) -> Revocation:
        return self.revocations[0]

    @property
    def notification_ids(self) -> list[str]:
        return [n.id for n in self.notifications]


def refused(message: str, principal: Principal, action: str, target: str,
            client: str = "") -> Refused:
    """A :class:`Refused` whose attempt is audited after the use case rolled back."""
    exc = Refused(message)
    exc.audit_after_rollback = {"principal": principal, "action": action, "target": target,
                                "outcome": "refused", "client": client,
                                "detail": {"reason": message}}
    return exc


# ---- reading ----------------------------------------------------------------------


def _locked_record(session: Session, record_id: str) -> Record:
    """The record, locked for this transaction (two decisions never both pass the check)."""
    record = session.scalar(select(Record).where(Record.id == record_id)
                            .options(selectinload(Record.issuing_org),
                                     selectinload(Record.seals))
                            .with_for_update(of=Record))
    if record is None:
        raise NotFound(f"no record with id {record_id!r}")
    return record


def _not_found(principal: Principal, record_id: str, action: str, client: str) -> NotFound:
    """NotFound for ``record_id``, its attempt audited after the rollback (R-AUDIT-1)."""
    exc = NotFound(f"no record with id {record_id!r}")
    exc.audit_after_rollback = {"principal": principal, "action": action,
                                "target": f"record:{record_id}", "outcome": "not_found",
                                "client": client}
    return exc


def _found_or_audited(session: Session, principal: Principal, record_id: str, action: str,
                      client: str) -> Record:
    try:
        return _locked_record(session, record_id)
    except NotFound:
        raise _not_found(principal, record_id, action, client) from None


def revocations_of(session: Session, principal: Principal, record_id: str, *,
                   client: str = "", clock: Clock | None = None) -> list[Revocation]:
    """Every validity decision on the record, oldest first (policy VIEW; audited)."""
    record = session.scalar(select(Record).where(Record.id == record_id)
                            .options(selectinload(Record.issuing_org)))
    if record is None:
        raise _not_found(principal, record_id, "record.revocations", client)
    policy.require(principal, policy.VIEW, policy.facts_of(record), client=client)
    rows = decisions(session, record_id)
    audit.append(session, principal, "record.revocations", f"record:{record_id}",
                 client=client, detail={"decisions": len(rows)}, clock=clock)
    return rows


def decisions(session: Session, record_id: str) -> list[Revocation]:
    """The record's validity decisions, oldest first (no policy check: callers have one)."""
    return list(session.scalars(select(Revocation).where(Revocation.record_id == record_id)
                                .order_by(Revocation.decided_at, Revocation.id)))


def latest_revocation(session: Session, record_id: str) -> Revocation | None:
    return session.scalar(select(Revocation).where(Revocation.record_id == record_id,
                                                   Revocation.action == REVOKE)
                          .order_by(Revocation.decided_at.desc(), Revocation.id.desc())
                          .limit(1))


def revocation_to_dict(row: Revocation) -> dict:
    return {"id": row.id, "record_id": row.record_id, "action": row.action,
            "reason": row.reason, "form": row.form, "legal_basis": row.legal_basis,
            "decision_ref": row.decision_ref, "decided_at": row.decided_at.isoformat(),
            "decided_by": row.decided_by, "cause_id": row.cause_id,
            "corrects_id": row.corrects_id}


# ---- deciding ---------------------------------------------------------------------


def revoke(session: Session, principal: Principal, record_id: str, *, reason: str,
           form: str, legal_basis: str, decision_ref: str | None = None, client: str = "",
           clock: Clock | None = None) -> Outcome:
    """Revoke the record's validity (policy REVOKE: an approver with a strong login;
    the policy refuses a sealed, destroyed or already revoked record)."""
    record = _found_or_audited(session, principal, record_id, policy.REVOKE, client)
    policy.require(principal, policy.REVOKE, policy.facts_of(record), client=client)
    decision = Decision.of(reason=reason, form=form, legal_basis=legal_basis,
                           decision_ref=decision_ref)
    now = (clock or SystemClock()).now()
    row, notes = _apply(session, principal, record, REVOKE, decision, now, clock=clock)
    audit.append(session, principal, "record.revoke", f"record:{record.id}", client=client,
                 detail=_audit_detail(row, decision, notes), clock=clock)
    return Outcome([row], notes)


def reinstate(session: Session, principal: Principal, record_id: str, *, reason: str,
              form: str, legal_basis: str, decision_ref: str | None = None,
              client: str = "", clock: Clock | None = None) -> Outcome:
    """Correct a mistaken revocation by a new, recorded decision (policy REINSTATE:
    only a revoked record); the revocation stays on record, the record is valid again."""
    record = _found_or_audited(session, principal, record_id, policy.REINSTATE, client)
    policy.require(principal, policy.REINSTATE, policy.facts_of(record), client=client)
    decision = Decision.of(reason=reason, form=form, legal_basis=legal_basis,
                           decision_ref=decision_ref)
    corrected = latest_revocation(session, record.id)
    if corrected is None:  # a status set by hand, not by a decision: nothing to correct
        raise refused(f"record {record.id} has no revocation decision to correct",
                      principal, "record.reinstate", f"record:{record.id}", client)
    now = (clock or SystemClock()).now()
    row, notes = _apply(session, principal, record, REINSTATE, decision, now,
                        corrects=corrected, clock=clock)
    audit.append(session, principal, "record.reinstate", f"record:{record.id}",
                 client=client, detail=_audit_detail(row, decision, notes), clock=clock)
    return Outcome([row], notes)


def revoke_paper_original(session: Session, principal: Principal, reference: str, *,
                          reason: str, form: str, legal_basis: str,
                          decision_ref: str | None = None, client: str = "",
                          clock: Clock | None = None) -> Outcome:
    """Revoke a paper original and, at the same instant, every digitised copy of it
    that is still valid (R-REVOKE-1, R-CONV-1). Each copy gets its own decision row;
    the first copy's decision is the cause named by the others. The policy is asked
    for every copy: one refusal refuses the whole decision."""
    target = f"paper:{reference}"
    paper = session.scalar(select(PaperOriginal).where(PaperOriginal.reference == reference)
                           .with_for_update())
    copies = [] if paper is None else list(session.scalars(
        select(Record).where(Record.paper_original_id == paper.id)
        .options(selectinload(Record.issuing_org), selectinload(Record.seals))
        .order_by(Record.created_at, Record.id).with_for_update(of=Record)))
    if not copies:  # no record to ask the policy about: say so, and keep the attempt
        exc = NotFound(f"no paper original {reference!r} with an archived digitised copy")
        exc.audit_after_rollback = {"principal": principal, "action": "paper.revoke",
                                    "target": target, "outcome": "not_found",
                                    "client": client}
        raise exc
    if paper.status == "revoked":
        raise refused(f"the paper original {reference} is already revoked",
                      principal, "paper.revoke", target, client)
    valid = [c for c in copies if c.status != "revoked"]
    for copy in valid:
        policy.require(principal, policy.REVOKE, policy.facts_of(copy), client=client)
    decision = Decision.of(reason=reason, form=form, legal_basis=legal_basis,
                           decision_ref=decision_ref)
    now = (clock or SystemClock()).now()
    paper.status = "revoked"
    rows: list[Revocation] = []
    notes: list[Notification] = []
    for copy in valid:
        row, copy_notes = _apply(session, principal, copy, REVOKE, decision, now,
                                 cause=rows[0] if rows else None, paper=reference,
                                 clock=clock)
        rows.append(row)
        notes.extend(copy_notes)
    audit.append(session, principal, "paper.revoke", target, client=client, clock=clock,
                 detail={"paper_original": paper.id, "form": decision.form,
                         "legal_basis": decision.legal_basis,
                         "decision_ref": decision.decision_ref, "reason": decision.reason,
                         "records": [r.record_id for r in rows],
                         "already_revoked": [c.id for c in copies if c not in valid],
                         "revocations": [r.id for r in rows],
                         "notifications": [n.id for n in notes]})
    return Outcome(rows, notes)


def _apply(session: Session, principal: Principal, record: Record, action: str,
           decision: Decision, now, *, corrects: Revocation | None = None,
           cause: Revocation | None = None, paper: str | None = None,
           clock: Clock | None = None) -> tuple[Revocation, list[Notification]]:
    """The decision row, the new status, the PREMIS event and the notifications."""
    row = Revocation(id=str(uuid.uuid4()), record_id=record.id, action=action,
                     reason=decision.reason, form=decision.form,
                     legal_basis=decision.legal_basis, decision_ref=decision.decision_ref,
                     decided_at=now, decided_by=str(principal),
                     cause_id=cause.id if cause is not None else None,
                     corrects_id=corrects.id if corrects is not None else None)
    session.add(row)
    session.flush()  # the row exists before a later one names it as its cause
    record.status = "revoked" if action == REVOKE else "active"
    renditions = list(session.scalars(select(Rendition.id)
                                      .where(Rendition.record_id == record.id)
                                      .order_by(Rendition.created_at)))
    who = principal.display or str(principal)
    verb = "validity revoked" if action == REVOKE else "validity reinstated"
    detail = (f"{verb} by {who}: {decision.form}"
              + (f" {decision.decision_ref}" if decision.decision_ref else "")
              + f"; basis: {decision.legal_basis}; reason: {decision.reason}"
              + (f" (follows the revocation of paper original {paper})" if paper else ""))
    data = {"decision": row.id, "action": action, "reason": decision.reason,
            "form": decision.form, "legal_basis": decision.legal_basis,
            "decision_ref": decision.decision_ref,
            # R-CONV-2: renditions take their validity from the record, at this instant.
            "renditions": renditions}
    if corrects is not None:
        data["corrects"] = corrects.id
    if cause is not None:
        data["cause"] = cause.id
    if paper is not None:
        data["paper_original"] = paper
    session.add(Event(id=str(uuid.uuid4()), record_id=record.id,
                      event_type="revocation" if action == REVOKE else "reinstatement",
                      occurred_at=now, agent=str(principal), outcome="success",
                      detail=detail, data=data))
    notes = [record_notification(session, recipient=party,
                                 kind=KIND_REVOKED if action == REVOKE else KIND_REINSTATED,
                                 subject=subject, body=body, related=f"record:{record.id}",
                                 clock=clock)
             for party in parties(record)
             for subject, body in [_message(record, action, decision, now)]]
    return row, notes


def parties(record: Record) -> list[str]:
    """Agent identifiers of every party recorded on the document: the issuing
    organisation, then each receiving organisation (``recipients`` in the metadata)."""
    out: list[str] = []
    issuing = record.issuing_org.identifier if record.issuing_org else None
    recipients = (record.extra or {}).get("recipients") or []
    for ident in [issuing, *(recipients if isinstance(recipients, list) else [])]:
        if isinstance(ident, str) and ident and ident not in out:
            out.append(ident)
    return out


def _message(record: Record, action: str, decision: Decision, now) -> tuple[str, str]:
    """Subject and body, Vietnamese then English. A notification is read by every person
    of the party's organisation, whatever their clearance, so for a classified record
    (R-CLASS-1) neither its number nor its summary (trích yếu) is put in it: it is named
    "văn bản mật / classified record" with its archive record id, date and issuer."""
    if record.classification == "normal":
        number = number_vi = number_en = record.number_symbol
    else:
        number = None
        number_vi = f"(văn bản mật, mã hồ sơ {record.id})"
        number_en = f"(classified record, archive record id {record.id})"
    issued = record.doc_date.strftime("%d/%m/%Y")
    org = record.issuing_org.name if record.issuing_org else ""
    org_id = record.issuing_org.identifier if record.issuing_org else ""
    when = now.strftime("%Y-%m-%d %H:%M:%S UTC")
    ref = decision.decision_ref or "—"
    if number is None:
        doc_vi = f"văn bản mật mã hồ sơ {record.id} ngày {issued}"
        doc_en = f"classified record {record.id} of {issued}"
    else:
        doc_vi = f"văn bản số {number} ngày {issued}"
        doc_en = f"document {number} of {issued}"
    if action == REVOKE:
        subject = (f"Hủy hiệu lực {doc_vi} / {doc_en[0].upper()}{doc_en[1:]} revoked")
        vi_head = "Văn bản sau đây đã bị hủy hiệu lực (không còn giá trị pháp lý)."
        en_head = "The following document has been revoked: it no longer has legal effect."
    else:
        subject = f"Khôi phục hiệu lực {doc_vi} / Validity of {doc_en} reinstated"
        vi_head = ("Quyết định hủy hiệu lực văn bản sau đây đã được đính chính: "
                   "văn bản có hiệu lực trở lại.")
        en_head = ("The revocation of the following document was corrected by a new "
                   "decision: the document is valid again.")
    summary_vi = summary_en = ""
    if record.classification == "normal":
        summary_vi = f"Trích yếu: {record.summary}\n"
        summary_en = f"Summary: {record.summary}\n"
    body = (f"{vi_head}\n"
            f"Số, ký hiệu: {number_vi}\nNgày văn bản: {issued}\n"
            f"Cơ quan ban hành: {org} ({org_id})\n{summary_vi}"
            f"Hình thức: {decision.form}\nSố quyết định: {ref}\n"
            f"Căn cứ: {decision.legal_basis}\nLý do: {decision.reason}\n"
            f"Thời điểm: {when}\nMã hồ sơ lưu trữ: {record.id}\n"
            f"\n{en_head}\n"
            f"Number and symbol: {number_en}\nDocument date: {issued}\n"
            f"Issuing body: {org} ({org_id})\n{summary_en}"
            f"Form: {decision.form}\nDecision: {ref}\n"
            f"Legal basis: {decision.legal_basis}\nReason: {decision.reason}\n"
            f"Time: {when}\nArchive record id: {record.id}\n")
    return subject, body


def _audit_detail(row: Revocation, decision: Decision, notes: list[Notification]) -> dict:
    detail = {"decision": row.id, "form": decision.form, "legal_basis": decision.legal_basis,
              "decision_ref": decision.decision_ref, "reason": decision.reason,
              "notified": [n.recipient for n in notes],
              "notifications": [n.id for n in notes]}
    if row.corrects_id:
        detail["corrects"] = row.corrects_id
    return detail
