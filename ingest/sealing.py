"""The parts of sealing (R-SEAL-1..3) that need the ingest side, for the surfaces.

The core (:mod:`archive.sealing`) makes no HTTP calls and builds no packages: the CLI
and the web app give it :meth:`SealTimestamps.stamp` (ask ``signatures.tsa_url`` for an
RFC 3161 token over the manifest bytes and verify it at once, R-TS-1) and
:meth:`SealTimestamps.check` (verify a stored token offline against
``signatures.trust_roots`` at unsealing), and after an unsealing commits they call
:func:`after_unseal`, which writes each record's next AIP version so the package itself
carries the sealing and unsealing events (R-HIST-1).
"""

from __future__ import annotations

from datetime import datetime

from asn1crypto import x509 as asn1_x509

from archive.errors import ArchiveError
from archive.principal import Principal
from ingest.signatures import TrustConfig
from ingest.timestamps import DIGEST, HttpTimestamper, verify_token


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

    def stamp(self, data: bytes, algorithm: str = DIGEST) -> dict:
        """A verified token over ``data``: {"token": DER bytes, "info": dict}."""
        if self._stamper is None:
            section = self.settings.signatures
            self._stamper = HttpTimestamper(section.tsa_url, timeout=section.fetch_timeout)
        token = self._stamper.timestamp(data, algorithm)
        return {"token": token, "info": verify_token(token, data, self._trust_roots()).to_dict()}

    def check(self, token: bytes, data: bytes, at: datetime | None = None) -> dict:
        """The stored token's details (validated as at ``at``, default now); raises
        IntegrityError when it does not cover ``data`` or its signature is broken."""
        return verify_token(token, data, self._trust_roots(), at=at).to_dict()

    def close(self) -> None:
        if self._stamper is not None:
            self._stamper.close()
            self._stamper = None

    def __enter__(self) -> SealTimestamps:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# Who repackages after an unsealing: the system (a preservation action), not the inspector.
REPACKAGER = "sealing:repackage"


def after_unseal(settings, catalog, store, report: dict, *, clock=None,
                 client: str = "") -> dict:
    """Each unsealed record's next AIP version (best effort: a failure, e.g. bytes that
    changed while sealed, is a warning; the unsealing stands)."""
    from ingest.versions import repackage

    out: dict = {"versions": [], "warnings": []}
    for record_id in report.get("records", ()):
        try:
            out["versions"].append(repackage(
                settings, catalog, store, Principal.system(REPACKAGER), record_id,
                reason=f"unsealing of seal {report['seal_id']} ({report['reference']})",
                clock=clock, client=client).to_dict())
        except ArchiveError as exc:
            out["warnings"].append(f"record {record_id}: new AIP version not written "
                                   f"({exc.message}); `archive records repackage` writes it")
    return out
