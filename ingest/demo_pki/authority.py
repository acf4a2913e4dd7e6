"""``PKI``: a generated simulated PKI (certificates, keys, service URLs, pyHanko signers)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from asn1crypto import keys, pem, x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import ECDSA, EllipticCurvePrivateKey
from pyhanko.sign import signers
from pyhanko.sign.general import get_pyca_cryptography_hash
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from ingest.demo_pki.config import CONFIG_NAME, DEMO, OCSP, TSA, Profile, write_config
from ingest.demo_pki.errors import DemoPKIError

# Path under which the server exposes the TSA with its clock set back (see server.py).
BACKDATED_PREFIX = "/backdated"
INFO_NAME = "pki.json"  # what ``PKI.open`` needs to find a generated PKI again


class CachedKeySigner(signers.SimpleSigner):
    """A ``SimpleSigner`` that parses its private key once, not on every signature."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._private_key = serialization.load_der_private_key(self.signing_key.dump(),
                                                               password=None)

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        if isinstance(self._private_key, EllipticCurvePrivateKey):
            hash_algo = get_pyca_cryptography_hash(digest_algorithm)
            return self._private_key.sign(data, ECDSA(hash_algo))
        return super().sign_raw(data, digest_algorithm)


def _certomancer_config(path: Path, folder: Path):
    try:
        from certomancer.registry import CertomancerConfig
    except ImportError as exc:
        raise DemoPKIError(f"the simulated PKI needs certomancer ({exc}); install the "
                           "'demo' extra: pip install -e '.[demo]'") from exc
    return CertomancerConfig.from_file(str(path), key_search_dir=str(folder))


class PKI:
    """A root CA, an issuing CA, OCSP, CRLs, a TSA and the holders of ``profile``.

    Generated into ``folder`` for a server reachable at ``url_prefix`` (the URLs go into
    the certificates' AIA and CRL distribution points); ``PKI.open`` finds it again.
    Certificate names are the holders' labels plus root, interm, ocsp, tsa (and root2,
    the untrusted root, when the profile has it). Certificates are written as PEM under
    ``certs/``, the private keys under ``keys/`` (mode 0600).
    """

    def __init__(self, folder: Path, url_prefix: str, now: datetime | None = None,
                 profile: Profile = DEMO, *, generate: bool = True):
        self.folder = Path(folder)
        self.url_prefix = url_prefix.rstrip("/")
        self.now = (now or datetime.now(UTC)).replace(microsecond=0)
        self.profile = profile
        if generate:
            self.folder.mkdir(parents=True, exist_ok=True)
            os.chmod(self.folder, 0o700)
            self.config_path = write_config(self.folder, self.url_prefix, profile, self.now)
        else:
            self.config_path = self.folder / CONFIG_NAME
        self.config = _certomancer_config(self.config_path, self.folder)
        self.arch = self.config.get_pki_arch(profile.arch)
        self.holders = {holder.label: holder for holder in profile.holders}
        self.requests = None  # a RequestCounter once served (server.py)
        self.setup_seconds: float | None = None
        self._certs: dict[str, x509.Certificate] = {}
        self._signers: dict[str, CachedKeySigner] = {}
        self._timestampers: dict[bool, HTTPTimeStamper] = {}
        self._lock = threading.Lock()
        if generate:
            (self.folder / "certs").mkdir(exist_ok=True)
            for name in self.names:
                self.cert_path(name).write_bytes(self.cert_pem(name))
            info = {"arch": profile.arch, "url_prefix": self.url_prefix,
                    "generated_at": self.now.isoformat()}
            (self.folder / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n",
                                                 encoding="utf-8")

    @classmethod
    def exists(cls, folder: Path) -> bool:
        return (Path(folder) / INFO_NAME).is_file()

    @classmethod
    def open(cls, folder: Path, profile: Profile = DEMO) -> PKI:
        """The PKI generated earlier in ``folder`` (same keys, certificates and URLs)."""
        folder = Path(folder)
        try:
            info = json.loads((folder / INFO_NAME).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise DemoPKIError(f"no simulated PKI in {folder}") from exc
        except (OSError, ValueError) as exc:
            raise DemoPKIError(f"{folder / INFO_NAME} is unreadable: {exc}") from exc
        if info.get("arch") != profile.arch:
            raise DemoPKIError(f"the PKI in {folder} is {info.get('arch')!r}, "
                               f"not {profile.arch!r}")
        pki = cls(folder, info["url_prefix"], datetime.fromisoformat(info["generated_at"]),
                  profile, generate=False)
        for name in pki.names:  # re-issued on load: must be the bytes bound in the registry
            if pki.cert_path(name).read_bytes() != pki.cert_pem(name):
                raise DemoPKIError(f"the certificate {name!r} of the PKI in {folder} came "
                                   "out different when loaded again; generate a new DEMO "
                                   "archive (remove the data folder)")
        return pki

    # ---- certificates and keys -------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [*self.profile.infra_certs, *self.holders]

    def cert(self, name: str) -> x509.Certificate:
        from certomancer.registry import CertLabel

        if name not in self._certs:
            self._certs[name] = self.arch.get_cert(CertLabel(name))
        return self._certs[name]

    def cert_der(self, name: str) -> bytes:
        return self.cert(name).dump()

    def cert_pem(self, name: str) -> bytes:
        return pem.armor("CERTIFICATE", self.cert_der(name))

    def cert_path(self, name: str) -> Path:
        return self.folder / "certs" / f"{name}.cert.pem"

    def key_path(self, name: str) -> Path:
        return self.folder / "keys" / f"{name}.key.pem"

    def key_pem(self, name: str) -> bytes:
        return self.key_path(name).read_bytes()

    def private_key(self, name: str) -> keys.PrivateKeyInfo:
        return self.arch.key_set.get_private_key(name)

    def fingerprint(self, name: str) -> str:
        """SHA-256 of the certificate's DER, lowercase hex (how the archive binds certs)."""
        return hashlib.sha256(self.cert_der(name)).hexdigest()

    def chain(self, name: str) -> list[x509.Certificate]:
        """The CA certificates above ``name``, issuer first (roots included)."""
        holder = self.holders.get(name)
        if holder is not None and holder.case == "untrusted":
            return [self.cert("root2")]
        if name in ("root", "root2"):
            return []
        if name == "interm":
            return [self.cert("root")]
        return [self.cert("interm"), self.cert("root")]

    def identifier(self, name: str) -> str:
        return self.holders[name].identifier

    @property
    def trust_roots_pem(self) -> bytes:
        """PEM of the trusted root (root2 is deliberately not in it)."""
        return self.cert_pem("root")

    @property
    def trust_roots_path(self) -> Path:
        return self.cert_path("root")

    # ---- services ----------------------------------------------------------------------

    @property
    def tsa_url(self) -> str:
        return f"{self.url_prefix}/{self.profile.arch}/tsa/{TSA}"

    @property
    def backdated_tsa_url(self) -> str:
        """The same TSA (same key and certificate) answering with its clock set back by
        ``config.BACKDATE``: a token from it dates a signature to two days ago."""
        return f"{self.url_prefix}{BACKDATED_PREFIX}/{self.profile.arch}/tsa/{TSA}"

    @property
    def ocsp_url(self) -> str:
        return f"{self.url_prefix}/{self.profile.arch}/ocsp/{OCSP}"

    def crl_url(self, repo: str = "interm") -> str:
        return f"{self.url_prefix}/{self.profile.arch}/crls/{repo}/latest.crl"

    @property
    def crl_urls(self) -> dict[str, str]:
        return {repo: self.crl_url(repo) for repo in self.profile.crl_repos}

    # ---- pyHanko objects ---------------------------------------------------------------

    def signer(self, name: str) -> CachedKeySigner:
        """A pyHanko signer for ``name`` (cached: the key is parsed once per session)."""
        with self._lock:
            if name not in self._signers:
                self._signers[name] = CachedKeySigner(
                    signing_cert=self.cert(name), signing_key=self.private_key(name),
                    cert_registry=SimpleCertificateStore.from_certs(self.chain(name)))
            return self._signers[name]

    def timestamper(self, *, backdated: bool = False) -> HTTPTimeStamper:
        """pyHanko's HTTP client for the TSA (cached: it keeps its size-estimate token)."""
        with self._lock:
            if backdated not in self._timestampers:
                url = self.backdated_tsa_url if backdated else self.tsa_url
                self._timestampers[backdated] = HTTPTimeStamper(url, timeout=10)
            return self._timestampers[backdated]

    def validation_context(self, **kwargs) -> ValidationContext:
        """Trust the root only; fetch OCSP/CRL over HTTP unless told otherwise."""
        kwargs.setdefault("allow_fetching", True)
        return ValidationContext(trust_roots=[self.cert("root")], **kwargs)

    @cached_property
    def root(self) -> x509.Certificate:
        return self.cert("root")
