"""Scheduled fixity audits with repair from the backup copy (R-FIX-1, R-BACKUP-1).

Every stored AIP version and every backup copy is re-hashed at least once per
``fixity.cycle_days``. Each run of the ``fixity`` job plans:

- what is due: never checked, or last checked before the cycle started
  (``now - cycle_days``);
- plus the share that keeps the cycle on time, the least recently checked:
  ``ceil(total * fixity_every_minutes / (cycle_days * 1440))``;
- with ``{"full": true}``: everything.

Records with status ``destroyed`` are skipped. Planning reads the index on
``package_versions.last_fixity_at`` (and ``backup_copies``' (store, key) rows), never the
objects, and hands out batches of ``scheduler.batch_size`` ids: ``{"packages": [...]}``
and ``{"backup_copies": [...]}``.

A package batch checks each object with ``archive.fixity.check_package`` (one streaming
pass, every digest, hashed in parallel threads while the next chunk is read; ranged reads
name the damaged files), ``fixity.workers`` objects at a time, throttled by one token
bucket on the bytes the batch reads (``fixity.max_bytes_per_second``), and records per
record one PREMIS ``fixity check`` event and each version's ``last_fixity_at``/outcome
(``preservation.fixity.record_checks``, shared with ``archive fixity check``), plus one
``fixity.check`` audit entry. A damaged or missing object is an alert; with
``fixity.repair`` the object's backup copy is re-read and checked against the
*catalog's* size and digests (never the copy's own row) and, only if every digest
matches, streamed over the damaged primary with ``replace_damaged`` (which refuses bytes
of another size or SHA-256), the primary is re-verified, and a PREMIS ``repair`` event
(source, digests before and after) and a ``fixity.repair`` audit entry are recorded. A
missing or damaged backup copy is never used: a failed ``repair`` event, the alert
"no good copy: manual recovery needed", and the copy is marked failed/missing.

A backup-copy batch verifies each copy (outcome ok, failed or missing; failures are
alerts) and repairs a damaged copy from a verified primary (delete, put, verify),
recorded as ``backup.repair``; one ``backup.verify`` audit entry per batch.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta

from sqlalchemy import and_, exists, func, or_, select

from archive import audit
from archive.errors import ArchiveError, ObjectNotFound
from archive.fixity import PackageCheck, check_package, verify_stored_object
from archive.models import BackupCopy, Event, PackageVersion, Record
from preservation.backup import DESTROYED, backup_store_of, run_inline
from preservation.fixity import PackageJob, load_package_jobs, record_checks
from preservation.jobspec import JobContext, JobSpec

NO_GOOD_COPY = "no good copy: manual recovery needed"
HEARTBEAT_SECONDS = 30  # while throttled, keep the batch's lease


# ---- the read throttle -----------------------------------------------------------------


class CheckAborted(Exception):  # noqa: N818 - not an ArchiveError: checks must not catch it
    """The batch stopped (lease lost, worker stopping): the other reads of it stop too."""


class Throttle:
    """A token bucket on bytes read: at most ``rate`` bytes per second on average
    (0: no limit). It starts empty, so ``n`` bytes take at least ``n / rate`` seconds.

    Shared by the threads of a batch. Only the thread that made it calls ``heartbeat``
    (the batch's thread, which also beats while it waits for the others); ``abort()``
    makes every later ``take`` raise :class:`CheckAborted`."""

    def __init__(self, rate: int, heartbeat: Callable[[], None] = lambda: None, *,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic):
        self.rate = max(0, int(rate))
        self._heartbeat = heartbeat
        self._sleep = sleep
        self._monotonic = monotonic
        self._start = monotonic()
        self._beat = self._start
        self._owner = threading.get_ident()
        self._lock = threading.Lock()
        self._aborted = False
        self.used = 0

    def abort(self) -> None:
        self._aborted = True

    def take(self, n: int) -> None:
        if self._aborted:
            raise CheckAborted("the fixity batch stopped")
        with self._lock:
            self.used += n
            used = self.used
        if not self.rate:
            return
        while (ahead := used / self.rate - (self._monotonic() - self._start)) > 0:
            self._sleep(min(ahead, HEARTBEAT_SECONDS))
            if self._aborted:
                raise CheckAborted("the fixity batch stopped")
            if (threading.get_ident() == self._owner
                    and self._monotonic() - self._beat >= HEARTBEAT_SECONDS):
                self._beat = self._monotonic()
                self._heartbeat()


class _ThrottledReader(io.RawIOBase):
    def __init__(self, raw, throttle: Throttle):
        super().__init__()
        self._raw, self._throttle = raw, throttle

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._raw.readinto(b) or 0
        self._throttle.take(n)
        return n

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class ThrottledStore:
    """Reads of ``store`` paced by ``throttle``; everything else passes through."""

    def __init__(self, store, throttle: Throttle):
        self._store, self._throttle = store, throttle

    def open(self, key: str, start: int = 0, length: int | None = None):
        return _ThrottledReader(self._store.open(key, start, length), self._throttle)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


# ---- planning ----------------------------------------------------------------------------


def _truthy(value) -> bool:
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def _pick(session, base, id_col, time_col, *, full: bool, cutoff, share_of) -> list[int]:
    """Ids of ``base`` to check: all (``full``), or never/long ago checked plus the
    ``share_of(total)`` least recently checked of the rest (index range scans)."""
    if full:
        return list(session.scalars(base.order_by(id_col)))
    total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    ids = list(session.scalars(base.where(time_col.is_(None)).order_by(id_col)))
    ids += session.scalars(base.where(time_col < cutoff).order_by(time_col, id_col))
    share = share_of(total)
    if share:
        ids += session.scalars(base.where(time_col >= cutoff).order_by(time_col, id_col)
                               .limit(share))
    return ids


def plan(ctx: JobContext, params: dict) -> list[dict]:
    settings = ctx.instance.settings
    cycle_days = max(1, settings.fixity.cycle_days)
    interval = max(0, settings.scheduler.fixity_every_minutes)
    cutoff = ctx.clock.now() - timedelta(days=cycle_days)
    full = _truthy(params.get("full", False))

    def share_of(total: int) -> int:
        return math.ceil(total * interval / (cycle_days * 1440))

    backup = backup_store_of(ctx.instance)
    with ctx.instance.catalog.unit_of_work(snapshot=True) as session:
        packages = _pick(
            session,
            select(PackageVersion.id).join(Record, Record.id == PackageVersion.record_id)
            .where(Record.status != DESTROYED),
            PackageVersion.id, PackageVersion.last_fixity_at,
            full=full, cutoff=cutoff, share_of=share_of)
        copies: list[int] = []
        if backup is not None:
            destroyed = exists().where(and_(Record.id == BackupCopy.record_id,
                                            Record.status == DESTROYED))
            copies = _pick(
                session,
                select(BackupCopy.id).where(BackupCopy.store == backup.name,
                                            BackupCopy.deleted_at.is_(None),
                                            or_(BackupCopy.record_id.is_(None), ~destroyed)),
                BackupCopy.id, BackupCopy.last_verified_at,
                full=full, cutoff=cutoff, share_of=share_of)
    size = max(1, settings.scheduler.batch_size)
    return ([{"packages": packages[i:i + size]} for i in range(0, len(packages), size)]
            + [{"backup_copies": copies[i:i + size]} for i in range(0, len(copies), size)])


# ---- primary objects -----------------------------------------------------------------


def run_batch(ctx: JobContext, batch: dict) -> dict[str, int]:
    throttle = Throttle(ctx.instance.settings.fixity.max_bytes_per_second, ctx.heartbeat)
    if "packages" in batch:
        return _check_packages(ctx, batch["packages"], throttle)
    return _check_copies(ctx, batch.get("backup_copies", []), throttle)


def _check_packages(ctx: JobContext, ids: list[int], throttle: Throttle) -> dict[str, int]:
    instance = ctx.instance
    chunk = instance.settings.fixity.chunk_size
    jobs = load_package_jobs(instance.catalog, version_ids=ids)
    with instance.catalog.unit_of_work(snapshot=True) as session:
        destroyed = set(session.scalars(select(Record.id).where(
            Record.id.in_({j.record_id for j in jobs}), Record.status == DESTROYED)))
    jobs = [j for j in jobs if j.record_id not in destroyed]
    store = ThrottledStore(instance.store, throttle)

    def check(job: PackageJob) -> tuple[PackageJob, PackageCheck]:
        return job, check_package(store, job.key, job.size, job.digests, job.members,
                                  chunk_size=chunk)

    done = _check_all(ctx, jobs, check, throttle,
                      max(1, min(instance.settings.fixity.workers, len(jobs))))
    bad = [(job, check) for job, check in done if not check.ok]
    counts = {"checked": len(done), "ok": len(done) - len(bad), "failed": len(bad),
              "missing": sum(any(p.code == "missing" for p in c.problems) for _, c in bad),
              "bytes": sum(c.size for _, c in done), "repaired": 0, "unrepaired": 0}
    # The damage is on record before any repair is tried.
    with instance.catalog.unit_of_work() as session:
        record_checks(session, ctx.principal, ctx.clock.now(), done)
        audit.append(session, ctx.principal, "fixity.check", f"run:{ctx.run_id}",
                     outcome="failed" if bad else "ok",
                     detail={"packages_checked": len(done), "bytes_read": counts["bytes"],
                             "failures": [job.key for job, _ in bad][:100]},
                     clock=ctx.clock)
    for job, check in bad:
        ctx.alert(f"fixity: {job.key} (record {job.record_id}) is damaged: "
                  + "; ".join(p.message for p in check.problems))
        if not instance.settings.fixity.repair:
            counts["unrepaired"] += 1
            continue
        ctx.heartbeat()
        repaired = _repair_primary(ctx, job, check, throttle)
        counts["repaired" if repaired else "unrepaired"] += 1
    return counts


def _check_all(ctx: JobContext, jobs: list[PackageJob], check, throttle: Throttle,
               workers: int) -> list[tuple[PackageJob, PackageCheck]]:
    """``check`` every job, ``workers`` at a time; results in the order of ``jobs``.

    This thread keeps the batch's lease (``ctx.heartbeat()`` between items and every
    ``HEARTBEAT_SECONDS`` while waiting); when it raises (lease lost, worker stopping)
    the checks not started are cancelled and the running ones stop at their next read.
    """
    if workers <= 1:
        done = []
        for job in jobs:
            ctx.heartbeat()
            done.append(check(job))
        return done
    pool = ThreadPoolExecutor(workers, thread_name_prefix="fixity-check")
    try:
        futures = [pool.submit(check, job) for job in jobs]
        done = []
        for future in futures:
            ctx.heartbeat()
            while True:
                try:
                    done.append(future.result(timeout=HEARTBEAT_SECONDS))
                    break
                except FutureTimeout:
                    ctx.heartbeat()
        return done
    except BaseException:
        throttle.abort()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _before(check: PackageCheck) -> dict:
    """What the damaged object held, as found by the check."""
    return {"size": check.size, "problems": [p.to_dict() for p in check.problems],
            "damaged_files": [d.to_dict() for d in check.damaged_members]}


def _repair_primary(ctx: JobContext, job: PackageJob, check: PackageCheck,
                    throttle: Throttle) -> bool:
    """Replace a damaged primary object from its backup copy, verified first against
    the catalog's digests. Returns whether the primary is whole again."""
    instance = ctx.instance
    backup = backup_store_of(instance)
    chunk = instance.settings.fixity.chunk_size
    copy_id = None
    if backup is not None:
        with instance.catalog.unit_of_work(snapshot=True) as session:
            copy_id = session.scalar(select(BackupCopy.id).where(
                BackupCopy.store == backup.name, BackupCopy.object_key == job.key,
                BackupCopy.deleted_at.is_(None)))
    if copy_id is None:
        why = ("backups are off" if backup is None
               else f"no backup copy of it in {backup.name}")
        return _no_good_copy(ctx, job, check, why, None, None)
    try:
        verify_stored_object(ThrottledStore(backup, throttle), job.key, job.size,
                             job.digests, chunk_size=chunk)
    except ObjectNotFound:
        return _no_good_copy(ctx, job, check, f"the backup copy in {backup.name} is missing",
                             copy_id, "missing")
    except ArchiveError as exc:
        return _no_good_copy(ctx, job, check, f"the backup copy in {backup.name} does not "
                             f"match the catalog: {exc.message}", copy_id, "failed")
    try:
        with ThrottledStore(backup, throttle).open(job.key) as source:
            result = instance.store.replace_damaged(
                job.key, source, size=job.size, sha256=job.digests["sha256"],
                algorithms=tuple(job.digests))
        verify_stored_object(instance.store, job.key, job.size, job.digests,
                             chunk_size=chunk)
    except ArchiveError as exc:
        message = f"repair of {job.key} from {backup.name} failed: {exc.message}"
        ctx.alert(message)
        _record_repair(ctx, job, "failure", message,
                       {"source": backup.name, "key": job.key, "before": _before(check),
                        "error": exc.message}, copy_id=None, copy_outcome=None)
        return False
    _record_repair(ctx, job, "success",
                   f"{job.key} replaced from the verified backup copy in {backup.name}",
                   {"source": backup.name, "key": job.key, "before": _before(check),
                    "after": {"size": result.size, "digests": result.digests}},
                   copy_id=copy_id, copy_outcome="ok", repaired=True)
    return True


def _no_good_copy(ctx: JobContext, job: PackageJob, check: PackageCheck, why: str,
                  copy_id: int | None, copy_outcome: str | None) -> bool:
    ctx.alert(f"fixity: {job.key} (record {job.record_id}): {NO_GOOD_COPY} ({why})")
    _record_repair(ctx, job, "failure", f"{NO_GOOD_COPY}: {why}",
                   {"key": job.key, "before": _before(check), "reason": why},
                   copy_id=copy_id, copy_outcome=copy_outcome)
    return False


def _record_repair(ctx: JobContext, job: PackageJob, outcome: str, detail: str, data: dict,
                   *, copy_id: int | None, copy_outcome: str | None,
                   repaired: bool = False) -> None:
    now = ctx.clock.now()
    with ctx.instance.catalog.unit_of_work() as session:
        session.add(Event(id=str(uuid.uuid4()), record_id=job.record_id, event_type="repair",
                          occurred_at=now, agent=str(ctx.principal), outcome=outcome,
                          detail=detail, data=data))
        if repaired:
            version = session.get(PackageVersion, job.version_id)
            version.last_fixity_at = now
            version.last_fixity_outcome = "ok"
        if copy_id is not None and copy_outcome is not None:
            row = session.get(BackupCopy, copy_id)
            row.last_verified_at = now
            row.last_outcome = copy_outcome
        audit.append(session, ctx.principal, "fixity.repair", f"record:{job.record_id}",
                     outcome="ok" if repaired else "failed",
                     detail={"key": job.key, "detail": detail,
                             "source": data.get("source"), "run": ctx.run_id},
                     clock=ctx.clock)


# ---- backup copies ---------------------------------------------------------------------


def _reference(session, row: BackupCopy) -> tuple[int, dict]:
    """Size and digests a copy must have: the catalog's for an AIP, else the copy's row
    (recorded after the copy was verified against the primary's bytes)."""
    if row.kind == "aip":
        version = session.execute(select(PackageVersion.size, PackageVersion.digests)
                                  .where(PackageVersion.storage_key == row.object_key)).first()
        if version is not None:
            return version.size, dict(version.digests)
    return row.size, dict(row.digests)


def _check_copies(ctx: JobContext, ids: list[int], throttle: Throttle) -> dict[str, int]:
    instance = ctx.instance
    backup = backup_store_of(instance)
    counts = {"copies_checked": 0, "copies_ok": 0, "copies_failed": 0, "copies_missing": 0,
              "copies_repaired": 0, "bytes": 0}
    if backup is None:
        return counts
    chunk = instance.settings.fixity.chunk_size
    with instance.catalog.unit_of_work(snapshot=True) as session:
        rows = session.scalars(select(BackupCopy).where(BackupCopy.id.in_(ids),
                                                        BackupCopy.store == backup.name,
                                                        BackupCopy.deleted_at.is_(None))
                               .order_by(BackupCopy.id)).all()
        todo = [(row.id, row.object_key, row.record_id, *_reference(session, row))
                for row in rows]
    outcomes: dict[int, str] = {}
    problems: list[str] = []
    repairs: list[tuple[int, str, str | None, str, str]] = []
    for copy_id, key, record_id, size, digests in todo:
        ctx.heartbeat()
        counts["copies_checked"] += 1
        try:
            verify_stored_object(ThrottledStore(backup, throttle), key, size, digests,
                                 chunk_size=chunk)
            outcomes[copy_id] = "ok"
            counts["copies_ok"] += 1
            counts["bytes"] += size
            continue
        except ObjectNotFound:
            outcome, why = "missing", "missing"
        except ArchiveError as exc:
            outcome, why = "failed", exc.message
        counts[f"copies_{outcome}"] += 1
        outcomes[copy_id] = outcome
        problems.append(f"{key}: {why}")
        ctx.alert(f"backup copy {key} in {backup.name} is {outcome}: {why}")
        if instance.settings.fixity.repair:
            ctx.heartbeat()
            fixed, message = _repair_copy(instance, backup, key, size, digests, throttle)
            repairs.append((copy_id, key, record_id, "ok" if fixed else "failed", message))
            if fixed:
                outcomes[copy_id] = "ok"
                counts["copies_repaired"] += 1
            else:
                ctx.alert(message)
    now = ctx.clock.now()
    with instance.catalog.unit_of_work() as session:
        for copy_id, outcome in outcomes.items():
            row = session.get(BackupCopy, copy_id)
            row.last_verified_at = now
            row.last_outcome = outcome
        for _copy_id, key, record_id, outcome, message in repairs:
            audit.append(session, ctx.principal, "backup.repair", f"object:{key}",
                         outcome=outcome, clock=ctx.clock,
                         detail={"store": backup.name, "record": record_id,
                                 "detail": message, "run": ctx.run_id})
        audit.append(session, ctx.principal, "backup.verify", f"store:{backup.name}",
                     outcome="failed" if problems else "ok", clock=ctx.clock,
                     detail={**counts, "run": ctx.run_id, "problems": problems[:100]})
    return counts


def _repair_copy(instance, backup, key: str, size: int, digests: dict,
                 throttle: Throttle) -> tuple[bool, str]:
    """Rewrite a damaged backup copy from the primary, once the primary is verified."""
    chunk = instance.settings.fixity.chunk_size
    primary = ThrottledStore(instance.store, throttle)
    try:
        verify_stored_object(primary, key, size, digests, chunk_size=chunk)
    except ArchiveError as exc:
        return False, (f"backup copy {key} not repaired: the primary does not verify "
                       f"either ({exc.message}); {NO_GOOD_COPY}")
    try:
        with contextlib.suppress(ObjectNotFound):
            backup.delete(key)
        with primary.open(key) as source:
            backup.put(key, source, size=size, algorithms=tuple(digests),
                       sha256=digests.get("sha256"))
        verify_stored_object(backup, key, size, digests, chunk_size=chunk)
    except ArchiveError as exc:
        return False, f"backup copy {key} not repaired: {exc.message}"
    return True, f"backup copy {key} rewritten from the verified primary"


JOB = JobSpec(
    name="fixity",
    description="Re-hash the stored objects and backup copies due in this fixity cycle; "
                "repair damage from a verified copy (R-FIX-1)",
    plan=plan, run_batch=run_batch,
    interval_setting="fixity_every_minutes",
    param_help={"full": "check every object now"},
)


def run_cycle(instance, principal, *, full: bool = False) -> dict:
    """One fixity run in this process (tests, benchmarks): counts and ``alerts``."""
    return run_inline(instance, JOB, principal, {"full": full})
