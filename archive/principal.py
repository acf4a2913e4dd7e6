"""Who acts: every service call takes the acting principal (a person or a named job)."""

from __future__ import annotations

import getpass
from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    kind: str  # person | system | anonymous
    identifier: str
    display: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.identifier}"

    @classmethod
    def system(cls, name: str) -> Principal:
        """A named system actor (a CLI operator session, a scheduled job)."""
        return cls("system", name, name)

    @classmethod
    def cli_operator(cls) -> Principal:
        """The operating-system user running the ``archive`` command.

        Until the access layer lands (person login, ``--as``), CLI actions are
        attributed to the OS account, which is what an operator audit needs.
        """
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls("system", f"cli:{user}", f"CLI ({user})")


ANONYMOUS = Principal("anonymous", "-", "anonymous")
