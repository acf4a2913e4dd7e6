"""Consistent backups of the catalog into the backup store (R-BACKUP-1).

``backup_catalog`` takes one consistent snapshot of the catalog:

- SQLite: the online backup API (``sqlite3.Connection.backup``) into a temporary file,
  checked with ``PRAGMA integrity_check``;
- PostgreSQL: ``pg_dump --format=custom`` run on a snapshot exported by a REPEATABLE
  READ transaction (``pg_export_snapshot``), in which the audit head and the schema
  revision are read, so the manifest describes exactly what the dump holds. The password
  goes to pg_dump through ``PGPASSWORD``, never on its command line.

Before the snapshot a ``backup.catalog`` audit entry (outcome ``started``) is committed:
the backup holds its own record, so a restore from it loses nothing that happened
before it. The dump is stored put-if-absent under ``catalog/<UTC time>-<seq>.sqlite3``
(or ``.pgdump``; ``seq``, 12 digits, is that entry's) beside ``catalog/<same>.json``, a manifest
(format, database, time, size, SHA-256, SHA-512, audit head seq and hash, Alembic
revision) signed with the archive's Ed25519 system key (the detached-signature document
of ``archive/seal_manifest.py``). Both are re-read and verified; only then are backups
beyond ``backup.keep_catalog_backups`` deleted (audited as ``backup.prune``). A failure
after the start is recorded as a second ``backup.catalog`` entry, outcome ``failed``.

The audit checkpoints (``audit/checkpoints/``) are copied by the objects backup
(``preservation/backup.py``), which runs before the catalog backup in ``archive backup``
and in the scheduled job. The keys are never put in the backup store (docs/recovery.md).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from archive import audit, policy
from archive.audit import canonical_json, format_time
from archive.clock import Clock
from archive.digests import hash_stream
from archive.errors import ArchiveError, ConfigError, StorageError
from archive.fixity import verify_stored_object
from archive.keys import PUBLIC_KEY_FILE, load_public_key_pem, load_system_key
from archive.models import AuditHead
from archive.seal_manifest import check_signature, sign

FORMAT = "kho-luu-tru-so/catalog-backup/1"
PREFIX = "catalog/"
EXTENSIONS = {"sqlite": "sqlite3", "postgresql": "pgdump"}
_MANIFEST_NAME = re.compile(r"^catalog/(\d{8}T\d{6}Z-\d+)\.json$")
_MAX_MANIFEST_BYTES = 64 * 1024


class BackupsDisabled(ConfigError):
    """backup.backend is "none": there is no backup store to write to."""

    def __init__(self):
        super().__init__('backups are off (backup.backend = "none"): set backup.backend to '
                         '"local" or "s3" in the configuration (docs/recovery.md)')


class CatalogBackupFailed(ArchiveError):
    """The snapshot could not be taken, stored or verified; nothing usable was kept."""

    exit_code = 1


@dataclass
class CatalogBackupReport:
    name: str
    key: str
    manifest_key: str
    store: str
    database: str  # sqlite | postgresql
    format: str  # sqlite3 | pgdump
    created_at: str
    size: int
    sha256: str
    sha512: str
    audit_seq: int
    audit_hash: str
    alembic_revision: str
    seconds: float = 0.0
    pruned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ---- the manifest -------------------------------------------------------------------


def dump_key(name: str, database: str) -> str:
    return f"{PREFIX}{name}.{EXTENSIONS[database]}"


def manifest_key(name: str) -> str:
    return f"{PREFIX}{name}.json"


def signed_manifest(payload: dict, key) -> bytes:
    """The manifest document: the payload plus its detached Ed25519 signature."""
    signature = json.loads(sign(canonical_json(payload), key))
    doc = dict(payload, signature=signature)
    return (json.dumps(doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def read_manifest(data: bytes, public) -> tuple[dict | None, str | None]:
    """(payload, None) when ``data`` is a manifest signed by ``public``; else (doc, why)."""
    try:
        doc = json.loads(data)
        signature = doc.pop("signature")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, "the manifest is not a readable catalog backup manifest"
    if doc.get("format") != FORMAT:
        return doc, f"unknown manifest format {doc.get('format')!r}"
    why = check_signature(canonical_json(doc), canonical_json(signature), public)
    if why is not None:
        return doc, f"manifest signature invalid: {why}"
    for name in ("name", "object", "database", "size", "sha256", "sha512", "audit",
                 "alembic_revision"):
        if name not in doc:
            return doc, f"manifest lacks {name!r}"
    return doc, None


def public_key(settings):
    """The system key's public half from ``<data_dir>/keys`` (restored from escrow)."""
    folder = settings.keys_dir
    path = folder / PUBLIC_KEY_FILE
    if path.exists():
        return load_public_key_pem(path.read_bytes())
    return load_system_key(folder).public_key()


def fetch_manifest(store, object_key: str, public) -> tuple[dict | None, str | None]:
    try:
        with store.open(object_key) as stream:
            data = stream.read(_MAX_MANIFEST_BYTES + 1)
    except StorageError as exc:
        return None, f"cannot be read: {exc.message}"
    if len(data) > _MAX_MANIFEST_BYTES:
        return None, "is too large to be a catalog backup manifest"
    return read_manifest(data, public)


def list_backups(store, public) -> list[dict]:
    """Every catalog backup in ``store``, oldest first, with its signature checked."""
    found = []
    for info in store.list(PREFIX):
        match = _MANIFEST_NAME.match(info.key)
        if not match:
            continue
        name = match.group(1)
        doc, why = fetch_manifest(store, info.key, public)
        entry = {"name": name, "manifest_key": info.key, "signature_ok": why is None}
        if doc:
            entry.update({k: doc.get(k) for k in ("created_at", "database", "size",
                                                  "object", "alembic_revision")})
            entry["audit_seq"] = (doc.get("audit") or {}).get("seq")
        if why is None:
            try:
                stored = store.stat(doc["object"])
                if stored.size != doc["size"]:
                    why = f"dump is {stored.size} bytes, the manifest says {doc['size']}"
            except StorageError as exc:
                why = f"dump {doc['object']}: {exc.message}"
        if why:
            entry["signature_ok"] = entry["signature_ok"] and "signature" not in why
            entry["problem"] = why
        entry["ok"] = why is None
        found.append(entry)
    return sorted(found, key=lambda e: e["name"])


# ---- taking the snapshot ------------------------------------------------------------


def backup_catalog(instance, principal, *, clock: Clock | None = None) -> CatalogBackupReport:
    """Back up the catalog into ``instance.backup_store``; see the module docstring."""
    store = instance.backup_store
    if store is None:
        raise BackupsDisabled()
    policy.require(principal, policy.CONFIG_MANAGE)
    clock = clock or instance.clock
    settings = instance.settings
    key = load_system_key(settings.keys_dir)  # fail before anything is recorded
    catalog = instance.catalog
    database = catalog.engine.dialect.name
    if database not in EXTENSIONS:
        raise ConfigError(f"cannot back up a {database} catalog")
    started = time.monotonic()
    now = clock.now()
    with catalog.unit_of_work() as session:
        # Lock the head first, so the entry gets exactly the seq the name carries.
        head = session.execute(select(AuditHead).where(AuditHead.id == audit.HEAD_ID)
                               .with_for_update()).scalar_one()
        name = f"{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{head.seq + 1:012d}"
        audit.append(session, principal, "backup.catalog", f"backup:{name}",
                     outcome="started", clock=clock,
                     detail={"store": store.name, "database": database,
                             "object": dump_key(name, database)})
    try:
        return _backup(instance, principal, clock, store, key, database, name, now,
                       started)
    except ArchiveError as exc:
        _record_failure(catalog, principal, clock, name, exc.message)
        raise
    except Exception as exc:
        _record_failure(catalog, principal, clock, name, f"{type(exc).__name__}: {exc}")
        raise


def _record_failure(catalog, principal, clock, name: str, reason: str) -> None:
    with catalog.unit_of_work() as session:
        audit.append(session, principal, "backup.catalog", f"backup:{name}",
                     outcome="failed", clock=clock, detail={"reason": reason[:1000]})


def _backup(instance, principal, clock, store, key, database, name, now, started
            ) -> CatalogBackupReport:
    settings = instance.settings
    with tempfile.TemporaryDirectory(prefix="archive-catalog-backup-") as tmp:
        path = Path(tmp) / f"catalog.{EXTENSIONS[database]}"
        if database == "sqlite":
            head, revision = _sqlite_snapshot(instance.catalog.url, path)
        else:
            head, revision = _pg_snapshot(instance.catalog, settings.backup.pg_dump, path)
        size = path.stat().st_size
        with path.open("rb") as fh:
            _, digests = hash_stream(fh, ("sha256", "sha512"))
        object_key = dump_key(name, database)
        payload = {"format": FORMAT, "name": name, "object": object_key,
                   "database": database, "dump_format": EXTENSIONS[database],
                   "created_at": format_time(now), "size": size,
                   "sha256": digests["sha256"], "sha512": digests["sha512"],
                   "audit": {"seq": head[0], "entry_hash": head[1]},
                   "alembic_revision": revision, "primary_store": instance.store.name}
        document = signed_manifest(payload, key)
        with path.open("rb") as fh:
            put = store.put(object_key, fh, size=size, sha256=digests["sha256"])
    if put.digests.get("sha512") != digests["sha512"] or put.size != size:
        raise CatalogBackupFailed(f"{object_key}: the backup store received different bytes")
    mkey = manifest_key(name)
    store.put(mkey, io.BytesIO(document), size=len(document))
    # Verify what the store now holds before anything older is removed.
    verify_stored_object(store, object_key, size, digests)
    doc, why = fetch_manifest(store, mkey, key.public_key())
    if why is not None or doc.get("sha512") != digests["sha512"]:
        raise CatalogBackupFailed(f"{mkey} does not verify after storing: {why}")
    report = CatalogBackupReport(
        name=name, key=object_key, manifest_key=mkey, store=store.name, database=database,
        format=EXTENSIONS[database], created_at=payload["created_at"], size=size,
        sha256=digests["sha256"], sha512=digests["sha512"], audit_seq=head[0],
        audit_hash=head[1], alembic_revision=revision)
    report.pruned, report.warnings = _prune(store, key.public_key(),
                                            settings.backup.keep_catalog_backups, name)
    if report.pruned:
        with instance.catalog.unit_of_work() as session:
            audit.append(session, principal, "backup.prune", f"store:{store.name}",
                         clock=clock, detail={"deleted": report.pruned,
                                              "kept": settings.backup.keep_catalog_backups})
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _sqlite_snapshot(url: str, dest: Path) -> tuple[tuple[int, str], str]:
    source_path = make_url(url).database
    source = sqlite3.connect(source_path, timeout=30)
    target = sqlite3.connect(dest)
    try:
        source.backup(target)
        # One self-contained file (no -wal beside it); the engine turns WAL on again.
        target.execute("PRAGMA journal_mode=DELETE")
        check = target.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise CatalogBackupFailed(f"the SQLite snapshot fails its integrity check: {check}")
        head = target.execute("SELECT seq, entry_hash FROM audit_head WHERE id = 1").fetchone()
        revision = target.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    except sqlite3.Error as exc:
        raise CatalogBackupFailed(f"SQLite online backup failed: {exc}") from exc
    finally:
        target.close()
        source.close()
    return (int(head[0]), str(head[1])), str(revision)


def libpq_args(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and the environment carrying the password."""
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    uri = parsed.set(drivername="postgresql", password=None).render_as_string(
        hide_password=False)
    return uri, env


def run_program(cmd: list[str], env: dict[str, str], what: str) -> None:
    """Run a PostgreSQL client program; raise CatalogBackupFailed with its stderr."""
    if shutil.which(cmd[0]) is None:
        raise CatalogBackupFailed(f"{what}: program {cmd[0]!r} not found (set backup."
                                  f"{what})")
    try:
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                                timeout=24 * 3600)
    except OSError as exc:
        raise CatalogBackupFailed(f"{what} could not run: {exc}") from exc
    if result.returncode != 0:
        raise CatalogBackupFailed(f"{what} failed (exit {result.returncode}): "
                                  f"{result.stderr.strip()[-1000:]}")


def _pg_snapshot(catalog, program: str, dest: Path) -> tuple[tuple[int, str], str]:
    uri, env = libpq_args(catalog.url)
    engine = catalog.engine.execution_options(isolation_level="REPEATABLE READ")
    with engine.connect() as conn, conn.begin():
        snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        head = conn.execute(text("SELECT seq, entry_hash FROM audit_head WHERE id = 1")
                            ).one()
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        # The exporting transaction stays open while pg_dump reads its snapshot.
        run_program([program, "--format=custom", f"--snapshot={snapshot}",
                     f"--file={dest}", f"--dbname={uri}"], env, "pg_dump")
    return (int(head.seq), str(head.entry_hash)), str(revision)


def _prune(store, public, keep: int, newest: str) -> tuple[list[str], list[str]]:
    """Delete the backups older than the newest ``keep`` (the new one is verified)."""
    if keep < 1:
        return [], []
    backups = [b for b in list_backups(store, public) if b["name"] <= newest]
    good = [b for b in backups if b["ok"]]
    if len(good) <= keep:
        return [], []
    cutoff = good[-keep]["name"]  # the oldest good backup that is kept
    deleted, warnings = [], []
    for b in backups:
        if b["name"] >= cutoff:
            continue
        # Only the names this module writes, never what a manifest claims.
        try:
            for database in EXTENSIONS:
                if store.exists(dump_key(b["name"], database)):
                    store.delete(dump_key(b["name"], database))
            store.delete(manifest_key(b["name"]))  # the manifest last
            deleted.append(b["name"])
        except StorageError as exc:
            warnings.append(f"old catalog backup {b['name']} not deleted: {exc.message}")
    return deleted, warnings
