"""`archive rendition` and `archive renditions list|verify`: paper renditions with a
verification QR code (R-CONV-2).

Printing is a person's act: ``archive rendition`` runs ``--as`` a clerk or archivist after
their one-time code, and that person's name is printed on every page as the converter.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from cli.context import acting_options, acting_principal, emit, handle_errors, json_option


def _instance():
    return click.get_current_context().obj.instance


@click.command("rendition")
@click.argument("record_id")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the PDF (must not exist).")
@acting_options
@json_option
@handle_errors
def rendition(record_id, output: Path, acting_as, totp_code, as_json) -> None:
    """Print: make a paper rendition of RECORD_ID (every page, a footer with this system,
    the document, the converter, the time and a verification QR code), register it and
    write the PDF to --output."""
    from access.rendition_pdf import PdfRenderer
    from archive.errors import InputError
    from archive.keystore import KeyVault
    from archive.renditions import produce_rendition, rendition_to_dict

    if output.exists():
        raise InputError(f"{output} exists: a rendition is never written over a file")
    if not output.parent.is_dir():
        raise InputError(f"{output.parent} is not a folder")
    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    produced = produce_rendition(instance.catalog, instance.store, instance.settings,
                                 principal, record_id,
                                 renderer=PdfRenderer.from_settings(instance.settings),
                                 vault=KeyVault.from_settings(instance.settings),
                                 client="cli", clock=instance.clock)
    try:
        with open(output, "xb") as handle:
            handle.write(produced.pdf)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from exc
    data = {**rendition_to_dict(produced.rendition), "output": str(output)}

    def human(d):
        click.echo(f"rendition {d['id']} of record {d['record_id']}: {d['pages']} pages "
                   f"written to {d['output']}")
        click.echo(f"  verification: {d['verify_url']}")

    emit(data, as_json, human)


@click.group("renditions")
def renditions() -> None:
    """List the paper renditions of a record, or verify one as the public page does."""


@renditions.command("list")
@click.argument("record_id")
@json_option
@handle_errors
def list_(record_id, as_json) -> None:
    """Every paper rendition of RECORD_ID, oldest first (id, time, converter)."""
    from archive.principal import Principal
    from archive.renditions import list_renditions, rendition_to_dict

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        rows = list_renditions(session, Principal.cli_operator(), record_id, client="cli",
                               clock=instance.clock)
        data = {"record_id": record_id, "renditions": [rendition_to_dict(r) for r in rows]}

    def human(d):
        for r in d["renditions"]:
            click.echo(f"{r['id']}  {r['created_at']}  {r['pages']:>3} pages  {r['converter']}")
        click.echo(f"({len(d['renditions'])} renditions)")

    emit(data, as_json, human)


@renditions.command("verify")
@click.argument("rendition_id")
@json_option
@handle_errors
def verify(rendition_id, as_json) -> None:
    """What the public verification page says about RENDITION_ID (valid, revoked,
    destroyed or unknown; exit 1 unless valid)."""
    import sys

    from archive.renditions import verification

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        data = verification(session, rendition_id, client="cli", clock=instance.clock)

    def human(d):
        click.echo(f"status: {d['status']}")
        for key in ("number_symbol", "issuing_org", "date", "rendered_at", "revoked_at",
                    "destroyed_at"):
            if d.get(key):
                click.echo(f"  {key.replace('_', ' ')}: {d[key]}")
        if d.get("limited"):
            click.echo("  (classified or sealed: only the status and times are told)")

    emit(data, as_json, human)
    if data["status"] != "valid":
        sys.exit(1)


COMMANDS = [rendition, renditions]
