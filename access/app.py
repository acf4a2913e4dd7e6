"""The Flask application (thin for now: health and a read-only record list).

The full access layer (authentication, authorisation, UI) is issue #4; until then
the server binds to loopback by default and serves metadata of unclassified
records only (classified ingest is refused in this version). Every request that
reads the catalog is audited with the client address.
"""

from __future__ import annotations

from datetime import date

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from archive.errors import AccessDenied, ArchiveError, InputError, NotFound
from archive.instance import ArchiveInstance
from archive.principal import ANONYMOUS


def create_app(instance: ArchiveInstance) -> Flask:
    app = Flask(__name__)
    app.config["ARCHIVE"] = instance
    app.json.ensure_ascii = False

    @app.get("/healthz")
    def healthz():
        checks = {}
        status = 200
        try:
            with instance.catalog.unit_of_work(snapshot=True) as session:
                session.execute(_select_one())
            checks["database"] = {"ok": True}
        except ArchiveError as exc:
            checks["database"] = {"ok": False, "error": exc.message}
            status = 503
        try:
            instance.store.check()
            checks["storage"] = {"ok": True, "store": instance.store.name}
        except ArchiveError as exc:
            checks["storage"] = {"ok": False, "error": exc.message}
            status = 503
        return jsonify({"status": "ok" if status == 200 else "unavailable",
                        "checks": checks}), status

    @app.get("/api/v1/records")
    def list_records():
        from archive.records import list_records, record_to_dict

        # Until authentication lands (issue #4) only unclassified metadata is served.
        flt = _record_filter(request.args)
        with instance.catalog.unit_of_work() as session:
            total, rows = list_records(session, ANONYMOUS, flt, client=request.remote_addr or "")
            return jsonify({"total": total, "offset": flt.offset, "limit": flt.limit,
                            "records": [record_to_dict(r) for r in rows]})

    @app.get("/api/v1/records/<record_id>")
    def show_record(record_id: str):
        from archive.records import record_to_dict, show_record

        with instance.catalog.unit_of_work() as session:
            record = show_record(session, ANONYMOUS, record_id,
                                 client=request.remote_addr or "")
            if record.classification != "normal":
                raise AccessDenied(str(ANONYMOUS), "view", f"record:{record_id}",
                                   "classified records need an authenticated, cleared user")
            return jsonify(record_to_dict(record, detail=True))

    @app.errorhandler(ArchiveError)
    def archive_error(exc: ArchiveError):
        status = 404 if isinstance(exc, NotFound) else 400 if isinstance(exc, InputError) \
            else 403 if exc.exit_code == 3 else 500
        return _problem(status, type(exc).__name__, exc.message)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _problem(exc.code or 500, exc.name, exc.description or "")

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    return app


def _problem(status: int, title: str, detail: str):
    """RFC 9457 problem details."""
    response = jsonify({"type": "about:blank", "title": title, "status": status,
                        "detail": detail})
    response.status_code = status
    response.mimetype = "application/problem+json"
    return response


def _select_one():
    from sqlalchemy import text

    return text("SELECT 1")


def _record_filter(args):
    from archive.records import RecordFilter

    def _date(name):
        value = args.get(name)
        if not value:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError as exc:
            raise InputError(f"{name}: not a date in YYYY-MM-DD form") from exc

    def _int(name, default, low, high):
        value = args.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError as exc:
            raise InputError(f"{name}: not a whole number") from exc
        if not low <= number <= high:
            raise InputError(f"{name}: must be between {low} and {high}")
        return number

    return RecordFilter(text=args.get("q") or None, doc_type=args.get("type") or None,
                        issuing_org=args.get("org") or None, status=args.get("status") or None,
                        classification="normal",
                        date_from=_date("from"), date_to=_date("to"),
                        limit=_int("limit", 50, 1, 500), offset=_int("offset", 0, 0, 10**9))
