"""``TestPKI``: the simulated PKI (``ingest.demo_pki``) with the test profile."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ingest.demo_pki.authority import (  # noqa: F401 - re-exported for the tests
    BACKDATED_PREFIX,
    PKI,
    CachedKeySigner,
)
from ingest.demo_pki.config import Profile
from tests.pki.config import TEST


class TestPKI(PKI):
    """A root CA, an issuing CA, OCSP, CRLs, a TSA and the holders of ``config.HOLDERS``.

    Certificate names are the labels of ``config.HOLDERS`` plus root, interm, ocsp, tsa
    and root2 (the untrusted root).
    """

    __test__ = False  # not a pytest test class

    def __init__(self, folder: Path, url_prefix: str, now: datetime | None = None,
                 profile: Profile = TEST, **kwargs):
        super().__init__(folder, url_prefix, now, profile, **kwargs)
