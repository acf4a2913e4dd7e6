"""Delivery of recorded notifications (R-REVOKE-1, R-SIG-2): the outbox drain.

Notifications are recorded ``pending`` by :func:`archive.notifications.record_notification`
in the transaction that causes them. :func:`deliver_pending` runs after that commit (and
on demand: ``archive notifications deliver``): it claims each pending row in its own
transaction (PostgreSQL: ``FOR UPDATE SKIP LOCKED``, so two deliverers never send one
notification twice; SQLite: the write lock of ``BEGIN IMMEDIATE``), resolves where the
recipient wants it (an agent's e-mail address and webhook URL; a user's person's
e-mail address) and hands it to every channel that can reach that address.

Each attempt updates the row (attempts, status, channels delivered, last error) and
appends one ``notification.deliver`` audit entry in the same transaction. A channel
failure never raises out of :func:`deliver_pending` and never loses the notification:
the row stays ``pending`` and is retried on the next run, until ``max_attempts``
attempts have failed (then ``failed``; ``archive notifications retry`` reopens it). A
channel that already delivered is not used again on a retry. A recipient with no
reachable address keeps the notification listed in the UI only (``recorded``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive import audit
from archive.clock import Clock, SystemClock
from archive.db import Catalog
from archive.errors import ArchiveError, NotFound
from archive.models import Agent, Notification, User
from archive.notifications import FAILED, PENDING, RECORDED, SENT
from archive.principal import Principal
from archive.settings import Settings

DELIVERER = Principal.system("notify")
_OUTBOX = "outbox"  # Notification.channel before any channel has delivered


class DeliveryFailed(ArchiveError):
    """One channel could not hand a notification over (kept for a retry)."""

    def __init__(self, channel: str, reason: str):
        super().__init__(f"{channel}: {reason}")
        self.channel = channel
        self.reason = reason


# ---- recipients and channels ---------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """Where a recipient wants notifications (empty fields: not reachable that way)."""

    recipient: str
    name: str = ""
    email: str | None = None
    webhook_url: str | None = None


@dataclass(frozen=True)
class Message:
    """What a channel delivers: one notification, detached from the session."""

    id: str
    kind: str
    subject: str
    body: str
    related: str | None
    created_at: str
    recipient: str

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "subject": self.subject,
                "body": self.body, "related": self.related,
                "created_at": self.created_at, "recipient": self.recipient}


class Channel(Protocol):
    """A way of delivering a notification (e-mail, webhook, ...)."""

    name: str

    def address(self, contact: Contact) -> str | None:
        """The contact's address on this channel, or None when it has none."""

    def configured(self) -> bool:
        """Whether this channel can send at all (e.g. an SMTP server is set)."""

    def send(self, message: Message, contact: Contact, address: str) -> None:
        """Deliver or raise :class:`DeliveryFailed`."""


def _read_secret(path: str, setting: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes().strip()
    except OSError as exc:
        # The file name only, never its content.
        raise DeliveryFailed(setting, f"cannot read {setting} ({exc.strerror})") from exc


class EmailChannel:
    """E-mail through an SMTP server (settings [notifications] smtp_*)."""

    name = "email"

    def __init__(self, *, host: str, port: int, starttls: bool = False, username: str = "",
                 password_file: str = "", sender: str, timeout: float = 10,
                 system_name: str = ""):
        self.host, self.port, self.starttls = host, port, starttls
        self.username, self.password_file = username, password_file
        self.sender, self.timeout, self.system_name = sender, timeout, system_name

    @classmethod
    def from_settings(cls, settings: Settings) -> EmailChannel:
        section = settings.notifications
        return cls(host=section.smtp_host, port=section.smtp_port,
                   starttls=section.smtp_starttls, username=section.smtp_username,
                   password_file=section.smtp_password_file, sender=section.sender,
                   timeout=section.timeout_seconds, system_name=settings.archive.system_name)

    def configured(self) -> bool:
        return bool(self.host)

    def address(self, contact: Contact) -> str | None:
        return contact.email or None

    def compose(self, message: Message, contact: Contact, address: str) -> EmailMessage:
        mail = EmailMessage()  # UTF-8 subject and body (Vietnamese text)
        mail["From"] = self.sender
        mail["To"] = address
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(SystemClock().now())
        mail["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        mail["X-Archive-Notification"] = message.id
        lines = [message.body, ""]
        if message.related:
            lines.append(f"Liên quan / Related: {message.related}")
        lines.append(f"Mã thông báo / Notification: {message.id}")
        if self.system_name:
            lines.append(f"-- {self.system_name}")
        mail.set_content("\n".join(lines) + "\n", charset="utf-8")
        return mail

    def send(self, message: Message, contact: Contact, address: str) -> None:
        mail = self.compose(message, contact, address)
        password = (_read_secret(self.password_file, "smtp_password_file").decode()
                    if self.username and self.password_file else None)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username and password is not None:
                    smtp.login(self.username, password)
                refused = smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(self.name, _describe(exc)) from exc
        if refused:
            raise DeliveryFailed(self.name, f"recipient refused: {address}")


class WebhookChannel:
    """An HTTP POST of the notification as JSON to the recipient's webhook URL.

    With ``webhook_secret_file`` set, the header ``X-Archive-Signature`` carries
    ``sha256=<HMAC-SHA256 hex of the exact body bytes>`` so the receiver can check the
    sender. Any 2xx answer is a delivery.
    """

    name = "webhook"
    SIGNATURE_HEADER = "X-Archive-Signature"

    def __init__(self, *, secret_file: str = "", timeout: float = 10, user_agent: str = ""):
        self.secret_file, self.timeout = secret_file, timeout
        self.user_agent = user_agent or "kho-luu-tru-so notifications"

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookChannel:
        section = settings.notifications
        return cls(secret_file=section.webhook_secret_file, timeout=section.timeout_seconds)

    def configured(self) -> bool:
        return True

    def address(self, contact: Contact) -> str | None:
        return contact.webhook_url or None

    @staticmethod
    def body_of(message: Message) -> bytes:
        return json.dumps(message.to_dict(), ensure_ascii=False, sort_keys=True,
                          separators=(",", ":")).encode("utf-8")

    @staticmethod
    def signature(key: bytes, body: bytes) -> str:
        return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()

    def send(self, message: Message, contact: Contact, address: str) -> None:
        if urllib.parse.urlsplit(address).scheme not in ("http", "https"):
            raise DeliveryFailed(self.name, "webhook URL is not http(s)")
        body = self.body_of(message)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "User-Agent": self.user_agent,
                   "X-Archive-Notification": message.id}
        if self.secret_file:
            headers[self.SIGNATURE_HEADER] = self.signature(
                _read_secret(self.secret_file, "webhook_secret_file"), body)
        request = urllib.request.Request(  # noqa: S310 - http(s) checked above
            address, data=body, headers=headers, method="POST")
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            with opener.open(request, timeout=self.timeout) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            exc.close()
            raise DeliveryFailed(self.name, f"HTTP {exc.code} from "
                                 f"{_redact(address)}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DeliveryFailed(self.name, f"{_redact(address)}: {_describe(exc)}") from exc
        if not 200 <= status < 300:
            raise DeliveryFailed(self.name, f"HTTP {status} from {_redact(address)}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook answers itself: a redirect is a failed delivery, not a new target."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# Pluggable: a channel name -> a factory from the settings. Order is delivery order.
CHANNELS: dict[str, Callable[[Settings], Channel]] = {
    "email": EmailChannel.from_settings,
    "webhook": WebhookChannel.from_settings,
}


def channels_from_settings(settings: Settings) -> list[Channel]:
    return [factory(settings) for factory in CHANNELS.values()]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and exc.reason is not None:
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    text = str(exc) or type(exc).__name__
    return text[:300]


def _redact(url: str) -> str:
    """A URL without user information or query (it may carry a token)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def resolve_contact(session: Session, recipient: str) -> Contact:
    """Where ``recipient`` is reached: an agent identifier, or a principal ``user:NAME``."""
    if recipient.startswith("user:"):
        user = session.execute(
            select(User).where(User.username == recipient.removeprefix("user:"))
        ).scalar_one_or_none()
        if user is None:
            return Contact(recipient)
        person = session.get(Agent, user.person_id)
        if person is None:
            return Contact(recipient)
        return Contact(recipient, person.name, person.email or None,
                       person.webhook_url or None)
    agent = session.execute(
        select(Agent).where(Agent.identifier == recipient)).scalar_one_or_none()
    if agent is None:
        return Contact(recipient)
    return Contact(recipient, agent.name, agent.email or None, agent.webhook_url or None)


# ---- the report ----------------------------------------------------------------------


@dataclass
class DeliveryOutcome:
    id: str
    recipient: str
    kind: str
    status: str  # sent | pending (retry later) | failed | recorded | skipped
    attempts: int = 0
    channels: list[str] = field(default_factory=list)  # delivered in this attempt
    error: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.id, "recipient": self.recipient, "kind": self.kind,
                "status": self.status, "attempts": self.attempts,
                "channels": list(self.channels), "error": self.error}


@dataclass
class DeliveryReport:
    outcomes: list[DeliveryOutcome] = field(default_factory=list)

    def _count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def sent(self) -> int:
        return self._count(SENT)

    @property
    def retrying(self) -> int:
        return self._count(PENDING)

    @property
    def failed(self) -> int:
        return self._count(FAILED)

    @property
    def recorded(self) -> int:
        return self._count(RECORDED)

    @property
    def skipped(self) -> int:
        return self._count("skipped")

    @property
    def ok(self) -> bool:
        """No attempt failed in this run (a retry later or a final failure)."""
        return not any(o.error for o in self.outcomes if o.status in (PENDING, FAILED))

    def to_dict(self) -> dict:
        return {"ok": self.ok, "attempted": len(self.outcomes) - self.skipped,
                "sent": self.sent, "retrying": self.retrying, "failed": self.failed,
                "recorded": self.recorded, "skipped": self.skipped,
                "outcomes": [o.to_dict() for o in self.outcomes]}


# ---- the drain -----------------------------------------------------------------------


def deliver_pending(settings: Settings, catalog: Catalog, *, ids: list[str] | None = None,
                    clock: Clock | None = None, related: str | None = None,
                    channels: list[Channel] | None = None,
                    principal: Principal | None = None, client: str = "",
                    progress: Callable[[DeliveryOutcome], None] | None = None
                    ) -> DeliveryReport:
    """Deliver pending notifications (all, or ``ids``); never raises for a channel.

    ``related`` (e.g. ``submission:ID``, ``record:ID``) limits the run to the pending
    notifications about that thing: what a use case calls right after its commit.
    Unknown ``ids`` raise :class:`NotFound` before anything is sent; an id that is no
    longer pending (delivered, failed, or claimed by another deliverer) is ``skipped``.
    """
    clock = clock or SystemClock()
    principal = principal or DELIVERER
    channels = channels if channels is not None else channels_from_settings(settings)
    max_attempts = max(1, settings.notifications.max_attempts)
    with catalog.unit_of_work(snapshot=True) as session:
        query = select(Notification.id, Notification.status)
        if ids is not None:
            wanted = list(dict.fromkeys(ids))
            query = query.where(Notification.id.in_(wanted))
        else:
            query = query.where(Notification.status == PENDING)
        if related is not None:
            query = query.where(Notification.related == related)
        rows = session.execute(
            query.order_by(Notification.created_at, Notification.id)).all()
    if ids is not None:
        missing = sorted(set(wanted) - {row.id for row in rows})
        if missing:
            raise NotFound(f"no notification with id {', '.join(missing)}")
    report = DeliveryReport()
    for row in rows:
        outcome = _deliver_one(catalog, row.id, channels, max_attempts, clock, principal,
                               client)
        report.outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    return report


def _deliver_one(catalog: Catalog, note_id: str, channels: list[Channel], max_attempts: int,
                 clock: Clock, principal: Principal, client: str) -> DeliveryOutcome:
    with catalog.unit_of_work() as session:
        note = session.execute(
            select(Notification)
            .where(Notification.id == note_id, Notification.status == PENDING)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        ).scalar_one_or_none()
        if note is None:  # delivered, failed or claimed by another deliverer meanwhile
            current = session.get(Notification, note_id)
            return DeliveryOutcome(note_id, current.recipient if current else "",
                                   current.kind if current else "", "skipped",
                                   current.attempts if current else 0)
        contact = resolve_contact(session, note.recipient)
        done = set() if note.channel in (_OUTBOX, "", None) else set(note.channel.split("+"))
        message = Message(note.id, note.kind, note.subject, note.body, note.related,
                          note.created_at.isoformat(), note.recipient)
        targets, unconfigured = [], []
        for channel in channels:
            address = channel.address(contact)
            if address is None:
                continue
            if not channel.configured():
                unconfigured.append(channel.name)
            elif channel.name not in done:
                targets.append((channel, address))
        outcome = DeliveryOutcome(note.id, note.recipient, note.kind, PENDING, note.attempts)
        if not targets and not done:
            # Nothing can reach this recipient: the notification is listed in the UI only.
            note.status = outcome.status = RECORDED
            note.channel = "recorded"
            reason = ("no e-mail address or webhook URL for this recipient"
                      if not unconfigured else
                      f"no delivery channel configured for {', '.join(unconfigured)}")
            note.last_error = outcome.error = f"listed only: {reason}"
            audit.append(session, principal, "notification.deliver", f"notification:{note.id}",
                         outcome="ok", client=client, clock=clock,
                         detail={"recipient": note.recipient, "kind": note.kind,
                                 "status": RECORDED, "reason": reason})
            return outcome
        errors: list[str] = []
        for channel, address in targets:
            try:
                channel.send(message, contact, address)
            except DeliveryFailed as exc:
                errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - a plug-in channel must not lose it
                errors.append(f"{channel.name}: {type(exc).__name__}: {_describe(exc)}")
            else:
                done.add(channel.name)
                outcome.channels.append(channel.name)
        note.attempts = outcome.attempts = note.attempts + 1
        if done:
            note.channel = "+".join(c.name for c in channels if c.name in done)[:32]
        if errors:
            note.last_error = outcome.error = "; ".join(errors)[:2000]
            note.status = outcome.status = FAILED if note.attempts >= max_attempts else PENDING
        else:
            note.status = outcome.status = SENT
            note.last_error = None
            note.delivered_at = clock.now()
        audit.append(session, principal, "notification.deliver", f"notification:{note.id}",
                     outcome="failed" if errors else "ok", client=client, clock=clock,
                     detail={"recipient": note.recipient, "kind": note.kind,
                             "status": note.status, "attempt": note.attempts,
                             "channels": outcome.channels, "errors": errors})
        return outcome

