"""Retention (R-DESTROY-1): extensions of a record's retention period, holds that stop
destruction, and the query of records due for destruction.

- An **extension** is a decision (:class:`~archive.models.RetentionExtension`, never
  edited): the record's ``retention_until`` moves to a later date or to permanent
  (``None``); shortening is refused. A ``retention extension`` PREMIS event and a
  ``retention.extend`` audit entry are written in the same transaction.
- A **hold** (legal, or a pending inquiry into the record's validity) stops any
  destruction until it is released by a recorded decision; a hold row is never deleted.
- :func:`due_records` is the one indexed query of records whose retention expired and
  that may be proposed for destruction. Revoked records are included only once their
  retention expired too: a revoked document is kept intact for its retention period
  (Art. 19.4 of the regulation), never longer by reason of the revocation alone.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import date, datetime

from sqlalchemy import Select, and_, exists, select
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive.clock import Clock, SystemClock
from archive.errors import InputError, NotFound, Refused
from archive.models import (
    Agent,
    DestructionItem,
    DestructionList,
    Event,
    Record,
    RecordHold,
    RetentionExtension,
    Seal,
    SealRecord,
)
from archive.principal import Principal

HOLD_KINDS = ("legal", "revocation-inquiry")
# Statuses a record may be destroyed from, and lists whose items are still pending.
DESTROYABLE = ("active", "revoked")
OPEN_LISTS = ("proposed", "approved", "executing")
_LIMITS = {"reason": 4000, "decision_ref": 200, "reference": 200}


def clean_text(name: str, value, *, required: bool = True, limit: int | None = None
               ) -> str | None:
    """A decision's text field, trimmed; :class:`InputError` if empty or too long."""
    if value is not None and not isinstance(value, str):
        raise InputError(f"{name}: must be text")
    text = (value or "").strip()
    if not text:
        if required:
            raise InputError(f"{name}: required")
        return None
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise InputError(f"{name}: must not contain control characters")
    limit = limit or _LIMITS.get(name, 4000)
    if len(text) > limit:
        raise InputError(f"{name}: at most {limit} characters")
    return text


def _when(moment: datetime | date | None) -> str | None:
    return moment.isoformat() if moment is not None else None


# ---- views -----------------------------------------------------------------------


@dataclass(frozen=True)
class ExtensionView:
    id: str
    record_id: str
    previous_until: date | None  # None = permanent
    new_until: date | None  # None = permanent
    reason: str
    decision_ref: str
    decided_at: datetime
    decided_by: str

    @classmethod
    def of(cls, row: RetentionExtension) -> ExtensionView:
        return cls(row.id, row.record_id, row.previous_until, row.new_until, row.reason,
                   row.decision_ref, row.decided_at, row.decided_by)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(previous_until=_when(self.previous_until), new_until=_when(self.new_until),
                 decided_at=_when(self.decided_at),
                 permanent=self.new_until is None)
        return d


@dataclass(frozen=True)
class HoldView:
    id: str
    record_id: str
    kind: str
    reason: str
    reference: str | None
    placed_at: datetime
    placed_by: str
    released_at: datetime | None
    released_by: str | None

    @classmethod
    def of(cls, row: RecordHold) -> HoldView:
        return cls(row.id, row.record_id, row.kind, row.reason, row.reference, row.placed_at,
                   row.placed_by, row.released_at, row.released_by)

    @property
    def active(self) -> bool:
        return self.released_at is None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(placed_at=_when(self.placed_at), released_at=_when(self.released_at),
                 active=self.active)
        return d


@dataclass(frozen=True)
class DueRecord:
    """A record due for destruction, with what the policy needs about it."""

    id: str
    number_symbol: str
    doc_type: str
    doc_date: date
    classification: str
    status: str
    retention_rule: str
    retention_until: date
    fonds: str
    issuing_org: str

    def facts(self) -> policy.RecordFacts:
        # due_records() excludes sealed records: no seal facts.
        return policy.RecordFacts(id=self.id, classification=self.classification,
                                  status=self.status, fonds=self.fonds,
                                  issuing_org=self.issuing_org)

    def to_dict(self, principal: Principal | None = None) -> dict:
        d = asdict(self)
        d.update(doc_date=_when(self.doc_date), retention_until=_when(self.retention_until))
        return d


# ---- helpers ------------------------------------------------------------------------


def _record(session: Session, principal: Principal, record_id: str, action: str,
            client: str) -> Record:
    """The record, locked for the decision; an unknown id is audited after rollback."""
    record = session.scalar(select(Record).where(Record.id == record_id)
                            .options(selectinload(Record.issuing_org),
                                     selectinload(Record.seals))
                            .with_for_update(of=Record))
    if record is None:
        exc = NotFound(f"no record with id {record_id!r}")
        exc.audit_after_rollback = {"principal": principal, "action": action,
                                    "target": f"record:{record_id}", "outcome": "not_found",
                                    "client": client}
        raise exc
    return record


def _event(session: Session, principal: Principal, record_id: str, event_type: str,
           detail: str, data: dict, now: datetime) -> None:
    session.add(Event(id=str(uuid.uuid4()), record_id=record_id, event_type=event_type,
                      occurred_at=now, agent=str(principal), outcome="success",
                      detail=detail, data=data))


def parse_until(value: str | date | None) -> date | None:
    """``permanent`` (or None) → None; an ISO date → the date."""
    if value is None or isinstance(value, date):
        return value
    text = str(value).strip()
    if text.lower() in ("permanent", "vinh-vien", "vĩnh viễn"):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"until: expected YYYY-MM-DD or 'permanent', got {text!r}") from exc


# ---- extension ------------------------------------------------------------------------


def extend_retention(catalog, principal: Principal, record_id: str, *,
                     until: date | None, reason: str, decision_ref: str,
                     clock: Clock | None = None, client: str = "") -> ExtensionView:
    """Extend the record's retention to ``until`` (None: permanent), as the decision
    ``decision_ref`` says (policy PROPOSE_RETENTION: an archivist with a strong login).
    Shortening, or "extending" to the same date, is refused (exit 3)."""
    reason = clean_text("reason", reason)
    decision_ref = clean_text("decision_ref", decision_ref)
    until = parse_until(until)
    now = (clock or SystemClock()).now()
    target = f"record:{record_id}"
    with catalog.unit_of_work() as session:
        record = _record(session, principal, record_id, "retention.extend", client)
        policy.require(principal, policy.PROPOSE_RETENTION, policy.facts_of(record),
                       client=client)
        previous = record.retention_until
        if previous is None:
            raise refused(principal, "retention.extend", target, client,
                           f"record {record_id} is already kept permanently")
        if until is not None and until <= previous:
            raise refused(principal, "retention.extend", target, client,
                           f"retention may only be extended: {until.isoformat()} is not "
                           f"later than the current {previous.isoformat()}")
        row = RetentionExtension(id=str(uuid.uuid4()), record_id=record.id,
                                 previous_until=previous, new_until=until, reason=reason,
                                 decision_ref=decision_ref, decided_at=now,
                                 decided_by=str(principal))
        session.add(row)
        record.retention_until = until
        shown = until.isoformat() if until is not None else "permanent"
        _event(session, principal, record.id, "retention extension",
               f"retention extended from {previous.isoformat()} to {shown} by decision "
               f"{decision_ref}: {reason}",
               {"extension": row.id, "previous_until": previous.isoformat(),
                "new_until": until.isoformat() if until else None,
                "decision_ref": decision_ref, "reason": reason}, now)
        audit.append(session, principal, "retention.extend", target, client=client,
                     clock=clock, detail={"extension": row.id,
                                          "previous_until": previous.isoformat(),
                                          "new_until": until.isoformat() if until else None,
                                          "decision_ref": decision_ref, "reason": reason})
        session.flush()
        return ExtensionView.of(row)


def refused(principal: Principal, action: str, target: str, client: str, message: str
             ) -> Refused:
    """A rule's refusal (exit 3), audited after the rollback."""
    exc = Refused(message)
    exc.audit_after_rollback = {"principal": principal, "action": action, "target": target,
                                "outcome": "refused", "client": client,
                                "detail": {"reason": message}}
    return exc


def extensions_of(session: Session, record_id: str) -> list[ExtensionView]:
    rows = session.scalars(select(RetentionExtension)
                           .where(RetentionExtension.record_id == record_id)
                           .order_by(RetentionExtension.decided_at, RetentionExtension.id))
    return [ExtensionView.of(r) for r in rows]


# ---- holds -----------------------------------------------------------------------------


def place_hold(catalog, principal: Principal, record_id: str, *, kind: str, reason: str,
               reference: str | None = None, clock: Clock | None = None,
               client: str = "") -> HoldView:
    """Put a hold on the record: it cannot be proposed for, or destroyed by, any
    destruction until the hold is released (policy HOLD)."""
    if kind not in HOLD_KINDS:
        raise InputError(f"kind: expected one of {', '.join(HOLD_KINDS)}, got {kind!r}")
    reason = clean_text("reason", reason)
    reference = clean_text("reference", reference, required=False)
    now = (clock or SystemClock()).now()
    with catalog.unit_of_work() as session:
        record = _record(session, principal, record_id, "record.hold", client)
        policy.require(principal, policy.HOLD, policy.facts_of(record), client=client)
        row = RecordHold(id=str(uuid.uuid4()), record_id=record.id, kind=kind, reason=reason,
                         reference=reference, placed_at=now, placed_by=str(principal))
        session.add(row)
        _event(session, principal, record.id, "hold placement",
               f"{kind} hold placed" + (f" ({reference})" if reference else "")
               + f": {reason}", {"hold": row.id, "kind": kind, "reference": reference,
                                 "reason": reason}, now)
        audit.append(session, principal, "record.hold", f"record:{record.id}", client=client,
                     clock=clock, detail={"hold": row.id, "kind": kind,
                                          "reference": reference, "reason": reason})
        session.flush()
        return HoldView.of(row)


def release_hold(catalog, principal: Principal, hold_id: str, *, reason: str,
                 clock: Clock | None = None, client: str = "") -> HoldView:
    """Release a hold by a recorded decision (policy HOLD on its record); the row stays."""
    reason = clean_text("reason", reason)
    now = (clock or SystemClock()).now()
    target = f"hold:{hold_id}"
    with catalog.unit_of_work() as session:
        row = session.scalar(select(RecordHold).where(RecordHold.id == str(hold_id))
                             .with_for_update())
        if row is None:
            exc = NotFound(f"no hold with id {hold_id!r}")
            exc.audit_after_rollback = {"principal": principal, "action": "record.hold_release",
                                        "target": target, "outcome": "not_found",
                                        "client": client}
            raise exc
        record = _record(session, principal, row.record_id, "record.hold_release", client)
        policy.require(principal, policy.HOLD, policy.facts_of(record), client=client)
        if row.released_at is not None:
            raise refused(principal, "record.hold_release", target, client,
                           f"hold {row.id} was already released")
        row.released_at = now
        row.released_by = str(principal)
        _event(session, principal, record.id, "hold release",
               f"{row.kind} hold {row.id} released: {reason}",
               {"hold": row.id, "kind": row.kind, "reason": reason}, now)
        audit.append(session, principal, "record.hold_release", f"record:{record.id}",
                     client=client, clock=clock,
                     detail={"hold": row.id, "kind": row.kind, "reason": reason})
        session.flush()
        return HoldView.of(row)


def holds_of(session: Session, record_id: str) -> list[HoldView]:
    rows = session.scalars(select(RecordHold).where(RecordHold.record_id == record_id)
                           .order_by(RecordHold.placed_at, RecordHold.id))
    return [HoldView.of(r) for r in rows]


# ---- what is due ------------------------------------------------------------------------


def blockers(record_id_column, *, include_lists: bool = True) -> list:
    """SQL conditions: no active seal, no unreleased hold, (no open destruction list)."""
    sealed = exists().where(SealRecord.record_id == record_id_column,
                            SealRecord.seal_id == Seal.id, Seal.status == "active")
    held = exists().where(RecordHold.record_id == record_id_column,
                          RecordHold.released_at.is_(None))
    out = [~sealed, ~held]
    if include_lists:
        listed = exists().where(DestructionItem.record_id == record_id_column,
                                DestructionItem.status == "listed",
                                DestructionItem.list_id == DestructionList.id,
                                DestructionList.status.in_(OPEN_LISTS))
        out.append(~listed)
    return out


def due_query(today: date, *, scope: policy.SearchScope | None = None,
              record_ids: list[str] | None = None) -> Select:
    """The one query of records due for destruction (R-DESTROY-1): retention expired
    before ``today`` (never a permanent one), status active or revoked, no active seal,
    no unreleased hold, not on an open list. Uses ``ix_records_retention_until``; the
    anti-joins use the record_id indexes of seal_records, record_holds and
    destruction_items."""
    stmt = (select(Record.id, Record.number_symbol, Record.doc_type, Record.doc_date,
                   Record.classification, Record.status, Record.retention_rule,
                   Record.retention_until, Record.fonds, Agent.identifier)
            .join(Agent, Agent.id == Record.issuing_org_id)
            .where(Record.retention_until.is_not(None), Record.retention_until < today,
                   Record.status.in_(DESTROYABLE), *blockers(Record.id)))
    if scope is not None:
        stmt = stmt.where(Record.classification.in_(scope.classifications))
        if not scope.everything:
            stmt = stmt.where(Record.fonds.in_(scope.fonds or ())
                              | Agent.identifier.in_(scope.organisations or ()))
    if record_ids is not None:
        stmt = stmt.where(Record.id.in_(record_ids))
    return stmt.order_by(Record.retention_until, Record.id)


def due_records(session: Session, today: date, *, limit: int | None = None,
                scope: policy.SearchScope | None = None,
                record_ids: list[str] | None = None) -> list[DueRecord]:
    """Records due for destruction on ``today`` (see :func:`due_query`), oldest
    expiry first; ``scope`` limits them to what a principal may find."""
    stmt = due_query(today, scope=scope, record_ids=record_ids)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [DueRecord(*row) for row in session.execute(stmt)]


def is_due(session: Session, record_id: str, today: date, *, include_lists: bool = False
           ) -> str | None:
    """Why the record may not be destroyed on ``today`` now, or None when it may."""
    record = session.get(Record, record_id)
    if record is None:
        return "no such record"
    if record.status not in DESTROYABLE:
        return f"the record is {record.status}"
    if record.retention_until is None:
        return "the record is kept permanently"
    if record.retention_until >= today:
        return f"its retention runs until {record.retention_until.isoformat()}"
    conditions = blockers(Record.id, include_lists=include_lists)
    names = ["it is sealed", "it is on hold", "it is on another open destruction list"]
    for condition, name in zip(conditions, names, strict=False):
        if not session.scalar(select(and_(condition)).where(Record.id == record_id)
                              .select_from(Record)):
            return name
    return None


def list_due(catalog, principal: Principal, *, today: date | None = None,
             limit: int | None = None, clock: Clock | None = None,
             client: str = "") -> list[DueRecord]:
    """:func:`due_records` for a principal who may propose destruction (audited)."""
    clock = clock or SystemClock()
    today = today or clock.now().date()
    with catalog.unit_of_work() as session:
        policy.require(principal, policy.SEARCH, client=client)
        rows = due_records(session, today, limit=limit, scope=policy.search_scope(principal))
        audit.append(session, principal, "retention.due", "records", client=client,
                     clock=clock, detail={"today": today.isoformat(), "limit": limit,
                                          "returned": len(rows)})
        return rows


def lock_after_extension(catalog, store, record_id: str) -> dict[str, str]:
    """After an extension: on a store with Object Lock, every AIP version of the record
    is kept under retention until the new date (a permanent record keeps what it has:
    Object Lock cannot be 'forever'). Returns {storage key: retention in force}."""
    from archive.storage.object_lock import lock_record_versions

    with catalog.unit_of_work(snapshot=True) as session:
        record = session.scalar(select(Record).where(Record.id == record_id)
                                .options(selectinload(Record.versions)))
        if record is None:
            return {}
        session.expunge(record)
    return {k: v.isoformat() for k, v in lock_record_versions(store, record).items()}
