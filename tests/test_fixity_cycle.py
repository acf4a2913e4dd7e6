"""Scheduled fixity audits (R-FIX-1) with repair from the backup copy (R-BACKUP-1).

On both configurations (local folder + SQLite; SeaweedFS primary and backup buckets +
PostgreSQL): damage to a stored AIP (a flipped byte, truncation, deletion) is found by
the next run and repaired from the verified backup copy, with the events; a corrupt
backup copy is never used; a damaged backup copy is repaired from the primary; each run
checks the share that keeps the cycle on time; reads are throttled.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from archive.fixity import verify_stored_object
from archive.models import AuditEntry, BackupCopy, PackageVersion, Record
from archive.principal import Principal
from preservation import backup as backup_job
from preservation import fixity_cycle
from preservation.jobspec import JobContext
from tests.test_backup_copies import (
    copies,
    raw_backup_delete,
    raw_backup_rewrite,
    read_backup,
    with_backup_store,
)
from tests.test_fixity import _ingest, _original, _raw_delete, _raw_rewrite, _read

FIXITY = Principal.system("job:fixity")


@pytest.fixture
def backed_up(archive_env, request):
    return with_backup_store(archive_env, request)


def _history(aenv, rid: str) -> list[dict]:
    return aenv.json("records", "history", rid)["events"]


def _backed_up_records(aenv, n: int = 2) -> list[str]:
    ids = _ingest(aenv, n)
    out = backup_job.copy_objects(aenv.instance(), Principal.system("job:backup"))
    assert out["failed"] == 0
    return ids


def _damage(aenv, key: str, damage: str, rid: str) -> bytes:
    data = bytearray(_read(aenv, key))
    if damage == "flip":
        _, offset = _original(aenv, rid)
        data[offset + 10] ^= 0x01
        _raw_rewrite(aenv, key, bytes(data))
    elif damage == "truncate":
        _raw_rewrite(aenv, key, bytes(data[: len(data) // 2]))
    else:
        _raw_delete(aenv, key)
    return bytes(data)


def _digests(aenv, key: str) -> tuple[int, dict]:
    instance = aenv.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        version = session.scalars(select(PackageVersion)
                                  .where(PackageVersion.storage_key == key)).one()
        return version.size, dict(version.digests)


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_primary_is_found_and_repaired_from_backup(backed_up, damage, tmp_path):
    good, bad = _backed_up_records(backed_up)
    key = f"aip/{bad}/v0001.tar"
    original = _read(backed_up, key)
    _damage(backed_up, key, damage, bad)

    out = fixity_cycle.run_cycle(backed_up.instance(), FIXITY, full=True)
    assert out["checked"] == 2 and out["failed"] == 1 and out["repaired"] == 1
    assert out["missing"] == (1 if damage == "delete" else 0)
    assert any(key in a and "damaged" in a for a in out["alerts"])

    # the primary holds the catalog's bytes again
    assert _read(backed_up, key) == original
    size, digests = _digests(backed_up, key)
    verify_stored_object(backed_up.instance().store, key, size, digests)
    events = _history(backed_up, bad)
    check, repair = events[-2], events[-1]
    assert check["type"] == "fixity check" and check["outcome"] == "failure"
    assert repair["type"] == "repair" and repair["outcome"] == "success"
    assert all(e["outcome"] == "success" for e in _history(backed_up, good)
               if e["type"] in ("fixity check", "repair"))
    instance = backed_up.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "fixity.repair")
                                ).one()
        assert entry.outcome == "ok" and entry.target == f"record:{bad}"
        assert entry.detail["source"] == instance.backup_store.name
        version = session.scalars(select(PackageVersion)
                                  .where(PackageVersion.storage_key == key)).one()
        assert version.last_fixity_outcome == "ok"
    # a download works afterwards
    target = tmp_path / "copy.pdf"
    result = backed_up.invoke("records", "get", bad, "-o", str(target))
    assert result.exit_code == 0, result.stderr
    assert target.stat().st_size > 0
    # and the next run finds nothing
    again = fixity_cycle.run_cycle(backed_up.instance(), FIXITY, full=True)
    assert again["failed"] == 0 and again["alerts"] == []


def test_corrupt_backup_copy_is_never_used(backed_up):
    [rid] = _backed_up_records(backed_up, 1)
    key = f"aip/{rid}/v0001.tar"
    damaged = _damage(backed_up, key, "flip", rid)
    copy = bytearray(read_backup(backed_up, key))
    copy[len(copy) // 3] ^= 0x01
    raw_backup_rewrite(backed_up, key, bytes(copy))

    out = fixity_cycle.run_cycle(backed_up.instance(), FIXITY, full=True)
    assert out["repaired"] == 0 and out["unrepaired"] >= 1
    assert any(fixity_cycle.NO_GOOD_COPY in a for a in out["alerts"])
    assert _read(backed_up, key) == damaged, "the primary was written from a bad copy"
    events = _history(backed_up, rid)
    assert events[-1]["type"] == "repair" and events[-1]["outcome"] == "failure"
    assert fixity_cycle.NO_GOOD_COPY in events[-1]["detail"]
    assert copies(backed_up)[key].last_outcome == "failed"
    instance = backed_up.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        outcomes = set(session.scalars(select(AuditEntry.outcome)
                                       .where(AuditEntry.action == "fixity.repair")))
        assert outcomes == {"failed"}


def test_missing_backup_copy_is_never_used(local_archive):
    [rid] = _backed_up_records(local_archive, 1)
    key = f"aip/{rid}/v0001.tar"
    damaged = _damage(local_archive, key, "flip", rid)
    raw_backup_delete(local_archive, key)
    local_archive.env["ARCHIVE_SCHEDULER__FIXITY_EVERY_MINUTES"] = "0"  # only due ones
    out = fixity_cycle.run_cycle(local_archive.instance(), FIXITY, full=True)
    assert out["repaired"] == 0
    assert any(fixity_cycle.NO_GOOD_COPY in a for a in out["alerts"])
    assert _read(local_archive, key) == damaged


def test_repair_off_only_reports(local_archive):
    [rid] = _backed_up_records(local_archive, 1)
    key = f"aip/{rid}/v0001.tar"
    damaged = _damage(local_archive, key, "flip", rid)
    local_archive.env["ARCHIVE_FIXITY__REPAIR"] = "false"
    out = fixity_cycle.run_cycle(local_archive.instance(), FIXITY, full=True)
    assert out["failed"] == 1 and out["repaired"] == 0 and out["alerts"]
    assert _read(local_archive, key) == damaged
    assert _history(local_archive, rid)[-1]["type"] == "fixity check"


@pytest.mark.parametrize("damage", ["flip", "delete"])
def test_damaged_backup_copy_is_repaired_from_the_primary(backed_up, damage):
    [rid] = _backed_up_records(backed_up, 1)
    key = f"aip/{rid}/v0001.tar"
    if damage == "flip":
        copy = bytearray(read_backup(backed_up, key))
        copy[100] ^= 0x01
        raw_backup_rewrite(backed_up, key, bytes(copy))
    else:
        raw_backup_delete(backed_up, key)
    out = fixity_cycle.run_cycle(backed_up.instance(), FIXITY, full=True)
    assert out["copies_checked"] >= 1
    assert out["copies_failed" if damage == "flip" else "copies_missing"] == 1
    assert out["copies_repaired"] == 1
    assert any(key in a for a in out["alerts"])
    assert read_backup(backed_up, key) == _read(backed_up, key)
    assert copies(backed_up)[key].last_outcome == "ok"
    instance = backed_up.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        repair = session.scalars(select(AuditEntry).where(AuditEntry.action == "backup.repair")
                                 ).one()
        assert repair.outcome == "ok" and repair.target == f"object:{key}"
        verify = session.scalars(select(AuditEntry).where(AuditEntry.action == "backup.verify")
                                 ).all()
        assert verify[-1].outcome == "failed"


def _plan(aenv, **params) -> tuple[list[int], list[int]]:
    instance = aenv.instance()
    ctx = JobContext(instance=instance, run_id="t", job="fixity", principal=FIXITY,
                     clock=instance.clock, worker="test", params=params)
    packages: list[int] = []
    backups: list[int] = []
    for batch in fixity_cycle.plan(ctx, params):
        packages += batch.get("packages", [])
        backups += batch.get("backup_copies", [])
    return packages, backups


def _version_ids(aenv, ids: list[str]) -> list[int]:
    with aenv.instance().catalog.unit_of_work(snapshot=True) as session:
        return [session.scalar(select(PackageVersion.id).where(PackageVersion.record_id == r))
                for r in ids]


def test_each_run_checks_the_share_that_keeps_the_cycle_on_time(backed_up):
    ids = _backed_up_records(backed_up, 6)
    versions = _version_ids(backed_up, ids)
    # 6 objects, a 1-day cycle, a run every 8 hours: ceil(6 * 480 / 1440) = 2 per run
    backed_up.env["ARCHIVE_FIXITY__CYCLE_DAYS"] = "1"
    backed_up.env["ARCHIVE_SCHEDULER__FIXITY_EVERY_MINUTES"] = "480"
    n_copies = len(copies(backed_up))  # the AIPs and the audit checkpoints
    packages, backups = _plan(backed_up)
    assert packages == versions[:2]  # the least recently checked (at ingest)
    assert len(backups) == math.ceil(n_copies * 480 / 1440)
    first = fixity_cycle.run_cycle(backed_up.instance(), FIXITY)
    assert first["checked"] == 2 and first["copies_checked"] == len(backups)
    second = fixity_cycle.run_cycle(backed_up.instance(), FIXITY)
    assert second["checked"] == 2
    packages, _ = _plan(backed_up)
    assert packages == versions[4:6]  # the cycle goes round

    # overdue ones come first, on top of the share; destroyed records never
    instance = backed_up.instance()
    now = instance.clock.now()
    with instance.catalog.unit_of_work() as session:
        session.execute(update(PackageVersion).where(PackageVersion.id == versions[5])
                        .values(last_fixity_at=now - timedelta(days=3)))
        session.execute(update(PackageVersion).where(PackageVersion.id == versions[0])
                        .values(last_fixity_at=None))
        session.execute(update(Record).where(Record.id == ids[1]).values(status="destroyed"))
        session.execute(update(PackageVersion).where(PackageVersion.id == versions[1])
                        .values(last_fixity_at=None))
    packages, _ = _plan(backed_up)
    assert packages[:2] == [versions[0], versions[5]]
    assert len(packages) == 4 and versions[1] not in packages
    full, full_copies = _plan(backed_up, full="true")
    assert sorted(full) == sorted(v for v in versions if v != versions[1])
    with instance.catalog.unit_of_work(snapshot=True) as session:
        gone = session.scalar(select(BackupCopy.id).where(BackupCopy.record_id == ids[1]))
    assert gone not in full_copies and len(full_copies) == n_copies - 1

    # a manual-only job (interval 0) checks only what is due
    backed_up.env["ARCHIVE_SCHEDULER__FIXITY_EVERY_MINUTES"] = "0"
    packages, _ = _plan(backed_up)
    assert packages == [versions[0], versions[5]]


def test_throttle_limits_the_read_rate(local_archive):
    _ingest(local_archive, 2)
    instance = local_archive.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        total = sum(session.scalars(select(PackageVersion.size)))
    limit = max(1, int(total / 1.5))  # about 1.5 s of reading at the limit
    local_archive.env["ARCHIVE_FIXITY__MAX_BYTES_PER_SECOND"] = str(limit)
    started = time.monotonic()
    out = fixity_cycle.run_cycle(local_archive.instance(), FIXITY, full=True)
    elapsed = time.monotonic() - started
    assert out["checked"] == 2 and out["bytes"] == total
    assert elapsed >= 0.8 * total / limit, (elapsed, total, limit)


def test_throttle_token_bucket():
    """Unit: n bytes at rate r take at least n / r seconds; a heartbeat while waiting."""
    clock = [0.0]
    beats = []

    def sleep(seconds):
        clock[0] += seconds

    throttle = fixity_cycle.Throttle(1000, lambda: beats.append(clock[0]), sleep=sleep,
                                     monotonic=lambda: clock[0])
    for _ in range(100):
        throttle.take(1000)
    assert clock[0] == pytest.approx(100.0)
    assert len(beats) >= 3
    free = fixity_cycle.Throttle(0, sleep=sleep, monotonic=lambda: clock[0])
    before = clock[0]
    free.take(10**9)
    assert clock[0] == before


def _unit_ctx(heartbeat=lambda: None) -> JobContext:
    from archive.clock import SystemClock

    return JobContext(instance=None, run_id="t", job="fixity", principal=FIXITY,
                      clock=SystemClock(), worker="test", heartbeat=heartbeat)


def test_a_batch_checks_fixity_workers_objects_at_a_time():
    """Unit: ``fixity.workers`` checks run at once; results keep the batch's order."""
    import threading

    both = threading.Barrier(2, timeout=10)  # passes only if two checks run together
    running, most = [0], [0]
    lock = threading.Lock()

    def check(job):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        if job < 2:
            both.wait()
        time.sleep(0.01 * (5 - job))  # later jobs finish first
        with lock:
            running[0] -= 1
        return job, f"checked {job}"

    throttle = fixity_cycle.Throttle(0)
    done = fixity_cycle._check_all(_unit_ctx(), list(range(5)), check, throttle, 2)
    assert done == [(j, f"checked {j}") for j in range(5)]
    assert most[0] == 2


def test_a_lost_lease_stops_the_other_checks_of_the_batch():
    """Unit: when the heartbeat raises, checks not started are cancelled and running
    ones stop at their next read (the throttle raises CheckAborted)."""
    import threading

    class Lost(Exception):
        pass

    started, stopped = [], []
    first_done = threading.Event()
    beats = [0]

    def heartbeat():
        beats[0] += 1
        if beats[0] == 2:  # after the first result: the lease is gone
            raise Lost("lease lost")

    throttle = fixity_cycle.Throttle(0)

    def check(job):
        started.append(job)
        if job == 0:
            first_done.set()
            return job, "ok"
        first_done.wait(5)
        try:
            for _ in range(500):  # a long object: one read every 10 ms
                throttle.take(1)
                time.sleep(0.01)
        except fixity_cycle.CheckAborted:
            stopped.append(job)
            raise
        return job, "ok"

    with pytest.raises(Lost):
        fixity_cycle._check_all(_unit_ctx(heartbeat), list(range(6)), check, throttle, 2)
    # the running checks (1, and 2 if its thread took it after 0) stopped at their
    # next read; the rest were cancelled before they started
    assert sorted(stopped) == sorted(started)[1:] and sorted(started)[:2] == [0, 1]
    assert len(started) <= 3
