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


def agent_to_dict(agent: Agent) -> dict:
    return {"identifier": agent.identifier, "kind": agent.kind, "name": agent.name,
            "position": agent.position, "status": agent.status,
            "created_at": agent.created_at.isoformat() if agent.created_at else None}
