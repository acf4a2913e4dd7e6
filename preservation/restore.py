"""Rebuild an empty archive from its backup store (R-BACKUP-1, R-INCIDENT-1).

``restore`` never writes over anything: the configured catalog must be empty (no
tables: a missing SQLite file or a freshly created PostgreSQL database) and the
primary store must hold no object, else it refuses (exit 3) before reading the backup.
The system key's public half must be in ``<data_dir>/keys`` (restored from the key
escrow first, docs/recovery.md). Then, in order:

1. the chosen catalog backup (the newest whose manifest verifies, or ``name``): its
   manifest's Ed25519 signature, then the dump's size, SHA-256 and SHA-512 while it is
   downloaded; any failure stops here with nothing restored;
2. the catalog: the SQLite file linked into place, or ``pg_restore`` into the empty
   database in a single transaction; the restored audit head must be the one the
   manifest signed; an older schema is migrated to the current one;
3. every object the restored catalog references (AIP versions, renditions, seal
   manifests and signatures, refusal reports, renewal timestamps, staged draft files,
   every backed-up copy not destroyed) plus the audit checkpoints the restored chain
   covers, copied from the backup store to the primary store; each copy is checked
   against the catalog's digests (and those of the backup copy rows) as it is written.
   Objects of destroyed records are never brought back. Checkpoints newer than the
   backup prove how many audit entries were written after it (what was lost): they are
   reported and moved aside, verified, to ``audit/superseded/<backup>/`` in the backup
   store, where they stay as evidence without contradicting the restored chain;
4. ``archive.audit.verify`` with the restored checkpoints; the restore is recorded as a
   ``backup.restore`` audit entry after it; then a full fixity check of every package.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import func, inspect, select
from sqlalchemy.engine import make_url

from archive import audit, db, policy
from archive.db import Catalog
from archive.digests import hash_stream
from archive.errors import (
    ArchiveError,
    InputError,
    IntegrityError,
    NotFound,
    NotInitialised,
    ObjectExists,
    Refused,
    StorageError,
)
from archive.fixity import verify_stored_object
from archive.models import (
    ArchiveTimestamp,
    AuditEntry,
    AuditHead,
    BackupCopy,
    Draft,
    Event,
    PackageVersion,
    Record,
    Rendition,
    Seal,
    StoredFile,
    Submission,
)
from archive.seal_manifest import signature_key, timestamp_key
from archive.storage import open_store
from preservation.catalog_backup import (
    fetch_manifest,
    libpq_args,
    list_backups,
    manifest_key,
    public_key,
    run_program,
)

# A checkpoint and whatever is stored beside it (its RFC 3161 token): by sequence number.
_CHECKPOINT = re.compile(r"^audit/checkpoints/(\d{12})(?:\.[A-Za-z0-9.]+)$")
SUPERSEDED_PREFIX = "audit/superseded/"


class TargetNotEmpty(Refused):
    """The archive to restore into holds data: restore never writes over anything."""


@dataclass
class RestoreReport:
    backup: str = ""
    source: str = ""
    database: str = ""
    backup_created_at: str = ""
    records: int = 0
    events: int = 0
    audit_entries: int = 0
    audit_seq: int = 0
    newest_audit_entry_at: str | None = None
    objects: int = 0
    bytes: int = 0
    unverified_objects: int = 0
    checkpoints_restored: int = 0
    # Signed checkpoints in the backup store beyond the restored chain: audit entries
    # known to have been written after this backup (lost with the incident).
    newer_checkpoints: list[int] = field(default_factory=list)
    entries_known_lost: int = 0
    audit_ok: bool = False
    fixity_checked: int = 0
    fixity_ok: bool = False
    seconds: float = 0.0
    phase_seconds: dict[str, float] = field(default_factory=dict)
    recorded_as: int | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return dict(asdict(self), ok=self.ok)


@dataclass
class _Object:
    key: str
    kind: str
    size: int | None = None
    digests: dict[str, str] = field(default_factory=dict)


# ---- the checks before anything is written ------------------------------------------


def _sqlite_file(url: str) -> Path | None:
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" else None


def check_target_empty(settings, store) -> None:
    """Raise TargetNotEmpty unless the catalog has no tables and the store no object."""
    url = settings.database_url
    path = _sqlite_file(url)
    if path is not None and not path.exists():
        leftovers = [p.name for p in (path.with_name(path.name + "-wal"),
                                      path.with_name(path.name + "-shm")) if p.exists()]
        if leftovers:
            raise TargetNotEmpty(f"the old catalog's {', '.join(leftovers)} is still in "
                                 f"{path.parent}: remove it before restoring (SQLite "
                                 "would apply it to the restored file)")
    elif db.current_revision(url) is not None or _tables(url):
        raise TargetNotEmpty(
            f"the catalog {db.safe_url(url)} is not empty ({_describe(url)}): restore "
            "only rebuilds an empty archive; move the SQLite file aside or drop and "
            "recreate the PostgreSQL database first (docs/recovery.md)")
    first = next(iter(store.list("")), None)
    if first is not None:
        raise TargetNotEmpty(f"the primary store {store.name} is not empty (it holds "
                             f"{first.key} ...): restore only rebuilds an empty archive; "
                             "empty it first (docs/recovery.md)")


def _tables(url: str) -> list[str]:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            return inspect(conn).get_table_names()
    except ArchiveError:
        raise
    except Exception as exc:  # unreachable database: say so clearly
        raise db.DatabaseUnavailable(db.safe_url(url), db._reason(exc)) from exc  # noqa: SLF001
    finally:
        engine.dispose()


def _describe(url: str) -> str:
    try:
        catalog = Catalog(url)
        try:
            with catalog.unit_of_work(snapshot=True) as session:
                records = session.scalar(select(func.count()).select_from(Record))
                entries = session.scalar(select(func.count()).select_from(AuditEntry))
            return f"{records} records, {entries} audit entries"
        finally:
            catalog.dispose()
    except Exception:  # noqa: BLE001 - only a description for the refusal
        return "it has tables"


def choose_backup(source, public, name: str | None) -> dict:
    backups = list_backups(source, public)
    if name is not None:
        chosen = next((b for b in backups if b["name"] == name), None)
        if chosen is None:
            raise NotFound(f"no catalog backup {name!r} in {source.name} (see `archive "
                           "backup list`)")
        if not chosen["ok"]:
            raise IntegrityError(f"catalog backup {name} cannot be trusted: "
                                 f"{chosen['problem']}; nothing was restored")
        return chosen
    good = [b for b in backups if b["ok"]]
    if not good:
        if not backups:
            raise NotFound(f"no catalog backup in {source.name}")
        raise IntegrityError("no catalog backup in " + source.name + " verifies: " + "; ".join(
            f"{b['name']}: {b['problem']}" for b in backups) + "; nothing was restored")
    return good[-1]


# ---- the restore --------------------------------------------------------------------


def restore(settings, source, principal, *, name: str | None = None,
            progress: Callable[[str, int, int], None] | None = None) -> RestoreReport:
    """Rebuild the empty archive of ``settings`` from the backup store ``source``.

    ``progress(phase, done, total)`` is called as objects are copied.
    """
    from preservation.fixity import run_fixity_check

    policy.require(principal, policy.CONFIG_MANAGE)
    started = time.monotonic()
    report = RestoreReport(source=source.name)
    try:
        public = public_key(settings)
    except (NotInitialised, InputError) as exc:
        raise NotInitialised(f"{exc.message}: restore the keys folder {settings.keys_dir} "
                             "from the key escrow before restoring (docs/recovery.md)") \
            from exc
    url = settings.database_url
    database = make_url(url).get_backend_name()
    if settings.storage.backend == "local":
        settings.local_store_path.mkdir(parents=True, exist_ok=True)
    primary = open_store(settings)
    primary.check()
    check_target_empty(settings, primary)

    chosen = choose_backup(source, public, name)
    manifest, why = fetch_manifest(source, manifest_key(chosen["name"]), public)
    if why is not None:  # changed since it was listed
        raise IntegrityError(f"catalog backup {chosen['name']}: {why}; nothing was restored")
    report.backup, report.database = manifest["name"], manifest["database"]
    report.backup_created_at = manifest["created_at"]
    if manifest["database"] != database:
        raise InputError(f"catalog backup {manifest['name']} is a {manifest['database']} "
                         f"catalog; the configured catalog is {database}")
    _known_revision(manifest["alembic_revision"])

    phase = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="archive-restore-") as tmp:
        dump = Path(tmp) / "catalog.dump"
        _download(source, manifest, dump)
        if database == "sqlite":
            _place_sqlite(dump, _sqlite_file(url))
        else:
            uri, env = libpq_args(url)
            run_program([settings.backup.pg_restore, "--no-owner", "--no-privileges",
                         "--exit-on-error", "--single-transaction", f"--dbname={uri}",
                         str(dump)], env, "pg_restore")
    report.phase_seconds["catalog"] = round(time.monotonic() - phase, 3)
    if db.current_revision(url) != db.head_revision():
        db.upgrade(url)
        report.warnings.append(f"catalog schema migrated from {manifest['alembic_revision']} "
                               f"to {db.head_revision()}")
    catalog = Catalog.from_settings(settings)
    try:
        _restore_rest(settings, catalog, source, primary, public, principal, manifest,
                      report, progress, run_fixity_check)
    finally:
        catalog.dispose()
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _restore_rest(settings, catalog, source, primary, public, principal, manifest, report,
                  progress, run_fixity_check) -> None:
    with catalog.unit_of_work(snapshot=True) as session:
        head = session.execute(select(AuditHead.seq, AuditHead.entry_hash)
                               .where(AuditHead.id == audit.HEAD_ID)).one()
        report.records = session.scalar(select(func.count()).select_from(Record)) or 0
        report.events = session.scalar(select(func.count()).select_from(Event)) or 0
        report.audit_entries = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
        newest = session.scalar(select(func.max(AuditEntry.occurred_at)))
        report.newest_audit_entry_at = audit.format_time(newest) if newest else None
        objects = _referenced_objects(session)
        encrypted = session.scalar(select(func.count()).select_from(StoredFile)
                                   .where(StoredFile.encryption.is_not(None))) or 0
    report.audit_seq = head.seq
    signed = manifest["audit"]
    if (head.seq, head.entry_hash) != (signed["seq"], signed["entry_hash"]):
        report.problems.append(f"the restored audit head (entry {head.seq}) is not the one "
                               f"the backup manifest signed (entry {signed['seq']})")
    if encrypted:
        _check_key_folders(settings, encrypted, report)

    # Checkpoints: those the restored chain covers come back; newer ones prove a loss.
    newer: list[str] = []
    for info in source.list(audit.CHECKPOINT_PREFIX):
        match = _CHECKPOINT.match(info.key)
        if not match:
            continue
        seq = int(match.group(1))
        if seq <= head.seq:
            objects.setdefault(info.key, _Object(info.key, "checkpoint"))
        else:
            newer.append(info.key)
            if info.key.endswith(".json"):
                report.newer_checkpoints.append(seq)
    report.newer_checkpoints.sort()
    if report.newer_checkpoints:
        report.entries_known_lost = report.newer_checkpoints[-1] - head.seq
        report.warnings.append(
            f"signed checkpoints in the backup store show at least "
            f"{report.entries_known_lost} audit entries written after this backup (up to "
            f"entry {report.newer_checkpoints[-1]}): they are not in it; their checkpoints "
            "stay in the backup store as evidence")

    phase = time.monotonic()
    _copy_objects(settings, source, primary, list(objects.values()), report, progress)
    report.phase_seconds["objects"] = round(time.monotonic() - phase, 3)

    if newer and report.ok:
        _move_aside(source, newer, report)

    phase = time.monotonic()
    checkpoints = audit.load_checkpoints(primary, public)
    with catalog.unit_of_work(snapshot=True) as session:
        chain = audit.verify(session, checkpoints)
    report.audit_ok = chain.ok
    report.checkpoints_restored = chain.checkpoints_checked
    report.problems.extend(f"audit chain: {p.message}" for p in chain.problems)
    report.warnings.extend(f"audit chain: {w}" for w in chain.warnings)
    with catalog.unit_of_work() as session:
        entry = audit.append(
            session, principal, "backup.restore", f"backup:{report.backup}",
            outcome="ok" if report.ok else "failed", client="cli",
            detail={"source": report.source, "manifest_sha256": manifest["sha256"],
                    "created_at": report.backup_created_at, "records": report.records,
                    "objects": report.objects, "bytes": report.bytes,
                    "audit_seq": report.audit_seq,
                    "entries_known_lost": report.entries_known_lost,
                    "checkpoints_moved_aside": report.newer_checkpoints,
                    "problems": report.problems[:20]})
    report.recorded_as = entry.seq
    report.phase_seconds["audit"] = round(time.monotonic() - phase, 3)

    phase = time.monotonic()
    fixity = run_fixity_check(settings, catalog, primary, principal, None,
                              progress=(lambda n: progress("fixity", n, 0)) if progress
                              else None)
    report.fixity_checked, report.fixity_ok = fixity.checked, fixity.ok
    for failure in fixity.failures:
        for package in failure.packages:
            for problem in package.problems:
                report.problems.append(f"fixity: record {failure.record_id}: "
                                       f"{problem.message}")
    report.phase_seconds["fixity"] = round(time.monotonic() - phase, 3)


def _known_revision(revision: str) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory.from_config(db.alembic_config())
    try:
        found = script.get_revision(revision)
    except CommandError:
        found = None
    if found is None:
        raise InputError(f"the catalog backup has schema revision {revision!r}, unknown to "
                         "this version of the archive: restore with the version that made "
                         "it (or a newer one)")


def _download(source, manifest: dict, dest: Path) -> None:
    """Copy the dump to ``dest`` and check its size and digests against the manifest."""
    try:
        with source.open(manifest["object"]) as stream, dest.open("wb") as out:
            while chunk := stream.read(1024 * 1024):
                out.write(chunk)
    except StorageError as exc:
        raise IntegrityError(f"catalog backup {manifest['name']}: {exc.message}; nothing "
                             "was restored") from exc
    with dest.open("rb") as fh:
        size, digests = hash_stream(fh, ("sha256", "sha512"))
    if size != manifest["size"]:
        raise IntegrityError(f"catalog backup {manifest['object']} is {size} bytes, its "
                             f"signed manifest says {manifest['size']}: nothing was restored")
    for algorithm in ("sha256", "sha512"):
        if digests[algorithm] != manifest[algorithm]:
            raise IntegrityError(f"catalog backup {manifest['object']}: {algorithm} does not "
                                 "match its signed manifest (damaged or tampered): nothing "
                                 "was restored")


def _place_sqlite(dump: Path, path: Path) -> None:
    """Link the verified file into place; never replace a catalog that appeared."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():  # an empty file without tables (check_target_empty let it through)
        path.unlink()
    tmp = path.with_name(f".{path.name}.restore-{os.getpid()}")
    with dump.open("rb") as src, tmp.open("wb") as out:
        while chunk := src.read(1024 * 1024):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError as exc:
        raise TargetNotEmpty(f"a catalog appeared at {path} while restoring: "
                             "nothing was overwritten") from exc
    finally:
        tmp.unlink(missing_ok=True)


def _referenced_objects(session) -> dict[str, _Object]:
    """Every object the catalog references (not of destroyed records), with digests."""
    found: dict[str, _Object] = {}
    live = select(Record.id).where(Record.status != "destroyed")
    for key, size, digests in session.execute(
            select(PackageVersion.storage_key, PackageVersion.size, PackageVersion.digests)
            .where(PackageVersion.record_id.in_(live))):
        found[key] = _Object(key, "aip", size, dict(digests))
    for key, size, sha in session.execute(
            select(Rendition.storage_key, Rendition.size, Rendition.sha256)
            .where(Rendition.storage_key.is_not(None), Rendition.record_id.in_(live))):
        found[key] = _Object(key, "rendition", size, {"sha256": sha})
    for seal_id, key, sha in session.execute(select(Seal.id, Seal.manifest_key,
                                                    Seal.manifest_sha256)):
        found[key] = _Object(key, "seal", None, {"sha256": sha})
        found[signature_key(seal_id)] = _Object(signature_key(seal_id), "seal")
        found[timestamp_key(seal_id)] = _Object(timestamp_key(seal_id), "seal-optional")
    for (key,) in session.execute(select(Submission.report_key)
                                  .where(Submission.report_key.is_not(None))):
        found[key] = _Object(key, "report")
    for key, token_sha, input_key, input_sha in session.execute(
            select(ArchiveTimestamp.object_key, ArchiveTimestamp.token_sha256,
                   ArchiveTimestamp.member, ArchiveTimestamp.covers_sha256)
            .where(ArchiveTimestamp.source == "renewal",
                   ArchiveTimestamp.record_id.in_(live))):
        found.setdefault(key, _Object(key, "timestamp", None, {"sha256": token_sha}))
        if input_key:
            found.setdefault(input_key, _Object(input_key, "timestamp", None,
                                                {"sha256": input_sha}))
    for key, sha in session.execute(select(Draft.file_key, Draft.file_sha256)
                                    .where(Draft.status == "draft",
                                           Draft.file_key.is_not(None))):
        found[key] = _Object(key, "draft", None, {"sha256": sha} if sha else {})
    # What the objects backup copied and verified (never what was destroyed since).
    for copy in session.scalars(select(BackupCopy).where(BackupCopy.deleted_at.is_(None))):
        if copy.record_id is not None and copy.object_key not in found and \
                copy.kind in ("aip", "rendition"):
            continue  # a record destroyed after the copy: never brought back
        obj = found.setdefault(copy.object_key, _Object(copy.object_key, copy.kind))
        if obj.size is None:
            obj.size = copy.size
        for algorithm, value in (copy.digests or {}).items():
            obj.digests.setdefault(algorithm, value)
    return found


def _check_key_folders(settings, encrypted: int, report: RestoreReport) -> None:
    from archive.keystore import KeyVault

    vault = KeyVault.from_settings(settings)
    if not vault.kek_dir.is_dir() or not vault.vault_dir.is_dir():
        report.problems.append(
            f"{encrypted} stored files are encrypted but the key folders {vault.kek_dir} "
            f"and {vault.vault_dir} are missing: restore them from the key escrow")


def _copy_objects(settings, source, primary, objects: list[_Object], report: RestoreReport,
                  progress) -> None:
    objects.sort(key=lambda o: o.key)
    total = len(objects)

    def copy(obj: _Object) -> tuple[_Object, int, str | None, bool]:
        try:
            info = source.stat(obj.key)
        except StorageError:
            if obj.kind == "seal-optional":
                return obj, 0, None, True
            return obj, 0, f"{obj.key} ({obj.kind}) is missing in the backup store", True
        if obj.size is not None and info.size != obj.size:
            return obj, 0, (f"{obj.key}: the backup copy is {info.size} bytes, the catalog "
                            f"says {obj.size}: not restored"), True
        try:
            with source.open(obj.key) as stream:
                put = primary.put(obj.key, stream, size=info.size,
                                  sha256=obj.digests.get("sha256"))
        except ObjectExists:
            try:
                verify_stored_object(primary, obj.key, info.size, obj.digests)
            except ArchiveError as exc:
                return obj, 0, f"{obj.key}: {exc.message}", True
            return obj, 0, None, False
        except IntegrityError as exc:
            return obj, 0, (f"{obj.key}: the backup copy does not match the catalog "
                            f"({exc.message}): not restored"), True
        for algorithm, expected in obj.digests.items():
            found = put.digests.get(algorithm)
            if found is not None and found != expected:
                return obj, put.size, (f"{obj.key}: {algorithm} of the restored copy does not "
                                       "match the catalog"), False
        # Checkpoints carry their own signature, checked by the audit verification.
        checked = obj.kind == "checkpoint" or any(a in put.digests for a in obj.digests)
        return obj, put.size, None, not checked

    done = 0
    workers = max(1, min(settings.fixity.workers, 8))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for obj, size, problem, unverified in pool.map(copy, objects):
            done += 1
            if problem is not None:
                (report.warnings if obj.kind == "draft" else report.problems).append(problem)
            elif size or not unverified:
                report.objects += 1
                report.bytes += size
                if unverified:
                    report.unverified_objects += 1
            if progress:
                progress("objects", done, total)


def _move_aside(source, keys: list[str], report: RestoreReport) -> None:
    """Keep the lost timeline's checkpoints as evidence under ``audit/superseded/<backup>/``
    in the backup store: left in place, they would contradict the restored chain as it
    grows (the same sequence numbers with other hashes). Copied and verified first."""
    for key in keys:
        target = f"{SUPERSEDED_PREFIX}{report.backup}/{key.rsplit('/', 1)[-1]}"
        try:
            with source.open(key) as stream:
                data = stream.read()
            sha = hash_stream(io.BytesIO(data), ("sha256",))[1]["sha256"]
            with contextlib.suppress(ObjectExists):  # moved by an earlier attempt
                source.put(target, io.BytesIO(data), size=len(data), sha256=sha)
            verify_stored_object(source, target, len(data), {"sha256": sha})
            source.delete(key)
        except ArchiveError as exc:
            report.problems.append(f"checkpoint {key} of the lost entries could not be moved "
                                   f"aside in the backup store: {exc.message}")
    report.warnings.append(f"{len(keys)} checkpoint objects of the lost entries were moved "
                           f"to {SUPERSEDED_PREFIX}{report.backup}/ in the backup store")
