"""`archive revoke | reinstate | paper revoke | records repackage` (R-REVOKE-1, R-HIST-1).

A validity decision is a person's: the command runs ``--as`` the approver after their
one-time code. After the decision commits, the parties' notifications are delivered at
once (best effort, through the outbox) and the record's next AIP version is written
(best effort: the events stay in the catalog and the next repackaging carries them).
"""

from __future__ import annotations

import click

from cli.context import acting_options, acting_principal, emit, handle_errors, json_option
from cli.records import records

_DECISION_HELP = {
    "reason": "Why the validity is revoked (lý do).",
    "form": "Form of the decision (hình thức), e.g. 'Quyết định'.",
    "basis": "Legal basis (căn cứ pháp lý).",
    "decision": "Number/reference of the decision (số quyết định).",
}


def decision_options(fn):
    """--reason, --form, --basis (required) and --decision."""
    fn = click.option("--decision", "decision_ref", metavar="REF",
                      help=_DECISION_HELP["decision"])(fn)
    fn = click.option("--basis", "legal_basis", required=True, help=_DECISION_HELP["basis"])(fn)
    fn = click.option("--form", required=True, help=_DECISION_HELP["form"])(fn)
    fn = click.option("--reason", required=True, help=_DECISION_HELP["reason"])(fn)
    return fn


def _instance():
    return click.get_current_context().obj.instance


def after_decision(instance, outcome) -> dict:
    """Notifications delivered now, the next AIP version written (best effort)."""
    from archive.principal import Principal
    from ingest.versions import after_decision as follow

    return follow(instance.settings, instance.catalog, instance.store, outcome,
                  principal=Principal.cli_operator(), clock=instance.clock, client="cli")


def _decide(service, target: str, acting_as: str, totp_code: str | None, *, reason: str,
            form: str, legal_basis: str, decision_ref: str | None) -> dict:
    from archive.revocation import revocation_to_dict

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    with instance.catalog.unit_of_work() as session:
        outcome = service(session, principal, target, reason=reason, form=form,
                          legal_basis=legal_basis, decision_ref=decision_ref, client="cli",
                          clock=instance.clock)
        data = {"revocations": [revocation_to_dict(r) for r in outcome.revocations],
                "notifications": [{"id": n.id, "recipient": n.recipient, "kind": n.kind,
                                   "subject": n.subject} for n in outcome.notifications]}
    data.update(after_decision(instance, outcome))
    return data


def _human(data: dict) -> None:
    for row in data["revocations"]:
        verb = "revoked" if row["action"] == "revoke" else "reinstated"
        click.echo(f"record {row['record_id']}: validity {verb} (decision {row['id']}, "
                   f"{row['form']} {row['decision_ref'] or ''})".replace(" )", ")"))
    for note in data["notifications"]:
        click.echo(f"  notified {note['recipient']}: {note['subject']}")
    delivery = data.get("delivery")
    if delivery:
        click.echo(f"  delivery: {delivery.get('sent', 0)} sent, "
                   f"{delivery.get('recorded', 0)} listed only, "
                   f"{delivery.get('retrying', 0)} to retry, {delivery.get('failed', 0)} failed")
    for version in data["versions"]:
        click.echo(f"  AIP version {version['version']} written: {version['storage_key']}")
    for warning in data["warnings"]:
        click.echo(f"warning: {warning}", err=True)


@click.command("revoke")
@click.argument("record_id")
@decision_options
@acting_options
@json_option
@handle_errors
def revoke(record_id, reason, form, legal_basis, decision_ref, acting_as, totp_code,
           as_json) -> None:
    """Revoke a record's validity (hủy hiệu lực, R-REVOKE-1): an approver's decision.

    The package stays byte for byte; the record is marked revoked, the parties are
    notified and its renditions become invalid at once.
    """
    from archive.revocation import revoke as service

    emit(_decide(service, record_id, acting_as, totp_code, reason=reason, form=form,
                 legal_basis=legal_basis, decision_ref=decision_ref), as_json, _human)


@click.command("reinstate")
@click.argument("record_id")
@decision_options
@acting_options
@json_option
@handle_errors
def reinstate(record_id, reason, form, legal_basis, decision_ref, acting_as, totp_code,
              as_json) -> None:
    """Correct a mistaken revocation by a new, recorded decision (R-REVOKE-1)."""
    from archive.revocation import reinstate as service

    emit(_decide(service, record_id, acting_as, totp_code, reason=reason, form=form,
                 legal_basis=legal_basis, decision_ref=decision_ref), as_json, _human)


@click.group("paper")
def paper() -> None:
    """Paper originals of digitised copies (R-CONV-1)."""


@paper.command("revoke")
@click.argument("reference")
@decision_options
@acting_options
@json_option
@handle_errors
def paper_revoke(reference, reason, form, legal_basis, decision_ref, acting_as, totp_code,
                 as_json) -> None:
    """Revoke a paper original and, at the same instant, its digitised copies."""
    from archive.revocation import revoke_paper_original as service

    emit(_decide(service, reference, acting_as, totp_code, reason=reason, form=form,
                 legal_basis=legal_basis, decision_ref=decision_ref), as_json, _human)


@records.command("repackage")
@click.argument("record_id")
@click.option("--reason", default="lifecycle events carried into the package",
              show_default=True, help="Why a new version is written (recorded).")
@json_option
@handle_errors
def repackage_command(record_id, reason, as_json) -> None:
    """Write the record's next AIP version with every catalog event (R-HIST-1).

    The payload is copied byte for byte from the latest version and verified; older
    versions are never touched. Refused for a sealed or destroyed record.
    """
    from archive.principal import Principal
    from ingest.versions import repackage

    instance = _instance()
    result = repackage(instance.settings, instance.catalog, instance.store,
                       Principal.cli_operator(), record_id, reason=reason,
                       clock=instance.clock, client="cli")
    emit(result.to_dict(), as_json, lambda r: click.echo(
        f"record {r['record_id']}: AIP version {r['version']} written to {r['storage_key']} "
        f"({r['size']} bytes, {r['events']} events carried)"))


COMMANDS = [revoke, reinstate, paper]
