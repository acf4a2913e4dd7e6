"""Delivery of notifications (R-REVOKE-1, R-SIG-2) against real local servers: an SMTP
server (aiosmtpd) and an HTTP webhook receiver (http.server), both started by the test
on 127.0.0.1. Every catalog test runs on SQLite and on PostgreSQL (``archive_env``)."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyotp
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from archive.models import AuditEntry, Notification
from archive.notifications import record_notification
from archive.principal import Principal
from tests.accounts import PASSWORD, Account
from tests.conftest import ORG, ORG2, sample_metadata

OPERATOR = Principal.system("test")
SECRET = b"webhook-test-key-\xc4\x91"  # noqa: S105 (a test key)


# ---- real local servers ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """aiosmtpd handler keeping every message received."""

    def __init__(self):
        self.messages: list[tuple[str, list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        parsed = email.message_from_bytes(envelope.original_content or envelope.content,
                                          policy=email.policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.inbox = Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)

    def start(self) -> SmtpServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def messages(self):
        return self.inbox.messages


class Webhook:
    """An HTTP receiver on 127.0.0.1:0 answering ``status`` (or each of ``statuses``)."""

    def __init__(self, status: int = 200, delay: float = 0.0):
        self.status, self.delay = status, delay
        self.received: list[tuple[dict, bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                time.sleep(receiver.delay)
                with receiver.lock:
                    receiver.received.append((dict(self.headers), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/archive"

    def bodies(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def webhook():
    receiver = Webhook()
    yield receiver
    receiver.close()


def configure(aenv, *, smtp_port: int | None = None, max_attempts: int = 3) -> None:
    key = aenv.tmp_path / "webhook.key"
    key.write_bytes(SECRET + b"\n")
    aenv.env.update({
        "ARCHIVE_NOTIFICATIONS__SMTP_HOST": "127.0.0.1" if smtp_port else "",
        "ARCHIVE_NOTIFICATIONS__SMTP_PORT": str(smtp_port or 25),
        "ARCHIVE_NOTIFICATIONS__SENDER": "kho-luu-tru@tinhuy.example.vn",
        "ARCHIVE_NOTIFICATIONS__WEBHOOK_SECRET_FILE": str(key),
        "ARCHIVE_NOTIFICATIONS__TIMEOUT_SECONDS": "5",
        "ARCHIVE_NOTIFICATIONS__MAX_ATTEMPTS": str(max_attempts),
    })


class People:
    """Users made through the core services (no web app needed): username -> account."""

    def __init__(self, aenv):
        self.aenv = aenv
        self.instance = aenv.instance()
        self.accounts: dict[str, Account] = {}

    def db(self):
        return self.instance.catalog.unit_of_work()

    def add_user(self, username: str, role: str, *, org: str = ORG) -> Account:
        from archive.agents import register_agent
        from archive.users import add_user

        person = f"{990000000000 + len(self.accounts) + 1:012d}"
        with self.db() as db:
            register_agent(db, self.instance.settings, OPERATOR, kind="person",
                           identifier=person, name=f"Người dùng {username}", parent=org)
            user = add_user(db, self.instance.settings, OPERATOR, username=username,
                            person=person, role=role, password=PASSWORD,
                            fonds=["PHONG-01"])
            account = Account(username, person, role, "normal", user.totp_secret)
        self.accounts[username] = account
        return account

    def close(self) -> None:
        pass


def set_contact(aenv, identifier: str, *, email: str | None = None,
                webhook: str | None = None) -> None:
    from archive.agents import set_contact as change

    instance = aenv.instance()
    with instance.catalog.unit_of_work() as session:
        change(session, OPERATOR, identifier, email=email, webhook_url=webhook)


def notify(aenv, recipient: str, *, kind: str = "test", subject: str = "Thông báo thử",
           body: str = "Nội dung thông báo", related: str | None = None) -> str:
    instance = aenv.instance()
    with instance.catalog.unit_of_work() as session:
        return record_notification(session, recipient=recipient, kind=kind, subject=subject,
                                   body=body, related=related).id


def notification(aenv, note_id: str) -> Notification:
    with aenv.instance().catalog.unit_of_work(snapshot=True) as session:
        note = session.get(Notification, note_id)
        session.expunge(note)
        return note


def audit_of(aenv, action: str, target: str | None = None) -> list[AuditEntry]:
    with aenv.instance().catalog.unit_of_work(snapshot=True) as session:
        query = select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        if target is not None:
            query = query.where(AuditEntry.target == target)
        rows = list(session.scalars(query))
        session.expunge_all()
        return rows


def deliver(aenv, *ids: str):
    from preservation.notify import deliver_pending

    instance = aenv.instance()
    return deliver_pending(instance.settings, instance.catalog, ids=list(ids) or None)


def verify_signature(headers: dict, body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("X-Archive-Signature", ""), expected)


# ---- a refusal, delivered by e-mail and webhook -----------------------------------------


def test_refusal_is_delivered_by_email_and_signed_webhook(archive_env, smtp, webhook):
    """R-SIG-2: a refused document's notification reaches the sending organisation by
    e-mail (UTF-8 Vietnamese subject and body) and by webhook (JSON, HMAC-signed) right
    after the refusal commits; the clerk without an address keeps it listed only."""
    configure(archive_env, smtp_port=smtp.port)
    set_contact(archive_env, ORG, email="van-thu@tinhuy.example.vn", webhook=webhook.url)
    path = archive_env.tmp_path / "công-văn-sai.txt"
    path.write_text("không phải PDF", encoding="utf-8")
    path.with_name(path.name + ".json").write_text(json.dumps(sample_metadata()),
                                                   encoding="utf-8")
    refused = archive_env.invoke("ingest", str(path), "--json")
    assert refused.exit_code == 3
    submission_id = json.loads(refused.stdout)["results"][0]["submission_id"]

    assert len(smtp.messages) == 1
    sender, rcpts, mail = smtp.messages[0]
    assert sender == "kho-luu-tru@tinhuy.example.vn"
    assert rcpts == ["van-thu@tinhuy.example.vn"]
    assert mail["Subject"] == "Văn bản bị trả lại / document returned: công-văn-sai.txt"
    text = mail.get_body().get_content()
    assert "công-văn-sai.txt" in text and f"submission {submission_id}" in text
    assert mail.get_content_charset() == "utf-8"

    assert len(webhook.received) == 1
    headers, raw = webhook.received[0]
    assert headers["Content-Type"].startswith("application/json")
    assert verify_signature(headers, raw)
    payload = json.loads(raw.decode("utf-8"))
    assert payload["kind"] == "submission.refused" and payload["recipient"] == ORG
    assert payload["subject"] == mail["Subject"]
    assert payload["related"] == f"submission:{submission_id}"
    assert set(payload) == {"id", "kind", "subject", "body", "related", "created_at",
                            "recipient"}

    rows = {n["recipient"]: n for n in archive_env.json("notifications", "list")}
    to_org = rows[ORG]
    assert to_org["status"] == "sent" and to_org["attempts"] == 1
    assert to_org["channel"] == "email+webhook" and to_org["delivered_at"]
    clerk = next(n for r, n in rows.items() if r.startswith("system:cli:"))
    assert clerk["status"] == "recorded"
    assert "no e-mail address or webhook URL" in clerk["last_error"]
    entries = audit_of(archive_env, "notification.deliver", f"notification:{to_org['id']}")
    assert [(e.outcome, e.detail["status"]) for e in entries] == [("ok", "sent")]
    assert archive_env.invoke("audit", "verify").exit_code == 0


def test_revocation_reaches_issuing_and_receiving_organisations(archive_env, smtp, webhook):
    """R-REVOKE-1: a revocation's notifications go to the issuing organisation and each
    receiving organisation, delivered right after the decision commits."""
    from archive.revocation import KIND_REVOKED, revoke
    from archive.users import get_user, principal_for

    configure(archive_env, smtp_port=smtp.port)
    set_contact(archive_env, ORG, email="van-phong@tinhuy.example.vn", webhook=webhook.url)
    set_contact(archive_env, ORG2, email="ban-to-chuc@tinhuy.example.vn")
    pdf = archive_env.sample("qd.pdf", recipients=[ORG2])
    record_id = archive_env.json("ingest", str(pdf))["results"][0]["record_id"]
    people = People(archive_env)
    people.add_user("pheduyet", "approver")
    with people.db() as db:
        approver = principal_for(get_user(db, "pheduyet"), "totp")
        outcome = revoke(db, approver, record_id, reason="Ban hành sai thẩm quyền",
                         form="Quyết định", legal_basis="Điều 12 Quy chế",
                         decision_ref="45-QĐ/TU")
        ids = [n.id for n in outcome.notifications]
    report = deliver(archive_env, *ids)

    assert report.ok and report.sent == 2
    assert sorted(r for _, rcpts, _ in smtp.messages for r in rcpts) == \
        ["ban-to-chuc@tinhuy.example.vn", "van-phong@tinhuy.example.vn"]
    for _, _, mail in smtp.messages:
        assert mail["Subject"].startswith("Hủy hiệu lực văn bản số 12-QĐ/TU ngày 14/03/2025")
        text = mail.get_body().get_content()
        assert "Ban hành sai thẩm quyền" in text and record_id in text
    assert [(b["recipient"], b["kind"], b["related"]) for b in webhook.bodies()] == \
        [(ORG, KIND_REVOKED, f"record:{record_id}")]
    assert verify_signature(*webhook.received[0])
    rows = {n["recipient"]: n["status"] for n in
            archive_env.json("notifications", "list", "--status", "sent")}
    assert rows == {ORG: "sent", ORG2: "sent"}


def test_a_tampered_body_does_not_verify(archive_env, webhook):
    """The signature covers the exact body: a receiver detects a changed byte."""
    configure(archive_env)
    set_contact(archive_env, ORG, webhook=webhook.url)
    notify(archive_env, ORG, subject="Thu hồi hiệu lực văn bản 12-QĐ/TU")
    assert deliver(archive_env).sent == 1
    headers, raw = webhook.received[0]
    assert verify_signature(headers, raw)
    assert not verify_signature(headers, raw.replace("Thu hồi".encode(), b"Thu hoi"))


def test_user_recipient_gets_email_of_their_person(archive_env, smtp):
    """A principal ``user:NAME`` is reached at the e-mail address of that user's person."""
    configure(archive_env, smtp_port=smtp.port)
    web = People(archive_env)
    try:
        clerk = web.add_user("vanthu", "clerk")
        set_contact(archive_env, clerk.person, email="vanthu@tinhuy.example.vn")
        note_id = notify(archive_env, "user:vanthu", subject="Văn bản của đồng chí bị trả lại")
        report = deliver(archive_env)
    finally:
        web.close()
    assert report.to_dict()["sent"] == 1
    assert [m[1] for m in smtp.messages] == [["vanthu@tinhuy.example.vn"]]
    assert smtp.messages[0][2]["Subject"] == "Văn bản của đồng chí bị trả lại"
    assert notification(archive_env, note_id).status == "sent"


# ---- failures: retried, never lost ---------------------------------------------------


def test_smtp_down_is_retried_later_and_delivered(archive_env):
    """SMTP unreachable: the attempt is recorded (audited as failed), the notification
    stays pending; once the server is up, the next run delivers it."""
    port = free_port()
    configure(archive_env, smtp_port=port, max_attempts=3)
    set_contact(archive_env, ORG, email="van-thu@tinhuy.example.vn")
    note_id = notify(archive_env, ORG, subject="Thông báo thu hồi")

    first = deliver(archive_env)
    assert not first.ok and first.retrying == 1 and first.sent == 0
    note = notification(archive_env, note_id)
    assert note.status == "pending" and note.attempts == 1 and note.delivered_at is None
    assert note.last_error.startswith("email:")
    failed = audit_of(archive_env, "notification.deliver", f"notification:{note_id}")
    assert [(e.outcome, e.detail["status"]) for e in failed] == [("failed", "pending")]
    listed = archive_env.json("notifications", "list", "--status", "pending")
    assert [n["id"] for n in listed] == [note_id]

    server = SmtpServer(port).start()
    try:
        result = archive_env.invoke("notifications", "deliver", "--json")
    finally:
        server.stop()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["sent"] == 1
    assert [m[1] for m in server.messages] == [["van-thu@tinhuy.example.vn"]]
    note = notification(archive_env, note_id)
    assert note.status == "sent" and note.attempts == 2 and note.delivered_at is not None
    entries = audit_of(archive_env, "notification.deliver", f"notification:{note_id}")
    assert [e.outcome for e in entries] == ["failed", "ok"]


def test_webhook_500_fails_after_max_attempts_and_can_be_retried(archive_env):
    """A webhook answering 500 is retried until max_attempts, then the notification is
    failed and listed as such; `retry` puts it back and a repaired receiver gets it."""
    configure(archive_env, max_attempts=2)
    receiver = Webhook(status=500)
    try:
        set_contact(archive_env, ORG, webhook=receiver.url)
        note_id = notify(archive_env, ORG)
        first = archive_env.invoke("notifications", "deliver", "--json")
        assert first.exit_code == 1
        assert json.loads(first.stdout)["retrying"] == 1
        assert notification(archive_env, note_id).status == "pending"
        second = archive_env.json("notifications", "deliver", expect=1)
        assert second["failed"] == 1 and "HTTP 500" in second["outcomes"][0]["error"]
        assert len(receiver.received) == 2
        # Nothing pending any more: a further run sends nothing.
        assert archive_env.json("notifications", "deliver")["attempted"] == 0
        assert len(receiver.received) == 2

        failed = archive_env.json("notifications", "list", "--status", "failed")
        assert [(n["id"], n["attempts"]) for n in failed] == [(note_id, 2)]
        assert "HTTP 500" in failed[0]["last_error"]
        entries = audit_of(archive_env, "notification.deliver", f"notification:{note_id}")
        assert [(e.outcome, e.detail["status"]) for e in entries] == \
            [("failed", "pending"), ("failed", "failed")]

        # A sent or pending notification is not "retried".
        assert archive_env.invoke("notifications", "retry", "no-such-id").exit_code == 2
        reopened = archive_env.json("notifications", "retry", note_id)
        assert reopened["status"] == "pending" and reopened["attempts"] == 0
        assert archive_env.invoke("notifications", "retry", note_id).exit_code == 2
        assert len(audit_of(archive_env, "notification.retry")) == 1
        receiver.status = 204
        assert archive_env.json("notifications", "deliver", "--id", note_id)["sent"] == 1
        assert notification(archive_env, note_id).status == "sent"
        assert len(receiver.received) == 3
    finally:
        receiver.close()


def test_a_channel_that_delivered_is_not_used_again_on_retry(archive_env, smtp):
    """E-mail went out, the webhook failed: the retry only calls the webhook again."""
    configure(archive_env, smtp_port=smtp.port)
    receiver = Webhook(status=503)
    try:
        set_contact(archive_env, ORG, email="van-thu@tinhuy.example.vn", webhook=receiver.url)
        note_id = notify(archive_env, ORG)
        assert deliver(archive_env).retrying == 1
        assert len(smtp.messages) == 1 and len(receiver.received) == 1
        assert notification(archive_env, note_id).channel == "email"
        receiver.status = 200
        assert deliver(archive_env).sent == 1
        assert len(smtp.messages) == 1 and len(receiver.received) == 2
        assert notification(archive_env, note_id).channel == "email+webhook"
    finally:
        receiver.close()


def test_no_channel_configured_is_said_clearly(archive_env):
    """An agent with an e-mail address but no SMTP server: listed only, with the reason."""
    configure(archive_env)  # no smtp_host
    set_contact(archive_env, ORG, email="van-thu@tinhuy.example.vn")
    note_id = notify(archive_env, ORG)
    report = deliver(archive_env)
    assert report.ok and report.recorded == 1
    note = notification(archive_env, note_id)
    assert note.status == "recorded" and note.attempts == 0
    assert "no delivery channel configured for email" in note.last_error


def test_unknown_id_is_refused_before_anything_is_sent(archive_env, webhook):
    configure(archive_env)
    set_contact(archive_env, ORG, webhook=webhook.url)
    notify(archive_env, ORG)
    result = archive_env.invoke("notifications", "deliver", "--id", "nope")
    assert result.exit_code == 2 and "nope" in result.stderr
    assert webhook.received == []


def test_concurrent_deliverers_never_send_one_twice(archive_env):
    """Two deliverers draining the same outbox at once (PostgreSQL: FOR UPDATE SKIP
    LOCKED; SQLite: the write lock): every notification arrives exactly once."""
    configure(archive_env)
    receiver = Webhook(delay=0.05)
    try:
        set_contact(archive_env, ORG, webhook=receiver.url)
        ids = [notify(archive_env, ORG, subject=f"Thông báo số {i}") for i in range(12)]
        reports, errors = [], []
        start = threading.Barrier(2)

        def run():
            try:
                start.wait()
                reports.append(deliver(archive_env))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        received = [b["id"] for b in receiver.bodies()]
        assert sorted(received) == sorted(ids)  # each once, none lost
        assert sum(r.sent for r in reports) == 12
        assert all(notification(archive_env, i).status == "sent" for i in ids)
        assert len(audit_of(archive_env, "notification.deliver")) == 12
    finally:
        receiver.close()


# ---- who sees which notifications --------------------------------------------------------


def test_users_see_their_own_and_organisation_auditor_sees_all(archive_env):
    """A user lists the notifications to them and to their organisation; an auditor and
    an administrator list all; asking for someone else's is refused and audited."""
    from archive.errors import AccessDenied
    from archive.notifications import NotificationFilter, list_notifications
    from archive.users import get_user, principal_for

    web = People(archive_env)
    try:
        web.add_user("an", "clerk")  # person of ORG
        web.add_user("binh", "clerk")
        web.add_user("kiemtra", "auditor")
        web.add_user("quantri", "administrator")
        ids = {r: notify(archive_env, r) for r in (ORG, ORG2, "user:an", "user:binh")}

        def listing(username, flt=None, method="totp"):
            with web.db() as db:
                principal = principal_for(get_user(db, username), method)
                total, rows = list_notifications(db, principal, flt)
                return total, {n.id for n in rows}

        assert listing("an") == (2, {ids[ORG], ids["user:an"]})
        assert listing("binh", method="password") == (2, {ids[ORG], ids["user:binh"]})
        assert listing("kiemtra")[1] == set(ids.values())
        assert listing("quantri", method="password")[1] == set(ids.values())
        assert listing("kiemtra", NotificationFilter(recipient=ORG2)) == (1, {ids[ORG2]})
        assert listing("an", NotificationFilter(recipient="user:an")) == (1, {ids["user:an"]})
        with pytest.raises(AccessDenied):
            listing("an", NotificationFilter(recipient="user:binh"))
        denied = [e for e in audit_of(archive_env, "audit.read") if e.actor == "user:an"]
        assert [e.outcome for e in denied] == ["denied"]
        scopes = [e.detail["scope"] for e in audit_of(archive_env, "notifications.list")]
        assert scopes[:4] == ["own", "own", "all", "all"]
    finally:
        web.close()


def test_an_api_token_without_audit_scope_lists_nothing(archive_env):
    from archive.errors import AccessDenied
    from archive.notifications import list_notifications

    token = Principal("token", "t1", scopes=("records:read",), method="token")
    with pytest.raises(AccessDenied), aenv_db(archive_env) as db:
        list_notifications(db, token)
    assert [e.outcome for e in audit_of(archive_env, "account.view")] == ["denied"]


def aenv_db(aenv):
    return aenv.instance().catalog.unit_of_work()


# ---- archive agents set-contact ------------------------------------------------------


def _acting(web: People, role: str) -> list[str]:
    """``--as USER --code CODE`` of a fresh user of ``role`` (a code is used only once)."""
    account = web.add_user(f"{role[:6]}{len(web.accounts)}", role)
    return ["--as", account.username, "--code", pyotp.TOTP(account.secret).now()]


def test_set_contact_validates_and_needs_an_administrator(archive_env):
    web = People(archive_env)
    try:
        ok = archive_env.json("agents", "set-contact", ORG, "--email", "vp@tinhuy.example.vn",
                              "--webhook", "https://qlvb.tinhuy.example.vn/hook?t=abc",
                              *_acting(web, "administrator"))
        assert ok == {"identifier": ORG, "name": "Văn phòng Tỉnh ủy",
                      "email": "vp@tinhuy.example.vn",
                      "webhook_url": "https://qlvb.tinhuy.example.vn/hook?t=abc"}
        entry = audit_of(archive_env, "agent.set_contact")[-1]
        assert entry.outcome == "ok" and entry.target == f"agent:{ORG}"
        assert "t=abc" not in json.dumps(entry.detail)  # a token in the URL is not logged

        for bad in (["--email", "not an address"], ["--email", "a@b"],
                    ["--webhook", "ftp://tinhuy.example.vn/x"], ["--webhook", "file:///etc/x"],
                    ["--webhook", "https://user:pw@tinhuy.example.vn/"], []):
            result = archive_env.invoke("agents", "set-contact", ORG, *bad,
                                        *_acting(web, "administrator"))
            assert result.exit_code == 2, (bad, result.output)
        for role in ("clerk", "auditor"):
            result = archive_env.invoke("agents", "set-contact", ORG2, "--email",
                                        "btc@tinhuy.example.vn", *_acting(web, role))
            assert result.exit_code == 3, result.output
        denied = audit_of(archive_env, "agent.manage")
        assert [e.outcome for e in denied] == ["denied", "denied"]
        # Clearing: an empty value removes the address.
        cleared = archive_env.json("agents", "set-contact", ORG, "--webhook", "",
                                   *_acting(web, "administrator"))
        assert cleared["webhook_url"] is None and cleared["email"] == "vp@tinhuy.example.vn"
    finally:
        web.close()


# ---- the API and the web page ---------------------------------------------------------



def _four(aenv) -> dict[str, str]:
    return {r: notify(aenv, r, subject=f"Thông báo cho {r}", related=related)
            for r, related in ((ORG, "record:0b7c2f4e-8a51-4c7e-9d1e-2f3a4b5c6d7e"),
                               (ORG2, None), ("user:an", "submission:x"),
                               ("user:binh", None))}


def test_api_lists_the_callers_notifications_or_all_for_auditors(web):
    from tests.test_api import API

    web.add_user("an", "clerk")
    web.add_user("kiem", "auditor")
    ids = _four(web.aenv)
    clerk = web.login("an")
    mine = clerk.get(f"{API}/notifications").get_json()
    assert mine["total"] == 2
    assert {n["id"] for n in mine["notifications"]} == {ids[ORG], ids["user:an"]}
    assert clerk.get(f"{API}/notifications?recipient=user:binh").status_code == 403
    assert clerk.get(f"{API}/notifications?status=lost").status_code == 400
    assert web.client().get(f"{API}/notifications").status_code == 401

    auditor = web.login("kiem")
    page = auditor.get(f"{API}/notifications?limit=3").get_json()
    assert page["total"] == 4 and len(page["notifications"]) == 3
    rest = auditor.get(f"{API}/notifications?limit=3&offset=3").get_json()
    assert {n["id"] for n in page["notifications"] + rest["notifications"]} == \
        set(ids.values())
    only = auditor.get(f"{API}/notifications?recipient={ORG2}&status=pending").get_json()
    assert [n["id"] for n in only["notifications"]] == [ids[ORG2]]

    reader = web.token(["records:read"])
    assert web.client().get(f"{API}/notifications", headers={
        "Authorization": f"Bearer {reader}"}).status_code == 403
    audit_reader = web.token(["audit:read"])
    assert web.client().get(f"{API}/notifications", headers={
        "Authorization": f"Bearer {audit_reader}"}).get_json()["total"] == 4

    denied = [e for e in audit_of(web.aenv, "audit.read") if e.actor == "user:an"]
    assert [e.outcome for e in denied] == ["denied"]
    listed = audit_of(web.aenv, "notifications.list")
    assert {(e.actor, e.detail["scope"]) for e in listed} >= \
        {("user:an", "own"), ("user:kiem", "all")}


def test_api_deliver_is_for_administrators_with_a_strong_login(web, webhook):
    from tests.test_api import API

    set_contact(web.aenv, ORG, webhook=webhook.url)
    note_id = notify(web.aenv, ORG)
    web.add_user("an", "clerk")
    web.add_user("quantri", "administrator")
    web.enrol("quantri")
    for client in (web.login("an"), web.login("quantri", browse_only=True)):
        answer = client.post(f"{API}/notifications/deliver",
                             headers={"X-CSRFToken": web.csrf(client)})
        assert answer.status_code == 403
    assert webhook.received == []
    admin = web.login("quantri")
    answer = admin.post(f"{API}/notifications/deliver", headers={"X-CSRFToken": web.csrf(admin)})
    assert answer.status_code == 200
    assert answer.get_json()["sent"] == 1 and webhook.bodies()[0]["id"] == note_id
    entries = audit_of(web.aenv, "notification.deliver", f"notification:{note_id}")
    assert [(e.actor, e.outcome) for e in entries] == [("user:quantri", "ok")]
    assert [e.outcome for e in audit_of(web.aenv, "agent.manage")] == ["denied", "denied"]


def test_web_page_lists_the_callers_notifications(web):
    web.add_user("an", "clerk")
    web.add_user("kiem", "auditor")
    _four(web.aenv)
    clerk = web.login("an")
    page = clerk.get("/notifications")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f"Thông báo cho {ORG}" in html and "Thông báo cho user:an" in html
    assert "Thông báo cho user:binh" not in html and f"Thông báo cho {ORG2}" not in html
    assert 'href="/records/0b7c2f4e-8a51-4c7e-9d1e-2f3a4b5c6d7e"' in html
    assert 'href="/notifications"' in html  # in the main menu
    assert clerk.get("/notifications?status=sent").get_data(as_text=True).count(
        "Thông báo cho") == 0
    everything = web.login("kiem").get("/notifications").get_data(as_text=True)
    assert all(f"Thông báo cho {r}" in everything for r in (ORG, ORG2, "user:binh"))
    assert web.client().get("/notifications").status_code == 302  # the login wall


def test_record_page_shows_who_was_notified(web):
    from tests.test_api import ingest

    record_id, _ = ingest(web.aenv, "qd")
    other_id, _ = ingest(web.aenv, "cv", text="other")
    notify(web.aenv, ORG, subject="Hủy hiệu lực văn bản số 12-QĐ/TU",
           related=f"record:{record_id}")
    notify(web.aenv, ORG2, subject="Gửi cơ quan khác", related=f"record:{record_id}")
    web.add_user("an", "clerk")
    web.add_user("kiem", "auditor")
    clerk = web.login("an")
    html = clerk.get(f"/records/{record_id}").get_data(as_text=True)
    assert 'id="record-notifications"' in html
    assert "Hủy hiệu lực văn bản số 12-QĐ/TU" in html and "Gửi cơ quan khác" not in html
    assert 'id="record-notifications"' not in clerk.get(f"/records/{other_id}").get_data(
        as_text=True)
    everything = web.login("kiem").get(f"/records/{record_id}").get_data(as_text=True)
    assert "Gửi cơ quan khác" in everything
    related = [e.detail.get("related") for e in audit_of(web.aenv, "notifications.list")]
    assert f"record:{record_id}" in related
