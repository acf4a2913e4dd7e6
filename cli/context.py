"""Shared pieces of every ``archive`` command: the per-invocation context, machine
output, and the one place where errors become messages and exit codes.

Exit codes: 0 ok, 1 a check found a problem, 2 bad input or usage, 3 refused by
permission or rule. Errors reach the user as one line on stderr (plus a JSON object
on stdout with ``--json``), never as a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any

import click

from archive.errors import ArchiveError

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class AppContext:
    """Lazily built settings shared by the subcommands of one invocation."""

    def __init__(self, config_file: str | None):
        self.config_file = config_file
        self._settings = None
        self._instance = None

    @property
    def settings(self):
        if self._settings is None:
            from archive.settings import load_settings

            self._settings = load_settings(self.config_file)
        return self._settings

    @property
    def instance(self):
        """The archive (catalog + store), opened once and closed when the command ends."""
        if self._instance is None:
            from archive.instance import ArchiveInstance

            self._instance = ArchiveInstance(self.settings)
        return self._instance

    def close(self) -> None:
        if self._instance is not None:
            self._instance.close()
            self._instance = None


def emit(data: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON (machine output) or through ``human``."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    elif human is not None:
        human(data)
    else:
        click.echo(data)


def handle_errors(fn: Callable) -> Callable:
    """Map ``ArchiveError`` to a message and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ArchiveError as exc:
            _log_denial(exc)
            as_json = kwargs.get("as_json", False)
            if as_json:
                click.echo(json.dumps(exc.to_dict(), ensure_ascii=False, indent=2))
            click.echo(f"error: {exc.message}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


def _log_denial(exc: ArchiveError) -> None:
    """A denial not yet in the audit log gets there (R-AUDIT-1), best effort."""
    from archive.errors import AccessDenied

    if not isinstance(exc, AccessDenied) or exc.logged:
        return
    ctx = click.get_current_context(silent=True)
    try:
        ctx.obj.instance.catalog.log_denial(exc)
    except (ArchiveError, AttributeError) as err:
        click.echo(f"warning: the denial could not be audited: {err}", err=True)


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print machine-readable JSON on stdout.")


# ---- the acting person (#5: decisions are taken by a named, strongly logged-in person) --


def acting_options(fn: Callable) -> Callable:
    """``--as USERNAME`` and ``--code CODE``: the person taking the action.

    Lifecycle decisions (revoke, seal, unseal, amend, rendition, digitise) are a
    person's, not the operating-system account's: the command runs as that user after
    a one-time code of their second factor (R-AUTH-1), asked for when not given.
    """
    fn = click.option("--code", "totp_code", envvar="ARCHIVE_TOTP_CODE", metavar="CODE",
                      help="The acting person's current one-time code (TOTP); asked for "
                           "when omitted. Env: ARCHIVE_TOTP_CODE.")(fn)
    fn = click.option("--as", "acting_as", required=True, metavar="USERNAME",
                      help="The user taking the action (needs their one-time code).")(fn)
    return fn


def acting_principal(instance, acting_as: str, totp_code: str | None):
    """The principal of ``acting_as`` after checking the one-time code.

    The check (and a failure, which counts towards the account's back-off) is audited
    and committed before a refusal is raised, so a wrong code is never lost.
    """
    from archive import users
    from archive.errors import NotAuthenticated, NotFound

    code = totp_code if totp_code is not None else click.prompt(
        f"One-time code of {acting_as}", hide_input=True)
    with instance.catalog.unit_of_work() as session:
        try:
            user = users.get_user(session, acting_as)
        except NotFound:
            user = None
        outcome = users.check_totp(session, instance.settings, user, code, client="cli",
                                   clock=instance.clock) if user is not None else None
        principal = users.principal_for(outcome.user, "totp") \
            if outcome is not None and outcome.ok else None
    if principal is None:
        reason = "unknown user" if outcome is None else (
            f"{outcome.reason}; retry in {outcome.retry_after} s" if outcome.retry_after
            else outcome.reason)
        exc = NotAuthenticated(f"user:{acting_as}", "auth.totp", f"user:{acting_as}",
                               f"the one-time code was not accepted ({reason})", client="cli")
        exc.logged = outcome is not None  # check_totp audited it
        raise exc
    return principal
