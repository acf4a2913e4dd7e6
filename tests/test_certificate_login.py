"""Login with an X.509 client certificate through a TLS-terminating proxy (R-AUTH-1,
R-ID-1, R-AUDIT-1), against the test PKI served on loopback (OCSP and CRLs fetched).

The proxy passes the verified certificate as URL-encoded PEM (nginx's
``$ssl_client_escaped_cert``) in ``auth.client_cert_header``; only requests from
``auth.trusted_proxies`` may set it. The archive validates the chain to
``signatures.trust_roots`` now (validity, revocation, key usage), then looks up the
person the certificate is bound to in its registry (by SHA-256 fingerprint, never by
names). A certificate login is strong: it may read classified records as cleared.
"""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import quote

import pytest
from sqlalchemy import select

from archive.models import AuditEntry
from tests.accounts import WebArchive

pytestmark = pytest.mark.services

HEADER = "X-SSL-Client-Cert"
PROXY = "127.0.0.1"  # the test client's address: the trusted proxy
ELSEWHERE = "192.0.2.7"  # a client that is not the proxy


@pytest.fixture
def web(local_archive, pki):
    archive = WebArchive(local_archive, env={
        "ARCHIVE_AUTH__CLIENT_CERT_HEADER": HEADER,
        "ARCHIVE_AUTH__TRUSTED_PROXIES": json.dumps([f"{PROXY}/32", "::1"]),
        "ARCHIVE_SIGNATURES__TRUST_ROOTS": json.dumps([str(pki.trust_roots_path)]),
        "ARCHIVE_SIGNATURES__ALLOW_FETCHING": "true",
        "ARCHIVE_SIGNATURES__REVOCATION_MODE": "require",
    })
    yield archive
    archive.close()


def _person_with_certificate(web: WebArchive, pki, holder: str, username: str, *,
                             role: str = "clerk", clearance: str = "normal") -> None:
    """A user for the PKI holder's person, with the holder's certificate bound to it."""
    from archive.certificates import bind_certificate

    web.add_user(username, role, clearance, person=pki.identifier(holder))
    with web.db() as db:
        bind_certificate(db, web.instance.settings, web.operator, pki.identifier(holder),
                         pki.cert_pem(holder), clock=web.clock)


def _chain(pki, holder: str) -> bytes:
    """The holder's certificate followed by the CA certificates above it, as PEM."""
    from asn1crypto import pem

    return pki.cert_pem(holder) + b"".join(pem.armor("CERTIFICATE", ca.dump())
                                           for ca in pki.chain(holder))


def _present(web: WebArchive, pem: bytes, *, address: str = PROXY, client=None):
    client = client or web.client()
    response = client.get("/login/certificate", headers={HEADER: quote(pem.decode(), safe="")},
                          environ_base={"REMOTE_ADDR": address})
    return client, response


def _entries(web: WebArchive, **where) -> list[AuditEntry]:
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        for name, value in where.items():
            stmt = stmt.where(getattr(AuditEntry, name) == value)
        rows = list(db.scalars(stmt))
        db.expunge_all()
    return rows


def test_a_bound_certificate_from_the_proxy_opens_a_strong_session(web, pki):
    _person_with_certificate(web, pki, "an", "an", clearance="mat")
    client, response = _present(web, _chain(pki, "an"))
    assert response.status_code == 302, response.data
    assert "/login" not in response.headers["Location"]
    me = client.get("/api/v1/me").get_json()
    assert (me["principal"], me["method"], me["strong"]) == ("user:an", "certificate", True)
    assert me["clearance"] == "mat"

    [accepted] = _entries(web, action="auth.certificate")
    assert accepted.actor == "user:an" and accepted.outcome == "ok"
    assert accepted.detail["fingerprint"] == pki.fingerprint("an")
    assert _entries(web, action="auth.session-start")[-1].detail == {"method": "certificate"}

    # Strong: a cleared user reads a classified record, as with a one-time code.
    pdf = web.aenv.sample("mat.pdf", text="NOI DUNG MAT", classification="mat")
    rid = web.aenv.json("ingest", str(pdf))["results"][0]["record_id"]
    assert client.get(f"/api/v1/records/{rid}/original").data == pdf.read_bytes()

    # The header alone logs nobody in on other requests: only /login/certificate reads it.
    other = web.client().get("/api/v1/me", headers={HEADER: quote(_chain(pki, "an").decode())})
    assert other.status_code == 401


def test_the_client_certificate_alone_needs_its_issuing_ca_among_the_trust_roots(
        local_archive, pki):
    """nginx passes the client's certificate without its CA certificates: the path to the
    root is then built only if the issuing CA is known (here: among the trust roots; the
    test PKI's certificates name no CA issuer URL to fetch it from)."""
    trusting = {"ARCHIVE_AUTH__CLIENT_CERT_HEADER": HEADER,
                "ARCHIVE_AUTH__TRUSTED_PROXIES": json.dumps([PROXY]),
                "ARCHIVE_SIGNATURES__ALLOW_FETCHING": "true"}
    web = WebArchive(local_archive, env={
        **trusting, "ARCHIVE_SIGNATURES__TRUST_ROOTS": json.dumps([str(pki.trust_roots_path)])})
    try:
        _person_with_certificate(web, pki, "an", "an")
        _, response = _present(web, pki.cert_pem("an"))
        assert response.status_code == 401
        [refusal] = _entries(web, action="auth.login")
        assert "PathBuildingError" in refusal.detail["reason"]
    finally:
        web.close()
    web = WebArchive(local_archive, env={
        **trusting, "ARCHIVE_SIGNATURES__TRUST_ROOTS": json.dumps(
            [str(pki.trust_roots_path), str(pki.cert_path("interm"))])})
    try:
        client, response = _present(web, pki.cert_pem("an"))
        assert response.status_code == 302
        assert client.get("/api/v1/me").get_json()["method"] == "certificate"
    finally:
        web.close()


def test_the_header_is_ignored_unless_it_comes_from_a_trusted_proxy(web, pki):
    _person_with_certificate(web, pki, "an", "an")
    client, response = _present(web, _chain(pki, "an"), address=ELSEWHERE)
    assert response.status_code == 401
    assert client.get("/api/v1/me", environ_base={"REMOTE_ADDR": ELSEWHERE}).status_code == 401
    assert not _entries(web, action="auth.certificate")
    assert not _entries(web, action="auth.session-start")
    # From the proxy over IPv6 it is accepted.
    client, response = _present(web, _chain(pki, "an"), address="::1")
    assert response.status_code == 302


def test_without_the_setting_certificate_login_is_off(local_archive, pki):
    web = WebArchive(local_archive, env={
        "ARCHIVE_SIGNATURES__TRUST_ROOTS": json.dumps([str(pki.trust_roots_path)])})
    try:
        _person_with_certificate(web, pki, "an", "an")
        _, response = _present(web, _chain(pki, "an"))
        assert response.status_code == 401
        assert not _entries(web, action="auth.certificate")
    finally:
        web.close()


@pytest.mark.parametrize("case, reason", [
    ("untrusted", "certificate not valid"),  # its own root sent along is not trusted
    ("revoked", "certificate not valid"),  # revoked by its CA (OCSP/CRL)
    ("expired", "certificate not valid"),
    ("registry-revoked", "certificate revoked in the registry"),
    ("unbound", "certificate not bound to any person"),
    ("no-login", "no login for the certificate's person"),
    ("garbage", "not"),
])
def test_refused_certificates_are_audited(web, pki, case, reason):
    from archive.agents import register_agent
    from archive.certificates import bind_certificate, revoke_certificate

    holder = {"untrusted": "untrusted", "revoked": "revoked", "expired": "expired",
              "registry-revoked": "cuong", "unbound": "binh", "no-login": "binh",
              "garbage": "an"}[case]
    if case in ("untrusted", "revoked", "expired", "registry-revoked"):
        _person_with_certificate(web, pki, holder, "nguoi")
    if case == "registry-revoked":
        with web.db() as db:
            revoke_certificate(db, web.instance.settings, web.operator,
                               pki.fingerprint(holder),
                               web.clock.now() - timedelta(minutes=5), "khóa bị lộ",
                               clock=web.clock)
    if case == "no-login":  # bound to a registered person who has no login
        with web.db() as db:
            register_agent(db, web.instance.settings, web.operator, kind="person",
                           identifier=pki.identifier(holder), name="Trần Thị Bình")
            bind_certificate(db, web.instance.settings, web.operator,
                             pki.identifier(holder), pki.cert_pem(holder), clock=web.clock)
    pem = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n" \
        if case == "garbage" else _chain(pki, holder)

    client, response = _present(web, pem)
    assert response.status_code == 401, (case, response.status_code)
    assert client.get("/api/v1/me").status_code == 401
    assert not _entries(web, action="auth.session-start")
    [refusal] = [e for e in _entries(web, action="auth.login") if e.outcome != "ok"]
    assert refusal.outcome == "failed" and refusal.detail["step"] == "certificate"
    assert refusal.detail["reason"].startswith(reason), refusal.detail
    assert refusal.client == PROXY


def test_a_locked_account_cannot_log_in_with_its_certificate(web, pki):
    _person_with_certificate(web, pki, "an", "an")
    assert web.aenv.invoke("users", "lock", "an", "--reason", "thẻ bị mất").exit_code == 0
    client, response = _present(web, _chain(pki, "an"))
    assert response.status_code == 401
    assert client.get("/api/v1/me").status_code == 401
    [refusal] = _entries(web, action="auth.login", outcome="denied")
    assert refusal.actor == "user:an" and refusal.detail["reason"] == "account locked"
