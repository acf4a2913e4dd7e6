"""Classified content at ingest (R-CLASS-1): encrypt before packaging, fingerprint with
a key so the catalog never holds a plain digest of classified content.

The payload in the bag is the AES-256-GCM ciphertext (``archive/encryption.py``); its
digests are what the manifests, the catalog and fixity checks use, so fixity needs no
key. Duplicate detection of classified files uses an HMAC of the plaintext SHA-256
under a dedicated vault key instead of the bare digest.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from archive.encryption import EncryptionResult, associated_data, encrypt_file
from archive.keystore import KeyVault
from archive.settings import Settings

FINGERPRINT_MARKER = "FINGERPRINT-KEY"  # names the vault data key used for fingerprints
ENCRYPTED_NAME = "document.enc"  # the bag name of an encrypted original reveals nothing


def vault_for(settings: Settings) -> KeyVault:
    return KeyVault.from_settings(settings)


def _fingerprint_key(vault: KeyVault, *, create: bool) -> bytes | None:
    marker = vault.kek_dir / FINGERPRINT_MARKER
    if not marker.exists():
        if not create:
            return None
        dek = vault.new_data_key()
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            vault.destroy_data_key(dek.dek_id)
        else:
            with os.fdopen(fd, "w") as fh:
                fh.write(dek.dek_id + "\n")
                fh.flush()
                os.fsync(fh.fileno())
    return vault.data_key(marker.read_text().strip()).key


def keyed_fingerprint(vault: KeyVault, sha256_hex: str, *, create: bool = False) -> str | None:
    """HMAC-SHA256 of the plaintext digest under the vault's fingerprint key, or None
    when no classified file was ever archived (and ``create`` is false)."""
    key = _fingerprint_key(vault, create=create)
    if key is None:
        return None
    return hmac.new(key, bytes.fromhex(sha256_hex), hashlib.sha256).hexdigest()


def encrypt_original(vault: KeyVault, staged: Path, record_id: str, bag_path: str,
                     algorithms: tuple[str, ...]) -> tuple[Path, EncryptionResult]:
    """Encrypt the staged original next to it; the ciphertext is bound to its record."""
    target = staged.with_name(staged.name + ".enc")
    result = encrypt_file(staged, target, vault, aad=associated_data(record_id, bag_path),
                          algorithms=algorithms)
    return target, result
