"""``archive audit``: verify the tamper-evident audit log and sign checkpoints (R-AUDIT-1).

``verify`` reads the chain in one snapshot, then records that it ran as an
``audit.verify`` entry (reads are audited) in a second, separate transaction. Why it is
done after, and separately: the entry must not change what is being verified; and when
the chain is found broken the check is still recorded, appended after the damage, which
keeps the evidence intact (nothing is ever repaired or rewritten). The cost: verify needs
write access to the catalog, so every run adds one entry and two runs never see exactly
the same log. If recording fails on a broken log (e.g. the head row was deleted) the
report is still printed, with the reason it was not recorded.

``checkpoint`` verifies first and refuses (exit 1) to sign a broken chain; it writes no
audit entry (the checkpoint itself, kept in the object store, is its record).
"""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from archive.errors import ArchiveError
from cli.context import EXIT_OK, EXIT_PROBLEM, emit, handle_errors, json_option


def _settings():
    return click.get_current_context().obj.settings


def _open_store(settings):
    from archive.storage import open_store

    return open_store(settings)


def _run_verify(settings):
    """Verify the chain against the store's checkpoints: (catalog, key, store, report)."""
    from archive.audit import load_checkpoints, verify
    from archive.db import Catalog
    from archive.keys import load_system_key

    catalog = Catalog.from_settings(settings)
    try:
        key = load_system_key(settings.keys_dir)
        store = _open_store(settings)
        checkpoints = load_checkpoints(store, key.public_key())
        with catalog.unit_of_work(snapshot=True) as session:
            report = verify(session, checkpoints)
    except BaseException:
        catalog.dispose()
        raise
    return catalog, key, store, report


def _human_report(data: dict) -> None:
    if data["ok"]:
        click.echo(f"audit log ok: {data['entries_checked']} entries checked, "
                   f"{data['checkpoints_checked']} checkpoints "
                   f"(latest covers entry {data['latest_checkpoint_seq'] or '-'})")
    else:
        first = data["first_bad_seq"]
        where = f" (first bad entry: {first})" if first is not None else ""
        click.echo(f"audit log has {len(data['problems'])} problem(s){where}:")
        for problem in data["problems"]:
            click.echo(f"  - {problem['message']}")
    for warning in data["warnings"]:
        click.echo(f"note: {warning}")
    if data.get("not_recorded"):
        click.echo(f"note: this verification was not recorded: {data['not_recorded']}")


@click.group("audit")
def audit() -> None:
    """Tamper-evident audit log (R-AUDIT-1): verify it, sign checkpoints."""


@audit.command("verify")
@json_option
@handle_errors
def verify_cmd(as_json: bool) -> None:
    """Check the hash chain and the signed checkpoints; exit 1 naming the first bad entry."""
    from archive.audit import append
    from archive.principal import Principal

    catalog, _key, _store, report = _run_verify(_settings())
    data = report.to_dict()
    try:
        with catalog.unit_of_work() as session:
            entry = append(session, Principal.cli_operator(), "audit.verify", "audit_log",
                           outcome="ok" if report.ok else "failed", client="cli",
                           detail={"entries_checked": report.entries_checked,
                                   "first_bad_seq": report.first_bad_seq,
                                   "problems": len(report.problems)})
        data["recorded_as"] = entry.seq
    except (ArchiveError, SQLAlchemyError) as exc:
        if report.ok:
            raise
        # The log is already known to be damaged: report, do not crash.
        data["not_recorded"] = getattr(exc, "message", None) or str(exc).splitlines()[0]
    finally:
        catalog.dispose()
    emit(data, as_json, _human_report)
    click.get_current_context().exit(EXIT_OK if report.ok else EXIT_PROBLEM)


@audit.command("checkpoint")
@json_option
@handle_errors
def checkpoint_cmd(as_json: bool) -> None:
    """Sign the current head of the chain and keep it in the object store."""
    from archive.audit import write_checkpoint

    catalog, key, store, report = _run_verify(_settings())
    try:
        if not report.ok:
            data = report.to_dict()
            data["checkpoint"] = None
            emit(data, as_json, _human_report)
            if not as_json:
                click.echo("refusing to sign a checkpoint over a broken chain", err=True)
            click.get_current_context().exit(EXIT_PROBLEM)
        with catalog.unit_of_work(snapshot=True) as session:
            checkpoint = write_checkpoint(session, store, key)
    finally:
        catalog.dispose()

    def human(data: dict) -> None:
        cp = data["checkpoint"]
        if cp is None:
            click.echo("audit log is empty: nothing to checkpoint")
        elif data["new"]:
            click.echo(f"checkpoint written: entry {cp['seq']} -> {store.name}/{cp['key']}")
        else:
            click.echo(f"checkpoint for entry {cp['seq']} already exists: {cp['key']}")

    emit({"checkpoint": checkpoint.to_dict() if checkpoint else None,
          "new": bool(checkpoint and checkpoint.new)}, as_json, human)


COMMANDS = [audit]
