"""`archive init`, `archive serve`, `archive config show`, `archive demo seed`,
`archive demo pki serve`."""

from __future__ import annotations

import dataclasses
import os

import click

from cli.context import emit, handle_errors, json_option


def _settings():
    return click.get_current_context().obj.settings


@click.command()
@click.option("--if-needed", is_flag=True,
              help="Do nothing (quietly) when the archive is already initialised.")
@click.option("--create-bucket", is_flag=True,
              help="S3 only: create the bucket when it does not exist.")
@click.option("--object-lock", is_flag=True,
              help="With --create-bucket: create it with S3 Object Lock (WORM) enabled.")
@json_option
@handle_errors
def init(if_needed: bool, create_bucket: bool, object_lock: bool, as_json: bool) -> None:
    """Initialise the archive: data folder, system signing key, catalog schema, store.

    Safe to run again: an existing key is kept, the catalog is migrated to the
    current schema, nothing stored is touched.
    """
    from archive import audit, db
    from archive.errors import NotInitialised
    from archive.keys import generate_system_key, key_id, load_system_key
    from archive.keystore import KeyVault
    from archive.principal import Principal
    from archive.storage import open_store

    settings = _settings()
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)  # keys and the catalog live here
    before = db.current_revision(settings.database_url)
    try:
        load_system_key(settings.keys_dir)
        have_key = True
    except NotInitialised:
        have_key = False
    vault = KeyVault.from_settings(settings)
    if if_needed and have_key and before == db.head_revision() and vault.list_keks():
        emit({"initialised": True, "changed": []}, as_json, lambda _: None)
        return
    created = []
    if not have_key:
        generate_system_key(settings.keys_dir)
        created.append("system signing key")
    _, kek_created = vault.init()  # R-CLASS-1 keys, held apart from catalog and store
    if kek_created:
        created.append("key-encryption key")
    db.upgrade(settings.database_url)
    if before != db.head_revision():
        created.append(f"catalog schema {before or 'empty'} -> {db.head_revision()}")

    store = open_store(settings)
    if settings.storage.backend == "local":
        settings.local_store_path.mkdir(parents=True, exist_ok=True)
    elif create_bucket:
        from archive.errors import StoreUnavailable

        try:
            store.check()
        except StoreUnavailable:
            store.create_bucket(object_lock=object_lock)
            created.append(f"bucket {settings.storage.s3_bucket}")
    store.check()
    if settings.backup.backend == "local" and not settings.backup_local_path.is_dir():
        settings.backup_local_path.mkdir(parents=True)  # R-BACKUP-1: the backup folder
        created.append(f"backup folder {settings.backup_local_path}")

    instance = click.get_current_context().obj.instance
    key = load_system_key(settings.keys_dir)
    with instance.catalog.unit_of_work() as session:
        audit.append(session, Principal.cli_operator(), "archive.init", f"store:{store.name}",
                     detail={"changed": created, "key_id": key_id(key.public_key())})
    result = {"initialised": True, "data_dir": str(data_dir),
              "database": db.safe_url(settings.database_url), "store": store.name,
              "system_key_id": key_id(key.public_key()), "changed": created}

    def human(r):
        click.echo(f"archive initialised in {r['data_dir']}")
        click.echo(f"  catalog: {r['database']}")
        click.echo(f"  store:   {r['store']}")
        click.echo(f"  system signing key id: {r['system_key_id']}")
        for item in r["changed"]:
            click.echo(f"  created: {item}")

    emit(result, as_json, human)


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: server.host).")
@click.option("--port", type=int, default=None, help="Port (default: server.port).")
@click.option("--threads", type=click.IntRange(1, 64), default=8, show_default=True)
@handle_errors
def serve(host: str | None, port: int | None, threads: int) -> None:
    """Serve the web application (waitress). Use gunicorn in production (docs/operations.md)."""
    import waitress

    from access.app import create_app
    from preservation.scheduler import start_background_scheduler

    settings = _settings()
    instance = click.get_current_context().obj.instance
    instance.catalog  # noqa: B018 - fail now, clearly, if the catalog is not initialised
    app = create_app(instance)
    host = host or settings.server.host
    port = port or settings.server.port
    scheduler = start_background_scheduler(instance)
    click.echo(f"{settings.archive.system_name}: serving on http://{host}:{port} "
               f"(catalog {instance.catalog.url.split('://')[0]}, store {instance.store.name})")
    try:
        waitress.serve(app, host=host, port=port, threads=threads, ident="archive",
                       # streamed downloads stay in memory up to 4 MiB, not a temp file
                       outbuf_overflow=4 * 1024 * 1024)
    finally:
        if scheduler is not None:
            scheduler.shutdown(wait=False)


@click.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@json_option
@handle_errors
def config_show(as_json: bool) -> None:
    """Print the effective settings (secrets masked) and where they came from."""
    settings = _settings()
    data = dataclasses.asdict(settings)
    for key in ("s3_secret_key",):
        if data["storage"].get(key):
            data["storage"][key] = "***"
    data["derived"] = {"data_dir": str(settings.data_dir),
                       "database_url": _masked(settings.database_url),
                       "local_store_path": str(settings.local_store_path)}
    emit(data, as_json, lambda d: click.echo(_toml_like(d)))


def _masked(url: str) -> str:
    from archive.db import safe_url

    return safe_url(url)


def _toml_like(data: dict) -> str:
    lines = []
    for section, values in data.items():
        if isinstance(values, dict):
            lines.append(f"[{section}]")
            for k, v in values.items():
                lines.append(f"{k} = {v!r}")
            lines.append("")
        else:
            lines.append(f"{section} = {values!r}")
    return "\n".join(lines)


@click.group()
def demo() -> None:
    """Demo data for trying the archive (everything it creates is marked DEMO)."""


@demo.command("seed")
@click.option("--if-empty", is_flag=True, help="Only when the archive holds no records yet.")
@click.option("--pki-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Loopback port of the DEMO PKI's OCSP/CRL/TSA when it is first generated "
                   "(0: any free port).")
@json_option
@handle_errors
def demo_seed(if_empty: bool, pki_port: int, as_json: bool) -> None:
    """Create the DEMO archive: a DEMO PKI, two DEMO agencies and their signers, and
    signed sample PDFs ingested through the real ingest path with signature enforcement
    on. Writes <data_dir>/demo.toml, the settings to use it with (docs/demo.md)."""
    from sqlalchemy import func, select

    from archive.models import Record
    from ingest.demo_seed import seed_demo

    instance = click.get_current_context().obj.instance
    with instance.catalog.unit_of_work(snapshot=True) as session:
        count = session.scalar(select(func.count()).select_from(Record))
    if if_empty and count:
        logins = _demo_logins(instance.settings)

        def already(_):
            click.echo(f"demo: archive already holds {count} records; not seeding")
            if logins:
                _print_logins(logins, qr=False)

        emit({"seeded": 0, "reason": "archive already holds records", "users": logins},
             as_json, already)
        return
    summary = seed_demo(instance, pki_port=pki_port)
    warning = instance.checkpoint_after_command()
    if warning:
        click.echo(f"warning: {warning}", err=True)

    def human(d):
        click.echo(f"demo: ingested {d['seeded']} signed DEMO documents "
                   f"({len(d['records']) - d['seeded']} already archived)")
        click.echo(f"  DEMO PKI: {d['pki']['folder']} (served only while seeding)")
        click.echo(f"  settings: {d['config']} (use ARCHIVE_CONFIG={d['config']})")
        _print_logins(d.get("users", []), qr=True)

    emit(summary, as_json, human)


def _demo_logins(settings) -> list[dict]:
    from archive.errors import InputError
    from ingest.demo_users import DEMO_USERS, load_logins

    try:
        logins = load_logins(settings)
    except InputError:
        return []
    return [logins[u[0]] for u in DEMO_USERS if u[0] in logins]


def _print_logins(logins: list[dict], *, qr: bool) -> None:
    """How to log in to the DEMO archive: users, passwords, TOTP secrets (R-AUTH-1)."""
    from cli.users import terminal_qr

    if not logins:
        return
    host, port = _settings().server.host, _settings().server.port
    click.echo(f"\nDEMO logins at http://{host}:{port}/login (password, then the 6-digit "
               "code of an authenticator app; DEMO secrets, never for real use):")
    for login in logins:
        click.echo(f"  {login['username']:<10} {login['role']:<14} clearance "
                   f"{login['clearance']:<8} password {login['password']}  "
                   f"TOTP secret {login['totp_secret']}")
    first = logins[0]
    if qr:
        click.echo(f"\nQR code of {first['username']}'s TOTP secret (scan it with an "
                   f"authenticator app):\n  {first['totp_uri']}")
        click.echo(terminal_qr(first["totp_uri"]))
    click.echo("Without a phone: `archive demo code USERNAME` prints a DEMO user's current "
               "code. Logins are kept in <data_dir>/demo-logins.json.")


@demo.command("code")
@click.argument("username")
@json_option
@handle_errors
def demo_code(username: str, as_json: bool) -> None:
    """Print the current one-time code of a DEMO user (DEMO archives only)."""
    from ingest.demo_users import current_code

    code = current_code(_settings(), username)
    emit({"username": username, "code": code}, as_json, lambda d: click.echo(d["code"]))


@demo.group("pki")
def demo_pki() -> None:
    """The DEMO PKI that `archive demo seed` generated (never for real use)."""


@demo_pki.command("serve")
@handle_errors
def demo_pki_serve() -> None:
    """Serve the DEMO PKI's OCSP, CRLs and TSA on the loopback address its certificates
    name, until Ctrl-C. Needed only to ingest or check new signed documents in the DEMO
    archive; stored records re-validate offline."""
    from ingest.demo_pki.authority import PKI
    from ingest.demo_pki.server import serve_existing
    from ingest.demo_seed import PKI_DIR

    pki = PKI.open(_settings().data_dir / PKI_DIR)
    server = serve_existing(pki, access_log=True)
    click.echo(f"DEMO PKI on {pki.url_prefix}: TSA {pki.tsa_url}, OCSP {pki.ocsp_url}; "
               "Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")


COMMANDS = [init, serve, config, demo]
