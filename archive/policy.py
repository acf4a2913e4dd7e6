"""The one policy decision point: may this principal do this action (to this record)?

Every access goes through :func:`decide` (or :func:`require`, which raises
:class:`~archive.errors.AccessDenied`); search applies the same rules as a query
filter through :func:`search_scope`. The rules, in order:

1. an anonymous principal may do nothing; a ``system`` principal (the CLI operator,
   a scheduled job) is trusted with what its machine holds: rules 2 to 5 do not apply
   to it, but the record's state (rule 6) does, since R-SEAL-2 lets nobody use a
   sealed record and a destroyed one has no content left;
2. the role (users) or the scopes (API tokens) must allow the action;
3. R-AUTH-1: an action that creates, changes, approves, seals, revokes or destroys
   needs a strong login (second factor or certificate); a password-only session is
   also treated as cleared for unclassified records only;
4. the record's classification must not exceed the principal's clearance
   (administrators: unclassified only, by rule: their role gives no right to
   classified content); an unknown classification exceeds every clearance;
5. the record must be within the principal's grants (fonds or issuing organisation);
6. the record's state: destroyed records keep only their metadata; a sealed record
   (R-SEAL-2) refuses every read of content, every copy and every change except
   reads by the readers its sealing decision names, and is unsealed only by the sealing
   authority (R-SEAL-3: the person who sealed it, or a person of the organisation that
   issued the decision); an archived record is never described in place (R-AMEND-1),
   its validity is revoked once and reinstated only from a revocation, and a revoked
   record is not printed again (R-CONV-2).

A denial raised inside a unit of work is written to the audit log (outcome
``denied``, with the reason) in its own transaction by :mod:`archive.db`.
"""

from __future__ import annotations

from dataclasses import dataclass

from archive.errors import AccessDenied
from archive.principal import Principal

# Classification (độ mật) levels in order; clearance uses the same scale.
LEVELS = {"normal": 0, "mat": 1, "toi-mat": 2}
ROLES = ("clerk", "archivist", "approver", "inspector", "auditor", "administrator")
ROLE_LABELS = {"clerk": "Văn thư", "archivist": "Lưu trữ viên", "approver": "Người phê duyệt",
               "inspector": "Thanh tra, kiểm tra", "auditor": "Kiểm toán nhật ký",
               "administrator": "Quản trị hệ thống"}

# ---- actions ------------------------------------------------------------------------
SEARCH = "record.search"
VIEW = "record.view"  # metadata, signature report
HISTORY = "record.history"  # events / processing history (R-HIST-1)
DOWNLOAD = "record.download"  # the original file
EXPORT = "record.export"  # the whole AIP
INGEST = "record.ingest"
DESCRIBE = "record.describe"  # change descriptive metadata (drafts only, R-AMEND-1)
PROPOSE_RETENTION = "retention.propose"
PROPOSE_DESTRUCTION = "destruction.propose"
APPROVE_DESTRUCTION = "destruction.approve"
EXECUTE_DESTRUCTION = "destruction.execute"  # destroy an approved list's records (R-DESTROY-1)
REGISTER_READ = "destruction.register"  # search and export the destruction register (R-DESTROY-2)
HOLD = "record.hold"  # place or release a legal / revocation-inquiry hold (R-DESTROY-1)
REVOKE = "record.revoke"
REINSTATE = "record.reinstate"  # correct a mistaken revocation by a new decision
AMEND = "record.amend"  # link a correction, replacement or withdrawal to it (R-AMEND-1)
RENDER = "record.render"  # produce a paper rendition with a verification QR (R-CONV-2)
SEAL = "record.seal"
UNSEAL = "record.unseal"
AUDIT_READ = "audit.read"
AGENT_READ = "agent.read"
AGENT_MANAGE = "agent.manage"
USER_MANAGE = "user.manage"
TOKEN_MANAGE = "token.manage"  # noqa: S105 (an action name)
CONFIG_MANAGE = "config.manage"
ACCOUNT = "account.view"  # one's own profile and access history
PASSWORD = "account.password"  # noqa: S105 (an action: change one's own password)

RECORD_ACTIONS = (SEARCH, VIEW, HISTORY, DOWNLOAD, EXPORT, DESCRIBE, PROPOSE_RETENTION,
                  PROPOSE_DESTRUCTION, APPROVE_DESTRUCTION, EXECUTE_DESTRUCTION, HOLD, REVOKE,
                  REINSTATE, SEAL, UNSEAL, AMEND, RENDER)
OTHER_ACTIONS = (INGEST, AUDIT_READ, AGENT_READ, AGENT_MANAGE, USER_MANAGE, TOKEN_MANAGE,
                 CONFIG_MANAGE, ACCOUNT, PASSWORD, REGISTER_READ)
ACTIONS = RECORD_ACTIONS + OTHER_ACTIONS

# R-AUTH-1: actions that create, change, approve, seal, revoke or destroy.
CHANGES = frozenset({INGEST, DESCRIBE, PROPOSE_RETENTION, PROPOSE_DESTRUCTION,
                     APPROVE_DESTRUCTION, EXECUTE_DESTRUCTION, HOLD, REVOKE, REINSTATE, SEAL,
                     UNSEAL, AMEND, RENDER,
                     AGENT_MANAGE, USER_MANAGE, TOKEN_MANAGE, CONFIG_MANAGE, PASSWORD})
_READS = frozenset({SEARCH, VIEW, HISTORY})
_CONTENT = frozenset({DOWNLOAD, EXPORT})

_COMMON = frozenset({ACCOUNT, PASSWORD, AGENT_READ})
ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "clerk": _COMMON | _READS | {DOWNLOAD, INGEST, DESCRIBE, AMEND, RENDER},
    "archivist": _COMMON | _READS | {DOWNLOAD, EXPORT, PROPOSE_RETENTION, PROPOSE_DESTRUCTION,
                                     EXECUTE_DESTRUCTION, REGISTER_READ, HOLD, RENDER},
    "approver": _COMMON | _READS | {DOWNLOAD, APPROVE_DESTRUCTION, REGISTER_READ, HOLD, REVOKE,
                                    REINSTATE},
    "inspector": _COMMON | _READS | {DOWNLOAD, EXPORT, REGISTER_READ, HOLD, SEAL, UNSEAL},
    "auditor": _COMMON | _READS | {AUDIT_READ, REGISTER_READ},
    "administrator": _COMMON | {SEARCH, VIEW, AGENT_MANAGE, USER_MANAGE, TOKEN_MANAGE,
                                CONFIG_MANAGE},
}

# API token scopes and the actions each allows.
SCOPES: dict[str, frozenset[str]] = {
    "records:read": frozenset({SEARCH, VIEW, HISTORY}),
    "records:download": frozenset({DOWNLOAD, EXPORT}),
    "records:ingest": frozenset({INGEST}),
    "agents:read": frozenset({AGENT_READ}),
    "audit:read": frozenset({AUDIT_READ}),
}

ALL = "*"


@dataclass(frozen=True)
class SealFacts:
    reference: str  # the sealing decision's number
    readers: tuple[str, ...] = ()  # persons (or principals, str form) the decision lets read
    authority: str = ""  # identifier of the organisation that issued the decision
    sealer: str = ""  # person identifier of the inspector who sealed


@dataclass(frozen=True)
class RecordFacts:
    """What the policy needs to know about a record."""

    id: str
    classification: str = "normal"
    status: str = "active"  # active | revoked | destroyed
    fonds: str = ""
    issuing_org: str = ""
    seal: SealFacts | None = None


def seal_facts(seal) -> SealFacts:
    """The policy facts of a catalog :class:`~archive.models.Seal`."""
    return SealFacts(reference=seal.reference, readers=tuple(seal.readers or ()),
                     authority=seal.authority.identifier if seal.authority else "",
                     sealer=seal.sealer_person or "")


def facts_of(record) -> RecordFacts:
    """The policy facts of a catalog :class:`~archive.models.Record`."""
    seal = record.active_seal
    return RecordFacts(id=record.id, classification=record.classification,
                       status=record.status, fonds=record.fonds,
                       issuing_org=record.issuing_org.identifier if record.issuing_org else "",
                       seal=seal_facts(seal) if seal is not None else None)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


def allowed_actions(principal: Principal) -> frozenset[str]:
    """Actions the principal's role or token scopes allow, before record rules."""
    if principal.kind == "system":
        return frozenset(ACTIONS)
    if principal.kind == "token":
        out: set[str] = set()
        for scope in principal.scopes or ():
            out |= SCOPES.get(scope, frozenset())
        return frozenset(out)
    if principal.kind == "user":
        return ROLE_ACTIONS.get(principal.role or "", frozenset())
    return frozenset()


def effective_clearance(principal: Principal) -> int:
    """The highest classification level the principal may read."""
    if principal.kind == "system":
        return max(LEVELS.values())
    if principal.kind == "user" and (principal.role == "administrator" or not principal.strong):
        return LEVELS["normal"]  # R-AUTH-1 / no classified content by right of the role
    return LEVELS.get(principal.clearance, 0)


def _in_grants(principal: Principal, facts: RecordFacts) -> bool:
    if ALL in principal.fonds or ALL in principal.organisations:
        return True
    return facts.fonds in principal.fonds or facts.issuing_org in principal.organisations


def _may_read_sealed(principal: Principal, seal: SealFacts) -> bool:
    return str(principal) in seal.readers or (principal.person or "") in seal.readers


def _is_sealing_authority(principal: Principal, seal: SealFacts) -> bool:
    """R-SEAL-3: the person who sealed, or a person of the issuing authority."""
    if principal.kind != "user" or not principal.person:
        return False
    return principal.person == seal.sealer or \
        bool(seal.authority) and principal.organisation == seal.authority


def decide(principal: Principal, action: str, record: RecordFacts | None = None) -> Decision:
    """Whether ``principal`` may do ``action`` (to ``record``), and why not."""
    if action not in ACTIONS:
        return _deny(f"unknown action {action!r}")
    if principal.kind == "anonymous":
        return _deny("not logged in")
    system = principal.kind == "system"
    if not system and action not in allowed_actions(principal):
        if principal.kind == "token":
            return _deny(f"the API token has no scope allowing {action}")
        return _deny(f"the role {principal.role or 'none'} does not allow {action}")
    if action in CHANGES and not principal.strong:
        return _deny("a password-only login may not change anything: log in with a "
                     "one-time code or a certificate (R-AUTH-1)")
    if record is None:
        if action in RECORD_ACTIONS and action != SEARCH:
            return _deny(f"{action} needs a record")
        return Decision(True, "system operator" if system else
                        "allowed by role" if principal.kind == "user" else "allowed by scope")
    if not system:  # rule 1: the operator holds every key and every fonds
        refusal = _clearance_and_grants(principal, record)
        if refusal is not None:
            return refusal
    return _decide_state(principal, action, record)


def _clearance_and_grants(principal: Principal, record: RecordFacts) -> Decision | None:
    # An unknown classification is above every clearance: never readable by mistake.
    level = LEVELS.get(record.classification, max(LEVELS.values()) + 1)
    if level > effective_clearance(principal):
        if principal.kind == "user" and not principal.strong and \
                LEVELS.get(principal.clearance, 0) >= level:
            return _deny("classified records need a login with a one-time code or a "
                         "certificate (R-AUTH-1)")
        return _deny(f"the record is classified {record.classification!r}, above the "
                     "clearance of this login")
    if not _in_grants(principal, record):
        return _deny("the record is outside the fonds and organisations granted")
    return None


def _decide_state(principal: Principal, action: str, record: RecordFacts) -> Decision:
    """Rule 6, for every principal: what the record's state still allows."""
    if record.status == "destroyed" and action not in _READS:
        return _deny("the record was destroyed; only its register entry remains")
    if record.seal is not None:
        decision = _decide_sealed(principal, action, record.seal)
        if decision is not None:
            return decision
    elif action == UNSEAL:
        return _deny("the record is not sealed")
    if action == REVOKE and record.status == "revoked":
        return _deny("the record's validity is already revoked")
    if action == REINSTATE and record.status != "revoked":
        return _deny("the record's validity is not revoked: there is nothing to reinstate")
    if action == RENDER and record.status == "revoked":
        return _deny("the record's validity is revoked: no new paper rendition is made of it")
    if action == DESCRIBE:
        return _deny("an archived record is never edited in place; ingest a correction "
                     "(R-AMEND-1)")
    return Decision(True, "system operator" if principal.kind == "system" else "allowed")


def _decide_sealed(principal: Principal, action: str, seal: SealFacts) -> Decision | None:
    """R-SEAL-2: the decision for a sealed record, or None to go on with other rules."""
    if action == UNSEAL:
        if _is_sealing_authority(principal, seal):
            return Decision(True, f"sealing authority of decision {seal.reference}")
        return _deny(f"only the sealing authority of decision {seal.reference} may unseal "
                     "the record (R-SEAL-3)")
    if action == SEAL:
        return _deny(f"the record is already sealed under decision {seal.reference}")
    if action in (SEARCH, VIEW):
        return None  # the record shows, as sealed
    if action in (HISTORY, DOWNLOAD, EXPORT) and _may_read_sealed(principal, seal):
        return None
    return _deny(f"the record is sealed under decision {seal.reference}")


def require(principal: Principal, action: str, record: RecordFacts | None = None, *,
            client: str = "") -> Decision:
    """:func:`decide`, raising :class:`AccessDenied` on a denial."""
    decision = decide(principal, action, record)
    if not decision.allowed:
        target = f"record:{record.id}" if record is not None else action
        raise AccessDenied(str(principal), action, target, decision.reason, client=client)
    return decision


@dataclass(frozen=True)
class SearchScope:
    """The records a principal may find, as query conditions (mirrors :func:`decide`)."""

    classifications: tuple[str, ...]
    fonds: tuple[str, ...] | None  # None: every fonds
    organisations: tuple[str, ...] | None

    @property
    def everything(self) -> bool:
        return self.fonds is None


def search_scope(principal: Principal) -> SearchScope:
    """Which records ``principal`` may see in a search. Requires SEARCH allowed."""
    top = effective_clearance(principal)
    classifications = tuple(c for c, n in LEVELS.items() if n <= top)
    if principal.kind == "system" or ALL in principal.fonds or ALL in principal.organisations:
        return SearchScope(classifications, None, None)
    return SearchScope(classifications, tuple(principal.fonds), tuple(principal.organisations))
