"""Fixity primitives: verify stored objects and stream members with digest checks (R-FIX-1).

- ``verify_stored_object`` re-checks a whole stored AIP (size + every digest).
- ``VerifyingReader`` streams bytes to a reader (a download, an export) and fails
  at the end if the bytes differ from what the catalog recorded: the access path
  never hands out silently altered content.
- ``diagnose_package`` narrows a whole-object mismatch down to the damaged members.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import BinaryIO

from archive.digests import CHUNK, MultiHasher, hash_stream
from archive.errors import (
    ArchiveError,
    FixityMismatch,
    IntegrityError,
    ObjectNotFound,
    Problem,
    SizeMismatch,
)
from archive.storage import ObjectStore


def verify_stored_object(store: ObjectStore, key: str, size: int, digests: dict[str, str],
                         *, chunk_size: int = CHUNK) -> None:
    """Raise an IntegrityError subclass unless ``key`` holds exactly the recorded bytes.

    When the store reports a server-side SHA-256 we still re-read: the server
    checksum proves what it received, a re-read proves what it now holds.
    """
    info = store.stat(key)
    if info.size != size:
        raise SizeMismatch(key, size, info.size)
    if info.sha256 and info.sha256 != digests.get("sha256"):
        raise FixityMismatch(key, "sha256 (server checksum)", digests.get("sha256", ""),
                             info.sha256)
    with store.open(key) as stream:
        found_size, found = hash_stream(stream, digests.keys(), chunk_size)
    if found_size != size:
        raise SizeMismatch(key, size, found_size)
    for algorithm, expected in digests.items():
        if found[algorithm] != expected:
            raise FixityMismatch(key, algorithm, expected, found[algorithm])


class VerifyingReader(io.RawIOBase):
    """Reads ``size`` bytes from ``raw``; at end of stream checks size and digests.

    A mismatch raises :class:`FixityMismatch` (or :class:`SizeMismatch`) from the
    final ``read``, so a streaming response stops with an error instead of
    completing with wrong bytes.
    """

    def __init__(self, raw: BinaryIO, *, name: str, size: int, digests: dict[str, str]):
        super().__init__()
        self._raw = raw
        self.name_ = name
        self._expected_size = size
        self._expected = dict(digests)
        self._hasher = MultiHasher(self._expected.keys())
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.read(len(b))
        n = len(data)
        b[:n] = data
        return n

    def read(self, size: int = -1) -> bytes:
        want = CHUNK if size is None or size < 0 else size
        data = self._raw.read(want)
        if data:
            self._hasher.update(data)
            if self._hasher.size > self._expected_size:
                raise SizeMismatch(self.name_, self._expected_size, self._hasher.size)
            return data
        self._check()
        return b""

    def _check(self) -> None:
        if self._checked:
            return
        self._checked = True
        if self._hasher.size != self._expected_size:
            raise SizeMismatch(self.name_, self._expected_size, self._hasher.size)
        found = self._hasher.hexdigests()
        for algorithm, expected in self._expected.items():
            if found[algorithm] != expected:
                raise FixityMismatch(self.name_, algorithm, expected, found[algorithm])

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


@dataclass
class MemberDamage:
    path: str
    problem: str

    def to_dict(self) -> dict:
        return {"path": self.path, "problem": self.problem}


@dataclass
class PackageCheck:
    """Outcome of checking one stored AIP version."""

    storage_key: str
    ok: bool
    size: int = 0
    problems: list[Problem] = field(default_factory=list)
    damaged_members: list[MemberDamage] = field(default_factory=list)


def check_package(store: ObjectStore, key: str, size: int, digests: dict[str, str],
                  members: list[tuple[str, int, int, dict]], *,
                  chunk_size: int = CHUNK) -> PackageCheck:
    """Check one stored package: one streaming pass over the object, every digest.

    ``members`` are (path, offset, size, digests) of the files in the bag, used only
    when the whole object is wrong, to name which files are damaged.
    """
    try:
        with store.open(key) as stream:
            found_size, found = hash_stream(stream, digests.keys(), chunk_size)
    except ObjectNotFound:
        return PackageCheck(key, False, 0, [Problem("missing", f"{key}: object is missing "
                                                    "from the store", key)])
    except ArchiveError as exc:
        return PackageCheck(key, False, 0, [Problem("unreadable", f"{key}: {exc.message}",
                                                    key)])
    problems: list[Problem] = []
    if found_size != size:
        problems.append(Problem("size", f"{key}: expected {size} bytes, found {found_size}"
                                        f" ({'truncated' if found_size < size else 'grown'})",
                                key, {"expected": size, "found": found_size}))
    for algorithm, expected in digests.items():
        if found[algorithm] != expected:
            problems.append(Problem("digest", f"{key}: {algorithm} mismatch", key,
                                    {"algorithm": algorithm, "expected": expected,
                                     "found": found[algorithm]}))
    check = PackageCheck(key, not problems, found_size, problems)
    if problems:
        check.damaged_members = diagnose_package(store, key, found_size, members,
                                                 chunk_size=chunk_size)
    return check


def diagnose_package(store: ObjectStore, key: str, actual_size: int,
                     members: list[tuple[str, int, int, dict]], *,
                     chunk_size: int = CHUNK) -> list[MemberDamage]:
    """Name the bag members whose bytes differ from the catalog (ranged reads)."""
    damaged: list[MemberDamage] = []
    for path, offset, size, digests in members:
        if offset + size > actual_size:
            damaged.append(MemberDamage(path, "missing or cut short (object truncated)"))
            continue
        try:
            with store.open(key, offset, size) as stream:
                found_size, found = hash_stream(stream, digests.keys(), chunk_size)
        except ArchiveError as exc:
            damaged.append(MemberDamage(path, f"unreadable: {exc.message}"))
            continue
        if found_size != size:
            damaged.append(MemberDamage(path, f"expected {size} bytes, read {found_size}"))
            continue
        bad = [a for a, d in digests.items() if found.get(a) != d]
        if bad:
            damaged.append(MemberDamage(path, "content changed (" + ", ".join(bad)
                                        + " mismatch)"))
    if not damaged:
        damaged.append(MemberDamage("(tar structure)", "damage outside file contents "
                                    "(headers or padding)"))
    return damaged


__all__ = ["IntegrityError", "VerifyingReader", "check_package", "diagnose_package",
           "verify_stored_object", "PackageCheck", "MemberDamage"]
