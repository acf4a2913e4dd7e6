"""Destruction lists (R-DESTROY-1): proposed, reviewed, approved by another person, then
executed by ``preservation/destruction.py``.

- :func:`propose` (an archivist, or the scheduled job ``system:job:retention``) lists
  the records due (:func:`archive.retention.due_query`) or the given ones if they are
  all due; it never destroys. An empty proposal makes no list.
- The review removes or adds items with a note, only while the list is ``proposed``;
  every person who edits it is recorded (``criteria["editors"]``).
- :func:`approve`: a person with ``destruction.approve`` who is neither the proposer nor
  an editor records the approving body, decision number and date and the legal basis.
  Approval by the proposer or an editor is refused and audited (exit 3).
- :func:`cancel` ends a proposed or approved list; its records may be proposed again.

The permanent register (:mod:`archive.destruction_register`) is written by execution.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date, datetime

from sqlalchemy import Select, func, insert, literal, select, text
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive.clock import Clock, SystemClock
from archive.destruction_register import (
    readable_classifications,
    register_entries,
    register_export,
)
from archive.errors import AccessDenied, InputError, NotFound
from archive.models import Agent, DestructionItem, DestructionList, Record, Seal, SealRecord
from archive.principal import Principal
from archive.retention import _when, clean_text, due_query, is_due, refused

__all__ = ["DestructionListView", "ItemView", "add_item", "approve", "cancel", "get_list",
           "list_lists", "propose", "register_entries", "register_export", "remove_item"]

STATUSES = ("proposed", "approved", "executing", "executed", "cancelled")
JOB_PRINCIPAL = "system:job:retention"
# PostgreSQL: proposals and additions serialise on this advisory lock, so two proposals
# never list the same record (SQLite's BEGIN IMMEDIATE already serialises writers).
_LOCK_KEY = 60_020_001


@dataclass(frozen=True)
class ItemView:
    record_id: str
    status: str  # listed | removed | destroyed | skipped
    note: str | None
    changed_at: datetime
    changed_by: str
    number_symbol: str | None = None
    doc_date: date | None = None
    classification: str | None = None
    retention_until: date | None = None
    # R-CLASS-1: above the reader's clearance, the number and date are not given
    hidden: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(changed_at=_when(self.changed_at), doc_date=_when(self.doc_date),
                 retention_until=_when(self.retention_until))
        return d


@dataclass(frozen=True)
class DestructionListView:
    id: str
    status: str
    proposed_at: datetime
    proposed_by: str
    proposer_person: str | None
    reason: str
    criteria: dict
    approved_at: datetime | None
    approved_by: str | None
    approver_person: str | None
    approving_body: str | None
    decision_number: str | None
    decision_date: date | None
    legal_basis: str | None
    executed_at: datetime | None
    executed_by: str | None
    counts: dict = field(default_factory=dict)
    items: list[ItemView] | None = None  # None: not loaded (listing)

    @classmethod
    def of(cls, row: DestructionList, counts: dict, items: list[ItemView] | None = None
           ) -> DestructionListView:
        return cls(row.id, row.status, row.proposed_at, row.proposed_by, row.proposer_person,
                   row.reason, dict(row.criteria or {}), row.approved_at, row.approved_by,
                   row.approver_person, row.approving_body, row.decision_number,
                   row.decision_date, row.legal_basis, row.executed_at, row.executed_by,
                   counts, items)

    @property
    def editors(self) -> list[str]:
        return [e["principal"] for e in self.criteria.get("editors", [])]

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "items"}
        for name in ("proposed_at", "approved_at", "decision_date", "executed_at"):
            d[name] = _when(getattr(self, name))
        d["editors"] = self.editors
        if self.items is not None:
            d["items"] = [i.to_dict() for i in self.items]
        return d


# ---- reading ----------------------------------------------------------------------------


def _counts(session: Session, list_ids: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {i: {} for i in list_ids}
    if not list_ids:
        return out
    rows = session.execute(select(DestructionItem.list_id, DestructionItem.status,
                                  func.count()).where(DestructionItem.list_id.in_(list_ids))
                           .group_by(DestructionItem.list_id, DestructionItem.status))
    for list_id, status, n in rows:
        out[list_id][status] = n
    return out


def _items(session: Session, list_id: str, reader: Principal | None) -> list[ItemView]:
    """The list's items as ``reader`` may see them: a record above the reader's
    clearance keeps its id, status and classification, never its number and symbol or
    date (R-CLASS-1; :func:`archive.destruction_register.cleared`, the operator and the
    jobs are cleared). No reader: every classified record hidden."""
    readable = readable_classifications(reader) if reader is not None else ("normal",)
    rows = session.execute(select(DestructionItem, Record.number_symbol, Record.doc_date,
                                  Record.classification, Record.retention_until)
                           .join(Record, Record.id == DestructionItem.record_id)
                           .where(DestructionItem.list_id == list_id)
                           .order_by(DestructionItem.id))
    out = []
    for i, number, doc_date, classification, until in rows:
        hidden = classification not in readable
        out.append(ItemView(i.record_id, i.status, i.note, i.changed_at, i.changed_by,
                            None if hidden else number, None if hidden else doc_date,
                            classification, until, hidden))
    return out


def view(session: Session, row: DestructionList, reader: Principal | None = None, *,
         items: bool = True) -> DestructionListView:
    """The list (with its items as ``reader`` may see them, unless ``items`` is False)."""
    return DestructionListView.of(row, _counts(session, [row.id])[row.id],
                                  _items(session, row.id, reader) if items else None)


def _list_row(session: Session, principal: Principal, list_id: str, action: str,
              client: str, *, lock: bool = False) -> DestructionList:
    stmt = select(DestructionList).where(DestructionList.id == str(list_id))
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalar(stmt)
    if row is None:
        exc = NotFound(f"no destruction list with id {list_id!r}")
        exc.audit_after_rollback = {"principal": principal, "action": action,
                                    "target": f"destruction:{list_id}",
                                    "outcome": "not_found", "client": client}
        raise exc
    return row


def _may_read(principal: Principal, client: str) -> None:
    """Lists are read by those who propose, approve, execute or read the register."""
    if not policy.decide(principal, policy.REGISTER_READ):
        raise AccessDenied(str(principal), policy.REGISTER_READ, "destruction", "the role "
                           f"{principal.role or principal.kind} may not read destruction "
                           "lists", client=client)


def get_list(catalog, principal: Principal, list_id: str, *, client: str = "",
             clock: Clock | None = None) -> DestructionListView:
    with catalog.unit_of_work() as session:
        _may_read(principal, client)
        row = _list_row(session, principal, list_id, "destruction.view", client)
        result = view(session, row, principal)
        audit.append(session, principal, "destruction.view", f"destruction:{row.id}",
                     client=client, clock=clock, detail={"status": row.status})
        return result


def list_lists(catalog, principal: Principal, *, status: str | None = None,
               limit: int = 100, offset: int = 0, client: str = "",
               clock: Clock | None = None) -> list[DestructionListView]:
    if status is not None and status not in STATUSES:
        raise InputError(f"status: expected one of {', '.join(STATUSES)}")
    with catalog.unit_of_work() as session:
        _may_read(principal, client)
        stmt = select(DestructionList).order_by(DestructionList.proposed_at.desc(),
                                                DestructionList.id)
        if status is not None:
            stmt = stmt.where(DestructionList.status == status)
        rows = list(session.scalars(stmt.limit(limit).offset(offset)))
        counts = _counts(session, [r.id for r in rows])
        audit.append(session, principal, "destruction.lists", "destruction", client=client,
                     clock=clock, detail={"status": status, "returned": len(rows)})
        return [DestructionListView.of(r, counts[r.id]) for r in rows]


# ---- proposing ----------------------------------------------------------------------------


def _serialise(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})


def _facts(session: Session, record_ids: list[str]) -> dict[str, policy.RecordFacts]:
    """Policy facts of many records in two queries (their active seals included)."""
    facts: dict[str, policy.RecordFacts] = {}
    seals: dict[str, Seal] = {}
    for start in range(0, len(record_ids), 1000):
        chunk = record_ids[start:start + 1000]
        for rid, seal in session.execute(
                select(SealRecord.record_id, Seal).join(Seal, Seal.id == SealRecord.seal_id)
                .where(SealRecord.record_id.in_(chunk), Seal.status == "active")
                .options(selectinload(Seal.authority))):
            seals[rid] = seal
        for rid, classification, status, fonds, org in session.execute(
                select(Record.id, Record.classification, Record.status, Record.fonds,
                       Agent.identifier).join(Agent, Agent.id == Record.issuing_org_id)
                .where(Record.id.in_(chunk))):
            seal = seals.get(rid)
            facts[rid] = policy.RecordFacts(
                id=rid, classification=classification, status=status, fonds=fonds,
                issuing_org=org, seal=policy.seal_facts(seal) if seal is not None else None)
    return facts


def _check_proposer(principal: Principal, client: str) -> None:
    if principal.kind not in ("user", "system"):
        raise AccessDenied(str(principal), policy.PROPOSE_DESTRUCTION, "destruction",
                           "destruction is proposed by an archivist or the retention job",
                           client=client)


def propose(catalog, principal: Principal, *, today: date | None = None, reason: str = "",
            record_ids: list[str] | None = None, limit: int | None = None,
            clock: Clock | None = None, client: str = "") -> DestructionListView | None:
    """A new list of the records due on ``today`` (or of ``record_ids``, each of which
    must be due). Never destroys. Returns None when nothing is due (no list is made)."""
    clock = clock or SystemClock()
    now = clock.now()
    today = today or now.date()
    reason = clean_text("reason", reason, required=False) or ""
    if limit is not None and limit < 1:
        raise InputError("limit: must be at least 1")
    _check_proposer(principal, client)
    with catalog.unit_of_work() as session:
        _serialise(session)
        wanted = list(dict.fromkeys(record_ids)) if record_ids else None
        if wanted:
            for rid in wanted:
                why = is_due(session, rid, today, include_lists=True)
                if why == "no such record":
                    raise NotFound(f"no record with id {rid!r}")
                if why is not None:
                    raise refused(principal, "destruction.propose", f"record:{rid}",
                                   client, f"record {rid} is not due for destruction: {why}")
            due = due_query(today, record_ids=wanted)
        else:
            due = due_query(today, scope=policy.search_scope(principal))
            if limit is not None:
                due = due.limit(limit)
        row = DestructionList(id=str(uuid.uuid4()), status="proposed", proposed_at=now,
                              proposed_by=str(principal), proposer_person=principal.person,
                              reason=reason,
                              criteria={"today": today.isoformat(), "limit": limit,
                                        "record_ids": bool(wanted), "editors": []})
        session.add(row)
        session.flush()
        _insert_items(session, row.id, due, now, str(principal))
        first, digest, listed = _listed_summary(session, row.id)
        if not listed:
            session.delete(row)  # never committed: an empty proposal makes no list
            session.flush()
            audit.append(session, principal, "destruction.propose", "destruction",
                         client=client, clock=clock,
                         detail={"today": today.isoformat(), "records": 0, "list": None})
            return None
        _require_listed(session, principal, row.id, client)
        audit.append(session, principal, "destruction.propose", f"destruction:{row.id}",
                     client=client, clock=clock,
                     detail={"today": today.isoformat(), "records": listed,
                             "first": first, "records_sha256": digest, "reason": reason})
        return view(session, row, principal, items=listed <= 1000)


_AUDIT_FIRST = 100  # record ids named in the audit entry of a proposal


def _insert_items(session: Session, list_id: str, due: Select, now: datetime,
                  by: str) -> None:
    """One ``INSERT INTO destruction_items ... SELECT`` of the records ``due`` selects
    (in its order: oldest expiry first). The rows never travel through Python: 48,000
    items in one statement, not 48,000 (R-DESTROY-1). (No rowcount: psycopg reports -1
    for it; :func:`_listed_summary` counts.)"""
    table = DestructionItem.__table__
    chosen = due.subquery()
    rows = select(literal(list_id, table.c.list_id.type), chosen.c.id,
                  literal("listed", table.c.status.type),
                  literal(now, table.c.changed_at.type),
                  literal(by, table.c.changed_by.type)) \
        .order_by(chosen.c.retention_until, chosen.c.id)
    session.execute(insert(table).from_select(
        ["list_id", "record_id", "status", "changed_at", "changed_by"], rows))


def _require_listed(session: Session, principal: Principal, list_id: str,
                    client: str) -> None:
    """The policy asked for every record just listed: once per distinct set of facts
    (classification, status, fonds, issuing organisation; due records are never sealed),
    which is the same decision for each record sharing them. A denial rolls the whole
    proposal back (the unit of work audits it, target the first such record)."""
    for classification, status, fonds, org, rid in session.execute(
            select(Record.classification, Record.status, Record.fonds, Agent.identifier,
                   func.min(Record.id))
            .join(DestructionItem, DestructionItem.record_id == Record.id)
            .join(Agent, Agent.id == Record.issuing_org_id)
            .where(DestructionItem.list_id == list_id)
            .group_by(Record.classification, Record.status, Record.fonds, Agent.identifier)):
        policy.require(principal, policy.PROPOSE_DESTRUCTION,
                       policy.RecordFacts(id=rid, classification=classification,
                                          status=status, fonds=fonds, issuing_org=org),
                       client=client)


def _listed_summary(session: Session, list_id: str) -> tuple[list[str], str, int]:
    """The audit's bounded account of a list's records: the first ids (sorted), the
    SHA-256 of every record id, sorted, one per line (each followed by a newline), and
    their number."""
    digest = hashlib.sha256()
    first: list[str] = []
    count = 0
    for rid in session.scalars(select(DestructionItem.record_id)
                               .where(DestructionItem.list_id == list_id)
                               .order_by(DestructionItem.record_id)
                               .execution_options(yield_per=10_000)):
        if len(first) < _AUDIT_FIRST:
            first.append(rid)
        digest.update(rid.encode() + b"\n")
        count += 1
    return first, digest.hexdigest(), count


# ---- review -------------------------------------------------------------------------------


def _editable(session: Session, principal: Principal, list_id: str, action: str,
              client: str) -> DestructionList:
    row = _list_row(session, principal, list_id, action, client, lock=True)
    if row.status != "proposed":
        raise refused(principal, action, f"destruction:{row.id}", client,
                       f"destruction list {row.id} is {row.status}: only a proposed list "
                       "is reviewed")
    return row


def _note_editor(row: DestructionList, principal: Principal, now: datetime) -> None:
    criteria = dict(row.criteria or {})
    editors = list(criteria.get("editors", []))
    if str(principal) not in [e["principal"] for e in editors]:
        editors.append({"principal": str(principal), "person": principal.person,
                        "at": now.isoformat()})
    criteria["editors"] = editors
    row.criteria = criteria  # a new dict: the JSON column is saved


def remove_item(catalog, principal: Principal, list_id: str, record_id: str, *, note: str,
                clock: Clock | None = None, client: str = "") -> DestructionListView:
    """Take a record off a proposed list (the archivist's review), with a note."""
    note = clean_text("note", note)
    clock = clock or SystemClock()
    now = clock.now()
    with catalog.unit_of_work() as session:
        row = _editable(session, principal, list_id, "destruction.item_remove", client)
        item = session.scalar(select(DestructionItem).where(
            DestructionItem.list_id == row.id, DestructionItem.record_id == record_id))
        if item is None or item.status != "listed":
            raise NotFound(f"record {record_id} is not listed on destruction list {row.id}")
        facts = _facts(session, [record_id])[record_id]
        policy.require(principal, policy.PROPOSE_DESTRUCTION,
                       _unsealed(facts), client=client)
        item.status, item.note, item.changed_at, item.changed_by = \
            "removed", note, now, str(principal)
        _note_editor(row, principal, now)
        audit.append(session, principal, "destruction.item_remove", f"destruction:{row.id}",
                     client=client, clock=clock, detail={"record": record_id, "note": note})
        session.flush()
        return view(session, row, principal)


def _unsealed(facts: policy.RecordFacts) -> policy.RecordFacts:
    """Taking a sealed record off a list is always allowed: the review asks the role,
    grants and clearance, not the seal (rule 6 would refuse every change)."""
    return policy.RecordFacts(facts.id, facts.classification, facts.status, facts.fonds,
                              facts.issuing_org)


def add_item(catalog, principal: Principal, list_id: str, record_id: str, *, note: str,
             today: date | None = None, clock: Clock | None = None,
             client: str = "") -> DestructionListView:
    """Put a due record on a proposed list (or back on it), with a note."""
    note = clean_text("note", note)
    clock = clock or SystemClock()
    now = clock.now()
    today = today or now.date()
    with catalog.unit_of_work() as session:
        _serialise(session)
        row = _editable(session, principal, list_id, "destruction.item_add", client)
        why = is_due(session, record_id, today, include_lists=True)
        if why == "no such record":
            raise NotFound(f"no record with id {record_id!r}")
        if why is not None:
            raise refused(principal, "destruction.item_add", f"destruction:{row.id}", client,
                           f"record {record_id} is not due for destruction: {why}")
        policy.require(principal, policy.PROPOSE_DESTRUCTION,
                       _facts(session, [record_id])[record_id], client=client)
        item = session.scalar(select(DestructionItem).where(
            DestructionItem.list_id == row.id, DestructionItem.record_id == record_id))
        if item is None:
            session.add(DestructionItem(list_id=row.id, record_id=record_id, status="listed",
                                        note=note, changed_at=now, changed_by=str(principal)))
        else:
            item.status, item.note, item.changed_at, item.changed_by = \
                "listed", note, now, str(principal)
        _note_editor(row, principal, now)
        audit.append(session, principal, "destruction.item_add", f"destruction:{row.id}",
                     client=client, clock=clock, detail={"record": record_id, "note": note})
        session.flush()
        return view(session, row, principal)


# ---- approval and cancellation --------------------------------------------------------------


def _same_person(principal: Principal, who: str, person: str | None) -> bool:
    return str(principal) == who or (principal.person is not None and principal.person == person)


def approve(catalog, principal: Principal, list_id: str, *, approving_body: str,
            decision_number: str, decision_date: date | str, legal_basis: str,
            clock: Clock | None = None, client: str = "") -> DestructionListView:
    """Approve a proposed list: a person with ``destruction.approve`` who neither
    proposed nor edited it records the approving body, decision number, decision date
    and legal basis (R-DESTROY-1). Every listed record is asked of the policy."""
    body = clean_text("approving_body", approving_body, limit=500)
    number = clean_text("decision_number", decision_number, limit=200)
    basis = clean_text("legal_basis", legal_basis)
    if isinstance(decision_date, str):
        try:
            decision_date = date.fromisoformat(decision_date.strip())
        except ValueError as exc:
            raise InputError(f"decision_date: expected YYYY-MM-DD, got {decision_date!r}") \
                from exc
    if not isinstance(decision_date, date):
        raise InputError("decision_date: required")
    clock = clock or SystemClock()
    now = clock.now()
    target = f"destruction:{list_id}"
    with catalog.unit_of_work() as session:
        row = _list_row(session, principal, list_id, policy.APPROVE_DESTRUCTION, client,
                        lock=True)
        if principal.kind != "user" or not principal.person:
            raise AccessDenied(str(principal), policy.APPROVE_DESTRUCTION, target,
                               "a destruction is approved by a person (an approver with a "
                               "strong login), not by a system account", client=client)
        if _same_person(principal, row.proposed_by, row.proposer_person):
            raise AccessDenied(str(principal), policy.APPROVE_DESTRUCTION, target,
                               "the proposer of a destruction list may not approve it",
                               client=client)
        for editor in (row.criteria or {}).get("editors", []):
            if _same_person(principal, editor.get("principal", ""), editor.get("person")):
                raise AccessDenied(str(principal), policy.APPROVE_DESTRUCTION, target,
                                   "a person who edited the destruction list may not "
                                   "approve it", client=client)
        if row.status != "proposed":
            raise refused(principal, policy.APPROVE_DESTRUCTION, target, client,
                           f"destruction list {row.id} is {row.status}: only a proposed "
                           "list is approved")
        listed = list(session.scalars(select(DestructionItem.record_id).where(
            DestructionItem.list_id == row.id, DestructionItem.status == "listed")))
        if not listed:
            raise refused(principal, policy.APPROVE_DESTRUCTION, target, client,
                           f"destruction list {row.id} has no listed record")
        facts = _facts(session, listed)
        for rid in listed:
            policy.require(principal, policy.APPROVE_DESTRUCTION, facts[rid], client=client)
        row.status = "approved"
        row.approved_at, row.approved_by, row.approver_person = now, str(principal), \
            principal.person
        row.approving_body, row.decision_number, row.decision_date, row.legal_basis = \
            body, number, decision_date, basis
        audit.append(session, principal, "destruction.approve", f"destruction:{row.id}",
                     client=client, clock=clock,
                     detail={"records": len(listed), "approving_body": body,
                             "decision_number": number,
                             "decision_date": decision_date.isoformat(),
                             "legal_basis": basis})
        session.flush()
        return view(session, row, principal, items=len(listed) <= 1000)


def _may_cancel(principal: Principal) -> bool:
    if principal.kind == "system":
        return True
    allowed = policy.allowed_actions(principal)
    return principal.kind == "user" and principal.strong and bool(
        allowed & {policy.PROPOSE_DESTRUCTION, policy.APPROVE_DESTRUCTION})


def cancel(catalog, principal: Principal, list_id: str, *, reason: str,
           clock: Clock | None = None, client: str = "") -> DestructionListView:
    """Cancel a proposed or approved list (an archivist or approver); its records may
    be proposed again. An executing or executed list cannot be cancelled."""
    reason = clean_text("reason", reason)
    clock = clock or SystemClock()
    now = clock.now()
    with catalog.unit_of_work() as session:
        row = _list_row(session, principal, list_id, "destruction.cancel", client, lock=True)
        target = f"destruction:{row.id}"
        if not _may_cancel(principal):
            raise AccessDenied(str(principal), "destruction.cancel", target,
                               "only an archivist or an approver with a strong login (or "
                               "the operator) cancels a destruction list", client=client)
        if row.status not in ("proposed", "approved"):
            raise refused(principal, "destruction.cancel", target, client,
                           f"destruction list {row.id} is {row.status}: it cannot be "
                           "cancelled")
        row.status = "cancelled"
        criteria = dict(row.criteria or {})
        criteria["cancelled"] = {"by": str(principal), "at": now.isoformat(),
                                 "reason": reason}
        row.criteria = criteria
        audit.append(session, principal, "destruction.cancel", target, client=client,
                     clock=clock, detail={"reason": reason})
        session.flush()
        return view(session, row, items=False)
