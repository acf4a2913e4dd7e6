"""Executing an approved destruction list (R-DESTROY-1, R-DESTROY-2).

Only an ``approved`` list is executed (an interrupted execution, ``executing``, is
resumed), by a principal with ``destruction.execute`` (an archivist) or the operator.
Nothing half-done is lost silently:

1. the list is marked ``executing`` (one transaction, audited ``destruction.start``);
2. for each listed record, re-checked now (a seal or hold placed since the approval, a
   retention extended, or a policy refusal skips it, reported, nothing deleted):
   every copy is deleted (each AIP version in the primary store, renditions, every
   backup copy in the backup store, anything else under ``aip/<id>/`` or
   ``renditions/<id>/`` in either store, staging leftovers named after the record), a
   missing object being fine; then the data keys of its encrypted files are destroyed
   (crypto-shredding: copies of the ciphertext anywhere become unreadable); then ONE
   transaction marks the record ``destroyed`` with its register entry, ``destruction``
   event, backup copies marked deleted and the ``destruction.execute`` audit entry
   (:func:`archive.destruction_register.record_destroyed`). A deletion refused by S3
   Object Lock (or any store failure) leaves the record not destroyed: a failed
   ``destruction`` event and a ``failed`` audit entry say which objects were deleted;
3. the list is marked ``executed`` (audited ``destruction.finish``).

Only the listed record's own keys are touched: destroying never affects another record.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import select

from archive import audit, policy
from archive.destruction import view
from archive.destruction_register import Copies, copies_of, load_record, record_destroyed
from archive.errors import AccessDenied, ArchiveError, NotFound, ObjectNotFound, Refused
from archive.keystore import KeyVault
from archive.models import DestructionItem, DestructionList, Event
from archive.principal import Principal
from archive.retention import is_due


@dataclass
class ItemOutcome:
    record_id: str
    status: str  # destroyed | skipped | failed
    reason: str = ""
    objects_deleted: list[str] = field(default_factory=list)
    data_keys_destroyed: list[str] = field(default_factory=list)
    register_entry: int | None = None


@dataclass
class ExecutionReport:
    list_id: str
    status: str
    items: list[ItemOutcome] = field(default_factory=list)

    def _count(self, status: str) -> int:
        return sum(1 for i in self.items if i.status == status)

    @property
    def destroyed(self) -> int:
        return self._count("destroyed")

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def failed(self) -> int:
        return self._count("failed")

    @property
    def ok(self) -> bool:
        """Every listed record was destroyed."""
        return not self.skipped and not self.failed

    def to_dict(self) -> dict:
        return {"list_id": self.list_id, "status": self.status, "ok": self.ok,
                "destroyed": self.destroyed, "skipped": self.skipped, "failed": self.failed,
                "items": [asdict(i) for i in self.items]}


def _may_execute(principal: Principal, list_id: str, client: str) -> None:
    if principal.kind == "system":
        return
    if principal.kind != "user" or policy.EXECUTE_DESTRUCTION not in \
            policy.allowed_actions(principal):
        raise AccessDenied(str(principal), policy.EXECUTE_DESTRUCTION,
                           f"destruction:{list_id}", f"the role {principal.role or 'none'} "
                           "does not allow destruction.execute", client=client)
    if not principal.strong:
        raise AccessDenied(str(principal), policy.EXECUTE_DESTRUCTION,
                           f"destruction:{list_id}", "a password-only login may not change "
                           "anything: log in with a one-time code or a certificate "
                           "(R-AUTH-1)", client=client)


def _start(instance, principal: Principal, list_id: str, client: str) -> list[str]:
    """Mark the list executing; the records still listed on it, in list order."""
    clock = instance.clock
    with instance.catalog.unit_of_work() as session:
        row = session.scalar(select(DestructionList).where(DestructionList.id == str(list_id))
                             .with_for_update())
        if row is None:
            exc = NotFound(f"no destruction list with id {list_id!r}")
            exc.audit_after_rollback = {"principal": principal,
                                        "action": policy.EXECUTE_DESTRUCTION,
                                        "target": f"destruction:{list_id}",
                                        "outcome": "not_found", "client": client}
            raise exc
        _may_execute(principal, row.id, client)
        if row.status not in ("approved", "executing"):
            message = (f"destruction list {row.id} is {row.status}: only an approved list "
                       "is executed (R-DESTROY-1)")
            exc = Refused(message)
            exc.audit_after_rollback = {"principal": principal,
                                        "action": policy.EXECUTE_DESTRUCTION,
                                        "target": f"destruction:{row.id}",
                                        "outcome": "refused", "client": client,
                                        "detail": {"reason": message}}
            raise exc
        resumed = row.status == "executing"
        row.status = "executing"
        row.executed_by = str(principal)
        listed = list(session.scalars(select(DestructionItem.record_id).where(
            DestructionItem.list_id == row.id, DestructionItem.status == "listed")
            .order_by(DestructionItem.id)))
        audit.append(session, principal, "destruction.start", f"destruction:{row.id}",
                     client=client, clock=clock,
                     detail={"records": len(listed), "resumed": resumed,
                             "decision_number": row.decision_number})
    return listed


def _prepare(instance, principal: Principal, list_id: str, record_id: str, client: str
             ) -> tuple[Copies | None, ItemOutcome | None]:
    """Re-check one item now; its copies, or the outcome of a skip (recorded)."""
    clock = instance.clock
    now = clock.now()
    with instance.catalog.unit_of_work() as session:
        record = load_record(session, record_id, lock=True)
        reason = is_due(session, record_id, now.date())
        if reason is None:
            decision = policy.decide(principal, policy.EXECUTE_DESTRUCTION,
                                     policy.facts_of(record))
            if not decision:
                reason = f"refused by the policy: {decision.reason}"
        if reason is None:
            return copies_of(session, record), None
        item = session.scalar(select(DestructionItem).where(
            DestructionItem.list_id == list_id, DestructionItem.record_id == record_id))
        item.status, item.note, item.changed_at, item.changed_by = \
            "skipped", f"not destroyed: {reason}", now, str(principal)
        audit.append(session, principal, "destruction.skip", f"record:{record_id}",
                     outcome="refused", client=client, clock=clock,
                     detail={"list": list_id, "reason": reason})
    return None, ItemOutcome(record_id, "skipped", reason)


def _prefixes(record_id: str) -> tuple[str, ...]:
    # AIP versions, paper renditions, and renewed archive timestamps (their inputs name
    # the AIP's digests and carry the previous tokens: evidence of the record, R-TS-1).
    return (f"aip/{record_id}/", f"renditions/{record_id}/", f"timestamps/{record_id}/")


def _delete(store, key: str, deleted: list[str]) -> None:
    try:
        store.delete(key)
    except ObjectNotFound:
        return  # already gone (an interrupted run): idempotent
    deleted.append(f"{store.name}:{key}")


def _remove_copies(instance, copies: Copies, deleted: list[str]) -> None:
    """Delete every copy; raises (Refused, StorageError) at the first refusal."""
    store, backup = instance.store, instance.backup_store
    stores = {c[1] for c in copies.backup_copies}
    if stores and (backup is None or stores != {backup.name}):
        raise Refused(f"backup copies of record {copies.record_id} are in "
                      f"{', '.join(sorted(stores))}, which is not the configured backup "
                      "store: nothing was deleted")
    # The primary AIPs first: they are the objects Object Lock protects, so a refusal
    # comes before anything else is gone.
    listed = [i.key for p in _prefixes(copies.record_id) for i in store.list(p)]
    for key in dict.fromkeys([*copies.aip_keys, *copies.rendition_keys, *listed]):
        _delete(store, key, deleted)
    if backup is not None:
        listed = [i.key for p in _prefixes(copies.record_id) for i in backup.list(p)]
        for key in dict.fromkeys([*(c[2] for c in copies.backup_copies), *listed]):
            _delete(backup, key, deleted)
    _remove_staging(instance.settings.staging_dir, copies.record_id, deleted)


def _remove_staging(root: Path, record_id: str, deleted: list[str]) -> None:
    """Leftovers of an ingest or repackaging of this record (``<id>.v<N>...`` tars)."""
    if not root.is_dir():
        return
    for path in [*root.glob(f"{record_id}.*"), *root.glob(f"*/{record_id}.*")]:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        deleted.append(f"staging:{path.relative_to(root)}")


def _shred(instance, copies: Copies) -> list[str]:
    if not copies.data_keys:
        return []
    vault = KeyVault.from_settings(instance.settings, instance.clock)
    for dek in copies.data_keys:
        vault.destroy_data_key(dek)  # False when already gone: idempotent
    return list(copies.data_keys)


def _failed(instance, principal: Principal, list_id: str, record_id: str, reason: str,
            deleted: list[str], client: str) -> ItemOutcome:
    """Record a record that could not be destroyed: nothing half-done goes unsaid."""
    clock = instance.clock
    now = clock.now()
    with instance.catalog.unit_of_work() as session:
        item = session.scalar(select(DestructionItem).where(
            DestructionItem.list_id == list_id, DestructionItem.record_id == record_id))
        item.status, item.note, item.changed_at, item.changed_by = \
            "failed", f"not destroyed: {reason}"[:4000], now, str(principal)
        session.add(Event(id=str(uuid.uuid4()), record_id=record_id, event_type="destruction",
                          occurred_at=now, agent=str(principal), outcome="failure",
                          detail=f"destruction failed: {reason}",
                          data={"list": list_id, "objects_deleted": deleted}))
        audit.append(session, principal, "destruction.execute", f"record:{record_id}",
                     outcome="failed", client=client, clock=clock,
                     detail={"list": list_id, "reason": reason, "objects": deleted})
    return ItemOutcome(record_id, "failed", reason, deleted)


def _destroy_one(instance, principal: Principal, list_id: str, record_id: str,
                 client: str) -> ItemOutcome:
    copies, skipped = _prepare(instance, principal, list_id, record_id, client)
    if skipped is not None:
        return skipped
    deleted: list[str] = []
    try:
        _remove_copies(instance, copies, deleted)
        shredded = _shred(instance, copies)
    except ArchiveError as exc:
        return _failed(instance, principal, list_id, record_id, exc.message, deleted, client)
    clock = instance.clock
    with instance.catalog.unit_of_work() as session:
        row = session.get(DestructionList, list_id)
        record = load_record(session, record_id, lock=True)
        entry = record_destroyed(session, principal, row, record, copies, deleted=deleted,
                                 shredded=shredded, now=clock.now(), clock=clock,
                                 client=client)
        entry_id = entry.id
    return ItemOutcome(record_id, "destroyed", "", deleted, shredded, entry_id)


def execute(instance, principal: Principal, list_id: str, *,
            progress: Callable[[int], None] | None = None,
            client: str = "") -> ExecutionReport:
    """Destroy every record of an approved list (see the module docstring)."""
    listed = _start(instance, principal, list_id, client)
    report = ExecutionReport(list_id, "executing")
    for record_id in listed:
        report.items.append(_destroy_one(instance, principal, list_id, record_id, client))
        if progress is not None:
            progress(1)
    clock = instance.clock
    with instance.catalog.unit_of_work() as session:
        row = session.get(DestructionList, list_id, with_for_update=True)
        row.status = "executed"
        row.executed_at = clock.now()
        row.executed_by = str(principal)
        audit.append(session, principal, "destruction.finish", f"destruction:{row.id}",
                     outcome="ok" if report.ok else "failed", client=client, clock=clock,
                     detail={"destroyed": report.destroyed, "skipped": report.skipped,
                             "failed": report.failed})
        report.status = view(session, row, items=False).status
    return report
