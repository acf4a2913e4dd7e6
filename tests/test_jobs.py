"""The job runner (R-SCHED-1, R-INCIDENT-1): runs recorded with counts, principal and
times; a failing batch fails the run and raises an alert (log, /healthz, notification);
one running run per job; leases expire and are reclaimed, a batch is recorded done
once; the CLI, the /jobs page and the API. Both catalogs (SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from archive.instance import ArchiveInstance
from archive.models import AuditEntry, JobBatch, JobRun, Notification
from preservation import registry, runner
from preservation.jobspec import JobSpec
from tests.accounts import ShiftClock, WebArchive
from tests.conftest import ORG

CALLS: list[tuple[str, dict]] = []


def _plan(ctx, params):
    return [{"n": i} for i in range(1, int(params.get("batches", 3)) + 1)]


def _batch(ctx, batch):
    CALLS.append((ctx.worker, batch))
    ctx.heartbeat()
    if batch["n"] == int(ctx.params.get("fail", 0)):
        raise RuntimeError(f"disk on fire in batch {batch['n']}")
    if batch["n"] == int(ctx.params.get("alert", 0)):
        ctx.alert(f"batch {batch['n']} found something odd")
    return {"items": batch["n"], "batches": 1}


def _finish(ctx, counts):
    return {"finished": 1}


TINY = JobSpec(name="tiny", description="A test job", plan=_plan, run_batch=_batch,
               finish=_finish, param_help={"batches": "how many", "fail": "which fails",
                                           "alert": "which alerts"})


@pytest.fixture
def tiny():
    CALLS.clear()
    with registry.register_for_tests(TINY):
        yield TINY


def _instance(aenv, clock=None, **env) -> ArchiveInstance:
    aenv.env.update(env)
    instance = ArchiveInstance(aenv.settings, clock=clock or ShiftClock())
    aenv._instances.append(instance)
    return instance


def _run(instance, run_id) -> tuple[JobRun, list[JobBatch]]:
    with instance.catalog.unit_of_work(snapshot=True) as session:
        run = session.get(JobRun, run_id)
        batches = list(session.scalars(select(JobBatch).where(JobBatch.run_id == run_id)
                                       .order_by(JobBatch.seq)))
        return run, batches


def _audit(instance, target) -> list[AuditEntry]:
    with instance.catalog.unit_of_work(snapshot=True) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.target == target)
                                    .order_by(AuditEntry.seq)))


def test_run_recorded_with_counts_principal_and_times(archive_env, tiny):
    instance = _instance(archive_env)
    run_id = runner.run_now(instance, "tiny", params={"batches": "4"})
    run, batches = _run(instance, run_id)
    assert run.status == "ok" and run.trigger == "manual"
    assert run.principal == "system:job:tiny"
    assert run.counts == {"items": 1 + 2 + 3 + 4, "batches": 4, "finished": 1}
    assert run.batches_total == run.batches_done == 4
    assert run.started_at <= run.finished_at
    assert [b.status for b in batches] == ["done"] * 4
    assert all(b.done_by and b.attempts == 1 for b in batches)
    actions = [(e.action, e.outcome) for e in _audit(instance, f"job-run:{run_id}")]
    assert actions == [("job.start", "ok"), ("job.finish", "ok")]
    # A run with nothing to do is finished at once.
    empty = runner.run_now(instance, "tiny", params={"batches": "0"}, wait=False)
    assert _run(instance, empty)[0].status == "ok"


def test_failing_batch_fails_run_alerts_and_shows_in_healthz(archive_env, tiny, caplog):
    aenv = archive_env
    aenv.env["ARCHIVE_SCHEDULER__ALERT_RECIPIENTS"] = json.dumps([ORG])
    web = WebArchive(aenv)
    try:
        instance = web.instance
        with caplog.at_level(logging.ERROR, logger="archive.jobs"):
            run_id = runner.run_now(instance, "tiny", params={"fail": "2"})
        run, batches = _run(instance, run_id)
        assert run.status == "failed"
        assert [b.status for b in batches] == ["done", "failed", "done"]
        assert "disk on fire in batch 2" in batches[1].error
        assert any("disk on fire" in e["message"] and e["batch"] == 2 for e in run.errors)
        assert run.counts["items"] == 1 + 3  # the failed batch counts nothing
        assert any("ALERT job tiny" in r.getMessage() for r in caplog.records)
        with instance.catalog.unit_of_work(snapshot=True) as session:
            notes = list(session.scalars(select(Notification).where(
                Notification.related == f"job-run:{run_id}")))
        assert [n.recipient for n in notes] == [ORG]
        assert "disk on fire" in notes[0].body
        finish = _audit(instance, f"job-run:{run_id}")[-1]
        assert finish.action == "job.finish" and finish.outcome == "failed"

        health = web.client().get("/healthz")
        assert health.status_code == 200
        body = health.get_json()
        assert body["status"] == "degraded"
        tiny_health = body["checks"]["jobs"]["runs"]["tiny"]
        assert tiny_health["status"] == "failed"
        assert [f["id"] for f in tiny_health["failed_since_ok"]] == [run_id]
        metrics = web.client().get("/metrics").get_data(as_text=True)
        assert 'archive_job_last_run_failed{job="tiny"} 1.0' in metrics

        # A later successful run clears the alert from /healthz.
        ok = runner.run_now(instance, "tiny")
        assert _run(instance, ok)[0].status == "ok"
        body = web.client().get("/healthz").get_json()
        assert body["status"] == "ok"
        assert body["checks"]["jobs"]["runs"]["tiny"]["failed_since_ok"] == []
        metrics = web.client().get("/metrics").get_data(as_text=True)
        assert 'archive_job_last_run_failed{job="tiny"} 0.0' in metrics
    finally:
        web.close()


def test_alert_without_failure_notifies_but_run_is_ok(archive_env, tiny):
    instance = _instance(archive_env,
                         ARCHIVE_SCHEDULER__ALERT_RECIPIENTS=json.dumps(["user:ops"]))
    run_id = runner.run_now(instance, "tiny", params={"alert": "3"})
    run, _ = _run(instance, run_id)
    assert run.status == "ok"
    assert [(e["kind"], e["batch"]) for e in run.errors] == [("alert", 3)]
    with instance.catalog.unit_of_work(snapshot=True) as session:
        [note] = session.scalars(select(Notification).where(
            Notification.related == f"job-run:{run_id}"))
    assert note.recipient == "user:ops" and "needs attention" in note.subject


def test_second_start_while_running_is_refused(archive_env, tiny):
    instance = _instance(archive_env)
    first = runner.start_run(instance, "tiny", trigger="schedule")
    with pytest.raises(runner.JobAlreadyRunning) as refused:
        runner.start_run(instance, "tiny", trigger="schedule")
    assert first in refused.value.message and refused.value.exit_code == 3
    refusals = [e for e in _audit(instance, "job:tiny") if e.outcome == "refused"]
    assert len(refusals) == 1 and refusals[0].action == "job.start"
    with instance.catalog.unit_of_work(snapshot=True) as session:
        assert session.scalar(select(JobRun.id).where(JobRun.job == "tiny")) == first
    # Unknown jobs and parameters are bad input.
    with pytest.raises(registry.UnknownJob):
        runner.start_run(instance, "no-such-job", trigger="manual")
    from archive.errors import InputError

    with pytest.raises(InputError):
        runner.start_run(instance, "tiny", trigger="manual", params={"colour": "red"})


def test_expired_lease_is_reclaimed_and_recorded_done_once(archive_env, tiny):
    clock = ShiftClock()
    instance = _instance(archive_env, clock, ARCHIVE_SCHEDULER__LEASE_SECONDS="60")
    run_id = runner.start_run(instance, "tiny", trigger="manual", params={"batches": "1"})
    slow = runner.claim_batch(instance, "worker-a", run_id=run_id)
    assert slow is not None and slow.attempts == 1
    # Nothing else to claim while worker-a's lease lives.
    assert runner.claim_batch(instance, "worker-b", run_id=run_id) is None
    clock.offset += timedelta(seconds=61)  # worker-a is silent: its lease expires
    taken = runner.claim_batch(instance, "worker-b", run_id=run_id)
    assert taken is not None and taken.batch_id == slow.batch_id and taken.attempts == 2
    # worker-a wakes up: its heartbeat and its completion are refused, nothing counted.
    assert not runner.heartbeat(instance, slow, "worker-a")
    assert not runner.complete_batch(instance, slow, "worker-a", {"items": 100})
    assert not runner.fail_batch(instance, slow, "worker-a", "late failure")
    assert runner.complete_batch(instance, taken, "worker-b", {"items": 1})
    assert not runner.complete_batch(instance, taken, "worker-b", {"items": 1})  # once
    run, [batch] = _run(instance, run_id)
    assert run.status == "ok" and run.counts == {"items": 1, "finished": 1}
    assert batch.done_by == "worker-b" and batch.status == "done"


def test_lost_lease_discards_the_result_in_the_worker_loop(archive_env, tiny):
    """A worker whose heartbeat finds the lease taken stops and records nothing."""
    clock = ShiftClock()
    instance = _instance(archive_env, clock, ARCHIVE_SCHEDULER__LEASE_SECONDS="1")
    run_id = runner.start_run(instance, "tiny", trigger="manual", params={"batches": "1"})
    claim = runner.claim_batch(instance, "worker-a", run_id=run_id)
    clock.offset += timedelta(seconds=5)
    other = runner.claim_batch(instance, "worker-b", run_id=run_id)
    assert other is not None
    beat = runner._Beat(instance, claim, "worker-a", None)
    beat.last = 0  # due now
    with pytest.raises(runner.LeaseLost):
        beat()
    assert runner.execute(instance, other, "worker-b") == "done"
    run, [batch] = _run(instance, run_id)
    assert batch.done_by == "worker-b" and run.counts["items"] == 1


def test_stale_run_is_abandoned_and_a_new_run_starts(archive_env, tiny):
    clock = ShiftClock()
    instance = _instance(archive_env, clock, ARCHIVE_SCHEDULER__LEASE_SECONDS="30")
    stale = runner.start_run(instance, "tiny", trigger="schedule")  # no worker takes it
    clock.offset += timedelta(seconds=31)
    fresh = runner.start_run(instance, "tiny", trigger="schedule")
    run, batches = _run(instance, stale)
    assert run.status == "failed" and "abandoned" in run.errors[-1]["message"]
    assert {b.status for b in batches} == {"failed"}
    assert _run(instance, fresh)[0].status == "running"


def test_run_with_all_batches_done_is_finished_by_reclaim(archive_env, tiny):
    """A worker died between recording its batch and finishing the run."""
    instance = _instance(archive_env)
    run_id = runner.start_run(instance, "tiny", trigger="manual", params={"batches": "1"})
    claim = runner.claim_batch(instance, "w", run_id=run_id)
    with instance.catalog.unit_of_work() as session:  # done, as a crashed worker left it
        batch = session.get(JobBatch, claim.batch_id)
        batch.status, batch.done_by = "done", "w"
    assert _run(instance, run_id)[0].status == "running"
    assert runner.reclaim(instance, job="tiny") == 1
    assert _run(instance, run_id)[0].status == "ok"


def test_worker_loop_once_does_every_batch(archive_env, tiny):
    import threading

    instance = _instance(archive_env)
    run_id = runner.start_run(instance, "tiny", trigger="schedule", params={"batches": "5"})
    done = runner.work(instance, "loop-worker", threading.Event(), once=True)
    assert done == 5
    run, batches = _run(instance, run_id)
    assert run.status == "ok" and {b.done_by for b in batches} == {"loop-worker"}


def test_stop_event_releases_the_batch(archive_env, tiny):
    import threading

    instance = _instance(archive_env)
    run_id = runner.start_run(instance, "tiny", trigger="manual", params={"batches": "1"})
    claim = runner.claim_batch(instance, "w", run_id=run_id)
    stop = threading.Event()
    stop.set()
    assert runner.execute(instance, claim, "w", stop=stop) == "released"
    run, [batch] = _run(instance, run_id)
    assert batch.status == "pending" and run.status == "running"


# ---- the periodic jobs of the archive itself ------------------------------------------


def test_audit_checkpoint_and_notifications_jobs(archive_env):
    instance = _instance(archive_env)
    assert {"audit-checkpoint", "notifications", "repackage"} <= set(registry.JOBS)
    assert registry.interval_minutes(registry.get("audit-checkpoint"), instance.settings) == 15
    run_id = runner.run_now(instance, "audit-checkpoint")
    run, _ = _run(instance, run_id)
    assert run.status == "ok" and run.principal == "system:job:audit-checkpoint"
    assert "checkpoints_written" in run.counts
    assert archive_env.invoke("audit", "verify").exit_code == 0
    # No pending notification: nothing to do, ok.
    assert _run(instance, runner.run_now(instance, "notifications"))[0].batches_total == 0


def test_repackage_job_writes_next_version_after_a_lifecycle_event(archive_env):
    import uuid

    from archive.models import Event, PackageVersion
    from preservation.jobs import records_to_repackage

    aenv = archive_env
    record = aenv.json("ingest", str(aenv.sample()))["results"][0]["record_id"]
    instance = _instance(aenv)
    with instance.catalog.unit_of_work() as session:
        assert records_to_repackage(session) == []
        session.add(Event(id=str(uuid.uuid4()), record_id=record, event_type="validation",
                          occurred_at=instance.clock.now(),
                          agent="system:test", outcome="success", detail="revalidated"))
    run_id = runner.run_now(instance, "repackage")
    run, _ = _run(instance, run_id)
    assert run.status == "ok" and run.counts["repackaged"] == 1, run.errors
    with instance.catalog.unit_of_work(snapshot=True) as session:
        versions = session.scalars(select(PackageVersion.version)
                                   .where(PackageVersion.record_id == record)).all()
        assert sorted(versions) == [1, 2]
        assert records_to_repackage(session) == []


# ---- CLI -------------------------------------------------------------------------------


def test_cli_jobs_run_list_show_names(archive_env, tiny):
    aenv = archive_env
    names = aenv.json("jobs", "names")
    by_name = {j["name"]: j for j in names["jobs"]}
    assert by_name["audit-checkpoint"]["interval_minutes"] == 15
    assert "description" in by_name["tiny"]

    done = aenv.json("jobs", "run", "tiny", "--param", "batches=2")
    assert done["status"] == "ok" and done["counts"]["items"] == 3
    failed = aenv.invoke("jobs", "run", "tiny", "--param", "fail=1")
    assert failed.exit_code == 1 and "failed" in failed.output
    alerted = aenv.invoke("jobs", "run", "tiny", "--param", "alert=1", "--json")
    assert alerted.exit_code == 1  # an alert needs an operator
    bad = aenv.invoke("jobs", "run", "tiny", "--param", "nonsense")
    assert bad.exit_code == 2

    runs = aenv.json("jobs", "list", "--job", "tiny")
    assert [r["status"] for r in runs["runs"]] == ["ok", "failed", "ok"]
    assert runs["runs"][0]["principal"].startswith("system:")
    assert aenv.json("jobs", "list", "--status", "failed")["total"] == 1
    shown = aenv.json("jobs", "show", done["id"])
    assert [b["status"] for b in shown["batches"]] == ["done", "done"]
    assert aenv.invoke("jobs", "show", "00000000-0000-0000-0000-000000000000").exit_code == 2

    pending = aenv.json("jobs", "run", "tiny", "--no-wait")
    assert pending["status"] == "running"
    refused = aenv.invoke("jobs", "run", "tiny")
    assert refused.exit_code == 3 and "already running" in refused.output
    worked = aenv.invoke("worker", "--once", "--id", "cli-worker", "--job", "tiny")
    assert worked.exit_code == 0, worked.output
    shown = aenv.json("jobs", "show", pending["id"])
    assert shown["status"] == "ok"
    assert {b["done_by"] for b in shown["batches"]} == {"cli-worker"}


# ---- web UI and API --------------------------------------------------------------------


def test_jobs_page_and_api_for_auditors_not_clerks(archive_env, tiny):
    web = WebArchive(archive_env)
    try:
        run_id = runner.run_now(web.instance, "tiny", params={"fail": "2"})
        web.add_user("kiemtoan", "auditor")
        web.add_user("vanthu", "clerk")
        auditor = web.login("kiemtoan")
        page = auditor.get("/jobs")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "tiny" in html and run_id in html and 'href="/jobs"' in html
        detail = auditor.get(f"/jobs/{run_id}").get_data(as_text=True)
        assert "disk on fire in batch 2" in detail
        listed = auditor.get("/api/v1/jobs?job=tiny").get_json()
        assert listed["total"] == 1 and listed["runs"][0]["status"] == "failed"
        one = auditor.get(f"/api/v1/jobs/{run_id}").get_json()
        assert [b["status"] for b in one["batches"]] == ["done", "failed", "done"]
        assert auditor.get("/api/v1/jobs/not-a-uuid").status_code == 400

        clerk = web.login("vanthu")
        assert 'href="/jobs"' not in clerk.get("/records").get_data(as_text=True)
        assert clerk.get("/jobs").status_code == 403
        assert clerk.get("/api/v1/jobs").status_code == 403
        assert clerk.get(f"/api/v1/jobs/{run_id}").status_code == 403
        with web.db() as session:
            views = session.scalars(select(AuditEntry).where(
                AuditEntry.action.in_(("job.list", "job.view")))).all()
            denied = session.scalars(select(AuditEntry).where(
                AuditEntry.outcome == "denied", AuditEntry.actor == "user:vanthu")).all()
        assert {v.actor for v in views if v.outcome == "ok"} == {"user:kiemtoan"}
        assert len(denied) == 3
    finally:
        web.close()


# ---- the scheduler ---------------------------------------------------------------------


def test_scheduler_triggers_start_runs_once(archive_env, tiny, caplog):
    from preservation import scheduler

    instance = _instance(archive_env, ARCHIVE_SCHEDULER__REPACKAGE_EVERY_MINUTES="0")
    jobs = scheduler.scheduled_jobs(instance.settings)
    assert jobs["audit-checkpoint"] == 15 and jobs["notifications"] == 5
    assert "repackage" not in jobs and "tiny" not in jobs  # 0 / no interval: manual only
    background = scheduler.start_background_scheduler(instance)
    try:
        assert {j.id for j in background.get_jobs()} == {*jobs, "reclaim"}
        assert all(j.max_instances == 1 and j.coalesce for j in background.get_jobs())
    finally:
        background.shutdown(wait=False)
    # `archive scheduler`'s trigger only starts the run; a second one is refused, logged.
    with caplog.at_level(logging.INFO, logger="archive.jobs"):
        scheduler._trigger(instance, "tiny", in_process=False)
        scheduler._trigger(instance, "tiny", in_process=False)
    with instance.catalog.unit_of_work(snapshot=True) as session:
        runs = session.scalars(select(JobRun).where(JobRun.job == "tiny")).all()
    assert [(r.trigger, r.status) for r in runs] == [("schedule", "running")]
    assert any("already running" in r.getMessage() for r in caplog.records)
    # The server's trigger runs it in process (after a worker finished the first).
    runner.work(instance, "w", __import__("threading").Event(), once=True)
    scheduler._trigger(instance, "tiny", in_process=True)
    with instance.catalog.unit_of_work(snapshot=True) as session:
        runs = session.scalars(select(JobRun).where(JobRun.job == "tiny")
                               .order_by(JobRun.started_at)).all()
    assert [(r.trigger, r.status) for r in runs] == [("schedule", "ok"), ("server", "ok")]
    # Embedded scheduling off: `archive serve` starts no scheduler.
    off = _instance(archive_env, ARCHIVE_SCHEDULER__RUN_IN_SERVER="false")
    assert scheduler.start_background_scheduler(off) is None
