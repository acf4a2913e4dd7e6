"""``/healthz`` and ``/metrics``: is the archive working, and how is it doing
(R-INCIDENT-1). Neither needs a login nor reveals anything about records beyond counts.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text

from archive.audit import CHECKPOINT_PREFIX
from archive.errors import ArchiveError
from archive.models import AuditEntry, PackageVersion

bp = Blueprint("ops", __name__)


def _instance():
    return current_app.config["ARCHIVE"]


def _last_runs(session) -> dict:
    """When the periodic jobs last ran, from the catalog and the store."""
    runs: dict = {}
    last_fixity = session.scalar(select(func.max(PackageVersion.last_fixity_at)))
    failed = session.scalar(select(func.count()).select_from(PackageVersion)
                            .where(PackageVersion.last_fixity_outcome == "failed"))
    runs["fixity"] = {"last_at": last_fixity.isoformat() if last_fixity else None,
                      "packages_failing": failed or 0}
    last_entry = session.scalar(select(func.max(AuditEntry.occurred_at)))
    runs["audit_log"] = {"last_entry_at": last_entry.isoformat() if last_entry else None}
    # R-SCHED-1 / R-INCIDENT-1: each job's last run, and failed runs not followed by a
    # successful run of the same job (an alert until then).
    from preservation.runner import last_runs

    runs["runs"] = last_runs(session)
    runs["failing"] = sorted(job for job, info in runs["runs"].items()
                             if info.get("failed_since_ok"))
    return runs


def _last_checkpoint(store) -> dict:
    latest = None
    for info in store.list(CHECKPOINT_PREFIX):
        if latest is None or info.key > latest.key:
            latest = info
    return {"last_at": latest.modified.isoformat() if latest else None,
            "key": latest.key if latest else None}


@bp.get("/healthz")
def healthz():
    """Database, storage and the last job runs; 503 when something is down."""
    instance = _instance()
    checks: dict = {}
    status = 200
    try:
        with instance.catalog.unit_of_work(snapshot=True) as session:
            session.execute(text("SELECT 1"))
            checks["database"] = {"ok": True}
            checks["jobs"] = _last_runs(session)
    except ArchiveError as exc:
        checks["database"] = {"ok": False, "error": exc.message}
        status = 503
    try:
        instance.store.check()
        checks["storage"] = {"ok": True, "store": instance.store.name}
        checks.setdefault("jobs", {})["audit_checkpoint"] = _last_checkpoint(instance.store)
    except ArchiveError as exc:
        checks["storage"] = {"ok": False, "error": exc.message}
        status = 503
    failing = checks.get("jobs", {}).get("fixity", {}).get("packages_failing", 0)
    failed_jobs = checks.get("jobs", {}).get("failing", [])
    state = "ok" if status == 200 else "unavailable"
    if status == 200 and (failing or failed_jobs):
        # R-INCIDENT-1: damaged packages and failed job runs are incidents; still 200
        # (the archive serves), the monitor alerts on "degraded" (docs/operations.md).
        state = "degraded"
    return jsonify({"status": state, "checks": checks}), status


@bp.get("/metrics")
def metrics():
    """Prometheus text format."""
    registry = current_app.extensions["metrics"]["registry"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
