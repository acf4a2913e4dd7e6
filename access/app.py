"""The Flask application factory: JSON API, web UI, health and metrics.

Blueprints: ``api`` (``/api/v1``, JSON, OpenAPI 3.1 at ``/api/v1/openapi.json``),
``web`` (server-rendered pages, Vietnamese by default), ``ops`` (``/healthz``,
``/metrics``). Every request's principal is resolved once (:mod:`access.auth`); every
decision goes through :mod:`archive.policy`; errors reach people through the one
table in :func:`register_errors` (RFC 9457 problem details for the API).
"""

from __future__ import annotations

import time
from datetime import timedelta

from flask import Flask, g, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import BadRequest, HTTPException

from access import auth
from archive.errors import (
    AccessDenied,
    ArchiveError,
    DatabaseUnavailable,
    DataKeyDestroyed,
    EncryptionKeyError,
    InputError,
    NotAuthenticated,
    NotFound,
    Refused,
    StorageError,
)
from archive.instance import ArchiveInstance

csrf = CSRFProtect()

# The one table from service errors to HTTP statuses (most specific first).
_STATUS = (
    (DataKeyDestroyed, 410),  # crypto-shredded (R-DESTROY-1): unreadable for good
    (NotFound, 404),
    (InputError, 400),
    (NotAuthenticated, 401),
    (AccessDenied, 403),
    (Refused, 422),  # a rule refused the submission (with its report)
    (DatabaseUnavailable, 503),
    (StorageError, 503),
    (EncryptionKeyError, 503),  # the key folder is missing or unusable here
)

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")


def create_app(instance: ArchiveInstance, *, config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        ARCHIVE=instance,
        SECRET_KEY=auth.load_secret_key(instance),
        SESSION_COOKIE_NAME="kls_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        PERMANENT_SESSION_LIFETIME=timedelta(hours=instance.settings.auth.session_max_hours),
        MAX_CONTENT_LENGTH=_max_upload(instance),
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in _before for cookie-authenticated writes
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session
        BABEL_DEFAULT_LOCALE="vi",
        BABEL_TRANSLATION_DIRECTORIES="translations",
    )
    app.config.update(config or {})
    app.session_interface = auth.ArchiveSessionInterface()
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    csrf.init_app(app)

    # First: every later hook and view sees the principal.
    @app.before_request
    def _before():
        g.started = time.perf_counter()
        if request.endpoint in ("ops.healthz", "ops.metrics", "api.health", "api.openapi",
                                "static", "web.static", "web.verify_rendition",
                                "api.rendition_verification"):
            # Open to all (the verification of a paper rendition too, R-CONV-2):
            # credentials, even malformed ones, are not read.
            return
        auth.load_principal()
        if request.method not in ("GET", "HEAD", "OPTIONS") and g.via != "token":
            if any(not isinstance(key, str) for key in request.form):
                # A multipart part without a name: flask-wtf's token lookup fails on it.
                raise BadRequest("a form field has no name")
            csrf.protect()  # forms and cookie-authenticated API calls

    from access import lifecycle, metrics, ops
    from access.api import api

    lifecycle.load()  # adds the lifecycle routes to the api and web blueprints (#5)
    from access import jobs  # noqa: F401 - adds the job runs' routes (#6, R-SCHED-1)

    metrics.init_app(app)
    app.register_blueprint(ops.bp)
    app.register_blueprint(api)
    try:
        from access.web import init_app as init_web
    except ImportError:  # pragma: no cover - the UI is optional for API-only deployments
        init_web = None
    if init_web is not None:
        init_web(app)

    register_errors(app)

    @app.after_request
    def security_headers(response):
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cache-Control", "no-store")
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if request.is_secure:
            headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    return app


def _max_upload(instance: ArchiveInstance) -> int | None:
    limit = instance.settings.ingest.max_file_size
    return limit + 1024 * 1024 if limit else None


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.blueprint in ("api", "ops") or \
        request.accept_mimetypes.best == "application/json"


def problem(status: int, title: str, detail: str, **extra):
    """An RFC 9457 problem details response."""
    from flask import jsonify

    body = {"type": "about:blank", "title": title, "status": status, "detail": detail,
            **extra}
    response = jsonify(body)
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def status_of(exc: ArchiveError) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 403 if exc.exit_code == 3 else 500


def register_errors(app: Flask) -> None:
    """The one place where errors become responses (and denials reach the audit log)."""

    @app.errorhandler(ArchiveError)
    def archive_error(exc: ArchiveError):
        if isinstance(exc, AccessDenied) and not exc.logged:
            exc.client = exc.client or auth.client_address()
            auth.instance().catalog.log_denial(exc)
        status = status_of(exc)
        message = exc.message
        extra = {}
        if status >= 500:
            # Server-side faults name paths and endpoints: for the operators' log only.
            app.logger.error("archive error (%s): %s", status, exc.message)
            message = ("The archive could not complete the request; the fault was logged "
                       "for the operators.")
        elif isinstance(exc, AccessDenied):
            extra = {"action": exc.denial.action, "target": exc.denial.target,
                     "reason": exc.denial.reason}
        elif hasattr(exc, "to_dict"):
            extra = {k: v for k, v in exc.to_dict().items() if k not in ("error", "message")}
        if not wants_json():
            from access.web import error_page

            return error_page(status, type(exc).__name__, message, **extra)
        response = problem(status, type(exc).__name__, message, **extra)
        if status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="archive"'
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        if not wants_json():
            from access.web import error_page

            return error_page(400, "CSRF", exc.description)
        return problem(400, "CSRF token missing or invalid", exc.description)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if not wants_json():
            from access.web import error_page

            return error_page(exc.code or 500, exc.name, exc.description or "")
        return problem(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        app.logger.exception("unexpected error")
        if not wants_json():
            from access.web import error_page

            return error_page(500, "Internal error", "The request failed; it was logged.")
        return problem(500, "Internal error", "The request failed; it was logged.")
