"""`archive backup`, `archive backup list`, `archive restore --from` (R-BACKUP-1).

The work is done by ``preservation.backup.copy_objects`` (copies of stored objects),
``preservation.catalog_backup`` (signed catalog backups) and ``preservation.restore``;
this module only parses options, shows progress on stderr and prints the result.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import click

from cli.context import EXIT_OK, EXIT_PROBLEM, emit, handle_errors, json_option


def _obj():
    return click.get_current_context().obj


class _Progress:
    """A progress bar on stderr fed by ``(n)`` increments or ``(done, total)`` calls."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled = label, enabled
        self.bar = None
        self.done = 0
        self.shown = 0.0

    def __call__(self, *args) -> None:
        if not self.enabled:
            return
        if len(args) >= 2 and args[-1]:
            done, total = int(args[-2]), int(args[-1])
        else:
            done, total = self.done + (int(args[-1]) if args else 1), None
        if self.bar is None and total:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr,
                                         show_pos=True)
            self.bar.__enter__()
        if self.bar is not None:
            self.bar.update(done - self.done)
        elif time.monotonic() - self.shown >= 1:  # no total known: a line a second
            click.echo(f"{self.label}: {done}", err=True)
            self.shown = time.monotonic()
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def open_source(settings, spec: str):
    """The backup store named by ``--from``: a folder, or ``s3://bucket`` reached with
    the endpoint and credentials of the [backup] settings."""
    from archive.errors import InputError
    from archive.storage import open_backup_store

    if spec.startswith("s3://"):
        bucket = spec.removeprefix("s3://").strip("/")
        if not bucket or "/" in bucket:
            raise InputError(f"--from {spec}: expected s3://BUCKET")
        if not settings.backup.s3_endpoint:
            raise InputError("--from s3://...: set backup.s3_endpoint and the backup "
                             "credentials in the configuration (or ARCHIVE_BACKUP__S3_*)")
        section = dataclasses.replace(settings.backup, backend="s3", s3_bucket=bucket)
    else:
        folder = Path(spec).expanduser().resolve()
        if not folder.is_dir():
            raise InputError(f"--from {spec}: no such folder")
        section = dataclasses.replace(settings.backup, backend="local",
                                      local_path=str(folder))
    store = open_backup_store(dataclasses.replace(settings, backup=section))
    store.check()
    return store


@click.group("backup", invoke_without_command=True)
@click.option("--objects/--no-objects", "do_objects", default=True, show_default=True,
              help="Copy every stored object not yet in the backup store, verified.")
@click.option("--catalog/--no-catalog", "do_catalog", default=True, show_default=True,
              help="Take a signed, consistent backup of the catalog.")
@json_option
@handle_errors
def backup(do_objects: bool, do_catalog: bool, as_json: bool) -> None:
    """Back up now to the backup store: the stored objects, then the catalog, then the
    objects stored meanwhile (R-BACKUP-1). `archive backup list` shows catalog backups."""
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is not None:
        return
    from archive.principal import Principal
    from preservation.catalog_backup import BackupsDisabled, backup_catalog

    instance = _obj().instance
    if instance.backup_store is None:
        raise BackupsDisabled()
    principal = Principal.cli_operator()
    result: dict = {"store": instance.backup_store.name, "objects": None, "catalog": None}
    if do_objects:
        result["objects"] = _copy_objects(instance, principal, as_json)
    if do_catalog:
        result["catalog"] = backup_catalog(instance, principal).to_dict()
        if do_objects:  # what was stored while the catalog was being backed up
            more = _copy_objects(instance, principal, as_json)
            result["objects_after_catalog"] = more
    warning = instance.checkpoint_after_command()
    if warning:
        click.echo(f"warning: {warning}", err=True)
    failed = int((result["objects"] or {}).get("failed", 0)) + int(
        (result.get("objects_after_catalog") or {}).get("failed", 0))
    result["ok"] = failed == 0

    def human(r):
        click.echo(f"backup store: {r['store']}")
        for label, counts in (("objects", r["objects"]),
                              ("objects stored meanwhile", r.get("objects_after_catalog"))):
            if counts is not None:
                click.echo(f"  {label}: " + ", ".join(f"{k} {v}" for k, v in counts.items()
                                                      if isinstance(v, int)))
        cat = r["catalog"]
        if cat:
            click.echo(f"  catalog: {cat['key']} ({cat['size']} bytes, audit entry "
                       f"{cat['audit_seq']}, {cat['seconds']} s), manifest signed")
            for name in cat["pruned"]:
                click.echo(f"  removed old catalog backup {name}")
            for w in cat["warnings"]:
                click.echo(f"  warning: {w}")

    emit(result, as_json, human)
    ctx.exit(EXIT_OK if failed == 0 else EXIT_PROBLEM)


def _copy_objects(instance, principal, as_json: bool) -> dict:
    from preservation.backup import copy_objects  # the objects backup (R-BACKUP-1)

    bar = _Progress("copying objects", not as_json)
    try:
        return copy_objects(instance, principal, progress=bar)
    finally:
        bar.close()


@backup.command("list")
@click.option("--from", "source", metavar="BACKUP",
              help="Another backup store: a folder or s3://BUCKET (default: [backup]).")
@json_option
@handle_errors
def backup_list(source: str | None, as_json: bool) -> None:
    """List the catalog backups in the backup store: time, size, audit entry, and
    whether the manifest's signature and the dump's size check out."""
    from preservation.catalog_backup import BackupsDisabled, list_backups, public_key

    settings = _obj().settings
    store = open_source(settings, source) if source else _obj().instance.backup_store
    if store is None:
        raise BackupsDisabled()
    backups = list_backups(store, public_key(settings))

    def human(items):
        if not items:
            click.echo(f"no catalog backups in {store.name}")
        for b in items:
            state = "ok" if b["ok"] else f"NOT USABLE: {b['problem']}"
            click.echo(f"{b['name']}  {b.get('created_at') or '-'}  "
                       f"{b.get('size') or 0:>12} bytes  audit entry "
                       f"{b.get('audit_seq') or '-'}  {b.get('database') or '-'}  {state}")

    emit(backups, as_json, human)


@click.command("restore")
@click.option("--from", "source", required=True, metavar="BACKUP",
              help="The backup store: a folder, or s3://BUCKET with the endpoint and "
                   "credentials of the [backup] settings.")
@click.option("--catalog", "name", metavar="NAME",
              help="The catalog backup to restore (default: the newest that verifies; "
                   "see `archive backup list`).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@handle_errors
def restore(source: str, name: str | None, yes: bool, as_json: bool) -> None:
    """Rebuild an EMPTY archive from a backup store: verify the signed catalog backup,
    restore the catalog, copy back and verify every object, verify the audit chain,
    check the fixity of everything (R-BACKUP-1). Refuses (exit 3) a non-empty target;
    exit 1 when a problem is found. The keys come from the key escrow first
    (docs/recovery.md)."""
    from archive.db import safe_url
    from archive.instance import ArchiveInstance
    from archive.principal import Principal
    from preservation.restore import restore as run_restore

    settings = _obj().settings
    store = open_source(settings, source)
    if not yes:
        click.confirm(f"Restore the archive from {store.name} into the empty catalog "
                      f"{safe_url(settings.database_url)}?", abort=True, err=True)
    bars: dict[str, _Progress] = {}

    def progress(phase: str, done: int, total: int) -> None:
        if phase not in bars:
            for bar in bars.values():
                bar.close()
            bars[phase] = _Progress({"objects": "copying objects",
                                     "fixity": "checking fixity"}.get(phase, phase),
                                    not as_json)
        if total:
            bars[phase](done, total)
        else:
            bars[phase](done)

    try:
        report = run_restore(settings, store, Principal.cli_operator(), name=name,
                             progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    instance = ArchiveInstance(settings)
    try:
        warning = instance.checkpoint_after_command()
    finally:
        instance.close()
    if warning:
        report.warnings.append(warning)

    def human(r: dict) -> None:
        click.echo(f"restored catalog backup {r['backup']} ({r['database']}, taken "
                   f"{r['backup_created_at']}) from {r['source']} in {r['seconds']} s")
        click.echo(f"  records: {r['records']}, events: {r['events']}, audit entries: "
                   f"{r['audit_entries']}")
        click.echo(f"  objects: {r['objects']} ({r['bytes']} bytes; "
                   f"{r['unverified_objects']} without a catalog digest)")
        click.echo(f"  newest audit entry restored: {r['newest_audit_entry_at']} "
                   "(anything after it was not in this backup)")
        click.echo(f"  audit chain: {'ok' if r['audit_ok'] else 'BROKEN'} "
                   f"({r['checkpoints_restored']} checkpoints); fixity: "
                   f"{'ok' if r['fixity_ok'] else 'FAILED'} ({r['fixity_checked']} records)")
        for w in r["warnings"]:
            click.echo(f"  note: {w}")
        for p in r["problems"]:
            click.echo(f"  PROBLEM: {p}")

    emit(report.to_dict(), as_json, human)
    click.get_current_context().exit(EXIT_OK if report.ok else EXIT_PROBLEM)


COMMANDS = [backup, restore]
