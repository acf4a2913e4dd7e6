"""RFC 3161 timestamps over seal manifests (R-SEAL-3, R-TS-1), for the surfaces.

The core (:mod:`archive.sealing`) makes no HTTP calls: the CLI and the web app give it
:meth:`SealTimestamps.stamp` (ask ``signatures.tsa_url`` for a token over the manifest
bytes and verify it at once) and :meth:`SealTimestamps.check` (verify a stored token
offline against ``signatures.trust_roots`` at unsealing).
"""

from __future__ import annotations

from asn1crypto import x509 as asn1_x509

from ingest.signatures import TrustConfig
from ingest.timestamps import HttpTimestamper, verify_token


class SealTimestamps:
    """One TSA session for a command or request; close it afterwards."""

    def __init__(self, settings):
        self.settings = settings
        self._stamper: HttpTimestamper | None = None
        self._roots: list | None = None

    @property
    def enabled(self) -> bool:
        """Whether a timestamp authority is configured (``signatures.tsa_url``)."""
        return bool(self.settings.signatures.tsa_url)

    def _trust_roots(self) -> list:
        if self._roots is None:
            self._roots = [asn1_x509.Certificate.load(der) for der in
                           TrustConfig.from_settings(self.settings.signatures).trust_roots]
        return self._roots

    def stamp(self, data: bytes) -> dict:
        """A verified token over ``data``: {"token": DER bytes, "info": dict}."""
        if self._stamper is None:
            section = self.settings.signatures
            self._stamper = HttpTimestamper(section.tsa_url, timeout=section.fetch_timeout)
        token = self._stamper.timestamp(data)
        return {"token": token, "info": verify_token(token, data, self._trust_roots()).to_dict()}

    def check(self, token: bytes, data: bytes) -> dict:
        """The stored token's details; raises IntegrityError when it does not cover
        ``data`` or its signature is broken."""
        return verify_token(token, data, self._trust_roots()).to_dict()

    def close(self) -> None:
        if self._stamper is not None:
            self._stamper.close()
            self._stamper = None

    def __enter__(self) -> SealTimestamps:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
