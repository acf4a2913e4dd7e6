"""`archive digitize` and `archive paper list | show` (R-CONV-1, R-INCIDENT-1).

A clerk brings a paper document in: its scan (one PDF, or image pages in order), its
descriptive metadata with the document's original date, and the reference of the paper
original. The archive signs the copy with the issuing organisation's key and ingests
it. The `paper` group is defined with `archive paper revoke` in ``cli/revocation.py``.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import acting_options, acting_principal, emit, handle_errors, json_option
from cli.revocation import paper

PROGRESS_FROM = 5  # pages: a progress bar from this many files on


@click.command("digitize")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--metadata", "metadata_file", required=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Descriptive metadata (JSON, as for `archive ingest`), with the "
                   "document's ORIGINAL date.")
@click.option("--paper-ref", "paper_ref", required=True, metavar="REF",
              help="Where the paper original is registered and kept (its reference).")
@click.option("--paper-description", default="", metavar="TEXT",
              help="What the paper original is (recorded when it is first registered).")
@click.option("--holder", default="", metavar="TEXT",
              help="Who keeps the paper original.")
@click.option("--qr", is_flag=True,
              help="Stamp a QR code pointing at the record on the first page.")
@acting_options
@json_option
@handle_errors
def digitize(files: tuple[Path, ...], metadata_file: Path, paper_ref: str,
             paper_description: str, holder: str, qr: bool, acting_as: str,
             totp_code: str | None, as_json: bool) -> None:
    """Digitise paper: FILE... is one scanned PDF, or TIFF/JPEG/PNG pages in order.

    The copy is signed with the issuing organisation's key (see docs/digitisation.md),
    ingested, and linked to the paper original REF. Exit 2: bad scan or metadata;
    3: refused (no strong login, missing key, signature refused).
    """
    from ingest.digitise import DigitisationService, ScanSource
    from ingest.services import load_sidecar

    instance = click.get_current_context().obj.instance
    principal = acting_principal(instance, acting_as, totp_code)
    raw, source = load_sidecar(files[0], metadata_file)
    service = DigitisationService(instance.settings, instance.catalog, instance.store,
                                  principal=principal, clock=instance.clock, client="cli")
    sources = [ScanSource(path, str(path)) for path in files]
    if len(files) >= PROGRESS_FROM and not as_json:
        with click.progressbar(length=len(files), label="checking pages",
                               file=click.get_text_stream("stderr")) as bar:
            last = [0]

            def progress(done: int, total: int) -> None:
                bar.update(done - last[0])
                last[0] = done

            result = service.digitise(sources, raw, source, paper_reference=paper_ref,
                                      paper_description=paper_description, holder=holder,
                                      qr=qr, progress=progress)
    else:
        result = service.digitise(sources, raw, source, paper_reference=paper_ref,
                                  paper_description=paper_description, holder=holder, qr=qr)

    def human(r: dict) -> None:
        click.echo(r["message"])
        click.echo(f"  paper original: {r['paper_reference']}; {r['pages']} page(s)")
        click.echo(f"  signed by {r['organisation']} (certificate SHA-256 "
                   f"{r['certificate_sha256']}); copy SHA-256 {r['signed_sha256']}")
        sigs = r.get("signatures") or {}
        if sigs:
            click.echo(f"  archive's signature check: {sigs.get('verdict')}")
        if r.get("qr_url"):
            click.echo(f"  QR code: {r['qr_url']}")

    emit(result.to_dict(), as_json, human)


@paper.command("list")
@click.option("--text", "-q", help="Words in the reference, description or holder.")
@click.option("--status", type=click.Choice(["active", "revoked"]))
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
@handle_errors
def paper_list(text, status, limit, offset, as_json) -> None:
    """Paper originals with digitised copies (newest first)."""
    from archive.paper import list_paper_originals, paper_to_dict
    from archive.principal import Principal

    instance = click.get_current_context().obj.instance
    with instance.catalog.unit_of_work() as session:
        total, rows = list_paper_originals(session, Principal.cli_operator(), text=text,
                                           status=status, limit=limit, offset=offset,
                                           client="cli", clock=instance.clock)
        data = {"total": total, "offset": offset, "limit": limit,
                "paper_originals": [paper_to_dict(p, copy_count=n) for p, n in rows]}

    def human(d: dict) -> None:
        for p in d["paper_originals"]:
            click.echo(f"{p['reference']}\t{p['status']}\t{p['copies']} copy(ies)\t"
                       f"{p['holder'] or '-'}")
        click.echo(f"{d['total']} paper original(s)")

    emit(data, as_json, human)


@paper.command("show")
@click.argument("reference")
@json_option
@handle_errors
def paper_show(reference: str, as_json: bool) -> None:
    """A paper original: its status and its digitised copies."""
    from archive.paper import paper_to_dict, show_paper_original
    from archive.principal import Principal

    instance = click.get_current_context().obj.instance
    with instance.catalog.unit_of_work() as session:
        found, copies = show_paper_original(session, Principal.cli_operator(), reference,
                                            client="cli", clock=instance.clock)
        data = paper_to_dict(found, copies)

    def human(d: dict) -> None:
        click.echo(f"paper original {d['reference']} ({d['status']})")
        if d["description"]:
            click.echo(f"  {d['description']}")
        click.echo(f"  kept by: {d['holder'] or '-'}; registered {d['created_at']} by "
                   f"{d['created_by']}")
        for c in d["copies"]:
            click.echo(f"  digitised copy {c['record_id']}  {c['number_symbol']}  "
                       f"{c['date']}  {c['status']}")

    emit(data, as_json, human)


COMMANDS = [digitize]
