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
audit entry (the checkpoint itself, kept in the object store, is its record). Both keep
to the checkpoints of the primary AND the backup store (``preservation.audit_checkpoints``):
the checkpoint is written to both, with an RFC 3161 token when ``signatures.tsa_url`` is
set, and ``verify`` uses the union of both stores' checkpoints and checks the tokens.
"""

from __future__ import annotations

import click
from sqlalchemy.exc import SQLAlchemyError

from archive.errors import ArchiveError
from cli.context import EXIT_OK, EXIT_PROBLEM, emit, handle_errors, json_option


def _instance():
    return click.get_current_context().obj.instance


def _run_verify(instance):
    """Verify the chain against the checkpoints of both stores (primary and backup)
    and their RFC 3161 tokens: (report, extra facts for the output)."""
    from preservation.audit_checkpoints import verify_log

    return verify_log(instance)


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

    instance = _instance()
    catalog = instance.catalog
    report, extra = _run_verify(instance)
    data = report.to_dict() | extra
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
    emit(data, as_json, _human_report)
    click.get_current_context().exit(EXIT_OK if report.ok else EXIT_PROBLEM)


@audit.command("checkpoint")
@json_option
@handle_errors
def checkpoint_cmd(as_json: bool) -> None:
    """Sign the current head of the chain and keep it in the object store and the backup
    store, with an RFC 3161 timestamp when signatures.tsa_url is set."""
    from preservation.audit_checkpoints import write_checkpoint

    instance = _instance()
    report, extra = _run_verify(instance)
    if not report.ok:
        data = report.to_dict() | extra
        data["checkpoint"] = None
        emit(data, as_json, _human_report)
        if not as_json:
            click.echo("refusing to sign a checkpoint over a broken chain", err=True)
        click.get_current_context().exit(EXIT_PROBLEM)
    written = write_checkpoint(instance)
    checkpoint = written["checkpoint"]

    def human(data: dict) -> None:
        cp = data["checkpoint"]
        where = ", ".join(data["stores"])
        if cp is None:
            click.echo("audit log is empty: nothing to checkpoint")
        elif data["new"]:
            click.echo(f"checkpoint written: entry {cp['seq']} -> {cp['key']} ({where})")
        else:
            click.echo(f"checkpoint for entry {cp['seq']} already exists: {cp['key']} "
                       f"({where})")
        if data["timestamp"]:
            click.echo(f"timestamped by {data['timestamp']['tsa']} at "
                       f"{data['timestamp']['time']}")

    emit({"checkpoint": checkpoint.to_dict() if checkpoint else None,
          "new": bool(checkpoint and checkpoint.new), "stores": written["stores"],
          "timestamp": written["token"]}, as_json, human)


COMMANDS = [audit]
