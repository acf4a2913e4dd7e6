"""Serve a ``TestPKI`` over real HTTP on loopback with certomancer's Animator.

One werkzeug server (threaded) on 127.0.0.1, bound to an OS-chosen port *before* the PKI
is generated (the URLs go into the certificates), so no other process can take the port
in between. Every request is counted per path, so tests can prove that OCSP, CRLs and
the TSA were really fetched.

The Animator that serves OCSP, CRLs and the TSA follows the real clock and refuses
certomancer's fake-time header. A second Animator answers only TSA requests under
``/backdated``, with its clock set back by ``config.BACKDATE``: see ``TestPKI.backdated_tsa_url``.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

from werkzeug.serving import make_server

from tests.pki.authority import BACKDATED_PREFIX, TestPKI
from tests.pki.config import ARCH, BACKDATE

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


class PKIServer:
    """A loopback HTTP server for one ``TestPKI``: bind, ``mount(pki)``, ``start()``."""

    def __init__(self, host: str = "127.0.0.1"):
        self.requests = RequestCounter()
        self._animator = None
        self._backdated = None
        self._server = make_server(host, 0, self._app, threaded=True)
        self.url_prefix = f"http://{host}:{self._server.server_port}"
        self._thread: threading.Thread | None = None

    def mount(self, pki: TestPKI) -> None:
        from certomancer.integrations.animator import Animator, AnimatorArchStore

        store = AnimatorArchStore(pki.config.pki_archs)
        self._animator = Animator(store, with_web_ui=False, allow_time_override=False)
        self._backdated = Animator(store, with_web_ui=False, allow_time_override=True)
        pki.requests = self.requests

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="test-pki-http", daemon=True)
        self._thread.start()

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
            if not inner.startswith(f"/{ARCH}/tsa/"):
                return _not_found(start_response)
            environ["PATH_INFO"] = inner
            environ[FAKE_TIME] = (datetime.now(UTC) - BACKDATE).isoformat()
            return self._backdated(environ, start_response)
        return self._animator(environ, start_response)


def _not_found(start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found\n"]


def serve(folder, host: str = "127.0.0.1") -> tuple[TestPKI, PKIServer]:
    """Generate a TestPKI in ``folder`` and serve it; the caller stops the server."""
    server = PKIServer(host)
    try:
        pki = TestPKI(folder, server.url_prefix)
        server.mount(pki)
        server.start()
    except BaseException:
        server.stop()
        raise
    return pki, server
