"""`archive retention extend | hold | release | due` (R-DESTROY-1).

Extensions and holds are a person's decisions: they run ``--as`` the archivist (or, for
holds, an inspector or approver) after their one-time code. ``due`` lists what a
proposal would list now, as the operator.
"""

from __future__ import annotations

from datetime import date

import click

from cli.context import acting_options, acting_principal, emit, handle_errors, json_option


def _instance():
    return click.get_current_context().obj.instance


def _until(value: str) -> date | None:
    from archive.retention import parse_until

    return parse_until(value)


@click.group("retention")
def retention() -> None:
    """Retention periods: extensions, holds and records due for destruction."""


@retention.command("extend")
@click.argument("record_id")
@click.option("--until", "until", required=True, metavar="YYYY-MM-DD|permanent",
              help="The new end of the retention period, later than the current one, or "
                   "'permanent'.")
@click.option("--reason", required=True, help="Why the retention is extended (lý do).")
@click.option("--decision", "decision_ref", required=True, metavar="REF",
              help="Number/reference of the decision extending it.")
@acting_options
@json_option
@handle_errors
def extend(record_id, until, reason, decision_ref, acting_as, totp_code, as_json) -> None:
    """Extend a record's retention period (never shortened); on S3 with Object Lock its
    AIP versions are locked until the new date."""
    from archive.retention import extend_retention, lock_after_extension

    new_until = _until(until)
    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    result = extend_retention(instance.catalog, principal, record_id, until=new_until,
                              reason=reason, decision_ref=decision_ref, clock=instance.clock,
                              client="cli")
    data = result.to_dict()
    data["object_lock"] = lock_after_extension(instance.catalog, instance.store, record_id)
    emit(data, as_json, lambda d: click.echo(
        f"record {d['record_id']}: retention extended from {d['previous_until']} to "
        f"{d['new_until'] or 'permanent'} (decision {d['decision_ref']}, {d['id']})"))


@retention.command("hold")
@click.argument("record_id")
@click.option("--kind", required=True, type=click.Choice(["legal", "revocation-inquiry"]),
              help="A legal hold, or a pending inquiry into the record's validity.")
@click.option("--reason", required=True, help="Why the record is held.")
@click.option("--reference", metavar="REF", help="The case or decision it follows.")
@acting_options
@json_option
@handle_errors
def hold(record_id, kind, reason, reference, acting_as, totp_code, as_json) -> None:
    """Put a hold on a record: it is neither proposed nor destroyed until released."""
    from archive.retention import place_hold

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    result = place_hold(instance.catalog, principal, record_id, kind=kind, reason=reason,
                        reference=reference, clock=instance.clock, client="cli")
    emit(result.to_dict(), as_json, lambda d: click.echo(
        f"record {d['record_id']}: {d['kind']} hold {d['id']} placed"))


@retention.command("release")
@click.argument("hold_id")
@click.option("--reason", required=True, help="Why the hold ends (the decision).")
@acting_options
@json_option
@handle_errors
def release(hold_id, reason, acting_as, totp_code, as_json) -> None:
    """Release a hold by a recorded decision (the hold row is kept)."""
    from archive.retention import release_hold

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    result = release_hold(instance.catalog, principal, hold_id, reason=reason,
                          clock=instance.clock, client="cli")
    emit(result.to_dict(), as_json, lambda d: click.echo(
        f"record {d['record_id']}: hold {d['id']} released"))


@retention.command("due")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many records.")
@json_option
@handle_errors
def due(limit, as_json) -> None:
    """Records whose retention expired and that a proposal would list now (not sealed,
    not held, not on an open list), oldest expiry first."""
    from archive.principal import Principal
    from archive.retention import list_due

    instance = _instance()
    rows = list_due(instance.catalog, Principal.cli_operator(), limit=limit,
                    clock=instance.clock, client="cli")
    data = {"records": [r.to_dict() for r in rows]}

    def human(d):
        for r in d["records"]:
            click.echo(f"{r['id']}  {r['retention_until']}  {r['status']:8}  "
                       f"{r['number_symbol']}  ({r['retention_rule']})")
        click.echo(f"{len(d['records'])} records due", err=True)

    emit(data, as_json, human)


COMMANDS = [retention]
