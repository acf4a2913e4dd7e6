"""The object store port: one interface, several implementations (local folder, S3).

Rules every implementation keeps (R-REPO-1, R-FIX-1):
- ``put`` is put-if-absent: an existing key is never overwritten (``ObjectExists``).
- Reads and writes stream; a whole large file is never held in memory.
- ``put`` computes the digests of the bytes while streaming them and returns them.
- Vendor errors are translated here: callers only ever see ``archive.errors`` types.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, Protocol, runtime_checkable


@dataclass(frozen=True)
class PutResult:
    key: str
    size: int
    digests: dict[str, str]  # algorithm -> lowercase hex, for every requested algorithm
    locked_until: datetime | None = None  # Object Lock retention applied, if any


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime
    # Server-side SHA-256 (hex) when the store knows it (S3 checksum), else None.
    sha256: str | None = None
    extra: dict = field(default_factory=dict)


@runtime_checkable
class ObjectStore(Protocol):
    """Where AIP bytes live. Keys are ``/``-separated, no leading slash, no ``..``."""

    name: str  # human description for messages, e.g. "local:/srv/objects" or "s3:bucket"

    def put(self, key: str, stream: BinaryIO, *, size: int | None = None,
            algorithms: tuple[str, ...] = ("sha256", "sha512"),
            sha256: str | None = None) -> PutResult:
        """Store ``stream`` under ``key`` if absent, hashing while streaming.

        ``sha256`` (hex), when the caller already knows it, is sent to the server
        as the checksum to verify on receipt; a mismatch raises ``IntegrityError``
        and stores nothing.
        """
        ...

    def replace_damaged(self, key: str, stream: BinaryIO, *, size: int, sha256: str,
                        algorithms: tuple[str, ...] = ("sha256", "sha512")) -> PutResult:
        """Write ``stream`` under ``key`` even if the key exists (R-FIX-1).

        ONLY for repairing bytes proven damaged (or missing) against the catalog's
        digests, from a copy verified against those same digests (the fixity cycle's
        repair); nothing else may call it, since every other write is put-if-absent.
        The bytes must have exactly ``size`` and ``sha256``, else ``IntegrityError`` and
        nothing is stored. Local: temp file, fsync, atomic rename. S3: a PUT without
        ``If-None-Match`` carrying the SHA-256 checksum; on an Object Lock bucket this is
        a new version and the damaged one stays as evidence.
        """
        ...

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        """A streaming reader over the object (or a byte range of it)."""
        ...

    def stat(self, key: str) -> ObjectInfo:
        ...

    def exists(self, key: str) -> bool:
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        ...

    def delete(self, key: str) -> None:
        """Remove an object (used only by sweep of unregistered orphans and,
        later, approved destruction). Refused by Object Lock where it applies."""
        ...

    def check(self) -> None:
        """Raise ``StoreUnavailable`` when the store cannot be used right now."""
        ...
