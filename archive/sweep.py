"""The storage sweeper: finds what a crashed ingest left behind (write then register).

Ingest writes the AIP to the store before the catalog row commits (and so do the next
AIP versions, paper renditions and seal manifests of the record lifecycle). A crash between
the two leaves an object no catalog row points at. Such an orphan was never
acknowledged as archived (the ingest did not report success), so the sweeper
removes it once it is older than a grace period (so it never races an ingest in
flight); the submission is simply ingested again. It also removes staging folders
and half-written temporary files of killed writers. Registered objects are never
touched.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, timedelta

from sqlalchemy import select

from archive import audit
from archive.clock import Clock, SystemClock
from archive.db import Catalog
from archive.errors import ArchiveError, Refused
from archive.models import PackageVersion, Record, Rendition, Seal
from archive.principal import Principal
from archive.settings import Settings
from archive.storage import ObjectStore

AIP_PREFIX = "aip/"
# Prefixes of objects written before their catalog row (storage first, catalog second).
SWEPT_PREFIXES = (AIP_PREFIX, "renditions/", "seals/")


@dataclass
class SweepReport:
    dry_run: bool
    objects_seen: int = 0
    orphans: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    too_recent: list[str] = field(default_factory=list)
    # Orphans under S3 Object Lock retention: removable only once retention ends.
    locked: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    incomplete_removed: int = 0
    staging_removed: int = 0
    missing: list[str] = field(default_factory=list)  # registered but absent: a fixity matter

    def to_dict(self) -> dict:
        return asdict(self)


def sweep_storage(settings: Settings, catalog: Catalog, store: ObjectStore,
                  principal: Principal, *, grace_seconds: int = 3600, dry_run: bool = False,
                  clock: Clock | None = None) -> SweepReport:
    clock = clock or SystemClock()
    report = SweepReport(dry_run=dry_run)
    now = clock.now()
    cutoff = now - timedelta(seconds=grace_seconds)

    # Listing first, catalog second: an object registered after our catalog read
    # must already be in the listing, and is then excluded by the grace period.
    listed = [info for prefix in SWEPT_PREFIXES for info in store.list(prefix)]
    with catalog.unit_of_work(snapshot=True) as session:
        registered = _registered(session)
        # A destroyed record's packages are gone on purpose (R-DESTROY-1): not missing.
        destroyed = set(session.scalars(
            select(PackageVersion.storage_key).join(Record)
            .where(Record.status == "destroyed")))
    report.objects_seen = len(listed)
    listed_keys = {info.key for info in listed}
    report.missing = sorted(k for k in registered if k.startswith(AIP_PREFIX)
                            and k not in listed_keys and k not in destroyed)

    for info in listed:
        if _is_registered(info.key, registered):
            continue
        modified = info.modified if info.modified.tzinfo else info.modified.replace(tzinfo=UTC)
        if modified > cutoff:
            report.too_recent.append(info.key)
            continue
        report.orphans.append(info.key)
        if dry_run:
            continue
        # Re-check just before deleting: a slow ingest may have registered it.
        with catalog.unit_of_work(snapshot=True) as session:
            if _is_registered(info.key, _registered(session)):
                continue
        try:
            store.delete(info.key)
            report.removed.append(info.key)
        except Refused as exc:
            report.locked.append(f"{info.key}: {exc.message}")
        except ArchiveError as exc:
            report.errors.append(f"{info.key}: {exc.message}")

    if not dry_run:
        remove_incomplete = getattr(store, "remove_incomplete", None)
        if remove_incomplete is not None:
            report.incomplete_removed = remove_incomplete(grace_seconds)
        report.staging_removed = _clean_staging(settings, grace_seconds)

    with catalog.unit_of_work() as session:
        audit.append(session, principal, "storage.sweep", f"store:{store.name}",
                     outcome="ok" if not report.errors else "failed",
                     detail={"dry_run": dry_run, "objects_seen": report.objects_seen,
                             "orphans": report.orphans[:100], "removed": len(report.removed),
                             "locked": report.locked[:100],
                             "missing": report.missing[:100],
                             "incomplete_removed": report.incomplete_removed,
                             "staging_removed": report.staging_removed}, clock=clock)
    return report


def _registered(session) -> set[str]:
    """Every storage key (and seal folder) a catalog row points at."""
    keys = set(session.scalars(select(PackageVersion.storage_key)))
    keys.update(k for k in session.scalars(select(Rendition.storage_key)) if k)
    keys.update(f"seals/{seal_id}/" for seal_id in session.scalars(select(Seal.id)))
    return keys


def _is_registered(key: str, registered: set[str]) -> bool:
    if key.startswith("seals/"):  # manifest.json, .sig and .tsr of one seal
        return key[:key.find("/", len("seals/")) + 1] in registered
    return key in registered


def _clean_staging(settings: Settings, grace_seconds: int) -> int:
    root = settings.staging_dir
    if not root.is_dir():
        return 0
    removed = 0
    limit = time.time() - grace_seconds
    for entry in root.iterdir():
        try:
            if entry.stat().st_mtime <= limit:
                if entry.is_dir():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
                removed += 1
        except OSError:
            continue
    return removed

