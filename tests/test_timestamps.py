"""RFC 3161 archive timestamps (R-TS-1): tokens over bytes, verified offline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from archive.errors import IntegrityError
from ingest.timestamps import LocalTimestamper, verify_token


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_tsa(cn: str = "Test TSA (DEMO)"):
    """A root CA and a TSA certificate it issued (critical timeStamping EKU)."""
    now = datetime.now(UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (x509.CertificateBuilder().subject_name(_name(f"{cn} root"))
            .issuer_name(_name(f"{cn} root")).public_key(root_key.public_key())
            .serial_number(1).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                         False, False), critical=True)
            .sign(root_key, hashes.SHA256()))
    tsa_key = rsa.generate_private_key(65537, 2048)  # pyHanko's in-process TSA is RSA-only
    tsa = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(root.subject)
           .public_key(tsa_key.public_key()).serial_number(2)
           .not_valid_before(now - timedelta(days=1))
           .not_valid_after(now + timedelta(days=365))
           .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                          critical=True)
           .sign(root_key, hashes.SHA256()))

    def a(cert):
        return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))

    key = asn1_keys.PrivateKeyInfo.load(tsa_key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return a(root), a(tsa), key


@pytest.fixture(scope="module")
def tsa():
    return make_tsa()


def test_token_covers_the_bytes_and_is_trusted(tsa):
    root, cert, key = tsa
    stamper = LocalTimestamper(cert, key)
    token = stamper.timestamp(b"manifest bytes")
    stamper.close()
    info = verify_token(token, b"manifest bytes", [root])
    assert info.trusted and info.digest_algorithm == "sha256"
    assert abs((info.time - datetime.now(UTC)).total_seconds()) < 60
    assert "Test TSA" in info.tsa


def test_token_over_other_bytes_is_refused(tsa):
    root, cert, key = tsa
    stamper = LocalTimestamper(cert, key)
    token = stamper.timestamp(b"manifest bytes")
    stamper.close()
    with pytest.raises(IntegrityError):
        verify_token(token, b"manifest bytes, changed", [root])


def test_untrusted_tsa_is_reported(tsa):
    root, cert, key = tsa
    other_root, _, _ = make_tsa("Other")
    stamper = LocalTimestamper(cert, key)
    token = stamper.timestamp(b"x")
    stamper.close()
    assert verify_token(token, b"x", [other_root]).trusted is False


def test_garbage_token_is_refused():
    with pytest.raises(IntegrityError, match="not an RFC 3161"):
        verify_token(b"\x30\x03\x02\x01\x01", b"x", [])


def test_unreachable_tsa_is_a_clear_error():
    from ingest.timestamps import HttpTimestamper, TimestampUnavailable
    from tests.services.common import free_port

    stamper = HttpTimestamper(f"http://127.0.0.1:{free_port()}/tsa", timeout=2)
    try:
        with pytest.raises(TimestampUnavailable, match="timestamp authority"):
            stamper.timestamp(b"x")
    finally:
        stamper.close()


def test_http_tsa_of_the_test_pki_keeps_one_session(pki):
    """Tokens from the real (served) TSA, several over one kept-alive session."""
    from asn1crypto import x509 as asn1_x509

    from ingest.timestamps import HttpTimestamper

    root = asn1_x509.Certificate.load(pki.cert_der("root"))
    stamper = HttpTimestamper(pki.tsa_url)
    try:
        before = pki.requests.tsa
        for i in range(3):
            token = stamper.timestamp(b"manifest %d" % i)
            assert verify_token(token, b"manifest %d" % i, [root]).trusted
        assert pki.requests.tsa == before + 3
    finally:
        stamper.close()
