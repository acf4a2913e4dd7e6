"""`archive agents ...`: the registry of identifiers (R-ID-1), the signing certificates
bound to them and who signs for which organisation (R-SIG-1, R-SIG-3)."""

from __future__ import annotations

import click

from cli.context import acting_options, acting_principal, emit, handle_errors, json_option


def _instance():
    return click.get_current_context().obj.instance


@click.group()
def agents() -> None:
    """Persons and organisations, each with one unique electronic identifier."""


def _add(kind: str, identifier: str, name: str, parent: str | None, position: str | None,
         as_json: bool) -> None:
    from archive.agents import agent_to_dict, register_agent
    from archive.principal import Principal

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        agent = register_agent(session, instance.settings, Principal.cli_operator(),
                               kind=kind, identifier=identifier, name=name, parent=parent,
                               position=position)
        data = agent_to_dict(agent)
    emit(data, as_json, lambda d: click.echo(f"registered {d['kind']} {d['identifier']}: "
                                             f"{d['name']}"))


@agents.command("add-org")
@click.argument("identifier")
@click.argument("name")
@click.option("--parent", help="Identifier of the parent organisation.")
@json_option
@handle_errors
def add_org(identifier: str, name: str, parent: str | None, as_json: bool) -> None:
    """Register an organisation (identifier per identifiers.organisation_pattern)."""
    _add("organisation", identifier, name, parent, None, as_json)


@agents.command("add-person")
@click.argument("identifier")
@click.argument("name")
@click.option("--org", "parent", help="Identifier of the person's organisation.")
@click.option("--position", help="Position (chức vụ).")
@json_option
@handle_errors
def add_person(identifier: str, name: str, parent: str | None, position: str | None,
               as_json: bool) -> None:
    """Register a person (identifier per identifiers.person_pattern)."""
    _add("person", identifier, name, parent, position, as_json)


@agents.command("add-system")
@click.argument("identifier")
@click.argument("name")
@click.option("--org", "parent", required=True,
              help="Identifier of the organisation that owns and answers for the system.")
@json_option
@handle_errors
def add_system(identifier: str, name: str, parent: str, as_json: bool) -> None:
    """Register another system that uses the API (lower-case name, e.g. qlvb-tinh-uy);
    its API tokens reach its organisation's records."""
    _add("system", identifier, name, parent, None, as_json)


@agents.command("list")
@click.option("--kind", type=click.Choice(["person", "organisation", "system"]))
@json_option
@handle_errors
def list_(kind: str | None, as_json: bool) -> None:
    """List registered agents."""
    from archive.agents import agent_to_dict, list_agents
    from archive.principal import Principal

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        rows = [agent_to_dict(a) for a in list_agents(session, Principal.cli_operator(), kind)]
    emit(rows, as_json, lambda rs: [click.echo(f"{r['kind']:<13} {r['identifier']:<16} "
                                               f"{r['name']}") for r in rs])


@agents.command("set-contact")
@click.argument("identifier")
@click.option("--email", help="E-mail address for notifications (empty string: remove).")
@click.option("--webhook", "webhook_url",
              help="http(s) URL receiving notifications as signed JSON (empty: remove).")
@acting_options
@json_option
@handle_errors
def set_contact(identifier: str, email: str | None, webhook_url: str | None,
                acting_as: str, totp_code: str | None, as_json: bool) -> None:
    """Where notifications to an agent are delivered (R-REVOKE-1); administrators only."""
    from archive.agents import contact_to_dict
    from archive.agents import set_contact as change

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    with instance.catalog.unit_of_work() as session:
        data = contact_to_dict(change(session, principal, identifier, email=email,
                                      webhook_url=webhook_url, client="cli"))
    emit(data, as_json, lambda d: click.echo(
        f"{d['identifier']}: e-mail {d['email'] or '-'}, webhook {d['webhook_url'] or '-'}"))


# ---- certificates and signing authority (R-ID-1, R-SIG-1, R-SIG-3) ------------------


def _echo_warnings(data: dict) -> None:
    for warning in data.get("warnings", []):
        click.echo(f"warning: {warning}", err=True)


@agents.command("bind-cert")
@click.argument("identifier")
@click.argument("cert_file", metavar="CERT.pem")
@json_option
@handle_errors
def bind_cert(identifier: str, cert_file: str, as_json: bool) -> None:
    """Bind a signing certificate (PEM or DER) to a registered person or organisation."""
    from pathlib import Path

    from archive.certificates import bind_certificate, certificate_to_dict
    from archive.clock import SystemClock
    from archive.errors import InputError
    from archive.principal import Principal

    try:
        data = Path(cert_file).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {cert_file}: {exc.strerror or exc}") from exc
    instance = _instance()
    clock = SystemClock()
    with instance.catalog.unit_of_work() as session:
        result = bind_certificate(session, instance.settings, Principal.cli_operator(),
                                  identifier, data, clock)
        out = certificate_to_dict(result.certificate, clock.now())
        out["warnings"] = result.warnings
    _echo_warnings(out)
    emit(out, as_json, lambda d: click.echo(f"bound certificate {d['fingerprint']} to "
                                            f"{d['agent']} ({d['subject']}, {d['status']})"))


@agents.command("revoke-cert")
@click.argument("fingerprint")
@click.option("--at", "at", required=True, metavar="ISO-DATETIME",
              help="When the revocation takes effect (with a UTC offset), may be past.")
@click.option("--reason", required=True, help="Why (CA revocation, key compromise ...).")
@json_option
@handle_errors
def revoke_cert(fingerprint: str, at: str, reason: str, as_json: bool) -> None:
    """Record that a bound certificate is revoked from --at on; later validations see it."""
    from archive.certificates import certificate_to_dict, parse_instant, revoke_certificate
    from archive.clock import SystemClock
    from archive.principal import Principal

    revoked_at = parse_instant(at, "--at")
    instance = _instance()
    clock = SystemClock()
    with instance.catalog.unit_of_work() as session:
        row = revoke_certificate(session, instance.settings, Principal.cli_operator(),
                                 fingerprint, revoked_at, reason, clock)
        out = certificate_to_dict(row, clock.now())
    emit(out, as_json, lambda d: click.echo(f"revoked certificate {d['fingerprint']} of "
                                            f"{d['agent']} from {d['revoked_at']}"))


def _authority_echo(verb: str):
    def echo(d: dict) -> None:
        until = d["valid_until"] or "open"
        click.echo(f"{verb}: {d['person']} signs for {d['organisation']} as {d['position']} "
                   f"({d['valid_from']} to {until})")
    return echo


@agents.command("grant-authority")
@click.argument("person")
@click.argument("org")
@click.option("--position", required=True, help="Position giving the authority (chức vụ).")
@click.option("--from", "valid_from", metavar="DATE",
              help="Start: YYYY-MM-DD (00:00 Vietnam time) or ISO datetime with offset. "
                   "Default: now.")
@click.option("--basis", help="Decision or document the authority rests on.")
@json_option
@handle_errors
def grant_authority(person: str, org: str, position: str, valid_from: str | None,
                    basis: str | None, as_json: bool) -> None:
    """Record that PERSON is a registered signer of organisation ORG from --from on."""
    from archive.certificates import authority_to_dict, grant_signing_authority, parse_instant
    from archive.clock import SystemClock
    from archive.principal import Principal

    clock = SystemClock()
    start = parse_instant(valid_from, "--from") if valid_from else clock.now()
    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        row = grant_signing_authority(session, Principal.cli_operator(), person, org,
                                      position, start, basis, clock)
        out = authority_to_dict(row)
    emit(out, as_json, _authority_echo("granted"))


@agents.command("end-authority")
@click.argument("person")
@click.argument("org")
@click.option("--until", "valid_until", required=True, metavar="DATE",
              help="First moment without authority: YYYY-MM-DD (00:00 Vietnam time) or "
                   "ISO datetime with offset.")
@click.option("--basis", help="Decision or document ending the authority.")
@json_option
@handle_errors
def end_authority(person: str, org: str, valid_until: str, basis: str | None,
                  as_json: bool) -> None:
    """Close PERSON's open signing authority for ORG (left the position)."""
    from archive.certificates import authority_to_dict, end_signing_authority, parse_instant
    from archive.clock import SystemClock
    from archive.principal import Principal

    end = parse_instant(valid_until, "--until")
    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        row = end_signing_authority(session, Principal.cli_operator(), person, org, end,
                                    basis, SystemClock())
        out = authority_to_dict(row)
    emit(out, as_json, _authority_echo("ended"))


@agents.command("certs")
@click.argument("identifier", required=False)
@json_option
@handle_errors
def certs(identifier: str | None, as_json: bool) -> None:
    """List bound certificates (of one agent) with their status now."""
    from archive.certificates import certificate_to_dict, list_certificates
    from archive.clock import SystemClock
    from archive.principal import Principal

    instance = _instance()
    clock = SystemClock()
    with instance.catalog.unit_of_work() as session:
        rows = [certificate_to_dict(c, clock.now()) for c in
                list_certificates(session, Principal.cli_operator(), identifier, clock)]
    emit(rows, as_json, lambda rs: [click.echo(
        f"{r['agent']:<16} {r['status']:<13} {r['fingerprint']}  {r['subject']}")
        for r in rs])


COMMANDS = [agents]
