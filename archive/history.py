"""The full history of one record, as JSON or PREMIS 3.0 XML (R-HIST-1).

Who created the document and everyone who processed it: the draft it was prepared as
(every change with who, when, what and why), ingest and validation, amendments and
links (R-AMEND-1), revocations (R-REVOKE-1), seals and unseals (R-SEAL-1..3),
renditions (R-CONV-2), repackaging and fixity checks, as the catalog's PREMIS events
and lifecycle rows; and, for principals allowed to read the audit log (auditors, the
operator), every access from the audit log whose target is the record (views,
downloads, exports, denials).

The policy's ``record.history`` decides who may read it (a sealed record's history
only for the readers its decision names); the read is audited, with the format.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive.amendments import LinkView, link_views, redact_events
from archive.audit import entry_to_dict
from archive.clock import Clock
from archive.drafts import change_to_dict
from archive.errors import InputError, NotFound
from archive.models import (
    AuditEntry,
    Draft,
    Event,
    Record,
    Rendition,
    Revocation,
    Seal,
    SealRecord,
)
from archive.premis import PREMIS_NS, PREMIS_SCHEMA_LOCATION, XSI_NS, xml_datetime, xml_text
from archive.principal import Principal
from archive.records import _STEP_ORDER

FORMATS = ("json", "premis")


@dataclass
class History:
    record: Record
    events: list[Event]
    links: list[LinkView]
    draft: Draft | None
    revocations: list[Revocation]
    seals: list[Seal]
    renditions: list[Rendition]
    accesses: list[AuditEntry] | None = None  # None: the principal may not read the log
    extra_events: list[dict] = field(default_factory=list)


def full_history(session: Session, principal: Principal, record_id: str, *,
                 fmt: str = "json", client: str = "", clock: Clock | None = None) -> History:
    """Everything known of the record's processing that ``principal`` may read."""
    if fmt not in FORMATS + ("text",):
        raise InputError(f"format: expected one of text, {', '.join(FORMATS)}")
    record = session.scalar(select(Record).where(Record.id == record_id)
                            .options(selectinload(Record.issuing_org)))
    if record is None:
        exc = NotFound(f"no record with id {record_id!r}")
        exc.audit_after_rollback = {"principal": principal, "action": "record.history",
                                    "target": f"record:{record_id}", "outcome": "not_found",
                                    "client": client}
        raise exc
    policy.require(principal, policy.HISTORY, policy.facts_of(record), client=client)
    events = redact_events(session, principal, list(session.scalars(
        select(Event).where(Event.record_id == record_id)
        .order_by(Event.occurred_at, _STEP_ORDER, Event.id))))
    draft = session.scalar(select(Draft).where(Draft.record_id == record_id)
                           .options(selectinload(Draft.changes)))
    seals = list(session.scalars(select(Seal).join(SealRecord, SealRecord.seal_id == Seal.id)
                                 .where(SealRecord.record_id == record_id)
                                 .options(selectinload(Seal.authority))
                                 .order_by(Seal.sealed_at)))
    history = History(
        record=record, events=events, links=link_views(session, principal, record_id),
        draft=draft,
        revocations=list(session.scalars(select(Revocation)
                                         .where(Revocation.record_id == record_id)
                                         .order_by(Revocation.decided_at))),
        seals=seals,
        renditions=list(session.scalars(select(Rendition)
                                        .where(Rendition.record_id == record_id)
                                        .order_by(Rendition.created_at))))
    if policy.decide(principal, policy.AUDIT_READ).allowed:
        history.accesses = list(session.scalars(
            select(AuditEntry).where(AuditEntry.target == f"record:{record_id}")
            .order_by(AuditEntry.seq)))
    audit.append(session, principal, "record.history", f"record:{record_id}", client=client,
                 detail={"format": fmt, "events": len(events),
                         "accesses": None if history.accesses is None
                         else len(history.accesses)}, clock=clock)
    return history


# ---- JSON ---------------------------------------------------------------------------


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def to_json(history: History) -> dict:
    r = history.record
    draft = history.draft
    data = {
        "record": {"id": r.id, "number_symbol": r.number_symbol, "doc_type": r.doc_type,
                   "date": r.doc_date.isoformat(), "status": r.status,
                   "issuing_org": r.issuing_org.identifier if r.issuing_org else None,
                   "classification": r.classification, "created_at": _iso(r.created_at),
                   "created_by": r.created_by},
        "events": [{"id": e.id, "type": e.event_type, "occurred_at": _iso(e.occurred_at),
                    "agent": e.agent, "outcome": e.outcome, "detail": e.detail,
                    "data": e.data or {}} for e in history.events],
        "links": [v.to_dict() for v in history.links],
        "draft": None if draft is None else {
            "id": draft.id, "created_at": _iso(draft.created_at),
            "created_by": draft.created_by,
            "changes": [change_to_dict(c) for c in draft.changes]},
        "revocations": [{"id": v.id, "action": v.action, "reason": v.reason, "form": v.form,
                         "legal_basis": v.legal_basis, "decision_ref": v.decision_ref,
                         "decided_at": _iso(v.decided_at), "decided_by": v.decided_by}
                        for v in history.revocations],
        "seals": [{"id": s.id, "reference": s.reference,
                   "decision_date": s.decision_date.isoformat(),
                   "authority": s.authority.identifier if s.authority else None,
                   "scope": s.scope, "sealed_at": _iso(s.sealed_at), "sealed_by": s.sealed_by,
                   "status": s.status, "lifted_at": _iso(s.lifted_at),
                   "lifted_by": s.lifted_by, "lift_reference": s.lift_reference}
                  for s in history.seals],
        "renditions": [{"id": x.id, "created_at": _iso(x.created_at),
                        "created_by": x.created_by, "converter": x.converter,
                        "page_count": x.page_count} for x in history.renditions],
        "accesses_included": history.accesses is not None,
    }
    if history.accesses is not None:
        data["accesses"] = [entry_to_dict(a) for a in history.accesses]
    return data


# ---- PREMIS 3.0 ---------------------------------------------------------------------

# How a link reads in PREMIS, from the original's side and from the successor's side.
_RELATION = {"correction": ("reference", "is corrected by", "corrects"),
             "replacement": ("replacement", "is replaced by", "replaces"),
             "withdrawal": ("reference", "is withdrawn by", "withdraws")}


def _el(parent, tag: str, text: object | None = None, **attrs) -> etree._Element:
    node = etree.SubElement(parent, f"{{{PREMIS_NS}}}{tag}", attrs)
    if text is not None:
        node.text = xml_text(text)
    return node


def _ident(parent, tag: str, id_type: str, value: str) -> etree._Element:
    node = _el(parent, tag)
    _el(node, f"{tag}Type", id_type)
    _el(node, f"{tag}Value", value)
    return node


@dataclass
class _PremisEvent:
    id_type: str
    id_value: str
    event_type: str
    at: object
    agent: str
    outcome: str
    detail: str
    note: str = ""


def _mentioned(rows_id: str, events: list[Event]) -> bool:
    return any(rows_id in json.dumps(e.data or {}, default=str) or rows_id in (e.detail or "")
               for e in events)


def _premis_events(history: History) -> list[_PremisEvent]:
    out = [_PremisEvent("UUID", e.id, e.event_type, e.occurred_at, e.agent, e.outcome,
                        e.detail) for e in history.events]
    if history.draft is not None:
        d = history.draft
        out.append(_PremisEvent("local", f"draft:{d.id}", "creation", d.created_at,
                                d.created_by, "success", f"draft {d.id} created"))
        for c in d.changes:
            out.append(_PremisEvent("local", f"draft-change:{c.id}", "metadata modification",
                                    c.changed_at, c.changed_by, "success",
                                    json.dumps(c.changes, ensure_ascii=False, default=str),
                                    note=f"reason: {c.reason}"))
    # Lifecycle rows no event of the record mentions (kept by their own services).
    for v in history.revocations:
        if not _mentioned(v.id, history.events):
            out.append(_PremisEvent("local", f"revocation:{v.id}", v.action, v.decided_at,
                                    v.decided_by, "success",
                                    f"{v.form} {v.decision_ref or ''}: {v.reason}",
                                    note=f"legal basis: {v.legal_basis}"))
    for s in history.seals:
        if not _mentioned(s.id, history.events):
            out.append(_PremisEvent("local", f"seal:{s.id}", "seal", s.sealed_at, s.sealed_by,
                                    "success", f"sealed under decision {s.reference}"))
            if s.lifted_at is not None:
                out.append(_PremisEvent("local", f"unseal:{s.id}", "unseal", s.lifted_at,
                                        s.lifted_by or "", "success",
                                        f"unsealed ({s.lift_reference or ''})"))
    for x in history.renditions:
        if not _mentioned(x.id, history.events):
            out.append(_PremisEvent("local", f"rendition:{x.id}", "rendition", x.created_at,
                                    x.created_by, "success",
                                    f"paper rendition {x.id} by {x.converter}"))
    for a in history.accesses or []:
        reason = (a.detail or {}).get("reason")
        out.append(_PremisEvent("local", f"audit:{a.seq}", "access", a.occurred_at, a.actor,
                                a.outcome, f"{a.action} from {a.client or 'unknown address'}",
                                note=f"reason: {reason}" if reason else ""))
    out.sort(key=lambda e: e.at)
    return out


def _agent_type(agent: str) -> str:
    kind = agent.split(":", 1)[0]
    return {"user": "person", "system": "software", "token": "organization"}.get(kind, "other")


def to_premis(history: History) -> bytes:
    """A PREMIS 3.0 document: the record, its linked records, every event and agent."""
    root = etree.Element(f"{{{PREMIS_NS}}}premis", nsmap={"premis": PREMIS_NS, "xsi": XSI_NS},
                         version="3.0")
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{PREMIS_NS} {PREMIS_SCHEMA_LOCATION}")
    xsi_type = f"{{{XSI_NS}}}type"
    record = history.record
    events = _premis_events(history)

    entity = _el(root, "object", **{xsi_type: "premis:intellectualEntity"})
    _ident(entity, "objectIdentifier", "UUID", record.id)
    _ident(entity, "objectIdentifier", "local", f"{record.number_symbol}")
    for link in history.links:
        rel_type, passive, active = _RELATION.get(link.kind, ("reference", link.kind,
                                                              link.kind))
        rel = _el(entity, "relationship")
        _el(rel, "relationshipType", rel_type)
        _el(rel, "relationshipSubType", passive if link.direction == "successor" else active)
        if link.visible:
            _ident(rel, "relatedObjectIdentifier", "UUID", link.record_id)
        else:  # a record this reader may not see: neither its id nor its number
            _ident(rel, "relatedObjectIdentifier", "local", "withheld")
    for ev in events:
        _ident(entity, "linkingEventIdentifier", ev.id_type, ev.id_value)

    for ev in events:
        node = _el(root, "event")
        _ident(node, "eventIdentifier", ev.id_type, ev.id_value)
        _el(node, "eventType", ev.event_type)
        _el(node, "eventDateTime", xml_datetime(ev.at))
        if ev.detail:
            _el(_el(node, "eventDetailInformation"), "eventDetail", ev.detail)
        outcome = _el(node, "eventOutcomeInformation")
        _el(outcome, "eventOutcome", ev.outcome)
        if ev.note:
            _el(_el(outcome, "eventOutcomeDetail"), "eventOutcomeDetailNote", ev.note)
        _ident(node, "linkingAgentIdentifier", "local", ev.agent)
        _ident(node, "linkingObjectIdentifier", "UUID", record.id)

    for agent in sorted({ev.agent for ev in events}):
        node = _el(root, "agent")
        _ident(node, "agentIdentifier", "local", agent)
        _el(node, "agentName", agent)
        _el(node, "agentType", _agent_type(agent))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

