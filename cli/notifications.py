"""`archive notifications list|deliver|retry`: the notifications recorded for agencies and
users (refusals, revocations) and their delivery by e-mail and webhook (R-REVOKE-1, R-SIG-2).
"""

from __future__ import annotations

import click

from cli.context import EXIT_PROBLEM, emit, handle_errors, json_option


def _instance():
    return click.get_current_context().obj.instance


@click.group()
def notifications() -> None:
    """Notifications recorded for agencies and users, and their delivery."""


@notifications.command("list")
@click.option("--status", type=click.Choice(["pending", "sent", "failed", "recorded"]))
@click.option("--recipient", help="Organisation identifier or principal (e.g. user:NAME).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@handle_errors
def list_(status: str | None, recipient: str | None, limit: int, as_json: bool) -> None:
    """Notifications, newest first, with their delivery status."""
    from archive.notifications import (
        NotificationFilter,
        list_notifications,
        notification_to_dict,
    )
    from archive.principal import Principal

    instance = _instance()
    flt = NotificationFilter(status=status, recipient=recipient, limit=limit)
    with instance.catalog.unit_of_work() as session:
        _total, rows = list_notifications(session, Principal.cli_operator(), flt,
                                          client="cli")
        data = [notification_to_dict(n) for n in rows]

    def human(rows: list[dict]) -> None:
        for r in rows:
            click.echo(f"{r['created_at'][:19]}  {r['status']:<8} {r['recipient']:<20} "
                       f"{r['subject']}")
            if r["status"] in ("failed", "recorded") or (r["status"] == "pending"
                                                         and r["last_error"]):
                click.echo(f"    {r['id']}: {r['last_error']}")

    emit(data, as_json, human)


@notifications.command("deliver")
@click.option("--id", "ids", multiple=True, metavar="ID",
              help="Deliver only this notification (repeatable). Default: every pending one.")
@json_option
@handle_errors
def deliver(ids: tuple[str, ...], as_json: bool) -> None:
    """Deliver pending notifications by e-mail and webhook now. Exit 1 if any failed."""
    from archive.principal import Principal
    from preservation.notify import deliver_pending

    instance = _instance()
    report = deliver_pending(instance.settings, instance.catalog, ids=list(ids) or None,
                             clock=instance.clock, principal=Principal.cli_operator(),
                             client="cli")
    data = report.to_dict()

    def human(d: dict) -> None:
        for o in d["outcomes"]:
            via = f" via {', '.join(o['channels'])}" if o["channels"] else ""
            click.echo(f"{o['id']}  {o['status']:<8} {o['recipient']}{via}"
                       + (f": {o['error']}" if o["error"] else ""))
        click.echo(f"{d['sent']} sent, {d['retrying']} to retry, {d['failed']} failed, "
                   f"{d['recorded']} listed only, {d['skipped']} skipped")

    emit(data, as_json, human)
    if not report.ok:
        raise SystemExit(EXIT_PROBLEM)


@notifications.command("retry")
@click.argument("notification_id")
@json_option
@handle_errors
def retry(notification_id: str, as_json: bool) -> None:
    """Put a failed notification back in the outbox (delivered by the next `deliver`)."""
    from archive.notifications import notification_to_dict, reopen
    from archive.principal import Principal

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        data = notification_to_dict(reopen(session, Principal.cli_operator(),
                                           notification_id, client="cli"))
    emit(data, as_json, lambda d: click.echo(f"{d['id']}: {d['status']} (to {d['recipient']})"))


COMMANDS = [notifications]
