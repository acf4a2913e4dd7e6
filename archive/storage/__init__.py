"""Object stores: where AIP bytes live (R-REPO-1).

``open_store(settings)`` builds the configured implementation. The implementations live
in ``local.py`` (a folder), ``s3.py`` (any S3 server, boto3) and ``memory.py`` (a fake
for fast tests); they are imported lazily so importing this package pulls in no HTTP
client. The key and range rules every implementation shares are here.
"""

from __future__ import annotations

import unicodedata
from typing import TYPE_CHECKING

from archive.errors import ConfigError, InputError
from archive.storage.base import ObjectInfo, ObjectStore, PutResult

if TYPE_CHECKING:
    from archive.settings import Settings

__all__ = ["ObjectInfo", "ObjectStore", "PutResult", "check_range", "check_sha256",
           "open_backup_store", "open_store", "validate_key", "validate_prefix"]

MAX_KEY_CHARS = 1000
MAX_KEY_BYTES = 1024  # the S3 limit, in UTF-8 bytes
RESERVED_FIRST_SEGMENTS = frozenset({".incoming"})  # the local store's temp folder


def _bad_chars(text: str, what: str) -> None:
    for ch in text:
        if ch == "\\":
            raise InputError(f"invalid {what} {text!r}: backslash is not allowed")
        if unicodedata.category(ch) in ("Cc", "Cs"):
            raise InputError(f"invalid {what} {text!r}: control character "
                             f"U+{ord(ch):04X} is not allowed")


def validate_key(key: object) -> str:
    """Return ``key`` if it is a valid object key, else raise ``InputError``.

    A key is ``/``-separated segments: not empty, no leading ``/``, no empty, ``.`` or
    ``..`` segment, no backslash, NUL or other control character, at most 1000
    characters (and 1024 UTF-8 bytes, the S3 limit).
    """
    if not isinstance(key, str):
        raise InputError(f"invalid object key {key!r}: must be a string")
    if not key:
        raise InputError("invalid object key: empty")
    if len(key) > MAX_KEY_CHARS or len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InputError(f"invalid object key {key[:60]!r}...: longer than "
                         f"{MAX_KEY_CHARS} characters or {MAX_KEY_BYTES} bytes")
    _bad_chars(key, "object key")
    if key.startswith("/"):
        raise InputError(f"invalid object key {key!r}: must not start with '/'")
    segments = key.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InputError(f"invalid object key {key!r}: empty, '.' or '..' segment")
    if segments[0] in RESERVED_FIRST_SEGMENTS:
        raise InputError(f"invalid object key {key!r}: {segments[0]} is reserved")
    return key


def validate_prefix(prefix: object) -> str:
    """A listing prefix: empty, or the start of a valid key (may end with ``/``)."""
    if not isinstance(prefix, str):
        raise InputError(f"invalid key prefix {prefix!r}: must be a string")
    if not prefix:
        return prefix
    if len(prefix) > MAX_KEY_CHARS:
        raise InputError(f"invalid key prefix {prefix[:60]!r}...: too long")
    _bad_chars(prefix, "key prefix")
    if prefix.startswith("/"):
        raise InputError(f"invalid key prefix {prefix!r}: must not start with '/'")
    if any(segment in (".", "..") for segment in prefix.split("/")[:-1]):
        raise InputError(f"invalid key prefix {prefix!r}: '.' or '..' segment")
    return prefix


def check_range(start: object, length: object) -> tuple[int, int | None]:
    """Validate a byte range request: ``start >= 0``, ``length`` None or ``>= 0``."""
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise InputError(f"invalid range start {start!r}: must be an integer >= 0")
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)
                               or length < 0):
        raise InputError(f"invalid range length {length!r}: must be None or an integer >= 0")
    return start, length


def check_sha256(sha256: object) -> str | None:
    """Normalise a caller-supplied SHA-256 (hex) to lowercase, or raise ``InputError``."""
    if sha256 is None:
        return None
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise InputError(f"invalid sha256 {sha256!r}: expected 64 hexadecimal characters")
    try:
        bytes.fromhex(sha256)
    except ValueError as exc:
        raise InputError(f"invalid sha256 {sha256!r}: not hexadecimal") from exc
    return sha256.lower()


def open_store(settings: Settings) -> ObjectStore:
    """The object store named by ``settings.storage`` (``local`` or ``s3``)."""
    storage = settings.storage
    if storage.backend == "s3":
        from archive.storage.s3 import S3Store

        return S3Store(storage.s3_endpoint, storage.s3_bucket, region=storage.s3_region,
                       access_key=storage.s3_access_key, secret_key=settings.s3_secret(),
                       path_style=storage.s3_path_style, object_lock=storage.s3_object_lock,
                       retention_days=storage.s3_retention_days,
                       timeout=storage.s3_timeout, max_attempts=storage.s3_max_attempts)
    if storage.backend == "local":
        from archive.storage.local import LocalStore

        return LocalStore(settings.local_store_path)
    raise ConfigError(f"storage.backend: unknown backend {storage.backend!r}")


def open_backup_store(settings: Settings) -> ObjectStore | None:
    """The backup store named by ``settings.backup`` (R-BACKUP-1); None when "none"."""
    backup = settings.backup
    if backup.backend == "none":
        return None
    if backup.backend == "s3":
        from archive.storage.s3 import S3Store

        return S3Store(backup.s3_endpoint, backup.s3_bucket, region=backup.s3_region,
                       access_key=backup.s3_access_key, secret_key=settings.backup_s3_secret(),
                       path_style=backup.s3_path_style, object_lock="auto",
                       retention_days=0, timeout=settings.storage.s3_timeout,
                       max_attempts=settings.storage.s3_max_attempts)
    if backup.backend == "local":
        from archive.storage.local import LocalStore

        return LocalStore(settings.backup_local_path)
    raise ConfigError(f"backup.backend: unknown backend {backup.backend!r}")
