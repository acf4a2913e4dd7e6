"""The job runner (R-SCHED-1, R-INCIDENT-1): runs recorded, batches leased, failures
raised as alerts.

A run is a ``job_runs`` row; its batches (``job_batches``) are claimed by whichever
worker asks first, under a lease (``scheduler.lease_seconds``) that the worker extends
between items. On PostgreSQL a claim is ``SELECT ... FOR UPDATE SKIP LOCKED``, so any
number of ``archive worker`` processes on any machines share a run; on SQLite the write
lock of ``BEGIN IMMEDIATE`` serialises claims. A worker that dies leaves its lease to
expire: the batch becomes claimable again (``run_batch`` is idempotent). A batch is
recorded done exactly once, by the worker that still holds its lease (a guarded
``UPDATE``); a worker that lost its lease has its result discarded (and logged).

When no batch is left open, the run is finished exactly once (guarded update of a
``running`` run): the job's ``finish`` hook, the outcome (``ok``, or ``failed`` when a
batch failed or the job raised), the ``job.finish`` audit entry and, for a failed run or
a run with alerts, an alert: logged at ERROR/WARNING, shown by ``/healthz`` and sent as
a notification to each of ``scheduler.alert_recipients``.

Only one run of a job is running at a time, cluster-wide: starting another is refused
(:class:`JobAlreadyRunning`) unless the running one is stale (no live lease and nothing
happened for a lease period), which is then closed as failed ("abandoned").
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, text, update

from archive import audit, policy
from archive.errors import ArchiveError, NotFound, Refused
from archive.models import JobBatch, JobRun
from archive.notifications import record_notification
from archive.principal import Principal
from preservation import registry
from preservation.jobspec import JobContext, JobSpec

log = logging.getLogger("archive.jobs")

RUNNING, OK, FAILED = "running", "ok", "failed"
PENDING, LEASED, DONE = "pending", "leased", "done"
OPEN = (PENDING, LEASED)
TRIGGERS = ("manual", "schedule", "server")
MAX_ATTEMPTS = 5  # a batch whose lease expired this often (it kills workers) fails
MAX_ERRORS = 200  # errors and alerts kept on a run
_counter = itertools.count(1)


class JobAlreadyRunning(Refused):
    """A run of this job is already in progress (exit 3)."""


class LeaseLost(Exception):  # noqa: N818 - not an ArchiveError: job code must not catch it
    """The worker no longer holds the lease of its batch: its result is discarded."""


class WorkerStopping(Exception):  # noqa: N818
    """The worker was asked to stop (SIGTERM/SIGINT) in the middle of a batch."""


def job_principal(name: str) -> Principal:
    """The accountable principal of a job (R-SCHED-1)."""
    return Principal.system(f"job:{name}")


def new_worker_id() -> str:
    """``host:pid:n``: who claims and completes batches."""
    return f"{socket.gethostname()}:{os.getpid()}:{next(_counter)}"


def _lease(instance) -> timedelta:
    return timedelta(seconds=max(1, instance.settings.scheduler.lease_seconds))


def _entry(now: datetime, kind: str, message: str, batch: int | None = None) -> dict:
    return {"at": now.isoformat(), "kind": kind, "batch": batch, "message": message[:2000]}


def _add_errors(run: JobRun, entries: list[dict]) -> None:
    if entries:
        run.errors = (list(run.errors or []) + entries)[:MAX_ERRORS]


def _job_lock(session, job: str) -> None:
    """Serialise starts of one job across processes (PostgreSQL advisory lock; SQLite's
    BEGIN IMMEDIATE already holds the write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"job:{job}".encode()).digest()[:8], "big",
                             signed=True)
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


# ---- starting a run -------------------------------------------------------------------


def start_run(instance, job_name: str, *, trigger: str, principal: Principal | None = None,
              params: dict | None = None) -> str:
    """Record a run of ``job_name``, plan its batches; returns the run id.

    Refused (:class:`JobAlreadyRunning`) while another run of the job is running and
    not stale. ``principal`` is who asked (a person or operator for a manual run); the
    run's accountable principal is the job's own unless a person started it.
    """
    spec = registry.get(job_name)
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}")
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.param_help))
    if unknown:
        from archive.errors import InputError

        raise InputError(f"job {job_name} takes no parameter {', '.join(unknown)} "
                         f"(known: {', '.join(spec.param_help) or 'none'})")
    accountable = principal or job_principal(job_name)
    reclaim(instance, job=job_name)
    clock = instance.clock
    run_id = str(uuid.uuid4())
    with instance.catalog.unit_of_work() as session:
        _job_lock(session, job_name)
        running = session.scalar(select(JobRun).where(JobRun.job == job_name,
                                                      JobRun.status == RUNNING)
                                 .order_by(JobRun.started_at).limit(1))
        if running is not None:
            message = (f"job {job_name} is already running (run {running.id}, started "
                       f"{running.started_at.isoformat()} by {running.principal})")
            exc = JobAlreadyRunning(message)
            exc.audit_after_rollback = {"principal": accountable, "action": "job.start",
                                        "target": f"job:{job_name}", "outcome": "refused",
                                        "detail": {"reason": message, "trigger": trigger},
                                        "clock": clock}
            raise exc
        now = clock.now()
        session.add(JobRun(id=run_id, job=job_name, trigger=trigger,
                           principal=str(accountable)[:200], status=RUNNING, started_at=now,
                           params=params, batches_total=0, batches_done=0, counts={},
                           errors=[]))
        audit.append(session, accountable, "job.start", f"job-run:{run_id}", clock=clock,
                     detail={"job": job_name, "trigger": trigger, "params": params})
    ctx = _context(instance, spec, run_id, params, "planner")
    try:
        batches = spec.plan(ctx, params)
    except Exception as exc:  # noqa: BLE001 - a failed plan fails the run, with the reason
        message = exc.message if isinstance(exc, ArchiveError) else f"{type(exc).__name__}: {exc}"
        log.debug("plan of %s failed:\n%s", job_name, traceback.format_exc())
        with instance.catalog.unit_of_work() as session:
            run = _lock_run(session, run_id)
            _add_errors(run, [_entry(clock.now(), "error", f"planning failed: {message}")])
        _finalize(instance, spec, run_id, run_hook=False)
        return run_id
    with instance.catalog.unit_of_work() as session:
        run = _lock_run(session, run_id)
        for seq, batch in enumerate(batches, 1):
            session.add(JobBatch(run_id=run_id, seq=seq, params=batch, status=PENDING,
                                 attempts=0))
        run.batches_total = len(batches)
        _add_errors(run, [_entry(clock.now(), "alert", a) for a in ctx.alerts])
    if not batches:
        _finalize(instance, spec, run_id)
    return run_id


def _lock_run(session, run_id: str) -> JobRun:
    return session.execute(select(JobRun).where(JobRun.id == run_id).with_for_update()
                           .execution_options(populate_existing=True)).scalar_one()


def _context(instance, spec: JobSpec, run_id: str, params: dict, worker: str,
             heartbeat: Callable[[], None] | None = None) -> JobContext:
    ctx = JobContext(instance=instance, run_id=run_id, job=spec.name,
                     principal=job_principal(spec.name), clock=instance.clock,
                     worker=worker, params=dict(params))
    if heartbeat is not None:
        ctx.heartbeat = heartbeat
    return ctx


# ---- claiming and completing batches ----------------------------------------------------


@dataclass
class Claim:
    """A batch this worker holds under a lease."""

    batch_id: int
    run_id: str
    job: str
    seq: int
    params: dict
    run_params: dict
    attempts: int
    lease_expires_at: datetime


def claim_batch(instance, worker_id: str, *, job: str | None = None,
                run_id: str | None = None) -> Claim | None:
    """Lease one claimable batch (pending, or leased with an expired lease), oldest
    first; None when there is none."""
    clock = instance.clock
    with instance.catalog.unit_of_work() as session:
        while True:
            now = clock.now()
            query = (select(JobBatch, JobRun.job, JobRun.params)
                     .join(JobRun, JobRun.id == JobBatch.run_id)
                     .where(JobRun.status == RUNNING,
                            or_(JobBatch.status == PENDING,
                                and_(JobBatch.status == LEASED,
                                     JobBatch.lease_expires_at < now)))
                     .order_by(JobBatch.id).limit(1)
                     .with_for_update(skip_locked=True, of=JobBatch)
                     .execution_options(populate_existing=True))
            if job is not None:
                query = query.where(JobRun.job == job)
            if run_id is not None:
                query = query.where(JobRun.id == run_id)
            row = session.execute(query).first()
            if row is None:
                return None
            batch, job_name, run_params = row
            if batch.status == LEASED:
                log.warning("batch %s of run %s (%s): the lease of %s expired; reclaimed by "
                            "%s", batch.seq, batch.run_id, job_name, batch.lease_owner,
                            worker_id)
                if batch.attempts >= MAX_ATTEMPTS:
                    message = (f"abandoned after {batch.attempts} attempts whose leases "
                               f"expired (last holder {batch.lease_owner})")
                    batch.status = FAILED
                    batch.error = message
                    batch.finished_at = now
                    batch.lease_expires_at = None
                    _add_errors(_lock_run(session, batch.run_id),
                                [_entry(now, "error", message, batch.seq)])
                    continue
            batch.status = LEASED
            batch.lease_owner = worker_id[:200]
            batch.lease_expires_at = now + _lease(instance)
            batch.attempts = (batch.attempts or 0) + 1
            batch.started_at = now
            return Claim(batch.id, batch.run_id, job_name, batch.seq, dict(batch.params or {}),
                         dict(run_params or {}), batch.attempts, batch.lease_expires_at)


def heartbeat(instance, claim: Claim, worker_id: str) -> bool:
    """Extend the lease if this worker still holds it; False when it was lost."""
    with instance.catalog.unit_of_work() as session:
        expires = instance.clock.now() + _lease(instance)
        result = session.execute(
            update(JobBatch).where(JobBatch.id == claim.batch_id,
                                   JobBatch.lease_owner == worker_id[:200],
                                   JobBatch.status == LEASED)
            .values(lease_expires_at=expires))
        if result.rowcount == 1:
            claim.lease_expires_at = expires
            return True
    return False


def _close_leased(session, claim: Claim, worker_id: str, now: datetime, what: str,
                  **values) -> bool:
    """Close the batch only if ``worker_id`` still holds its lease (a guarded update):
    a batch is recorded done (or failed) exactly once."""
    result = session.execute(
        update(JobBatch).where(JobBatch.id == claim.batch_id,
                               JobBatch.lease_owner == worker_id[:200],
                               JobBatch.status == LEASED)
        .values(done_by=worker_id[:200], finished_at=now, lease_expires_at=None, **values))
    if result.rowcount == 1:
        return True
    log.warning("batch %s of run %s (%s): %s lost its lease; its %s is discarded (another "
                "worker does or did the batch)", claim.seq, claim.run_id, claim.job,
                worker_id, what)
    return False


def complete_batch(instance, claim: Claim, worker_id: str, counts: dict[str, int],
                   alerts: list[str] | None = None) -> bool:
    """Record the batch done by ``worker_id`` and add its counts to the run; False (the
    result discarded) when the worker no longer holds the lease."""
    clock = instance.clock
    with instance.catalog.unit_of_work() as session:
        now = clock.now()
        if not _close_leased(session, claim, worker_id, now, f"result {counts}",
                             status=DONE, result=_clean_counts(counts)):
            return False
        run = _lock_run(session, claim.run_id)
        run.counts = _sum(run.counts or {}, _clean_counts(counts))
        run.batches_done = (run.batches_done or 0) + 1
        _add_errors(run, [_entry(now, "alert", a, claim.seq) for a in alerts or ()])
    _maybe_finish(instance, claim.run_id)
    return True


def fail_batch(instance, claim: Claim, worker_id: str, error: str,
               alerts: list[str] | None = None) -> bool:
    """Record the batch failed (the run will fail); False when the lease was lost."""
    clock = instance.clock
    with instance.catalog.unit_of_work() as session:
        now = clock.now()
        if not _close_leased(session, claim, worker_id, now, f"failure ({error})",
                             status=FAILED, error=error[:10000]):
            return False
        run = _lock_run(session, claim.run_id)
        _add_errors(run, [_entry(now, "alert", a, claim.seq) for a in alerts or ()]
                    + [_entry(now, "error", error, claim.seq)])
    log.error("job %s run %s: batch %s failed: %s", claim.job, claim.run_id, claim.seq,
              error)
    _maybe_finish(instance, claim.run_id)
    return True


def release_batch(instance, claim: Claim, worker_id: str) -> bool:
    """Give a leased batch back (a worker stopping cleanly): pending again at once."""
    with instance.catalog.unit_of_work() as session:
        result = session.execute(
            update(JobBatch).where(JobBatch.id == claim.batch_id,
                                   JobBatch.lease_owner == worker_id[:200],
                                   JobBatch.status == LEASED)
            .values(status=PENDING, lease_owner=None, lease_expires_at=None))
        return result.rowcount == 1


def _clean_counts(counts) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, value in (counts or {}).items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"run_batch must return str -> int counts, got {key}={value!r}")
        out[str(key)] = value
    return out


def _sum(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        out[key] = out.get(key, 0) + value
    return out


# ---- finishing runs ---------------------------------------------------------------------


def _open_batches(session, run_id: str) -> int:
    return session.scalar(select(func.count()).select_from(JobBatch)
                          .where(JobBatch.run_id == run_id, JobBatch.status.in_(OPEN))) or 0


def _maybe_finish(instance, run_id: str) -> None:
    with instance.catalog.unit_of_work(snapshot=True) as session:
        run = session.get(JobRun, run_id)
        if run is None or run.status != RUNNING or run.finished_at is not None:
            return
        if _open_batches(session, run_id):
            return
        job = run.job
    _finalize(instance, registry.JOBS.get(job), run_id)


def _finalize(instance, spec: JobSpec | None, run_id: str, *, run_hook: bool = True,
              abandoned: str | None = None) -> bool:
    """Finish a running run exactly once; True when this call finished it.

    Claims the finish first (``finished_at`` set on a running run, guarded), runs the
    ``finish`` hook, then records the outcome, the audit entry and the alert.
    """
    clock = instance.clock
    with instance.catalog.unit_of_work() as session:
        claimed = session.execute(
            update(JobRun).where(JobRun.id == run_id, JobRun.status == RUNNING,
                                 JobRun.finished_at.is_(None))
            .values(finished_at=clock.now()))
        if claimed.rowcount != 1:
            return False
        run = _lock_run(session, run_id)
        counts, params, job = dict(run.counts or {}), dict(run.params or {}), run.job
    extra: dict[str, int] = {}
    entries: list[dict] = []
    if spec is not None and spec.finish is not None and run_hook and abandoned is None:
        ctx = _context(instance, spec, run_id, params, new_worker_id())
        try:
            extra = _clean_counts(spec.finish(ctx, counts) or {})
        except Exception as exc:  # noqa: BLE001 - recorded as the run's failure
            message = exc.message if isinstance(exc, ArchiveError) else \
                f"{type(exc).__name__}: {exc}"
            entries.append(_entry(clock.now(), "error", f"finish failed: {message}"))
        entries += [_entry(clock.now(), "alert", a) for a in ctx.alerts]
    return _record_outcome(instance, run_id, job, extra, entries, abandoned)


def _record_outcome(instance, run_id: str, job: str, extra: dict, entries: list[dict],
                    abandoned: str | None) -> bool:
    clock = instance.clock
    settings = instance.settings
    with instance.catalog.unit_of_work() as session:
        run = _lock_run(session, run_id)
        if run.status != RUNNING:
            return False
        now = clock.now()
        if abandoned is not None:
            for batch in session.scalars(select(JobBatch).where(
                    JobBatch.run_id == run_id, JobBatch.status.in_(OPEN))):
                batch.status = FAILED
                batch.error = abandoned
                batch.finished_at = now
                batch.lease_expires_at = None
            entries = [*entries, _entry(now, "error", abandoned)]
        run.counts = _sum(run.counts or {}, extra)
        _add_errors(run, entries)
        failed_batches = session.scalar(select(func.count()).select_from(JobBatch).where(
            JobBatch.run_id == run_id, JobBatch.status == FAILED)) or 0
        errors = [e for e in run.errors or [] if e.get("kind") == "error"]
        alerts = [e for e in run.errors or [] if e.get("kind") == "alert"]
        run.status = FAILED if failed_batches or errors else OK
        run.finished_at = now
        outcome = run.status
        audit.append(session, job_principal(job), "job.finish", f"job-run:{run_id}",
                     outcome="ok" if outcome == OK else "failed", clock=clock,
                     detail={"job": job, "status": outcome, "counts": run.counts,
                             "batches": run.batches_total, "failed_batches": failed_batches,
                             "errors": len(errors), "alerts": len(alerts)})
        notify = outcome == FAILED or bool(alerts)
        if notify:
            what = "failed" if outcome == FAILED else "needs attention"
            lines = [f"{e['message']}" for e in (errors + alerts)[:20]]
            body = (f"Job {job}, run {run_id} (trigger {run.trigger}, started "
                    f"{run.started_at.isoformat()}) {what}.\n\n" + "\n".join(lines) +
                    f"\n\narchive jobs show {run_id}")
            for recipient in settings.scheduler.alert_recipients:
                record_notification(session, recipient=recipient, kind="job.alert",
                                    subject=f"Job {job} {what}", body=body,
                                    related=f"job-run:{run_id}", clock=clock)
    if outcome == FAILED:
        log.error("ALERT job %s run %s failed: %s", job, run_id,
                  "; ".join(e["message"] for e in errors[:5]))
    elif alerts:
        log.warning("ALERT job %s run %s needs attention: %s", job, run_id,
                    "; ".join(e["message"] for e in alerts[:5]))
    else:
        log.info("job %s run %s finished ok: %s", job, run_id, run.counts)
    if notify and settings.scheduler.alert_recipients:
        _deliver(instance, run_id)
    return True


def _deliver(instance, run_id: str) -> None:
    from preservation.notify import deliver_pending

    try:
        deliver_pending(instance.settings, instance.catalog, related=f"job-run:{run_id}",
                        clock=instance.clock)
    except ArchiveError as exc:  # the outbox keeps them; the notifications job retries
        log.warning("alert notifications of run %s not delivered now: %s", run_id,
                    exc.message)


def reclaim(instance, *, job: str | None = None) -> int:
    """Finish runs a dead worker left behind; returns how many were closed.

    - every batch done or failed, the run still running: finished now;
    - the finish claimed but never recorded (the finisher died): recorded now;
    - no live lease and nothing done for a lease period: closed as failed (abandoned).
    """
    clock = instance.clock
    lease = _lease(instance)
    now = clock.now()
    closed = 0
    with instance.catalog.unit_of_work(snapshot=True) as session:
        query = select(JobRun).where(JobRun.status == RUNNING)
        if job is not None:
            query = query.where(JobRun.job == job)
        candidates = []
        for run in session.scalars(query):
            stats = session.execute(
                select(func.count().filter(JobBatch.status.in_(OPEN)),
                       func.count().filter(and_(JobBatch.status == LEASED,
                                                JobBatch.lease_expires_at >= now)),
                       func.max(JobBatch.started_at), func.max(JobBatch.finished_at))
                .where(JobBatch.run_id == run.id)).one()
            open_, live, claimed, finished = stats
            activity = max(t for t in (run.started_at, claimed, finished) if t is not None)
            if run.finished_at is not None:
                if now - run.finished_at > lease:
                    candidates.append((run.id, run.job, "hook"))
            elif run.batches_total and not open_:
                candidates.append((run.id, run.job, "done"))
            elif not live and now - activity > lease:
                candidates.append((run.id, run.job, "stale"))
    for run_id, job_name, why in candidates:
        spec = registry.JOBS.get(job_name)
        if why == "done":
            closed += _finalize(instance, spec, run_id)
        elif why == "hook":
            closed += _record_outcome(instance, run_id, job_name, {}, [_entry(
                now, "error", "the worker finishing the run stopped before recording it")],
                None)
        else:
            closed += _finalize(instance, spec, run_id, abandoned=(
                f"abandoned: no worker held or finished a batch for "
                f"{int(lease.total_seconds())} s (are `archive worker` processes running?)"))
    return closed


# ---- doing batches ------------------------------------------------------------------------


class _Beat:
    """``ctx.heartbeat``: extends the lease at most every third of it; raises when the
    lease was lost or the worker must stop."""

    def __init__(self, instance, claim: Claim, worker_id: str,
                 stop: threading.Event | None):
        self.instance, self.claim, self.worker_id, self.stop = instance, claim, worker_id, stop
        self.every = max(0.2, instance.settings.scheduler.lease_seconds / 3)
        self.last = time.monotonic()

    def __call__(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise WorkerStopping("the worker is stopping")
        if time.monotonic() - self.last < self.every:
            return
        if not heartbeat(self.instance, self.claim, self.worker_id):
            raise LeaseLost(f"batch {self.claim.seq} of run {self.claim.run_id}: lease lost")
        self.last = time.monotonic()


def execute(instance, claim: Claim, worker_id: str, *,
            stop: threading.Event | None = None) -> str:
    """Run one claimed batch; returns done | failed | lost | released."""
    spec = registry.JOBS.get(claim.job)
    if spec is None:
        fail_batch(instance, claim, worker_id, f"no job named {claim.job!r} in this worker "
                                                "(update the worker)")
        return FAILED
    beat = _Beat(instance, claim, worker_id, stop)
    ctx = _context(instance, spec, claim.run_id, claim.run_params, worker_id, beat)
    try:
        counts = spec.run_batch(ctx, claim.params) or {}
        counts = _clean_counts(counts)
    except LeaseLost as exc:
        log.warning("%s: %s; the batch's result is discarded", worker_id, exc)
        return "lost"
    except WorkerStopping:
        release_batch(instance, claim, worker_id)
        return "released"
    except Exception as exc:  # noqa: BLE001 - a failed batch is recorded, the run fails
        message = exc.message if isinstance(exc, ArchiveError) else f"{type(exc).__name__}: {exc}"
        log.debug("batch %s of %s failed:\n%s", claim.seq, claim.job, traceback.format_exc())
        return FAILED if fail_batch(instance, claim, worker_id, message, ctx.alerts) else "lost"
    return DONE if complete_batch(instance, claim, worker_id, counts, ctx.alerts) else "lost"


def work(instance, worker_id: str, stop: threading.Event, *, job: str | None = None,
         once: bool = False, poll_seconds: float | None = None,
         on_batch: Callable[[Claim, str], None] | None = None) -> int:
    """The worker loop: claim, run, record; wait ``scheduler.poll_seconds`` when idle.

    Stops when ``stop`` is set (a batch in progress is given back at its next
    heartbeat) or, with ``once``, when nothing is left to claim. Returns the number of
    batches this worker did.
    """
    poll = instance.settings.scheduler.poll_seconds if poll_seconds is None else poll_seconds
    done = 0
    last_reclaim = 0.0
    while not stop.is_set():
        try:
            claim = claim_batch(instance, worker_id, job=job)
        except ArchiveError as exc:  # database down: say so and retry
            log.error("%s: cannot claim a batch: %s", worker_id, exc.message)
            claim = None
            if once:
                raise
        if claim is None:
            if time.monotonic() - last_reclaim > max(poll, 1) * 6:
                last_reclaim = time.monotonic()
                try:
                    reclaim(instance, job=job)
                except ArchiveError as exc:
                    log.error("%s: reclaiming runs failed: %s", worker_id, exc.message)
            if once:
                break
            stop.wait(poll)
            continue
        outcome = execute(instance, claim, worker_id, stop=stop)
        if outcome in (DONE, FAILED):
            done += 1
        if on_batch is not None:
            on_batch(claim, outcome)
    return done


def run_now(instance, job_name: str, *, trigger: str = "manual",
            principal: Principal | None = None, params: dict | None = None,
            wait: bool = True, worker_id: str | None = None,
            progress: Callable[[int, int], None] | None = None,
            stop: threading.Event | None = None) -> str:
    """Start a run and work its batches in this process (other workers may help);
    with ``wait``, return once the run is finished. ``progress(done, total)``."""
    run_id = start_run(instance, job_name, trigger=trigger, principal=principal,
                       params=params)
    if not wait:
        return run_id
    worker_id = worker_id or new_worker_id()
    stop = stop or threading.Event()
    poll = max(0.2, min(instance.settings.scheduler.poll_seconds, 2))
    while not stop.is_set():
        claim = claim_batch(instance, worker_id, run_id=run_id)
        if claim is not None:
            execute(instance, claim, worker_id, stop=stop)
        with instance.catalog.unit_of_work(snapshot=True) as session:
            run = session.get(JobRun, run_id)
            status, total = run.status, run.batches_total
            finished = session.scalar(select(func.count()).select_from(JobBatch).where(
                JobBatch.run_id == run_id, JobBatch.status.in_((DONE, FAILED)))) or 0
        if progress is not None:
            progress(finished, total)
        if status != RUNNING:
            break
        if claim is None:
            reclaim(instance, job=job_name)
            stop.wait(poll)
    return run_id


# ---- reading runs (policy-checked and audited) --------------------------------------------


def may_see_runs(principal: Principal) -> bool:
    """Auditors and administrators (audit.read or config.manage) see job runs."""
    return bool({policy.AUDIT_READ, policy.CONFIG_MANAGE} & policy.allowed_actions(principal))


def _require_runs(principal: Principal, client: str) -> None:
    if not may_see_runs(principal):
        policy.require(principal, policy.AUDIT_READ, client=client)


@dataclass
class RunFilter:
    job: str | None = None
    status: str | None = None
    limit: int = 50
    offset: int = 0


def run_to_dict(run: JobRun, batches: list[JobBatch] | None = None) -> dict:
    out = {"id": run.id, "job": run.job, "trigger": run.trigger, "principal": run.principal,
           "status": run.status, "started_at": run.started_at.isoformat(),
           "finished_at": run.finished_at.isoformat() if run.finished_at and
           run.status != RUNNING else None,
           "params": run.params or {}, "batches_total": run.batches_total,
           "batches_done": run.batches_done, "counts": run.counts or {},
           "errors": run.errors or []}
    if batches is not None:
        out["batches"] = [{
            "seq": b.seq, "status": b.status, "attempts": b.attempts,
            "lease_owner": b.lease_owner,
            "lease_expires_at": b.lease_expires_at.isoformat() if b.lease_expires_at else None,
            "started_at": b.started_at.isoformat() if b.started_at else None,
            "finished_at": b.finished_at.isoformat() if b.finished_at else None,
            "done_by": b.done_by, "result": b.result, "error": b.error} for b in batches]
    return out


def list_runs(session, principal: Principal, flt: RunFilter | None = None, *,
              client: str = "", clock=None) -> tuple[int, list[JobRun]]:
    """Runs, newest first (auditors and administrators; audited ``job.list``)."""
    flt = flt or RunFilter()
    _require_runs(principal, client)
    query = select(JobRun)
    if flt.job:
        query = query.where(JobRun.job == flt.job)
    if flt.status:
        query = query.where(JobRun.status == flt.status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(JobRun.started_at.desc(), JobRun.id)
                                .offset(flt.offset).limit(flt.limit)))
    audit.append(session, principal, "job.list", "job-runs", client=client, clock=clock,
                 detail={"job": flt.job, "status": flt.status, "returned": len(rows)})
    return total, rows


def get_run(session, principal: Principal, run_id: str, *, client: str = "",
            clock=None) -> tuple[JobRun, list[JobBatch]]:
    """One run with its batches (audited ``job.view``)."""
    _require_runs(principal, client)
    run = session.get(JobRun, run_id)
    if run is None:
        exc = NotFound(f"no job run with id {run_id!r}")
        exc.audit_after_rollback = {"principal": principal, "action": "job.view",
                                    "target": f"job-run:{run_id}", "outcome": "not_found",
                                    "client": client, "clock": clock}
        raise exc
    batches = list(session.scalars(select(JobBatch).where(JobBatch.run_id == run_id)
                                   .order_by(JobBatch.seq)))
    audit.append(session, principal, "job.view", f"job-run:{run_id}", client=client,
                 clock=clock, detail={"job": run.job})
    return run, batches


def last_runs(session) -> dict[str, dict]:
    """Per job: its last finished run, and its failed runs since its last ok run
    (``/healthz``, ``/metrics``; counts only, nothing about records)."""
    out: dict[str, dict] = {}
    last_started = (select(JobRun.job, func.max(JobRun.started_at).label("at"))
                    .where(JobRun.status != RUNNING).group_by(JobRun.job).subquery())
    for run in session.scalars(select(JobRun).join(
            last_started, and_(JobRun.job == last_started.c.job,
                               JobRun.started_at == last_started.c.at))
            .where(JobRun.status != RUNNING)):
        out[run.job] = {"last_run": run.id, "status": run.status,
                        "started_at": run.started_at.isoformat(),
                        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                        "alerts": sum(1 for e in run.errors or [] if e.get("kind") == "alert"),
                        "failed_since_ok": []}
    last_ok = (select(JobRun.job, func.max(JobRun.started_at).label("at"))
               .where(JobRun.status == OK).group_by(JobRun.job).subquery())
    failing = (select(JobRun).outerjoin(last_ok, JobRun.job == last_ok.c.job)
               .where(JobRun.status == FAILED,
                      or_(last_ok.c.at.is_(None), JobRun.started_at > last_ok.c.at))
               .order_by(JobRun.started_at.desc()).limit(100))
    for run in session.scalars(failing):
        entry = out.setdefault(run.job, {"failed_since_ok": []})
        entry["failed_since_ok"].append({"id": run.id, "started_at": run.started_at.isoformat()})
    running = session.execute(select(JobRun.job, func.count()).where(JobRun.status == RUNNING)
                              .group_by(JobRun.job)).all()
    for job, count in running:
        out.setdefault(job, {"failed_since_ok": []})["running"] = count
    return out
