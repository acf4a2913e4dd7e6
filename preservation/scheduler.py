"""The in-process scheduler of `archive serve` on embedded defaults (APScheduler).

Only the audit checkpoint job runs here for now; issue #6 adds the other jobs and the
scale-out scheduler/worker processes.
"""

from __future__ import annotations

from apscheduler.schedulers.background import BackgroundScheduler

from archive.instance import ArchiveInstance
from preservation import jobs


def start_background_scheduler(instance: ArchiveInstance) -> BackgroundScheduler | None:
    """Start the jobs configured for ``instance``; None when none is enabled."""
    minutes = instance.settings.audit.checkpoint_interval_minutes
    if minutes <= 0:
        return None
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(jobs.audit_checkpoint, "interval", minutes=minutes, args=[instance],
                      id="audit-checkpoint", max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler
