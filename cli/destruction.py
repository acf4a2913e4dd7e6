"""`archive destruction propose | lists | show | remove | add | approve | cancel | execute |
register` (R-DESTROY-1, R-DESTROY-2).

Review and approval are a person's decisions (``--as USERNAME`` with the one-time code);
proposing, cancelling and executing may also be done by the operator (no ``--as``).
"""

from __future__ import annotations

import sys

import click

from cli.context import acting_options, acting_principal, emit, handle_errors, json_option


def _instance():
    return click.get_current_context().obj.instance


def optional_acting(fn):
    """``--as`` / ``--code`` optional: without them, the CLI operator acts."""
    fn = click.option("--code", "totp_code", envvar="ARCHIVE_TOTP_CODE", metavar="CODE",
                      help="The acting person's one-time code (with --as).")(fn)
    fn = click.option("--as", "acting_as", metavar="USERNAME",
                      help="The person acting (default: the operator of this machine).")(fn)
    return fn


def _who(instance, acting_as, totp_code):
    from archive.principal import Principal

    if acting_as:
        return acting_principal(instance, acting_as, totp_code)
    return Principal.cli_operator()


def _human_list(d: dict) -> None:
    click.echo(f"destruction list {d['id']}: {d['status']} (proposed {d['proposed_at']} by "
               f"{d['proposed_by']})")
    if d.get("approved_by"):
        click.echo(f"  approved by {d['approved_by']}: {d['approving_body']}, decision "
                   f"{d['decision_number']} of {d['decision_date']}; basis: {d['legal_basis']}")
    click.echo("  " + ", ".join(f"{n} {s}" for s, n in sorted(d["counts"].items())))
    for item in d.get("items") or []:
        note = f"  ({item['note']})" if item.get("note") else ""
        number = "(classified: not shown)" if item.get("hidden") else item["number_symbol"]
        click.echo(f"  {item['record_id']}  {item['status']:9}  {number}  "
                   f"until {item['retention_until']}{note}")


@click.group("destruction")
def destruction() -> None:
    """Destruction lists: propose, review, approve, execute; the permanent register."""


@destruction.command("propose")
@click.argument("record_ids", nargs=-1)
@click.option("--limit", type=click.IntRange(min=1), help="At most this many records.")
@click.option("--reason", default="", help="The reason written on the list.")
@optional_acting
@json_option
@handle_errors
def propose(record_ids, limit, reason, acting_as, totp_code, as_json) -> None:
    """Propose a list of the records due (or of RECORD_IDS, each of which must be due).
    Never destroys. Nothing due: no list (exit 0)."""
    from archive.destruction import propose as service

    instance = _instance()
    principal = _who(instance, acting_as, totp_code)
    result = service(instance.catalog, principal, reason=reason,
                     record_ids=list(record_ids) or None, limit=limit, clock=instance.clock,
                     client="cli")
    if result is None:
        emit({"list": None, "records": 0}, as_json,
             lambda d: click.echo("nothing is due for destruction: no list proposed"))
        return
    emit(result.to_dict(), as_json, _human_list)


@destruction.command("lists")
@click.option("--status", type=click.Choice(["proposed", "approved", "executing", "executed",
                                             "cancelled"]))
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=100, show_default=True)
@json_option
@handle_errors
def lists(status, limit, as_json) -> None:
    """Destruction lists, newest first, with their counts."""
    from archive.destruction import list_lists
    from archive.principal import Principal

    instance = _instance()
    rows = list_lists(instance.catalog, Principal.cli_operator(), status=status, limit=limit,
                      clock=instance.clock, client="cli")
    emit({"lists": [r.to_dict() for r in rows]}, as_json, lambda d: [
        click.echo(f"{r['id']}  {r['status']:9}  {r['proposed_at']}  {r['proposed_by']}  "
                   + ", ".join(f"{n} {s}" for s, n in sorted(r["counts"].items())))
        for r in d["lists"]])


@destruction.command("show")
@click.argument("list_id")
@optional_acting
@json_option
@handle_errors
def show(list_id, acting_as, totp_code, as_json) -> None:
    """One list with its items and decision. With --as, as that person may read it: the
    number of a record above their clearance is not shown."""
    from archive.destruction import get_list

    instance = _instance()
    principal = _who(instance, acting_as, totp_code)
    emit(get_list(instance.catalog, principal, list_id, clock=instance.clock,
                  client="cli").to_dict(), as_json, _human_list)


@destruction.command("remove")
@click.argument("list_id")
@click.argument("record_id")
@click.option("--note", required=True, help="Why the record is taken off the list.")
@acting_options
@json_option
@handle_errors
def remove(list_id, record_id, note, acting_as, totp_code, as_json) -> None:
    """Take a record off a proposed list (review); the editor may not approve the list."""
    from archive.destruction import remove_item

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    emit(remove_item(instance.catalog, principal, list_id, record_id, note=note,
                     clock=instance.clock, client="cli").to_dict(), as_json, _human_list)


@destruction.command("add")
@click.argument("list_id")
@click.argument("record_id")
@click.option("--note", required=True, help="Why the record is added.")
@acting_options
@json_option
@handle_errors
def add(list_id, record_id, note, acting_as, totp_code, as_json) -> None:
    """Add a due record to a proposed list (review); the editor may not approve it."""
    from archive.destruction import add_item

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    emit(add_item(instance.catalog, principal, list_id, record_id, note=note,
                  clock=instance.clock, client="cli").to_dict(), as_json, _human_list)


@destruction.command("approve")
@click.argument("list_id")
@click.option("--body", "approving_body", required=True,
              help="The approving body (cơ quan phê duyệt).")
@click.option("--decision", "decision_number", required=True, help="Decision number.")
@click.option("--decision-date", "decision_date", required=True, metavar="YYYY-MM-DD")
@click.option("--basis", "legal_basis", required=True, help="Legal basis (căn cứ).")
@acting_options
@json_option
@handle_errors
def approve(list_id, approving_body, decision_number, decision_date, legal_basis, acting_as,
            totp_code, as_json) -> None:
    """Approve a proposed list: an approver who neither proposed nor edited it."""
    from archive.destruction import approve as service

    instance = _instance()
    principal = acting_principal(instance, acting_as, totp_code)
    emit(service(instance.catalog, principal, list_id, approving_body=approving_body,
                 decision_number=decision_number, decision_date=decision_date,
                 legal_basis=legal_basis, clock=instance.clock, client="cli").to_dict(),
         as_json, _human_list)


@destruction.command("cancel")
@click.argument("list_id")
@click.option("--reason", required=True, help="Why the list is cancelled.")
@optional_acting
@json_option
@handle_errors
def cancel(list_id, reason, acting_as, totp_code, as_json) -> None:
    """Cancel a proposed or approved list; its records may be proposed again."""
    from archive.destruction import cancel as service

    instance = _instance()
    principal = _who(instance, acting_as, totp_code)
    emit(service(instance.catalog, principal, list_id, reason=reason, clock=instance.clock,
                 client="cli").to_dict(), as_json, _human_list)


@destruction.command("execute")
@click.argument("list_id")
@optional_acting
@json_option
@handle_errors
def execute(list_id, acting_as, totp_code, as_json) -> None:
    """Destroy every record of an approved list, everywhere (both stores, renditions,
    staging leftovers, data keys), then write the register. Exit 1 if some record could
    not be destroyed (skipped: sealed, held, extended; failed: Object Lock, store)."""
    from archive.destruction import get_list
    from preservation.destruction import execute as service

    instance = _instance()
    principal = _who(instance, acting_as, totp_code)
    total = get_list(instance.catalog, principal, list_id, clock=instance.clock,
                     client="cli").counts.get("listed", 0)
    with click.progressbar(length=total, label="destroying", file=sys.stderr) as bar:
        report = service(instance, principal, list_id, progress=bar.update, client="cli")

    def human(d):
        click.echo(f"destruction list {d['list_id']}: {d['status']}; {d['destroyed']} "
                   f"destroyed, {d['skipped']} skipped, {d['failed']} failed")
        for item in d["items"]:
            if item["status"] != "destroyed":
                click.echo(f"  {item['record_id']}: {item['status']}: {item['reason']}")

    emit(report.to_dict(), as_json, human)
    if not report.ok:
        sys.exit(1)


@destruction.command("register")
@click.option("--query", help="Text in the record id, number, summary, decision, body...")
@click.option("--since", metavar="YYYY-MM-DD", help="Destroyed on or after this day.")
@click.option("--until", metavar="YYYY-MM-DD", help="Destroyed on or before this day.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text",
              show_default=True)
@click.option("--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the export to FILE instead of stdout.")
@click.option("--limit", type=click.IntRange(min=1, max=1000), default=50, show_default=True,
              help="Entries shown in text format.")
@json_option
@handle_errors
def register(query, since, until, fmt, output, limit, as_json) -> None:
    """The permanent destruction register: search it, or export it (csv, json)."""
    from archive.destruction import register_entries, register_export
    from archive.principal import Principal

    instance = _instance()
    principal = Principal.cli_operator()
    if as_json and fmt == "text":
        fmt = "json"
    if fmt in ("csv", "json"):
        data = register_export(instance.catalog, principal, fmt, query=query, since=since,
                               until=until, clock=instance.clock, client="cli")
        if output:
            with open(output, "wb") as fh:
                fh.write(data)
            click.echo(f"{output}: register written ({fmt})", err=True)
        else:
            click.echo(data.decode("utf-8-sig"), nl=False)
        return
    page = register_entries(instance.catalog, principal, query=query, since=since,
                            until=until, limit=limit, clock=instance.clock, client="cli")
    for e in page.entries:
        s = e.tombstone
        click.echo(f"{e.destroyed_at.isoformat()}  {e.record_id}  {s.get('number_symbol')}  "
                   f"{s.get('doc_date')}  decision {e.decision_number} ({e.approving_body})  "
                   f"by {e.performed_by}")
    click.echo(f"{len(page.entries)} of {page.total} entries", err=True)


COMMANDS = [destruction]
