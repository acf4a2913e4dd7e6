"""`archive users ...` and `archive tokens ...`: logins of persons and API tokens of
organisations and systems (R-AUTH-1, R-ID-1)."""

from __future__ import annotations

import io
import sys

import click

from archive.policy import LEVELS, ROLES, SCOPES
from cli.context import emit, handle_errors, json_option


def _instance():
    return click.get_current_context().obj.instance


def terminal_qr(uri: str) -> str:
    """The otpauth URI as a QR code drawn with block characters."""
    import segno

    out = io.StringIO()
    segno.make(uri, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue()


def _read_password(password_stdin: bool) -> tuple[str, bool]:
    """The new password and whether it was generated (to be shown once)."""
    from archive.users import new_password

    if password_stdin:
        line = sys.stdin.readline().rstrip("\n")
        if not line:
            raise click.UsageError("--password-stdin: no password on standard input")
        return line, False
    if sys.stdin.isatty():
        return click.prompt("Password", hide_input=True, confirmation_prompt=True), False
    return new_password(), True


@click.group()
def users() -> None:
    """Logins of persons: password + TOTP second factor, or a client certificate."""


@users.command("add")
@click.argument("username")
@click.option("--person", required=True, help="Identifier of the registered person (R-ID-1).")
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--clearance", default="normal", show_default=True, type=click.Choice(list(LEVELS)),
              help="Highest classification the user may read.")
@click.option("--fonds", "fonds", multiple=True,
              help="Fonds code the user may reach (repeat; '*' for all).")
@click.option("--org", "organisations", multiple=True,
              help="Organisation whose records the user may reach (repeat; '*' for all). "
                   "Default, with no --fonds either: the person's own organisation.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input. Without it: prompted on a "
                   "terminal, otherwise generated and printed once.")
@click.option("--no-qr", is_flag=True, help="Do not draw the TOTP QR code.")
@json_option
@handle_errors
def add(username: str, person: str, role: str, clearance: str, fonds: tuple[str, ...],
        organisations: tuple[str, ...], password_stdin: bool, no_qr: bool,
        as_json: bool) -> None:
    """Create a login for a registered person; prints the TOTP secret (otpauth URI)."""
    from archive.principal import Principal
    from archive.users import add_user, totp_uri, user_to_dict

    password, generated = _read_password(password_stdin)
    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        user = add_user(session, instance.settings, Principal.cli_operator(),
                        username=username, person=person, role=role, password=password,
                        clearance=clearance, fonds=list(fonds),
                        organisations=list(organisations))
        data = user_to_dict(user)
        data["totp_uri"] = totp_uri(instance.settings, user)
    if generated:
        data["password"] = password

    def human(d):
        click.echo(f"user {d['username']} ({d['role']}, clearance {d['clearance']}) "
                   f"for {d['name']} created")
        if generated:
            click.echo(f"password (shown once; change it at first login): {password}")
        click.echo(f"TOTP secret to enrol in an authenticator app:\n  {d['totp_uri']}")
        if not no_qr:
            click.echo(terminal_qr(d["totp_uri"]))

    emit(data, as_json, human)


@users.command("list")
@json_option
@handle_errors
def list_(as_json: bool) -> None:
    """List users with role, clearance, grants and status."""
    from archive.principal import Principal
    from archive.users import list_users, user_to_dict

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        rows = [user_to_dict(u) for u in list_users(session, Principal.cli_operator())]

    def human(rs):
        for r in rs:
            grants = ",".join(r["fonds"] + r["organisations"]) or "-"
            click.echo(f"{r['username']:<20} {r['role']:<14} {r['clearance']:<8} "
                       f"{r['status']:<7} totp={'yes' if r['totp_enrolled'] else 'no':<3} "
                       f"{grants}  {r['name']}")

    emit(rows, as_json, human)


@users.command("lock")
@click.argument("username")
@click.option("--reason", required=True, help="What happened (recorded with the incident).")
@click.option("--incident", default="compromised", show_default=True,
              type=click.Choice(["lost", "compromised", "left", "other"]))
@json_option
@handle_errors
def lock(username: str, reason: str, incident: str, as_json: bool) -> None:
    """Lock a lost or compromised account and record the incident (R-ID-1)."""
    from archive.principal import Principal
    from archive.users import lock_user, user_to_dict

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        data = user_to_dict(lock_user(session, Principal.cli_operator(), username,
                                      reason=reason, incident=incident))
    emit(data, as_json, lambda d: click.echo(f"user {d['username']} locked ({incident}); "
                                             "its sessions are ended"))


@users.command("unlock")
@click.argument("username")
@click.option("--reason", default="", help="Why the account may be used again.")
@json_option
@handle_errors
def unlock(username: str, reason: str, as_json: bool) -> None:
    """Unlock an account (also clears the failed-login counter)."""
    from archive.principal import Principal
    from archive.users import unlock_user, user_to_dict

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        data = user_to_dict(unlock_user(session, Principal.cli_operator(), username,
                                        reason=reason))
    emit(data, as_json, lambda d: click.echo(f"user {d['username']} unlocked"))


@users.command("reset-totp")
@click.argument("username")
@click.option("--no-qr", is_flag=True, help="Do not draw the QR code.")
@json_option
@handle_errors
def reset_totp(username: str, no_qr: bool, as_json: bool) -> None:
    """Give a user a new TOTP secret (lost phone); prints the otpauth URI."""
    from archive.principal import Principal
    from archive.users import reset_totp as reset
    from archive.users import totp_uri, user_to_dict

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        user = reset(session, Principal.cli_operator(), username)
        data = user_to_dict(user)
        data["totp_uri"] = totp_uri(instance.settings, user)

    def human(d):
        click.echo(f"new TOTP secret for {d['username']}:\n  {d['totp_uri']}")
        if not no_qr:
            click.echo(terminal_qr(d["totp_uri"]))

    emit(data, as_json, human)


@users.command("set-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@json_option
@handle_errors
def set_password(username: str, password_stdin: bool, as_json: bool) -> None:
    """Set a user's password (prompted, read from stdin, or generated and printed once)."""
    from archive.principal import Principal
    from archive.users import set_password as setpw
    from archive.users import user_to_dict

    password, generated = _read_password(password_stdin)
    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        data = user_to_dict(setpw(session, instance.settings, Principal.cli_operator(),
                                  username, password))
    if generated:
        data["password"] = password
    emit(data, as_json, lambda d: click.echo(
        f"password of {d['username']} set" + (f": {password}" if generated else "")))


# ---- API tokens ---------------------------------------------------------------------


@click.group()
def tokens() -> None:
    """API tokens of organisations and systems: scoped, expiring, revocable."""


@tokens.command("create")
@click.argument("name")
@click.option("--agent", required=True,
              help="Identifier of the organisation or system the token acts for.")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(list(SCOPES)),
              help="What the token may do (repeat).")
@click.option("--clearance", default="normal", show_default=True, type=click.Choice(list(LEVELS)))
@click.option("--fonds", multiple=True, help="Extra fonds the token may reach (repeat).")
@click.option("--days", type=int, help="Lifetime in days (default and maximum: "
                                       "auth.token_max_days).")
@json_option
@handle_errors
def create(name: str, agent: str, scopes: tuple[str, ...], clearance: str,
           fonds: tuple[str, ...], days: int | None, as_json: bool) -> None:
    """Create an API token; the secret is printed once and never stored."""
    from archive.principal import Principal
    from archive.users import create_token, token_to_dict

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        token, secret = create_token(session, instance.settings, Principal.cli_operator(),
                                     name=name, agent=agent, scopes=list(scopes),
                                     clearance=clearance, fonds=list(fonds), days=days)
        data = token_to_dict(token, instance.clock.now())
    data["token"] = secret
    emit(data, as_json, lambda d: click.echo(
        f"token {d['id']} ({', '.join(d['scopes'])}) for {d['agent']}, expires "
        f"{d['expires_at']}\nsecret (shown once): {secret}"))


@tokens.command("list")
@json_option
@handle_errors
def list_tokens(as_json: bool) -> None:
    """List API tokens (never their secrets)."""
    from archive.principal import Principal
    from archive.users import list_tokens as listing
    from archive.users import token_to_dict

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        now = instance.clock.now()
        rows = [token_to_dict(t, now) for t in listing(session, Principal.cli_operator())]
    emit(rows, as_json, lambda rs: [click.echo(
        f"{r['id']}  {r['status']:<8} {r['agent']:<16} {','.join(r['scopes']):<30} "
        f"{r['name']}") for r in rs])


@tokens.command("revoke")
@click.argument("token_id")
@json_option
@handle_errors
def revoke(token_id: str, as_json: bool) -> None:
    """Revoke an API token at once."""
    from archive.principal import Principal
    from archive.users import revoke_token, token_to_dict

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        data = token_to_dict(revoke_token(session, Principal.cli_operator(), token_id),
                             instance.clock.now())
    emit(data, as_json, lambda d: click.echo(f"token {d['id']} revoked"))


COMMANDS = [users, tokens]
