"""The next AIP version of a record: lifecycle events carried into the package (R-HIST-1).

Lifecycle changes (revocation, seals, links, renditions) commit their catalog rows and
events first; :func:`repackage` then writes AIP version N+1, so that the package itself
tells the record's history when the catalog is not at hand:

* the payload files of version N copied byte for byte with ranged reads of the stored
  object, each checked against its catalog digests as it passes (an encrypted original
  stays ciphertext, with the same encryption metadata: R-CLASS-1);
* the descriptive metadata (``record.json`` of version N, re-read and checked);
* ``data/metadata/lifecycle.json``: status, validity decisions, links to and from other
  records, seals (reference, dates, status), renditions (ids, times);
* PREMIS with every catalog event of the record, METS as usual, and the RFC 3161
  archive timestamp over the manifest when ``signatures.tsa_url`` is set.

Storage first: the bag is put under ``aip/<id>/v000N.tar`` (put-if-absent) and verified,
then one transaction registers the version, its files, a ``repackaging`` event and the
audit entry. Older versions are never touched. A sealed record (its seal manifest
freezes the bytes) and a destroyed one are refused; of two concurrent repackagings the
second finds the key taken and is refused with nothing overwritten.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from archive import audit
from archive.bag import (
    RECORD_JSON_PATH,
    AipSpec,
    PayloadFile,
    PremisAgent,
    PremisEvent,
    build_aip,
)
from archive.clock import Clock, SystemClock
from archive.db import Catalog
from archive.digests import HashingWriter
from archive.errors import (
    AccessDenied,
    ArchiveError,
    InputError,
    NotFound,
    ObjectExists,
    Refused,
)
from archive.fixity import VerifyingReader
from archive.models import (
    Event,
    PackageVersion,
    Record,
    RecordLink,
    Rendition,
    Revocation,
    StoredFile,
)
from archive.principal import Principal
from archive.settings import Settings
from archive.storage import ObjectStore
from ingest.services import SOFTWARE, aip_key, manifest_sealer, store_aip, timestamp_event
from ingest.timestamps import HttpTimestamper

LIFECYCLE_PATH = "data/metadata/lifecycle.json"
ACTION = "record.repackage"
_NOT_PAYLOAD = ("metadata", "tag")


@dataclass
class RepackageResult:
    record_id: str
    version: int
    previous_version: int
    storage_key: str
    size: int
    digests: dict
    events: int  # catalog events carried into the PREMIS of the new version
    reason: str
    payload_digests: dict = field(default_factory=dict)  # bag path -> digests

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class _Member:
    path: str
    role: str
    offset: int
    size: int
    digests: dict
    original_name: str | None
    format_puid: str | None
    mime_type: str | None
    encryption: dict | None


@dataclass
class _Current:
    """What version N holds and what the catalog knows, read in one snapshot."""

    version: int
    storage_key: str
    record_json: _Member
    payload: list[_Member]
    format_name: str | None
    events: list[PremisEvent]
    agents: list[PremisAgent]
    lifecycle: dict
    retention_until: date | None = None  # Object Lock on the new version (R-DESTROY-1)


def repackage(settings: Settings, catalog: Catalog, store: ObjectStore, principal: Principal,
              record_id: str, *, reason: str, clock: Clock | None = None,
              client: str = "") -> RepackageResult:
    """Write and register AIP version N+1 of ``record_id`` (a preservation action of the
    system: ``principal`` must be a system principal)."""
    clock = clock or SystemClock()
    reason = " ".join(str(reason or "").split())
    if not reason or len(reason) > 1000:
        raise InputError("reason: required, at most 1000 characters")
    algorithms = tuple(a.lower() for a in settings.fixity.algorithms)
    event_id = str(uuid.uuid4())
    now = clock.now()
    with catalog.unit_of_work(snapshot=True) as session:
        current = _read_current(session, principal, record_id, event_id, now, reason, client)

    staging = settings.staging_dir / f"repackage-{uuid.uuid4().hex}"
    staging.mkdir(parents=True, exist_ok=False)
    stamper = HttpTimestamper(settings.signatures.tsa_url,
                              timeout=settings.signatures.fetch_timeout) \
        if settings.signatures.tsa_url else None
    try:
        metadata = json.loads(_copy(store, current.storage_key, current.record_json,
                                    staging / "record.json", algorithms)[1]
                              .read_bytes())
        payloads = [_payload(store, current, m, staging, algorithms)
                    for m in current.payload]
        version = current.version + 1
        spec = AipSpec(
            record_id=record_id, version=version, metadata=metadata, files=payloads,
            events=current.events, agents=current.agents,
            source_organization=settings.archive.source_organization,
            algorithms=algorithms, created_at=now, software=SOFTWARE,
            metadata_files={LIFECYCLE_PATH: _json_bytes(current.lifecycle)})
        seal, sealed = manifest_sealer(settings, stamper)
        built = build_aip(spec, staging, seal_manifests=seal)
        key = aip_key(record_id, version)
        try:
            store_aip(store, key, built, algorithms, chunk_size=settings.fixity.chunk_size,
                      retain_until=current.retention_until)
        except ObjectExists as exc:
            message = (f"version {version} of record {record_id} was written by another "
                       f"repackaging meanwhile ({key} exists); nothing was overwritten: "
                       "run it again to package what has happened since")
            with catalog.unit_of_work() as session:
                audit.append(session, principal, ACTION, f"record:{record_id}",
                             outcome="refused", client=client, clock=clock,
                             detail={"reason": message, "storage_key": key})
            raise Refused(message) from exc
        try:
            return _register(catalog, principal, record_id, current, built, key, event_id,
                             now, reason, sealed, payloads, clock, client)
        except BaseException:
            with contextlib.suppress(ArchiveError):  # never registered: an orphan
                store.delete(key)
            raise
    finally:
        if stamper is not None:
            stamper.close()
        shutil.rmtree(staging, ignore_errors=True)


# ---- reading version N ------------------------------------------------------------------


def _read_current(session: Session, principal: Principal, record_id: str, event_id: str,
                  now, reason: str, client: str) -> _Current:
    target = f"record:{record_id}"
    record = session.scalar(select(Record).where(Record.id == record_id).options(
        selectinload(Record.versions).selectinload(PackageVersion.files),
        selectinload(Record.issuing_org), selectinload(Record.seals)))
    if principal.kind != "system":
        raise AccessDenied(str(principal), ACTION, target, "repackaging is a preservation "
                           "action of the system (archive records repackage)", client=client)
    if record is None or not record.versions:
        exc = NotFound(f"no record with id {record_id!r}") if record is None else \
            Refused(f"record {record_id} has no stored package")
        exc.audit_after_rollback = {"principal": principal, "action": ACTION,
                                    "target": target, "client": client,
                                    "outcome": "not_found" if record is None else "refused"}
        raise exc
    refusal = _refusal(record)
    if refusal:
        exc = Refused(refusal)
        exc.audit_after_rollback = {"principal": principal, "action": ACTION,
                                    "target": target, "outcome": "refused",
                                    "client": client, "detail": {"reason": refusal}}
        raise exc
    latest = record.versions[-1]
    members = [_Member(f.path, f.role, f.offset, f.size, dict(f.digests), f.original_name,
                       f.format_puid, f.mime_type, f.encryption) for f in latest.files]
    record_json = next((m for m in members if m.path == RECORD_JSON_PATH), None)
    if record_json is None:
        raise Refused(f"version {latest.version} of record {record_id} has no "
                      f"{RECORD_JSON_PATH} in the catalog")
    events, agents = _premis_history(session, record, event_id, now, latest.version, reason)
    return _Current(version=latest.version, storage_key=latest.storage_key,
                    record_json=record_json,
                    payload=[m for m in members if m.role not in _NOT_PAYLOAD],
                    format_name=record.format_name, events=events, agents=agents,
                    lifecycle=lifecycle_of(session, record, now),
                    retention_until=record.retention_until)


def _refusal(record: Record) -> str | None:
    if record.status == "destroyed":
        return f"record {record.id} was destroyed; its package is not rewritten"
    seal = record.active_seal
    if seal is not None:  # R-SEAL-2: the seal manifest freezes the bytes it lists
        return (f"record {record.id} is sealed under decision {seal.reference}: no new "
                "package version while sealed")
    return None


def _agent_kind(agent: str) -> str:
    return "person" if agent.startswith("user:") else "system"


def _premis_history(session: Session, record: Record, event_id: str, now, previous: int,
                    reason: str) -> tuple[list[PremisEvent], list[PremisAgent]]:
    """Every catalog event of the record as PREMIS events, plus this repackaging."""
    rows = list(session.scalars(select(Event).where(Event.record_id == record.id)
                                .order_by(Event.occurred_at, Event.id)))
    agents = {SOFTWARE: PremisAgent(SOFTWARE, SOFTWARE, "software")}
    org = record.issuing_org.identifier
    agents[org] = PremisAgent(org, record.issuing_org.name or org, "organisation")
    events = []
    for row in rows:
        agents.setdefault(row.agent, PremisAgent(row.agent, row.agent, _agent_kind(row.agent)))
        events.append(PremisEvent(_uuid(row.id), row.event_type, row.occurred_at, row.agent,
                                  row.outcome, row.detail or ""))
    events.append(PremisEvent(event_id, "repackaging", now, SOFTWARE, "success",
                              f"AIP version {previous + 1} written from version {previous}: "
                              f"payload copied byte for byte, {len(rows)} catalog events "
                              f"carried; reason: {reason}"))
    return events, list(agents.values())


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:archive:event:{value}"))


def lifecycle_of(session: Session, record: Record, now) -> dict:
    """The record's lifecycle state as written into ``data/metadata/lifecycle.json``."""
    decisions = session.scalars(select(Revocation).where(Revocation.record_id == record.id)
                                .order_by(Revocation.decided_at, Revocation.id))
    links = session.scalars(select(RecordLink).where(or_(RecordLink.record_id == record.id,
                                                         RecordLink.target_id == record.id))
                            .order_by(RecordLink.created_at, RecordLink.id))
    renditions = session.execute(select(Rendition.id, Rendition.created_at)
                                 .where(Rendition.record_id == record.id)
                                 .order_by(Rendition.created_at))
    link_list = list(links)
    return {
        "record_id": record.id,
        "status": record.status,
        "as_of": now.isoformat(),
        "revocations": [{"id": d.id, "action": d.action, "reason": d.reason,
                         "form": d.form, "legal_basis": d.legal_basis,
                         "decision_ref": d.decision_ref,
                         "decided_at": d.decided_at.isoformat(), "decided_by": d.decided_by,
                         "cause_id": d.cause_id, "corrects_id": d.corrects_id}
                        for d in decisions],
        "links": {
            "to": [{"record_id": link.target_id, "kind": link.kind, "reason": link.reason,
                    "created_at": link.created_at.isoformat()}
                   for link in link_list if link.record_id == record.id],
            "from": [{"record_id": link.record_id, "kind": link.kind, "reason": link.reason,
                      "created_at": link.created_at.isoformat()}
                     for link in link_list if link.target_id == record.id],
        },
        "seals": [{"reference": s.reference, "decision_date": s.decision_date.isoformat(),
                   "sealed_at": s.sealed_at.isoformat(), "status": s.status,
                   "lifted_at": s.lifted_at.isoformat() if s.lifted_at else None}
                  for s in record.seals],
        "renditions": [{"id": rid, "created_at": at.isoformat()} for rid, at in renditions],
        "origin": record.origin,
        "paper_original_id": record.paper_original_id,
    }


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


# ---- copying ----------------------------------------------------------------------------


def _copy(store: ObjectStore, key: str, member: _Member, target: Path,
          algorithms: tuple[str, ...]) -> tuple[dict[str, str], Path]:
    """Copy one stored file with a ranged read, checking every catalog digest of it as
    the bytes pass (the last read raises on a mismatch); the digests of ``algorithms``."""
    with VerifyingReader(store.open(key, member.offset, member.size),
                         name=f"{key}:{member.path}", size=member.size,
                         digests=member.digests) as reader, open(target, "xb") as sink:
        writer = HashingWriter(sink, algorithms)
        while chunk := reader.read(1024 * 1024):
            writer.write(chunk)
    digests = writer.hexdigests()
    return {**member.digests, **digests}, target


def _payload(store: ObjectStore, current: _Current, member: _Member, staging: Path,
             algorithms: tuple[str, ...]) -> PayloadFile:
    folder = staging / "payload" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    digests, source = _copy(store, current.storage_key, member,
                            folder / member.path.rsplit("/", 1)[-1], algorithms)
    name = member.path.rsplit("/", 1)[-1]
    if member.encryption:  # R-CLASS-1: ciphertext, described as such (as at ingest)
        fmt = (None, "AES-256-GCM ciphertext", "application/octet-stream")
    elif member.role == "original":
        fmt = (member.format_puid, current.format_name, member.mime_type)
        name = member.original_name or name
    elif name.endswith(".json"):
        fmt = (None, "JSON", "application/json")
    else:
        fmt = (member.format_puid, None, member.mime_type)
    return PayloadFile(source=source, bag_path=member.path, role=member.role,
                       original_name=name, size=member.size,
                       digests={a: digests[a] for a in algorithms}, format_puid=fmt[0],
                       format_name=fmt[1], mime_type=fmt[2])


# ---- registering version N+1 ----------------------------------------------------------


def _register(catalog: Catalog, principal: Principal, record_id: str, current: _Current,
              built, key: str, event_id: str, now, reason: str, sealed: list,
              payloads: list[PayloadFile], clock: Clock, client: str) -> RepackageResult:
    version = current.version + 1
    old = {m.path: m for m in current.payload}
    verified_at = clock.now()
    with catalog.unit_of_work() as session:
        record = session.scalar(select(Record).where(Record.id == record_id)
                                .options(selectinload(Record.seals))
                                .with_for_update(of=Record))
        latest = session.scalar(select(func.max(PackageVersion.version))
                                .where(PackageVersion.record_id == record_id))
        refusal = _refusal(record) or (
            None if latest == current.version else
            f"version {latest} of record {record_id} was registered meanwhile")
        if refusal:
            exc = Refused(f"{refusal}; version {version} not registered")
            exc.audit_after_rollback = {"principal": principal, "action": ACTION,
                                        "target": f"record:{record_id}",
                                        "outcome": "refused", "client": client,
                                        "detail": {"reason": refusal}}
            raise exc
        package = PackageVersion(record_id=record_id, version=version, storage_key=key,
                                 size=built.size, digests=built.digests,
                                 created_at=verified_at, last_fixity_at=verified_at,
                                 last_fixity_outcome="ok")
        session.add(package)
        session.flush()
        for member in built.members:
            was = old.get(member.path)
            session.add(StoredFile(
                package_id=package.id, path=member.path, role=member.role,
                offset=member.offset, size=member.size, digests=member.digests,
                format_puid=was.format_puid if was else None,
                mime_type=was.mime_type if was else None,
                original_name=was.original_name if was else None,
                encryption=was.encryption if was else None))
        session.add(Event(id=event_id, record_id=record_id, event_type="repackaging",
                          occurred_at=now, agent=str(principal), outcome="success",
                          detail=f"AIP version {version} written from version "
                                 f"{current.version} with {len(current.events) - 1} catalog "
                                 f"events and data/metadata/lifecycle.json; reason: {reason}",
                          data={"version": version, "previous_version": current.version,
                                "storage_key": key, "reason": reason,
                                "events_carried": len(current.events) - 1}))
        for token in sealed:
            session.add(timestamp_event(record_id, token, principal))
        session.add(Event(id=str(uuid.uuid4()), record_id=record_id, event_type="fixity check",
                          occurred_at=verified_at, agent=str(principal), outcome="success",
                          detail=f"stored AIP {key} verified after writing: size and "
                                 "digests match",
                          data={"storage_key": key, "digests": built.digests}))
        audit.append(session, principal, ACTION, f"record:{record_id}", client=client,
                     clock=clock, detail={"version": version, "storage_key": key,
                                          "previous_version": current.version,
                                          "reason": reason, "size": built.size})
    return RepackageResult(record_id=record_id, version=version,
                           previous_version=current.version, storage_key=key,
                           size=built.size, digests=built.digests,
                           events=len(current.events) - 1, reason=reason,
                           payload_digests={p.bag_path: p.digests for p in payloads})


# ---- after a validity decision ----------------------------------------------------------


def after_decision(settings: Settings, catalog: Catalog, store: ObjectStore, outcome, *,
                   principal: Principal, clock: Clock | None = None,
                   client: str = "") -> dict:
    """What follows a committed revocation or reinstatement (R-REVOKE-1, R-HIST-1): its
    notifications delivered at once through the outbox, then each record's next AIP
    version written by ``principal`` (a system principal). Both best effort: a failure
    becomes a warning, the decision stands, the outbox retries and the next repackaging
    carries the events."""
    from preservation.notify import deliver_pending

    out: dict = {"delivery": None, "versions": [], "warnings": []}
    if outcome.notification_ids:
        try:
            out["delivery"] = deliver_pending(settings, catalog, ids=outcome.notification_ids,
                                              clock=clock).to_dict()
        except ArchiveError as exc:
            out["warnings"].append(f"notifications recorded, not delivered now: {exc.message}")
    for row in outcome.revocations:
        try:
            out["versions"].append(repackage(
                settings, catalog, store, principal, row.record_id,
                reason=f"{row.action} decision {row.id}", clock=clock,
                client=client).to_dict())
        except ArchiveError as exc:
            out["warnings"].append(f"record {row.record_id}: new AIP version not written "
                                   f"({exc.message}); the decision is recorded and the next "
                                   "`archive records repackage` carries it")
    return out
