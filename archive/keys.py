"""The archive's system signing key (Ed25519): signs audit checkpoints (R-AUDIT-1).

The private key is one PEM (PKCS#8) file in ``keys_dir`` (mode 0600, folder 0700),
created once by ``archive init`` and never overwritten. Its public half is written
beside it so verifiers can check checkpoints without the private key.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from archive.errors import ArchiveError, InputError, NotInitialised

PRIVATE_KEY_FILE = "system-ed25519.pem"
PUBLIC_KEY_FILE = "system-ed25519.pub.pem"


class KeyExists(InputError):
    """A system key is already there: keys are never overwritten."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(f"system signing key already exists at {path}: refusing to "
                         "overwrite it (audit checkpoints are signed with it)")


class KeyUnreadable(ArchiveError):
    """The key file exists but cannot be read or is not an Ed25519 private key."""

    exit_code = 2

    def __init__(self, path: Path, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"system signing key {path} cannot be used: {reason}")


def key_path(keys_dir: str | os.PathLike) -> Path:
    return Path(keys_dir) / PRIVATE_KEY_FILE


def generate_system_key(keys_dir: str | os.PathLike) -> Ed25519PrivateKey:
    """Create the system key in ``keys_dir``; refuse if one exists."""
    folder = Path(keys_dir)
    path = folder / PRIVATE_KEY_FILE
    if path.exists():
        raise KeyExists(path)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
    except OSError as exc:
        raise KeyUnreadable(path, f"cannot create folder {folder}: {exc.strerror}") from exc

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    # Write a private temporary file, then link it into place: the link fails if a key
    # appeared meanwhile (never overwritten) and a crash never leaves a half-written key.
    tmp = folder / f".{PRIVATE_KEY_FILE}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, pem)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError as exc:
            raise KeyExists(path) from exc
    except OSError as exc:
        raise KeyUnreadable(path, f"cannot write: {exc.strerror}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()

    public = folder / PUBLIC_KEY_FILE
    with contextlib.suppress(FileNotFoundError):
        public.unlink()
    public.write_text(public_key_pem(key))
    return key


def load_system_key(keys_dir: str | os.PathLike) -> Ed25519PrivateKey:
    path = key_path(keys_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotInitialised(f"system signing key not found at {path}: "
                             "run `archive init`") from exc
    except OSError as exc:
        raise KeyUnreadable(path, exc.strerror or str(exc)) from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyUnreadable(path, f"not a readable unencrypted PEM private key ({exc})") \
            from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyUnreadable(path, f"expected an Ed25519 key, found {type(key).__name__}")
    return key


def _public(key: Ed25519PrivateKey | Ed25519PublicKey) -> Ed25519PublicKey:
    return key.public_key() if isinstance(key, Ed25519PrivateKey) else key


def public_key_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    return _public(key).public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_public_key_pem(pem: str | bytes) -> Ed25519PublicKey:
    """Parse a published public key (for verifying checkpoints elsewhere)."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise InputError(f"not a PEM public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"expected an Ed25519 public key, found {type(key).__name__}")
    return key


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """First 16 hex digits of the SHA-256 of the raw 32-byte public key."""
    raw = _public(key).public_bytes(serialization.Encoding.Raw,
                                    serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]
