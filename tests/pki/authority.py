"""``TestPKI``: the generated test PKI as seen by tests (certificates, keys, URLs, signers)."""

from __future__ import annotations

import hashlib
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

from tests.pki.config import ARCH, CRL_REPOS, HOLDERS, INFRA_CERTS, OCSP, TSA, write_config

# Path under which the server exposes the TSA with its clock set back (see server.py).
BACKDATED_PREFIX = "/backdated"


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


class TestPKI:
    """A root CA, an issuing CA, OCSP, CRLs, a TSA and the holders of ``config.HOLDERS``.

    Generated into ``folder`` for a server reachable at ``url_prefix`` (the URLs go into
    the certificates' AIA and CRL distribution points). Certificate names are the labels
    of ``config.HOLDERS`` plus root, interm, ocsp, tsa and root2 (the untrusted root).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, url_prefix: str, now: datetime | None = None):
        from certomancer.registry import CertomancerConfig

        self.folder = Path(folder)
        self.url_prefix = url_prefix.rstrip("/")
        self.now = (now or datetime.now(UTC)).replace(microsecond=0)
        self.config_path = write_config(self.folder, self.url_prefix, self.now)
        self.config = CertomancerConfig.from_file(str(self.config_path),
                                                  key_search_dir=str(self.folder))
        self.arch = self.config.get_pki_arch(ARCH)
        self.holders = {holder.label: holder for holder in HOLDERS}
        self.requests = None  # a RequestCounter once served (tests/pki/server.py)
        self.setup_seconds: float | None = None
        self._certs: dict[str, x509.Certificate] = {}
        self._signers: dict[str, CachedKeySigner] = {}
        self._timestampers: dict[bool, HTTPTimeStamper] = {}
        self._lock = threading.Lock()
        cert_dir = self.folder / "certs"
        cert_dir.mkdir(exist_ok=True)
        for name in self.names:
            self.cert_path(name).write_bytes(self.cert_pem(name))

    # ---- certificates and keys -------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [*INFRA_CERTS, *self.holders]

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
        if name == "untrusted":
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
        return f"{self.url_prefix}/{ARCH}/tsa/{TSA}"

    @property
    def backdated_tsa_url(self) -> str:
        """The same TSA (same key and certificate) answering with its clock set back by
        ``config.BACKDATE``: a token from it dates a signature to two days ago."""
        return f"{self.url_prefix}{BACKDATED_PREFIX}/{ARCH}/tsa/{TSA}"

    @property
    def ocsp_url(self) -> str:
        return f"{self.url_prefix}/{ARCH}/ocsp/{OCSP}"

    def crl_url(self, repo: str = "interm") -> str:
        return f"{self.url_prefix}/{ARCH}/crls/{repo}/latest.crl"

    @property
    def crl_urls(self) -> dict[str, str]:
        return {repo: self.crl_url(repo) for repo in CRL_REPOS}

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
