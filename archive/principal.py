"""Who acts: every service call takes the acting principal (a person or a named job).

A principal carries what the policy decision point (:mod:`archive.policy`) needs:
the role, clearance and grants of a user, how they authenticated (R-AUTH-1), or the
scopes of an API token. It is built by the access layer at each request (or by the
CLI and jobs as a ``system`` principal) and never stored.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass

# How a principal proved who it is. "password" is one factor only (R-AUTH-1).
AUTH_METHODS = ("password", "totp", "certificate", "token", "system", "none")
STRONG_METHODS = frozenset({"totp", "certificate", "token", "system"})


@dataclass(frozen=True)
class Principal:
    kind: str  # user | token | system | anonymous
    identifier: str
    display: str = ""
    role: str | None = None
    clearance: str = "normal"
    fonds: tuple[str, ...] = ()
    organisations: tuple[str, ...] = ()
    method: str = "none"
    scopes: tuple[str, ...] | None = None  # API tokens only
    person: str | None = None  # the person's identifier (R-ID-1)
    organisation: str | None = None  # the organisation the person belongs to

    def __str__(self) -> str:
        return f"{self.kind}:{self.identifier}"

    @property
    def strong(self) -> bool:
        """Authenticated with a certificate or a second factor (R-AUTH-1)."""
        return self.method in STRONG_METHODS

    @classmethod
    def system(cls, name: str) -> Principal:
        """A named system actor (a CLI operator session, a scheduled job)."""
        return cls("system", name, name, method="system")

    @classmethod
    def cli_operator(cls) -> Principal:
        """The operating-system user running the ``archive`` command.

        The operator holds the machine's keys and catalog; CLI actions are attributed
        to the OS account, which is what an operator audit needs.
        """
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls("system", f"cli:{user}", f"CLI ({user})", method="system")


ANONYMOUS = Principal("anonymous", "-", "anonymous")
