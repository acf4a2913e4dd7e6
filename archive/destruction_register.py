"""The permanent destruction register (danh mục hủy, R-DESTROY-2) and what a destroyed
record leaves behind.

One ``destruction_register`` row per destroyed record, append-only (database triggers
refuse UPDATE and DELETE): time, performer, reason, legal basis, approving body,
decision number, approver and a tombstone of identifying metadata and digests, never
content. For a classified record the summary (trích yếu) is not kept in the tombstone
(it may itself be secret and the register is kept in clear forever); readers whose
clearance is below the record's classification also see its number masked.

:func:`copies_of` lists every copy a record has (each AIP version, renditions, backup
copies, data keys); :func:`record_destroyed` is the one transaction that marks the
record destroyed once those copies are gone.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive.clock import Clock, SystemClock
from archive.errors import AccessDenied, InputError
from archive.models import (
    BackupCopy,
    DestructionEntry,
    DestructionItem,
    DestructionList,
    Event,
    PackageVersion,
    Record,
    Rendition,
)
from archive.principal import Principal
from archive.retention import _when

EXPORT_FORMATS = ("csv", "json")
CSV_COLUMNS = ("entry", "destroyed_at", "record_id", "number_symbol", "doc_type", "doc_date",
               "issuing_org", "issuing_org_name", "summary", "classification",
               "retention_rule", "retention_until", "fonds", "file_ref", "list_id", "reason",
               "legal_basis", "approving_body", "decision_number", "approved_by",
               "performed_by", "package_sha256", "data_keys_shredded")
MASK = "(văn bản mật / classified)"


# ---- what a record has ----------------------------------------------------------------


@dataclass
class Copies:
    """Every copy of one record the archive knows of (keys listed in the stores too)."""

    record_id: str
    aip_keys: list[str] = field(default_factory=list)
    rendition_keys: list[str] = field(default_factory=list)
    backup_copies: list[tuple[int, str, str]] = field(default_factory=list)  # id, store, key
    data_keys: list[str] = field(default_factory=list)


def copies_of(session: Session, record: Record) -> Copies:
    out = Copies(record.id)
    for version in record.versions:
        out.aip_keys.append(version.storage_key)
        for f in version.files:
            dek = (f.encryption or {}).get("dek_id")
            if dek and dek not in out.data_keys:
                out.data_keys.append(dek)
    out.rendition_keys = [k for k in session.scalars(
        select(Rendition.storage_key).where(Rendition.record_id == record.id)
        .order_by(Rendition.created_at)) if k]
    out.backup_copies = [(c.id, c.store, c.object_key) for c in session.scalars(
        select(BackupCopy).where(BackupCopy.record_id == record.id,
                                 BackupCopy.deleted_at.is_(None)).order_by(BackupCopy.id))]
    return out


def load_record(session: Session, record_id: str, *, lock: bool = False) -> Record | None:
    stmt = (select(Record).where(Record.id == record_id)
            .options(selectinload(Record.issuing_org), selectinload(Record.seals),
                     selectinload(Record.versions).selectinload(PackageVersion.files)))
    if lock:
        stmt = stmt.with_for_update(of=Record)
    return session.scalar(stmt)


def tombstone(session: Session, record: Record, copies: Copies, *, deleted: list[str],
              shredded: list[str]) -> dict:
    """Identifying metadata and digests of a record, without content (R-DESTROY-2)."""
    classified = record.classification != "normal"
    return {
        "record_id": record.id, "number_symbol": record.number_symbol,
        "doc_type": record.doc_type, "doc_date": record.doc_date.isoformat(),
        "issuing_org": record.issuing_org.identifier if record.issuing_org else None,
        "issuing_org_name": record.issuing_org.name if record.issuing_org else None,
        # A classified record's summary may itself be secret: not kept in clear forever.
        "summary": None if classified else record.summary,
        "summary_withheld": classified,
        "classification": record.classification, "status_before": record.status,
        "retention_rule": record.retention_rule,
        "retention_until": _when(record.retention_until),
        "fonds": record.fonds, "file_ref": record.file_ref, "origin": record.origin,
        "fingerprint": record.fingerprint, "created_at": _when(record.created_at),
        "packages": [{"version": v.version, "storage_key": v.storage_key, "size": v.size,
                      "digests": v.digests,
                      "files": [{"path": f.path, "role": f.role, "size": f.size,
                                 "digests": f.digests, "encrypted": bool(f.encryption)}
                                for f in v.files]}
                     for v in record.versions],
        "renditions": [{"id": r.id, "sha256": r.sha256, "storage_key": r.storage_key}
                       for r in session.scalars(select(Rendition)
                                                .where(Rendition.record_id == record.id))],
        "backup_copies": [{"store": s, "key": k} for _, s, k in copies.backup_copies],
        "objects_deleted": deleted,
        "data_keys_shredded": shredded,
    }


def record_destroyed(session: Session, principal: Principal, row: DestructionList,
                     record: Record, copies: Copies, *, deleted: list[str],
                     shredded: list[str], now: datetime, clock: Clock | None = None,
                     client: str = "") -> DestructionEntry:
    """In one transaction: the record ``destroyed``, its item destroyed, the register
    entry, a ``destruction`` event, the backup copies marked deleted, the audit entry."""
    stone = tombstone(session, record, copies, deleted=deleted, shredded=shredded)
    record.status = "destroyed"
    item = session.scalar(select(DestructionItem).where(DestructionItem.list_id == row.id,
                                                        DestructionItem.record_id == record.id))
    item.status, item.changed_at, item.changed_by = "destroyed", now, str(principal)
    entry = DestructionEntry(list_id=row.id, record_id=record.id, destroyed_at=now,
                             performed_by=str(principal), reason=row.reason or "",
                             legal_basis=row.legal_basis or "",
                             approving_body=row.approving_body or "",
                             decision_number=row.decision_number or "",
                             approved_by=row.approved_by or "", tombstone=stone)
    session.add(entry)
    for copy in session.scalars(select(BackupCopy).where(
            BackupCopy.id.in_([c[0] for c in copies.backup_copies]))):
        copy.deleted_at = now
    session.add(Event(id=str(uuid.uuid4()), record_id=record.id, event_type="destruction",
                      occurred_at=now, agent=str(principal), outcome="success",
                      detail=(f"destroyed under decision {row.decision_number} of "
                              f"{row.approving_body} (list {row.id}): {len(deleted)} "
                              f"objects deleted, {len(shredded)} data keys destroyed"),
                      data={"list": row.id, "decision_number": row.decision_number,
                            "approving_body": row.approving_body,
                            "legal_basis": row.legal_basis, "objects": deleted,
                            "data_keys": shredded}))
    session.flush()
    audit.append(session, principal, "destruction.execute", f"record:{record.id}",
                 client=client, clock=clock,
                 detail={"list": row.id, "register_entry": entry.id, "objects": deleted,
                         "data_keys": shredded, "decision_number": row.decision_number})
    return entry


# ---- reading the register ----------------------------------------------------------------


@dataclass(frozen=True)
class RegisterEntryView:
    id: int
    list_id: str
    record_id: str
    destroyed_at: datetime
    performed_by: str
    reason: str
    legal_basis: str
    approving_body: str
    decision_number: str
    approved_by: str
    tombstone: dict

    @classmethod
    def of(cls, row: DestructionEntry, principal: Principal) -> RegisterEntryView:
        stone = dict(row.tombstone or {})
        if not cleared(principal, stone.get("classification")):
            stone["number_symbol"] = MASK
            stone["number_withheld"] = True
            stone["summary"] = None  # never kept for a classified record; never shown
        return cls(row.id, row.list_id, row.record_id, row.destroyed_at, row.performed_by,
                   row.reason, row.legal_basis, row.approving_body, row.decision_number,
                   row.approved_by, stone)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["destroyed_at"] = _when(self.destroyed_at)
        return d

    def csv_row(self) -> list:
        s = self.tombstone
        sha = ";".join(p.get("digests", {}).get("sha256", "") for p in s.get("packages", []))
        return [self.id, _when(self.destroyed_at), self.record_id, s.get("number_symbol"),
                s.get("doc_type"), s.get("doc_date"), s.get("issuing_org"),
                s.get("issuing_org_name"), s.get("summary") or "", s.get("classification"),
                s.get("retention_rule"), s.get("retention_until") or "", s.get("fonds"),
                s.get("file_ref") or "", self.list_id, self.reason, self.legal_basis,
                self.approving_body, self.decision_number, self.approved_by,
                self.performed_by, sha, len(s.get("data_keys_shredded", []))]


@dataclass(frozen=True)
class RegisterPage:
    total: int
    offset: int
    limit: int
    entries: list[RegisterEntryView]

    def to_dict(self) -> dict:
        return {"total": self.total, "offset": self.offset, "limit": self.limit,
                "entries": [e.to_dict() for e in self.entries]}


def _require_reader(principal: Principal, client: str) -> None:
    decision = policy.decide(principal, policy.REGISTER_READ)
    if not decision:
        raise AccessDenied(str(principal), policy.REGISTER_READ, "destruction-register",
                           decision.reason, client=client)


def _as_date(value, name: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise InputError(f"{name}: expected YYYY-MM-DD, got {value!r}") from exc


def readable_classifications(principal: Principal) -> tuple[str, ...]:
    """R-CLASS-1: the classifications whose identifying text (number and symbol,
    summary) ``principal`` may read in the register and on destruction lists: the
    records search's rule (:func:`archive.policy.search_scope`; the operator and the
    jobs, ``system`` principals, are cleared for every level; an unknown classification
    is readable by no one)."""
    return policy.search_scope(principal).classifications


def cleared(principal: Principal, classification: str | None) -> bool:
    """Whether ``principal`` may read the number and summary of a record classified
    ``classification`` (see :func:`readable_classifications`)."""
    return classification in readable_classifications(principal)


def _filtered(principal: Principal, query: str | None, since, until):
    """The entries matching: ``query`` is matched only against what ``principal`` may
    read of an entry (R-CLASS-1): the record id and the decision's fields of every
    entry, the number and summary only of a record within the reader's clearance, so a
    search is never an oracle for a hidden number."""
    stmt = select(DestructionEntry)
    since, until = _as_date(since, "since"), _as_date(until, "until")
    if since is not None:
        stmt = stmt.where(DestructionEntry.destroyed_at >= _midnight(since))
    if until is not None:
        stmt = stmt.where(DestructionEntry.destroyed_at < _midnight(until, next_day=True))
    text = (query or "").strip().lower()
    if text:
        like = f"%{text.replace('%', '').replace('_', '')}%"
        stone = DestructionEntry.tombstone
        shown = stone["classification"].as_string().in_(readable_classifications(principal))
        stmt = stmt.where(or_(
            func.lower(DestructionEntry.record_id).like(like),
            func.lower(DestructionEntry.decision_number).like(like),
            func.lower(DestructionEntry.approving_body).like(like),
            func.lower(DestructionEntry.legal_basis).like(like),
            func.lower(DestructionEntry.reason).like(like),
            shown & func.lower(stone["number_symbol"].as_string()).like(like),
            shown & func.lower(stone["summary"].as_string()).like(like)))
    return stmt


def _midnight(day: date, *, next_day: bool = False) -> datetime:
    moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment + timedelta(days=1) if next_day else moment


def register_entries(catalog, principal: Principal, *, query: str | None = None,
                     since: date | str | None = None, until: date | str | None = None,
                     offset: int = 0, limit: int = 50, client: str = "",
                     clock: Clock | None = None) -> RegisterPage:
    """Search the register (newest first): ``query`` matches the record id, decision,
    body, basis or reason, and the number and symbol and summary of records within the
    reader's clearance (R-CLASS-1); ``since``/``until``
    are days (inclusive) of destruction. Audited."""
    if offset < 0 or not 1 <= limit <= 1000:
        raise InputError("offset must be >= 0 and limit between 1 and 1000")
    with catalog.unit_of_work() as session:
        _require_reader(principal, client)
        stmt = _filtered(principal, query, since, until)
        total = session.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = session.scalars(stmt.order_by(DestructionEntry.id.desc())
                               .offset(offset).limit(limit))
        entries = [RegisterEntryView.of(r, principal) for r in rows]
        audit.append(session, principal, "destruction.register", "destruction-register",
                     client=client, clock=clock or SystemClock(),
                     detail={"query": query, "since": str(since) if since else None,
                             "until": str(until) if until else None, "total": total,
                             "returned": len(entries)})
        return RegisterPage(total, offset, limit, entries)


def register_export(catalog, principal: Principal, fmt: str = "csv", *,
                    query: str | None = None, since=None, until=None, client: str = "",
                    clock: Clock | None = None) -> bytes:
    """The whole register (or the entries matching), oldest first, as CSV (UTF-8 with
    a BOM, for spreadsheets) or JSON (entries with their tombstones). Audited."""
    if fmt not in EXPORT_FORMATS:
        raise InputError(f"format: expected one of {', '.join(EXPORT_FORMATS)}")
    with catalog.unit_of_work() as session:
        _require_reader(principal, client)
        stmt = _filtered(principal, query, since, until).order_by(DestructionEntry.id)
        entries = [RegisterEntryView.of(r, principal)
                   for r in session.scalars(stmt.execution_options(yield_per=1000))]
        audit.append(session, principal, "destruction.register_export",
                     "destruction-register", client=client, clock=clock or SystemClock(),
                     detail={"format": fmt, "entries": len(entries), "query": query})
    if fmt == "json":
        return json.dumps([e.to_dict() for e in entries], ensure_ascii=False,
                          indent=2).encode("utf-8")
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        writer.writerow(entry.csv_row())
    return ("\ufeff" + out.getvalue()).encode("utf-8")
