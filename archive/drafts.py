"""Drafts: the only documents that may change (R-AMEND-1, R-HIST-1).

A draft is a document being prepared by a clerk before it is archived: descriptive
metadata and, optionally, its file. Every change records who, when, what (each field
``{"from": old, "to": new}``) and why (a reason is required), as a
:class:`~archive.models.DraftChange`; discarding and submitting are recorded the same
way. A new file is stored under a new key (``drafts/<draft-id>/<n>-<name>``, put if
absent), never over the previous one. Once submitted the draft is an archived record:
any further change is refused, and the record is corrected by a new document.

Who may see and change a draft is the policy's ``record.ingest`` decision on the
draft's metadata (clerks of its fonds or issuing organisation, with a strong login for
changes). Every operation, read or change, is audited. The ingest of a draft is in
:mod:`ingest.drafts`.
"""

from __future__ import annotations

import json
import uuid
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive.bag import safe_payload_name
from archive.clock import Clock, SystemClock
from archive.errors import InputError, NotFound, ObjectExists, Refused
from archive.models import Draft, DraftChange, Event, Record
from archive.principal import Principal
from archive.storage import ObjectStore

STATUSES = ("draft", "archived", "discarded")
MAX_METADATA_BYTES = 64 * 1024
MAX_REASON = 2000
ARCHIVED_REFUSAL = "archived records are never edited: ingest a correction (R-AMEND-1)"


def draft_facts(draft_id: str, metadata: dict) -> policy.RecordFacts:
    """What the policy knows of a draft: its classification, fonds and organisation."""
    classification = metadata.get("classification") or "normal"
    return policy.RecordFacts(id=f"draft:{draft_id}",
                              classification=str(classification),
                              fonds=str(metadata.get("fonds") or ""),
                              issuing_org=str(metadata.get("issuing_org") or ""))


def _check_metadata(metadata) -> dict:
    if not isinstance(metadata, dict):
        raise InputError("metadata: expected a JSON object of fields")
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or len(key) > 64 or "\x00" in key:
            raise InputError(f"metadata: bad field name {key!r}")
        if isinstance(value, str) and "\x00" in value:
            raise InputError(f"metadata: {key}: must not contain a NUL character")
    if len(json.dumps(metadata, ensure_ascii=False).encode()) > MAX_METADATA_BYTES:
        raise InputError(f"metadata: at most {MAX_METADATA_BYTES} bytes")
    if not (metadata.get("fonds") or metadata.get("issuing_org")):
        raise InputError("metadata: a draft needs its fonds or its issuing_org: who may "
                         "see and change it depends on them")
    return metadata


def _reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InputError("reason: say why the draft is changed (it is kept with the change)")
    if len(reason) > MAX_REASON or "\x00" in reason:
        raise InputError(f"reason: at most {MAX_REASON} characters, no NUL")
    return reason


def _get(session: Session, principal: Principal, draft_id: str, action: str,
         client: str) -> Draft:
    draft = session.scalar(select(Draft).where(Draft.id == draft_id)
                           .options(selectinload(Draft.changes)))
    if draft is None:
        exc = NotFound(f"no draft with id {draft_id!r}")
        exc.audit_after_rollback = {"principal": principal, "action": action,
                                    "target": f"draft:{draft_id}", "outcome": "not_found",
                                    "client": client}
        raise exc
    return draft


def _changeable(principal: Principal, draft: Draft, action: str, client: str) -> None:
    """Refuse (audited) any change to a draft that is no longer a draft."""
    if draft.status == "draft":
        return
    message = ARCHIVED_REFUSAL if draft.status == "archived" else \
        "the draft was discarded; it cannot change any more"
    exc = Refused(message)
    exc.audit_after_rollback = {"principal": principal, "action": action,
                                "target": f"draft:{draft.id}", "outcome": "refused",
                                "client": client, "detail": {"reason": message,
                                                             "status": draft.status}}
    raise exc


def _store_file(store: ObjectStore, draft_id: str, n: int, stream: BinaryIO,
                name: str) -> tuple[str, str]:
    """Storage first: the file under a new key; its key and SHA-256."""
    key = f"drafts/{draft_id}/{n}-{safe_payload_name(name or 'document.pdf')}"
    try:
        put = store.put(key, stream)
    except ObjectExists as exc:
        raise Refused(f"the draft's file {key} already exists (a concurrent change?); "
                      "nothing was overwritten: try again") from exc
    if put.size == 0:
        raise InputError("file: the file is empty")
    return key, put.digests["sha256"]


def _file_number(draft: Draft) -> int:
    if not draft.file_key:
        return 1
    head = draft.file_key.rsplit("/", 1)[-1].split("-", 1)[0]
    return int(head) + 1 if head.isdigit() else 1


def _file_allowed(metadata: dict) -> None:
    if (metadata.get("classification") or "normal") != "normal":
        # R-CLASS-1: classified content never lies in clear in the store.
        raise InputError("file: a classified draft keeps no file in the archive; attach "
                         "the file when it is ingested")


def create_draft(session: Session, store: ObjectStore, principal: Principal, metadata: dict,
                 *, file: BinaryIO | None = None, file_name: str | None = None,
                 client: str = "", clock: Clock | None = None) -> Draft:
    metadata = _check_metadata(metadata)
    draft_id = str(uuid.uuid4())
    policy.require(principal, policy.INGEST, draft_facts(draft_id, metadata), client=client)
    now = (clock or SystemClock()).now()
    key = sha = None
    if file is not None:
        _file_allowed(metadata)
        key, sha = _store_file(store, draft_id, 1, file, file_name or "")
    draft = Draft(id=draft_id, created_at=now, created_by=str(principal),
                  metadata_=dict(metadata), file_key=key,
                  file_name=safe_payload_name(file_name) if key and file_name else None,
                  file_sha256=sha, status="draft", updated_at=now)
    session.add(draft)
    audit.append(session, principal, "draft.create", f"draft:{draft_id}", client=client,
                 detail={"fields": sorted(metadata), "file": key}, clock=clock)
    return draft


def update_draft(session: Session, store: ObjectStore, principal: Principal, draft_id: str,
                 changes: dict, reason: str, *, file: BinaryIO | None = None,
                 file_name: str | None = None, client: str = "",
                 clock: Clock | None = None) -> DraftChange:
    """Change fields (a value of None removes the field) and/or the file, with a reason."""
    reason = _reason(reason)
    if not isinstance(changes, dict):
        raise InputError("changes: expected a JSON object of fields")
    draft = _get(session, principal, draft_id, "draft.update", client)
    policy.require(principal, policy.INGEST, draft_facts(draft.id, draft.metadata_),
                   client=client)
    _changeable(principal, draft, "draft.update", client)
    old = dict(draft.metadata_ or {})
    new = {k: v for k, v in {**old, **changes}.items() if v is not None}
    new = _check_metadata(new)
    # Nobody moves a draft out of their own reach (fonds, organisation, clearance).
    policy.require(principal, policy.INGEST, draft_facts(draft.id, new), client=client)
    diff = {k: {"from": old.get(k), "to": new.get(k)}
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
    if file is not None:
        _file_allowed(new)
        key, sha = _store_file(store, draft.id, _file_number(draft), file, file_name or "")
        diff["file"] = {"from": _file_label(draft.file_name, draft.file_sha256),
                        "to": _file_label(safe_payload_name(file_name or "document.pdf"),
                                          sha)}
        draft.file_key, draft.file_sha256 = key, sha
        draft.file_name = safe_payload_name(file_name or "document.pdf")
    elif draft.file_key:
        _file_allowed(new)
    if not diff:
        raise InputError("nothing changed: give at least one field with a new value or "
                         "a new file")
    now = (clock or SystemClock()).now()
    draft.metadata_ = new
    draft.updated_at = now
    change = DraftChange(draft_id=draft.id, changed_at=now, changed_by=str(principal),
                         changes=diff, reason=reason)
    session.add(change)
    session.flush()
    audit.append(session, principal, "draft.update", f"draft:{draft.id}", client=client,
                 detail={"fields": sorted(diff), "reason": reason}, clock=clock)
    return change


def _file_label(name: str | None, sha256: str | None) -> str | None:
    return f"{name} (sha256:{sha256})" if name else None


def show_draft(session: Session, principal: Principal, draft_id: str, *, client: str = "",
               clock: Clock | None = None) -> Draft:
    draft = _get(session, principal, draft_id, "draft.view", client)
    policy.require(principal, policy.INGEST, draft_facts(draft.id, draft.metadata_),
                   client=client)
    audit.append(session, principal, "draft.view", f"draft:{draft.id}", client=client,
                 clock=clock)
    return draft


def list_drafts(session: Session, principal: Principal, *, status: str | None = "draft",
                client: str = "", clock: Clock | None = None) -> list[Draft]:
    """Drafts the principal may see (newest change first)."""
    if status is not None and status not in STATUSES:
        raise InputError(f"status: expected one of {', '.join(STATUSES)}")
    policy.require(principal, policy.INGEST, client=client)
    query = select(Draft).order_by(Draft.updated_at.desc(), Draft.id)
    if status is not None:
        query = query.where(Draft.status == status)
    rows = [d for d in session.scalars(query)
            if policy.decide(principal, policy.INGEST,
                             draft_facts(d.id, d.metadata_)).allowed]
    audit.append(session, principal, "drafts.list", "drafts", client=client,
                 detail={"status": status, "returned": len(rows)}, clock=clock)
    return rows


def discard_draft(session: Session, principal: Principal, draft_id: str, reason: str, *,
                  client: str = "", clock: Clock | None = None) -> DraftChange:
    reason = _reason(reason)
    draft = _get(session, principal, draft_id, "draft.discard", client)
    policy.require(principal, policy.INGEST, draft_facts(draft.id, draft.metadata_),
                   client=client)
    _changeable(principal, draft, "draft.discard", client)
    now = (clock or SystemClock()).now()
    draft.status, draft.updated_at = "discarded", now
    change = DraftChange(draft_id=draft.id, changed_at=now, changed_by=str(principal),
                         changes={"status": {"from": "draft", "to": "discarded"}},
                         reason=reason)
    session.add(change)
    session.flush()
    audit.append(session, principal, "draft.discard", f"draft:{draft.id}", client=client,
                 detail={"reason": reason}, clock=clock)
    return change


# ---- submission (driven by ingest.drafts) -------------------------------------------


def check_submittable(session: Session, principal: Principal, draft_id: str, *,
                      client: str = "") -> Draft:
    """The draft, if ``principal`` may submit it now (a draft, with a file)."""
    draft = _get(session, principal, draft_id, "draft.submit", client)
    policy.require(principal, policy.INGEST, draft_facts(draft.id, draft.metadata_),
                   client=client)
    _changeable(principal, draft, "draft.submit", client)
    if not draft.file_key:
        raise InputError("the draft has no file yet: add the signed file before submitting")
    return draft


def mark_archived(session: Session, principal: Principal, draft_id: str, record: Record, *,
                  client: str = "", clock: Clock | None = None) -> DraftChange:
    """In the transaction registering the new record: the draft becomes that record."""
    draft = check_submittable(session, principal, draft_id, client=client)
    now = (clock or SystemClock()).now()
    draft.status, draft.record_id, draft.updated_at = "archived", record.id, now
    change = DraftChange(draft_id=draft.id, changed_at=now, changed_by=str(principal),
                         changes={"status": {"from": "draft", "to": "archived"},
                                  "record_id": {"from": None, "to": record.id}},
                         reason="submitted for archiving")
    session.add(change)
    session.add(Event(id=str(uuid.uuid4()), record_id=record.id, event_type="creation",
                      occurred_at=now, agent=str(principal), outcome="success",
                      detail=f"prepared as draft {draft.id} by {draft.created_by} from "
                             f"{draft.created_at.isoformat()}, {len(draft.changes)} recorded "
                             "change(s) before archiving",
                      data={"draft_id": draft.id}))
    session.flush()
    audit.append(session, principal, "draft.submit", f"draft:{draft.id}", client=client,
                 detail={"record_id": record.id}, clock=clock)
    return change


def refuse_submission(session: Session, principal: Principal, draft_id: str,
                      existing_id: str, *, client: str = "", clock: Clock | None = None
                      ) -> None:
    """The draft's file is already archived: the draft stays a draft, and that is said."""
    audit.append(session, principal, "draft.submit", f"draft:{draft_id}", outcome="refused",
                 client=client, clock=clock,
                 detail={"reason": "the file is already archived", "existing": existing_id})


def draft_to_dict(draft: Draft, *, changes: bool = False) -> dict:
    data = {"id": draft.id, "status": draft.status, "created_at": draft.created_at.isoformat(),
            "created_by": draft.created_by, "updated_at": draft.updated_at.isoformat(),
            "metadata": dict(draft.metadata_ or {}), "file_name": draft.file_name,
            "file_sha256": draft.file_sha256, "record_id": draft.record_id}
    if changes:
        data["changes"] = [change_to_dict(c) for c in draft.changes]
    return data


def change_to_dict(change: DraftChange) -> dict:
    return {"changed_at": change.changed_at.isoformat(), "changed_by": change.changed_by,
            "changes": change.changes, "reason": change.reason}
