"""Keys of classified content (R-CLASS-1): key-encryption keys and the data-key vault.

Two folders, both outside the catalog database and the object store ("keys held apart
from the data"):

- ``kek_dir``: one file per key-encryption key (KEK, 256-bit random), named by its key
  id, mode 0600 in a 0700 folder, created once and never overwritten. ``ACTIVE`` names
  the KEK that wraps new data keys (if it is lost, the newest KEK is used).
- ``vault_dir``: one ``<dek_id>.json`` per data key (DEK, 256-bit random, one per
  encrypted file), holding the DEK wrapped by a KEK (AES key wrap, RFC 3394).

Destroying a DEK deletes its vault file (R-DESTROY-1, crypto-shredding): every copy of
the ciphertext, in the store, replicas and old backups, becomes unreadable. Rotation
creates a new KEK, makes it active and re-wraps every DEK under it; the DEKs, and so
the stored ciphertext, do not change. A KEK nothing uses any more can be retired.

An advisory lock (``flock``) on ``vault_dir/.lock`` orders the writers: rotation,
retirement and destruction take it exclusively, creating and reading a DEK shared, so
a rotation never resurrects a DEK destroyed meanwhile, and a KEK is never retired while
a reader is about to use it. The lock works between processes on one machine (not
over NFS).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import re
import secrets
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from archive.clock import Clock, SystemClock
from archive.errors import (
    ConfigError,
    DataKeyDestroyed,
    InputError,
    KeyInUse,
    KeyMissing,
    KeyUnusable,
)

KEY_BYTES = 32  # AES-256, for KEKs and DEKs alike
WRAP_ALGORITHM = "AES-KW-256"  # RFC 3394
KEK_SUFFIX = ".key"
ACTIVE_FILE = "ACTIVE"
LOCK_FILE = ".lock"
# kek-<sequence>-<random>: the sequence orders KEKs by creation (clocks may repeat), the
# random part keeps ids of different installations apart.
_KEK_ID = re.compile(r"^kek-[0-9]{6}-[0-9a-f]{8}$")
_DEK_ID = re.compile(r"^dek-[0-9a-f]{32}$")


@dataclass(frozen=True)
class KekInfo:
    """What may be shown about a KEK: never its key material."""

    kek_id: str
    created: str
    active: bool
    data_keys: int = 0

    def to_dict(self) -> dict:
        return {"kek_id": self.kek_id, "created": self.created, "active": self.active,
                "data_keys": self.data_keys}


@dataclass(frozen=True)
class DataKey:
    """An unwrapped data key; ``key`` is kept out of ``repr``."""

    dek_id: str
    kek_id: str
    key: bytes = field(repr=False)


@dataclass
class RotationReport:
    """Outcome of :meth:`KeyVault.rotate`: DEKs that could not be re-wrapped stay
    under their old KEK and are listed in ``problems``."""

    new_kek: str
    previous_kek: str | None
    rewrapped: int = 0
    problems: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, "new_kek": self.new_kek, "previous_kek": self.previous_kek,
                "rewrapped": self.rewrapped, "problems": self.problems}


class KeyVault:
    """The KEK folder and the DEK vault of one archive."""

    def __init__(self, kek_dir: str | os.PathLike, vault_dir: str | os.PathLike,
                 clock: Clock | None = None):
        self.kek_dir = Path(kek_dir)
        self.vault_dir = Path(vault_dir)
        self.clock = clock or SystemClock()

    @classmethod
    def from_settings(cls, settings, clock: Clock | None = None) -> KeyVault:
        """Folders from ``[encryption]``; refuses folders inside the object store or
        holding the catalog (R-CLASS-1: keys are held apart from the data)."""
        section = settings.encryption
        kek_dir = (Path(section.kek_dir).expanduser().resolve() if section.kek_dir
                   else settings.keys_dir / "kek")
        vault_dir = (Path(section.vault_dir).expanduser().resolve() if section.vault_dir
                     else settings.keys_dir / "vault")
        if kek_dir == vault_dir:
            raise ConfigError("encryption.kek_dir and encryption.vault_dir must be "
                              "different folders")
        store = settings.local_store_path
        catalog = (Path(settings.database_url.removeprefix("sqlite:///")).parent
                   if settings.database_url.startswith("sqlite:///") else None)
        for key, folder in (("kek_dir", kek_dir), ("vault_dir", vault_dir)):
            if folder == store or store in folder.parents:
                where = f"inside the local object store ({store})"
            elif folder == catalog:
                where = f"the folder of the catalog database ({catalog})"
            else:
                continue
            raise ConfigError(f"encryption.{key}: {folder} is {where}; keys must be held "
                              "apart from the data (R-CLASS-1)")
        return cls(kek_dir, vault_dir, clock)

    # ---- key-encryption keys ---------------------------------------------------------

    def init(self) -> tuple[KekInfo, bool]:
        """Make sure an active KEK exists; return it and whether it was created now."""
        with self._lock(exclusive=True):
            existing = self._kek_records()
            if existing:
                active = self._active_id(existing)
                if not (self.kek_dir / ACTIVE_FILE).exists():
                    self._write_active(active)
                return KekInfo(active, existing[active]["created"], True), False
            kek_id = self._create_kek()
            return KekInfo(kek_id, self._kek_records()[kek_id]["created"], True), True

    def active_kek_id(self) -> str:
        """The KEK wrapping new data keys; :class:`KeyMissing` if there is none."""
        return self._active_id(self._kek_records())

    def list_keks(self) -> list[KekInfo]:
        """Every KEK, oldest first, with the number of DEKs it wraps."""
        records = self._kek_records()
        active = self._active_name(records)
        counts: dict[str, int] = {}
        for dek_id in self.data_key_ids():
            entry = self._read_vault_entry(dek_id, missing_ok=True)
            if entry is not None:
                counts[entry["kek_id"]] = counts.get(entry["kek_id"], 0) + 1
        infos = [KekInfo(kek_id, rec["created"], kek_id == active, counts.pop(kek_id, 0))
                 for kek_id, rec in sorted(records.items(), key=_age)]
        # DEKs wrapped by a KEK that is gone are listed too: they cannot be unwrapped.
        infos += [KekInfo(kek_id, "", kek_id == active, n)
                  for kek_id, n in sorted(counts.items())]
        return infos

    def rotate(self) -> RotationReport:
        """Create a new KEK, make it active, re-wrap every DEK under it."""
        with self._lock(exclusive=True):
            records = self._kek_records()
            if not records:
                raise KeyMissing("", "no key-encryption key to rotate: run "
                                     "`archive keys init` first")
            previous = self._active_name(records)  # its file may be lost: rotate anyway
            new_id = self._create_kek()
            new_kek = self._load_kek(new_id)
            report = RotationReport(new_kek=new_id, previous_kek=previous)
            for dek_id in self.data_key_ids():
                entry = None
                try:
                    entry = self._read_vault_entry(dek_id, missing_ok=True)
                    if entry is None:
                        continue
                    key = self._unwrap(entry)
                except (KeyMissing, KeyUnusable) as exc:
                    report.problems.append({"dek_id": dek_id, "message": exc.message,
                                            "kek_id": (entry or {}).get("kek_id", "")})
                    continue
                entry.update(kek_id=new_id, wrapped_key=b64(aes_key_wrap(new_kek, key)),
                             rewrapped=self._now())
                self._replace_vault_entry(dek_id, entry)
                report.rewrapped += 1
            return report

    def retire_kek(self, kek_id: str) -> None:
        """Delete a KEK that is not active and wraps no DEK (after a rotation).

        Every DEK still wrapped by it would become unreadable, so that is refused.
        """
        _check_id(kek_id, _KEK_ID, "key-encryption key")
        with self._lock(exclusive=True):
            records = self._kek_records()
            if kek_id not in records:
                raise KeyMissing(kek_id, f"key-encryption key {kek_id} not found in "
                                         f"{self.kek_dir}")
            if kek_id == self._active_name(records):
                raise KeyInUse(kek_id, "it is the active key (rotate first)")
            users = sum(1 for dek_id in self.data_key_ids()
                        if (self._read_vault_entry(dek_id, missing_ok=True) or {})
                        .get("kek_id") == kek_id)
            if users:
                raise KeyInUse(kek_id, f"it still wraps {users} data key(s) (rotate to "
                                       "re-wrap them)")
            _shred(self.kek_dir / f"{kek_id}{KEK_SUFFIX}")
            _fsync_dir(self.kek_dir)

    # ---- data keys -------------------------------------------------------------------

    def new_data_key(self) -> DataKey:
        """Create a fresh DEK, store it wrapped by the active KEK (durably: the file and
        its folder are synced before this returns) and return it unwrapped."""
        with self._lock(exclusive=False):
            kek_id = self.active_kek_id()
            kek = self._load_kek(kek_id)
            key = secrets.token_bytes(KEY_BYTES)
            dek_id = f"dek-{uuid.uuid4().hex}"
            entry = {"dek_id": dek_id, "kek_id": kek_id, "wrap": WRAP_ALGORITHM,
                     "wrapped_key": b64(aes_key_wrap(kek, key)), "created": self._now()}
            _ensure_private_dir(self.vault_dir)
            _write_new(self.vault_dir / f"{dek_id}.json", _json_bytes(entry))
            return DataKey(dek_id, kek_id, key)

    def data_key(self, dek_id: str) -> DataKey:
        """Unwrap a DEK: :class:`DataKeyDestroyed` if it is not in the vault,
        :class:`KeyMissing` if its KEK is gone."""
        _check_id(dek_id, _DEK_ID, "data key")
        with self._lock(exclusive=False):
            entry = self._read_vault_entry(dek_id)
            return DataKey(dek_id, entry["kek_id"], self._unwrap(entry))

    def data_key_exists(self, dek_id: str) -> bool:
        """Whether the vault still holds the DEK (False after :meth:`destroy_data_key`)."""
        _check_id(dek_id, _DEK_ID, "data key")
        return (self.vault_dir / f"{dek_id}.json").exists()

    def destroy_data_key(self, dek_id: str) -> bool:
        """Crypto-shred one DEK (R-DESTROY-1): overwrite and delete its vault file.

        Returns False if it was already gone, so an interrupted destruction can be
        re-run. Copies of the vault in backups still hold the wrapped DEK; they become
        useless once the KEK wrapping them is rotated away and retired everywhere.
        """
        _check_id(dek_id, _DEK_ID, "data key")
        path = self.vault_dir / f"{dek_id}.json"
        with self._lock(exclusive=True):
            if not path.exists():
                return False
            _shred(path)
            _fsync_dir(self.vault_dir)
            return True

    def data_key_ids(self) -> Iterator[str]:
        if not self.vault_dir.is_dir():
            return
        for path in sorted(self.vault_dir.glob("dek-*.json")):
            if _DEK_ID.match(path.stem):
                yield path.stem

    # ---- internals -------------------------------------------------------------------

    def _now(self) -> str:
        return self.clock.now().isoformat(timespec="seconds")

    @contextlib.contextmanager
    def _lock(self, *, exclusive: bool):
        _ensure_private_dir(self.vault_dir)
        fd = os.open(self.vault_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _kek_records(self) -> dict[str, dict]:
        """{kek_id: {"created": ...}} of the KEK files present (key not loaded)."""
        if not self.kek_dir.is_dir():
            return {}
        out = {}
        for path in self.kek_dir.glob(f"kek-*{KEK_SUFFIX}"):
            kek_id = path.name.removesuffix(KEK_SUFFIX)
            if _KEK_ID.match(kek_id):
                out[kek_id] = {"created": self._read_kek_file(kek_id)["created"]}
        return out

    def _active_name(self, records: dict[str, dict]) -> str | None:
        """The KEK named by ``ACTIVE`` (present or not), else the newest, else None."""
        try:
            return (self.kek_dir / ACTIVE_FILE).read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return max(records.items(), key=_age)[0] if records else None

    def _active_id(self, records: dict[str, dict]) -> str:
        named = self._active_name(records)
        if not records or named is None:
            raise KeyMissing("", f"no key-encryption key in {self.kek_dir}: run "
                                 "`archive keys init` (or set encryption.kek_dir to the "
                                 "folder holding the keys)")
        if named not in records:
            raise KeyMissing(named, f"the active key-encryption key {named} (named in "
                                    f"{self.kek_dir / ACTIVE_FILE}) is missing; "
                                    "`archive keys rotate` makes a new one active")
        return named

    def _create_kek(self) -> str:
        # Called with the exclusive lock held, so the sequence number is ours.
        existing = [int(k.split("-")[1]) for k in self._kek_records()]
        kek_id = f"kek-{max(existing, default=0) + 1:06d}-{secrets.token_hex(4)}"
        record = {"kek_id": kek_id, "algorithm": "AES-256", "created": self._now(),
                  "key": b64(secrets.token_bytes(KEY_BYTES))}
        _ensure_private_dir(self.kek_dir)
        _write_new(self.kek_dir / f"{kek_id}{KEK_SUFFIX}", _json_bytes(record))
        self._write_active(kek_id)
        return kek_id

    def _write_active(self, kek_id: str) -> None:
        # The marker is not secret and is the one file here that is replaced.
        tmp = self.kek_dir / f".{ACTIVE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(kek_id + "\n", encoding="ascii")
        os.replace(tmp, self.kek_dir / ACTIVE_FILE)
        _fsync_dir(self.kek_dir)

    def _read_kek_file(self, kek_id: str) -> dict:
        path = self.kek_dir / f"{kek_id}{KEK_SUFFIX}"
        try:
            mode = path.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyUnusable(kek_id, str(path), f"permissions {oct(mode & 0o777)} let "
                                  "others read it; allow only its owner (chmod 600)")
            record = json.loads(path.read_bytes())
        except FileNotFoundError as exc:
            raise KeyMissing(kek_id, f"key-encryption key {kek_id} not found in "
                                     f"{self.kek_dir} (retired, or the key folder is not "
                                     "the one it was created in)") from exc
        except OSError as exc:
            raise KeyUnusable(kek_id, str(path), exc.strerror or str(exc)) from exc
        except ValueError as exc:
            raise KeyUnusable(kek_id, str(path), "not a key file (invalid JSON)") from exc
        if not isinstance(record, dict) or record.get("kek_id") != kek_id \
                or not isinstance(record.get("created"), str):
            raise KeyUnusable(kek_id, str(path), "not a key file of this key id")
        return record

    def _load_kek(self, kek_id: str) -> bytes:
        path = self.kek_dir / f"{kek_id}{KEK_SUFFIX}"
        key = unb64(self._read_kek_file(kek_id).get("key"))
        if key is None or len(key) != KEY_BYTES:
            raise KeyUnusable(kek_id, str(path), "key material is not 32 bytes of base64")
        return key

    def _read_vault_entry(self, dek_id: str, missing_ok: bool = False) -> dict | None:
        path = self.vault_dir / f"{dek_id}.json"
        try:
            entry = json.loads(path.read_bytes())
        except FileNotFoundError as exc:
            if missing_ok:
                return None
            raise DataKeyDestroyed(dek_id) from exc
        except OSError as exc:
            raise KeyUnusable(dek_id, str(path), exc.strerror or str(exc)) from exc
        except ValueError as exc:
            raise KeyUnusable(dek_id, str(path), "not a vault entry (invalid JSON)") from exc
        if not isinstance(entry, dict) or entry.get("dek_id") != dek_id \
                or not _KEK_ID.match(str(entry.get("kek_id", ""))):
            raise KeyUnusable(dek_id, str(path), "not a vault entry of this data key")
        return entry

    def _unwrap(self, entry: dict) -> bytes:
        dek_id, kek_id = entry["dek_id"], entry["kek_id"]
        path = str(self.vault_dir / f"{dek_id}.json")
        wrapped = unb64(entry.get("wrapped_key"))
        if wrapped is None:
            raise KeyUnusable(dek_id, path, "wrapped key is not base64")
        try:
            key = aes_key_unwrap(self._load_kek(kek_id), wrapped)
        except (InvalidUnwrap, ValueError) as exc:
            raise KeyUnusable(dek_id, path, f"does not unwrap under {kek_id} (the vault "
                                            "entry or the key file was altered)") from exc
        if len(key) != KEY_BYTES:
            raise KeyUnusable(dek_id, path, "unwrapped key is not 256 bits")
        return key

    def _replace_vault_entry(self, dek_id: str, entry: dict) -> None:
        path = self.vault_dir / f"{dek_id}.json"
        tmp = _temporary(path)
        _write_synced(tmp, _json_bytes(entry))
        os.replace(tmp, path)
        _fsync_dir(self.vault_dir)


# ---- file helpers -----------------------------------------------------------------------


def _age(item: tuple[str, dict]) -> str:
    return item[0]  # kek-<sequence>-<random>: sorts by creation


def _check_id(value: str, pattern: re.Pattern, what: str) -> None:
    # Ids come from the catalog and the command line and become file names.
    if not isinstance(value, str) or not pattern.match(value):
        raise InputError(f"not a {what} id: {value!r}")


def b64(data: bytes) -> str:
    """Base64 text of ``data`` (key files and encryption metadata)."""
    return base64.b64encode(data).decode("ascii")


def unb64(value) -> bytes | None:
    """Bytes of base64 text, or None when it is not strict base64."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _json_bytes(data: dict) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _ensure_private_dir(folder: Path) -> None:
    if folder.is_dir():
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def _write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` (mode 0600, refused if it exists), write ``data``, fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _write_new(path: Path, data: bytes) -> None:
    """Write a new file at ``path``, durably; never replaces an existing file.

    The bytes go to a private temporary file first and are then linked into place, so
    a crash never leaves a half-written key and an existing key is never overwritten
    (the link fails with :class:`FileExistsError`).
    """
    tmp = _temporary(path)
    _write_synced(tmp, data)
    try:
        os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def _shred(path: Path) -> None:
    """Overwrite a small key file with zeros, then delete it. The overwrite is best
    effort (journals, copy-on-write file systems and SSDs may keep old blocks)."""
    with contextlib.suppress(FileNotFoundError):
        size = path.stat().st_size
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, b"\0" * size)
            os.fsync(fd)
        finally:
            os.close(fd)
        path.unlink()


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
