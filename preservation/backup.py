"""Backup copies of every stored object in a second, independent store (R-BACKUP-1).

The scheduled ``backup`` job (and ``archive backup`` through :func:`copy_objects`) copies
what the catalog knows and the backup store does not hold yet (no ``backup_copies`` row
for that store):

- ``aip``: every AIP version of a record not destroyed (size and digests from
  ``package_versions``);
- ``rendition``: paper renditions (``renditions.storage_key``, size and SHA-256);
- ``seal``: ``seals/<id>/manifest.json`` (SHA-256 from ``seals.manifest_sha256``), its
  signature and, when there is one, its RFC 3161 token;
- ``checkpoint``: the signed audit checkpoints (``audit/checkpoints/``, listed in the
  primary store) and their tokens;
- ``report``: return-to-sender reports of refused submissions (``submissions.report_key``).

Each object streams from the primary store to the backup store put-if-absent (the
catalog's SHA-256, when known, is sent as the checksum, so damaged primary bytes are
refused by the backup store), is re-read from the backup store and checked for size and
every digest (``archive.fixity.verify_stored_object``), and only then gets its
``backup_copies`` row. A key the backup store already holds (a copy made before a crash,
a checkpoint written to both stores) is verified instead of copied. Objects the catalog
has no digests for (checkpoints, signatures, tokens, reports) are checked against the
digests of the bytes read from the primary. A copy that does not verify is an alert and
is not registered. One ``backup.copy`` audit entry per batch.

The job's ``finish`` backs up the catalog too (``preservation/catalog_backup.py``), so
the scheduled job covers objects, catalog and checkpoints.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import uuid
from collections.abc import Callable

from sqlalchemy import and_, exists, select

from archive import audit, seal_manifest
from archive.audit import CHECKPOINT_PREFIX
from archive.digests import hash_stream
from archive.errors import ArchiveError, FixityMismatch, ObjectExists, SizeMismatch
from archive.fixity import verify_stored_object
from archive.models import (
    ArchiveTimestamp,
    BackupCopy,
    Draft,
    PackageVersion,
    Record,
    Rendition,
    Seal,
    Submission,
)
from archive.principal import Principal
from preservation.jobspec import JobContext, JobSpec

DESTROYED = "destroyed"


def backup_store_of(instance):
    """The instance's backup store (None: backups off); a local folder is created."""
    backup = instance.backup_store
    create = getattr(backup, "create", None)  # LocalStore: mkdir, idempotent
    if backup is not None and create is not None:
        create()
    return backup


def _missing(store_name: str, key_column):
    """No backup_copies row of ``store_name`` for the key in ``key_column``."""
    return ~exists().where(and_(BackupCopy.store == store_name,
                                BackupCopy.object_key == key_column))


def _has_copy(session, store_name: str, key: str) -> bool:
    return session.scalar(select(BackupCopy.id).where(
        BackupCopy.store == store_name, BackupCopy.object_key == key)) is not None


def plan(ctx: JobContext, params: dict) -> list[dict]:
    """Every known object without a copy in the current backup store, in batches."""
    instance = ctx.instance
    backup = backup_store_of(instance)
    if backup is None:
        return []
    name = backup.name
    items: list[list] = []
    with instance.catalog.unit_of_work(snapshot=True) as session:
        items += [["aip", key, rid] for key, rid in session.execute(
            select(PackageVersion.storage_key, PackageVersion.record_id)
            .join(Record, Record.id == PackageVersion.record_id)
            .where(Record.status != DESTROYED, _missing(name, PackageVersion.storage_key))
            .order_by(PackageVersion.id))]
        items += [["rendition", key, rid] for key, rid in session.execute(
            select(Rendition.storage_key, Rendition.record_id)
            .join(Record, Record.id == Rendition.record_id)
            .where(Record.status != DESTROYED, Rendition.storage_key.is_not(None),
                   _missing(name, Rendition.storage_key))
            .order_by(Rendition.created_at, Rendition.id))]
        items += [["report", key, None] for key in session.scalars(
            select(Submission.report_key)
            .where(Submission.report_key.is_not(None), _missing(name, Submission.report_key))
            .order_by(Submission.received_at, Submission.id))]
        # Renewed archive timestamps (R-TS-1): the token and the input it covers.
        for token_key, input_key, rid in session.execute(
                select(ArchiveTimestamp.object_key, ArchiveTimestamp.member,
                       ArchiveTimestamp.record_id)
                .join(Record, Record.id == ArchiveTimestamp.record_id)
                .where(ArchiveTimestamp.source == "renewal", Record.status != DESTROYED)
                .order_by(ArchiveTimestamp.created_at, ArchiveTimestamp.id)):
            items += [["timestamp", key, rid] for key in (input_key, token_key)
                      if key and not _has_copy(session, name, key)]
        # Staged files of drafts still being prepared (R-AMEND-1).
        items += [["draft", key, None] for key in session.scalars(
            select(Draft.file_key)
            .where(Draft.status == "draft", Draft.file_key.is_not(None),
                   _missing(name, Draft.file_key))
            .order_by(Draft.created_at, Draft.id))]
        seal_ids = list(session.scalars(select(Seal.id).order_by(Seal.sealed_at, Seal.id)))
        copied = set(session.scalars(
            select(BackupCopy.object_key).where(BackupCopy.store == name,
                                                BackupCopy.kind.in_(("seal", "checkpoint")))))
    # Seal signatures and tokens, checkpoints and their tokens: what the primary holds.
    for seal_id in seal_ids:
        for info in instance.store.list(f"{seal_manifest.PREFIX}{seal_id}/"):
            if info.key not in copied:
                items.append(["seal", info.key, None])
    for info in sorted(instance.store.list(CHECKPOINT_PREFIX), key=lambda i: i.key):
        if info.key not in copied:
            items.append(["checkpoint", info.key, None])
    size = max(1, instance.settings.scheduler.batch_size)
    return [{"objects": items[i:i + size]} for i in range(0, len(items), size)]


def _expected(session, kind: str, key: str) -> tuple[int | None, dict | None]:
    """Size and digests the catalog recorded for ``key`` (None: it recorded none)."""
    if kind == "aip":
        row = session.execute(select(PackageVersion.size, PackageVersion.digests)
                              .where(PackageVersion.storage_key == key)).first()
        return (row.size, dict(row.digests)) if row else (None, None)
    if kind == "rendition":
        row = session.execute(select(Rendition.size, Rendition.sha256)
                              .where(Rendition.storage_key == key)).first()
        return (row.size, {"sha256": row.sha256}) if row else (None, None)
    if kind == "timestamp":
        row = session.execute(select(ArchiveTimestamp.token_sha256)
                              .where(ArchiveTimestamp.object_key == key)).first()
        if row is None:
            row = session.execute(select(ArchiveTimestamp.covers_sha256)
                                  .where(ArchiveTimestamp.member == key)).first()
        return (None, {"sha256": row[0]}) if row else (None, None)
    if kind == "draft":
        digest = session.scalar(select(Draft.file_sha256).where(Draft.file_key == key))
        return None, ({"sha256": digest} if digest else None)
    if kind == "seal" and key.endswith("/manifest.json"):
        digest = session.scalar(select(Seal.manifest_sha256).where(Seal.manifest_key == key))
        return None, ({"sha256": digest} if digest else None)
    return None, None


def run_batch(ctx: JobContext, batch: dict) -> dict[str, int]:
    """Copy, re-read and verify each object; register the verified copies."""
    instance = ctx.instance
    backup = backup_store_of(instance)
    counts = {"copied": 0, "verified": 0, "bytes": 0, "failed": 0}
    if backup is None:
        return counts
    algorithms = tuple(instance.settings.fixity.algorithms)
    chunk = instance.settings.fixity.chunk_size
    done: list[dict] = []
    failures: list[str] = []
    for kind, key, record_id in batch["objects"]:
        ctx.heartbeat()
        with instance.catalog.unit_of_work(snapshot=True) as session:
            if session.scalar(select(BackupCopy.id).where(BackupCopy.store == backup.name,
                                                          BackupCopy.object_key == key)):
                continue  # registered by an earlier attempt of this batch
            size, digests = _expected(session, kind, key)
        try:
            copied, size, digests = _copy(instance.store, backup, key, size, digests,
                                          algorithms, chunk)
            verify_stored_object(backup, key, size, digests, chunk_size=chunk)
        except ArchiveError as exc:
            counts["failed"] += 1
            failures.append(f"{key}: {exc.message}")
            ctx.alert(f"backup copy of {key} to {backup.name} failed: {exc.message}")
            continue
        counts["copied" if copied else "verified"] += 1
        counts["bytes"] += size
        done.append({"kind": kind, "key": key, "record_id": record_id, "size": size,
                     "digests": digests})
    now = ctx.clock.now()
    with instance.catalog.unit_of_work() as session:
        for item in done:
            if session.scalar(select(BackupCopy.id).where(
                    BackupCopy.store == backup.name, BackupCopy.object_key == item["key"])):
                continue
            session.add(BackupCopy(object_key=item["key"], store=backup.name,
                                   kind=item["kind"], record_id=item["record_id"],
                                   size=item["size"], digests=item["digests"], copied_at=now,
                                   last_verified_at=now, last_outcome="ok"))
        audit.append(session, ctx.principal, "backup.copy", f"store:{backup.name}",
                     outcome="failed" if failures else "ok",
                     detail={**counts, "run": ctx.run_id, "failures": failures[:50]},
                     clock=ctx.clock)
    return counts


def _copy(primary, backup, key: str, size: int | None, digests: dict | None,
          algorithms: tuple[str, ...], chunk: int) -> tuple[bool, int, dict]:
    """Put ``key`` into ``backup``; returns (copied, size, the digests to verify against).

    With catalog digests the backup store checks the SHA-256 on receipt (damaged
    primary bytes are refused, nothing stored); without, the digests of the bytes read
    from the primary are the reference.
    """
    try:
        with primary.open(key) as stream:
            result = backup.put(key, stream, size=size, algorithms=algorithms,
                                sha256=(digests or {}).get("sha256"))
    except ObjectExists:
        # Already there: the reference is what the primary holds, checked against the
        # catalog where it recorded something.
        wanted = tuple(dict.fromkeys((*algorithms, *(digests or {}))))
        with primary.open(key) as stream:
            found_size, found = hash_stream(stream, wanted, chunk)
        if size is not None and found_size != size:
            raise SizeMismatch(key, size, found_size) from None
        for algorithm, value in (digests or {}).items():
            if found[algorithm] != value:
                raise FixityMismatch(key, algorithm, value, found[algorithm]) from None
        return False, found_size, found
    # the catalog's digests win over the ones computed while copying
    digests = {**result.digests, **(digests or {})}
    return True, result.size, digests


def finish(ctx: JobContext, counts: dict[str, int]) -> dict[str, int]:
    """Back up the catalog as well (when ``preservation.catalog_backup`` is installed)."""
    if ctx.instance.backup_store is None:
        return {}
    if importlib.util.find_spec("preservation.catalog_backup") is None:
        return {}
    module = importlib.import_module("preservation.catalog_backup")
    try:
        module.backup_catalog(ctx.instance, ctx.principal, clock=ctx.clock)
    except ArchiveError as exc:
        ctx.alert(f"catalog backup failed: {exc.message}")
        return {"catalog_backup_failed": 1}
    return {"catalog_backups": 1}


JOB = JobSpec(
    name="backup",
    description="Copy every stored object not yet in the backup store, verify each copy, "
                "then back up the catalog (R-BACKUP-1)",
    plan=plan, run_batch=run_batch, finish=finish,
    interval_setting="backup_every_minutes",
)


def run_inline(instance, spec: JobSpec, principal: Principal, params: dict | None = None,
               *, progress: Callable[[int], None] | None = None) -> dict:
    """Run ``spec`` whole in this process, without the runner's run and batch rows
    (``archive backup``, tests, benchmarks): plan, every batch, no ``finish``.
    ``progress(n)`` gets the item count of each finished batch. Returns the summed
    counts, ``batches`` and ``alerts``."""
    ctx = JobContext(instance=instance, run_id=f"inline-{uuid.uuid4()}", job=spec.name,
                     principal=principal, clock=instance.clock,
                     worker=f"{socket.gethostname()}:{os.getpid()}:inline",
                     params=dict(params or {}))
    batches = spec.plan(ctx, ctx.params)
    totals: dict = {"batches": len(batches)}
    for batch in batches:
        for name, value in spec.run_batch(ctx, batch).items():
            totals[name] = totals.get(name, 0) + value
        if progress is not None:
            progress(sum(len(v) for v in batch.values() if isinstance(v, list)))
    return {**totals, "alerts": list(ctx.alerts)}


def copy_objects(instance, principal: Principal, *,
                 progress: Callable[[int], None] | None = None) -> dict:
    """Copy every object not yet in the backup store, verified (``archive backup``).

    ``progress(n)`` is called with the number of objects of each finished batch.
    Returns counts (copied, verified, bytes, failed), ``batches`` and ``alerts``.
    """
    result = run_inline(instance, JOB, principal, progress=progress)
    for name in ("copied", "verified", "bytes", "failed"):
        result.setdefault(name, 0)
    return result
