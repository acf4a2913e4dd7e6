"""Sealing for inspection (niêm phong, R-SEAL-1..3).

An inspector seals one or more records, or a whole file (hồ sơ), under a sealing
decision (number, date, issuing authority, scope, who may read meanwhile). While a
record is sealed the policy decision point (:mod:`archive.policy`, rule 6) refuses
every read of its content, every copy and every change by anyone outside the decision,
and the unit of work audits each refusal (R-SEAL-2).

Sealing writes storage first: a signed, optionally timestamped manifest of every digest
(:mod:`archive.seal_manifest`), put-if-absent under ``seals/<seal-id>/``, under S3
legal hold where the bucket has Object Lock (the sealed AIP objects too); then one
transaction: the seal rows, a ``sealing`` event on each record, one audit entry. Only
the sealed records' rows are locked (``SELECT ... FOR UPDATE`` on PostgreSQL), and the
audit chain's head last, so work on other records goes on (R-SEAL-1).

Unsealing, by the sealing authority only (R-SEAL-3), checks the manifest (SHA-256
against the catalog, signature, timestamp token) and re-reads every listed object
against it; every difference is reported, recorded on the record (a failed ``fixity
check`` event is an alert) and in the seal's lift report. A difference does not keep
the record sealed: the report is the evidence the inspection needs.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive import seal_manifest as manifests
from archive.clock import Clock, SystemClock
from archive.errors import AccessDenied, ArchiveError, InputError, NotFound, Problem
from archive.fixity import check_package
from archive.models import Agent, Event, PackageVersion, Record, Seal, SealRecord
from archive.principal import Principal

# The surface's timestamp port: bytes -> {"token": DER bytes, "info": dict} (R-TS-1).
Timestamp = Callable[[bytes], dict]
# Checks a stored token over the manifest bytes: -> info dict; raises on a bad token.
TimestampCheck = Callable[[bytes, bytes], dict]

MAX_RECORDS = 10000
MAX_TEXT = 4000


# ---- sealing ------------------------------------------------------------------------


def seal(session: Session, store, principal: Principal, *, record_ids: list[str] | None = None,
         file_ref: str | None = None, reference: str, decision_date: date, authority: str,
         scope: str, readers: list[str] | tuple[str, ...] = (), signing_key,
         timestamp: Timestamp | None = None, legal_hold: bool = True, client: str = "",
         clock: Clock | None = None) -> Seal:
    """Seal the records (or every record of ``file_ref``) under one decision."""
    now = (clock or SystemClock()).now()
    reference, scope = _required(reference, "reference", 200), _required(scope, "scope",
                                                                          MAX_TEXT)
    if not isinstance(decision_date, date):
        raise InputError("date: the sealing decision's date is required (YYYY-MM-DD)")
    org = _organisation(session, authority)
    reader_ids = _readers(session, readers)
    records = _lock_records(session, principal, record_ids, file_ref, client)
    for record in records:  # R-SEAL-1: inspector, strong login, not sealed, not destroyed
        policy.require(principal, policy.SEAL, policy.facts_of(record), client=client)

    seal_id = str(uuid.uuid4())
    hold = legal_hold and _object_lock(store)
    decision = {"reference": reference, "date": decision_date.isoformat(),
                "authority": {"identifier": org.identifier, "name": org.name},
                "scope": scope, "readers": reader_ids}
    sealer = {"principal": str(principal), "person": principal.person,
              "name": principal.display}
    data = manifests.build(seal_id=seal_id, decision=decision, sealed_at=now, sealer=sealer,
                           legal_hold=hold, records=records)
    digest = hashlib.sha256(data).hexdigest()
    stamped = timestamp(data) if timestamp is not None else None

    # Storage first: the manifest, its signature and token, each put-if-absent.
    objects = [(manifests.manifest_key(seal_id), data),
               (manifests.signature_key(seal_id), manifests.sign(data, signing_key))]
    if stamped is not None:
        objects.append((manifests.timestamp_key(seal_id), stamped["token"]))
    for key, body in objects:
        _put(store, key, body)
    held = []
    if hold:
        held = [key for key, _ in objects] + [r.versions[-1].storage_key for r in records]
        for key in held:
            store.set_legal_hold(key, True)

    row = Seal(id=seal_id, reference=reference, decision_date=decision_date,
               authority_id=org.id, scope=scope, readers=reader_ids, sealed_at=now,
               sealed_by=str(principal), sealer_person=principal.person,
               manifest_key=manifests.manifest_key(seal_id), manifest_sha256=digest,
               legal_hold=hold, status="active")
    session.add(row)
    session.flush()
    data_common = {"seal_id": seal_id, "reference": reference, "authority": org.identifier,
                   "manifest_key": row.manifest_key, "manifest_sha256": digest,
                   "legal_hold": held,
                   "timestamp": stamped["info"] if stamped is not None else None}
    for record in records:
        session.add(SealRecord(seal_id=seal_id, record_id=record.id))
        session.add(Event(id=str(uuid.uuid4()), record_id=record.id, event_type="sealing",
                          occurred_at=now, agent=str(principal), outcome="success",
                          detail=f"sealed under decision {reference} of {org.name} "
                                 f"({decision_date.isoformat()}): {scope}",
                          data=data_common))
    session.flush()
    for record in records:
        session.expire(record, ["seals"])
    # Last before the commit: the audit chain's head row stays locked only briefly.
    audit.append(session, principal, "record.seal", f"seal:{seal_id}", client=client,
                 clock=clock, detail={"reference": reference, "authority": org.identifier,
                                      "records": [r.id for r in records],
                                      "file_ref": file_ref, "readers": reader_ids,
                                      "manifest_sha256": digest, "legal_hold": hold,
                                      "timestamped": stamped is not None})
    return row


def _required(value, name: str, limit: int) -> str:
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        raise InputError(f"{name}: required")
    if len(text) > limit or "\x00" in text:
        raise InputError(f"{name}: at most {limit} characters, no NUL")
    return text


def _organisation(session: Session, identifier: str) -> Agent:
    agent = session.scalar(select(Agent).where(Agent.identifier == (identifier or "")))
    if agent is None or agent.kind != "organisation":
        raise InputError(f"authority: {identifier!r} is not a registered organisation")
    if agent.status != "active":
        raise InputError(f"authority: organisation {identifier} is not active")
    return agent


def _readers(session: Session, readers) -> list[str]:
    wanted = list(dict.fromkeys(str(r).strip() for r in readers or () if str(r).strip()))
    if not wanted:
        return []
    found = set(session.scalars(select(Agent.identifier).where(
        Agent.identifier.in_(wanted), Agent.kind == "person")))
    missing = [r for r in wanted if r not in found]
    if missing:
        raise InputError(f"readers: not registered persons: {', '.join(missing)}")
    return wanted


def _lock_records(session: Session, principal: Principal, record_ids, file_ref,
                  client: str) -> list[Record]:
    """The records to seal, their rows locked until the transaction ends.

    Row locks only (R-SEAL-1: never a table lock); taken in id order so two sealings
    of overlapping sets queue instead of deadlocking.
    """
    if bool(record_ids) == bool(file_ref):
        raise InputError("give record ids or a file reference (hồ sơ), not both or neither")
    if record_ids:
        ids = list(dict.fromkeys(record_ids))
        if len(ids) > MAX_RECORDS:
            raise InputError(f"at most {MAX_RECORDS} records per sealing")
        condition = Record.id.in_(ids)
    else:
        file_ref = _required(file_ref, "file_ref", 100)
        condition = Record.file_ref == file_ref
    rows = list(session.scalars(
        select(Record).where(condition).order_by(Record.id).with_for_update(of=Record)
        .options(selectinload(Record.versions).selectinload(PackageVersion.files),
                 selectinload(Record.issuing_org), selectinload(Record.seals))
        .execution_options(populate_existing=True)))
    if record_ids:
        missing = sorted(set(ids) - {r.id for r in rows})
        if missing:
            raise _not_found(principal, policy.SEAL, f"record:{missing[0]}",
                             f"no record with id {missing[0]!r}", client)
    elif not rows:
        raise _not_found(principal, policy.SEAL, f"file:{file_ref}",
                         f"no record in the file (hồ sơ) {file_ref!r}", client)
    if len(rows) > MAX_RECORDS:
        raise InputError(f"the file {file_ref} has more than {MAX_RECORDS} records")
    return rows


def _not_found(principal: Principal, action: str, target: str, message: str,
               client: str) -> NotFound:
    """A NotFound whose attempt is audited after the rollback (R-AUDIT-1)."""
    exc = NotFound(message)
    exc.audit_after_rollback = {"principal": principal, "action": action, "target": target,
                                "outcome": "not_found", "client": client}
    return exc


def _object_lock(store) -> bool:
    """Whether the store can hold objects under legal hold (S3 with Object Lock)."""
    check = getattr(store, "object_lock_enabled", None)
    return bool(check()) if check is not None else False


def _put(store, key: str, body: bytes) -> None:
    import io

    store.put(key, io.BytesIO(body), size=len(body),
              sha256=hashlib.sha256(body).hexdigest())


# ---- unsealing ----------------------------------------------------------------------


def unseal(session: Session, store, principal: Principal, seal_id: str, *,
           lift_reference: str, public_key, verify_timestamp: TimestampCheck | None = None,
           progress: Callable[[int, int], None] | None = None, client: str = "",
           clock: Clock | None = None) -> dict:
    """Lift a seal (sealing authority only) after checking every byte against its
    manifest; the report lists every difference (``ok`` False when there is one)."""
    now = (clock or SystemClock()).now()
    lift_reference = _required(lift_reference, "reference", 200)
    row = _get_seal(session, principal, seal_id, policy.UNSEAL, client, lock=True)
    records = list(session.scalars(
        select(Record).join(SealRecord, SealRecord.record_id == Record.id)
        .where(SealRecord.seal_id == row.id).order_by(Record.id).with_for_update(of=Record)
        .options(selectinload(Record.versions).selectinload(PackageVersion.files),
                 selectinload(Record.issuing_org), selectinload(Record.seals))
        .execution_options(populate_existing=True)))
    for record in records:  # R-SEAL-3: only the sealing authority, only an active seal
        if record.active_seal is None or record.active_seal.id != row.id:
            raise AccessDenied(str(principal), policy.UNSEAL, f"record:{record.id}",
                               f"seal {row.id} ({row.reference}) is not active on the "
                               "record", client=client)
        policy.require(principal, policy.UNSEAL, policy.facts_of(record), client=client)

    events = sealing_events(session, row)
    report = verify(store, row, records, events, public_key=public_key,
                    verify_timestamp=verify_timestamp, progress=progress)
    released = _release_holds(store, row, events, report)
    report.update(lift_reference=lift_reference, lifted_at=audit.format_time(now),
                  lifted_by=str(principal), holds_released=released)
    row.status = "lifted"
    row.lifted_at = now
    row.lifted_by = str(principal)
    row.lift_reference = lift_reference
    row.lift_report = json.loads(audit.canonical_json(report))
    by_record: dict[str, list] = {}
    for diff in report["differences"]:
        by_record.setdefault(diff.get("record_id") or "", []).append(diff)
    for record in records:
        own = by_record.get(record.id, [])
        general = by_record.get("", [])
        outcome = "failure" if own else "warning" if general else "success"
        text = "; ".join(d["message"] for d in own + general)
        session.add(Event(id=str(uuid.uuid4()), record_id=record.id, event_type="unsealing",
                          occurred_at=now, agent=str(principal), outcome=outcome,
                          detail=f"unsealed under {lift_reference} (seal {row.reference})"
                                 + (f": {text}" if text else ": unchanged since sealing"),
                          data={"seal_id": row.id, "lift_reference": lift_reference,
                                "differences": own + general}))
        if own:  # R-FIX-1 / R-INCIDENT-1: damage found while sealed is an alert
            session.add(Event(id=str(uuid.uuid4()), record_id=record.id,
                              event_type="fixity check", occurred_at=now,
                              agent=str(principal), outcome="failure",
                              detail=f"changed while sealed ({row.reference}): {text}",
                              data={"alert": True, "during": "unsealing",
                                    "seal_id": row.id, "differences": own}))
    session.flush()
    for record in records:
        session.expire(record, ["seals"])
    audit.append(session, principal, "record.unseal", f"seal:{row.id}", client=client,
                 clock=clock, outcome="ok" if report["ok"] else "failed",
                 detail={"reference": row.reference, "lift_reference": lift_reference,
                         "records": [r.id for r in records], "ok": report["ok"],
                         "differences": len(report["differences"])})
    return report


def verify(store, row: Seal, records: list[Record], events: list[Event], *, public_key,
           verify_timestamp: TimestampCheck | None = None,
           progress: Callable[[int, int], None] | None = None) -> dict:
    """Compare what the store and catalog hold now with the seal's manifest."""
    differences: list[Problem] = []
    stored = manifests.read_back(store, row.id)
    for problem in stored.problems:
        differences.append(Problem("manifest-missing", problem, row.manifest_key))
    manifest: dict | None = None
    checks = {"manifest_sha256": None, "signature": None, "timestamp": None}
    if stored.data is not None:
        found = hashlib.sha256(stored.data).hexdigest()
        checks["manifest_sha256"] = found == row.manifest_sha256
        if not checks["manifest_sha256"]:
            differences.append(Problem(
                "manifest-changed", f"{row.manifest_key}: SHA-256 {found} is not the "
                f"{row.manifest_sha256} recorded at sealing", row.manifest_key))
        else:
            manifest = json.loads(stored.data)
        if stored.signature is not None:
            why = manifests.check_signature(stored.data, stored.signature, public_key)
            checks["signature"] = why is None
            if why:
                differences.append(Problem("signature", f"manifest signature: {why}",
                                           manifests.signature_key(row.id)))
        checks["timestamp"] = _check_token(row, stored, events, verify_timestamp,
                                           differences)
    expected = {e["id"]: e for e in (manifest or {}).get("records", [])}
    if manifest is not None and set(expected) != {r.id for r in records}:
        differences.append(Problem("catalog-changed", "the records of the seal in the "
                                   "catalog differ from the manifest", f"seal:{row.id}"))
    for done, record in enumerate(records, 1):
        entry = expected.get(record.id) or _catalog_entry(record, differences)
        differences.extend(_check_record(store, record, entry))
        if progress is not None:
            progress(done, len(records))
    return {"seal_id": row.id, "reference": row.reference, "ok": not differences,
            "checks": checks, "records_checked": len(records),
            "records": [r.id for r in records],
            "differences": [_diff_dict(d) for d in differences]}


def _check_token(row: Seal, stored, events: list[Event], verify_timestamp,
                 differences: list[Problem]) -> dict | bool | None:
    expected = any(e.data.get("timestamp") for e in events)
    if stored.token is None:
        if expected:
            differences.append(Problem("timestamp", "the manifest's timestamp token is "
                                       "missing from the store",
                                       manifests.timestamp_key(row.id)))
            return False
        return None
    if verify_timestamp is None:
        return {"verified": False, "reason": "no timestamp verifier configured"}
    try:
        info = verify_timestamp(stored.token, stored.data)
    except ArchiveError as exc:
        differences.append(Problem("timestamp", f"manifest timestamp token: {exc.message}",
                                   manifests.timestamp_key(row.id)))
        return False
    return {"verified": True, **info}


def _catalog_entry(record: Record, differences: list[Problem]) -> dict:
    differences.append(Problem("manifest-missing", f"record {record.id}: no trusted manifest "
                               "entry; checked against the catalog only", f"record:{record.id}",
                               {"record_id": record.id}))
    return manifests.record_entry(record)


def _check_record(store, record: Record, entry: dict) -> list[Problem]:
    """Every difference between the record now (store and catalog) and ``entry``."""
    out: list[Problem] = []
    package = entry["package"]
    key = package["storage_key"]
    where = {"record_id": record.id}
    current = record.versions[-1] if record.versions else None
    if current is None or current.storage_key != key:
        out.append(Problem("new-version", f"record {record.id}: its current package is "
                           f"{current.storage_key if current else 'none'}, not the sealed "
                           f"{key}", key, where))
    listed = next((v for v in record.versions if v.storage_key == key), None)
    if listed is None:
        out.append(Problem("catalog-changed", f"record {record.id}: the catalog no longer "
                           f"lists the sealed package {key}", key, where))
    else:
        files = {f["path"]: f for f in entry["files"]}
        catalog = {f.path: f for f in listed.files}
        if listed.size != package["size"] or dict(listed.digests) != package["digests"] or \
                set(files) != set(catalog) or any(
                    dict(catalog[p].digests) != f["digests"] or catalog[p].size != f["size"]
                    for p, f in files.items() if p in catalog):
            out.append(Problem("catalog-changed", f"record {record.id}: the catalog's "
                               f"digests of {key} differ from the manifest", key, where))
    members = [(f["path"], f["offset"], f["size"], f["digests"]) for f in entry["files"]]
    check = check_package(store, key, package["size"], package["digests"], members)
    for problem in check.problems:
        code = "object-missing" if problem.code == "missing" else "object-changed"
        out.append(Problem(code, f"record {record.id}: {problem.message}", key,
                           {**where, **problem.detail}))
    for damage in check.damaged_members:
        out.append(Problem("file-changed", f"record {record.id}: {damage.path}: "
                           f"{damage.problem}", key, {**where, "path": damage.path}))
    return out


def _diff_dict(problem: Problem) -> dict:
    return {"code": problem.code, "message": problem.message, "target": problem.target,
            "record_id": problem.detail.get("record_id"),
            **({"path": problem.detail["path"]} if "path" in problem.detail else {})}


def _release_holds(store, row: Seal, events: list[Event], report: dict) -> list[str]:
    """Lift the legal holds the sealing put (R-SEAL-3); failures join the report."""
    if not row.legal_hold:
        return []
    keys = [manifests.manifest_key(row.id), manifests.signature_key(row.id),
            manifests.timestamp_key(row.id)]
    for event in events:
        keys += [k for k in event.data.get("legal_hold") or () if k not in keys]
    released = []
    for key in keys:
        try:
            if store.exists(key):
                store.set_legal_hold(key, False)
                released.append(key)
        except ArchiveError as exc:
            report["differences"].append(_diff_dict(Problem(
                "legal-hold", f"{key}: legal hold not released: {exc.message}", key)))
            report["ok"] = False
    return released


# ---- reading seals ------------------------------------------------------------------


def _get_seal(session: Session, principal: Principal, seal_id: str, action: str,
              client: str, *, lock: bool = False) -> Seal:
    stmt = select(Seal).where(Seal.id == seal_id).options(selectinload(Seal.authority),
                                                          selectinload(Seal.records))
    if lock:
        stmt = stmt.with_for_update(of=Seal).execution_options(populate_existing=True)
    row = session.scalar(stmt)
    if row is None:
        raise _not_found(principal, action, f"seal:{seal_id}", f"no seal with id {seal_id!r}",
                         client)
    return row


def sealing_events(session: Session, row: Seal) -> list[Event]:
    """The seal's ``sealing`` events: they carry what the manifest cannot hold (the
    timestamp token's verification, the legal holds put)."""
    events = session.scalars(select(Event).where(
        Event.event_type == "sealing", Event.record_id.in_([r.id for r in row.records])))
    return [e for e in events if (e.data or {}).get("seal_id") == row.id]


def may_see_all(principal: Principal) -> bool:
    """Inspectors (who seal), auditors (who read the log) and the operator see every
    seal; anyone else only the seals whose decision names them as readers."""
    allowed = policy.allowed_actions(principal)
    return principal.kind == "system" or policy.SEAL in allowed or \
        policy.AUDIT_READ in allowed


def _names(principal: Principal, row: Seal) -> bool:
    """Whether the sealing decision names the principal's person as a reader."""
    return bool(principal.person) and principal.person in (row.readers or ())


def get_seal(session: Session, principal: Principal, seal_id: str, *, client: str = "",
             clock: Clock | None = None) -> Seal:
    """One seal with its decision and records (and its lift report once lifted)."""
    if principal.kind == "anonymous":
        raise AccessDenied(str(principal), "seal.view", f"seal:{seal_id}", "not logged in",
                           client=client)
    row = _get_seal(session, principal, seal_id, "seal.view", client)
    if not may_see_all(principal) and not _names(principal, row):
        raise AccessDenied(str(principal), "seal.view", f"seal:{seal_id}",
                           "only inspectors, auditors and the readers named in the "
                           f"sealing decision {row.reference} may see it", client=client)
    audit.append(session, principal, "seal.view", f"seal:{seal_id}", client=client,
                 clock=clock)
    return row


def list_seals(session: Session, principal: Principal, *, status: str | None = None,
               record_id: str | None = None, limit: int = 50, offset: int = 0,
               client: str = "", clock: Clock | None = None) -> tuple[int, list[Seal]]:
    """Seals the principal may see, newest first, and their total count."""
    if principal.kind == "anonymous":
        raise AccessDenied(str(principal), "seals.list", "seals", "not logged in",
                           client=client)
    if status not in (None, "active", "lifted"):
        raise InputError("status: expected active or lifted")
    query = select(Seal)
    if status:
        query = query.where(Seal.status == status)
    if record_id:
        query = query.where(Seal.id.in_(select(SealRecord.seal_id)
                                        .where(SealRecord.record_id == record_id)))
    if not may_see_all(principal):
        rows = [s for s in session.scalars(query.options(selectinload(Seal.authority),
                                                         selectinload(Seal.records)))
                if _names(principal, s)]
        rows.sort(key=lambda s: s.sealed_at, reverse=True)
        total, rows = len(rows), rows[offset:offset + limit]
    else:
        total = session.scalar(select(func.count()).select_from(query.subquery()))
        rows = list(session.scalars(query.options(selectinload(Seal.authority),
                                                  selectinload(Seal.records))
                                    .order_by(Seal.sealed_at.desc(), Seal.id)
                                    .limit(limit).offset(offset)))
    audit.append(session, principal, "seals.list", "seals", client=client, clock=clock,
                 detail={"status": status, "record_id": record_id, "returned": len(rows),
                         "total": total})
    return total, rows


def _record_entry(record: Record, principal: Principal | None) -> dict:
    """A sealed record as a seal lists it. Inspectors and auditors of any clearance see
    every seal, so a classified record above the reader's clearance is named by its id
    only, never by its number (R-CLASS-1)."""
    level = policy.LEVELS.get(record.classification, max(policy.LEVELS.values()) + 1)
    if principal is not None and level > policy.effective_clearance(principal):
        return {"id": record.id, "number_symbol": None, "classified": True}
    return {"id": record.id, "number_symbol": record.number_symbol}


def seal_to_dict(row: Seal, *, report: bool = False,
                 principal: Principal | None = None) -> dict:
    """The seal as the API shows it to ``principal`` (None: a caller that passed the
    policy for every record, e.g. the inspector who sealed them)."""
    data = {
        "id": row.id, "reference": row.reference,
        "date": row.decision_date.isoformat(),
        "authority": row.authority.identifier if row.authority else None,
        "authority_name": row.authority.name if row.authority else None,
        "scope": row.scope, "readers": list(row.readers or ()),
        "sealed_at": row.sealed_at.isoformat(), "sealed_by": row.sealed_by,
        "sealer_person": row.sealer_person, "status": row.status,
        "records": [_record_entry(r, principal) for r in row.records],
        "manifest_key": row.manifest_key, "manifest_sha256": row.manifest_sha256,
        "legal_hold": row.legal_hold,
        "lifted_at": row.lifted_at.isoformat() if row.lifted_at else None,
        "lifted_by": row.lifted_by, "lift_reference": row.lift_reference,
    }
    if report:
        data["lift_report"] = row.lift_report
    return data
