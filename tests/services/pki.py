"""The test PKI (certomancer) served over HTTP on loopback, once per session.

Fixtures:
- ``pki``: a ``tests.pki.TestPKI`` whose OCSP responder, CRLs and TSA answer at
  ``pki.url_prefix`` (``pki.requests`` counts the requests per path);
- ``signed_pdfs``: a ``tests.pki.factories.SignedPdfFactory`` caching signed PDFs;
- ``tsa_env``: ``archive_env`` with the PKI's TSA and trust root configured.

Without certomancer (the ``test`` extra) the tests that need it are skipped, or fail
with ARCHIVE_REQUIRE_SERVICES=1 (R-SIG-2, R-TS-1).
"""

from __future__ import annotations

import time

import pytest

from tests.services.common import unavailable


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    try:
        import certomancer  # noqa: F401

        from tests.pki.server import serve
    except ImportError as exc:
        unavailable("test PKI", f"certomancer or pyHanko missing ({exc}); "
                    "install the 'test' extra")
    started = time.perf_counter()
    try:
        authority, server = serve(tmp_path_factory.mktemp("pki"))
    except Exception as exc:  # any failure to generate or serve is reported, not raised
        unavailable("test PKI", f"{type(exc).__name__}: {exc}")
    authority.setup_seconds = time.perf_counter() - started
    try:
        yield authority
    finally:
        server.stop()


@pytest.fixture(scope="session")
def signed_pdfs(pki, tmp_path_factory):
    from tests.pki.factories import SignedPdfFactory

    return SignedPdfFactory(pki, tmp_path_factory.mktemp("signed-pdfs"))


@pytest.fixture
def tsa_env(archive_env, pki):
    """``archive_env`` (both configurations) trusting the test PKI's root, with its TSA
    as ``signatures.tsa_url``: archive timestamps and timestamped audit checkpoints
    (R-TS-1, R-AUDIT-1)."""
    import json

    archive_env.env.update({
        "ARCHIVE_SIGNATURES__TRUST_ROOTS": json.dumps([str(pki.trust_roots_path)]),
        "ARCHIVE_SIGNATURES__TSA_URL": pki.tsa_url,
    })
    return archive_env
