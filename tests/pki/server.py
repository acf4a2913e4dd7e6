"""Serve a ``TestPKI`` over real HTTP on loopback (``ingest.demo_pki.server``)."""

from __future__ import annotations

from ingest.demo_pki.server import (  # noqa: F401 - re-exported for the tests
    FAKE_TIME,
    PKIServer,
    RequestCounter,
)
from ingest.demo_pki.server import serve as _serve
from tests.pki.authority import TestPKI
from tests.pki.config import TEST


def serve(folder, host: str = "127.0.0.1") -> tuple[TestPKI, PKIServer]:
    """Generate a TestPKI in ``folder`` and serve it; the caller stops the server."""
    return _serve(folder, host, profile=TEST, pki_class=TestPKI)
