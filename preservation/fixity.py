"""Fixity checks of stored packages (R-FIX-1): re-read, re-hash, record an event.

``run_fixity_check`` reads every stored AIP version of the chosen records in
parallel (threads: hashlib releases the GIL), records one PREMIS "fixity check"
event per record and one audit entry for the run, and returns a report listing
each mismatch or missing object. Scheduled full cycles build on this (issue #6).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from archive import audit
from archive.clock import Clock, SystemClock
from archive.db import Catalog
from archive.errors import NotFound, Refused
from archive.fixity import PackageCheck, check_package
from archive.models import Event, PackageVersion, Record
from archive.principal import Principal
from archive.settings import Settings
from archive.storage import ObjectStore


@dataclass
class RecordFixity:
    record_id: str
    number_symbol: str
    ok: bool
    packages: list[PackageCheck] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "record_id": self.record_id,
            "number_symbol": self.number_symbol,
            "ok": self.ok,
            "packages": [
                {"storage_key": p.storage_key, "ok": p.ok,
                 "problems": [x.to_dict() for x in p.problems],
                 "damaged_files": [d.to_dict() for d in p.damaged_members]}
                for p in self.packages
            ],
        }


@dataclass
class FixityReport:
    checked: int = 0
    bytes_read: int = 0
    failures: list[RecordFixity] = field(default_factory=list)
    results: list[RecordFixity] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {"ok": self.ok, "records_checked": self.checked, "bytes_read": self.bytes_read,
                "failures": [f.to_dict() for f in self.failures],
                "records": [r.to_dict() for r in self.results]}


@dataclass
class PackageJob:
    """One stored AIP version to check, with what the catalog recorded about it."""

    record_id: str
    number_symbol: str
    version_id: int
    key: str
    size: int
    digests: dict
    members: list[tuple[str, int, int, dict]]


def run_fixity_check(settings: Settings, catalog: Catalog, store: ObjectStore,
                     principal: Principal, record_ids: Iterable[str] | None = None, *,
                     workers: int | None = None, clock: Clock | None = None,
                     progress: Callable[[int], None] | None = None) -> FixityReport:
    """Check the given records (``None`` = every record) and record the outcome."""
    clock = clock or SystemClock()
    workers = workers or settings.fixity.workers
    jobs = load_package_jobs(catalog, record_ids)
    report = FixityReport()
    done: list[tuple[PackageJob, PackageCheck]] = []

    def run(job: PackageJob) -> tuple[PackageJob, PackageCheck]:
        return job, check_package(store, job.key, job.size, job.digests, job.members,
                                  chunk_size=settings.fixity.chunk_size)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for job, check in pool.map(run, jobs):
            done.append((job, check))
            report.bytes_read += check.size
            if progress:
                progress(1)

    now = clock.now()
    with catalog.unit_of_work() as session:
        report.results = record_checks(session, principal, now, done)
        report.failures = [r for r in report.results if not r.ok]
        report.checked = len(report.results)
        audit.append(session, principal, "fixity.check",
                     "records:all" if record_ids is None else "records:" + ",".join(
                         [r.record_id for r in report.results][:20]),
                     outcome="ok" if report.ok else "failed",
                     detail={"records_checked": report.checked,
                             "failures": [r.record_id for r in report.failures],
                             "bytes_read": report.bytes_read}, clock=clock)
    return report


def record_checks(session, principal: Principal, now,
                  done: list[tuple[PackageJob, PackageCheck]]) -> list[RecordFixity]:
    """Record checked packages in the caller's transaction: each version's
    ``last_fixity_at``/outcome and one PREMIS "fixity check" event per record."""
    by_record: dict[str, RecordFixity] = {}
    for job, check in done:
        version = session.get(PackageVersion, job.version_id)
        version.last_fixity_at = now
        version.last_fixity_outcome = "ok" if check.ok else "failed"
        rec = by_record.setdefault(job.record_id,
                                   RecordFixity(job.record_id, job.number_symbol, True))
        rec.packages.append(check)
        rec.ok = rec.ok and check.ok
    for rec in by_record.values():
        detail = "; ".join(
            f"{p.storage_key}: " + ("ok" if p.ok else ", ".join(x.message for x in p.problems)
                                    + " [" + ", ".join(f"{d.path}: {d.problem}"
                                                       for d in p.damaged_members) + "]")
            for p in rec.packages)
        session.add(Event(id=str(uuid.uuid4()), record_id=rec.record_id,
                          event_type="fixity check", occurred_at=now,
                          agent=str(principal), outcome="success" if rec.ok else "failure",
                          detail=detail, data=rec.to_dict()))
    return sorted(by_record.values(), key=lambda r: r.record_id)


def load_package_jobs(catalog: Catalog, record_ids: Iterable[str] | None = None, *,
                      version_ids: Iterable[int] | None = None) -> list[PackageJob]:
    """The package versions of ``record_ids`` (None: all), or exactly ``version_ids``."""
    if version_ids is not None:
        with catalog.unit_of_work(snapshot=True) as session:
            query = (select(PackageVersion, Record.number_symbol)
                     .join(Record, Record.id == PackageVersion.record_id)
                     .options(selectinload(PackageVersion.files))
                     .where(PackageVersion.id.in_(list(version_ids)))
                     .order_by(PackageVersion.id))
            return [_job(v, number) for v, number in session.execute(query)]
    with catalog.unit_of_work(snapshot=True) as session:
        query = (select(PackageVersion, Record.number_symbol)
                 .join(Record, Record.id == PackageVersion.record_id)
                 .options(selectinload(PackageVersion.files))
                 .order_by(PackageVersion.record_id, PackageVersion.version))
        wanted = None
        destroyed: set[str] = set()
        if record_ids is not None:
            wanted = list(dict.fromkeys(record_ids))
            query = query.where(PackageVersion.record_id.in_(wanted))
            destroyed = set(session.scalars(select(Record.id).where(
                Record.id.in_(wanted), Record.status == "destroyed")))
        # A destroyed record has no bytes left by design (R-DESTROY-1): nothing to check.
        query = query.where(Record.status != "destroyed")
        jobs = [_job(v, number) for v, number in session.execute(query)]
    if wanted is not None:
        if destroyed:
            raise Refused("destroyed records have no stored bytes to check: "
                              + ", ".join(sorted(destroyed)))
        missing = sorted(set(wanted) - {j.record_id for j in jobs})
        if missing:
            raise NotFound("no such record: " + ", ".join(missing))
    return jobs


def _job(v: PackageVersion, number: str) -> PackageJob:
    return PackageJob(v.record_id, number, v.id, v.storage_key, v.size, dict(v.digests),
                      [(f.path, f.offset, f.size, dict(f.digests)) for f in v.files])


def count_packages(catalog: Catalog, record_ids: Iterable[str] | None) -> int:
    """How many package versions a check of ``record_ids`` will read (for progress)."""
    from sqlalchemy import func

    with catalog.unit_of_work(snapshot=True) as session:
        query = (select(func.count()).select_from(PackageVersion)
                 .join(Record, Record.id == PackageVersion.record_id)
                 .where(Record.status != "destroyed"))
        if record_ids is not None:
            query = query.where(PackageVersion.record_id.in_(list(record_ids)))
        return session.scalar(query) or 0
