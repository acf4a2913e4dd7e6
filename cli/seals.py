"""`archive seal`, `archive unseal`, `archive seals list|show` (R-SEAL-1..3).

Sealing and unsealing are a named inspector's decisions: ``--as USERNAME`` with their
one-time code. Unsealing re-reads every sealed object (progress bar) and exits 1 when
anything differs from the seal manifest.
"""

from __future__ import annotations

import click

from cli.context import (
    EXIT_PROBLEM,
    acting_options,
    acting_principal,
    emit,
    handle_errors,
    json_option,
)


def _instance():
    return click.get_current_context().obj.instance


def _show(d: dict) -> None:
    for key in ("id", "reference", "date", "authority", "authority_name", "scope", "status",
                "sealed_at", "sealed_by", "manifest_key", "manifest_sha256", "legal_hold",
                "lifted_at", "lifted_by", "lift_reference"):
        if d.get(key) is not None:
            click.echo(f"{key:>16}: {d[key]}")
    click.echo(f"{'readers':>16}: {', '.join(d['readers']) or '-'}")
    for r in d["records"]:
        click.echo(f"{'record':>16}: {r['id']}  {r['number_symbol']}")
    if d.get("lift_report"):
        _report(d["lift_report"])


def _report(report: dict) -> None:
    if report["ok"]:
        click.echo(f"unchanged since sealing: {report['records_checked']} record(s), "
                   "manifest, signature and every digest match")
        return
    click.echo(f"DIFFERENCES FOUND ({len(report['differences'])}):")
    for d in report["differences"]:
        click.echo(f"  - [{d['code']}] {d['message']}")


@click.command("seal")
@click.argument("record_ids", nargs=-1)
@click.option("--file-ref", help="Seal every record of this file (hồ sơ) instead.")
@click.option("--reference", required=True, help="The sealing decision's number.")
@click.option("--date", "decision_date", required=True, type=click.DateTime(["%Y-%m-%d"]),
              help="The decision's date (YYYY-MM-DD).")
@click.option("--authority", required=True, metavar="ORG",
              help="Identifier of the organisation that issued the decision.")
@click.option("--scope", required=True, help="The decision's scope, as worded.")
@click.option("--reader", "readers", multiple=True, metavar="PERSON_ID",
              help="A person the decision lets read the records meanwhile (repeatable).")
@acting_options
@json_option
@handle_errors
def seal(record_ids, file_ref, reference, decision_date, authority, scope, readers,
         acting_as, totp_code, as_json) -> None:
    """Seal records (or a whole file) for inspection under a decision (R-SEAL-1).

    Writes a signed (and, with signatures.tsa_url, timestamped) manifest of every
    digest to the store, under legal hold where the bucket has Object Lock.
    """
    from archive.errors import InputError
    from archive.keys import load_system_key
    from archive.sealing import seal as seal_records
    from archive.sealing import seal_to_dict
    from ingest.sealing import SealTimestamps

    if bool(record_ids) == bool(file_ref):
        raise InputError("give record ids or --file-ref, not both or neither")
    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    key = load_system_key(instance.settings.keys_dir)
    with SealTimestamps(instance.settings) as stamps, instance.catalog.unit_of_work() as db:
        row = seal_records(db, instance.store, principal, record_ids=list(record_ids) or None,
                           file_ref=file_ref, reference=reference,
                           decision_date=decision_date.date(), authority=authority,
                           scope=scope, readers=list(readers), signing_key=key,
                           timestamp=stamps.stamp if stamps.enabled else None,
                           legal_hold=instance.settings.sealing.legal_hold, client="cli",
                           clock=instance.clock)
        data = seal_to_dict(row)
    warning = instance.checkpoint_after_command()

    def human(d):
        click.echo(f"sealed {len(d['records'])} record(s) under {d['reference']}: seal "
                   f"{d['id']}")
        click.echo(f"manifest {d['manifest_key']} sha256:{d['manifest_sha256']}"
                   + (" (legal hold)" if d["legal_hold"] else ""))

    emit(data, as_json, human)
    if warning:
        click.echo(f"warning: {warning}", err=True)


@click.command("unseal")
@click.argument("seal_id")
@click.option("--reference", "lift_reference", required=True,
              help="The decision lifting the seal.")
@acting_options
@json_option
@handle_errors
def unseal(seal_id, lift_reference, acting_as, totp_code, as_json) -> None:
    """Lift a seal (the sealing authority only), verifying every byte against the seal
    manifest; exits 1 when anything changed (R-SEAL-3)."""
    import sys

    from archive.keys import load_system_key
    from archive.sealing import unseal as lift
    from ingest.sealing import SealTimestamps, after_unseal

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    public = load_system_key(instance.settings.keys_dir).public_key()
    bars: list = []

    def progress(done: int, total: int) -> None:
        if not bars:  # the count is known once the seal's records are locked
            bars.append(click.progressbar(length=total, label="checking sealed records",
                                          file=sys.stderr).__enter__())
        bars[0].update(1)

    try:
        with SealTimestamps(instance.settings) as stamps, \
                instance.catalog.unit_of_work() as db:
            report = lift(db, instance.store, principal, seal_id,
                          lift_reference=lift_reference, public_key=public,
                          verify_timestamp=stamps.check, progress=progress, client="cli",
                          clock=instance.clock)
    finally:
        for bar in bars:
            bar.__exit__(None, None, None)
    report.update(after_unseal(instance.settings, instance.catalog, instance.store, report,
                               clock=instance.clock, client="cli"))
    warning = instance.checkpoint_after_command()
    emit(report, as_json, _report)
    for text in [*report["warnings"], *([warning] if warning else [])]:
        click.echo(f"warning: {text}", err=True)
    if not report["ok"]:
        sys.exit(EXIT_PROBLEM)


@click.group("seals")
def seals() -> None:
    """List and show seals (inspectors, auditors, the operator)."""


@seals.command("list")
@click.option("--status", type=click.Choice(["active", "lifted"]))
@click.option("--record", "record_id", help="Only seals on this record.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
@handle_errors
def list_(status, record_id, limit, offset, as_json) -> None:
    """Seals, newest first."""
    from archive.principal import Principal
    from archive.sealing import list_seals, seal_to_dict

    instance = _instance()
    with instance.catalog.unit_of_work() as db:
        total, rows = list_seals(db, Principal.cli_operator(), status=status,
                                 record_id=record_id, limit=limit, offset=offset,
                                 clock=instance.clock)
        data = {"total": total, "offset": offset, "limit": limit,
                "seals": [seal_to_dict(s) for s in rows]}

    def human(d):
        for s in d["seals"]:
            click.echo(f"{s['id']}  {s['status']:<7} {s['date']}  {s['reference']:<20} "
                       f"{s['authority']}  {len(s['records'])} record(s)")
        click.echo(f"({len(d['seals'])} of {d['total']})")

    emit(data, as_json, human)


@seals.command("show")
@click.argument("seal_id")
@json_option
@handle_errors
def show(seal_id, as_json) -> None:
    """One seal: its decision, records, manifest and, once lifted, the lift report."""
    from archive.principal import Principal
    from archive.sealing import get_seal, seal_to_dict

    instance = _instance()
    with instance.catalog.unit_of_work() as db:
        data = seal_to_dict(get_seal(db, Principal.cli_operator(), seal_id,
                                     clock=instance.clock), report=True)
    emit(data, as_json, _show)


COMMANDS = [seal, unseal, seals]
