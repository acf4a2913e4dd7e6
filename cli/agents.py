"""`archive agents add-org|add-person|list`: the registry of identifiers (R-ID-1)."""

from __future__ import annotations

import click

from cli.context import emit, handle_errors, json_option


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


@agents.command("list")
@click.option("--kind", type=click.Choice(["person", "organisation"]))
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


COMMANDS = [agents]
