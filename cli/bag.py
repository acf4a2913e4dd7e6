"""``archive bag ...``: BagIt packages (R-PKG-1).

``archive bag validate PATH`` exits 0 when the bag is valid, 1 when it is not (every
problem listed on stdout, or the whole report as JSON with ``--json``), 2 when PATH is
not a directory. Warnings always go to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from archive.bag_validation import validate_bag
from archive.errors import InputError
from cli.context import EXIT_OK, EXIT_PROBLEM, emit, handle_errors, json_option


@click.group("bag")
def bag() -> None:
    """BagIt packages (RFC 8493): validate bags before ingest."""


@bag.command("validate")
@click.argument("path", type=click.Path(path_type=Path))
@json_option
@click.option("--workers", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Threads hashing files in parallel.")
@click.option("--fast", is_flag=True,
              help="Check Payload-Oxum (file count and bytes) instead of payload checksums.")
@handle_errors
def validate(path: Path, as_json: bool, workers: int, fast: bool) -> None:
    """Validate the bag at PATH; never fetches fetch.txt URLs and never writes.

    Exit 0 valid, 1 invalid (each problem on its own line), 2 PATH is not a directory.
    """
    if not path.exists():
        raise InputError(f"no such bag directory: {path}")
    if not path.is_dir():
        raise InputError(f"not a directory (a bag is a directory): {path}")
    report = validate_bag(path, workers=workers, fast=fast)
    for warning in report.warnings:
        click.echo(f"warning: {warning.code}: {warning.message}", err=True)
    emit(report.to_dict(), as_json, _print_report)
    sys.exit(EXIT_OK if report.valid else EXIT_PROBLEM)


def _print_report(data: dict) -> None:
    counts = data["counts"]
    if data["valid"]:
        how = "Payload-Oxum only" if data["fast"] else "checksums verified"
        click.echo(f"valid: {data['path']} (BagIt {data['version']}, "
                   f"{', '.join(data['algorithms'])}; {counts['payload_files']} payload files, "
                   f"{counts['payload_bytes']} bytes; {how})")
        return
    for problem in data["problems"]:
        click.echo(f"error: {problem['code']}: {problem['message']}")
    click.echo(f"invalid: {data['path']} ({counts['problems']} problems)")


COMMANDS = [bag]
