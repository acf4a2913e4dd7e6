"""Notifications (R-REVOKE-1, R-SIG-2): recorded in the catalog in the same transaction
as the change that causes them, then delivered after that transaction commits.

A notification is an outbox row: ``status`` is ``pending`` until a delivery channel
(e-mail, webhook; see ``preservation/notify.py``) has taken it (``sent``) or every
attempt failed (``failed``). Recipients without a configured channel keep it listed
in the UI only (``recorded``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archive import audit, policy
from archive.clock import Clock, SystemClock
from archive.errors import InputError, NotFound
from archive.models import Notification
from archive.principal import Principal

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


# ---- listing and retrying (policy: own and organisation, or everything) ----------------

STATUSES = (PENDING, SENT, FAILED, RECORDED)


@dataclass(frozen=True)
class NotificationFilter:
    status: str | None = None
    recipient: str | None = None
    related: str | None = None  # e.g. record:<id>, submission:<id>
    limit: int = 50
    offset: int = 0


def sees_all(principal: Principal) -> bool:
    """Auditors (audit.read) and administrators (agent.manage, they keep the contacts)
    see every notification; the operator too."""
    actions = policy.allowed_actions(principal)
    return policy.AUDIT_READ in actions or policy.AGENT_MANAGE in actions


def own_recipients(principal: Principal) -> tuple[str, ...]:
    """The recipients whose notifications are the principal's: itself, its organisation."""
    return tuple(r for r in (str(principal), principal.organisation) if r)


def list_notifications(session: Session, principal: Principal,
                       flt: NotificationFilter | None = None, *, client: str = "",
                       clock: Clock | None = None) -> tuple[int, list[Notification]]:
    """Notifications newest first, with the total: the principal's own and its
    organisation's, or all for auditors and administrators. Audited."""
    flt = flt or NotificationFilter()
    if flt.status is not None and flt.status not in STATUSES:
        raise InputError(f"status: expected one of {', '.join(STATUSES)}")
    everything = sees_all(principal)
    condition = []
    if not everything:
        policy.require(principal, policy.ACCOUNT, client=client)
        mine = own_recipients(principal)
        if flt.recipient is not None and flt.recipient not in mine:
            # Somebody else's notifications: only for those who see all (denial audited).
            policy.require(principal, policy.AUDIT_READ, client=client)
        condition.append(Notification.recipient.in_(mine))
    if flt.recipient is not None:
        condition.append(Notification.recipient == flt.recipient)
    if flt.status is not None:
        condition.append(Notification.status == flt.status)
    if flt.related is not None:
        condition.append(Notification.related == flt.related)
    total = session.scalar(select(func.count()).select_from(Notification).where(*condition))
    rows = list(session.scalars(
        select(Notification).where(*condition)
        .order_by(Notification.created_at.desc(), Notification.id)
        .limit(flt.limit).offset(flt.offset)))
    audit.append(session, principal, "notifications.list", "notifications", client=client,
                 clock=clock, detail={"scope": "all" if everything else "own",
                                      "status": flt.status, "recipient": flt.recipient,
                                      "related": flt.related,
                                      "total": total, "returned": len(rows)})
    return total or 0, rows


def reopen(session: Session, principal: Principal, note_id: str, *, client: str = "",
           clock: Clock | None = None) -> Notification:
    """Put a failed notification back in the outbox (``failed`` → ``pending``, attempts
    counted afresh) for the next delivery run."""
    policy.require(principal, policy.AGENT_MANAGE, client=client)
    note = session.get(Notification, note_id, with_for_update=True)
    if note is None:
        raise NotFound(f"no notification with id {note_id!r}")
    if note.status != FAILED:
        raise InputError(f"notification {note_id} is {note.status}: only a failed "
                         "notification is retried")
    previous = note.attempts
    note.status, note.attempts = PENDING, 0
    audit.append(session, principal, "notification.retry", f"notification:{note.id}",
                 client=client, clock=clock,
                 detail={"recipient": note.recipient, "kind": note.kind,
                         "previous_attempts": previous, "last_error": note.last_error})
    return note


def notification_to_dict(n: Notification) -> dict:
    return {"id": n.id, "created_at": n.created_at.isoformat(), "recipient": n.recipient,
            "kind": n.kind, "subject": n.subject, "body": n.body, "related": n.related,
            "channel": n.channel, "status": n.status, "attempts": n.attempts or 0,
            "delivered_at": n.delivered_at.isoformat() if n.delivered_at else None,
            "last_error": n.last_error}
