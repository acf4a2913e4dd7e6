"""The agent registry: persons and organisations with one unique identifier (R-ID-1).

Organisation identifiers follow the configured code scheme; certificates and
authentication methods are bound to agents by later services (R-SIG-3, R-AUTH-1).
"""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from archive import audit
from archive.clock import Clock, SystemClock
from archive.errors import InputError, NotFound
from archive.models import Agent
from archive.principal import Principal
from archive.settings import Settings

KINDS = ("person", "organisation", "system")
# Systems (other software holding API tokens) have short lower-case names.
SYSTEM_PATTERN = r"^[a-z][a-z0-9-]{1,63}$"


def get_agent(session: Session, identifier: str) -> Agent:
    agent = session.scalar(select(Agent).where(Agent.identifier == identifier))
    if agent is None:
        raise NotFound(f"no agent with identifier {identifier!r}")
    return agent


def find_agent(session: Session, identifier: str) -> Agent | None:
    return session.scalar(select(Agent).where(Agent.identifier == identifier))


def register_agent(session: Session, settings: Settings, principal: Principal, *,
                   kind: str, identifier: str, name: str, parent: str | None = None,
                   position: str | None = None, clock: Clock | None = None) -> Agent:
    """Register a person, organisation or system (software using the API, owned by its
    parent organisation); its identifier must be new and well formed."""
    clock = clock or SystemClock()
    if kind not in KINDS:
        raise InputError(f"agent kind must be one of {', '.join(KINDS)}")
    identifier = identifier.strip()
    name = name.strip()
    pattern = {"organisation": settings.identifiers.organisation_pattern,
               "person": settings.identifiers.person_pattern,
               "system": SYSTEM_PATTERN}[kind]
    if not re.fullmatch(pattern, identifier):
        raise InputError(f"{kind} identifier {identifier!r} does not follow the configured "
                         f"scheme {pattern}")
    if not name or len(name) > 500:
        raise InputError("agent name must be 1 to 500 characters")
    if find_agent(session, identifier) is not None:
        raise InputError(f"an agent with identifier {identifier!r} is already registered "
                         "(identifiers are unique, R-ID-1)")
    parent_row = None
    if parent:
        parent_row = get_agent(session, parent)
        if parent_row.kind != "organisation":
            raise InputError(f"parent {parent!r} is not an organisation")
    agent = Agent(kind=kind, identifier=identifier, name=name,
                  parent_id=parent_row.id if parent_row else None,
                  position=position, status="active", created_at=clock.now())
    session.add(agent)
    session.flush()
    audit.append(session, principal, "agent.register", f"agent:{identifier}",
                 detail={"kind": kind, "name": name, "parent": parent, "position": position},
                 clock=clock)
    return agent


def list_agents(session: Session, principal: Principal, kind: str | None = None,
                clock: Clock | None = None) -> list[Agent]:
    query = select(Agent).order_by(Agent.kind, Agent.identifier)
    if kind:
        query = query.where(Agent.kind == kind)
    rows = list(session.scalars(query))
    audit.append(session, principal, "agents.list", "agents", detail={"kind": kind,
                 "count": len(rows)}, clock=clock)
    return rows


# R-REVOKE-1: where an agent's notifications are delivered. A plain addr-spec (no display
# name, no spaces); the domain has at least one dot or is "localhost".
EMAIL_PATTERN = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)"


def _check_email(value: str) -> str:
    value = value.strip()
    if len(value) > 320 or not re.fullmatch(EMAIL_PATTERN, value) or ".." in value:
        raise InputError(f"e-mail address {value!r} is not a valid address (name@domain)")
    return value


def _check_webhook(value: str) -> str:
    from urllib.parse import urlsplit

    value = value.strip()
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a bad port
    except ValueError as exc:
        raise InputError(f"webhook URL {value!r} is not a valid URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"webhook URL {value!r}: only http:// or https:// URLs with a host")
    if parts.username or parts.password:
        raise InputError("webhook URL: user information (user:password@) is not accepted; "
                         "webhook bodies are signed with notifications.webhook_secret_file")
    if len(value) > 1000 or any(c.isspace() for c in value) or port == 0:
        raise InputError(f"webhook URL {value!r} is not a valid URL")
    return value


def _without_query(url: str | None) -> str | None:
    return url.split("?", 1)[0].split("#", 1)[0] if url else None


def set_contact(session: Session, principal: Principal, identifier: str, *,
                email: str | None = None, webhook_url: str | None = None,
                client: str = "", clock: Clock | None = None) -> Agent:
    """Set where notifications to an agent are delivered (R-REVOKE-1): its e-mail address
    and webhook URL. ``None`` leaves a field; an empty string clears it. Audited."""
    from archive import policy

    policy.require(principal, policy.AGENT_MANAGE, client=client)
    if email is None and webhook_url is None:
        raise InputError("give an e-mail address, a webhook URL or both")
    email = None if email is None else (_check_email(email) if email.strip() else "")
    webhook_url = None if webhook_url is None else (
        _check_webhook(webhook_url) if webhook_url.strip() else "")
    agent = get_agent(session, identifier)
    changes = {}
    if email is not None:
        changes["email"] = {"from": agent.email, "to": email or None}
        agent.email = email or None
    if webhook_url is not None:
        # A query string may carry the receiver's token: not in the audit log.
        changes["webhook_url"] = {"from": _without_query(agent.webhook_url),
                                  "to": _without_query(webhook_url or None)}
        agent.webhook_url = webhook_url or None
    audit.append(session, principal, "agent.set_contact", f"agent:{identifier}",
                 client=client, detail=changes, clock=clock)
    return agent


def contact_to_dict(agent: Agent) -> dict:
    """Where the agent's notifications go (shown to those who manage agents only)."""
    return {"identifier": agent.identifier, "name": agent.name, "email": agent.email,
            "webhook_url": agent.webhook_url}


def agent_to_dict(agent: Agent) -> dict:
    return {"identifier": agent.identifier, "kind": agent.kind, "name": agent.name,
            "position": agent.position, "status": agent.status,
            "created_at": agent.created_at.isoformat() if agent.created_at else None}
