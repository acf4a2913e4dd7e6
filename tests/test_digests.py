"""Streaming digests (R-FIX-1): the pipelined ``hash_stream`` gives hashlib's digests.

``hash_stream`` reads in the calling thread while one thread per algorithm hashes the
chunks already read. These tests compare it with plain hashlib at the chunk boundaries,
check the hashing threads really run while the stream is read, that memory stays at a
few chunks, that a reader's error reaches the caller (threads stopped) and that short
reads (fewer bytes than asked, not the end) are handled.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from archive import digests
from archive.digests import PIPELINE_DEPTH, PIPELINE_MIN_CHUNK, hash_stream
from archive.errors import StorageError

CHUNK = PIPELINE_MIN_CHUNK  # the smallest chunk that is pipelined keeps the tests fast
DATA = os.urandom(7 * CHUNK + 123)
ALGORITHMS = ("sha256", "sha512")
SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK - 1,
         2 * PIPELINE_DEPTH * CHUNK - 5, len(DATA)]


def expected(data: bytes, algorithms=ALGORITHMS) -> tuple[int, dict[str, str]]:
    return len(data), {name: hashlib.new(name, data).hexdigest() for name in algorithms}


class ReadOnly:
    """A stream with ``read`` but no ``readinto`` (e.g. some HTTP bodies)."""

    def __init__(self, data: bytes):
        self._raw = io.BytesIO(data)

    def read(self, n: int) -> bytes:
        return self._raw.read(n)


class Trickle(io.RawIOBase):
    """Short reads: never more than ``most`` bytes per call, then the end."""

    def __init__(self, data: bytes, most: int):
        super().__init__()
        self._raw, self._most = io.BytesIO(data), most
        self.buffers: set[int] = set()
        self.hashing_seen = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        self.buffers.add(id(memoryview(b).obj))
        self.hashing_seen |= any(t.name.startswith("hash-") for t in threading.enumerate())
        data = self._raw.read(min(len(b), self._most))
        b[:len(data)] = data
        return len(data)


class Failing(io.RawIOBase):
    """Hands out ``good`` bytes, then fails like a dropped S3 connection."""

    def __init__(self, good: int):
        super().__init__()
        self._raw = io.BytesIO(DATA[:good])

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._raw.read(len(b))
        if not data:
            raise StorageError("S3 read aip/x failed: connection reset")
        b[:len(data)] = data
        return len(data)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pipeline", [True, False], ids=["pipelined", "sequential"])
def test_hash_stream_equals_hashlib_at_chunk_boundaries(size, pipeline):
    data = DATA[:size]
    assert hash_stream(io.BytesIO(data), ALGORITHMS, CHUNK, pipeline=pipeline) \
        == expected(data)


@pytest.mark.parametrize("size", [0, 1, CHUNK, CHUNK + 1, len(DATA)])
def test_hash_stream_without_readinto_equals_hashlib(size):
    data = DATA[:size]
    assert hash_stream(ReadOnly(data), ALGORITHMS, CHUNK) == expected(data)


@pytest.mark.parametrize("algorithms", [("sha256",), ("sha512", "sha256", "md5")])
def test_hash_stream_any_number_of_algorithms(algorithms):
    assert hash_stream(io.BytesIO(DATA), algorithms, CHUNK) == expected(DATA, algorithms)


def test_default_chunk_size_boundaries():
    chunk = digests.CHUNK
    for size in (chunk - 1, chunk, chunk + 1, 3 * chunk + 17):
        data = os.urandom(size)
        assert hash_stream(io.BytesIO(data)) == expected(data)


def test_hashing_threads_run_while_the_stream_is_read_with_bounded_memory():
    stream = Trickle(DATA, CHUNK)
    assert hash_stream(stream, ALGORITHMS, CHUNK) == expected(DATA)
    assert stream.hashing_seen, "no hashing thread was running while reading"
    assert len(stream.buffers) <= PIPELINE_DEPTH, "more chunks in memory than the depth"
    assert not [t for t in threading.enumerate() if t.name.startswith("hash-")]


def test_one_chunk_is_hashed_without_threads():
    stream = Trickle(DATA[:CHUNK - 1], CHUNK)
    assert hash_stream(stream, ALGORITHMS, CHUNK) == expected(DATA[:CHUNK - 1])
    assert not stream.hashing_seen


@pytest.mark.parametrize("most", [1, 4095, CHUNK // 3, CHUNK - 1])
def test_short_reads_are_not_taken_for_the_end(most):
    data = DATA[:3 * CHUNK + 5] if most > 1 else DATA[:5000]
    assert hash_stream(Trickle(data, most), ALGORITHMS, CHUNK) == expected(data)


@pytest.mark.parametrize("good", [0, CHUNK // 2, CHUNK, 2 * CHUNK + 1, 6 * CHUNK])
def test_a_reader_error_reaches_the_caller_and_stops_the_threads(good):
    with pytest.raises(StorageError, match="connection reset"):
        hash_stream(Failing(good), ALGORITHMS, CHUNK)
    assert not [t for t in threading.enumerate() if t.name.startswith("hash-")]


def test_a_hashing_error_reaches_the_caller(monkeypatch):
    class Broken:
        name = "sha512"

        def update(self, data):
            raise MemoryError("no room to hash")

        def hexdigest(self):  # pragma: no cover - never reached
            return ""

    real = hashlib.new
    monkeypatch.setattr(digests.hashlib, "new",
                        lambda name, *a: Broken() if name == "sha512" else real(name, *a))
    with pytest.raises(MemoryError, match="no room"):
        hash_stream(io.BytesIO(DATA), ALGORITHMS, CHUNK)
    assert not [t for t in threading.enumerate() if t.name.startswith("hash-")]


def test_a_changed_byte_changes_the_pipelined_digests():
    damaged = bytearray(DATA)
    damaged[5 * CHUNK + 7] ^= 0x01
    size, found = hash_stream(io.BytesIO(bytes(damaged)), ALGORITHMS, CHUNK)
    assert size == len(DATA)
    assert all(found[a] != expected(DATA)[1][a] for a in ALGORITHMS)
