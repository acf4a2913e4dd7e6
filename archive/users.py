"""Users, logins, sessions and API tokens (R-AUTH-1, R-ID-1).

A user is one person's login (one per person identifier): a role, a clearance, grants
(fonds, organisations), an argon2 password hash and a TOTP second factor. Logins
never raise on a wrong password: they return an outcome and record the failure
(counter, back-off, temporary lockout) in the caller's transaction, with an audit
entry, so the caller commits the failure before refusing.

Every state change here checks the policy (:mod:`archive.policy`) and appends an
audit entry in the same transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive.agents import get_agent
from archive.clock import Clock, SystemClock
from archive.errors import InputError, NotFound, Refused
from archive.models import Agent, ApiToken, Certificate, User, WebSession
from archive.principal import Principal
from archive.settings import Settings

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
TOTP_STEP = 30  # seconds (RFC 6238 default, what authenticator apps use)
TOKEN_PREFIX = "kls_"  # noqa: S105 (marks an API token, not a secret)

_hasher = PasswordHasher()
# Verified against when the username is unknown, so timing does not tell who exists.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class UserExists(InputError):
    pass


class WeakPassword(InputError):
    pass


@dataclass(frozen=True)
class LoginOutcome:
    """The result of one login step; ``reason`` is for the audit log, not the user."""

    ok: bool
    user: User | None = None
    reason: str = ""
    retry_after: int = 0  # seconds the account must wait (back-off or lockout)


def _now(clock: Clock | None) -> datetime:
    return (clock or SystemClock()).now()


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---- users --------------------------------------------------------------------------


def hash_password(settings: Settings, password: str) -> str:
    if len(password) < settings.auth.min_password_length:
        raise WeakPassword(f"the password must have at least "
                           f"{settings.auth.min_password_length} characters")
    if password.strip() != password or not password.strip():
        raise WeakPassword("the password must not start or end with spaces")
    return _hasher.hash(password)


def new_password() -> str:
    """A random password for a new user, to be changed at first login."""
    return secrets.token_urlsafe(15)


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username)
                          .options(selectinload(User.person)))
    if user is None:
        raise NotFound(f"no user named {username!r}")
    return user


def _check_grants(session: Session, fonds: list[str], organisations: list[str]) -> None:
    for org in organisations:
        if org != policy.ALL:
            agent = get_agent(session, org)
            if agent.kind != "organisation":
                raise InputError(f"{org} is a {agent.kind}, not an organisation")
    for code in fonds:
        if not code or len(code) > 100:
            raise InputError(f"fonds code {code!r}: 1 to 100 characters")


def _check_role(role: str, clearance: str) -> None:
    if role not in policy.ROLES:
        raise InputError(f"unknown role {role!r}; roles: {', '.join(policy.ROLES)}")
    if clearance not in policy.LEVELS:
        raise InputError(f"unknown clearance {clearance!r}; levels: "
                         f"{', '.join(policy.LEVELS)}")


def add_user(session: Session, settings: Settings, actor: Principal, *, username: str,
             person: str, role: str, password: str, clearance: str = "normal",
             fonds: list[str] | None = None, organisations: list[str] | None = None,
             client: str = "", clock: Clock | None = None) -> User:
    """Create the login of a registered person, with a fresh TOTP secret to enrol."""
    policy.require(actor, policy.USER_MANAGE, client=client)
    if not USERNAME.match(username):
        raise InputError(f"username {username!r}: 2 to 64 characters, lower-case letters, "
                         "digits, '.', '_' or '-', starting with a letter or digit")
    _check_role(role, clearance)
    agent = get_agent(session, person)
    if agent.kind != "person":
        raise InputError(f"{person} is a {agent.kind}; users are persons (R-ID-1)")
    if agent.status != "active":
        raise Refused(f"{person} is not active; an inactive person gets no login")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise UserExists(f"a user named {username!r} exists already")
    if session.scalar(select(User.username).where(User.person_id == agent.id)) is not None:
        raise UserExists(f"{person} has a login already (one per person, R-ID-1)")
    fonds, organisations = list(fonds or []), list(organisations or [])
    _check_grants(session, fonds, organisations)
    if not fonds and not organisations and agent.parent_id is not None:
        parent = session.get(Agent, agent.parent_id)
        organisations = [parent.identifier] if parent else []
    user = User(username=username, person_id=agent.id, role=role, clearance=clearance,
                fonds=fonds, organisations=organisations,
                password_hash=hash_password(settings, password),
                totp_secret=pyotp.random_base32(), totp_confirmed=False,
                status="active", failed_logins=0, created_at=_now(clock),
                created_by=str(actor))
    user.person = agent
    session.add(user)
    session.flush()
    audit.append(session, actor, "user.add", f"user:{username}", client=client, clock=clock,
                 detail={"person": person, "role": role, "clearance": clearance,
                         "fonds": fonds, "organisations": organisations})
    return user


def totp_uri(settings: Settings, user: User) -> str:
    """The otpauth:// URI an authenticator app enrols (shown as text and QR code)."""
    if not user.totp_secret:
        raise InputError(f"user {user.username} has no TOTP secret; reset it first")
    return pyotp.TOTP(user.totp_secret).provisioning_uri(
        name=user.username, issuer_name=settings.auth.totp_issuer)


def _end_sessions(session: Session, user: User, now: datetime) -> int:
    result = session.execute(update(WebSession)
                             .where(WebSession.user_id == user.id,
                                    WebSession.ended_at.is_(None))
                             .values(ended_at=now))
    return result.rowcount or 0


def lock_user(session: Session, actor: Principal, username: str, *, reason: str,
              incident: str = "compromised", client: str = "",
              clock: Clock | None = None) -> User:
    """Lock a lost or compromised account and record the incident (R-ID-1).

    Every open session of the user ends at once; only :func:`unlock_user` reopens it.
    """
    policy.require(actor, policy.USER_MANAGE, client=client)
    if incident not in ("lost", "compromised", "left", "other"):
        raise InputError("incident: expected lost, compromised, left or other")
    if not reason.strip():
        raise InputError("a reason is required to lock an account")
    user = get_user(session, username)
    now = _now(clock)
    ended = _end_sessions(session, user, now)
    user.status = "locked"
    user.lock_reason = reason.strip()[:2000]
    audit.append(session, actor, "user.lock", f"user:{username}", client=client, clock=clock,
                 detail={"incident": incident, "reason": user.lock_reason,
                         "sessions_ended": ended})
    return user


def unlock_user(session: Session, actor: Principal, username: str, *, reason: str = "",
                client: str = "", clock: Clock | None = None) -> User:
    policy.require(actor, policy.USER_MANAGE, client=client)
    user = get_user(session, username)
    user.status = "active"
    user.lock_reason = None
    user.failed_logins = 0
    user.locked_until = None
    audit.append(session, actor, "user.unlock", f"user:{username}", client=client,
                 clock=clock, detail={"reason": reason})
    return user


def reset_totp(session: Session, actor: Principal, username: str, *, client: str = "",
               clock: Clock | None = None) -> User:
    """A new TOTP secret (lost phone): the person enrols again; open sessions end."""
    policy.require(actor, policy.USER_MANAGE, client=client)
    user = get_user(session, username)
    user.totp_secret = pyotp.random_base32()
    user.totp_confirmed = False
    user.totp_last_step = None
    ended = _end_sessions(session, user, _now(clock))
    audit.append(session, actor, "user.reset-totp", f"user:{username}", client=client,
                 clock=clock, detail={"sessions_ended": ended})
    return user


def set_password(session: Session, settings: Settings, actor: Principal, username: str,
                 password: str, *, client: str = "", clock: Clock | None = None) -> User:
    """A new password, set by an administrator or by the user (R-AUTH-1: never from a
    password-only login, or a stolen password could shut its owner out)."""
    own = actor.kind == "user" and actor.identifier == username
    policy.require(actor, policy.PASSWORD if own else policy.USER_MANAGE, client=client)
    user = get_user(session, username)
    user.password_hash = hash_password(settings, password)
    audit.append(session, actor, "user.set-password", f"user:{username}", client=client,
                 clock=clock)
    return user


def list_users(session: Session, actor: Principal, *, client: str = "") -> list[User]:
    policy.require(actor, policy.USER_MANAGE, client=client)
    users = list(session.scalars(select(User).options(selectinload(User.person))
                                 .order_by(User.username)))
    audit.append(session, actor, "users.list", "users", client=client,
                 detail={"returned": len(users)})
    return users


def user_to_dict(user: User) -> dict:
    return {"username": user.username, "person": user.person.identifier,
            "name": user.person.name, "role": user.role, "clearance": user.clearance,
            "fonds": list(user.fonds or []), "organisations": list(user.organisations or []),
            "status": user.status, "lock_reason": user.lock_reason,
            "totp_enrolled": bool(user.totp_confirmed),
            "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
            "created_at": user.created_at.isoformat()}


def principal_for(user: User, method: str) -> Principal:
    """The principal of a logged-in user; ``method`` is how they authenticated."""
    return Principal("user", user.username, user.person.name if user.person else user.username,
                     role=user.role, clearance=user.clearance, fonds=tuple(user.fonds or ()),
                     organisations=tuple(user.organisations or ()), method=method,
                     person=user.person.identifier if user.person else None,
                     organisation=user.person.parent.identifier
                     if user.person and user.person.parent else None)


# ---- logins -------------------------------------------------------------------------


def _locked_user(session: Session, condition) -> User | None:
    """The user row, locked until the transaction ends (reloaded if already loaded).

    Login attempts of one user queue here (a PostgreSQL row lock; SQLite's ``BEGIN
    IMMEDIATE`` serialises them already), so concurrent attempts cannot both accept one
    TOTP code, lose a failure count or slip past the back-off.
    """
    return session.scalar(select(User).where(condition).with_for_update()
                          .options(selectinload(User.person))
                          .execution_options(populate_existing=True))


def _wait(settings: Settings, user: User, now: datetime) -> int:
    """Seconds the account must still wait before another attempt (0: go ahead)."""
    auth = settings.auth
    if user.locked_until is not None and now < user.locked_until:
        return int((user.locked_until - now).total_seconds()) + 1
    if user.failed_logins >= auth.backoff_after and user.last_failed_at is not None:
        delay = min(2 ** (user.failed_logins - auth.backoff_after + 1), auth.backoff_max_seconds)
        ready = user.last_failed_at + timedelta(seconds=delay)
        if now < ready:
            return int((ready - now).total_seconds()) + 1
    return 0


def _failed(session: Session, settings: Settings, user: User, step: str, reason: str,
            now: datetime, client: str, clock: Clock | None) -> LoginOutcome:
    user.failed_logins += 1
    user.last_failed_at = now
    detail = {"step": step, "reason": reason, "failures": user.failed_logins}
    if user.failed_logins >= settings.auth.lockout_after:
        user.locked_until = now + timedelta(minutes=settings.auth.lockout_minutes)
        detail["locked_until"] = user.locked_until.isoformat()
    audit.append(session, f"user:{user.username}", "auth.login", f"user:{user.username}",
                 outcome="failed", client=client, clock=clock, detail=detail)
    return LoginOutcome(False, user, reason, _wait(settings, user, now))


def _refusal_before_check(session: Session, settings: Settings, user: User, step: str,
                          now: datetime, client: str, clock: Clock | None
                          ) -> LoginOutcome | None:
    reason = ""
    wait = 0
    if user.status != "active":
        reason = "account locked"
    elif not user.person or user.person.status != "active":
        reason = "person inactive"
    else:
        wait = _wait(settings, user, now)
        if wait:
            reason = "too many failed attempts: wait"
    if not reason:
        return None
    audit.append(session, f"user:{user.username}", "auth.login", f"user:{user.username}",
                 outcome="denied", client=client, clock=clock,
                 detail={"step": step, "reason": reason, "retry_after": wait})
    return LoginOutcome(False, user, reason, wait)


def check_password(session: Session, settings: Settings, username: str, password: str, *,
                   client: str = "", clock: Clock | None = None) -> LoginOutcome:
    """First factor. A success alone is a password-only (browse-only) login."""
    now = _now(clock)
    user = _locked_user(session, User.username == username)
    if user is None:
        with contextlib.suppress(VerificationError):
            _hasher.verify(_DUMMY_HASH, password)
        audit.append(session, f"user:{username[:64]}", "auth.login", "users", outcome="failed",
                     client=client, clock=clock, detail={"step": "password",
                                                         "reason": "unknown user"})
        return LoginOutcome(False, None, "unknown user")
    refusal = _refusal_before_check(session, settings, user, "password", now, client, clock)
    if refusal:
        return refusal
    try:
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return _failed(session, settings, user, "password", "wrong password", now, client,
                       clock)
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    audit.append(session, f"user:{username}", "auth.password", f"user:{username}",
                 client=client, clock=clock)
    return LoginOutcome(True, user, "password accepted")


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    if not re.fullmatch(r"[0-9]{6}", code or ""):
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // TOTP_STEP
    for step in (current - 1, current, current + 1):  # one step of clock drift
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def check_totp(session: Session, settings: Settings, user: User, code: str, *,
               client: str = "", clock: Clock | None = None) -> LoginOutcome:
    """Second factor: a code of the user's TOTP secret, never one used before.

    A code is accepted from the previous, current or next 30-second step, and only if
    its step is later than the last accepted one, so a code seen once (shoulder,
    phishing proxy, replay) cannot log in again. A first accepted code confirms the
    enrolment.
    """
    now = _now(clock)
    user = _locked_user(session, User.id == user.id)
    refusal = _refusal_before_check(session, settings, user, "totp", now, client, clock)
    if refusal:
        return refusal
    if not user.totp_secret:
        return _failed(session, settings, user, "totp", "no TOTP secret", now, client, clock)
    step = _matching_step(user.totp_secret, code.strip(), now)
    if step is None:
        return _failed(session, settings, user, "totp", "wrong code", now, client, clock)
    if user.totp_last_step is not None and step <= user.totp_last_step:
        return _failed(session, settings, user, "totp", "code already used", now, client,
                       clock)
    user.totp_last_step = step
    first = not user.totp_confirmed
    user.totp_confirmed = True
    user.failed_logins = 0
    user.locked_until = None
    audit.append(session, f"user:{user.username}", "auth.totp", f"user:{user.username}",
                 client=client, clock=clock, detail={"enrolled": first})
    return LoginOutcome(True, user, "code accepted")


def user_for_certificate(session: Session, fingerprint: str, *, client: str = "",
                         clock: Clock | None = None) -> LoginOutcome:
    """The user whose person the (already chain-validated) certificate is bound to.

    The certificate must be bound to the person in the registry (R-ID-1), not revoked
    there, and within its validity period.
    """
    now = _now(clock)
    cert = session.scalar(select(Certificate).where(Certificate.fingerprint == fingerprint))
    reason = ""
    user = None
    if cert is None:
        reason = "certificate not bound to any person"
    elif cert.status != "active":
        reason = "certificate revoked in the registry"
    elif not cert.not_before <= now <= cert.not_after:
        reason = "certificate outside its validity period"
    else:
        user = session.scalar(select(User).where(User.person_id == cert.agent_id)
                              .options(selectinload(User.person)))
        if user is None:
            reason = "no login for the certificate's person"
    if user is None:
        audit.append(session, f"cert:{fingerprint[:16]}", "auth.login", "users",
                     outcome="failed", client=client, clock=clock,
                     detail={"step": "certificate", "reason": reason,
                             "fingerprint": fingerprint})
        return LoginOutcome(False, None, reason)
    if user.status != "active" or user.person.status != "active":
        audit.append(session, f"user:{user.username}", "auth.login", f"user:{user.username}",
                     outcome="denied", client=client, clock=clock,
                     detail={"step": "certificate", "reason": "account locked"})
        return LoginOutcome(False, user, "account locked")
    audit.append(session, f"user:{user.username}", "auth.certificate", f"user:{user.username}",
                 client=client, clock=clock, detail={"fingerprint": fingerprint})
    return LoginOutcome(True, user, "certificate accepted")


# ---- browser sessions ---------------------------------------------------------------


def start_session(session: Session, settings: Settings, user: User, method: str, *,
                  client: str = "", clock: Clock | None = None) -> str:
    """Open a browser session; returns the token for the cookie (kept only hashed).

    ``user`` may come from another transaction (the login steps): its row is updated
    through this one.
    """
    now = _now(clock)
    token = secrets.token_urlsafe(32)
    session.add(WebSession(id=_digest(token), user_id=user.id, method=method,
                           created_at=now, last_seen_at=now, client=client[:100],
                           expires_at=now + timedelta(hours=settings.auth.session_max_hours)))
    session.get(User, user.id).last_login_at = now
    audit.append(session, f"user:{user.username}", "auth.session-start",
                 f"user:{user.username}", client=client, clock=clock,
                 detail={"method": method})
    return token


TOUCH_AFTER = timedelta(seconds=30)  # how stale last_seen_at may get before a write


def resume_session(session: Session, settings: Settings, token: str, *,
                   clock: Clock | None = None, write: bool = True
                   ) -> tuple[User, WebSession] | None:
    """The user and session of a cookie token, or None if ended, expired or idle.

    With ``write`` the idle clock is refreshed (at most every 30 s) and an idle session
    is marked ended; without it nothing is changed (for a read-only transaction; call
    :func:`session_needs_touch` and resume again with ``write`` when it says so).
    """
    if not token:
        return None
    now = _now(clock)
    row = session.get(WebSession, _digest(token))
    if row is None or row.ended_at is not None or now >= row.expires_at:
        return None
    if now - row.last_seen_at > timedelta(minutes=settings.auth.session_idle_minutes):
        if write:
            row.ended_at = now
        return None
    user = session.scalar(select(User).where(User.id == row.user_id)
                          .options(selectinload(User.person)))
    if user is None or user.status != "active":
        return None
    if write and now - row.last_seen_at > TOUCH_AFTER:
        row.last_seen_at = now
    return user, row


def session_needs_touch(row: WebSession, clock: Clock | None = None) -> bool:
    return _now(clock) - row.last_seen_at > TOUCH_AFTER


def end_session(session: Session, token: str, *, client: str = "",
                clock: Clock | None = None) -> None:
    row = session.get(WebSession, _digest(token)) if token else None
    if row is None or row.ended_at is not None:
        return
    row.ended_at = _now(clock)
    user = session.get(User, row.user_id)
    audit.append(session, f"user:{user.username}", "auth.logout", f"user:{user.username}",
                 client=client, clock=clock)


# ---- API tokens ---------------------------------------------------------------------


def create_token(session: Session, settings: Settings, actor: Principal, *, name: str,
                 agent: str, scopes: list[str], clearance: str = "normal",
                 fonds: list[str] | None = None, days: int | None = None,
                 client: str = "", clock: Clock | None = None) -> tuple[ApiToken, str]:
    """A scoped API token for an organisation or system agent; the secret is returned once."""
    policy.require(actor, policy.TOKEN_MANAGE, client=client)
    if not name.strip() or len(name) > 100:
        raise InputError("token name: 1 to 100 characters")
    unknown = [s for s in scopes if s not in policy.SCOPES]
    if unknown or not scopes:
        raise InputError(f"scopes: choose from {', '.join(policy.SCOPES)}"
                         + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    if clearance not in policy.LEVELS:
        raise InputError(f"unknown clearance {clearance!r}")
    holder = get_agent(session, agent)
    if holder.kind not in ("organisation", "system"):
        raise InputError(f"{agent} is a {holder.kind}; tokens belong to an organisation or "
                         "a system (persons log in)")
    days = settings.auth.token_max_days if days is None else days
    if not 1 <= days <= settings.auth.token_max_days:
        raise InputError(f"days: 1 to {settings.auth.token_max_days}")
    fonds = list(fonds or [])
    _check_grants(session, fonds, [])
    now = _now(clock)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(id=str(uuid.uuid4()), name=name.strip(), secret_hash=_digest(secret),
                     agent_id=holder.id, scopes=sorted(set(scopes)), clearance=clearance,
                     fonds=fonds, created_at=now, created_by=str(actor),
                     expires_at=now + timedelta(days=days))
    token.agent = holder
    session.add(token)
    session.flush()
    audit.append(session, actor, "token.create", f"token:{token.id}", client=client,
                 clock=clock, detail={"name": token.name, "agent": agent,
                                      "scopes": token.scopes, "clearance": clearance,
                                      "expires_at": token.expires_at.isoformat()})
    return token, secret


def authenticate_token(session: Session, secret: str, *, clock: Clock | None = None
                       ) -> Principal | None:
    """The principal of a valid API token, or None (unknown, expired or revoked)."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
        return None
    now = _now(clock)
    token = session.scalar(select(ApiToken).where(ApiToken.secret_hash == _digest(secret))
                           .options(selectinload(ApiToken.agent)))
    if token is None or token.revoked_at is not None or now >= token.expires_at:
        return None
    if token.agent.status != "active":
        return None
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        token.last_used_at = now
    if token.agent.kind == "organisation":
        organisations: tuple[str, ...] = (token.agent.identifier,)
    else:  # a system reaches the records of the organisation that owns it
        owner = session.get(Agent, token.agent.parent_id) if token.agent.parent_id else None
        if owner is not None and owner.status != "active":
            return None  # the organisation answering for the system is gone
        organisations = (owner.identifier,) if owner is not None else ()
    return Principal("token", token.id, f"{token.name} ({token.agent.name})",
                     clearance=token.clearance, fonds=tuple(token.fonds or ()),
                     organisations=organisations, method="token",
                     scopes=tuple(token.scopes or ()))


def revoke_token(session: Session, actor: Principal, token_id: str, *, client: str = "",
                 clock: Clock | None = None) -> ApiToken:
    policy.require(actor, policy.TOKEN_MANAGE, client=client)
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"no API token with id {token_id!r}")
    if token.revoked_at is None:
        token.revoked_at = _now(clock)
        token.revoked_by = str(actor)
        audit.append(session, actor, "token.revoke", f"token:{token.id}", client=client,
                     clock=clock, detail={"name": token.name})
    return token


def list_tokens(session: Session, actor: Principal, *, client: str = "") -> list[ApiToken]:
    policy.require(actor, policy.TOKEN_MANAGE, client=client)
    tokens = list(session.scalars(select(ApiToken).options(selectinload(ApiToken.agent))
                                  .order_by(ApiToken.created_at)))
    audit.append(session, actor, "tokens.list", "tokens", client=client,
                 detail={"returned": len(tokens)})
    return tokens


def token_to_dict(token: ApiToken, now: datetime) -> dict:
    state = "revoked" if token.revoked_at else "expired" if now >= token.expires_at \
        else "active"
    return {"id": token.id, "name": token.name, "agent": token.agent.identifier,
            "scopes": list(token.scopes), "clearance": token.clearance,
            "fonds": list(token.fonds or []), "status": state,
            "created_at": token.created_at.isoformat(), "created_by": token.created_by,
            "expires_at": token.expires_at.isoformat(),
            "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
            "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None}
