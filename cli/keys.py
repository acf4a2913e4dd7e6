"""`archive keys ...`: the key-encryption keys of classified content (R-CLASS-1).

Only key ids, dates and counts are ever printed, never key material.
"""

from __future__ import annotations

import sys

import click

from cli.context import EXIT_PROBLEM, emit, handle_errors, json_option


def _vault():
    from archive.keystore import KeyVault

    return KeyVault.from_settings(click.get_current_context().obj.settings)


@click.group()
def keys() -> None:
    """Key-encryption keys that wrap the data keys of encrypted (classified) files."""


@keys.command("init")
@json_option
@handle_errors
def init(as_json: bool) -> None:
    """Create the first key-encryption key if there is none (safe to re-run)."""
    vault = _vault()
    info, created = vault.init()
    data = {"created": created, "active": info.kek_id, "kek_dir": str(vault.kek_dir),
            "vault_dir": str(vault.vault_dir)}
    emit(data, as_json, lambda d: click.echo(
        f"{'created' if d['created'] else 'already present:'} key-encryption key "
        f"{d['active']} (active) in {d['kek_dir']}"))


@keys.command("rotate")
@json_option
@handle_errors
def rotate(as_json: bool) -> None:
    """Create a new key-encryption key, make it active and re-wrap every data key under
    it. The previous key stays until `archive keys retire` removes it. Exit 1 if some
    data keys could not be re-wrapped (listed)."""
    report = _vault().rotate()

    def human(d: dict) -> None:
        click.echo(f"new active key-encryption key {d['new_kek']} (previous: "
                   f"{d['previous_kek']}); re-wrapped {d['rewrapped']} data key(s)")
        for p in d["problems"]:
            click.echo(f"not re-wrapped: {p['dek_id']} ({p['kek_id']}): {p['message']}",
                       err=True)

    emit(report.to_dict(), as_json, human)
    if not report.ok:
        sys.exit(EXIT_PROBLEM)


@keys.command("list")
@json_option
@handle_errors
def list_keys(as_json: bool) -> None:
    """Key-encryption keys, oldest first: id, created, active, data keys each wraps.
    A key id without a creation date wraps data keys but its file is missing."""
    infos = [i.to_dict() for i in _vault().list_keks()]

    def human(rows: list[dict]) -> None:
        if not rows:
            click.echo("no key-encryption keys (run `archive keys init`)")
        for r in rows:
            mark = "*" if r["active"] else " "
            created = r["created"] or "MISSING"
            click.echo(f"{mark} {r['kek_id']}  {created:25}  {r['data_keys']} data key(s)")

    emit(infos, as_json, human)


@keys.command("retire")
@click.argument("kek_id")
@json_option
@handle_errors
def retire(kek_id: str, as_json: bool) -> None:
    """Delete a key-encryption key that is not active and wraps no data key (after a
    rotation). Refused (exit 3) while anything still needs it."""
    _vault().retire_kek(kek_id)
    emit({"retired": kek_id}, as_json, lambda d: click.echo(f"retired {d['retired']}"))


COMMANDS = [keys]
