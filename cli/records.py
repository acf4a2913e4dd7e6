"""`archive records list|show|history|get`: read the catalog (every read is audited)."""

from __future__ import annotations

import contextlib
import os
import sys
from datetime import date
from pathlib import Path

import click

from cli.context import emit, handle_errors, json_option


def _instance():
    return click.get_current_context().obj.instance


@click.group()
def records() -> None:
    """List, show and retrieve archived records."""


@records.command("list")
@click.option("--text", "-q", help="Words in the summary (trích yếu) or number/symbol.")
@click.option("--type", "doc_type", help="Document type code.")
@click.option("--org", "issuing_org", help="Issuing organisation identifier.")
@click.option("--status", type=click.Choice(["active", "revoked", "destroyed"]))
@click.option("--from", "date_from", type=click.DateTime(["%Y-%m-%d"]), help="Dated on/after.")
@click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]), help="Dated on/before.")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@json_option
@handle_errors
def list_(text, doc_type, issuing_org, status, date_from, date_to, limit, offset,
          as_json) -> None:
    """List records, newest document date first."""
    from archive.principal import Principal
    from archive.records import RecordFilter, list_records, record_to_dict

    flt = RecordFilter(text=text, doc_type=doc_type, issuing_org=issuing_org, status=status,
                       date_from=_d(date_from), date_to=_d(date_to), limit=limit,
                       offset=offset)
    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        total, rows = list_records(session, Principal.cli_operator(), flt)
        data = {"total": total, "offset": offset, "records": [record_to_dict(r) for r in rows]}

    def human(d):
        for r in d["records"]:
            click.echo(f"{r['id']}  {r['date']}  {r['number_symbol']:<16} {r['status']:<8} "
                       f"{r['summary'][:70]}")
        click.echo(f"({len(d['records'])} of {d['total']})")

    emit(data, as_json, human)


@records.command("show")
@click.argument("record_id")
@json_option
@handle_errors
def show(record_id: str, as_json: bool) -> None:
    """Show a record's metadata, stored versions and files with digests."""
    from archive.principal import Principal
    from archive.records import record_to_dict, show_record

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        data = record_to_dict(show_record(session, Principal.cli_operator(), record_id),
                              detail=True)

    def human(d):
        for key in ("id", "number_symbol", "doc_type", "date", "issuing_org",
                    "issuing_org_name", "summary", "signer", "classification", "status",
                    "retention_rule", "retention_until", "fonds", "file_ref", "page_count",
                    "language", "fingerprint_sha256", "created_at", "created_by"):
            click.echo(f"{key:>18}: {d.get(key)}")
        click.echo(f"{'format':>18}: {d['format']['puid']} {d['format']['name']}"
                   + (f" PDF/A-{d['format']['pdfa']}" if d["format"]["pdfa"] else ""))
        for v in d["versions"]:
            click.echo(f"  version {v['version']}: {v['storage_key']} ({v['size']} bytes, "
                       f"last fixity {v['last_fixity_outcome']} at {v['last_fixity_at']})")
            for f in v["files"]:
                click.echo(f"    {f['role']:<8} {f['path']} {f['size']} sha256:"
                           f"{f['digests'].get('sha256', '')[:16]}…")

    emit(data, as_json, human)


@records.command("history")
@click.argument("record_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "premis"]), default=None,
              help="text (default), json (same as --json) or premis (PREMIS 3.0 XML).")
@json_option
@handle_errors
def history(record_id: str, fmt: str | None, as_json: bool) -> None:
    """The record's full history, oldest first (R-HIST-1): PREMIS events (ingest,
    validation, amendments, revocations, seals, renditions, fixity), links, the draft
    it was prepared as, and the accesses from the audit log."""
    from archive.history import full_history, to_json, to_premis
    from archive.principal import Principal

    fmt = fmt or ("json" if as_json else "text")
    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        found = full_history(session, Principal.cli_operator(), record_id, fmt=fmt,
                             clock=instance.clock)
        if fmt == "premis":
            click.echo(to_premis(found).decode("utf-8"), nl=False)
            return
        data = {"record_id": record_id, **to_json(found)}

    def human(d):
        for e in d["events"]:
            click.echo(f"{e['occurred_at']}  {e['type']:<28} {e['outcome']:<8} {e['agent']}: "
                       f"{e['detail']}")
        for link in d["links"]:
            other = link["record_id"] if link["visible"] else "a record you may not see"
            click.echo(f"link: {link['kind']} {link['direction']} {other}"
                       + (f" ({link['reason']})" if link["reason"] else ""))
        for a in d.get("accesses", []):
            click.echo(f"{a['occurred_at']}  access {a['action']:<21} {a['outcome']:<8} "
                       f"{a['actor']} {a['client']}")

    emit(data, fmt == "json", human)


@records.command("get")
@click.argument("record_id")
@click.option("--output", "-o", type=click.Path(path_type=Path), required=True,
              help="Where to write the original file ('-' for standard output).")
@handle_errors
def get(record_id: str, output: Path) -> None:
    """Retrieve the original file, verifying its digests while streaming (R-FIX-1).

    On a mismatch the partial output is deleted and the command exits 1.
    """
    from archive.errors import InputError, IntegrityError
    from archive.keystore import KeyVault
    from archive.principal import Principal
    from archive.records import open_original

    instance = _instance()
    to_stdout = str(output) == "-"
    if not to_stdout and output.exists():
        raise InputError(f"{output} already exists; not overwriting it")
    with instance.catalog.unit_of_work() as session:
        original, reader = open_original(session, instance.store, Principal.cli_operator(),
                                          record_id, vault=KeyVault.from_settings(
                                              instance.settings))
    tmp = None if to_stdout else output.with_name(f".{output.name}.partial")
    try:
        with reader, (contextlib.nullcontext(sys.stdout.buffer) if to_stdout
                      else open(tmp, "xb")) as sink:
            while chunk := reader.read(1024 * 1024):
                sink.write(chunk)
        if tmp is not None:
            os.replace(tmp, output)
    except IntegrityError:
        if tmp is not None and tmp.exists():
            tmp.unlink()
        raise
    if not to_stdout:
        what = "decrypted, tag and digests verified" if original.encryption \
            else "digests verified"
        click.echo(f"{original.original_name or original.path} -> {output} ({what})",
                   err=True)


def _d(value) -> date | None:
    return value.date() if value else None


COMMANDS = [records]
