"""Ingest of a submission: metadata checked, format identified, AIP built, stored,
verified, and only then registered in the catalog (R-PKG-1, R-META-1, R-FIX-1).

Write then register: the bag is written to the object store under a new immutable
key and verified before the catalog transaction commits. A crash in between leaves
an unregistered object that ``archive storage sweep`` removes; it never leaves a
catalog row pointing at missing bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

from asn1crypto import x509 as asn1_x509
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from archive import audit, policy
from archive.bag import AipSpec, PayloadFile, PremisAgent, PremisEvent, build_aip, safe_payload_name
from archive.clock import Clock, SystemClock
from archive.db import Catalog
from archive.digests import HashingWriter, hash_bytes, hash_stream
from archive.errors import (
    ArchiveError,
    EncryptionKeyError,
    InputError,
    IntegrityError,
    ObjectExists,
    SubmissionRefused,
)
from archive.fixity import verify_stored_object
from archive.metadata import DescriptiveMetadata, retention_until, validate_metadata
from archive.models import Agent, Event, PackageVersion, Record, StoredFile
from archive.principal import Principal
from archive.settings import Settings
from archive.storage import ObjectStore
from archive.storage.object_lock import apply_retention
from archive.submissions import record_refusal
from ingest.classified import ENCRYPTED_NAME, encrypt_original, keyed_fingerprint, vault_for
from ingest.formats import FormatId, identify
from ingest.signature_gate import REPORT_PATH, SignatureGate
from ingest.signatures import TrustConfig
from ingest.timestamps import HttpTimestamper, verify_token

SOFTWARE = "kho-luu-tru-so archive 0.1"
ARCHIVE_TIMESTAMP_PATH = "tags/timestamps/manifest-sha256.txt.tsr"


@dataclass
class IngestResult:
    source: str
    status: str  # archived | duplicate
    record_id: str
    version: int = 1
    storage_key: str = ""
    size: int = 0
    digests: dict = field(default_factory=dict)
    format_puid: str | None = None
    message: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class IngestHooks:
    """What a lifecycle service adds to one ingest (#5: a correction's link, a digitised
    copy's paper original), inside ingest's own units of work so that it happens with
    the record or not at all.

    ``check(session, meta)`` runs after the metadata was validated and before anything is
    staged or stored: it may refuse (raise). ``register(session, record)`` runs in the
    transaction that registers the new record (its row is flushed), before the ingest's
    audit entry: it adds its rows, events and audit entries there. A duplicate (the same
    bytes already archived) calls neither ``register`` nor stores anything.
    """

    check: Callable[[Session, DescriptiveMetadata], None] | None = None
    register: Callable[[Session, Record], None] | None = None
    # The new record's id when the caller needs it before ingest (a digitised copy's QR
    # code points at its record, R-CONV-1); a fresh UUID otherwise.
    record_id: str | None = None
    # Signature roles required instead of the document type's (a digitised copy is
    # signed by the issuing organisation only, R-CONV-1; see signature_policy.py).
    required_signatures: tuple[str, ...] | None = None


def aip_key(record_id: str, version: int) -> str:
    """Storage key of an AIP version: immutable, never reused."""
    return f"aip/{record_id}/v{version:04d}.tar"


def manifest_sealer(settings: Settings, stamper: HttpTimestamper | None
                    ) -> tuple[Callable[[dict[str, bytes]], dict[str, bytes]] | None, list]:
    """The manifest sealer for ``build_aip`` (an RFC 3161 token from ``stamper`` over
    manifest-sha256.txt, R-TS-1) and the list its verified token info lands in; no
    sealer when no TSA is configured (``signatures.tsa_url``)."""
    if not settings.signatures.tsa_url or stamper is None:
        return None, []
    roots = [asn1_x509.Certificate.load(der) for der in
             TrustConfig.from_settings(settings.signatures).trust_roots]
    sealed: list = []

    def seal(manifests: dict[str, bytes]) -> dict[str, bytes]:
        data = manifests["manifest-sha256.txt"]
        token = stamper.timestamp(data)
        sealed.append(verify_token(token, data, roots))  # R-TS-1: verified at once
        return {ARCHIVE_TIMESTAMP_PATH: token}

    return seal, sealed


def timestamp_event(record_id: str, token, principal: Principal) -> Event:
    """The catalog event of an archive timestamp sealed into an AIP version."""
    return Event(id=str(uuid.uuid4()), record_id=record_id, event_type="timestamping",
                 occurred_at=token.time, agent=str(principal), outcome="success",
                 detail=f"RFC 3161 archive timestamp over manifest-sha256.txt by "
                        f"{token.tsa} at {token.time.isoformat()} "
                        f"({'trusted' if token.trusted else 'TSA not trusted'})",
                 data={"token": ARCHIVE_TIMESTAMP_PATH, **token.to_dict()})


def store_aip(store: ObjectStore, key: str, built, algorithms: tuple[str, ...], *,
              chunk_size: int, after_put: Callable[[], None] | None = None,
              retain_until: date | None = None) -> None:
    """Put a built AIP under ``key`` (put-if-absent: ``ObjectExists`` when the key is
    taken, nothing overwritten) and verify the stored object before it is registered
    (R-FIX-1); on S3 with Object Lock it is then kept under retention until the end of
    the record's ``retain_until`` day (R-DESTROY-1)."""
    with open(built.path, "rb") as fh:
        put = store.put(key, fh, size=built.size, algorithms=algorithms,
                        sha256=built.digests["sha256"])
    if put.digests.get("sha256") != built.digests["sha256"] or put.size != built.size:
        raise IntegrityError(f"store reported different bytes for {key} than were sent")
    if after_put is not None:
        after_put()
    verify_stored_object(store, key, built.size, built.digests, chunk_size=chunk_size)
    apply_retention(store, key, retain_until)


def load_sidecar(path: Path, metadata_file: Path | None = None) -> tuple[dict, str]:
    """The metadata for ``path``: ``metadata_file`` if given, else ``<path>.json``."""
    meta_path = metadata_file or path.with_name(path.name + ".json")
    if not meta_path.is_file():
        raise InputError(f"no metadata for {path}: expected --metadata FILE or a sidecar "
                         f"{meta_path.name} next to it")
    try:
        return json.loads(meta_path.read_text(encoding="utf-8")), str(meta_path)
    except UnicodeDecodeError as exc:
        raise InputError(f"metadata file {meta_path} is not UTF-8 text") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"metadata file {meta_path} is not valid JSON: {exc}") from exc
    except OSError as exc:
        raise InputError(f"cannot read metadata file {meta_path}: {exc.strerror}") from exc


class IngestService:
    """Ingests files for one acting principal. Reusable across many files."""

    def __init__(self, settings: Settings, catalog: Catalog, store: ObjectStore, *,
                 principal: Principal, clock: Clock | None = None):
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.principal = principal
        self.clock = clock or SystemClock()
        self.algorithms = tuple(a.lower() for a in settings.fixity.algorithms)
        # Widens the windows between steps so crash tests can kill at every phase.
        self._slowdown = float(os.environ.get("ARCHIVE_INGEST_SLOWDOWN", "0") or 0)
        self.gate = SignatureGate(settings, catalog)
        self._stamper: HttpTimestamper | None = None

    def close(self) -> None:
        self.gate.close()
        if self._stamper is not None:
            self._stamper.close()
            self._stamper = None

    # ---- public -------------------------------------------------------------------

    def ingest(self, path: Path, raw_metadata: dict, metadata_source: str, *,
               hooks: IngestHooks | None = None) -> IngestResult:
        path = Path(path)
        hooks = hooks or IngestHooks()
        self._check_file(path)
        with self.catalog.unit_of_work(snapshot=True) as session:
            # Inside the unit of work, so that a denial is audited (R-AUDIT-1); before
            # validation, so that who may not ingest learns nothing from it.
            policy.require(self.principal, policy.INGEST)
            meta = validate_metadata(
                raw_metadata, self.settings, source=metadata_source,
                today=self.clock.now().date(),
                org_registered=lambda ident: _org_exists(session, ident))
            # Within the clerk's grants and clearance (a denial is audited).
            policy.require(self.principal, policy.INGEST, policy.RecordFacts(
                id="(new)", classification=meta.classification, fonds=meta.fonds,
                issuing_org=meta.issuing_org))
            if hooks.check is not None:
                hooks.check(session, meta)

        staging = self.settings.staging_dir / f"ingest-{uuid.uuid4().hex}"
        staging.mkdir(parents=True, exist_ok=False)
        try:
            return self._ingest_staged(path, meta, staging, hooks)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    # ---- steps --------------------------------------------------------------------

    def _check_file(self, path: Path) -> None:
        if not path.exists():
            raise InputError(f"file not found: {path}")
        if not path.is_file():
            raise InputError(f"not a regular file: {path}")
        try:
            size = path.stat().st_size
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise InputError(f"cannot read {path}: {exc.strerror}") from exc
        if size == 0:
            raise InputError(f"file is empty: {path}")
        limit = self.settings.ingest.max_file_size
        if limit and size > limit:
            raise InputError(f"{path} is {size} bytes, above ingest.max_file_size ({limit})")

    def _ingest_staged(self, path: Path, meta: DescriptiveMetadata,
                       staging: Path, hooks: IngestHooks) -> IngestResult:
        now = self.clock.now()
        bag_name = safe_payload_name(path.name)
        staged = staging / bag_name
        size, digests = self._stage_copy(path, staged)
        self._pause("staged")

        classified = meta.classification != "normal"
        vault = vault_for(self.settings) if classified else None
        fingerprints = self._fingerprints(digests["sha256"], create=classified)
        existing = self._find_duplicate(fingerprints, str(path))
        if existing is not None:
            return existing

        fmt = identify(staged)
        if fmt.mime_type not in self.settings.ingest.accepted_mime_types:
            self._refuse(path, f"format {fmt.name or 'unknown'} ({fmt.puid or 'no PRONOM id'})"
                               " is not accepted; accepted: "
                               + ", ".join(self.settings.ingest.accepted_mime_types),
                         sender_org=meta.issuing_org, digests=digests, size=size,
                         report={"format": {"puid": fmt.puid, "name": fmt.name,
                                            "mime_type": fmt.mime_type}})

        # R-SIG-2: every signature validated on receipt; the type's policy decides.
        gate = self.gate.check(staged, meta, required=hooks.required_signatures)
        if not gate.accepted:
            self._refuse(path, gate.reason, sender_org=meta.issuing_org, digests=digests,
                         size=size, report=gate.to_dict())
        self._pause("validated")

        record_id = hooks.record_id or str(uuid.uuid4())
        version = 1
        events = self._premis_events(now, path, fmt, digests,
                                     "data/content/" + (ENCRYPTED_NAME if classified
                                                        else bag_name),
                                     reveal_digests=not classified)
        if classified:
            # R-CLASS-1: only ciphertext leaves this machine's staging folder.
            content_path = f"data/content/{ENCRYPTED_NAME}"
            payload_source, encrypted = encrypt_original(vault, staged, record_id,
                                                         content_path, self.algorithms)
            payload = PayloadFile(source=payload_source, bag_path=content_path,
                                  role="original", original_name=ENCRYPTED_NAME,
                                  size=encrypted.size, digests=encrypted.digests,
                                  format_puid=None, format_name="AES-256-GCM ciphertext",
                                  mime_type="application/octet-stream")
            events.append(PremisEvent(str(uuid.uuid4()), "encryption", now,
                                      str(self.principal), "success",
                                      f"classified ({meta.classification}): AES-256-GCM "
                                      f"with data key {encrypted.metadata['dek_id']}",
                                      [content_path]))
        else:
            content_path = f"data/content/{bag_name}"
            encrypted = None
            payload = PayloadFile(source=staged, bag_path=content_path, role="original",
                                  original_name=path.name, size=size, digests=digests,
                                  format_puid=fmt.puid, format_name=fmt.name,
                                  mime_type=fmt.mime_type)
        events.append(PremisEvent(
            str(uuid.uuid4()), "validation", now, str(self.principal),
            "success" if not gate.reason else "warning",
            gate.summary + ("" if not gate.reason else
                            f" (archived although: {gate.reason}; signatures.enforce is off)"),
            [content_path]))
        payloads = [payload, *self._gate_files(gate, staging)]
        try:
            return self._package_store_register(
                path, meta, fmt, record_id, version, now, content_path, payloads, events,
                fingerprints[-1], encrypted, staging, hooks)
        except BaseException:
            if encrypted is not None:  # nothing registered: its data key must not linger
                vault.destroy_data_key(encrypted.metadata["dek_id"])
            raise

    def _gate_files(self, gate, staging: Path) -> list[PayloadFile]:
        """The signature report and validation material, as payload of the AIP (R-TS-1)."""
        files = []
        for bag_path, data in gate.files.items():
            source = staging / bag_path.rsplit("/", 1)[-1]
            source.write_bytes(data)
            files.append(PayloadFile(source=source, bag_path=bag_path,
                                     role="sig-report" if bag_path == REPORT_PATH
                                     else "sig-evidence",
                                     original_name=source.name, size=len(data),
                                     digests=hash_bytes(data, self.algorithms),
                                     format_name="JSON", mime_type="application/json"))
        return files

    def _seal(self) -> tuple[object, list]:
        """The manifest sealer and the list its verified token info lands in."""
        url = self.settings.signatures.tsa_url
        if url and self._stamper is None:  # one kept-alive TSA session per ingest process
            self._stamper = HttpTimestamper(url, timeout=self.settings.signatures.fetch_timeout)
        return manifest_sealer(self.settings, self._stamper)

    def _package_store_register(self, path, meta, fmt, record_id, version, now,
                                content_path, payloads, events, fingerprint, encrypted,
                                staging, hooks: IngestHooks) -> IngestResult:
        payload = payloads[0]
        spec = AipSpec(
            record_id=record_id, version=version, metadata=meta.to_json(),
            files=payloads,
            events=events,
            agents=[PremisAgent(SOFTWARE, SOFTWARE, "software"),
                    PremisAgent(str(self.principal), self.principal.display or
                                str(self.principal), "system"),
                    PremisAgent(meta.issuing_org, meta.issuing_org, "organisation")],
            source_organization=self.settings.archive.source_organization,
            algorithms=self.algorithms, created_at=now, software=SOFTWARE)
        seal, sealed = self._seal()
        built = build_aip(spec, staging, seal_manifests=seal)
        self._pause("built")

        key = aip_key(record_id, version)
        keep_until = retention_until(meta, self.settings)
        try:
            store_aip(self.store, key, built, self.algorithms,
                      chunk_size=self.settings.fixity.chunk_size,
                      after_put=lambda: self._pause("stored"), retain_until=keep_until)
        except ObjectExists as exc:  # a fresh UUID key never exists: refuse loudly
            raise IntegrityError(f"storage key {key} already exists; nothing was "
                                 "overwritten") from exc
        self._pause("verified")

        verified_at = self.clock.now()
        try:
            with self.catalog.unit_of_work() as session:
                org = session.scalar(select(Agent).where(Agent.identifier == meta.issuing_org))
                record = Record(
                    id=record_id, number_symbol=meta.number_symbol, doc_type=meta.doc_type,
                    doc_date=meta.date, issuing_org_id=org.id, summary=meta.summary,
                    signer=meta.signer, classification=meta.classification,
                    retention_rule=meta.retention_rule,
                    retention_until=keep_until, fonds=meta.fonds,
                    file_ref=meta.file_ref, page_count=meta.page_count,
                    language=meta.language, extra=meta.extra_fields(), status="active",
                    fingerprint=fingerprint, format_puid=fmt.puid,
                    format_name=fmt.name, pdfa=fmt.pdfa, created_at=now,
                    created_by=str(self.principal))
                session.add(record)
                package = PackageVersion(
                    record_id=record_id, version=version, storage_key=key, size=built.size,
                    digests=built.digests, created_at=verified_at,
                    last_fixity_at=verified_at, last_fixity_outcome="ok")
                session.add(package)
                session.flush()
                for member in built.members:
                    is_original = member.path == content_path
                    session.add(StoredFile(
                        package_id=package.id, path=member.path, role=member.role,
                        offset=member.offset, size=member.size, digests=member.digests,
                        format_puid=fmt.puid if is_original else None,
                        mime_type=fmt.mime_type if is_original else None,
                        original_name=path.name if is_original else None,
                        encryption=encrypted.metadata if is_original and encrypted
                        else None))
                for ev in events:
                    session.add(Event(id=ev.id, record_id=record_id, event_type=ev.event_type,
                                      occurred_at=ev.occurred_at, agent=ev.agent,
                                      outcome=ev.outcome, detail=ev.detail,
                                      data={"in_aip_version": version}))
                for token in sealed:
                    session.add(timestamp_event(record_id, token, self.principal))
                session.add(Event(
                    id=str(uuid.uuid4()), record_id=record_id, event_type="fixity check",
                    occurred_at=verified_at, agent=str(self.principal), outcome="success",
                    detail=f"stored AIP {key} verified after writing: size and digests match",
                    data={"storage_key": key, "digests": built.digests}))
                if hooks.register is not None:
                    session.flush()
                    hooks.register(session, record)
                detail = {"storage_key": key, "fingerprint": fingerprint,
                          "classification": meta.classification, "size": payload.size}
                if meta.classification == "normal":
                    # R-CLASS-1: the log is read by auditors of any clearance, so a
                    # classified record's number and file name stay out of it.
                    detail.update(source=str(path), number_symbol=meta.number_symbol)
                audit.append(session, self.principal, "record.ingest", f"record:{record_id}",
                             detail=detail, clock=self.clock)
                self._pause("committing")
        except DBIntegrityError:
            # Another ingest of the same bytes committed first: ours is an orphan.
            self._discard(key)
            dup = self._find_duplicate([fingerprint], str(path))
            if dup is not None:
                return dup
            raise
        return IngestResult(source=str(path), status="archived", record_id=record_id,
                            version=version, storage_key=key, size=built.size,
                            digests=built.digests, format_puid=fmt.puid,
                            message=f"archived as record {record_id}")

    def _stage_copy(self, source: Path, target: Path) -> tuple[int, dict[str, str]]:
        """Copy the original into staging, hashing every byte as it passes."""
        chunk = self.settings.fixity.chunk_size
        with open(source, "rb") as src, open(target, "wb") as raw:
            writer = HashingWriter(raw, self.algorithms)
            while True:
                data = src.read(chunk)
                if not data:
                    break
                writer.write(data)
            raw.flush()
            os.fsync(raw.fileno())
        return writer.size, writer.hexdigests()

    def _fingerprints(self, sha256: str, *, create: bool) -> list[str]:
        """Catalog fingerprints the file may be known under: the plain SHA-256 and, once
        classified files exist, the keyed one (the last is the one to record)."""
        plain = [] if create else [sha256]
        if not create and not self.settings.keys_dir.exists():
            return plain
        try:
            keyed = keyed_fingerprint(vault_for(self.settings), sha256, create=create)
        except EncryptionKeyError:
            if create:
                raise
            keyed = None
        return plain + ([keyed] if keyed else [])

    def _find_duplicate(self, fingerprints: list[str], source: str) -> IngestResult | None:
        with self.catalog.unit_of_work() as session:
            record = session.scalar(select(Record).where(Record.fingerprint.in_(fingerprints)))
            if record is None:
                return None
            audit.append(session, self.principal, "record.ingest", f"record:{record.id}",
                         outcome="duplicate",
                         detail={"source": source, "fingerprint": record.fingerprint},
                         clock=self.clock)
            key = record.versions[-1].storage_key if record.versions else ""
            return IngestResult(source=source, status="duplicate", record_id=record.id,
                                version=len(record.versions), storage_key=key,
                                message=f"already archived as record {record.id} "
                                        "(same content); not stored again")

    def _refuse(self, path: Path, reason: str, *, sender_org: str | None,
                digests: dict[str, str] | None = None, size: int | None = None,
                report: dict | None = None) -> None:
        """Record the refusal with its return-to-sender report, then raise (R-SIG-2)."""
        if digests is None:
            with open(path, "rb") as fh:
                size, digests = hash_stream(fh, self.algorithms)
        report = {"reason": reason, **(report or {})}
        with self.catalog.unit_of_work() as session:
            submission = record_refusal(session, self.store, self.principal,
                                        source_name=path.name, sha256=digests["sha256"],
                                        size=size or 0, sender_org=sender_org, reason=reason,
                                        report=report, clock=self.clock)
        # R-SIG-2: the refusal is committed; deliver its notifications now. A failed
        # delivery stays pending for `archive notifications deliver` (never lost).
        from preservation.notify import deliver_pending

        with contextlib.suppress(ArchiveError):
            deliver_pending(self.settings, self.catalog, clock=self.clock,
                            related=f"submission:{submission.id}")
        raise SubmissionRefused(f"{path}: {reason} (report: submission {submission.id})",
                                submission.id, report)

    def _premis_events(self, now, path: Path, fmt: FormatId, digests: dict,
                       content_path: str, *, reveal_digests: bool) -> list[PremisEvent]:
        agent = str(self.principal)
        # R-CLASS-1: plaintext digests of classified content never leave in clear.
        algos = (", ".join(f"{a}={digests[a]}" for a in self.algorithms) if reveal_digests
                 else "kept encrypted with the file's data key")
        return [
            PremisEvent(str(uuid.uuid4()), "message digest calculation", now, agent,
                        "success", f"digests of {path.name if reveal_digests else 'the original'}"
                        f" computed on receipt: {algos}",
                        [content_path]),
            PremisEvent(str(uuid.uuid4()), "format identification", now, agent,
                        "success" if fmt.puid else "warning",
                        f"siegfried/PRONOM: {fmt.puid or 'no match'} {fmt.name or ''}"
                        f"{'; PDF/A-' + fmt.pdfa if fmt.pdfa else ''}"
                        f"{'; ' + fmt.warning if fmt.warning else ''}".strip(),
                        [content_path]),
            PremisEvent(str(uuid.uuid4()), "ingestion", now, agent, "success",
                        f"{path.name} received and packaged as an AIP", [content_path]),
        ]

    def _discard(self, key: str) -> None:
        # Best effort: `archive storage sweep` removes whatever remains.
        with contextlib.suppress(ArchiveError):
            self.store.delete(key)

    def _pause(self, step: str) -> None:
        if self._slowdown:
            time.sleep(self._slowdown)


def _org_exists(session: Session, identifier: str) -> bool:
    return session.scalar(select(Agent.id).where(Agent.identifier == identifier,
                                                 Agent.kind == "organisation")) is not None
