"""`archive ingest PATH... [--metadata FILE]`: validate, package, store, verify, register."""

from __future__ import annotations

import os
import sys
import time
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
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Parallel ingest processes (default: every core when there are several "
                   "files).")
@json_option
@handle_errors
def ingest(paths: tuple[Path, ...], metadata_file: Path | None, workers: int | None,
           as_json: bool) -> None:
    """Archive documents: check metadata (R-META-1), identify the format (PRONOM), build
    the BagIt AIP with METS/PREMIS, store it, verify it, then register it.

    A folder is ingested file by file over all cores with a progress bar; it is safe to
    interrupt and run again: files already archived are reported as duplicates, not
    stored twice. Exit 0 when every file is archived or already was; 2 for bad input
    (missing file, invalid metadata: every bad field is listed); 3 when a rule refuses
    a file (the worst outcome wins).
    """
    from archive.errors import InputError
    from archive.principal import Principal
    from cli.signatures import _silence_pyhanko
    from ingest.bulk import ingest_one, run_bulk
    from ingest.services import IngestService

    _silence_pyhanko()

    files = _expand(paths)
    if metadata_file is not None and len(files) != 1:
        raise InputError("--metadata can only be used with a single file; use sidecar "
                         "<file>.json files for several")
    if not files:
        raise InputError("no files to ingest")
    ctx = click.get_current_context().obj
    instance = ctx.instance
    principal = Principal.cli_operator()
    workers = workers or (min(os.cpu_count() or 1, len(files)) if len(files) > 1 else 1)
    show_bar = len(files) > 1 and not as_json
    start = time.monotonic()
    seen = {"n": 0, "refused": 0}

    with (click.progressbar(length=len(files), label="ingesting", file=sys.stderr,
                            show_pos=True, show_eta=True) if show_bar
          else _NullBar()) as bar:

        def on_result(result: dict) -> None:
            seen["n"] += 1
            seen["refused"] += result["status"] in ("refused", "failed")
            rate = seen["n"] / max(time.monotonic() - start, 1e-6)
            bar.label = f"ingesting ({rate:.1f} files/s, {seen['refused']} not archived)"
            bar.update(1)
            if not as_json and not show_bar:
                _print_result(result)

        if workers == 1:
            service = IngestService(instance.settings, instance.catalog, instance.store,
                                    principal=principal)
            from ingest.bulk import BulkSummary

            summary = BulkSummary()
            try:
                for path in files:
                    result = ingest_one(service, path, metadata_file)
                    summary.results.append(result)
                    on_result(result)
            except KeyboardInterrupt:
                summary.interrupted = True
            finally:
                service.close()
        else:
            summary = run_bulk(files, workers=workers, principal=principal,
                               config_file=ctx.config_file, on_result=on_result)

    warning = instance.checkpoint_after_command()
    if warning:
        click.echo(f"warning: {warning}", err=True)
    counts = summary.counts()
    elapsed = time.monotonic() - start
    if as_json:
        emit({"summary": counts, "interrupted": summary.interrupted,
              "elapsed_seconds": round(elapsed, 3), "workers": workers,
              "results": summary.results}, True)
    else:
        if show_bar:
            for r in summary.results:
                if r["status"] not in ("archived", "duplicate"):
                    _print_result(r)
            _print_table(counts, len(files), elapsed)
        else:
            click.echo("summary: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
        if summary.interrupted:
            click.echo("interrupted: run the same command again to finish; archived files "
                       "will be skipped", err=True)
    sys.exit(130 if summary.interrupted else summary.exit_code)


def _print_result(r: dict) -> None:
    if r["status"] in ("archived", "duplicate"):
        click.echo(f"{r['status']}: {r['source']} -> record {r['record_id']}"
                   + (f" ({r['storage_key']})" if r["status"] == "archived" else
                      " (already archived; not stored again)"))
    else:
        click.echo(f"{r['status']}: {r['source']}: {r.get('message', '')}", err=True)


def _print_table(counts: dict, total: int, elapsed: float) -> None:
    click.echo(f"{'outcome':<12}{'files':>8}")
    for key, value in counts.items():
        click.echo(f"{key:<12}{value:>8}")
    click.echo(f"{'total':<12}{total:>8}   in {elapsed:.1f} s "
               f"({total / max(elapsed, 1e-6):.1f} files/s)")


class _NullBar:
    label = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        pass


COMMANDS = [ingest]
