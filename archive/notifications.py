"""Notifications (R-REVOKE-1, R-SIG-2): recorded in the catalog in the same transaction
as the change that causes them, then delivered after that transaction commits.

A notification is an outbox row: ``status`` is ``pending`` until a delivery channel
(e-mail, webhook; see ``preservation/notify.py``) has taken it (``sent``) or every
attempt failed (``failed``). Recipients without a configured channel keep it listed
in the UI only (``recorded``).
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from archive.clock import Clock, SystemClock
from archive.models import Notification

PENDING, SENT, FAILED, RECORDED = "pending", "sent", "failed", "recorded"


def record_notification(session: Session, *, recipient: str, kind: str, subject: str,
                        body: str, related: str | None = None,
                        clock: Clock | None = None) -> Notification:
    """Add a pending notification to ``recipient`` (an agent identifier or a principal)."""
    note = Notification(id=str(uuid.uuid4()), created_at=(clock or SystemClock()).now(),
                        recipient=recipient[:200], kind=kind, subject=subject[:500],
                        body=body, related=related, channel="outbox", status=PENDING,
                        attempts=0)
    session.add(note)
    return note
