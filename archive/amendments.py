"""Corrections, replacements and withdrawals: a new document linked to the original
(R-AMEND-1).

An archived document is never edited in place. Its correction (đính chính),
replacement (thay thế) or withdrawal (thu hồi) is a new signed document, ingested
through the normal ingest (every signature validated), and linked to the original by a
:class:`~archive.models.RecordLink` registered in the same transaction as the new
record. The original's package is not touched; both records get an ``amendment`` event.

The ingest itself lives in :mod:`ingest.amendments`: this module gives it the check
that runs before anything is staged (:func:`check_amendment`) and the registration that
runs with the new record (:func:`register_amendment`), and answers who is linked to
whom (:func:`links_of`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive.clock import Clock, SystemClock
from archive.errors import InputError, NotFound, Refused
from archive.models import Event, Record, RecordLink
from archive.principal import Principal

KINDS = ("correction", "replacement", "withdrawal")
MAX_REASON = 2000
# How each kind reads from the original's side and from the successor's side.
_DONE_BY = {"correction": "corrected by", "replacement": "replaced by",
            "withdrawal": "withdrawn by"}
_DOES = {"correction": "corrects", "replacement": "replaces", "withdrawal": "withdraws"}


def validate_request(kind: str, reason: str | None) -> str:
    """The reason, stripped; bad input is named."""
    if kind not in KINDS:
        raise InputError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    reason = (reason or "").strip()
    if not reason:
        raise InputError("reason: say why the document is "
                         f"{_DONE_BY[kind].split()[0]} (it is kept with the link)")
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise InputError(f"reason: at most {MAX_REASON} characters, no NUL")
    return reason


def _original(session: Session, principal: Principal, original_id: str,
              client: str) -> Record:
    record = session.scalar(select(Record).where(Record.id == original_id)
                            .options(selectinload(Record.issuing_org)))
    if record is None:
        exc = NotFound(f"no record with id {original_id!r} to amend")
        exc.audit_after_rollback = {"principal": principal, "action": "record.amend",
                                    "target": f"record:{original_id}",
                                    "outcome": "not_found", "client": client}
        raise exc
    return record


def check_amendment(session: Session, principal: Principal, original_id: str, kind: str,
                    reason: str, *, client: str = "") -> Record:
    """May ``principal`` amend the original? Runs before the successor is staged.

    The policy decides (clerks, strong login, within clearance and grants; a sealed or
    destroyed original refuses): a denial is audited by the unit of work.
    """
    validate_request(kind, reason)
    record = _original(session, principal, original_id, client)
    # AMEND checks what VIEW checks (clearance, grants) and the record's state.
    policy.require(principal, policy.AMEND, policy.facts_of(record), client=client)
    return record


def register_amendment(session: Session, principal: Principal, original_id: str,
                       successor: Record, kind: str, reason: str, *, client: str = "",
                       clock: Clock | None = None) -> RecordLink:
    """Link the successor to the original, in the transaction registering the successor.

    The policy is asked again (the original may have been sealed meanwhile).
    """
    reason = validate_request(kind, reason)
    record = _original(session, principal, original_id, client)
    # AMEND checks what VIEW checks (clearance, grants) and the record's state.
    policy.require(principal, policy.AMEND, policy.facts_of(record), client=client)
    if successor.id == record.id:
        raise Refused("a document cannot amend itself")
    now = (clock or SystemClock()).now()
    link = RecordLink(record_id=successor.id, target_id=record.id, kind=kind, reason=reason,
                      created_at=now, created_by=str(principal))
    session.add(link)
    data = {"kind": kind, "reason": reason, "successor": successor.id, "original": record.id}
    session.add(Event(id=str(uuid.uuid4()), record_id=record.id, event_type="amendment",
                      occurred_at=now, agent=str(principal), outcome="success",
                      detail=f"{_DONE_BY[kind]} {successor.id}: {reason}", data=data))
    session.add(Event(id=str(uuid.uuid4()), record_id=successor.id, event_type="amendment",
                      occurred_at=now, agent=str(principal), outcome="success",
                      detail=f"{_DOES[kind]} {record.id}: {reason}", data=data))
    session.flush()
    detail = {"kind": kind, "successor": successor.id}
    if successor.classification == "normal" and record.classification == "normal":
        # R-CLASS-1: auditors of any clearance read the log; a classified reason stays out.
        detail["reason"] = reason
    audit.append(session, principal, "record.amend", f"record:{record.id}", client=client,
                 detail=detail, clock=clock)
    return link


class AlreadyArchived(Refused):
    """The successor's file is already archived (same bytes): nothing was linked."""

    def __init__(self, original_id: str, existing_id: str):
        self.original_id = original_id
        self.existing_id = existing_id
        super().__init__(f"the file is already archived as record {existing_id}: a "
                         f"correction, replacement or withdrawal of {original_id} must be "
                         "a new document; nothing was linked")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "original_id": self.original_id,
                "existing_record_id": self.existing_id}


def refuse_duplicate(session: Session, principal: Principal, original_id: str,
                     existing_id: str, *, client: str = "", clock: Clock | None = None
                     ) -> None:
    """The successor's bytes are already archived: nothing is linked, and that is said
    (and audited) instead of passing silently."""
    audit.append(session, principal, "record.amend", f"record:{original_id}",
                 outcome="refused", client=client, clock=clock,
                 detail={"reason": "the file is already archived", "existing": existing_id})


def redact_events(session: Session, principal: Principal, events: list[Event]) -> list[Event]:
    """``events`` with each amendment event naming a record the principal may not see
    told as "a record you may not see" (no id, no reason). Such events are detached
    from the session first, so the stored rows never change."""
    out = []
    for event in events:
        data = event.data or {}
        if event.event_type == "amendment" and data.get("kind") in KINDS:
            on_original = event.record_id == data.get("original")
            other_id = data.get("successor") if on_original else data.get("original")
            other = session.get(Record, other_id) if other_id else None
            if other is None or not policy.decide(principal, policy.VIEW,
                                                  policy.facts_of(other)).allowed:
                kind = data["kind"]
                session.expunge(event)
                event.detail = (f"{_DONE_BY[kind] if on_original else _DOES[kind]} "
                                "a record you may not see")
                event.data = {"kind": kind}
        out.append(event)
    return out


@dataclass(frozen=True)
class LinkView:
    """One link as a principal may see it: the other record's facts only if visible."""

    direction: str  # "successor" (the other record amends this one) | "predecessor"
    kind: str
    created_at: object
    created_by: str
    visible: bool
    record_id: str | None = None
    number_symbol: str | None = None
    summary: str | None = None
    status: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict:
        return {"direction": self.direction, "kind": self.kind,
                "created_at": self.created_at.isoformat(), "created_by": self.created_by,
                "visible": self.visible, "record_id": self.record_id,
                "number_symbol": self.number_symbol, "summary": self.summary,
                "status": self.status, "reason": self.reason}


def link_views(session: Session, principal: Principal, record_id: str) -> list[LinkView]:
    """Successors and predecessors of a record, each shown only as far as the policy
    lets the principal see the other record: "a record you may not see" otherwise
    (never its number, summary, id or the link's reason). No policy check or audit of
    ``record_id`` itself: callers do that (:func:`links_of`, the record page)."""
    rows = session.scalars(
        select(RecordLink).where(or_(RecordLink.record_id == record_id,
                                     RecordLink.target_id == record_id))
        .options(selectinload(RecordLink.record).selectinload(Record.issuing_org),
                 selectinload(RecordLink.target).selectinload(Record.issuing_org))
        .order_by(RecordLink.created_at, RecordLink.id))
    out = []
    for link in rows:
        successor = link.target_id == record_id
        other = link.record if successor else link.target
        direction = "successor" if successor else "predecessor"
        common = {"direction": direction, "kind": link.kind, "created_at": link.created_at,
                  "created_by": link.created_by}
        if policy.decide(principal, policy.VIEW, policy.facts_of(other)).allowed:
            out.append(LinkView(**common, visible=True, record_id=other.id,
                                number_symbol=other.number_symbol, summary=other.summary,
                                status=other.status, reason=link.reason))
        else:
            out.append(LinkView(**common, visible=False))
    return out


def links_of(session: Session, principal: Principal, record_id: str, *, client: str = "",
             clock: Clock | None = None) -> list[LinkView]:
    """The record's successors and predecessors (R-AMEND-1); the read is audited."""
    record = session.scalar(select(Record).where(Record.id == record_id)
                            .options(selectinload(Record.issuing_org)))
    if record is None:
        exc = NotFound(f"no record with id {record_id!r}")
        exc.audit_after_rollback = {"principal": principal, "action": "record.links",
                                    "target": f"record:{record_id}", "outcome": "not_found",
                                    "client": client}
        raise exc
    policy.require(principal, policy.VIEW, policy.facts_of(record), client=client)
    views = link_views(session, principal, record_id)
    audit.append(session, principal, "record.links", f"record:{record_id}", client=client,
                 detail={"links": len(views),
                         "withheld": sum(1 for v in views if not v.visible)}, clock=clock)
    return views
