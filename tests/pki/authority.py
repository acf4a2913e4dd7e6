"""``TestPKI``: the simulated PKI (``ingest.demo_pki``) with the test profile."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from ingest.demo_pki.authority import (  # noqa: F401 - re-exported for the tests
    BACKDATED_PREFIX,
    PKI,
    CachedKeySigner,
    _certomancer_config,
)
from ingest.demo_pki.config import TSA, Profile, _iso, generate_keys
from tests.pki.config import TEST

# A second TSA whose certificate expires soon (R-TS-1: archive timestamps it made must be
# renewed before that). Same issuer and extensions as the main TSA.
SHORT_TSA = "tsa_short"
SHORT_TSA_VALIDITY = timedelta(days=30)


class TestPKI(PKI):
    """A root CA, an issuing CA, OCSP, CRLs, a TSA and the holders of ``config.HOLDERS``.

    Certificate names are the labels of ``config.HOLDERS`` plus root, interm, ocsp, tsa
    and root2 (the untrusted root), and ``tsa_short``: a second TSA whose certificate
    expires ``SHORT_TSA_VALIDITY`` after generation (``short_tsa_url``).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, url_prefix: str, now: datetime | None = None,
                 profile: Profile = TEST, **kwargs):
        super().__init__(folder, url_prefix, now, profile, **kwargs)
        if kwargs.get("generate", True):
            self._add_short_tsa()

    def _add_short_tsa(self) -> None:
        import yaml

        config = yaml.safe_load(self.config_path.read_text(encoding="utf-8"))
        arch = config["pki-architectures"][self.profile.arch]
        tsa = dict(arch["certs"][TSA])
        tsa.update({"subject": SHORT_TSA, "subject-key": SHORT_TSA, "validity": {
            "valid-from": _iso(self.now - timedelta(days=365)),
            "valid-to": _iso(self.now + SHORT_TSA_VALIDITY)}})
        arch["certs"][SHORT_TSA] = tsa
        arch["entities"][SHORT_TSA] = {
            "common-name": f"Short-lived Time Stamping Authority ({self.profile.mark})"}
        config["keysets"][self.profile.arch]["keys"][SHORT_TSA] = {
            "path": f"{SHORT_TSA}.key.pem"}
        arch["services"]["time-stamping"][SHORT_TSA] = {
            "signing-key": SHORT_TSA, "signing-cert": SHORT_TSA,
            "certs-to-embed": ["interm"]}
        generate_keys(self.folder / "keys", [SHORT_TSA])
        self.config_path.write_text(yaml.safe_dump(config, allow_unicode=True,
                                                   sort_keys=False), encoding="utf-8")
        self.config = _certomancer_config(self.config_path, self.folder)
        self.arch = self.config.get_pki_arch(self.profile.arch)
        self._certs.clear()
        self.cert_path(SHORT_TSA).write_bytes(self.cert_pem(SHORT_TSA))

    @property
    def short_tsa_url(self) -> str:
        """The TSA whose certificate expires ``SHORT_TSA_VALIDITY`` after generation."""
        return f"{self.url_prefix}/{self.profile.arch}/tsa/{SHORT_TSA}"
