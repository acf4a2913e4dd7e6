"""`archive fixity check`: re-read stored packages and verify every digest (R-FIX-1)."""

from __future__ import annotations

import sys

import click

from cli.context import emit, handle_errors, json_option


@click.group()
def fixity() -> None:
    """Fixity checks of stored packages."""


@fixity.command("check")
@click.argument("record_ids", nargs=-1)
@click.option("--all", "check_all", is_flag=True, help="Check every record.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Parallel readers (default: fixity.workers).")
@json_option
@handle_errors
def check(record_ids: tuple[str, ...], check_all: bool, workers: int | None,
          as_json: bool) -> None:
    """Re-read stored AIPs, recompute every digest while streaming, record a PREMIS
    fixity event per record. Exit 1 listing each mismatch or missing object."""
    from archive.errors import InputError
    from archive.principal import Principal
    from preservation.fixity import run_fixity_check

    if check_all == bool(record_ids):
        raise InputError("give record ids or --all (not both)")
    instance = click.get_current_context().obj.instance
    principal = Principal.cli_operator()
    ids = None if check_all else list(record_ids)
    if as_json:
        report = run_fixity_check(instance.settings, instance.catalog, instance.store,
                                  principal, ids, workers=workers)
    else:
        from preservation.fixity import count_packages

        total = count_packages(instance.catalog, ids)
        with click.progressbar(length=total, label="checking", file=sys.stderr,
                               show_pos=True) as bar:
            report = run_fixity_check(instance.settings, instance.catalog, instance.store,
                                      principal, ids, workers=workers, progress=bar.update)
    warning = instance.checkpoint_after_command()
    if warning:
        click.echo(f"warning: {warning}", err=True)

    def human(r):
        for rec in r.failures:
            for p in rec.packages:
                if p.ok:
                    continue
                for problem in p.problems:
                    click.echo(f"FAILED record {rec.record_id} ({rec.number_symbol}): "
                               f"{problem.message}")
                for d in p.damaged_members:
                    click.echo(f"    damaged: {d.path}: {d.problem}")
        click.echo(f"{r.checked} records checked, {len(r.failures)} failed, "
                   f"{r.bytes_read} bytes read")

    emit(report.to_dict() if as_json else report, as_json, human)
    sys.exit(0 if report.ok else 1)


COMMANDS = [fixity]
