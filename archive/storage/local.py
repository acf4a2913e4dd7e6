"""The local object store: one file per object under a root folder (R-REPO-1).

A put streams into a temp file under ``<root>/.incoming`` (same filesystem) while
hashing, fsyncs it, makes it read-only, then hard-links it to its final name:
``link`` fails when the name exists, so put-if-absent is atomic and an existing object
is never overwritten. The temp file is always removed; one left by a killed writer is
found by :meth:`LocalStore.incomplete` and removed by the sweeper.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from archive.digests import CHUNK, DEFAULT_ALGORITHMS, MultiHasher, read_chunks
from archive.errors import (
    FixityMismatch,
    InputError,
    ObjectExists,
    ObjectNotFound,
    SizeMismatch,
    StorageError,
    StoreUnavailable,
)
from archive.storage import check_range, check_sha256, validate_key, validate_prefix
from archive.storage.base import ObjectInfo, PutResult

INCOMING = ".incoming"
TEMP_SUFFIX = ".part"
READ_ONLY = 0o444


class LocalStore:
    """Objects as read-only files under ``root``; keys map to relative paths."""

    def __init__(self, root: Path | str, *, chunk_size: int = CHUNK):
        self.root = Path(root)
        self.name = f"local:{self.root}"
        self.chunk_size = chunk_size
        self._incoming = self.root / INCOMING

    # ---- setup and health ----------------------------------------------------------

    def create(self) -> None:
        """Create the root folder and its temp folder (``archive init``)."""
        try:
            self._incoming.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot create local store folder {self.root}: "
                                   f"{exc.strerror or exc}") from exc

    def check(self) -> None:
        if not self.root.is_dir():
            raise StoreUnavailable(f"local store folder {self.root} does not exist "
                                   "(run `archive init`)")
        probe = self._incoming / f"check-{os.getpid()}-{secrets.token_hex(6)}.probe"
        try:
            self._incoming.mkdir(exist_ok=True)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"local store folder {self.root} is not writable: "
                                   f"{exc.strerror or exc}") from exc

    # ---- writing -------------------------------------------------------------------

    def put(self, key: str, stream: BinaryIO, *, size: int | None = None,
            algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
            sha256: str | None = None) -> PutResult:
        key = validate_key(key)
        expected = check_sha256(sha256)
        final = self._path(key)
        if os.path.isdir(final):
            raise InputError(f"object key {key!r} names a folder of other objects")
        if os.path.lexists(final):
            raise ObjectExists(key)
        return self._store(key, stream, size, expected, algorithms,
                           lambda tmp: self._link(tmp, final, key))

    def replace_damaged(self, key: str, stream: BinaryIO, *, size: int, sha256: str,
                        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS) -> PutResult:
        """Repair only (see the protocol): temp file, fsync, check, atomic rename."""
        key = validate_key(key)
        expected = check_sha256(sha256)
        if expected is None:
            raise InputError("replace_damaged needs the expected sha256")
        final = self._path(key)
        if os.path.isdir(final):
            raise InputError(f"object key {key!r} names a folder of other objects")

        def publish(tmp: Path) -> None:
            created = self._make_parents(final.parent, key)
            self._os(f"replace {key}", os.replace, tmp, final)
            for folder in {final.parent, *(d.parent for d in created)}:
                self._fsync_dir(folder)

        return self._store(key, stream, size, expected, algorithms, publish)

    def _store(self, key: str, stream: BinaryIO, size: int | None, expected: str | None,
               algorithms: tuple[str, ...], publish) -> PutResult:
        """Write ``stream`` to a temp file (fsync), check size and SHA-256, make it
        read-only and ``publish`` it under its final name."""
        try:
            hasher = MultiHasher(dict.fromkeys((*algorithms, "sha256")))
        except ValueError as exc:
            raise InputError(f"unknown digest algorithm in {algorithms!r}") from exc
        tmp = self._new_temp()
        try:
            fd = self._os(f"create {tmp}", os.open, tmp,
                          os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as out:
                self._copy(stream, out, hasher, tmp)
                self._os(f"flush {tmp}", out.flush)
                self._os(f"fsync {tmp}", os.fsync, out.fileno())
            digests = hasher.hexdigests()
            if size is not None and size != hasher.size:
                raise SizeMismatch(key, size, hasher.size)
            if expected is not None and digests["sha256"] != expected:
                raise FixityMismatch(key, "sha256", expected, digests["sha256"])
            self._os(f"chmod {tmp}", os.chmod, tmp, READ_ONLY)
            publish(tmp)
        finally:
            # Always: on success the object lives on under its final name; on failure a
            # leftover would only be found later by remove_incomplete().
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return PutResult(key=key, size=hasher.size,
                         digests={a: digests[a] for a in algorithms})

    def _new_temp(self) -> Path:
        if not self.root.is_dir():
            raise StoreUnavailable(f"local store folder {self.root} does not exist "
                                   "(run `archive init`)")
        self._os(f"create {self._incoming}", self._incoming.mkdir, exist_ok=True)
        return self._incoming / f"{os.getpid()}-{secrets.token_hex(8)}{TEMP_SUFFIX}"

    def _copy(self, stream: BinaryIO, out: BinaryIO, hasher: MultiHasher, tmp: Path) -> None:
        # Errors reading the caller's stream are the caller's and propagate unchanged;
        # errors writing our temp file become StorageError.
        for chunk in read_chunks(stream, self.chunk_size):
            hasher.update(chunk)
            self._os(f"write {tmp}", out.write, chunk)

    def _link(self, tmp: Path, final: Path, key: str) -> None:
        created = self._make_parents(final.parent, key)
        try:
            os.link(tmp, final)
        except FileExistsError as exc:
            if final.is_dir():
                raise InputError(f"object key {key!r} names a folder of other objects") \
                    from exc
            raise ObjectExists(key) from exc
        except FileNotFoundError as exc:
            raise StorageError(f"cannot store {key}: its temp file or folder was removed "
                               "while writing (a concurrent sweep?); nothing stored") from exc
        except OSError as exc:
            raise StorageError(f"cannot store {key}: {exc.strerror or exc}") from exc
        # Make the new name (and any new folders) durable.
        for folder in {final.parent, *(d.parent for d in created)}:
            self._fsync_dir(folder)

    def _make_parents(self, folder: Path, key: str) -> list[Path]:
        missing = []
        current = folder
        while current != self.root and not current.is_dir():
            missing.append(current)
            current = current.parent
        created = []
        for d in reversed(missing):
            try:
                d.mkdir()
                created.append(d)
            except FileExistsError as exc:
                if not d.is_dir():
                    other = d.relative_to(self.root).as_posix()
                    raise InputError(f"object key {key!r} conflicts with the existing "
                                     f"object {other!r}") from exc
            except NotADirectoryError as exc:
                raise InputError(f"object key {key!r} conflicts with an existing object") \
                    from exc
            except OSError as exc:
                raise StorageError(f"cannot create folder {d}: {exc.strerror or exc}") \
                    from exc
        return created

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _os(what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise InputError(f"cannot {what}: name too long for this filesystem") \
                    from exc
            raise StorageError(f"cannot {what}: {exc.strerror or exc}") from exc

    # ---- reading -------------------------------------------------------------------

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        path = self._path(key)
        start, length = check_range(start, length)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - handed to the caller inside the reader
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc
        try:
            fh.seek(start)
        except OSError as exc:
            fh.close()
            raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc
        return _RangeReader(fh, length, key)  # type: ignore[return-value]

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot stat {key}: {exc.strerror or exc}") from exc
        if not _is_file(st.st_mode):
            raise ObjectNotFound(key)
        return _info(key, st)

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, sorted by key (temp files skipped)."""
        prefix = validate_prefix(prefix)
        folder, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*folder.split("/")) if folder else self.root
        found: list[ObjectInfo] = []
        self._walk(start, f"{folder}/" if folder else "", prefix, found)
        found.sort(key=lambda info: info.key)
        yield from found

    def _walk(self, folder: Path, rel: str, prefix: str, found: list[ObjectInfo]) -> None:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(f"cannot list {folder}: {exc.strerror or exc}") from exc
        for entry in entries:
            key = rel + entry.name
            if not rel and entry.name == INCOMING:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if (key + "/").startswith(prefix) or prefix.startswith(key + "/"):
                        self._walk(Path(entry.path), key + "/", prefix, found)
                elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                    found.append(_info(key, entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                continue  # deleted while listing

    # ---- removing ------------------------------------------------------------------

    def delete(self, key: str) -> None:
        path = self._path(key)
        if not self.exists(key):
            raise ObjectNotFound(key)
        try:
            os.unlink(path)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror or exc}") from exc
        self._fsync_dir(path.parent)

    def incomplete(self, older_than_seconds: float) -> list[str]:
        """Temp files (absolute paths) not modified for ``older_than_seconds``: what a
        killed writer left behind. A live writer touches its file at every chunk."""
        cutoff = time.time() - older_than_seconds
        out = []
        try:
            entries = list(os.scandir(self._incoming))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StorageError(f"cannot list {self._incoming}: {exc.strerror or exc}") \
                from exc
        for entry in entries:
            if not entry.name.endswith(TEMP_SUFFIX):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if _is_file(st.st_mode) and st.st_mtime <= cutoff:
                out.append(entry.path)
        return sorted(out)

    def remove_incomplete(self, older_than_seconds: float) -> int:
        """Remove the temp files :meth:`incomplete` finds; return how many were removed."""
        removed = 0
        for path in self.incomplete(older_than_seconds):
            try:
                os.unlink(path)
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageError(f"cannot remove {path}: {exc.strerror or exc}") from exc
        return removed

    # ---- internals -----------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))


def _is_file(mode: int) -> bool:
    return stat.S_ISREG(mode)


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key=key, size=st.st_size,
                      modified=datetime.fromtimestamp(st.st_mtime, UTC))


class _RangeReader(io.RawIOBase):
    """Reads at most ``length`` bytes (None: to the end) from an open file."""

    def __init__(self, fh: BinaryIO, length: int | None, key: str):
        super().__init__()
        self._fh = fh
        self._left = length
        self._key = key

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        if self._left is not None:
            if self._left <= 0:
                return 0
            view = view[:self._left]
        try:
            n = self._fh.readinto(view) or 0
        except OSError as exc:
            raise StorageError(f"cannot read {self._key}: {exc.strerror or exc}") from exc
        if self._left is not None:
            self._left -= n
        return n

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()
