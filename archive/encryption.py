"""Encryption at rest of classified files (R-CLASS-1): streaming AES-256-GCM.

Each file gets a fresh data key (DEK) from the :class:`~archive.keystore.KeyVault`. The
stored object is the ciphertext followed by the 16-byte GCM tag; one pass over the
plaintext computes the digests of both the plaintext and the stored bytes, so fixity
checks the ciphertext without any key. The associated data binds a ciphertext to its
record and path, so it cannot be moved to another record undetected.

:func:`encrypt_stream` returns the JSON-safe description kept in
``StoredFile.encryption``; the plaintext digests in it are themselves encrypted with the
file's DEK, so the catalog never holds digests of classified content in clear.

GCM authenticates only at the end: :func:`open_decrypting` hands out plaintext before
the tag is checked, and raises :class:`~archive.errors.DecryptionFailed` from the final
read. Callers must treat what they read as untrusted until that read returned the end
of stream without an error (stream to a temporary file, then publish; or abort the
response).
"""

from __future__ import annotations

import io
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.ciphers.algorithms import AES

from archive.digests import CHUNK, DEFAULT_ALGORITHMS, MultiHasher, read_chunks
from archive.errors import DecryptionFailed, InputError
from archive.keystore import KeyVault, b64, unb64

ALGORITHM = "AES-256-GCM"
LAYOUT = "ciphertext||tag"
FORMAT_VERSION = 1
NONCE_BYTES = 12  # 96-bit random nonce, a fresh key per file
TAG_BYTES = 16


@dataclass(frozen=True)
class EncryptionResult:
    """What :func:`encrypt_stream` produced. ``metadata`` goes into
    ``StoredFile.encryption``; ``digests``/``size`` (of the ciphertext) into the
    manifests and ``StoredFile.digests``/``size``. The plaintext values are for the
    caller's checks (e.g. duplicate detection) and must not be stored in clear."""

    metadata: dict
    size: int
    digests: dict[str, str]
    plaintext_size: int
    plaintext_digests: dict[str, str]


def associated_data(record_id: str, path: str) -> str:
    """The identity a ciphertext is bound to: ``<record id>:<path in the bag>``."""
    return f"{record_id}:{path}"


def encrypt_stream(source: BinaryIO, target: BinaryIO, vault: KeyVault, *, aad: str,
                   algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
                   chunk_size: int = CHUNK) -> EncryptionResult:
    """Encrypt ``source`` into ``target`` under a new DEK, one chunk at a time.

    Writes the ciphertext then the tag. If anything fails, the new DEK is destroyed
    (the caller removes what was written to ``target``).
    """
    algorithms = tuple(algorithms)
    data_key = vault.new_data_key()
    try:
        nonce = secrets.token_bytes(NONCE_BYTES)
        encryptor = Cipher(AES(data_key.key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(aad.encode("utf-8"))
        plain = MultiHasher(algorithms)
        stored = MultiHasher(algorithms)
        for chunk in read_chunks(source, chunk_size):
            plain.update(chunk)
            out = encryptor.update(chunk)
            stored.update(out)
            target.write(out)
        tail = encryptor.finalize() + encryptor.tag
        stored.update(tail)
        target.write(tail)
        summary = {"size": plain.size, "digests": plain.hexdigests()}
        sealed_nonce = nonce
        while sealed_nonce == nonce:  # never two messages under one (key, nonce)
            sealed_nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(data_key.key).encrypt(sealed_nonce, _json(summary),
                                              _digests_aad(aad))
    except BaseException:
        vault.destroy_data_key(data_key.dek_id)
        raise
    metadata = {
        "version": FORMAT_VERSION,
        "algorithm": ALGORITHM,
        "dek_id": data_key.dek_id,
        "kek_id": data_key.kek_id,
        "nonce": b64(nonce),
        "aad": aad,
        "layout": LAYOUT,
        "tag_length": TAG_BYTES,
        "plaintext_digests": {"nonce": b64(sealed_nonce), "ciphertext": b64(sealed)},
    }
    return EncryptionResult(metadata=metadata, size=stored.size, digests=stored.hexdigests(),
                            plaintext_size=plain.size, plaintext_digests=summary["digests"])


def encrypt_file(source: str | os.PathLike, target: str | os.PathLike, vault: KeyVault, *,
                 aad: str, algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
                 chunk_size: int = CHUNK) -> EncryptionResult:
    """Encrypt the file ``source`` into a new file ``target`` (mode 0600, refused if it
    exists). On failure ``target`` is removed and the DEK destroyed."""
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise InputError(f"encryption target already exists: {target}") from exc
    try:
        with open(source, "rb") as src, open(fd, "wb") as dst:
            result = encrypt_stream(src, dst, vault, aad=aad, algorithms=algorithms,
                                    chunk_size=chunk_size)
            dst.flush()
            os.fsync(dst.fileno())
    except BaseException:
        os.unlink(target)
        raise
    return result


def open_decrypting(raw: BinaryIO, metadata: dict, size: int, vault: KeyVault, *,
                    aad: str | None = None) -> DecryptingReader:
    """A stream of the plaintext of the ``size`` stored bytes read from ``raw``.

    ``aad``, if given, is the identity the caller expects (``associated_data(record,
    path)``); it must match the catalog's. The GCM tag is checked when the ciphertext
    is exhausted: a mismatch raises :class:`DecryptionFailed` from that final read,
    before end of stream is reported. Until then the output is unauthenticated.
    Raises :class:`~archive.errors.DataKeyDestroyed` / ``KeyMissing`` at once when a
    key is gone.
    """
    nonce, meta_aad = _check_metadata(metadata)
    if aad is not None and aad != meta_aad:
        raise DecryptionFailed(aad, f"the catalog binds this file to {meta_aad!r}, not "
                                    f"{aad!r}")
    if size < TAG_BYTES:
        raise DecryptionFailed(meta_aad, f"{size} bytes cannot hold the "
                                         f"{TAG_BYTES}-byte tag (truncated)")
    key = vault.data_key(metadata["dek_id"]).key
    return DecryptingReader(raw, key=key, nonce=nonce, aad=meta_aad,
                            ciphertext_size=size - TAG_BYTES)


def decrypt_plaintext_digests(metadata: dict, vault: KeyVault) -> dict:
    """``{"size": n, "digests": {algorithm: hex}}`` of the plaintext (authorised use
    only: duplicate detection, verifying a decrypted copy)."""
    _, aad = _check_metadata(metadata)
    sealed = metadata.get("plaintext_digests")
    nonce = unb64(sealed.get("nonce")) if isinstance(sealed, dict) else None
    blob = unb64(sealed.get("ciphertext")) if isinstance(sealed, dict) else None
    if nonce is None or blob is None or len(nonce) != NONCE_BYTES:
        raise DecryptionFailed(aad, "encryption metadata has no valid plaintext_digests")
    key = vault.data_key(metadata["dek_id"]).key
    try:
        return json.loads(AESGCM(key).decrypt(nonce, blob, _digests_aad(aad)))
    except InvalidTag as exc:
        raise DecryptionFailed(aad, "the encrypted plaintext digests do not "
                                    "authenticate") from exc


class DecryptingReader(io.RawIOBase):
    """Reads exactly ``ciphertext_size`` bytes then the tag from ``raw`` and yields the
    plaintext; raises :class:`DecryptionFailed` from the final read if the tag, the
    associated data or the length is wrong."""

    def __init__(self, raw: BinaryIO, *, key: bytes, nonce: bytes, aad: str,
                 ciphertext_size: int):
        super().__init__()
        self._raw = raw
        self._aad = aad
        self._remaining = ciphertext_size
        self._decryptor = Cipher(AES(key), modes.GCM(nonce)).decryptor()
        self._decryptor.authenticate_additional_data(aad.encode("utf-8"))
        self._done = False
        self._failure: DecryptionFailed | None = None
        self.authenticated = False  # True once the tag verified: the output is genuine

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._failure is not None:
            raise self._failure  # a failed stream never turns into a clean end
        if self._done or len(b) == 0:
            return 0
        try:
            return self._decrypt_into(b)
        except DecryptionFailed as exc:
            self._failure = exc
            raise

    def _decrypt_into(self, b) -> int:
        if self._remaining == 0:
            self._finish()
            return 0
        data = self._raw.read(min(len(b), self._remaining))
        if not data:
            raise DecryptionFailed(self._aad, f"stored bytes end {self._remaining + TAG_BYTES}"
                                              " bytes early (truncated)")
        self._remaining -= len(data)
        out = self._decryptor.update(data)
        b[:len(out)] = out
        return len(out)

    def _finish(self) -> None:
        tag = b""
        while len(tag) < TAG_BYTES:
            part = self._raw.read(TAG_BYTES - len(tag))
            if not part:
                raise DecryptionFailed(self._aad, "the authentication tag is truncated")
            tag += part
        try:
            self._decryptor.finalize_with_tag(tag)
        except InvalidTag as exc:
            raise DecryptionFailed(self._aad, "authentication tag mismatch: the stored "
                                              "bytes, the tag or the associated data were "
                                              "altered; discard everything read") from exc
        self._done = True
        self.authenticated = True

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


# ---- internals ----------------------------------------------------------------------


def _check_metadata(metadata: dict) -> tuple[bytes, str]:
    aad = metadata.get("aad") if isinstance(metadata, dict) else None
    if not isinstance(aad, str):
        raise DecryptionFailed("?", "not encryption metadata (no associated data)")
    if metadata.get("algorithm") != ALGORITHM or metadata.get("layout") != LAYOUT \
            or metadata.get("version") != FORMAT_VERSION \
            or metadata.get("tag_length") != TAG_BYTES:
        raise DecryptionFailed(aad, f"unsupported encryption: {metadata.get('algorithm')!r}"
                                    f" layout {metadata.get('layout')!r} version "
                                    f"{metadata.get('version')!r}")
    nonce = unb64(metadata.get("nonce"))
    if nonce is None or len(nonce) != NONCE_BYTES:
        raise DecryptionFailed(aad, "encryption metadata has no valid 96-bit nonce")
    if not isinstance(metadata.get("dek_id"), str):
        raise DecryptionFailed(aad, "encryption metadata names no data key")
    return nonce, aad


def _digests_aad(aad: str) -> bytes:
    # Domain separation: the sealed digests can never pass for file content.
    return f"plaintext-digests|{aad}".encode()


def _json(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True).encode("utf-8")
