"""The issuing organisations' signing keys for digitised copies (R-CONV-1, Art. 12.5).

A port with two implementations, chosen by ``[digitisation]``:

- :class:`KeyFiles`: ``<key_dir>/<organisation identifier>.key.pem`` (PKCS#8 or
  traditional PEM, unencrypted, kept 0600 outside the repository) with its
  ``.cert.pem`` and optional ``.chain.pem`` (the CA certificates above it), signed
  with pyHanko's ``SimpleSigner``;
- :class:`Pkcs11Keys`: a key on a PKCS#11 token (an HSM, a USB token, SoftHSM2 in the
  tests) labelled with the organisation identifier, through ``pyhanko.sign.pkcs11``;
  the certificate is ``<key_dir>/<id>.cert.pem`` or else the token's object of the same
  label, and ``<key_dir>/<id>.chain.pem`` the CA certificates above it (optional).

Either yields a :class:`SigningKey`: a pyHanko signer and the certificate, whose
SHA-256 fingerprint must be bound to the organisation in the registry.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from asn1crypto import x509
from pyhanko.sign import signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from archive.errors import InputError, Refused
from archive.settings import Settings

# An organisation identifier becomes a file name: nothing that could leave the folder.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class SigningKeyMissing(Refused):
    """No usable signing key for the organisation: the message names what is expected."""


@dataclass
class SigningKey:
    organisation: str
    signer: signers.Signer
    certificate: x509.Certificate
    source: str  # "file" | "pkcs11"
    location: str  # the key file, or the token and label

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.certificate.dump()).hexdigest()

    @property
    def subject(self) -> str:
        return self.certificate.subject.human_friendly


class OrganisationKeys(Protocol):
    def open(self, organisation: str) -> contextlib.AbstractContextManager[SigningKey]:
        """The organisation's signing key for the duration of the ``with`` block."""


def key_dir(settings: Settings) -> Path:
    configured = settings.digitisation.key_dir
    return Path(configured).expanduser().resolve() if configured else \
        settings.data_dir / "keys" / "organisations"


def organisation_keys(settings: Settings) -> OrganisationKeys:
    """The configured implementation: a PKCS#11 token when a module is set, else files."""
    if settings.digitisation.pkcs11_module:
        return Pkcs11Keys(settings)
    return KeyFiles(key_dir(settings))


def _safe(organisation: str) -> str:
    if not _SAFE_ID.fullmatch(organisation or ""):
        raise InputError(f"organisation identifier {organisation!r} cannot name a key")
    return organisation


def _load_certs(path: Path) -> list[x509.Certificate]:
    from pyhanko.keys import load_certs_from_pemder

    try:
        return list(load_certs_from_pemder([str(path)]))
    except (OSError, ValueError, TypeError) as exc:
        raise SigningKeyMissing(f"cannot read the certificate file {path}: {exc}") from exc


def _same_public_key(key, cert: x509.Certificate) -> bool:
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_der_private_key(key.dump(), password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public == cert.public_key.dump()


class KeyFiles:
    """Key, certificate and chain as PEM files named after the organisation."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def paths(self, organisation: str) -> tuple[Path, Path, Path]:
        name = _safe(organisation)
        return (self.folder / f"{name}.key.pem", self.folder / f"{name}.cert.pem",
                self.folder / f"{name}.chain.pem")

    @contextlib.contextmanager
    def open(self, organisation: str) -> Iterator[SigningKey]:
        from pyhanko.keys import load_private_key_from_pemder

        key_path, cert_path, chain_path = self.paths(organisation)
        missing = [str(p) for p in (key_path, cert_path) if not p.is_file()]
        if missing:
            raise SigningKeyMissing(
                f"no signing key of the organisation {organisation}: expected "
                f"{' and '.join(missing)} (see docs/digitisation.md)")
        try:
            key = load_private_key_from_pemder(str(key_path), passphrase=None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningKeyMissing(f"cannot read the signing key {key_path} (an "
                                    f"unencrypted PEM private key is expected): {exc}"
                                    ) from exc
        certs = _load_certs(cert_path)
        if not certs:
            raise SigningKeyMissing(f"no certificate in {cert_path}")
        cert = certs[0]
        if not _same_public_key(key, cert):
            raise SigningKeyMissing(f"the key {key_path} does not belong to the certificate "
                                    f"{cert_path}")
        chain = [*certs[1:], *(_load_certs(chain_path) if chain_path.is_file() else [])]
        signer = signers.SimpleSigner(signing_key=key, signing_cert=cert,
                                      cert_registry=SimpleCertificateStore.from_certs(chain))
        yield SigningKey(organisation, signer, cert, "file", str(key_path))


class Pkcs11Keys:
    """A PKCS#11 token holding a key labelled with each organisation's identifier."""

    def __init__(self, settings: Settings):
        section = settings.digitisation
        self.module = section.pkcs11_module
        self.token_label = section.pkcs11_token_label
        self.pin_file = section.pkcs11_pin_file
        self.folder = key_dir(settings)

    def _pin(self) -> str | None:
        if not self.pin_file:
            return None
        try:
            return Path(self.pin_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SigningKeyMissing(f"cannot read digitisation.pkcs11_pin_file "
                                    f"{self.pin_file}: {exc.strerror}") from exc

    @contextlib.contextmanager
    def open(self, organisation: str) -> Iterator[SigningKey]:
        from pkcs11 import PKCS11Error as LibError
        from pyhanko.sign import pkcs11 as p11
        from pyhanko.sign.general import SigningError

        label = _safe(organisation)
        where = f"PKCS#11 token {self.token_label or '(first)'} of {self.module}"
        criteria = p11.TokenCriteria(label=self.token_label) if self.token_label else None
        try:
            session = p11.open_pkcs11_session(self.module, token_criteria=criteria,
                                              user_pin=self._pin())
        except (LibError, p11.PKCS11Error, OSError, RuntimeError) as exc:
            raise SigningKeyMissing(f"cannot open the {where}: {exc}") from exc
        try:
            cert_file = self.folder / f"{label}.cert.pem"
            chain_file = self.folder / f"{label}.chain.pem"
            certs = _load_certs(cert_file) if cert_file.is_file() else []
            chain = [*certs[1:], *(_load_certs(chain_file) if chain_file.is_file() else [])]
            try:
                signer = p11.PKCS11Signer(
                    session, key_label=label, cert_label=None if certs else label,
                    signing_cert=certs[0] if certs else None, ca_chain=chain or None)
                cert = signer.signing_cert  # fetched from the token when not given
                if cert.public_key.algorithm == "ec":
                    # Hash here, sign raw on the token: many tokens (SoftHSM2 among
                    # them) have CKM_ECDSA but not the hash-then-sign ECDSA mechanisms.
                    signer = p11.PKCS11Signer(session, key_label=label, signing_cert=cert,
                                              ca_chain=chain or None,
                                              use_raw_mechanism=True)
            except (LibError, p11.PKCS11Error, SigningError) as exc:
                raise SigningKeyMissing(
                    f"no signing key of the organisation {organisation} on the {where}: "
                    f"expected a private key labelled {label!r} and its certificate (an "
                    f"object labelled {label!r} or {cert_file}): {exc}") from exc
            yield SigningKey(organisation, signer, cert, "pkcs11", f"{where}, label {label}")
        finally:
            with contextlib.suppress(LibError, OSError):
                session.close()
