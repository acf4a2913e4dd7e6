"""Users, logins, sessions and API tokens (R-AUTH-1, R-ID-1, R-AUDIT-1) on SQLite and
PostgreSQL: refusals of add_user, password back-off and lockout, TOTP without replay,
account lock with the incident recorded, session expiry, scoped API tokens and
certificate login. Time is a FixedClock moved by the tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select

from archive import policy
from archive.agents import register_agent
from archive.audit import verify
from archive.certificates import bind_certificate, revoke_certificate
from archive.clock import FixedClock
from archive.db import Catalog
from archive.errors import AccessDenied, InputError, NotFound, Refused
from archive.models import Agent, ApiToken, AuditEntry, User, WebSession
from archive.principal import Principal
from archive.settings import load_settings
from archive.users import (
    TOKEN_PREFIX,
    UserExists,
    WeakPassword,
    add_user,
    authenticate_token,
    check_password,
    check_totp,
    create_token,
    end_session,
    get_user,
    list_tokens,
    list_users,
    lock_user,
    principal_for,
    reset_totp,
    resume_session,
    revoke_token,
    set_password,
    start_session,
    token_to_dict,
    unlock_user,
    user_for_certificate,
    user_to_dict,
)
from tests.conftest import ORG, ORG2
from tests.test_certificates import make_cert, pem

NOW = datetime(2025, 6, 2, 1, 0, 5, tzinfo=UTC)  # 5 s into a 30 s TOTP step
PERSON, PERSON2, PERSON3 = "001085012345", "001085099999", "001085077777"
OPERATOR = Principal.system("test")
ADMIN = Principal("user", "root", role="administrator", method="totp", person="001000000001")
SECRET_WORD = "đúng mật khẩu 2025"
BACKOFF_AFTER, LOCKOUT_AFTER = 3, 6


@pytest.fixture
def settings():
    return load_settings(environ={}, overrides={"auth": {
        "backoff_after": BACKOFF_AFTER, "lockout_after": LOCKOUT_AFTER,
        "backoff_max_seconds": 60, "lockout_minutes": 15, "session_idle_minutes": 30,
        "session_max_hours": 12, "token_max_days": 90}})


@pytest.fixture
def clock():
    return FixedClock(NOW)


@pytest.fixture
def catalog(catalog_engine, settings, clock):
    """A migrated catalog (SQLite, then PostgreSQL): two organisations, three persons
    (the first two working for the first organisation)."""
    catalog = Catalog(str(catalog_engine.url), engine=catalog_engine)
    with catalog.unit_of_work() as s:
        for kind, ident, name, parent in (
                ("organisation", ORG, "Văn phòng Tỉnh ủy", None),
                ("organisation", ORG2, "Ban Tổ chức Tỉnh ủy", None),
                ("person", PERSON, "Nguyễn Văn An", ORG),
                ("person", PERSON2, "Trần Thị Bình", ORG),
                ("person", PERSON3, "Lê Văn Cường", None)):
            register_agent(s, settings, OPERATOR, kind=kind, identifier=ident, name=name,
                           parent=parent, clock=clock)
    return catalog


def run(catalog, fn, *args, **kwargs):
    """One use case in its own transaction (failures of a login are committed too)."""
    with catalog.unit_of_work() as session:
        return fn(session, *args, **kwargs)


def make_user(catalog, settings, clock, username="an", person=PERSON, role="clerk", **kw):
    return run(catalog, add_user, settings, OPERATOR, username=username, person=person,
               role=role, password=kw.pop("password", SECRET_WORD), clock=clock, **kw)


def entries(catalog, action=None) -> list[AuditEntry]:
    with catalog.unit_of_work() as s:
        query = select(AuditEntry).order_by(AuditEntry.seq)
        if action:
            query = query.where(AuditEntry.action == action)
        return list(s.scalars(query))


def assert_chain_ok(catalog):
    with catalog.unit_of_work(snapshot=True) as s:
        report = verify(s)
    assert report.ok, report.to_dict()


def code_at(secret: str, moment: datetime, steps: int = 0) -> str:
    return pyotp.TOTP(secret).generate_otp(int(moment.timestamp()) // 30 + steps)


def user_row(catalog, username="an") -> User:
    with catalog.unit_of_work() as s:
        return get_user(s, username)


def password(catalog, settings, clock, word=SECRET_WORD, username="an"):
    return run(catalog, check_password, settings, username, word, client="10.0.0.7",
               clock=clock)


def totp(catalog, settings, clock, code, username="an"):
    with catalog.unit_of_work() as s:
        return check_totp(s, settings, get_user(s, username), code, clock=clock)


# ---- add_user -----------------------------------------------------------------------


def test_add_user_creates_a_login_with_a_totp_secret_to_enrol(catalog, settings, clock):
    user = make_user(catalog, settings, clock, clearance="mat")
    assert (user.role, user.clearance, user.status) == ("clerk", "mat", "active")
    assert user.totp_secret and not user.totp_confirmed and user.totp_last_step is None
    assert SECRET_WORD not in user.password_hash and user.password_hash.startswith("$argon2")
    assert user.organisations == [ORG] and user.fonds == []  # the person's organisation
    (entry,) = entries(catalog, "user.add")
    assert (entry.actor, entry.target, entry.outcome) == ("system:test", "user:an", "ok")
    assert entry.detail["person"] == PERSON and entry.detail["organisations"] == [ORG]
    listed = run(catalog, list_users, OPERATOR)
    assert [user_to_dict(u)["username"] for u in listed] == ["an"]
    assert entries(catalog, "users.list")[0].detail == {"returned": 1}


def test_explicit_grants_replace_the_default(catalog, settings, clock):
    user = make_user(catalog, settings, clock, fonds=["PHONG-02"], organisations=[ORG2])
    assert user.fonds == ["PHONG-02"] and user.organisations == [ORG2]
    p = principal_for(user, "totp")
    assert (p.kind, p.identifier, p.person, p.display) == ("user", "an", PERSON,
                                                          "Nguyễn Văn An")
    assert p.fonds == ("PHONG-02",) and p.organisations == (ORG2,) and p.strong


@pytest.mark.parametrize("change, error, words", [
    ({"person": "001000000000"}, NotFound, "no agent"),
    ({"person": ORG}, InputError, "users are persons"),
    ({"username": "an"}, UserExists, "exists already"),
    ({"username": "binh2", "person": PERSON}, UserExists, "one per person"),
    ({"password": "short"}, WeakPassword, "at least 12"),
    ({"password": " padded password "}, WeakPassword, "spaces"),
    ({"role": "superuser"}, InputError, "unknown role"),
    ({"clearance": "tuyet-mat"}, InputError, "unknown clearance"),
    ({"username": "Bad Name"}, InputError, "username"),
    ({"organisations": [PERSON3]}, InputError, "not an organisation"),
    ({"organisations": ["000.00.77.H41"]}, NotFound, "no agent"),
], ids=["unknown-person", "organisation-as-person", "duplicate-username",
        "second-login-for-person", "short-password", "spaces-password", "bad-role",
        "bad-clearance", "bad-username", "person-as-grant", "unknown-org-grant"])
def test_add_user_refusals(catalog, settings, clock, change, error, words):
    make_user(catalog, settings, clock)  # "an" for PERSON exists
    args = {"username": "binh", "person": PERSON2, "role": "clerk"} | change
    with pytest.raises(error, match=words) as info:
        make_user(catalog, settings, clock, **args)
    assert info.value.exit_code == 2
    with catalog.unit_of_work() as s:
        assert s.scalars(select(User.username)).all() == ["an"]
    assert len(entries(catalog, "user.add")) == 1


def test_an_inactive_person_gets_no_login(catalog, settings, clock):
    with catalog.unit_of_work() as s:
        s.scalar(select(Agent).where(Agent.identifier == PERSON2)).status = "inactive"
    with pytest.raises(Refused, match="not active"):
        make_user(catalog, settings, clock, username="binh", person=PERSON2)


@pytest.mark.parametrize("actor", [
    Principal("user", "boss", role="administrator", method="password"),
    Principal("user", "clerk", role="clerk", method="totp"),
    Principal("token", "t1", method="token", scopes=tuple(policy.SCOPES)),
], ids=["admin-password-only", "clerk", "token"])
def test_managing_users_needs_an_administrator_with_a_strong_login(catalog, settings, clock,
                                                                    actor):
    with pytest.raises(AccessDenied):
        run(catalog, add_user, settings, actor, username="an", person=PERSON, role="clerk",
            password=SECRET_WORD, clock=clock)
    with pytest.raises(AccessDenied):
        run(catalog, list_users, actor)
    (first, second) = [e for e in entries(catalog) if e.outcome == "denied"]
    assert (first.actor, first.action, first.target) == (str(actor), "user.manage",
                                                         "user.manage")
    assert first.detail["reason"] and second.action == "user.manage"
    assert not entries(catalog, "user.add")
    make_user(catalog, settings, clock, username="an2")
    user = run(catalog, add_user, settings, ADMIN, username="binh", person=PERSON2,
               role="auditor", password=SECRET_WORD, clock=clock)
    assert user.created_by == "user:root"
    assert_chain_ok(catalog)


# ---- passwords, back-off, lockout ---------------------------------------------------


def test_password_login_success_and_failure(catalog, settings, clock):
    make_user(catalog, settings, clock)
    ok = password(catalog, settings, clock)
    assert ok.ok and ok.user.username == "an" and ok.retry_after == 0
    bad = password(catalog, settings, clock, "wrong password!")
    assert not bad.ok and bad.reason == "wrong password" and bad.retry_after == 0
    unknown = password(catalog, settings, clock, username="nobody")
    assert not unknown.ok and unknown.user is None and unknown.reason == "unknown user"
    assert user_row(catalog).failed_logins == 1
    logins = entries(catalog, "auth.login")
    assert [(e.actor, e.outcome, e.detail["reason"]) for e in logins] == [
        ("user:an", "failed", "wrong password"), ("user:nobody", "failed", "unknown user")]
    assert logins[0].client == "10.0.0.7" and logins[0].detail["failures"] == 1
    assert [e.actor for e in entries(catalog, "auth.password")] == ["user:an"]
    assert SECRET_WORD not in str([e.detail for e in entries(catalog)])
    assert_chain_ok(catalog)


def test_back_off_refuses_without_verifying_then_lets_the_right_password_in(
        catalog, settings, clock):
    make_user(catalog, settings, clock)
    for _ in range(BACKOFF_AFTER):
        assert not password(catalog, settings, clock, "wrong password!").ok
    # Inside the wait even the right password is refused, unchecked and uncounted.
    waiting = password(catalog, settings, clock)
    assert not waiting.ok and waiting.reason.startswith("too many failed attempts")
    assert 0 < waiting.retry_after <= 2 + 1
    assert user_row(catalog).failed_logins == BACKOFF_AFTER
    denied = entries(catalog, "auth.login")[-1]
    assert denied.outcome == "denied" and denied.detail["retry_after"] == waiting.retry_after
    clock.at += timedelta(seconds=waiting.retry_after)
    assert password(catalog, settings, clock).ok
    # the delay doubles with every further failure
    clock.at += timedelta(minutes=5)
    fourth = password(catalog, settings, clock, "wrong password!")
    assert not fourth.ok and 4 <= fourth.retry_after <= 5


def test_lockout_after_repeated_failures_and_its_expiry(catalog, settings, clock):
    make_user(catalog, settings, clock)
    outcome = None
    for _ in range(LOCKOUT_AFTER):
        outcome = password(catalog, settings, clock, "wrong password!")
        assert not outcome.ok
        clock.at += timedelta(seconds=outcome.retry_after)
    clock.at -= timedelta(seconds=outcome.retry_after)
    assert 15 * 60 <= outcome.retry_after <= 15 * 60 + 1
    row = user_row(catalog)
    assert row.failed_logins == LOCKOUT_AFTER and row.locked_until == clock.at + timedelta(
        minutes=15)
    assert entries(catalog, "auth.login")[-1].detail["locked_until"]
    clock.at += timedelta(minutes=14, seconds=59)
    locked = password(catalog, settings, clock)
    assert not locked.ok and locked.retry_after in (1, 2)
    clock.at += timedelta(seconds=2)
    assert password(catalog, settings, clock).ok


def test_concurrent_failures_are_all_counted(catalog, settings, clock):
    """Parallel guesses queue on the user row: none is lost from the count."""
    make_user(catalog, settings, clock)
    results = concurrently(3, lambda: password(catalog, settings, clock, "wrong password!"))
    assert [r.ok for r in results] == [False] * 3
    assert user_row(catalog).failed_logins == 3


def concurrently(n: int, fn):
    results, errors = [], []
    start = threading.Barrier(n)

    def worker():
        try:
            start.wait(timeout=30)
            results.append(fn())
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


# ---- TOTP ---------------------------------------------------------------------------


def test_totp_right_code_wrong_code_and_replay(catalog, settings, clock):
    user = make_user(catalog, settings, clock)
    assert not totp(catalog, settings, clock, "123456" if code_at(
        user.totp_secret, NOW) != "123456" else "654321").ok
    assert not totp(catalog, settings, clock, "12345x").ok
    first = totp(catalog, settings, clock, code_at(user.totp_secret, NOW))
    assert first.ok and first.reason == "code accepted"
    row = user_row(catalog)
    assert row.totp_confirmed and row.failed_logins == 0  # a success clears failures
    replay = totp(catalog, settings, clock, code_at(user.totp_secret, NOW))
    assert not replay.ok and replay.reason == "code already used"
    clock.at += timedelta(seconds=10)  # same step, later: still the same code
    assert not totp(catalog, settings, clock, code_at(user.totp_secret, NOW)).ok
    accepted = entries(catalog, "auth.totp")
    assert [e.detail for e in accepted] == [{"enrolled": True}]
    reasons = [e.detail["reason"] for e in entries(catalog, "auth.login")]
    assert reasons == ["wrong code", "wrong code", "code already used", "code already used"]


def test_totp_previous_step_accepted_once_and_older_steps_refused(catalog, settings, clock):
    user = make_user(catalog, settings, clock)
    secret = user.totp_secret
    # A code from the previous step (the phone is a little slow) is accepted once.
    assert totp(catalog, settings, clock, code_at(secret, NOW, -1)).ok
    assert not totp(catalog, settings, clock, code_at(secret, NOW, -1)).ok
    # the current step is newer: accepted; then the previous one is refused
    assert totp(catalog, settings, clock, code_at(secret, NOW)).ok
    clock.at += timedelta(minutes=2)
    assert totp(catalog, settings, clock, code_at(secret, clock.at, 1)).ok  # next step
    assert not totp(catalog, settings, clock, code_at(secret, clock.at)).ok  # older now
    # two steps away is simply wrong
    assert not totp(catalog, settings, clock, code_at(secret, clock.at, -2)).ok
    assert not totp(catalog, settings, clock, code_at(secret, clock.at, 3)).ok


def test_a_code_is_accepted_once_even_by_concurrent_logins(catalog, settings, clock):
    user = make_user(catalog, settings, clock)
    code = code_at(user.totp_secret, NOW)

    def attempt():
        with catalog.unit_of_work() as s:
            outcome = check_totp(s, settings, get_user(s, "an"), code, clock=clock)
            threading.Event().wait(0.3)  # keep the transaction open: the others overlap
            return outcome.ok

    assert sorted(concurrently(3, attempt)) == [False, False, True]


def test_totp_failures_count_towards_back_off(catalog, settings, clock):
    user = make_user(catalog, settings, clock)
    right = code_at(user.totp_secret, NOW)
    wrong = "000000" if right != "000000" else "111111"
    for _ in range(BACKOFF_AFTER):
        assert not totp(catalog, settings, clock, wrong).ok
    waiting = totp(catalog, settings, clock, right)
    assert not waiting.ok and waiting.retry_after > 0
    assert user_row(catalog).totp_last_step is None  # the right code was not even tried


# ---- lock, unlock, reset -------------------------------------------------------------


def test_lock_ends_sessions_at_once_and_refuses_logins(catalog, settings, clock):
    user = make_user(catalog, settings, clock)
    token = run(catalog, start_session, settings, user, "totp", clock=clock)
    assert run(catalog, resume_session, settings, token, clock=clock) is not None
    locked = run(catalog, lock_user, ADMIN, "an", reason="điện thoại bị mất", incident="lost",
                 client="10.0.0.1", clock=clock)
    assert locked.status == "locked" and locked.lock_reason == "điện thoại bị mất"
    assert run(catalog, resume_session, settings, token, clock=clock) is None
    with catalog.unit_of_work() as s:
        assert s.scalars(select(WebSession.ended_at)).all() == [NOW]
    (incident,) = entries(catalog, "user.lock")
    assert (incident.actor, incident.target, incident.client) == ("user:root", "user:an",
                                                                 "10.0.0.1")
    assert incident.detail == {"incident": "lost", "reason": "điện thoại bị mất",
                               "sessions_ended": 1}
    refused = password(catalog, settings, clock)
    assert not refused.ok and refused.reason == "account locked"
    assert not totp(catalog, settings, clock, code_at(user.totp_secret, NOW)).ok
    denied = entries(catalog, "auth.login")
    assert [(e.outcome, e.detail["step"], e.detail["reason"]) for e in denied] == [
        ("denied", "password", "account locked"), ("denied", "totp", "account locked")]
    assert user_row(catalog).failed_logins == 0  # refused before any check

    unlocked = run(catalog, unlock_user, ADMIN, "an", reason="đã tìm lại", clock=clock)
    assert unlocked.status == "active" and unlocked.lock_reason is None
    assert entries(catalog, "user.unlock")[0].detail == {"reason": "đã tìm lại"}
    assert password(catalog, settings, clock).ok
    assert_chain_ok(catalog)


def test_lock_needs_a_reason_and_a_known_incident(catalog, settings, clock):
    make_user(catalog, settings, clock)
    with pytest.raises(InputError, match="reason"):
        run(catalog, lock_user, ADMIN, "an", reason="  ")
    with pytest.raises(InputError, match="incident"):
        run(catalog, lock_user, ADMIN, "an", reason="x", incident="stolen-ish")
    with pytest.raises(NotFound):
        run(catalog, lock_user, ADMIN, "nobody", reason="x")
    assert user_row(catalog).status == "active"


def test_unlock_clears_a_temporary_lockout(catalog, settings, clock):
    make_user(catalog, settings, clock)
    for _ in range(LOCKOUT_AFTER - 1):
        clock.at += timedelta(seconds=password(catalog, settings, clock, "nope nope!").retry_after)
    assert password(catalog, settings, clock, "nope nope!").retry_after > 60  # locked out
    assert not password(catalog, settings, clock).ok
    run(catalog, unlock_user, ADMIN, "an", clock=clock)
    row = user_row(catalog)
    assert row.failed_logins == 0 and row.locked_until is None
    assert password(catalog, settings, clock).ok


def test_reset_totp_gives_a_new_secret_and_ends_sessions(catalog, settings, clock):
    user = make_user(catalog, settings, clock)
    old = user.totp_secret
    assert totp(catalog, settings, clock, code_at(old, NOW)).ok
    token = run(catalog, start_session, settings, user, "totp", clock=clock)
    fresh = run(catalog, reset_totp, ADMIN, "an", clock=clock)
    assert fresh.totp_secret != old and not fresh.totp_confirmed
    assert fresh.totp_last_step is None
    assert run(catalog, resume_session, settings, token, clock=clock) is None
    assert entries(catalog, "user.reset-totp")[0].detail == {"sessions_ended": 1}
    clock.at += timedelta(seconds=30)
    assert not totp(catalog, settings, clock, code_at(old, clock.at)).ok
    assert totp(catalog, settings, clock, code_at(fresh.totp_secret, clock.at)).ok
    with pytest.raises(AccessDenied):
        run(catalog, reset_totp, Principal("user", "an", role="clerk", method="totp"), "an")


def test_set_password(catalog, settings, clock):
    make_user(catalog, settings, clock)
    make_user(catalog, settings, clock, username="binh", person=PERSON2)
    run(catalog, set_password, settings, ADMIN, "an", "mật khẩu mới 2026", clock=clock)
    assert not password(catalog, settings, clock).ok
    assert password(catalog, settings, clock, "mật khẩu mới 2026").ok
    # one's own password, from a strong login
    own = Principal("user", "an", role="clerk", method="certificate")
    run(catalog, set_password, settings, own, "an", "thứ ba cũng đủ dài", clock=clock)
    assert password(catalog, settings, clock, "thứ ba cũng đủ dài").ok
    assert [e.actor for e in entries(catalog, "user.set-password")] == ["user:root",
                                                                        "user:an"]
    with pytest.raises(WeakPassword):
        run(catalog, set_password, settings, ADMIN, "an", "ngắn")
    # R-AUTH-1: not from a password-only login, not someone else's
    with pytest.raises(AccessDenied, match="password-only"):
        run(catalog, set_password, settings,
            Principal("user", "an", role="clerk", method="password"), "an",
            "kẻ trộm đổi mật khẩu")
    with pytest.raises(AccessDenied):
        run(catalog, set_password, settings, own, "binh", "không phải của tôi")
    assert password(catalog, settings, clock, "thứ ba cũng đủ dài").ok
    assert [e.action for e in entries(catalog) if e.outcome == "denied"] == [
        "account.password", "user.manage"]


# ---- browser sessions ---------------------------------------------------------------


def test_session_resume_idle_expiry_and_logout(catalog, settings, clock):
    user = make_user(catalog, settings, clock)
    token = run(catalog, start_session, settings, user, "certificate", client="10.0.0.2",
                clock=clock)
    with catalog.unit_of_work() as s:
        (row,) = s.scalars(select(WebSession)).all()
        assert row.id != token and token not in row.id  # kept only hashed
        assert row.expires_at == NOW + timedelta(hours=12) and row.method == "certificate"
    assert user_row(catalog).last_login_at == NOW
    clock.at += timedelta(minutes=29)
    resumed = run(catalog, resume_session, settings, token, clock=clock)
    assert resumed[0].username == "an" and resumed[1].method == "certificate"
    clock.at += timedelta(minutes=29)  # 29 minutes after the last use: still alive
    assert run(catalog, resume_session, settings, token, clock=clock) is not None
    clock.at += timedelta(minutes=31)  # idle too long
    assert run(catalog, resume_session, settings, token, clock=clock) is None
    clock.at -= timedelta(minutes=20)  # an idle-ended session stays ended
    assert run(catalog, resume_session, settings, token, clock=clock) is None
    assert run(catalog, resume_session, settings, "", clock=clock) is None
    assert run(catalog, resume_session, settings, "not-a-token", clock=clock) is None

    other = run(catalog, start_session, settings, user, "totp", clock=clock)
    run(catalog, end_session, other, client="10.0.0.2", clock=clock)
    assert run(catalog, resume_session, settings, other, clock=clock) is None
    run(catalog, end_session, other, clock=clock)  # twice: nothing more
    (logout,) = entries(catalog, "auth.logout")
    assert (logout.actor, logout.target) == ("user:an", "user:an")
    assert [e.detail for e in entries(catalog, "auth.session-start")] == [
        {"method": "certificate"}, {"method": "totp"}]


def test_session_absolute_expiry(catalog, settings, clock):
    user = make_user(catalog, settings, clock)
    token = run(catalog, start_session, settings, user, "totp", clock=clock)
    for _ in range(12 * 3 - 1):  # used every 20 minutes, never idle
        clock.at += timedelta(minutes=20)
        assert run(catalog, resume_session, settings, token, clock=clock) is not None
    clock.at = NOW + timedelta(hours=12)
    assert run(catalog, resume_session, settings, token, clock=clock) is None


# ---- API tokens ---------------------------------------------------------------------


def new_token(catalog, settings, clock, **kw):
    args = {"name": "hệ thống một cửa", "agent": ORG, "scopes": ["records:read"]} | kw
    return run(catalog, create_token, settings, OPERATOR, clock=clock, **args)


def test_token_authenticates_with_its_scopes_until_revoked(catalog, settings, clock):
    token, secret = new_token(catalog, settings, clock,
                              scopes=["records:read", "records:download", "records:read"],
                              clearance="mat", fonds=["PHONG-09"])
    assert secret.startswith(TOKEN_PREFIX) and token.secret_hash != secret
    assert token.scopes == ["records:download", "records:read"]
    assert token.expires_at == NOW + timedelta(days=90)
    with catalog.unit_of_work() as s:
        assert secret not in str(s.scalars(select(ApiToken.__table__)).all())
    p = run(catalog, authenticate_token, secret, clock=clock)
    assert (p.kind, p.identifier, p.method, p.clearance) == ("token", token.id, "token", "mat")
    assert p.scopes == ("records:download", "records:read") and p.strong
    assert p.organisations == (ORG,) and p.fonds == ("PHONG-09",)
    assert policy.decide(p, policy.DOWNLOAD, policy.RecordFacts(
        "r", classification="mat", fonds="PHONG-09"))
    assert not policy.decide(p, policy.INGEST)
    assert run(catalog, authenticate_token, secret[:-1] + "x", clock=clock) is None
    assert run(catalog, authenticate_token, secret[len(TOKEN_PREFIX):], clock=clock) is None

    listed = run(catalog, list_tokens, OPERATOR)
    assert [token_to_dict(t, NOW)["status"] for t in listed] == ["active"]
    assert "token" not in token_to_dict(listed[0], NOW)
    run(catalog, revoke_token, ADMIN, token.id, clock=clock)
    run(catalog, revoke_token, ADMIN, token.id, clock=clock)  # once is recorded
    assert run(catalog, authenticate_token, secret, clock=clock) is None
    (revoked,) = run(catalog, list_tokens, OPERATOR)
    assert token_to_dict(revoked, NOW)["status"] == "revoked"
    assert revoked.revoked_by == "user:root"
    assert [e.action for e in entries(catalog) if e.action.startswith("token")] == [
        "token.create", "tokens.list", "token.revoke", "tokens.list"]
    with pytest.raises(NotFound):
        run(catalog, revoke_token, ADMIN, "no-such-token")
    assert_chain_ok(catalog)


def test_an_expired_token_or_one_of_an_inactive_agent_is_refused(catalog, settings, clock):
    _, secret = new_token(catalog, settings, clock, days=1)
    clock.at += timedelta(hours=23)
    assert run(catalog, authenticate_token, secret, clock=clock) is not None
    clock.at += timedelta(hours=1)
    assert run(catalog, authenticate_token, secret, clock=clock) is None
    (expired,) = run(catalog, list_tokens, OPERATOR)
    assert token_to_dict(expired, clock.at)["status"] == "expired"
    _, other = new_token(catalog, settings, clock, agent=ORG2)
    with catalog.unit_of_work() as s:
        s.scalar(select(Agent).where(Agent.identifier == ORG2)).status = "inactive"
    assert run(catalog, authenticate_token, other, clock=clock) is None


@pytest.mark.parametrize("change, words", [
    ({"agent": PERSON}, "persons log in"),
    ({"agent": "000.00.77.H41"}, "no agent"),
    ({"scopes": []}, "scopes"),
    ({"scopes": ["records:write"]}, "unknown: records:write"),
    ({"clearance": "tuyet-mat"}, "clearance"),
    ({"days": 91}, "days"),
    ({"days": 0}, "days"),
    ({"days": -3}, "days"),
    ({"name": " "}, "name"),
], ids=["person-holder", "unknown-holder", "no-scope", "unknown-scope", "bad-clearance",
        "too-long", "zero-days", "negative-days", "no-name"])
def test_token_refusals(catalog, settings, clock, change, words):
    with pytest.raises(InputError, match=words):
        new_token(catalog, settings, clock, **change)
    with catalog.unit_of_work() as s:
        assert s.scalars(select(ApiToken)).all() == []


def test_tokens_are_managed_by_administrators_with_a_strong_login(catalog, settings, clock):
    for actor in (Principal("user", "boss", role="administrator", method="password"),
                  Principal("user", "an", role="inspector", method="totp")):
        with pytest.raises(AccessDenied):
            run(catalog, create_token, settings, actor, name="x", agent=ORG,
                scopes=["records:read"])
    token, _ = run(catalog, create_token, settings, ADMIN, name="x", agent=ORG,
                   scopes=["agents:read"], clock=clock)
    assert token.created_by == "user:root"
    assert [e.outcome for e in entries(catalog) if e.action == "token.manage"] == [
        "denied", "denied"]


# ---- certificate login --------------------------------------------------------------


def test_certificate_login(catalog, settings, clock):
    user = make_user(catalog, settings, clock)
    make_user(catalog, settings, clock, username="binh", person=PERSON2)
    moment = datetime.now(UTC)  # the test CA issues around the real time
    clock.at = moment
    cert_an, cert_binh, cert_cuong = (make_cert(n, not_before=moment - timedelta(days=1),
                                                not_after=moment + timedelta(days=30))
                                      for n in ("An", "Bình", "Cường"))
    prints = {}
    for person, cert in ((PERSON, cert_an), (PERSON2, cert_binh), (PERSON3, cert_cuong)):
        with catalog.unit_of_work() as s:
            prints[person] = bind_certificate(s, settings, OPERATOR, person, pem(cert),
                                              clock).certificate.fingerprint
    ok = run(catalog, user_for_certificate, prints[PERSON], client="10.0.0.3", clock=clock)
    assert ok.ok and ok.user.username == user.username
    assert entries(catalog, "auth.certificate")[0].detail == {"fingerprint": prints[PERSON]}

    with catalog.unit_of_work() as s:
        revoke_certificate(s, settings, OPERATOR, prints[PERSON2],
                           moment - timedelta(minutes=1), "key compromised", clock)
    revoked = run(catalog, user_for_certificate, prints[PERSON2], clock=clock)
    assert not revoked.ok and "revoked" in revoked.reason
    unbound = run(catalog, user_for_certificate, "ab" * 32, clock=clock)
    assert not unbound.ok and "not bound" in unbound.reason
    no_login = run(catalog, user_for_certificate, prints[PERSON3], clock=clock)
    assert not no_login.ok and "no login" in no_login.reason
    clock.at = moment + timedelta(days=31)
    expired = run(catalog, user_for_certificate, prints[PERSON], clock=clock)
    assert not expired.ok and "validity" in expired.reason
    clock.at = moment
    run(catalog, lock_user, ADMIN, "an", reason="left", incident="left", clock=clock)
    locked = run(catalog, user_for_certificate, prints[PERSON], clock=clock)
    assert not locked.ok and locked.reason == "account locked"
    failures = [(e.outcome, e.detail["reason"]) for e in entries(catalog, "auth.login")]
    assert failures == [("failed", "certificate revoked in the registry"),
                        ("failed", "certificate not bound to any person"),
                        ("failed", "no login for the certificate's person"),
                        ("failed", "certificate outside its validity period"),
                        ("denied", "account locked")]
    assert_chain_ok(catalog)


def test_a_system_token_reaches_its_owners_records_until_the_owner_is_inactive(
        catalog, settings, clock):
    """R-REPO-1: a system's token acts for the organisation that owns it, and stops with it."""
    from archive.agents import register_agent

    with catalog.unit_of_work() as s:
        register_agent(s, settings, OPERATOR, kind="system", identifier="qlvb-tinh-uy",
                       name="Hệ thống quản lý văn bản", parent=ORG2, clock=clock)
    _, secret = new_token(catalog, settings, clock, agent="qlvb-tinh-uy")
    principal = run(catalog, authenticate_token, secret, clock=clock)
    assert principal.organisations == (ORG2,) and principal.kind == "token"
    with catalog.unit_of_work() as s:
        s.scalar(select(Agent).where(Agent.identifier == ORG2)).status = "inactive"
    assert run(catalog, authenticate_token, secret, clock=clock) is None
