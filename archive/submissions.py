"""Refused submissions and their return-to-sender reports (R-SIG-2).

An invalid or incomplete document is not archived: the archive keeps a
machine-readable report of why (in the object store under ``reports/`` and in the
catalog), records a notification to the sending organisation and to the responsible
clerk, and records the refusal as a PREMIS event and an audit entry, all in one
transaction after the report bytes are stored (storage first, catalog second).
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive import audit
from archive.clock import Clock, SystemClock
from archive.errors import NotFound
from archive.models import Event, Submission
from archive.notifications import record_notification
from archive.principal import Principal
from archive.storage import ObjectStore

REPORT_PREFIX = "reports/"


def report_key(submission_id: str) -> str:
    return f"{REPORT_PREFIX}{submission_id}.json"


def record_refusal(session: Session, store: ObjectStore, principal: Principal, *,
                   source_name: str, sha256: str, size: int, sender_org: str | None,
                   reason: str, report: dict, clock: Clock | None = None) -> Submission:
    """Store the report, then record submission, notifications, event and audit entry."""
    clock = clock or SystemClock()
    now = clock.now()
    submission_id = str(uuid.uuid4())
    document = {
        "submission_id": submission_id,
        "received_at": now.isoformat(),
        "source_name": source_name,
        "sha256": sha256,
        "size": size,
        "sender_org": sender_org,
        "clerk": str(principal),
        "outcome": "refused",
        "reason": reason,
        "report": report,
    }
    data = json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True,
                      default=str).encode("utf-8")
    key = report_key(submission_id)
    store.put(key, io.BytesIO(data), size=len(data))
    submission = Submission(id=submission_id, received_at=now, source_name=source_name,
                            sha256=sha256, size=size, sender_org=sender_org,
                            clerk=str(principal), outcome="refused", reason=reason,
                            report=json.loads(data), report_key=key)
    session.add(submission)
    subject = f"Văn bản bị trả lại / document returned: {source_name}"
    body = (f"{source_name} (SHA-256 {sha256}) was not archived: {reason}\n"
            f"Report: submission {submission_id}")
    for recipient in filter(None, [sender_org, str(principal)]):
        record_notification(session, recipient=recipient, kind="submission.refused",
                            subject=subject, body=body, related=f"submission:{submission_id}",
                            clock=clock)
    session.add(Event(id=str(uuid.uuid4()), record_id=None, event_type="ingestion",
                      occurred_at=now, agent=str(principal), outcome="failure",
                      detail=f"refused {source_name}: {reason}",
                      data={"submission_id": submission_id, "sha256": sha256}))
    audit.append(session, principal, "submission.refuse", f"submission:{submission_id}",
                 outcome="refused", detail={"source": source_name, "sha256": sha256,
                                            "reason": reason, "sender_org": sender_org},
                 clock=clock)
    return submission


def get_submission(session: Session, principal: Principal, submission_id: str, *,
                   clock: Clock | None = None) -> Submission:
    submission = session.get(Submission, submission_id)
    if submission is None:
        raise NotFound(f"no submission with id {submission_id!r}")
    audit.append(session, principal, "submission.view", f"submission:{submission_id}",
                 clock=clock)
    return submission


def list_submissions(session: Session, principal: Principal, *, since: datetime | None = None,
                     limit: int = 50, clock: Clock | None = None) -> list[Submission]:
    query = select(Submission).order_by(Submission.received_at.desc()).limit(limit)
    if since is not None:
        query = query.where(Submission.received_at >= since)
    rows = list(session.scalars(query))
    audit.append(session, principal, "submissions.list", "submissions",
                 detail={"returned": len(rows)}, clock=clock)
    return rows


def submission_to_dict(s: Submission) -> dict:
    return {"id": s.id, "received_at": s.received_at.isoformat(),
            "source_name": s.source_name, "sha256": s.sha256, "size": s.size,
            "sender_org": s.sender_org, "clerk": s.clerk, "outcome": s.outcome,
            "reason": s.reason, "report_key": s.report_key, "report": s.report.get("report")}

