"""`archive amend` and `archive drafts ...`: corrections, replacements and withdrawals
of archived documents, and drafts, the only documents that change (R-AMEND-1)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.context import acting_options, acting_principal, emit, handle_errors, json_option

KINDS = ("correction", "replacement", "withdrawal")


def _instance():
    return click.get_current_context().obj.instance


def _service(instance, principal):
    from ingest.services import IngestService

    return IngestService(instance.settings, instance.catalog, instance.store,
                         principal=principal, clock=instance.clock)


@click.command("amend")
@click.argument("original_id")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--metadata", "metadata_file", type=click.Path(path_type=Path),
              help="Metadata JSON of the new document (default: FILE.json next to it).")
@click.option("--kind", required=True, type=click.Choice(KINDS),
              help="correction (đính chính), replacement (thay thế), withdrawal (thu hồi).")
@click.option("--reason", required=True, help="Why; kept with the link on both records.")
@acting_options
@json_option
@handle_errors
def amend(original_id: str, file: Path, metadata_file: Path | None, kind: str, reason: str,
          acting_as: str, totp_code: str | None, as_json: bool) -> None:
    """Ingest FILE as a new signed document that corrects, replaces or withdraws
    ORIGINAL_ID. The original is never changed; both records show the link.

    The file goes through the full ingest (every signature validated): a refusal
    exits 3 with its return-to-sender report, and nothing is linked.
    """
    from ingest.amendments import amend as run
    from ingest.services import load_sidecar

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    raw, source = load_sidecar(file, metadata_file)
    service = _service(instance, principal)
    try:
        done = run(service, file, raw, source, original_id=original_id, kind=kind,
                   reason=reason, client="cli")
    finally:
        service.close()
    emit(done.to_dict(), as_json, lambda d: click.echo(
        f"archived {d['source']} as record {d['record_id']}: {d['kind']} of "
        f"{d['original_id']} ({d['reason']})"))


# ---- drafts -------------------------------------------------------------------------


@click.group()
def drafts() -> None:
    """Drafts: prepared before archiving; every change records who, when, what, why."""


def _read_json(path: Path) -> dict:
    from archive.errors import InputError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from exc


def _value(text: str):
    """A --set value: JSON when it parses (numbers, lists), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _show(d: dict) -> None:
    click.echo(f"draft {d['id']} ({d['status']}), created {d['created_at']} by "
               f"{d['created_by']}" + (f", archived as record {d['record_id']}"
                                       if d["record_id"] else ""))
    for key, value in sorted(d["metadata"].items()):
        click.echo(f"  {key:>16}: {value}")
    if d["file_name"]:
        click.echo(f"  {'file':>16}: {d['file_name']} sha256:{d['file_sha256']}")
    for c in d.get("changes", []):
        what = ", ".join(f"{k}: {v['from']!r} -> {v['to']!r}" for k, v in c["changes"].items())
        click.echo(f"  {c['changed_at']} {c['changed_by']}: {what} (why: {c['reason']})")


@drafts.command("create")
@click.option("--metadata", "metadata_file", type=click.Path(path_type=Path), required=True,
              help="Metadata JSON (at least fonds or issuing_org).")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The document's file, if there is one yet.")
@acting_options
@json_option
@handle_errors
def create(metadata_file: Path, file: Path | None, acting_as: str, totp_code: str | None,
           as_json: bool) -> None:
    """Start a draft."""
    from archive.drafts import create_draft, draft_to_dict

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    metadata = _read_json(metadata_file)
    with instance.catalog.unit_of_work() as session:
        if file is not None:
            with open(file, "rb") as fh:
                draft = create_draft(session, instance.store, principal, metadata, file=fh,
                                     file_name=file.name, client="cli", clock=instance.clock)
        else:
            draft = create_draft(session, instance.store, principal, metadata, client="cli",
                                 clock=instance.clock)
        data = draft_to_dict(draft)
    emit(data, as_json, _show)


@drafts.command("edit")
@click.argument("draft_id")
@click.option("--set", "settings", multiple=True, metavar="FIELD=VALUE",
              help="New value of a field (JSON when it parses, else text). Repeat.")
@click.option("--unset", multiple=True, metavar="FIELD", help="Remove a field. Repeat.")
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A new file (stored under a new key; the old one is kept).")
@click.option("--reason", required=True, help="Why the draft changes (recorded).")
@acting_options
@json_option
@handle_errors
def edit(draft_id: str, settings: tuple[str, ...], unset: tuple[str, ...],
         file: Path | None, reason: str, acting_as: str, totp_code: str | None,
         as_json: bool) -> None:
    """Change a draft's fields or file, with the reason."""
    from archive.drafts import change_to_dict, update_draft
    from archive.errors import InputError

    changes: dict = {}
    for item in settings:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InputError(f"--set {item!r}: expected FIELD=VALUE")
        changes[name] = _value(value)
    changes.update({name: None for name in unset})
    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    with instance.catalog.unit_of_work() as session:
        kwargs = dict(client="cli", clock=instance.clock)
        if file is not None:
            with open(file, "rb") as fh:
                change = update_draft(session, instance.store, principal, draft_id, changes,
                                      reason, file=fh, file_name=file.name, **kwargs)
        else:
            change = update_draft(session, instance.store, principal, draft_id, changes,
                                  reason, **kwargs)
        data = change_to_dict(change)
    emit(data, as_json, lambda d: click.echo(
        "changed " + ", ".join(d["changes"]) + f" (why: {d['reason']})"))


@drafts.command("show")
@click.argument("draft_id")
@json_option
@handle_errors
def show(draft_id: str, as_json: bool) -> None:
    """A draft with its whole change history."""
    from archive.drafts import draft_to_dict, show_draft
    from archive.principal import Principal

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        data = draft_to_dict(show_draft(session, Principal.cli_operator(), draft_id,
                                        clock=instance.clock), changes=True)
    emit(data, as_json, _show)


@drafts.command("list")
@click.option("--status", type=click.Choice(["draft", "archived", "discarded", "all"]),
              default="draft", show_default=True)
@json_option
@handle_errors
def list_(status: str, as_json: bool) -> None:
    """Drafts, most recently changed first."""
    from archive.drafts import draft_to_dict, list_drafts
    from archive.principal import Principal

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        rows = list_drafts(session, Principal.cli_operator(),
                           status=None if status == "all" else status, clock=instance.clock)
        data = {"drafts": [draft_to_dict(d) for d in rows]}

    def human(d):
        for x in d["drafts"]:
            click.echo(f"{x['id']}  {x['status']:<9} {x['updated_at']}  "
                       f"{x['metadata'].get('number_symbol', '')}  "
                       f"{str(x['metadata'].get('summary', ''))[:60]}")
        click.echo(f"({len(d['drafts'])})")

    emit(data, as_json, human)


@drafts.command("submit")
@click.argument("draft_id")
@acting_options
@json_option
@handle_errors
def submit(draft_id: str, acting_as: str, totp_code: str | None, as_json: bool) -> None:
    """Archive the draft through the full ingest; afterwards it never changes."""
    from ingest.drafts import submit_draft

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    service = _service(instance, principal)
    try:
        result = submit_draft(service, draft_id, client="cli")
    finally:
        service.close()
    emit({**result.to_dict(), "draft_id": draft_id}, as_json, lambda d: click.echo(
        f"draft {draft_id} archived as record {d['record_id']}"))


@drafts.command("discard")
@click.argument("draft_id")
@click.option("--reason", required=True, help="Why the draft is dropped (recorded).")
@acting_options
@json_option
@handle_errors
def discard(draft_id: str, reason: str, acting_as: str, totp_code: str | None,
            as_json: bool) -> None:
    """Drop a draft (recorded; its history stays)."""
    from archive.drafts import change_to_dict, discard_draft

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    with instance.catalog.unit_of_work() as session:
        data = change_to_dict(discard_draft(session, principal, draft_id, reason,
                                            client="cli", clock=instance.clock))
    emit(data, as_json, lambda d: click.echo(f"draft {draft_id} discarded ({d['reason']})"))


COMMANDS = [amend, drafts]
