"""An in-process object store for fast unit tests: same contract, a dict of bytes.

It keeps every object in memory, so it is for tests only; it still reads the input
in chunks and hashes while reading, like the real stores.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import BinaryIO

from archive.digests import CHUNK, DEFAULT_ALGORITHMS, MultiHasher
from archive.errors import (
    FixityMismatch,
    InputError,
    ObjectExists,
    ObjectNotFound,
    SizeMismatch,
    StoreUnavailable,
)
from archive.storage import check_range, check_sha256, validate_key, validate_prefix
from archive.storage.base import ObjectInfo, PutResult


@dataclass(frozen=True)
class _Stored:
    data: bytes
    modified: datetime
    sha256: str


class MemoryStore:
    """Objects in a dict; ``available=False`` makes every call raise StoreUnavailable."""

    def __init__(self, name: str = "memory"):
        self.name = name
        self.available = True
        self._objects: dict[str, _Stored] = {}
        self._lock = threading.Lock()

    def check(self) -> None:
        if not self.available:
            raise StoreUnavailable(f"object store {self.name} is unavailable (test switch)")

    def put(self, key: str, stream: BinaryIO, *, size: int | None = None,
            algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
            sha256: str | None = None) -> PutResult:
        key = validate_key(key)
        expected = check_sha256(sha256)
        self.check()
        if key in self._objects:
            raise ObjectExists(key)
        try:
            hasher = MultiHasher(dict.fromkeys((*algorithms, "sha256")))
        except ValueError as exc:
            raise InputError(f"unknown digest algorithm in {algorithms!r}") from exc
        buf = bytearray()
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            hasher.update(chunk)
            buf += chunk
        digests = hasher.hexdigests()
        if size is not None and size != hasher.size:
            raise SizeMismatch(key, size, hasher.size)
        if expected is not None and digests["sha256"] != expected:
            raise FixityMismatch(key, "sha256", expected, digests["sha256"])
        with self._lock:
            if key in self._objects:
                raise ObjectExists(key)
            self._objects[key] = _Stored(bytes(buf), datetime.now(UTC), digests["sha256"])
        return PutResult(key=key, size=hasher.size,
                         digests={a: digests[a] for a in algorithms})

    def replace_damaged(self, key: str, stream: BinaryIO, *, size: int, sha256: str,
                        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS) -> PutResult:
        """Repair only (see the protocol): overwrite after checking size and SHA-256."""
        key = validate_key(key)
        expected = check_sha256(sha256)
        if expected is None:
            raise InputError("replace_damaged needs the expected sha256")
        self.check()
        try:
            hasher = MultiHasher(dict.fromkeys((*algorithms, "sha256")))
        except ValueError as exc:
            raise InputError(f"unknown digest algorithm in {algorithms!r}") from exc
        buf = bytearray()
        while chunk := stream.read(CHUNK):
            hasher.update(chunk)
            buf += chunk
        digests = hasher.hexdigests()
        if size != hasher.size:
            raise SizeMismatch(key, size, hasher.size)
        if digests["sha256"] != expected:
            raise FixityMismatch(key, "sha256", expected, digests["sha256"])
        with self._lock:
            self._objects[key] = _Stored(bytes(buf), datetime.now(UTC), digests["sha256"])
        return PutResult(key=key, size=hasher.size,
                         digests={a: digests[a] for a in algorithms})

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        start, length = check_range(start, length)
        data = self._get(key).data
        end = len(data) if length is None else min(len(data), start + length)
        return io.BytesIO(data[start:end])

    def stat(self, key: str) -> ObjectInfo:
        stored = self._get(key)
        return ObjectInfo(key=key, size=len(stored.data), modified=stored.modified,
                          sha256=stored.sha256)

    def exists(self, key: str) -> bool:
        key = validate_key(key)
        self.check()
        return key in self._objects

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        prefix = validate_prefix(prefix)
        self.check()
        with self._lock:
            keys = sorted(k for k in self._objects if k.startswith(prefix))
        for key in keys:
            stored = self._objects.get(key)
            if stored is not None:
                yield ObjectInfo(key=key, size=len(stored.data), modified=stored.modified,
                                 sha256=stored.sha256)

    def delete(self, key: str) -> None:
        key = validate_key(key)
        self.check()
        with self._lock:
            if self._objects.pop(key, None) is None:
                raise ObjectNotFound(key)

    def _get(self, key: str) -> _Stored:
        key = validate_key(key)
        self.check()
        stored = self._objects.get(key)
        if stored is None:
            raise ObjectNotFound(key)
        return stored
