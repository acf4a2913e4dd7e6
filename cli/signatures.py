"""`archive signatures ...`: check the signatures of a PDF without ingesting it (R-SIG-2).

Exit codes: 0 every signature valid; 1 the check found a problem (invalid, indeterminate,
unsigned, or a malformed/hostile PDF); 2 the file cannot be read or an option is wrong.
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime

import click

from cli.context import EXIT_OK, EXIT_PROBLEM, emit, handle_errors, json_option


class _Quiet(logging.Filter):
    """pyHanko logs tracebacks for failures it reports anyway (revoked signer, suspicious
    changes); the report says it in plain words, so they stay off stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


def _silence_pyhanko() -> None:
    for name in ("pyhanko", "pyhanko_certvalidator"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Quiet) for f in logger.filters):
            logger.addFilter(_Quiet())
            logger.addHandler(logging.NullHandler())


def _parse_at(value: str | None) -> datetime | None:
    if not value:
        return None
    from archive.certificates import parse_instant

    return parse_instant(value, "--at")


@click.group()
def signatures() -> None:
    """Validate the digital signatures of PDF documents (R-SIG-2)."""


@signatures.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--at", "at", metavar="ISO-DATETIME",
              help="Validate as at this moment (e.g. 2020-11-01T00:00Z) instead of now.")
@click.option("--trust-root", "trust_roots", multiple=True, metavar="PEM",
              type=click.Path(exists=True, dir_okay=False),
              help="A PEM file of trusted roots, added to signatures.trust_roots. Repeatable.")
@click.option("--offline", is_flag=True,
              help="Do not fetch OCSP/CRL: use only what the PDF carries.")
@click.option("--evidence", "with_evidence", is_flag=True,
              help="With --json: include the validation material (base64 DER).")
@json_option
@handle_errors
def check(file: str, at: str | None, trust_roots: tuple[str, ...], offline: bool,
          with_evidence: bool, as_json: bool) -> None:
    """Check every signature of FILE and print the report, without ingesting it."""
    from ingest.signatures import TrustConfig, Validator

    _silence_pyhanko()
    settings = click.get_current_context().obj.settings
    config = TrustConfig.from_settings(settings.signatures, trust_roots)
    moment = _parse_at(at)
    with Validator(config) as validator:
        report = validator.check(file, at=moment,
                                 allow_fetching=False if offline else None)
    emit(report.to_dict(include_evidence=with_evidence), as_json, _print_report)
    sys.exit(EXIT_OK if report.verdict == "valid" else EXIT_PROBLEM)


@signatures.command("revalidate")
@click.argument("record_id")
@json_option
@handle_errors
def revalidate(record_id: str, as_json: bool) -> None:
    """Re-check an archived record's signatures offline, from the validation material
    stored in its AIP, at the time of its archive timestamp (R-TS-1). Exit 0 valid,
    1 not valid."""
    from archive.principal import Principal
    from ingest.revalidation import revalidate_record

    _silence_pyhanko()
    instance = click.get_current_context().obj.instance
    report, context = revalidate_record(instance, Principal.cli_operator(), record_id)
    data = report.to_dict() | {"record_id": record_id, **context}
    emit(data, as_json, _print_report)
    sys.exit(EXIT_OK if report.ok else EXIT_PROBLEM)


@signatures.command("timestamps")
@click.argument("record_id")
@json_option
@handle_errors
def timestamps(record_id: str, as_json: bool) -> None:
    """Show RECORD_ID's chain of archive timestamps (RFC 3161) and check every link
    offline: each token over its input, each renewal holding the previous token, the
    first covering the AIP's manifest (R-TS-1). Exit 0 intact, 1 a broken link."""
    from preservation.timestamp_renewal import verify_chain

    _silence_pyhanko()
    instance = click.get_current_context().obj.instance
    report = verify_chain(instance, record_id, client="cli")

    def human(d: dict) -> None:
        click.echo(f"archive timestamps of {d['record_id']}: "
                   f"{'INTACT' if d['ok'] else 'BROKEN'}")
        for chain in d["chains"]:
            for n, link in enumerate(chain["links"]):
                mark = "ok" if link["ok"] else "BAD"
                click.echo(f"  {n}. [{mark}] {link['source']:<7} {link['gen_time']} "
                           f"{link['hash_algorithm']}  {link['key']}")
                click.echo(f"       TSA certificate expires "
                           f"{link['tsa_certificate_expires'] or '?'}; {link['tsa'] or ''}")
        for problem in d["problems"]:
            click.echo(f"  - {problem}")

    emit(report, as_json, human)
    sys.exit(EXIT_OK if report["ok"] else EXIT_PROBLEM)


def _print_report(d: dict) -> None:
    click.echo(f"verdict: {d['verdict'].upper()}  ({d['source']}, {d['size']} bytes, "
               f"sha256 {d['sha256'][:16]}…)")
    for p in d["problems"]:
        click.echo(f"  - {p['message']}\n    {p['message_vi']}")
    for s in d["signatures"] + d["document_timestamps"]:
        click.echo("")
        kind = "document timestamp" if s["kind"] == "document_timestamp" else "signature"
        click.echo(f"{kind} {s['index'] + 1} '{s['field_name']}': {s['verdict'].upper()}")
        signer = s["signer"] or {}
        if signer:
            click.echo(f"  signer:        {signer['subject']}")
            click.echo(f"                 CN={signer['common_name']} O={signer['organisation']} "
                       f"serialNumber={signer['serial_number']}")
            click.echo(f"  issuer:        {signer['issuer']} (serial {signer['serial']})")
            click.echo(f"  fingerprint:   sha256 {signer['fingerprint']}")
            click.echo(f"  valid:         {signer['not_before']} .. {signer['not_after']}")
        agent = s["bound_agent"]
        click.echo(f"  bound agent:   {agent['identifier'] + ' ' + agent['name'] if agent else '-'}"
                   f"  role: {s['role'] or '-'}")
        click.echo(f"  signing time:  claimed {s['signing_time_claimed'] or '-'}, proven "
                   f"{s['signing_time_proven'] or '-'}")
        ts = s["timestamp"]
        if ts["present"]:
            click.echo(f"  timestamp:     {ts['time']} by {ts['tsa']} "
                       f"({'valid' if ts['valid'] else 'INVALID'}, "
                       f"{'trusted' if ts['trusted'] else 'untrusted'})")
        else:
            click.echo("  timestamp:     none")
        click.echo(f"  integrity:     intact={s['intact']} valid={s['valid']} "
                   f"coverage={s['coverage']}")
        click.echo(f"  changes after: {s['modification_level']} "
                   f"({'allowed' if s['modification_allowed'] else 'NOT allowed'})")
        trust = "chains to a trusted root" if s["trusted"] else "NOT trusted"
        click.echo(f"  trust:         {trust}"
                   + (f" ({' <- '.join(reversed(s['chain']))})" if s["chain"] else ""))
        rev = s["revocation"]
        click.echo(f"  revocation:    {rev['status']}"
                   + (f" on {rev['revoked_at']}" if rev["revoked_at"] else "")
                   + (f" (from {rev['source'].upper()})" if rev["source"] else ""))
        if s["validity_at_signing"]:
            click.echo(f"  cert at time:  {s['validity_at_signing']}")
        ku = s["key_usage"]
        if ku:
            click.echo(f"  key usage:     non-repudiation={ku['non_repudiation']} "
                       f"digital-signature={ku['digital_signature']}")
        cr = s["crypto"]
        if cr:
            click.echo(f"  crypto:        {cr['digest']} / {cr['key_algorithm']} "
                       f"{cr['key_size']} bits{' (WEAK)' if cr['weak'] else ''}")
        for p in s["problems"]:
            click.echo(f"  - [{p['severity']}] {p['message']}\n    {p['message_vi']}")


COMMANDS = [signatures]
