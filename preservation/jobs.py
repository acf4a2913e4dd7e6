"""Small periodic jobs of the archive itself (R-SCHED-1, R-AUDIT-1), as job specs for
the runner (``preservation/runner.py``; the registry is ``preservation/registry.py``):

- ``audit-checkpoint``: sign the audit chain head and keep it in the store;
- ``notifications``: retry the pending deliveries of the outbox;
- ``repackage``: write the next AIP version of records whose lifecycle events are newer
  than their last package (a repackaging that failed after a decision).

Each runs as its own system principal (``system:job:<name>``) in the audit log.
"""

from __future__ import annotations

import logging

from sqlalchemy import exists, func, select

from archive.errors import ArchiveError, Refused
from archive.instance import ArchiveInstance
from archive.models import Event, Notification, PackageVersion, Record
from archive.notifications import PENDING
from preservation.jobspec import JobContext, JobSpec

log = logging.getLogger("archive.jobs")


# ---- audit checkpoints ----------------------------------------------------------------


def audit_checkpoint(instance: ArchiveInstance) -> None:
    """Sign the audit chain head and keep it in the object store (R-AUDIT-1); a
    failure is logged, never raised (the job below raises, so the run fails)."""
    try:
        _write_checkpoint(instance)
    except ArchiveError as exc:
        # A failed checkpoint is an incident (R-INCIDENT-1): log it loudly.
        log.error("audit checkpoint failed: %s", exc.message)


def _write_checkpoint(instance: ArchiveInstance) -> bool:
    # Both stores, and an RFC 3161 token when signatures.tsa_url is set (R-AUDIT-1).
    from preservation.audit_checkpoints import write_checkpoint

    checkpoint = write_checkpoint(instance)["checkpoint"]
    written = checkpoint is not None and checkpoint.new
    if written:
        log.info("audit checkpoint written at entry %s", checkpoint.seq)
    return written


def _one_batch(ctx: JobContext, params: dict) -> list[dict]:
    return [{}]


def _checkpoint_batch(ctx: JobContext, params: dict) -> dict[str, int]:
    return {"checkpoints_written": int(_write_checkpoint(ctx.instance))}


AUDIT_CHECKPOINT = JobSpec(
    name="audit-checkpoint",
    description="Sign the audit chain head and keep the checkpoint outside the database",
    plan=_one_batch, run_batch=_checkpoint_batch,
    interval_setting="audit.checkpoint_interval_minutes")


# ---- notification delivery ------------------------------------------------------------


def _notifications_plan(ctx: JobContext, params: dict) -> list[dict]:
    with ctx.instance.catalog.unit_of_work(snapshot=True) as session:
        pending = session.scalar(select(func.count()).select_from(Notification)
                                 .where(Notification.status == PENDING))
    return [{}] if pending else []


def _notifications_batch(ctx: JobContext, params: dict) -> dict[str, int]:
    from preservation.notify import deliver_pending

    report = deliver_pending(ctx.instance.settings, ctx.instance.catalog,
                             clock=ctx.clock, principal=ctx.principal,
                             progress=lambda _outcome: ctx.heartbeat())
    if report.failed:
        ctx.alert(f"{report.failed} notification(s) could not be delivered after the "
                  "last attempt (archive notifications list --status failed)")
    return {"sent": report.sent, "retrying": report.retrying, "failed": report.failed,
            "recorded": report.recorded, "skipped": report.skipped}


NOTIFICATIONS = JobSpec(
    name="notifications",
    description="Retry the delivery of pending notifications (e-mail, webhooks)",
    plan=_notifications_plan, run_batch=_notifications_batch,
    interval_setting="notifications_every_minutes")


# ---- repackaging ----------------------------------------------------------------------

# Catalog events a new AIP version must carry (routine events such as fixity checks
# and the repackaging itself do not call for one).
LIFECYCLE_EVENTS = ("revocation", "reinstatement", "amendment", "rendition", "sealing",
                    "unsealing", "validation")


def records_to_repackage(session, limit: int | None = None) -> list[str]:
    """Records (not destroyed) with a lifecycle event newer than their last package."""
    latest = (select(PackageVersion.record_id, func.max(PackageVersion.created_at)
                     .label("at"))
              .group_by(PackageVersion.record_id).subquery())
    newer = exists(select(Event.id).where(Event.record_id == Record.id,
                                          Event.event_type.in_(LIFECYCLE_EVENTS),
                                          Event.occurred_at > latest.c.at))
    query = (select(Record.id).join(latest, latest.c.record_id == Record.id)
             .where(Record.status != "destroyed", newer).order_by(Record.id))
    if limit:
        query = query.limit(limit)
    return list(session.scalars(query))


def _repackage_plan(ctx: JobContext, params: dict) -> list[dict]:
    size = max(1, ctx.instance.settings.scheduler.batch_size)
    with ctx.instance.catalog.unit_of_work(snapshot=True) as session:
        ids = records_to_repackage(session)
    return [{"records": ids[i:i + size]} for i in range(0, len(ids), size)]


def _repackage_batch(ctx: JobContext, params: dict) -> dict[str, int]:
    from ingest.versions import repackage

    inst = ctx.instance
    counts = {"repackaged": 0, "skipped": 0, "failed": 0}
    for record_id in params.get("records", []):
        with inst.catalog.unit_of_work(snapshot=True) as session:
            still_due = record_id in records_to_repackage_of(session, record_id)
        if not still_due:  # done by a reclaimed batch or by the decision itself
            counts["skipped"] += 1
            continue
        try:
            repackage(inst.settings, inst.catalog, inst.store, ctx.principal, record_id,
                      reason=f"lifecycle events newer than the last package (job run "
                             f"{ctx.run_id})", clock=ctx.clock)
            counts["repackaged"] += 1
        except Refused as exc:  # sealed meanwhile, or written by someone else
            log.info("repackaging of %s skipped: %s", record_id, exc.message)
            counts["skipped"] += 1
        except ArchiveError as exc:
            counts["failed"] += 1
            ctx.alert(f"record {record_id}: new AIP version not written ({exc.message})")
        ctx.heartbeat()
    return counts


def records_to_repackage_of(session, record_id: str) -> list[str]:
    """:func:`records_to_repackage` for one record (empty when it is up to date)."""
    latest = session.scalar(select(func.max(PackageVersion.created_at))
                            .where(PackageVersion.record_id == record_id))
    if latest is None:
        return []
    newer = session.scalar(select(func.count()).select_from(Event).where(
        Event.record_id == record_id, Event.event_type.in_(LIFECYCLE_EVENTS),
        Event.occurred_at > latest))
    return [record_id] if newer else []


REPACKAGE = JobSpec(
    name="repackage",
    description="Write the next AIP version of records whose lifecycle events are newer "
                "than their last package",
    plan=_repackage_plan, run_batch=_repackage_batch,
    interval_setting="repackage_every_minutes")


JOBS = (AUDIT_CHECKPOINT, NOTIFICATIONS, REPACKAGE)
