"""`archive storage sweep|check`: housekeeping of the object store."""

from __future__ import annotations

import click

from cli.context import emit, handle_errors, json_option


@click.group()
def storage() -> None:
    """Object store housekeeping."""


@storage.command("sweep")
@click.option("--grace", type=click.IntRange(0), default=3600, show_default=True,
              help="Seconds an unregistered object must be old before it is removed "
                   "(protects ingests in flight).")
@click.option("--dry-run", is_flag=True, help="Report, remove nothing.")
@json_option
@handle_errors
def sweep(grace: int, dry_run: bool, as_json: bool) -> None:
    """Remove objects no catalog row points at (left by a crashed ingest), and stale
    temporary files. Registered objects are never touched."""
    from archive.principal import Principal
    from archive.sweep import sweep_storage

    instance = click.get_current_context().obj.instance
    report = sweep_storage(instance.settings, instance.catalog, instance.store,
                           Principal.cli_operator(), grace_seconds=grace, dry_run=dry_run)

    def human(r):
        verb = "would remove" if r.dry_run else "removed"
        for key in (r.orphans if r.dry_run else r.removed):
            click.echo(f"{verb} orphan {key}")
        for key in r.too_recent:
            click.echo(f"kept (younger than --grace) {key}")
        for item in r.locked:
            click.echo(f"kept (under Object Lock retention) {item}")
        for key in r.missing:
            click.echo(f"MISSING registered object {key} (run `archive fixity check --all`)")
        for err in r.errors:
            click.echo(f"error: {err}", err=True)
        click.echo(f"{r.objects_seen} objects seen, {len(r.orphans)} orphans, "
                   f"{len(r.removed)} removed, {r.incomplete_removed} temporary files and "
                   f"{r.staging_removed} staging folders cleaned")

    emit(report.to_dict() if as_json else report, as_json, human)
    raise SystemExit(1 if report.errors or report.missing else 0)


@storage.command("check")
@json_option
@handle_errors
def check(as_json: bool) -> None:
    """Check that the configured object store is reachable and usable."""
    from archive.storage import open_store

    store = open_store(click.get_current_context().obj.settings)
    store.check()
    emit({"store": store.name, "ok": True}, as_json,
         lambda d: click.echo(f"{d['store']}: ok"))


COMMANDS = [storage]
