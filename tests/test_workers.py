"""MUST SHOW (issue #6, R-SCHED-1, R-FIX-1): two real `archive worker` processes against
PostgreSQL and SeaweedFS split a fixity cycle with no batch done twice and none missed;
killing one (SIGKILL) mid-batch still completes the cycle after its lease expires.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import make_archive_env

pytest.importorskip("preservation.fixity_cycle",
                    reason="the fixity job (preservation/fixity_cycle.py) has not landed")

from archive.models import Event, JobBatch, JobRun, PackageVersion  # noqa: E402

ARCHIVE = str(Path(sys.executable).with_name("archive"))
RECORDS = 60


@pytest.fixture
def cluster(request, tmp_path):
    """A PostgreSQL + SeaweedFS archive with 60 records, batches of 2."""
    aenv = make_archive_env("s3-postgresql", tmp_path, request)
    aenv.env.update({"ARCHIVE_SCHEDULER__BATCH_SIZE": "2",
                     "ARCHIVE_SCHEDULER__POLL_SECONDS": "1",
                     "ARCHIVE_SCHEDULER__RUN_IN_SERVER": "false"})
    for i in range(RECORDS):
        aenv.sample(f"doc-{i:03d}.pdf", text=f"document number {i}",
                    number_symbol=f"{i + 1}-QĐ/TU")
    result = aenv.json("ingest", str(tmp_path / "inbox"))
    assert len(result["results"]) == RECORDS
    processes: list[subprocess.Popen] = []
    aenv.processes = processes
    yield aenv
    for proc in processes:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    aenv.close()


def _worker(aenv, name: str, tmp_path: Path, **env) -> subprocess.Popen:
    with open(tmp_path / f"{name}.log", "wb") as log:  # the child keeps its own copy
        proc = subprocess.Popen([ARCHIVE, "worker", "--id", name, "--job", "fixity"],
                                env={**aenv.env, **env}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_path = tmp_path / f"{name}.log"
    aenv.processes.append(proc)
    return proc


def _wait_started(procs, timeout=60) -> None:
    deadline = time.monotonic() + timeout
    for proc in procs:
        while b"started" not in proc.log_path.read_bytes():
            assert proc.poll() is None, proc.log_path.read_text()
            assert time.monotonic() < deadline, "worker did not start"
            time.sleep(0.2)


def _wait_run(instance, run_id, timeout=240, procs=()) -> JobRun:
    deadline = time.monotonic() + timeout
    while True:
        with instance.catalog.unit_of_work(snapshot=True) as session:
            run = session.get(JobRun, run_id)
            if run.status != "running":
                return run
        for proc in procs:
            assert proc.poll() is None, proc.log_path.read_text()
        assert time.monotonic() < deadline, "the run did not finish in time"
        time.sleep(0.5)


def _batches(instance, run_id) -> list[JobBatch]:
    with instance.catalog.unit_of_work(snapshot=True) as session:
        return list(session.scalars(select(JobBatch).where(JobBatch.run_id == run_id)
                                    .order_by(JobBatch.seq)))


def _stop(proc) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def _rate(instance) -> int:
    """Bytes per second that make one package take about half a second."""
    with instance.catalog.unit_of_work(snapshot=True) as session:
        average = session.scalar(select(func.avg(PackageVersion.size)))
    return max(1000, int(average * 2))


def test_two_worker_processes_split_a_fixity_cycle_and_survive_a_kill(cluster, tmp_path):
    aenv = cluster
    instance = aenv.instance()
    rate = str(_rate(instance))
    started = datetime.now(UTC)

    # ---- 1: two workers share a full cycle; every batch done once, none missed -------
    workers = [_worker(aenv, name, tmp_path, ARCHIVE_FIXITY__MAX_BYTES_PER_SECOND=rate)
               for name in ("worker-1", "worker-2")]
    _wait_started(workers)
    t0 = time.monotonic()
    run = aenv.json("jobs", "run", "fixity", "--param", "full=true", "--no-wait")
    assert run["status"] == "running" and run["batches_total"] == RECORDS // 2
    run = _wait_run(instance, run["id"], procs=workers)
    elapsed = time.monotonic() - t0
    assert run.status == "ok", run.errors
    batches = _batches(instance, run.id)
    assert len(batches) == RECORDS // 2
    assert all(b.status == "done" and b.attempts == 1 for b in batches)
    by_worker = Counter(b.done_by for b in batches)
    assert set(by_worker) == {"worker-1", "worker-2"}, by_worker
    assert run.counts["checked"] == RECORDS and run.counts["failed"] == 0
    with instance.catalog.unit_of_work(snapshot=True) as session:
        assert session.scalar(select(func.count()).select_from(PackageVersion).where(
            PackageVersion.last_fixity_at.is_(None) |
            (PackageVersion.last_fixity_at < run.started_at))) == 0
        # Each record was checked by exactly one batch: one fixity event each.
        per_record = Counter(session.scalars(select(Event.record_id).where(
            Event.event_type == "fixity check", Event.occurred_at >= run.started_at)))
    assert len(per_record) == RECORDS and set(per_record.values()) == {1}
    print(f"\ncycle of {RECORDS} packages over 2 workers: {elapsed:.1f} s, "
          f"batches {dict(by_worker)}")
    assert [_stop(w) for w in workers] == [0, 0]  # SIGTERM: a clean stop

    # ---- 2: one worker is killed mid-batch; the other finishes after the lease ---------
    lease = {"ARCHIVE_SCHEDULER__LEASE_SECONDS": "4",
             "ARCHIVE_FIXITY__MAX_BYTES_PER_SECOND": rate}
    victim = _worker(aenv, "worker-victim", tmp_path, **lease)
    survivor = _worker(aenv, "worker-survivor", tmp_path, **lease)
    _wait_started([victim, survivor])
    run2 = aenv.json("jobs", "run", "fixity", "--param", "full=true", "--no-wait")
    deadline = time.monotonic() + 60
    while True:  # wait until the victim holds a batch, then kill it
        held = [b for b in _batches(instance, run2["id"])
                if b.status == "leased" and b.lease_owner == "worker-victim"]
        if held:
            break
        assert time.monotonic() < deadline, "the victim never claimed a batch"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    killed_seq = held[0].seq
    run2 = _wait_run(instance, run2["id"], procs=[survivor])
    assert run2.status == "ok", run2.errors
    batches = _batches(instance, run2.id)
    assert all(b.status == "done" for b in batches)
    reclaimed = next(b for b in batches if b.seq == killed_seq)
    assert reclaimed.done_by == "worker-survivor" and reclaimed.attempts == 2
    # Recorded once each: one done_by per batch, counts of every package exactly once.
    assert run2.batches_done == len(batches) == RECORDS // 2
    assert run2.counts["checked"] == RECORDS
    with instance.catalog.unit_of_work(snapshot=True) as session:
        assert session.scalar(select(func.count()).select_from(PackageVersion).where(
            PackageVersion.last_fixity_at < run2.started_at)) == 0
    assert b"lease of worker-victim" in survivor.log_path.read_bytes()
    assert _stop(survivor) == 0
    assert started < run2.finished_at
