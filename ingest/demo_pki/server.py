"""Serve a ``PKI`` over real HTTP on loopback with certomancer's Animator.

One werkzeug server (threaded) on 127.0.0.1, bound *before* the PKI is generated (the
URLs go into the certificates), so no other process can take the port in between; a PKI
generated earlier is served again on the port its certificates name. Every request is
counted per path, so tests can prove that OCSP, CRLs and the TSA were really fetched.

The Animator that serves OCSP, CRLs and the TSA follows the real clock and refuses
certomancer's fake-time header. A second Animator answers only TSA requests under
``/backdated``, with its clock set back by ``config.BACKDATE``: see
``PKI.backdated_tsa_url``.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from werkzeug.serving import WSGIRequestHandler, make_server

from ingest.demo_pki.authority import BACKDATED_PREFIX, PKI
from ingest.demo_pki.config import BACKDATE, DEMO, Profile
from ingest.demo_pki.errors import DemoPKIError

FAKE_TIME = "HTTP_X_CERTOMANCER_FAKE_TIME"  # certomancer's X-Certomancer-Fake-Time header


class RequestCounter:
    """Requests received, per path (thread-safe)."""

    def __init__(self):
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, path: str) -> None:
        with self._lock:
            self._counts[path] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def count(self, kind: str | None = None) -> int:
        """Requests whose path has ``/<kind>/`` in it (ocsp, crls, tsa), or all of them."""
        counts = self.snapshot()
        if kind is None:
            return sum(counts.values())
        return sum(n for path, n in counts.items() if f"/{kind}/" in path)

    @property
    def ocsp(self) -> int:
        return self.count("ocsp")

    @property
    def crl(self) -> int:
        return self.count("crls")

    @property
    def tsa(self) -> int:
        return self.count("tsa")


class _QuietRequestHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass  # the RequestCounter keeps count; no access log line per request


class PKIServer:
    """A loopback HTTP server for one ``PKI``: bind, ``mount(pki)``, ``start()``.

    ``port`` 0 lets the OS choose a free port. ``access_log`` prints a line per request.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False):
        self.requests = RequestCounter()
        self._animator = None
        self._backdated = None
        self._arch = ""
        handler = WSGIRequestHandler if access_log else _QuietRequestHandler
        try:
            self._server = make_server(host, port, self._app, threaded=True,
                                       request_handler=handler)
        except OSError as exc:
            raise DemoPKIError(f"cannot serve the simulated PKI on {host}:{port}: "
                               f"{exc.strerror or exc}") from exc
        self.url_prefix = f"http://{host}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    def mount(self, pki: PKI) -> None:
        from certomancer.integrations.animator import Animator, AnimatorArchStore

        store = AnimatorArchStore(pki.config.pki_archs)
        self._animator = Animator(store, with_web_ui=False, allow_time_override=False)
        self._backdated = Animator(store, with_web_ui=False, allow_time_override=True)
        self._arch = pki.profile.arch
        pki.requests = self.requests

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="pki-http", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (``archive demo pki serve``)."""
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        self.requests.add(path)
        environ.pop(FAKE_TIME, None)  # nobody chooses the PKI's clock from outside
        if self._animator is None:
            return _not_found(start_response)
        if path.startswith(BACKDATED_PREFIX + "/"):
            inner = path[len(BACKDATED_PREFIX):]
            if not inner.startswith(f"/{self._arch}/tsa/"):
                return _not_found(start_response)
            environ["PATH_INFO"] = inner
            environ[FAKE_TIME] = (datetime.now(UTC) - BACKDATE).isoformat()
            return self._backdated(environ, start_response)
        return self._animator(environ, start_response)


def _not_found(start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def serve(folder, host: str = "127.0.0.1", profile: Profile = DEMO, port: int = 0,
          pki_class: type[PKI] = PKI) -> tuple[PKI, PKIServer]:
    """Generate a PKI in ``folder`` and serve it; the caller stops the server."""
    server = PKIServer(host, port)
    try:
        pki = pki_class(folder, server.url_prefix, profile=profile)
        server.mount(pki)
        server.start()
    except BaseException:
        server.stop()
        raise
    return pki, server


def serve_existing(pki: PKI, *, access_log: bool = False) -> PKIServer:
    """A server for a PKI generated earlier, on the address its certificates name
    (not started)."""
    address = urlsplit(pki.url_prefix)
    server = PKIServer(address.hostname or "127.0.0.1", address.port or 80,
                       access_log=access_log)
    server.mount(pki)
    return server


@contextlib.contextmanager
def served(folder: Path, profile: Profile = DEMO, port: int = 0) -> Iterator[PKI]:
    """The PKI in ``folder`` (generated on first use, for a server on ``port``, 0 = any
    free port) served on loopback for the duration of the block."""
    if PKI.exists(folder):
        pki = PKI.open(folder, profile)
        server = serve_existing(pki)
        server.start()
    else:
        pki, server = serve(folder, profile=profile, port=port)
    try:
        yield pki
    finally:
        server.stop()
