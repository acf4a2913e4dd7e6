"""Who is asking: the principal of each request (R-AUTH-1).

A request is authenticated by exactly one of:

* an API token (``Authorization: Bearer kls_...``) of an organisation or system;
* a browser session cookie (a random token; the server keeps its hash, method and
  expiry in ``web_sessions``), opened by password (+ TOTP) or a client certificate.

Client certificates arrive from a TLS-terminating reverse proxy in the header named by
``auth.client_cert_header``, and only from ``auth.trusted_proxies``. The certificate's
chain is validated against the trust roots, then its binding to a person looked up.
"""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from urllib.parse import unquote

from flask import Flask, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface

from archive.errors import InputError
from archive.instance import ArchiveInstance
from archive.principal import ANONYMOUS, Principal

SESSION_KEY = "sid"
PENDING_KEY = "pending"  # password checked, second factor not yet: {"user": id, "at": ts}
PENDING_SECONDS = 300
MAX_CHAIN_BYTES = 64 * 1024  # a client certificate and its CA certificates, as PEM


def instance() -> ArchiveInstance:
    return current_app.config["ARCHIVE"]


def client_address() -> str:
    return request.remote_addr or ""


def load_secret_key(inst: ArchiveInstance) -> bytes:
    """The key signing session cookies: generated once, kept beside the other keys."""
    path = Path(inst.settings.keys_dir) / "web-session.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    try:
        with open(path, "x", encoding="ascii") as handle:
            handle.write(key.hex())
        path.chmod(0o600)
    except FileExistsError:  # another worker wrote it first
        return bytes.fromhex(path.read_text().strip())
    return key


class ArchiveSessionInterface(SecureCookieSessionInterface):
    """Signed cookie holding only the session id; Secure unless plain HTTP to loopback."""

    def get_cookie_secure(self, app: Flask) -> bool:
        mode = app.config["ARCHIVE"].settings.auth.cookie_secure
        if mode != "auto":
            return mode == "always"
        if request.is_secure:
            return True
        host = (request.host or "").rsplit(":", 1)[0].strip("[]")
        return host not in ("127.0.0.1", "localhost", "::1")


def current_principal() -> Principal:
    return g.get("principal", ANONYMOUS)


def current_user():
    return g.get("user")


def load_principal() -> None:
    """Resolve the request's principal into ``g`` (before every request)."""
    from archive.users import (
        authenticate_token,
        principal_for,
        resume_session,
        session_needs_touch,
    )

    g.principal = ANONYMOUS
    g.user = None
    g.via = None
    inst = instance()
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise InputError("Authorization: expected 'Bearer <API token>'")
        with inst.catalog.unit_of_work() as db:
            principal = authenticate_token(db, secret.strip(), clock=inst.clock)
        if principal is None:
            g.invalid_token = True
        else:
            g.principal, g.via = principal, "token"
        return
    sid = session.get(SESSION_KEY)
    if not sid:
        return
    # Read-only first: most requests need no write to resume their session.
    with inst.catalog.unit_of_work(snapshot=True) as db:
        found = resume_session(db, inst.settings, sid, clock=inst.clock, write=False)
        stale = found is None or session_needs_touch(found[1], inst.clock)
    if stale:
        with inst.catalog.unit_of_work() as db:
            found = resume_session(db, inst.settings, sid, clock=inst.clock)
    if found is None:
        session.pop(SESSION_KEY, None)
        return
    user, row = found
    g.principal = principal_for(user, row.method)
    g.user = user
    g.via = "session"
    g.session_method = row.method


def trusted_proxy(inst: ArchiveInstance) -> bool:
    remote = request.remote_addr or ""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    for entry in inst.settings.auth.trusted_proxies:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def presented_certificate() -> bytes | None:
    """The PEM client certificate the trusted proxy passed, or None."""
    inst = instance()
    name = inst.settings.auth.client_cert_header
    if not name or not trusted_proxy(inst):
        return None
    value = request.headers.get(name, "")
    if not value or value == "(null)":
        return None
    return unquote(value).encode("ascii", "replace")


def validate_client_certificate(pem: bytes) -> tuple[str | None, str]:
    """Chain-validate a client certificate now; (SHA-256 fingerprint or None, reason).

    ``pem`` is the client's certificate, optionally followed by CA certificates the
    proxy passes along: those only complete the path to a trust root (a proxy such as
    nginx sends the client's certificate alone, so its issuing CA must then be found
    through the certificate's AIA or be among the trust roots).
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    from archive.certificates import fingerprint_of
    from archive.errors import ArchiveError
    from ingest.signatures import TrustConfig, Validator

    inst = instance()
    try:
        cert, *intermediates = _certificates(pem)
        config = TrustConfig.from_settings(inst.settings.signatures)
    except ArchiveError as exc:
        return None, exc.message
    if not config.trust_roots:
        return None, "no trust roots configured (signatures.trust_roots)"
    with Validator(config) as validator:
        problem = validator.check_certificate(
            cert.public_bytes(Encoding.DER),
            intermediates=[c.public_bytes(Encoding.DER) for c in intermediates])
    if problem:
        return None, f"certificate not valid: {problem}"
    return fingerprint_of(cert), "valid"


def _certificates(data: bytes) -> list:
    """The client's certificate first, then any CA certificates sent after it."""
    from cryptography import x509

    from archive.certificates import load_certificate

    if b"-----BEGIN" not in data:
        return [load_certificate(data)]  # one DER certificate
    if len(data) > MAX_CHAIN_BYTES:
        raise InputError(f"not a certificate: {len(data)} bytes is too large")
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InputError(f"not a certificate: no readable PEM CERTIFICATE block ({exc})") \
            from exc
    if len(certs) > 8:
        raise InputError(f"{len(certs)} certificates: a client certificate and at most 7 CAs")
    return certs
