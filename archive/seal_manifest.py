"""The seal manifest (R-SEAL-3): what a sealed record held, signed by the archive.

At sealing time the archive writes, under ``seals/<seal-id>/`` in the object store:

- ``manifest.json``: the decision, the sealer, the time and, for every sealed record,
  its current package version (storage key, size, digests of the whole object) and
  every file in it (path, byte range, size, digests); canonical JSON (sorted keys,
  UTF-8), so its bytes are its identity;
- ``manifest.sig``: an Ed25519 signature over those exact bytes with the archive's
  system key (the one that signs audit checkpoints), with the key id;
- ``manifest.tsr``: an RFC 3161 token over the same bytes, when a timestamp authority
  is configured (obtained and verified by the surface: the core makes no HTTP calls).

At unsealing time the manifest is read back, its SHA-256 compared with the catalog,
its signature and token checked, and every listed object re-read against it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from archive.audit import canonical_json, format_time
from archive.errors import ArchiveError, ObjectNotFound
from archive.keys import key_id as compute_key_id

FORMAT = "kho-luu-tru-so/seal-manifest/1"
SIGNATURE_FORMAT = "kho-luu-tru-so/seal-signature/1"
PREFIX = "seals/"
MAX_MANIFEST_BYTES = 64 * 1024 * 1024  # a whole hồ sơ of thousands of records fits


def manifest_key(seal_id: str) -> str:
    return f"{PREFIX}{seal_id}/manifest.json"


def signature_key(seal_id: str) -> str:
    return f"{PREFIX}{seal_id}/manifest.sig"


def timestamp_key(seal_id: str) -> str:
    return f"{PREFIX}{seal_id}/manifest.tsr"


def record_entry(record) -> dict:
    """A sealed record as the manifest lists it: its current package and every file."""
    version = record.versions[-1]
    return {
        "id": record.id,
        "number_symbol": record.number_symbol,
        "file_ref": record.file_ref,
        "status": record.status,
        "package": {"version": version.version, "storage_key": version.storage_key,
                    "size": version.size, "digests": dict(version.digests)},
        "files": [{"path": f.path, "role": f.role, "offset": f.offset, "size": f.size,
                   "digests": dict(f.digests)} for f in version.files],
    }


def build(*, seal_id: str, decision: dict, sealed_at, sealer: dict, legal_hold: bool,
          records: list) -> bytes:
    """The manifest's bytes (canonical JSON)."""
    return canonical_json({
        "format": FORMAT, "seal_id": seal_id, "decision": decision,
        "sealed_at": format_time(sealed_at), "sealer": sealer, "legal_hold": legal_hold,
        "records": [record_entry(r) for r in records],
    })


def sign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """The detached signature document over ``data``."""
    return canonical_json({
        "format": SIGNATURE_FORMAT, "algorithm": "Ed25519", "key_id": compute_key_id(key),
        "manifest_sha256": hashlib.sha256(data).hexdigest(),
        "signature": base64.b64encode(key.sign(data)).decode("ascii"),
    })


def check_signature(data: bytes, document: bytes, public: Ed25519PublicKey) -> str | None:
    """None when ``document`` is a valid signature of ``data`` by ``public``; else why not."""
    try:
        doc = json.loads(document)
        signature = base64.b64decode(doc["signature"], validate=True)
        found_id = str(doc["key_id"])
    except (ValueError, KeyError, TypeError):
        return "the signature file is not readable"
    if found_id != compute_key_id(public):
        return f"signed by key {found_id}, not the archive's system key {compute_key_id(public)}"
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return "the Ed25519 signature does not match the manifest bytes"
    return None


@dataclass
class StoredManifest:
    """What the store holds for a seal, read back for verification."""

    data: bytes | None = None
    signature: bytes | None = None
    token: bytes | None = None
    problems: list[str] = field(default_factory=list)


def read_back(store, seal_id: str) -> StoredManifest:
    out = StoredManifest()
    for attr, key, needed in (("data", manifest_key(seal_id), True),
                              ("signature", signature_key(seal_id), True),
                              ("token", timestamp_key(seal_id), False)):
        try:
            with store.open(key) as stream:
                value = stream.read(MAX_MANIFEST_BYTES + 1)
        except ObjectNotFound:
            if needed:
                out.problems.append(f"{key} is missing from the store")
            continue
        except ArchiveError as exc:
            out.problems.append(f"{key} cannot be read: {exc.message}")
            continue
        if len(value) > MAX_MANIFEST_BYTES:
            out.problems.append(f"{key} is larger than {MAX_MANIFEST_BYTES} bytes")
            continue
        setattr(out, attr, value)
    return out
