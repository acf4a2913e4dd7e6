"""The authorisation matrix (R-AUTH-1, R-CLASS-1, R-SEAL-2, issue #4): every cell of
principal × action × record state × login strength against an expectation table
written here from the rules (the docstring of ``archive.policy`` and issue #4), never
computed by the policy module itself.

One test id per cell: ``<principal>|<action>|<record state>``, where a user principal
is ``<role>/<login method>``. The combined states (classification × status × seal ×
grants) are checked in one test that lists every wrong cell.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from archive import policy
from archive.errors import AccessDenied
from archive.policy import RecordFacts, SealFacts
from archive.principal import ANONYMOUS, Principal

# ---- the rules, written out independently ------------------------------------------

SEARCH, VIEW, HISTORY = "record.search", "record.view", "record.history"
DOWNLOAD, EXPORT = "record.download", "record.export"
INGEST, DESCRIBE = "record.ingest", "record.describe"
PROPOSE_RETENTION, PROPOSE_DESTRUCTION = "retention.propose", "destruction.propose"
APPROVE_DESTRUCTION, REVOKE = "destruction.approve", "record.revoke"
SEAL, UNSEAL = "record.seal", "record.unseal"
REINSTATE, AMEND, RENDER = "record.reinstate", "record.amend", "record.render"
AUDIT_READ, AGENT_READ, AGENT_MANAGE = "audit.read", "agent.read", "agent.manage"
USER_MANAGE, TOKEN_MANAGE, CONFIG_MANAGE = "user.manage", "token.manage", "config.manage"
ACCOUNT, PASSWORD = "account.view", "account.password"
EXECUTE_DESTRUCTION, REGISTER_READ = "destruction.execute", "destruction.register"
HOLD = "record.hold"

ALL_ACTIONS = frozenset({
    SEARCH, VIEW, HISTORY, DOWNLOAD, EXPORT, INGEST, DESCRIBE, PROPOSE_RETENTION,
    PROPOSE_DESTRUCTION, APPROVE_DESTRUCTION, REVOKE, REINSTATE, SEAL, UNSEAL, AMEND, RENDER,
    AUDIT_READ, AGENT_READ, AGENT_MANAGE, USER_MANAGE, TOKEN_MANAGE, CONFIG_MANAGE, ACCOUNT,
    PASSWORD, EXECUTE_DESTRUCTION, REGISTER_READ, HOLD})
READ_METADATA = frozenset({SEARCH, VIEW, HISTORY})
EVERYONE = frozenset({ACCOUNT, PASSWORD, AGENT_READ})  # one's own account; the registry

# Issue #4, "One authorisation point": what each role is for.
ROLE_MAY = {
    # văn thư: ingest, describe, corrections (#5), paper copies; reads and downloads what
    # it is granted
    "clerk": EVERYONE | READ_METADATA | {DOWNLOAD, INGEST, DESCRIBE, AMEND, RENDER},
    # lưu trữ viên: retention and destruction proposals, executing an approved list,
    # holds, the destruction register (#6); exports whole packages; paper copies
    "archivist": EVERYONE | READ_METADATA | {DOWNLOAD, EXPORT, PROPOSE_RETENTION,
                                             PROPOSE_DESTRUCTION, EXECUTE_DESTRUCTION,
                                             REGISTER_READ, HOLD, RENDER},
    # approve destruction, revoke validity (and correct a mistaken revocation); holds and
    # the destruction register (#6)
    "approver": EVERYONE | READ_METADATA | {DOWNLOAD, APPROVE_DESTRUCTION, REGISTER_READ, HOLD,
                                            REVOKE, REINSTATE},
    # seal, unseal, read sealed records as the decision allows; holds (an inquiry) and
    # the destruction register (#6)
    "inspector": EVERYONE | READ_METADATA | {DOWNLOAD, EXPORT, REGISTER_READ, HOLD, SEAL,
                                             UNSEAL},
    # reads the audit log and the destruction register; record metadata, never content
    "auditor": EVERYONE | READ_METADATA | {AUDIT_READ, REGISTER_READ},
    # users, tokens, agents, configuration; finds and views register entries only
    "administrator": EVERYONE | {SEARCH, VIEW, AGENT_MANAGE, USER_MANAGE, TOKEN_MANAGE,
                                 CONFIG_MANAGE},
}
SCOPE_MAY = {
    "records:read": {SEARCH, VIEW, HISTORY},
    "records:download": {DOWNLOAD, EXPORT},
    "records:ingest": {INGEST},
    "agents:read": {AGENT_READ},
    "audit:read": {AUDIT_READ},
}
# R-AUTH-1: creates, changes, approves, seals, revokes or destroys.
NEEDS_STRONG_LOGIN = frozenset({
    INGEST, DESCRIBE, PROPOSE_RETENTION, PROPOSE_DESTRUCTION, APPROVE_DESTRUCTION,
    EXECUTE_DESTRUCTION, HOLD, REVOKE,
    REINSTATE, SEAL, UNSEAL, AMEND, RENDER, AGENT_MANAGE, USER_MANAGE, TOKEN_MANAGE,
    CONFIG_MANAGE, PASSWORD})
# Actions on one record: meaningless without it (search lists many).
NEEDS_RECORD = frozenset({VIEW, HISTORY, DOWNLOAD, EXPORT, DESCRIBE, PROPOSE_RETENTION,
                          PROPOSE_DESTRUCTION, APPROVE_DESTRUCTION, EXECUTE_DESTRUCTION, HOLD,
                          REVOKE, REINSTATE, SEAL,
                          UNSEAL, AMEND, RENDER})
LEVEL = {"normal": 0, "mat": 1, "toi-mat": 2}

# What a record's state leaves possible at all, whoever asks (rule 6, R-AMEND-1,
# R-SEAL-2): an archived record is never edited in place; only a sealed record can be
# unsealed (R-SEAL-3: by the sealing authority only: the person who sealed it or a
# person of the organisation that issued the decision) and only an unsealed one sealed;
# validity is revoked once, reinstated only when revoked, and a revoked record is not
# printed again; a destroyed record keeps its register entry only; a sealed one shows in
# search as sealed, and only the readers its sealing decision names may read its history
# and content (no copy, change or rendition by anyone).
ON_DESTROYED = READ_METADATA
ON_SEALED_FOR_READER = frozenset({SEARCH, VIEW, HISTORY, DOWNLOAD, EXPORT})
ON_SEALED = frozenset({SEARCH, VIEW})


@dataclass(frozen=True)
class State:
    """A record state as the test names it; ``None`` classification: no record."""

    name: str
    classification: str | None = "normal"
    status: str = "active"
    seal: str = "none"  # none | reader | reader-person | other | authority | sealer
    grants: str = "fonds"  # fonds | org | outside | (none: no record)

    def facts(self, principal: Principal) -> RecordFacts | None:
        if self.classification is None:
            return None
        fonds = {"fonds": IN_FONDS, "org": "PHONG-KHAC", "outside": "PHONG-KHAC"}[self.grants]
        org = {"fonds": "000.00.09.H41", "org": IN_ORG, "outside": "000.00.09.H41"}[self.grants]
        others = ("user:someone-else", "001099999999")
        readers = {"none": None, "reader": (str(principal), "user:someone-else"),
                   "reader-person": (principal.person or "-", ),
                   "other": others, "authority": others, "sealer": others}[self.seal]
        authority = principal.organisation if self.seal == "authority" else UBKT
        sealer = principal.person if self.seal == "sealer" else "001077777777"
        seal = SealFacts("QĐ 05/QĐ-UBKT", readers, authority or UBKT, sealer or "-") \
            if readers is not None else None
        return RecordFacts(id="r1", classification=self.classification, status=self.status,
                           fonds=fonds, issuing_org=org, seal=seal)


IN_FONDS, IN_ORG, PERSON = "PHONG-01", "000.00.00.H41", "001085012345"
UBKT = "000.00.99.UBKT"  # the inspection commission issuing the sealing decisions


@dataclass(frozen=True)
class Who:
    name: str
    principal: Principal


def _user(role: str, method: str, clearance: str = "mat") -> Who:
    return Who(f"{role}/{method}",
               Principal("user", f"{role}-{method}", role=role, clearance=clearance,
                         fonds=(IN_FONDS,), organisations=(IN_ORG,), method=method,
                         person=PERSON, organisation=IN_ORG))


def _token(scopes: tuple[str, ...], name: str) -> Who:
    return Who(name, Principal("token", f"tok-{name}", clearance="mat", fonds=(IN_FONDS,),
                               organisations=(IN_ORG,), method="token", scopes=scopes))


ROLES = ("clerk", "archivist", "approver", "inspector", "auditor", "administrator")
METHODS = ("password", "totp", "certificate")
PRINCIPALS = (
    [_user(role, method) for role in ROLES for method in METHODS]
    + [_token((scope,), f"token[{scope}]") for scope in SCOPE_MAY]
    + [_token(tuple(SCOPE_MAY), "token[all]"), _token((), "token[no-scope]"),
       Who("anonymous", ANONYMOUS), Who("system", Principal.system("job:test"))]
)
# Every principal in the tables above has clearance "mat": "normal" is below it,
# "mat" equal, "toi-mat" above.
STATES = (
    State("no-record", classification=None, grants=""),
    State("normal"),
    State("normal-granted-by-org", grants="org"),
    State("mat", classification="mat"),
    State("toi-mat", classification="toi-mat"),
    State("revoked", status="revoked"),
    State("destroyed", status="destroyed"),
    State("sealed-reader", seal="reader"),
    State("sealed-reader-by-person", seal="reader-person"),
    State("sealed-not-reader", seal="other"),
    State("sealed-by-own-organisation", seal="authority"),
    State("sealed-by-this-person", seal="sealer"),
    State("revoked-sealed-by-this-person", status="revoked", seal="sealer"),
    State("outside-grants", grants="outside"),
    State("mat-sealed-reader", classification="mat", seal="reader"),
    State("revoked-sealed-reader", status="revoked", seal="reader"),
    State("destroyed-sealed-reader", status="destroyed", seal="reader"),
    State("toi-mat-outside-grants", classification="toi-mat", grants="outside"),
)


def _is_sealing_authority(principal: Principal, state: State) -> bool:
    """R-SEAL-3: only a logged-in person can be the authority (not a job, not a token)."""
    return principal.kind == "user" and state.seal in ("authority", "sealer")


def _is_reader(principal: Principal, state: State) -> bool:
    if state.seal == "reader":
        return True
    return state.seal == "reader-person" and principal.person is not None


def _readable_level(principal: Principal) -> int:
    """Rule 3 and 4: a password-only login, and an administrator by role, see only
    unclassified records; otherwise the clearance."""
    if principal.kind == "user" and (principal.method == "password"
                                     or principal.role == "administrator"):
        return 0
    return LEVEL[principal.clearance]


def possible_on(principal: Principal, state: State) -> frozenset[str]:
    """The actions the record (or its absence) leaves possible to this principal."""
    if state.classification is None:
        return ALL_ACTIONS - NEEDS_RECORD
    if principal.kind != "system":  # the operator holds every key and every fonds
        if LEVEL[state.classification] > _readable_level(principal):
            return frozenset()
        if state.grants == "outside":
            return frozenset()
    sealed = state.seal != "none"
    possible = ALL_ACTIONS - {DESCRIBE, SEAL if sealed else UNSEAL}
    if state.status == "destroyed":
        possible &= ON_DESTROYED
    possible -= {REVOKE, RENDER} if state.status == "revoked" else {REINSTATE}
    if sealed:
        kept = ON_SEALED_FOR_READER if _is_reader(principal, state) else ON_SEALED
        if _is_sealing_authority(principal, state):
            kept = kept | {UNSEAL}
        possible &= kept
    return possible


def may(principal: Principal) -> frozenset[str]:
    """Rule 1 and 2: what the role, the scopes or the kind of principal allows."""
    if principal.kind == "anonymous":
        return frozenset()
    if principal.kind == "system":
        return ALL_ACTIONS
    if principal.kind == "token":
        return frozenset().union(*(SCOPE_MAY[s] for s in principal.scopes or ()))
    return frozenset(ROLE_MAY[principal.role])


def expected(principal: Principal, action: str, state: State) -> bool:
    if action not in may(principal):
        return False
    if action in NEEDS_STRONG_LOGIN and principal.method == "password":
        return False  # R-AUTH-1
    return action in possible_on(principal, state)


# ---- the table of the module matches the rules ----------------------------------------


def test_the_actions_roles_and_scopes_are_the_ones_the_rules_cover():
    assert set(policy.ACTIONS) == ALL_ACTIONS
    assert len(policy.ACTIONS) == len(ALL_ACTIONS)
    assert set(policy.ROLES) == set(ROLE_MAY)
    assert set(policy.SCOPES) == set(SCOPE_MAY)
    assert policy.LEVELS == LEVEL


def _cells():
    for who in PRINCIPALS:
        for action in sorted(ALL_ACTIONS):
            for state in STATES:
                yield pytest.param(who, action, state, id=f"{who.name}|{action}|{state.name}")


@pytest.mark.parametrize("who, action, state", list(_cells()))
def test_cell(who: Who, action: str, state: State):
    decision = policy.decide(who.principal, action, state.facts(who.principal))
    want = expected(who.principal, action, state)
    assert decision.allowed is want, (
        f"{who.name} {action} on {state.name}: expected "
        f"{'allowed' if want else 'denied'}, policy says "
        f"{'allowed' if decision.allowed else 'denied'} ({decision.reason})")
    assert decision.reason  # every decision says why


COMBINED = [State(f"{c}/{s}/seal={seal}/grant={g}", c, s, seal, g)
            for c, s, seal, g in itertools.product(LEVEL, ("active", "revoked", "destroyed"),
                                                   ("none", "reader", "reader-person",
                                                    "other", "authority", "sealer"),
                                                   ("fonds", "org", "outside"))]
MORE_PRINCIPALS = PRINCIPALS + [
    _user(role, method, clearance) for role in ROLES for method in METHODS
    for clearance in ("normal", "toi-mat")]


def test_every_combined_state():
    """classification × status × seal × grants, for every principal and action: lists
    every cell that differs from the rules."""
    wrong = []
    for who in MORE_PRINCIPALS:
        p = who.principal
        name = who.name if p.kind != "user" else f"{who.name}[{p.clearance}]"
        for state in COMBINED:
            facts = state.facts(p)
            for action in sorted(ALL_ACTIONS):
                got = policy.decide(p, action, facts)
                if got.allowed is not expected(p, action, state):
                    wrong.append(f"{name}|{action}|{state.name}: policy "
                                 f"{'allows' if got.allowed else 'denies'} ({got.reason})")
    assert not wrong, f"{len(wrong)} wrong cells:\n" + "\n".join(wrong)


# ---- particular rules ---------------------------------------------------------------


def test_an_unknown_action_or_role_is_denied():
    clerk = _user("clerk", "totp").principal
    assert not policy.decide(clerk, "record.delete")
    assert not policy.decide(Principal.system("x"), "record.delete")
    nobody = Principal("user", "x", role="superuser", clearance="toi-mat", fonds=("*",),
                       method="certificate")
    assert not any(policy.decide(nobody, a) for a in ALL_ACTIONS)


def test_an_unknown_classification_counts_as_the_highest():
    top = _user("inspector", "certificate", "toi-mat").principal
    facts = RecordFacts("r", classification="tuyet-mat", fonds=IN_FONDS)
    assert not policy.decide(top, VIEW, facts)


def test_administrator_sees_nothing_classified_even_with_every_grant():
    admin = Principal("user", "root", role="administrator", clearance="toi-mat",
                      fonds=("*",), organisations=("*",), method="certificate")
    for level in ("mat", "toi-mat"):
        assert not policy.decide(admin, VIEW, RecordFacts("r", classification=level))
    assert policy.decide(admin, VIEW, RecordFacts("r", fonds="ANY", issuing_org="ANY"))
    assert policy.search_scope(admin).classifications == ("normal",)


def test_wildcard_grants_reach_every_fonds_and_organisation():
    for grants in ({"fonds": ("*",)}, {"organisations": ("*",)}):
        p = Principal("user", "a", role="archivist", clearance="normal", method="totp",
                      **grants)
        assert policy.decide(p, EXPORT, RecordFacts("r", fonds="X", issuing_org="Y"))
        assert policy.search_scope(p).everything


def test_password_only_denial_says_to_use_a_second_factor():
    clerk = _user("clerk", "password").principal
    assert "one-time code" in policy.decide(clerk, INGEST).reason
    assert "one-time code" in policy.decide(clerk, VIEW, RecordFacts(
        "r", classification="mat", fonds=IN_FONDS)).reason
    # without the clearance, the reason is the clearance, not the login
    low = _user("clerk", "password", "normal").principal
    assert "clearance" in policy.decide(low, VIEW, RecordFacts(
        "r", classification="mat", fonds=IN_FONDS)).reason


def test_require_raises_access_denied_naming_who_what_target_and_why():
    clerk = _user("clerk", "totp").principal
    facts = RecordFacts("rec-9", classification="toi-mat", fonds=IN_FONDS)
    with pytest.raises(AccessDenied) as info:
        policy.require(clerk, DOWNLOAD, facts, client="10.0.0.9")
    denial = info.value.denial
    assert (denial.principal, denial.action, denial.target) == (
        "user:clerk-totp", DOWNLOAD, "record:rec-9")
    assert "clearance" in denial.reason and info.value.client == "10.0.0.9"
    assert info.value.exit_code == 3 and not info.value.logged
    with pytest.raises(AccessDenied) as info:
        policy.require(ANONYMOUS, SEARCH)
    assert info.value.denial.target == SEARCH
    assert policy.require(clerk, SEARCH).allowed


# ---- search applies the same rules as decide() --------------------------------------


def _in_scope(scope: policy.SearchScope, facts: RecordFacts) -> bool:
    """How list_records applies a SearchScope as a query filter."""
    if facts.classification not in scope.classifications:
        return False
    return scope.everything or facts.fonds in scope.fonds or \
        facts.issuing_org in scope.organisations


@pytest.mark.parametrize("who", MORE_PRINCIPALS, ids=lambda w: f"{w.name}[{w.principal.clearance}]")
def test_search_scope_agrees_with_decide(who: Who):
    p = who.principal
    if not policy.decide(p, SEARCH):
        return  # list_records refuses before using the scope
    scope = policy.search_scope(p)
    wrong = []
    for state in COMBINED:
        facts = state.facts(p)
        found = _in_scope(scope, facts)
        for action in (SEARCH, VIEW):
            if action not in may(p):
                continue
            if found is not policy.decide(p, action, facts).allowed:
                wrong.append(f"{action} on {state.name}: in search scope {found}")
    assert not wrong, "\n".join(wrong)
