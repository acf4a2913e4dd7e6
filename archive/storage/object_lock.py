"""Object Lock retention until a record's expiry (R-DESTROY-1).

When the primary store is an S3 bucket with Object Lock (``storage.s3_object_lock =
"auto"``), every AIP version of a record carries COMPLIANCE retention until the end of
the record's ``retention_until`` day: nobody, not even the owner of the storage
credentials, can delete it earlier. Permanent records (``retention_until`` None) keep
only the retention ``storage.s3_retention_days`` gives every object when it is written.

One helper for every path that stores an AIP version (``ingest.services.store_aip``,
used by ingest and by the next AIP version) and for retention extensions
(:func:`lock_record_versions`). Retention is only ever extended (:meth:`S3Store.
set_retention` keeps a later date in force). Stores without Object Lock (a folder, the
memory fake, a bucket without it) are left alone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from archive.storage.base import ObjectStore

__all__ = ["apply_retention", "lock_until", "lock_record_versions", "supports_retention"]


def lock_until(until: date) -> datetime:
    """The moment an object of a record kept until ``until`` may be deleted: the start
    (UTC) of the day after, so the object is locked through its whole last day."""
    return datetime.combine(until + timedelta(days=1), time(0, 0), tzinfo=UTC)


def supports_retention(store: ObjectStore) -> bool:
    """Whether ``store`` puts retention on objects: S3 with Object Lock, not turned off."""
    if getattr(store, "object_lock", "off") != "auto" or \
            not callable(getattr(store, "set_retention", None)):
        return False
    return bool(store.object_lock_enabled())  # type: ignore[attr-defined]


def apply_retention(store: ObjectStore, key: str, until: date | None, *,
                    now: datetime | None = None) -> datetime | None:
    """Keep ``key`` under COMPLIANCE retention until the end of day ``until``.

    Does nothing (returns None) when the store has no Object Lock, the record is
    permanent (``until`` None) or its retention already ended; otherwise returns the
    retention date in force (a later one already set is kept)."""
    if until is None or not supports_retention(store):
        return None
    end = lock_until(until)
    if now is None:
        clock = getattr(store, "clock", None)
        now = clock.now() if clock is not None else datetime.now(UTC)
    if end <= now:
        return None
    return store.set_retention(key, end)  # type: ignore[attr-defined]


def lock_record_versions(store: ObjectStore, record, *,
                         now: datetime | None = None) -> dict[str, datetime]:
    """Apply the record's ``retention_until`` to every AIP version it has (after a
    retention extension). ``record`` is a catalog :class:`~archive.models.Record` with
    its versions loaded. Returns {storage key: retention in force} for the keys locked."""
    out: dict[str, datetime] = {}
    if record.retention_until is None or not supports_retention(store):
        return out
    for version in record.versions:
        found = apply_retention(store, version.storage_key, record.retention_until, now=now)
        if found is not None:
            out[version.storage_key] = found
    return out
