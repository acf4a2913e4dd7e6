"""Archive timestamp renewal (R-TS-1): the chain of proof never lapses.

Each AIP version sealed at ingest carries an RFC 3161 token over its
``manifest-sha256.txt`` (``tags/timestamps/manifest-sha256.txt.tsr``). Its proof holds
while the TSA's certificate is valid and the token's hash algorithm is strong. Before
either lapses, this job adds a new timestamp over the old one and the evidence it
covered, so that each token is proven to have existed while the one before was still
good (the PAdES-LTA / RFC 4998 idea, for objects outside a PDF).

- ``plan`` registers the chain roots (an ``archive_timestamps`` row, ``source = aip``,
  per AIP version holding a token: read with a ranged read checked against the catalog
  digests, parsed for its time, hash algorithm and the TSA certificate's expiry) and
  lists the due timestamps: the newest, not superseded timestamp of each record whose
  TSA certificate expires within ``timestamps.renew_before_days`` or whose hash
  algorithm is in ``timestamps.weak_algorithms``.
- ``run_batch`` renews each: a canonical JSON *renewal input* holds the previous
  token's bytes (base64) and SHA-256, what it covered and the AIP's key and digests; a
  token over it (``timestamps.hash_algorithm``) is asked from ``signatures.tsa_url``
  and verified at once against ``signatures.trust_roots``; storage first (put-if-absent
  ``timestamps/<record>/<n>.json`` and ``.tsr``), then one transaction: the new row
  (``source = renewal``, ``member`` = the input's key, ``object_key`` = the token's
  key), the previous row superseded, a ``timestamp renewal`` event, the
  ``timestamp.renew`` audit entry. A batch re-run after a crash reuses stored objects
  that verify, so nothing is renewed twice.
- :func:`verify_chain` checks every link offline (``archive signatures timestamps``).

The network call happens here (``ingest.sealing.SealTimestamps``), never in the core.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asn1crypto import cms, tsp
from sqlalchemy import exists, func, or_, select
from sqlalchemy.orm import aliased

from archive import audit, policy
from archive.errors import ConfigError, IntegrityError, NotFound, ObjectExists, StorageError
from archive.fixity import VerifyingReader
from archive.models import ArchiveTimestamp, Event, PackageVersion, Record, StoredFile
from archive.principal import Principal
from ingest.services import ARCHIVE_TIMESTAMP_PATH
from preservation.jobspec import JobContext, JobSpec

PREFIX = "timestamps/"
RENEWAL_FORMAT = "kho-luu-tru-so/timestamp-renewal/1"
MANIFEST = "manifest-sha256.txt"
_MAX_OBJECT_BYTES = 16 * 1024 * 1024  # a renewal input holds one token: small


# ---- reading tokens ---------------------------------------------------------------------


@dataclass(frozen=True)
class TokenFacts:
    gen_time: datetime
    hash_algorithm: str  # of the message imprint
    imprint: bytes
    tsa_certificate_expires: datetime | None  # not_after of the signer's certificate


def token_facts(token: bytes) -> TokenFacts:
    """What the renewal needs to know of a DER RFC 3161 token (no trust decision)."""
    try:
        signed = cms.ContentInfo.load(token)["content"]
        tst = signed["encap_content_info"]["content"].parsed
        if not isinstance(tst, tsp.TSTInfo):
            raise ValueError("no TSTInfo")
        imprint = tst["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        facts = {"gen_time": tst["gen_time"].native, "hash_algorithm": str(algorithm),
                 "imprint": imprint["hashed_message"].native}
        sid = signed["signer_infos"][0]["sid"]
        certs = [c.chosen for c in (signed["certificates"] or [])
                 if c.name == "certificate"]
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise IntegrityError(f"not an RFC 3161 timestamp token: {exc}") from exc
    expires = None
    for cert in certs:
        if sid.name == "issuer_and_serial_number":
            match = (cert.issuer == sid.chosen["issuer"]
                     and cert.serial_number == sid.chosen["serial_number"].native)
        else:
            match = cert.key_identifier == sid.chosen.native
        if match:
            expires = cert["tbs_certificate"]["validity"]["not_after"].native
            break
    return TokenFacts(tsa_certificate_expires=expires, **facts)


def _read_member(store, key: str, file: StoredFile | dict) -> bytes:
    """One small member of a stored AIP: ranged read, every catalog digest checked."""
    get = file.get if isinstance(file, dict) else lambda name: getattr(file, name)
    with VerifyingReader(store.open(key, get("offset"), get("size")),
                         name=f"{key}:{get('path')}", size=get("size"),
                         digests=dict(get("digests"))) as reader:
        data = b""
        while chunk := reader.read():
            data += chunk
    return data


def _read_object(store, key: str, sha256: str | None = None) -> bytes:
    with store.open(key) as stream:
        data = stream.read(_MAX_OBJECT_BYTES + 1)
    if len(data) > _MAX_OBJECT_BYTES:
        raise IntegrityError(f"{key} is too large for a timestamp object")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise IntegrityError(f"{key} does not match its recorded SHA-256")
    return data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


# ---- plan: register chain roots, find what is due -----------------------------------


def register_roots(ctx: JobContext) -> int:
    """An ``archive_timestamps`` row for every AIP version's sealed token not yet
    registered (records not destroyed); one transaction and audit entry per batch."""
    instance = ctx.instance
    batch = max(1, instance.settings.scheduler.batch_size)
    registered = 0
    seen: set[int] = set()
    while True:
        with instance.catalog.unit_of_work(snapshot=True) as session:
            known = exists(select(ArchiveTimestamp.id).where(
                ArchiveTimestamp.package_version_id == PackageVersion.id,
                ArchiveTimestamp.source == "aip"))
            query = (select(PackageVersion.id, PackageVersion.record_id,
                            PackageVersion.storage_key, StoredFile.offset, StoredFile.size,
                            StoredFile.digests)
                     .join(StoredFile, StoredFile.package_id == PackageVersion.id)
                     .join(Record, Record.id == PackageVersion.record_id)
                     .where(StoredFile.path == ARCHIVE_TIMESTAMP_PATH,
                            Record.status != "destroyed", ~known)
                     .order_by(PackageVersion.id))
            if seen:
                query = query.where(PackageVersion.id > max(seen))
            rows = session.execute(query.limit(batch)).all()
            manifests = {f.package_id: f for f in session.scalars(select(StoredFile).where(
                StoredFile.package_id.in_([r.id for r in rows]),
                StoredFile.path == MANIFEST))}
            for f in manifests.values():
                session.expunge(f)
        if not rows:
            return registered
        new = []
        for row in rows:
            seen.add(row.id)
            ctx.heartbeat()
            try:
                token = _read_member(instance.store, row.storage_key, {
                    "path": ARCHIVE_TIMESTAMP_PATH, "offset": row.offset, "size": row.size,
                    "digests": row.digests})
                manifest_file = manifests.get(row.id)
                if manifest_file is None:
                    raise IntegrityError(f"{row.storage_key} has no {MANIFEST} in the catalog")
                manifest = _read_member(instance.store, row.storage_key, manifest_file)
                facts = token_facts(token)
                if hashlib.new(facts.hash_algorithm, manifest).digest() != facts.imprint:
                    raise IntegrityError(f"the archive timestamp of {row.storage_key} does "
                                         f"not cover its {MANIFEST}")
            except (IntegrityError, StorageError, ValueError) as exc:
                ctx.alert(f"archive timestamp of {row.storage_key} not registered: "
                          f"{getattr(exc, 'message', exc)}")
                continue
            new.append(ArchiveTimestamp(
                id=str(uuid.uuid4()), record_id=row.record_id, package_version_id=row.id,
                source="aip", object_key=row.storage_key, member=ARCHIVE_TIMESTAMP_PATH,
                covers_sha256=_sha256(manifest), token_sha256=_sha256(token),
                hash_algorithm=facts.hash_algorithm, gen_time=facts.gen_time,
                tsa_certificate_expires=facts.tsa_certificate_expires,
                created_at=ctx.clock.now()))
        if new:
            with instance.catalog.unit_of_work() as session:
                session.add_all(new)
                audit.append(session, ctx.principal, "timestamp.register", "archive_timestamps",
                             detail={"registered": len(new),
                                     "records": sorted({t.record_id for t in new})},
                             clock=ctx.clock)
            registered += len(new)


def due_timestamps(instance, now: datetime) -> list[str]:
    """Ids of the newest, not superseded timestamp of each record (not destroyed) whose
    TSA certificate expires within ``renew_before_days`` or whose hash is weak."""
    section = instance.settings.timestamps
    horizon = now + timedelta(days=section.renew_before_days)
    weak = [a.lower() for a in section.weak_algorithms]
    newer = aliased(ArchiveTimestamp)
    current = ArchiveTimestamp
    query = (select(current.id).join(Record, Record.id == current.record_id)
             .where(current.superseded_at.is_(None), Record.status != "destroyed",
                    or_(current.tsa_certificate_expires < horizon,
                        func.lower(current.hash_algorithm).in_(weak)),
                    ~exists(select(newer.id).where(newer.record_id == current.record_id,
                                                   newer.superseded_at.is_(None),
                                                   newer.gen_time > current.gen_time)))
             .order_by(current.record_id))
    with instance.catalog.unit_of_work(snapshot=True) as session:
        return list(session.scalars(query))


def plan(ctx: JobContext, params: dict) -> list[dict]:
    register_roots(ctx)
    due = due_timestamps(ctx.instance, ctx.clock.now())
    if due and not ctx.instance.settings.signatures.tsa_url:
        ctx.alert(f"{len(due)} archive timestamp(s) are due for renewal but no timestamp "
                  "authority is configured (signatures.tsa_url)")
    size = max(1, ctx.instance.settings.scheduler.batch_size)
    return [{"timestamps": due[i:i + size]} for i in range(0, len(due), size)]


# ---- run_batch: renew ---------------------------------------------------------------


def renewal_input(previous: dict, previous_token: bytes, root: dict, package: dict,
                  hash_algorithm: str) -> bytes:
    """The canonical bytes a renewal token covers: the previous token itself and the
    evidence it vouched for (deterministic: the same inputs give the same bytes)."""
    doc = {
        "format": RENEWAL_FORMAT,
        "record_id": previous["record_id"],
        "previous": {"id": previous["id"], "source": previous["source"],
                     "object_key": previous["object_key"], "member": previous["member"],
                     "token_sha256": previous["token_sha256"],
                     "token": base64.b64encode(previous_token).decode("ascii"),
                     "hash_algorithm": previous["hash_algorithm"],
                     "gen_time": _iso(previous["gen_time"]),
                     "covers_sha256": previous["covers_sha256"]},
        "evidence": {"aip_key": package["storage_key"], "aip_version": package["version"],
                     "aip_digests": package["digests"], "manifest": MANIFEST,
                     "manifest_sha256": root["covers_sha256"],
                     "token_member": root["member"]},
        "hash_algorithm": hash_algorithm,
    }
    return audit.canonical_json(doc)


def _row(ts: ArchiveTimestamp) -> dict:
    return {c.name: getattr(ts, c.name) for c in ArchiveTimestamp.__table__.columns}


def _chain(session, ts: ArchiveTimestamp) -> list[dict]:
    """The chain from its root to ``ts`` (oldest first)."""
    out, current, guard = [], ts, 0
    while current is not None and guard < 10_000:
        out.append(_row(current))
        current = session.get(ArchiveTimestamp, current.previous_id) \
            if current.previous_id else None
        guard += 1
    return out[::-1]


def previous_token(instance, row: dict) -> bytes:
    """The token bytes of a chain link, checked against the catalog."""
    if row["source"] == "aip":
        with instance.catalog.unit_of_work(snapshot=True) as session:
            file = session.scalars(select(StoredFile).where(
                StoredFile.package_id == row["package_version_id"],
                StoredFile.path == row["member"])).first()
            if file is None:
                raise IntegrityError(f"{row['object_key']} has no {row['member']} in the "
                                     "catalog")
            session.expunge(file)
        token = _read_member(instance.store, row["object_key"], file)
    else:
        token = _read_object(instance.store, row["object_key"])
    if _sha256(token) != row["token_sha256"]:
        raise IntegrityError(f"the stored token {row['object_key']} does not match its "
                             "recorded SHA-256")
    return token


def _put(store, key: str, data: bytes) -> None:
    """Put-if-absent; an existing object with the same bytes is fine."""
    try:
        store.put(key, io.BytesIO(data), size=len(data), sha256=_sha256(data))
    except ObjectExists:
        if _read_object(store, key) != data:
            raise IntegrityError(f"{key} exists with other bytes: nothing overwritten") \
                from None


def _slot(instance, stamps, record_id: str, start: int, data: bytes
          ) -> tuple[int, bytes | None]:
    """The first free ``n`` for this renewal, and a stored token from an earlier,
    unfinished attempt at the same input that verifies (reused: no second TSA call)."""
    store = instance.store
    n = start
    while True:
        input_key, token_key = renewal_keys(record_id, n)
        if not store.exists(input_key):
            return n, None
        if _read_object(store, input_key) == data:
            if not store.exists(token_key):
                return n, None
            token = _read_object(store, token_key)
            try:
                if stamps.check(token, data)["trusted"]:
                    return n, token
            except IntegrityError:
                pass
        n += 1


def renewal_keys(record_id: str, n: int) -> tuple[str, str]:
    return f"{PREFIX}{record_id}/{n}.json", f"{PREFIX}{record_id}/{n}.tsr"


def renew(ctx: JobContext, stamps, timestamp_id: str) -> bool:
    """Renew one timestamp; False when it is no longer current (done meanwhile)."""
    instance, settings = ctx.instance, ctx.instance.settings
    with instance.catalog.unit_of_work(snapshot=True) as session:
        current = session.get(ArchiveTimestamp, timestamp_id)
        if current is None or current.superseded_at is not None:
            return False
        chain = _chain(session, current)
        root = chain[0]
        package = session.get(PackageVersion, root["package_version_id"])
        package = {"storage_key": package.storage_key, "version": package.version,
                   "digests": dict(package.digests)}
        renewals = session.scalar(select(func.count()).select_from(ArchiveTimestamp).where(
            ArchiveTimestamp.record_id == current.record_id,
            ArchiveTimestamp.source == "renewal")) or 0
    previous = chain[-1]
    token_before = previous_token(instance, previous)
    algorithm = settings.timestamps.hash_algorithm
    data = renewal_input(previous, token_before, root, package, algorithm)
    n, token = _slot(instance, stamps, previous["record_id"], renewals + 1, data)
    if token is None:
        stamped = stamps.stamp(data, algorithm)  # verified at once (R-TS-1)
        token, info = stamped["token"], stamped["info"]
        if not info["trusted"]:
            raise IntegrityError(f"the renewal timestamp from {info['tsa']} does not chain "
                                 "to signatures.trust_roots: not used")
    facts = token_facts(token)
    input_key, token_key = renewal_keys(previous["record_id"], n)
    _put(instance.store, input_key, data)  # storage first
    _put(instance.store, token_key, token)
    now = ctx.clock.now()
    with instance.catalog.unit_of_work() as session:
        row = session.execute(select(ArchiveTimestamp).where(
            ArchiveTimestamp.id == timestamp_id).with_for_update()).scalar_one()
        if row.superseded_at is not None:
            return False
        new_id = str(uuid.uuid4())
        session.add(ArchiveTimestamp(
            id=new_id, record_id=row.record_id, package_version_id=root["package_version_id"],
            source="renewal", object_key=token_key, member=input_key, previous_id=row.id,
            covers_sha256=_sha256(data), token_sha256=_sha256(token),
            hash_algorithm=facts.hash_algorithm, gen_time=facts.gen_time,
            tsa_certificate_expires=facts.tsa_certificate_expires, created_at=now))
        row.superseded_at = now
        why = _reason(previous, settings, now)
        detail = {"timestamp_id": new_id, "previous_id": row.id, "token_key": token_key,
                  "input_key": input_key, "hash_algorithm": facts.hash_algorithm,
                  "gen_time": _iso(facts.gen_time), "reason": why,
                  "tsa_certificate_expires": _iso(facts.tsa_certificate_expires)}
        session.add(Event(id=str(uuid.uuid4()), record_id=row.record_id,
                          event_type="timestamp renewal", occurred_at=now,
                          agent=str(ctx.principal), outcome="success",
                          detail=f"archive timestamp renewed ({why}): a new RFC 3161 "
                                 f"timestamp ({facts.hash_algorithm}) over the previous "
                                 f"token and the evidence it covered, {token_key}",
                          data=detail))
        audit.append(session, ctx.principal, "timestamp.renew", f"record:{row.record_id}",
                     detail=detail, clock=ctx.clock)
    return True


def _reason(previous: dict, settings, now: datetime) -> str:
    weak = [a.lower() for a in settings.timestamps.weak_algorithms]
    if previous["hash_algorithm"].lower() in weak:
        return f"hash algorithm {previous['hash_algorithm']} is weak"
    return f"TSA certificate expires {_iso(previous['tsa_certificate_expires'])}"


def run_batch(ctx: JobContext, params: dict) -> dict[str, int]:
    from ingest.sealing import SealTimestamps
    from ingest.timestamps import TimestampUnavailable

    ids = list(params.get("timestamps", ()))
    if not ids:
        return {}
    if not ctx.instance.settings.signatures.tsa_url:
        message = (f"{len(ids)} archive timestamp(s) due for renewal, but no timestamp "
                   "authority is configured (signatures.tsa_url)")
        ctx.alert(message)
        raise ConfigError(message)
    counts = {"renewed": 0, "skipped": 0}
    with SealTimestamps(ctx.instance.settings) as stamps:
        for timestamp_id in ids:
            ctx.heartbeat()
            try:
                done = renew(ctx, stamps, timestamp_id)
            except TimestampUnavailable as exc:
                ctx.alert(f"timestamp renewal failed: {exc.message}")
                raise
            counts["renewed" if done else "skipped"] += 1
    return counts


JOB = JobSpec(
    name="timestamps",
    description="Renew archive timestamps (RFC 3161) before their TSA certificate or hash "
                "algorithm expires",
    plan=plan, run_batch=run_batch, interval_setting="timestamps_every_minutes")


# ---- verification -------------------------------------------------------------------


def verify_chain(instance, record_id: str, principal: Principal | None = None, *,
                 client: str = "") -> dict:
    """Check every link of the record's timestamp chains offline (R-TS-1).

    Each token must verify over its input with the trust roots at the time of the next
    link (the head: now); the root covers the AIP's manifest; each renewal input holds
    the previous token's bytes and names its digest and the evidence. The check is
    audited (``timestamp.verify``)."""
    from ingest.sealing import SealTimestamps

    principal = principal or Principal.cli_operator()
    with instance.catalog.unit_of_work() as session:
        record = session.get(Record, record_id)
        if record is None:
            raise NotFound(f"no record {record_id}")
        policy.require(principal, policy.VIEW, policy.facts_of(record), client=client)
        rows = [_row(t) for t in session.scalars(
            select(ArchiveTimestamp).where(ArchiveTimestamp.record_id == record_id)
            .order_by(ArchiveTimestamp.gen_time, ArchiveTimestamp.created_at))]
        files = {}
        for row in rows:
            if row["source"] == "aip":
                for f in session.scalars(select(StoredFile).where(
                        StoredFile.package_id == row["package_version_id"],
                        StoredFile.path.in_((MANIFEST, row["member"])))):
                    files[(row["id"], f.path)] = {"path": f.path, "offset": f.offset,
                                                  "size": f.size, "digests": dict(f.digests)}
    report = {"record_id": record_id, "ok": True, "chains": [], "problems": []}
    if not rows:
        report["ok"] = False
        report["problems"].append("no archive timestamp is registered for this record "
                                  "(the `timestamps` job registers them)")
    by_previous: dict[str, list[dict]] = {}
    for row in rows:
        by_previous.setdefault(row["previous_id"], []).append(row)
    with SealTimestamps(instance.settings) as stamps:
        for root in by_previous.get(None, []):
            chain, current = [root], root
            while True:
                nexts = by_previous.get(current["id"], [])
                if len(nexts) > 1:
                    report["problems"].append(f"timestamp {current['id']} was renewed "
                                              f"{len(nexts)} times (a fork)")
                if not nexts:
                    break
                current = nexts[0]
                chain.append(current)
            links = [_check_link(instance, stamps, chain, i, files)
                     for i in range(len(chain))]
            report["chains"].append({"root": root["id"], "links": links,
                                     "ok": all(link["ok"] for link in links)})
    for chain in report["chains"]:
        for link in chain["links"]:
            report["problems"].extend(f"{link['key']}: {p}" for p in link["problems"])
    report["ok"] = not report["problems"]
    with instance.catalog.unit_of_work() as session:
        audit.append(session, principal, "timestamp.verify", f"record:{record_id}",
                     outcome="ok" if report["ok"] else "failed", client=client,
                     detail={"links": sum(len(c["links"]) for c in report["chains"]),
                             "problems": len(report["problems"])}, clock=instance.clock)
    return report


def _check_link(instance, stamps, chain: list[dict], i: int, files: dict) -> dict:
    row = chain[i]
    at = chain[i + 1]["gen_time"] if i + 1 < len(chain) else None
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    link = {"id": row["id"], "source": row["source"],
            "key": row["object_key"] if row["source"] == "renewal"
            else f"{row['object_key']}:{row['member']}",
            "gen_time": _iso(row["gen_time"]), "hash_algorithm": row["hash_algorithm"],
            "tsa_certificate_expires": _iso(row["tsa_certificate_expires"]),
            "superseded_at": _iso(row["superseded_at"]), "tsa": None, "trusted": False,
            "ok": False, "problems": []}
    problems = link["problems"]
    try:
        if row["source"] == "aip":
            token = _read_member(instance.store, row["object_key"],
                                 files[(row["id"], row["member"])])
            covered = _read_member(instance.store, row["object_key"],
                                   files[(row["id"], MANIFEST)])
        else:
            token = _read_object(instance.store, row["object_key"])
            covered = _read_object(instance.store, row["member"])
    except (StorageError, IntegrityError, KeyError) as exc:
        problems.append(f"cannot be read intact: {getattr(exc, 'message', exc)}")
        return link
    if _sha256(token) != row["token_sha256"]:
        problems.append("the token does not match its recorded SHA-256")
    if _sha256(covered) != row["covers_sha256"]:
        problems.append("the data it covers does not match its recorded SHA-256")
    if row["source"] == "renewal":
        problems.extend(_check_input(covered, chain, i))
    try:
        info = stamps.check(token, covered, at=at)
        link["tsa"], link["trusted"] = info["tsa"], info["trusted"]
        if not info["trusted"]:
            problems.append(f"the TSA ({info['tsa']}) does not chain to the trust roots"
                            + (f" at {_iso(at)}" if at else ""))
    except IntegrityError as exc:
        problems.append(f"the token does not verify over what it covers: {exc.message}")
    link["ok"] = not problems
    return link


def _check_input(data: bytes, chain: list[dict], i: int) -> list[str]:
    """A renewal input must hold the previous link's token and name the evidence."""
    previous, root = chain[i - 1], chain[0]
    try:
        doc = json.loads(data)
        prev = doc["previous"]
        evidence = doc["evidence"]
        embedded = base64.b64decode(prev["token"], validate=True)
    except (ValueError, KeyError, TypeError) as exc:
        return [f"the renewal input is not a valid document: {exc}"]
    problems = []
    if doc.get("format") != RENEWAL_FORMAT:
        problems.append(f"the renewal input has an unknown format {doc.get('format')!r}")
    if prev.get("id") != previous["id"] or \
            prev.get("token_sha256") != previous["token_sha256"] or \
            _sha256(embedded) != previous["token_sha256"]:
        problems.append("the renewal input does not hold the previous token")
    if prev.get("covers_sha256") != previous["covers_sha256"]:
        problems.append("the renewal input names other data than the previous token covered")
    if evidence.get("aip_key") != root["object_key"] or \
            evidence.get("manifest_sha256") != root["covers_sha256"]:
        problems.append("the renewal input names another AIP or manifest than the chain's root")
    return problems
