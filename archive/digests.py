"""Fixity digests computed while streaming (R-FIX-1).

One pass over the bytes feeds every configured algorithm; nothing is buffered beyond
one chunk. hashlib releases the GIL on large updates, so threads parallelise hashing.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Iterator
from typing import BinaryIO

DEFAULT_ALGORITHMS: tuple[str, ...] = ("sha256", "sha512")
CHUNK = 1024 * 1024


class MultiHasher:
    """Feeds the same bytes to several hash algorithms."""

    def __init__(self, algorithms: Iterable[str] = DEFAULT_ALGORITHMS):
        self._hashes = {name: hashlib.new(name) for name in algorithms}
        self.size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        for h in self._hashes.values():
            h.update(data)
        self.size += len(data)

    def hexdigests(self) -> dict[str, str]:
        return {name: h.hexdigest() for name, h in self._hashes.items()}


def read_chunks(stream: BinaryIO, chunk_size: int = CHUNK) -> Iterator[memoryview | bytes]:
    """Yield ``stream`` in chunks of at most ``chunk_size`` bytes until its end.

    Uses ``readinto`` into one reused buffer when the stream has it: each chunk is only
    valid until the next one is requested (consume it at once: hash, write, encrypt).
    """
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        while data := stream.read(chunk_size):
            yield data
        return
    buf = bytearray(chunk_size)
    view = memoryview(buf)
    while n := readinto(view):
        yield view[:n]


def hash_stream(stream: BinaryIO, algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
                chunk_size: int = CHUNK) -> tuple[int, dict[str, str]]:
    """Read ``stream`` to its end; return (size, {algorithm: hex})."""
    hasher = MultiHasher(algorithms)
    for chunk in read_chunks(stream, chunk_size):
        hasher.update(chunk)
    return hasher.size, hasher.hexdigests()


def hash_bytes(data: bytes, algorithms: Iterable[str] = DEFAULT_ALGORITHMS) -> dict[str, str]:
    hasher = MultiHasher(algorithms)
    hasher.update(data)
    return hasher.hexdigests()


class HashingReader(io.RawIOBase):
    """A read-only stream that hashes every byte it hands out."""

    def __init__(self, raw: BinaryIO, algorithms: Iterable[str] = DEFAULT_ALGORITHMS):
        super().__init__()
        self._raw = raw
        self.hasher = MultiHasher(algorithms)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._raw.read(len(b))
        n = len(data)
        b[:n] = data
        if n:
            self.hasher.update(data)
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read() if size is None or size < 0 else self._raw.read(size)
        if data:
            self.hasher.update(data)
        return data

    @property
    def size(self) -> int:
        return self.hasher.size

    def hexdigests(self) -> dict[str, str]:
        return self.hasher.hexdigests()


class HashingWriter(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``raw``."""

    def __init__(self, raw: BinaryIO, algorithms: Iterable[str] = DEFAULT_ALGORITHMS):
        super().__init__()
        self._raw = raw
        self.hasher = MultiHasher(algorithms)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self._raw.write(b)
        self.hasher.update(b)
        return len(b)

    def tell(self) -> int:
        return self.hasher.size

    @property
    def size(self) -> int:
        return self.hasher.size

    def hexdigests(self) -> dict[str, str]:
        return self.hasher.hexdigests()
