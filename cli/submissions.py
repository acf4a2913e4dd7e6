"""`archive submissions list|show`: refused submissions and their return-to-sender
reports (R-SIG-2). Their notifications: `archive notifications` (cli/notifications.py)."""

from __future__ import annotations

import click

from cli.context import emit, handle_errors, json_option


def _instance():
    return click.get_current_context().obj.instance


@click.group()
def submissions() -> None:
    """Submissions that were refused, with their return-to-sender reports."""


@submissions.command("list")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@json_option
@handle_errors
def list_(limit: int, as_json: bool) -> None:
    """Refused submissions, newest first."""
    from archive.principal import Principal
    from archive.submissions import list_submissions, submission_to_dict

    with _instance().catalog.unit_of_work() as session:
        rows = [submission_to_dict(s) for s in
                list_submissions(session, Principal.cli_operator(), limit=limit)]
    emit(rows, as_json, lambda rs: [click.echo(
        f"{r['id']}  {r['received_at'][:19]}  {r['source_name']}: {r['reason']}") for r in rs])


@submissions.command("show")
@click.argument("submission_id")
@json_option
@handle_errors
def show(submission_id: str, as_json: bool) -> None:
    """The full return-to-sender report of one refused submission."""
    from archive.principal import Principal
    from archive.submissions import get_submission, submission_to_dict

    with _instance().catalog.unit_of_work() as session:
        data = submission_to_dict(get_submission(session, Principal.cli_operator(),
                                                 submission_id))

    def human(d):
        for key in ("id", "received_at", "source_name", "sha256", "sender_org", "clerk",
                    "reason", "report_key"):
            click.echo(f"{key:>12}: {d[key]}")
        for problem in (d["report"] or {}).get("problems", []):
            click.echo(f"  - {problem.get('message', problem)}")

    emit(data, as_json, human)


COMMANDS = [submissions]
