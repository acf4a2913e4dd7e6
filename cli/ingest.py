"""`archive ingest PATH... [--metadata FILE]`: validate, package, store, verify, register."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli.context import emit, handle_errors, json_option


def _expand(paths: tuple[Path, ...]) -> list[Path]:
    """Files to ingest: named files, and every non-sidecar file of a named folder."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir()
                              if f.is_file() and not f.name.endswith(".json")
                              and not f.name.startswith(".")))
        else:
            out.append(p)
    return out


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--metadata", "metadata_file", type=click.Path(path_type=Path),
              help="Descriptive metadata JSON (only with a single file). Default: the "
                   "sidecar <file>.json next to each file.")
@json_option
@handle_errors
def ingest(paths: tuple[Path, ...], metadata_file: Path | None, as_json: bool) -> None:
    """Archive documents: check metadata (R-META-1), identify the format (PRONOM), build
    the BagIt AIP with METS/PREMIS, store it, verify it, then register it.

    The same file ingested twice is reported as a duplicate and not stored again.
    Exit 0 when every file is archived or already was; 2 for bad input (missing
    file, invalid metadata: every bad field is listed); 3 when a rule refuses a file.
    """
    from archive.errors import ArchiveError, InputError
    from archive.principal import Principal
    from ingest.services import IngestService, load_sidecar

    files = _expand(paths)
    if metadata_file is not None and len(files) != 1:
        raise InputError("--metadata can only be used with a single file; use sidecar "
                         "<file>.json files for several")
    if not files:
        raise InputError("no files to ingest")
    instance = click.get_current_context().obj.instance
    service = IngestService(instance.settings, instance.catalog, instance.store,
                            principal=Principal.cli_operator())
    results: list[dict] = []
    worst = 0
    show_bar = len(files) > 1 and not as_json
    with click.progressbar(files, label="ingesting", file=sys.stderr,
                           show_pos=True) if show_bar else _nullbar(files) as bar:
        for path in bar:
            try:
                meta, source = load_sidecar(path, metadata_file)
                result = service.ingest(path, meta, source).to_dict()
            except ArchiveError as exc:
                result = {"source": str(path), "status": "refused" if exc.exit_code == 3
                          else "failed", **exc.to_dict()}
                worst = max(worst, exc.exit_code, key=_severity)
            results.append(result)
            if not as_json and not show_bar:
                _print_result(result)
    warning = instance.checkpoint_after_command()
    if warning:
        click.echo(f"warning: {warning}", err=True)
    summary = {s: sum(1 for r in results if r["status"] == s)
               for s in ("archived", "duplicate", "refused", "failed")}
    if as_json:
        emit({"summary": summary, "results": results}, True)
    else:
        if show_bar:
            for r in results:
                _print_result(r)
        click.echo("summary: " + ", ".join(f"{v} {k}" for k, v in summary.items()))
    sys.exit(worst)


def _severity(code: int) -> int:
    # refused (3) outranks bad input (2) outranks a failed check (1)
    return {0: 0, 1: 1, 2: 2, 3: 3}.get(code, 1)


def _print_result(r: dict) -> None:
    if r["status"] in ("archived", "duplicate"):
        click.echo(f"{r['status']}: {r['source']} -> record {r['record_id']}"
                   + (f" ({r['storage_key']})" if r["status"] == "archived" else
                      " (already archived; not stored again)"))
    else:
        click.echo(f"{r['status']}: {r['source']}: {r.get('message', '')}", err=True)


class _nullbar:
    def __init__(self, items):
        self.items = items

    def __enter__(self):
        return self.items

    def __exit__(self, *exc):
        return False


COMMANDS = [ingest]
