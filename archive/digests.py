"""Fixity digests computed while streaming (R-FIX-1).

One pass over the bytes feeds every configured algorithm. hashlib releases the GIL on
updates of more than 2047 bytes, so ``hash_stream`` pipelines a long stream: the calling
thread reads the next chunk while one thread per algorithm hashes the chunks already
read (at most ``PIPELINE_DEPTH`` chunks in memory). A stream of one chunk is hashed
inline, without threads.
"""

from __future__ import annotations

import hashlib
import io
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

DEFAULT_ALGORITHMS: tuple[str, ...] = ("sha256", "sha512")
CHUNK = 1024 * 1024
PIPELINE_DEPTH = 4  # chunks in flight (being read or hashed) in a pipelined hash_stream
PIPELINE_MIN_CHUNK = 64 * 1024  # below this, thread hand-offs would cost more than they save


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
                chunk_size: int = CHUNK, *, pipeline: bool = True) -> tuple[int, dict[str, str]]:
    """Read ``stream`` to its end; return (size, {algorithm: hex}).

    With ``pipeline`` (and chunks of at least ``PIPELINE_MIN_CHUNK`` bytes) a stream
    longer than one chunk is read in this thread while one thread per algorithm hashes
    the chunks already read; the results are those of hashing sequentially. An error
    of the stream is raised here, after the hashing threads have stopped.
    """
    hasher = MultiHasher(algorithms)
    chunks = _chunk_source(stream, chunk_size, PIPELINE_DEPTH if pipeline else 1)
    first = chunks()
    if not first:
        return 0, hasher.hexdigests()
    second = chunks() if pipeline and chunk_size >= PIPELINE_MIN_CHUNK else None
    if not second:  # one chunk (or no pipelining): hash here, no threads
        hasher.update(first)
        if second is None:
            while chunk := chunks():
                hasher.update(chunk)
        return hasher.size, hasher.hexdigests()
    return _pipelined(hasher, chunks, (first, second))


def _chunk_source(stream: BinaryIO, chunk_size: int,
                  buffers: int) -> Callable[[], memoryview | bytes]:
    """A function returning the next chunk of ``stream`` (empty at its end). With
    ``readinto``, chunks are views of ``buffers`` reused buffers, in turn: chunk ``i``
    stays valid until chunk ``i + buffers`` is read."""
    readinto = getattr(stream, "readinto", None)
    if readinto is None:
        return lambda: stream.read(chunk_size)
    views = [memoryview(bytearray(chunk_size)) for _ in range(buffers)]
    turn = 0

    def next_chunk() -> memoryview:
        nonlocal turn
        view = views[turn]
        turn = (turn + 1) % buffers
        return view[:readinto(view) or 0]

    return next_chunk


def _pipelined(hasher: MultiHasher, chunks: Callable[[], memoryview | bytes],
               read: tuple) -> tuple[int, dict[str, str]]:
    """Hash every chunk in one thread per algorithm while this thread reads.

    Each algorithm's thread takes the chunks in order from its own queue and counts
    each finished chunk on its semaphore. Before this thread reads chunk ``i`` into the
    buffer of chunk ``i - PIPELINE_DEPTH``, it takes one count from every semaphore:
    every thread is done with that buffer, and at most ``PIPELINE_DEPTH`` chunks are in
    memory whatever the stream's ``read`` returns.
    """
    lanes = [(h, queue.SimpleQueue(), threading.Semaphore(0))
             for h in hasher._hashes.values()]
    failures: list[BaseException] = []
    halt = threading.Event()  # a failure on either side: skip the remaining chunks

    def work(h, inbox: queue.SimpleQueue, finished: threading.Semaphore) -> None:
        while (chunk := inbox.get()) is not None:
            try:
                if not halt.is_set():
                    h.update(chunk)
            except BaseException as exc:  # noqa: BLE001 - raised in the reading thread
                failures.append(exc)
                halt.set()
            finally:
                finished.release()

    threads = [threading.Thread(target=work, args=lane, name=f"hash-{lane[0].name}",
                                daemon=True) for lane in lanes]
    for thread in threads:
        thread.start()
    pending = list(read)
    sent = 0
    try:
        while not halt.is_set():
            if pending:
                chunk = pending.pop(0)
            else:
                if sent >= PIPELINE_DEPTH:  # reuse the oldest buffer once all hashed it
                    for _h, _inbox, finished in lanes:
                        finished.acquire()
                chunk = chunks()
                if not chunk:
                    break
            for _h, inbox, _finished in lanes:
                inbox.put(chunk)
            hasher.size += len(chunk)
            sent += 1
    except BaseException:
        halt.set()
        raise
    finally:
        for _h, inbox, _finished in lanes:
            inbox.put(None)
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
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
