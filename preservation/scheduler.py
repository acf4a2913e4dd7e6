"""When jobs run (R-SCHED-1): APScheduler triggers every registered job whose interval
setting is above 0.

- Embedded (``scheduler.run_in_server = true``): ``archive serve`` starts a background
  scheduler whose triggers run the job in the server process (:func:`runner.run_now`,
  trigger ``server``).
- At scale: one ``archive scheduler`` process (:func:`run_scheduler`) only starts runs
  (trigger ``schedule``); ``archive worker`` processes on any machines do the batches.
  It also closes runs left behind by a worker that died (:func:`runner.reclaim`).

A second scheduler started by mistake does no harm: a run of a job that is already
running is refused (logged), so each periodic job runs once cluster-wide.
"""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from archive.errors import ArchiveError
from archive.instance import ArchiveInstance
from preservation import registry, runner

log = logging.getLogger("archive.jobs")
RECLAIM_EVERY_SECONDS = 60


def scheduled_jobs(settings) -> dict[str, int]:
    """Job name -> minutes between runs, for the jobs that are scheduled."""
    out = {}
    for name, spec in registry.JOBS.items():
        minutes = registry.interval_minutes(spec, settings)
        if minutes > 0:
            out[name] = minutes
    return out


def _trigger(instance: ArchiveInstance, name: str, *, in_process: bool) -> None:
    """One trigger; never raises (APScheduler would only log it)."""
    try:
        if in_process:
            runner.run_now(instance, name, trigger="server")
        else:
            run_id = runner.start_run(instance, name, trigger="schedule")
            log.info("job %s: run %s started", name, run_id)
    except runner.JobAlreadyRunning as exc:
        log.info("job %s not started: %s", name, exc.message)
    except ArchiveError as exc:
        log.error("ALERT job %s could not run: %s", name, exc.message)
    except Exception:  # noqa: BLE001 - a bug in a job must not stop the scheduler
        log.exception("ALERT job %s crashed", name)


def _reclaim(instance: ArchiveInstance) -> None:
    try:
        closed = runner.reclaim(instance)
        if closed:
            log.warning("closed %s run(s) left behind by stopped workers", closed)
    except ArchiveError as exc:
        log.error("reclaiming runs failed: %s", exc.message)


def _add_jobs(scheduler, instance: ArchiveInstance, *, in_process: bool) -> int:
    jobs = scheduled_jobs(instance.settings)
    for name, minutes in jobs.items():
        scheduler.add_job(_trigger, "interval", minutes=minutes, args=[instance, name],
                          kwargs={"in_process": in_process}, id=name, max_instances=1,
                          coalesce=True, misfire_grace_time=max(60, minutes * 30))
    scheduler.add_job(_reclaim, "interval", seconds=RECLAIM_EVERY_SECONDS, args=[instance],
                      id="reclaim", max_instances=1, coalesce=True)
    return len(jobs)


def start_background_scheduler(instance: ArchiveInstance) -> BackgroundScheduler | None:
    """Start the jobs configured for ``instance`` in this process (``archive serve``);
    None when ``scheduler.run_in_server`` is false or no job is scheduled."""
    if not instance.settings.scheduler.run_in_server or not scheduled_jobs(instance.settings):
        return None
    scheduler = BackgroundScheduler(timezone="UTC")
    _add_jobs(scheduler, instance, in_process=True)
    scheduler.start()
    return scheduler


def run_scheduler(instance: ArchiveInstance, *, scheduler: BlockingScheduler | None = None
                  ) -> None:
    """``archive scheduler``: start runs on schedule until stopped (SIGTERM/SIGINT)."""
    scheduler = scheduler or BlockingScheduler(timezone="UTC")
    count = _add_jobs(scheduler, instance, in_process=False)
    log.info("scheduler: %s job(s) scheduled", count)
    _reclaim(instance)
    scheduler.start()
