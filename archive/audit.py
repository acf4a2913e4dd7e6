"""The tamper-evident audit log (R-AUDIT-1): a hash chain with signed checkpoints.

Every entry's hash covers the previous entry's hash and the entry itself::

    entry_hash = sha256(prev_hash + canonical_json({seq, occurred_at, actor, action,
                                                    target, outcome, client, detail}))

so altering, deleting, inserting or reordering rows breaks the chain. What a chain alone
cannot show is a *consistent* rewrite by someone with write access to the database
(recompute every later hash, or delete the newest entries and move the head back): the
signed checkpoints, kept in the object store outside the database, close that gap up to
the newest checkpoint. Entries after it are protected by the chain only, and
``verify`` says so in its warnings.

``append`` runs inside the caller's transaction, so the audit entry commits or rolls
back together with the change it records.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archive.clock import Clock, SystemClock
from archive.errors import IntegrityError, ObjectExists, Problem, StorageError
from archive.keys import key_id as compute_key_id
from archive.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64
HEAD_ID = 1
CHECKPOINT_PREFIX = "audit/checkpoints/"
CHECKPOINT_FORMAT = "kho-luu-tru-so/audit-checkpoint/1"
_CHECKPOINT_NAME = re.compile(r"^audit/checkpoints/(\d{12})\.json$")
_MAX_TOKEN_BYTES = 64 * 1024
_MAX_CHECKPOINT_BYTES = 64 * 1024
_REORDER_WINDOW = 64  # how far away a misplaced entry's original position is searched


class AuditChainBroken(IntegrityError):
    """The chain cannot be extended (head row missing or inconsistent)."""


# ---- hashing ------------------------------------------------------------------------


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, no NaN: the same bytes for the same data."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                      allow_nan=False).encode("utf-8")


def format_time(moment: datetime) -> str:
    """ISO UTC with microseconds. A naive value is UTC (SQLite drops the zone)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compute_hash(prev_hash: str, *, seq: int, occurred_at: datetime, actor: str,
                 action: str, target: str, outcome: str, client: str, detail: Any) -> str:
    body = canonical_json({
        "seq": seq, "occurred_at": format_time(occurred_at), "actor": actor,
        "action": action, "target": target, "outcome": outcome, "client": client,
        "detail": detail,
    })
    return hashlib.sha256(prev_hash.encode("ascii") + body).hexdigest()


def _row_hash(row: Any, seq: int | None = None) -> str:
    return compute_hash(row.prev_hash, seq=row.seq if seq is None else seq,
                        occurred_at=row.occurred_at, actor=row.actor, action=row.action,
                        target=row.target, outcome=row.outcome, client=row.client or "",
                        detail=row.detail)


def _fit(value: str, column) -> str:
    """Cut a value to its column's length (PostgreSQL enforces it) before hashing."""
    limit = column.type.length
    text = str(value)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


# ---- appending ----------------------------------------------------------------------


def ensure_head(session: Session) -> AuditHead:
    """The chain's head row, created (seq 0, genesis hash) when the log is empty."""
    head = session.get(AuditHead, HEAD_ID)
    if head is None:
        if session.execute(select(AuditEntry.seq).limit(1)).first() is not None:
            raise AuditChainBroken("audit head row is missing but the log has entries: "
                                   "run `archive audit verify`")
        head = AuditHead(id=HEAD_ID, seq=0, entry_hash=GENESIS_HASH)
        session.add(head)
        session.flush()
    return head


def append(session: Session, principal: Any, action: str, target: str, outcome: str = "ok",
           detail: dict | None = None, client: str = "", clock: Clock | None = None
           ) -> AuditEntry:
    """Add one entry to the chain in the caller's transaction (R-AUDIT-1).

    Locks the head row, so concurrent appenders queue (PostgreSQL row lock; SQLite's
    ``BEGIN IMMEDIATE`` already serialises writers).
    """
    head = session.execute(
        select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if head is None:
        raise AuditChainBroken("audit head row is missing: the catalog is not initialised "
                               "or the log was tampered with (run `archive audit verify`)")
    now = (clock or SystemClock()).now()
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    columns = AuditEntry.__table__.c
    fields = {
        "seq": head.seq + 1,
        "occurred_at": now.astimezone(UTC),
        "actor": _fit(str(principal), columns.actor),
        "action": _fit(action, columns.action),
        "target": _fit(target, columns.target),
        "outcome": _fit(outcome, columns.outcome),
        "client": _fit(client or "", columns.client),
        # Stored exactly as hashed: a JSON round trip turns tuples into lists etc.
        "detail": json.loads(canonical_json(detail or {})),
    }
    entry_hash = compute_hash(head.entry_hash, **fields)
    entry = AuditEntry(**fields, prev_hash=head.entry_hash, entry_hash=entry_hash)
    session.add(entry)
    head.seq = entry.seq
    head.entry_hash = entry_hash
    session.flush()
    return entry


# ---- checkpoints --------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement "the chain had this hash at this seq" kept outside the DB."""

    seq: int
    entry_hash: str
    created_at: str
    key_id: str
    signature: str  # base64 Ed25519 signature over the canonical payload
    key: str = ""  # object store key
    signature_ok: bool = True
    error: str = ""  # why it cannot be trusted, when signature_ok is False
    new: bool = False  # written by this call (write_checkpoint)
    sha256: str = ""  # of the stored document's bytes (to compare the two stores' copies)

    def payload(self) -> dict:
        return {"format": CHECKPOINT_FORMAT, "seq": self.seq, "entry_hash": self.entry_hash,
                "created_at": self.created_at, "key_id": self.key_id,
                "algorithm": "Ed25519"}

    def document(self) -> bytes:
        doc = dict(self.payload(), signature=self.signature)
        return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()

    def to_dict(self) -> dict:
        d = dict(self.payload(), key=self.key, signature_ok=self.signature_ok)
        if self.error:
            d["error"] = self.error
        return d


def checkpoint_key(seq: int) -> str:
    return f"{CHECKPOINT_PREFIX}{seq:012d}.json"


def checkpoint_token_key(seq: int) -> str:
    """Where the RFC 3161 token over checkpoint ``seq``'s document bytes is kept."""
    return checkpoint_key(seq) + ".tsr"


def write_checkpoint(session: Session, store, key: Ed25519PrivateKey,
                     clock: Clock | None = None, *, backup_store=None
                     ) -> Checkpoint | None:
    """Sign the current head and store it put-if-absent; None for an empty log.

    An existing checkpoint for the same seq is kept and returned (``new=False``).
    With ``backup_store`` the same bytes are also kept there (put-if-absent; an
    existing valid checkpoint missing from the backup store is copied to it), so a
    checkpoint deleted or rewritten in one store is still found in the other.
    """
    head = session.get(AuditHead, HEAD_ID)
    if head is None:
        raise AuditChainBroken("audit head row is missing: refusing to write a checkpoint")
    if head.seq == 0:
        return None
    last = session.execute(select(*AuditEntry.__table__.c)
                           .where(AuditEntry.seq == head.seq)).first()
    if last is None or last.entry_hash != head.entry_hash or _row_hash(last) != last.entry_hash:
        raise AuditChainBroken(f"head row disagrees with entry {head.seq}: refusing to sign "
                               "a checkpoint (run `archive audit verify`)")
    object_key = checkpoint_key(head.seq)
    public = key.public_key()
    stores = [store] if backup_store is None else [store, backup_store]
    if store.exists(object_key):
        existing = _read_checkpoint(store, object_key, public)
        if backup_store is not None and existing.signature_ok:
            mirror_object(store, backup_store, object_key)
        return existing
    if backup_store is not None and backup_store.exists(object_key):
        raise AuditChainBroken(f"checkpoint {head.seq} is in the backup store but missing "
                               "from the primary store: refusing to sign (run `archive "
                               "audit verify`)")
    _verify_since_latest_checkpoint(session, stores, public, head.seq)
    moment = format_time((clock or SystemClock()).now())
    unsigned = Checkpoint(seq=head.seq, entry_hash=head.entry_hash, created_at=moment,
                          key_id=compute_key_id(key), signature="", key=object_key)
    signature = base64.b64encode(key.sign(canonical_json(unsigned.payload()))).decode()
    checkpoint = replace(unsigned, signature=signature, new=True)
    data = checkpoint.document()
    checkpoint = replace(checkpoint, sha256=hashlib.sha256(data).hexdigest())
    try:
        store.put(object_key, io.BytesIO(data), size=len(data))
    except ObjectExists:  # another process wrote the same seq first
        checkpoint = _read_checkpoint(store, object_key, public)
        if not checkpoint.signature_ok:
            return checkpoint
    if backup_store is not None:
        mirror_object(store, backup_store, object_key)
    return checkpoint


def mirror_object(source, target, object_key: str) -> bool:
    """Copy a small object (a checkpoint or its token) to ``target`` if it is absent
    there (put-if-absent, checked with SHA-256). True when copied. A different object
    already under the key in ``target`` raises AuditChainBroken: nothing is overwritten.
    """
    with source.open(object_key) as stream:
        data = stream.read(_MAX_CHECKPOINT_BYTES + 1)
    if len(data) > _MAX_CHECKPOINT_BYTES:
        raise AuditChainBroken(f"{object_key} is too large to be a checkpoint")
    digest = hashlib.sha256(data).hexdigest()
    try:
        target.put(object_key, io.BytesIO(data), size=len(data), sha256=digest)
        return True
    except ObjectExists:
        with target.open(object_key) as stream:
            there = stream.read(_MAX_CHECKPOINT_BYTES + 1)
        if hashlib.sha256(there).hexdigest() != digest:
            raise AuditChainBroken(f"{object_key} differs between {source.name} and "
                                   f"{target.name}: run `archive audit verify`") from None
        return False


def store_checkpoint_token(stores, seq: int, token: bytes) -> str:
    """Keep an RFC 3161 token over checkpoint ``seq``'s document next to it, in every
    store (put-if-absent). The token is obtained by the caller (the core makes no HTTP
    calls). An existing token is kept. Returns the key."""
    object_key = checkpoint_token_key(seq)
    digest = hashlib.sha256(token).hexdigest()
    for store in stores:
        with contextlib.suppress(ObjectExists):  # an existing token is kept
            store.put(object_key, io.BytesIO(token), size=len(token), sha256=digest)
    return object_key


def read_checkpoint_token(store, seq: int) -> bytes | None:
    """The stored token of checkpoint ``seq`` in ``store``, or None."""
    try:
        with store.open(checkpoint_token_key(seq)) as stream:
            return stream.read(_MAX_TOKEN_BYTES)
    except StorageError:
        return None


def read_checkpoint_document(store, checkpoint: Checkpoint) -> bytes | None:
    """The stored bytes of ``checkpoint`` (what its RFC 3161 token covers)."""
    try:
        with store.open(checkpoint.key or checkpoint_key(checkpoint.seq)) as stream:
            return stream.read(_MAX_CHECKPOINT_BYTES + 1)
    except StorageError:
        return None


def _verify_since_latest_checkpoint(session: Session, stores, public: Ed25519PublicKey,
                                    head_seq: int, batch_size: int = 1000) -> None:
    """Before signing, re-check the entries a new checkpoint would vouch for.

    Only the segment after the latest valid checkpoint is walked (cheap per command);
    the segment before it is protected by that checkpoint. Raise AuditChainBroken on
    any break, so a checkpoint never signs a chain that was tampered with.
    """
    found = sorted((info.key, n) for n, store in enumerate(stores)
                   for info in store.list(CHECKPOINT_PREFIX)
                   if _CHECKPOINT_NAME.match(info.key))
    start_seq, prev = 0, GENESIS_HASH
    for object_key, n in reversed(found):
        cp = _read_checkpoint(stores[n], object_key, public)
        if cp.signature_ok and cp.seq <= head_seq:
            at = session.execute(select(AuditEntry.entry_hash)
                                 .where(AuditEntry.seq == cp.seq)).scalar()
            if at != cp.entry_hash:
                raise AuditChainBroken(f"entry {cp.seq} no longer matches its signed "
                                       "checkpoint: refusing to sign (run `archive audit "
                                       "verify`)")
            start_seq, prev = cp.seq, cp.entry_hash
            break
    table = AuditEntry.__table__
    expected = start_seq + 1
    while expected <= head_seq:
        rows = session.execute(select(*table.c).where(table.c.seq >= expected)
                               .order_by(table.c.seq).limit(batch_size)).all()
        if not rows:
            break
        for row in rows:
            if row.seq != expected or row.prev_hash != prev or \
                    _row_hash(row) != row.entry_hash:
                raise AuditChainBroken(f"audit entry {expected} is missing or altered: "
                                       "refusing to sign a checkpoint (run `archive audit "
                                       "verify`)")
            prev = row.entry_hash
            expected += 1
    if expected != head_seq + 1:
        raise AuditChainBroken(f"audit log ends before its head ({head_seq}): refusing to "
                               "sign a checkpoint")


def load_checkpoints(store, public_key: Ed25519PublicKey) -> list[Checkpoint]:
    """Every checkpoint in the store, oldest first, each with its signature checked.

    A checkpoint that cannot be read or whose signature fails comes back with
    ``signature_ok=False`` and the reason; ``verify`` reports it as a problem.
    """
    found = []
    for info in store.list(CHECKPOINT_PREFIX):
        if _CHECKPOINT_NAME.match(info.key):
            found.append(_read_checkpoint(store, info.key, public_key))
    return sorted(found, key=lambda c: c.seq)


@dataclass
class CheckpointSet:
    """The checkpoints of the primary and the backup store together (R-AUDIT-1).

    ``checkpoints`` holds one per seq (a valid copy preferred), so a checkpoint
    deleted or rewritten in one store is still used from the other. ``problems`` are
    (code, message, target) for a checkpoint missing from the primary store or different
    in the two stores; ``warnings`` name checkpoints not yet copied to the backup store.
    ``found_in`` maps each seq to the stores holding it ("primary", "backup").
    """

    checkpoints: list[Checkpoint] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    found_in: dict[int, list[str]] = field(default_factory=dict)


def gather_checkpoints(store, backup_store, public_key: Ed25519PublicKey) -> CheckpointSet:
    """The union of both stores' checkpoints, each compared with its copy."""
    primary = {cp.seq: cp for cp in load_checkpoints(store, public_key)}
    if backup_store is None:
        return CheckpointSet(checkpoints=list(primary.values()),
                             found_in={seq: ["primary"] for seq in primary})
    backup = {cp.seq: cp for cp in load_checkpoints(backup_store, public_key)}
    result = CheckpointSet()
    for seq in sorted(set(primary) | set(backup)):
        here, there = primary.get(seq), backup.get(seq)
        result.found_in[seq] = [name for name, cp in (("primary", here), ("backup", there))
                                if cp is not None]
        if here is not None and there is not None:
            if here.sha256 != there.sha256:
                result.problems.append((
                    "checkpoint_mismatch", f"checkpoint {seq} differs between the primary "
                    f"store ({store.name}) and the backup store ({backup_store.name})",
                    here.key))
            chosen = here if here.signature_ok or not there.signature_ok else there
        elif there is not None:
            result.problems.append((
                "checkpoint_missing", f"checkpoint {seq} is missing from the primary store "
                f"({store.name}); the backup store ({backup_store.name}) has it", there.key))
            chosen = there
        else:
            result.warnings.append(f"checkpoint {seq} is not in the backup store "
                                   f"({backup_store.name}) yet: `archive audit checkpoint` "
                                   "or the backup job copies it")
            chosen = here
        result.checkpoints.append(chosen)
    return result


def _read_checkpoint(store, object_key: str, public: Ed25519PublicKey) -> Checkpoint:
    named_seq = int(_CHECKPOINT_NAME.match(object_key).group(1))
    sha256 = ""  # of the bytes read, once read

    def bad(reason: str, **known) -> Checkpoint:
        values = {"seq": named_seq, "entry_hash": "", "created_at": "", "key_id": "",
                  "signature": ""}
        values.update(known)
        return Checkpoint(**values, key=object_key, signature_ok=False, error=reason,
                          sha256=sha256)

    try:
        with store.open(object_key) as stream:
            data = stream.read(_MAX_CHECKPOINT_BYTES + 1)
    except StorageError as exc:
        return bad(f"cannot be read: {exc.message}")
    if len(data) > _MAX_CHECKPOINT_BYTES:
        return bad("is too large to be a checkpoint")
    sha256 = hashlib.sha256(data).hexdigest()

    try:
        doc = json.loads(data)
        checkpoint = Checkpoint(seq=int(doc["seq"]), entry_hash=str(doc["entry_hash"]),
                                created_at=str(doc["created_at"]), key_id=str(doc["key_id"]),
                                signature=str(doc["signature"]), key=object_key,
                                sha256=sha256)
        fmt = doc.get("format")
    except (ValueError, KeyError, TypeError):
        return bad("is not a valid checkpoint document")
    known = {k: getattr(checkpoint, k) for k in ("entry_hash", "created_at", "key_id",
                                                  "signature")}
    if fmt != CHECKPOINT_FORMAT:
        return bad(f"has an unknown format {fmt!r}", **known)
    if checkpoint.seq != named_seq:
        return bad(f"says seq {checkpoint.seq} but is stored as {object_key}", **known)
    expected_id = compute_key_id(public)
    if checkpoint.key_id != expected_id:
        return bad(f"was signed by key {checkpoint.key_id}, not the system key "
                   f"{expected_id}", **known)
    try:
        public.verify(base64.b64decode(checkpoint.signature, validate=True),
                      canonical_json(checkpoint.payload()))
    except (InvalidSignature, ValueError):
        return bad("has a bad signature", **known)
    return checkpoint


# ---- verification -------------------------------------------------------------------


@dataclass
class AuditReport:
    ok: bool = True
    entries_checked: int = 0
    first_bad_seq: int | None = None
    last_seq: int = 0
    head_seq: int | None = None
    checkpoints_checked: int = 0
    latest_checkpoint_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, code: str, message: str, seq: int | None = None, *,
            target: str = "", **detail) -> None:
        """Record a problem; ``seq`` names the entry it shows to be bad."""
        self.ok = False
        if seq is not None:
            detail["seq"] = seq
            target = target or f"audit entry {seq}"
            if self.first_bad_seq is None or seq < self.first_bad_seq:
                self.first_bad_seq = seq
        self.problems.append(Problem(code, message, target, detail))

    def to_dict(self) -> dict:
        return {"ok": self.ok, "entries_checked": self.entries_checked,
                "first_bad_seq": self.first_bad_seq, "last_seq": self.last_seq,
                "head_seq": self.head_seq, "checkpoints_checked": self.checkpoints_checked,
                "latest_checkpoint_seq": self.latest_checkpoint_seq,
                "problems": [p.to_dict() for p in self.problems],
                "warnings": list(self.warnings)}


def verify(session: Session, checkpoints: list[Checkpoint] | None = None,
           batch_size: int = 1000) -> AuditReport:
    """Walk the whole chain in seq order (in batches) and report every problem.

    Run it in a snapshot transaction (``unit_of_work(..., snapshot=True)``) so the head
    and the entries are read at the same moment while appenders keep working.
    """
    report = AuditReport()
    trusted: dict[int, Checkpoint] = {}
    for cp in checkpoints or []:
        if cp.signature_ok:
            trusted[cp.seq] = cp
        else:
            report.add("bad_checkpoint", f"checkpoint {cp.seq} {cp.error}",
                       target=cp.key or f"checkpoint {cp.seq}")
    report.checkpoints_checked = len(trusted)
    report.latest_checkpoint_seq = max(trusted, default=None)
    previous_cp = 0

    expected_seq, expected_prev, prev_bad = 1, GENESIS_HASH, False
    last_hash = GENESIS_HASH
    table = AuditEntry.__table__
    cursor: int | None = None
    while True:
        query = select(*table.c).order_by(table.c.seq).limit(batch_size)
        if cursor is not None:
            query = query.where(table.c.seq > cursor)
        rows = session.execute(query).all()
        for row in rows:
            seq = row.seq
            report.entries_checked += 1
            bad = False
            gap = seq > expected_seq
            if seq < 1:
                report.add("forged", f"entry {seq} has an impossible sequence number "
                           "(forged row)", seq)
                bad = True
            elif gap:
                missing = (f"entry {expected_seq} is missing" if seq == expected_seq + 1
                           else f"entries {expected_seq}-{seq - 1} are missing")
                report.add("missing", f"{missing} (gap after {expected_seq - 1})",
                           expected_seq)
            if not bad and _row_hash(row) != row.entry_hash:
                bad = True
                moved_from = (_original_seq(row) if row.prev_hash != expected_prev
                              else None)
                if moved_from is not None:
                    report.add("out_of_order", f"entries out of order at {seq}: the entry "
                               f"stored as {seq} was written as entry {moved_from}", seq,
                               written_as=moved_from)
                else:
                    report.add("altered", f"entry {seq} was altered (its content does not "
                               "match its hash)", seq)
            elif not bad and not gap and row.prev_hash != expected_prev and not prev_bad:
                if seq == 1:
                    report.add("altered", "entry 1 does not start from the genesis hash "
                               "(replaced or forged)", 1)
                else:
                    report.add("replaced", f"entry {seq - 1} was altered or replaced: "
                               f"entry {seq} links to a different entry {seq - 1} "
                               "(or was itself forged)", seq - 1, linked_from=seq)
            cp = trusted.get(seq)
            if cp is not None:
                if cp.entry_hash != row.entry_hash:
                    report.add("rewritten", f"chain rewritten: checkpoint {seq} signed at "
                               f"{cp.created_at} records hash {cp.entry_hash[:12]}… but "
                               f"entry {seq} now has {row.entry_hash[:12]}… (changed "
                               f"between entries {previous_cp + 1} and {seq})", seq,
                               checkpoint=cp.key)
                previous_cp = seq
            expected_seq, expected_prev = seq + 1, row.entry_hash
            prev_bad = bad
            last_hash = row.entry_hash
            report.last_seq = seq
        if len(rows) < batch_size:
            break
        cursor = rows[-1].seq

    head = session.execute(select(AuditHead.seq, AuditHead.entry_hash)
                           .where(AuditHead.id == HEAD_ID)).first()
    if head is None:
        report.add("head_missing", "head row is missing", target="audit head")
    else:
        report.head_seq = head.seq
        if head.seq != report.last_seq or head.entry_hash != last_hash:
            report.add("head_mismatch", f"head row disagrees with last entry: the head says "
                       f"entry {head.seq}, the log ends at entry {report.last_seq}",
                       min(head.seq, report.last_seq) + 1, target="audit head")
    for cp_seq, cp in sorted(trusted.items()):
        if cp_seq > report.last_seq:
            report.add("truncated", f"log truncated: checkpoint {cp_seq} signed at "
                       f"{cp.created_at} but the log ends at {report.last_seq}",
                       report.last_seq + 1, checkpoint=cp.key)
            break
    _honest_limits(report, checkpoints)
    return report


def _original_seq(row: Any) -> int | None:
    """For an entry whose hash fails at its seq: the nearby seq it was written as."""
    for offset in range(1, _REORDER_WINDOW + 1):
        for candidate in (row.seq - offset, row.seq + offset):
            if candidate >= 1 and _row_hash(row, candidate) == row.entry_hash:
                return candidate
    return None


def _honest_limits(report: AuditReport, checkpoints: list[Checkpoint] | None) -> None:
    covered = report.latest_checkpoint_seq or 0
    if not checkpoints:
        report.warnings.append(
            "no checkpoints: deleting the newest entries together with moving the head "
            "row back, or rewriting the whole chain, cannot be detected without them")
    elif report.last_seq > covered:
        report.warnings.append(
            f"entries {covered + 1}-{report.last_seq} are newer than the latest "
            f"checkpoint ({covered or 'none'}): their deletion or rewrite together with "
            "the head row cannot be detected until a checkpoint covers them")


# ---- reading the log (R-AUDIT-1: auditors query and export it) ----------------------


@dataclass(frozen=True)
class AuditQuery:
    actor: str | None = None
    action: str | None = None  # exact, or a prefix ending in "*" (e.g. "auth.*")
    outcome: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    offset: int = 0

    def to_dict(self) -> dict:
        return {k: (v.isoformat() if isinstance(v, datetime) else v)
                for k, v in self.__dict__.items() if v is not None}


def _filtered(q: AuditQuery):
    stmt = select(AuditEntry)
    if q.actor:
        stmt = stmt.where(AuditEntry.actor == q.actor)
    if q.action:
        if q.action.endswith("*"):
            stmt = stmt.where(AuditEntry.action.startswith(q.action[:-1], autoescape=True))
        else:
            stmt = stmt.where(AuditEntry.action == q.action)
    if q.outcome:
        stmt = stmt.where(AuditEntry.outcome == q.outcome)
    if q.target:
        stmt = stmt.where(AuditEntry.target == q.target)
    if q.since:
        stmt = stmt.where(AuditEntry.occurred_at >= q.since)
    if q.until:
        stmt = stmt.where(AuditEntry.occurred_at < q.until)
    return stmt


def _page(session: Session, stmt, q: AuditQuery) -> tuple[int, list[AuditEntry]]:
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = list(session.scalars(stmt.order_by(AuditEntry.seq.desc())
                                .limit(q.limit).offset(q.offset)))
    return total, rows


def query(session: Session, principal: Any, q: AuditQuery, *, client: str = "",
          clock: Clock | None = None, export: bool = False) -> tuple[int, list[AuditEntry]]:
    """Entries matching ``q``, newest first (auditors). The query itself is logged."""
    from archive import policy

    policy.require(principal, policy.AUDIT_READ, client=client)
    total, rows = _page(session, _filtered(q), q)
    append(session, principal, "audit.export" if export else "audit.query", "audit_log",
           client=client, clock=clock,
           detail={"filter": q.to_dict(), "returned": len(rows), "total": total})
    return total, rows


def own_entries(session: Session, principal: Any, q: AuditQuery, *, client: str = "",
                clock: Clock | None = None) -> tuple[int, list[AuditEntry]]:
    """The principal's own access history (every user may see what they did)."""
    from archive import policy

    policy.require(principal, policy.ACCOUNT, client=client)
    total, rows = _page(session, _filtered(replace(q, actor=str(principal))), q)
    append(session, principal, "account.history", str(principal), client=client,
           clock=clock, detail={"returned": len(rows)})
    return total, rows


def entry_to_dict(entry: AuditEntry) -> dict:
    return {"seq": entry.seq, "occurred_at": entry.occurred_at.isoformat(),
            "actor": entry.actor, "action": entry.action, "target": entry.target,
            "outcome": entry.outcome, "client": entry.client, "detail": entry.detail,
            "entry_hash": entry.entry_hash}
