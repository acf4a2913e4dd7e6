"""Paper renditions in the access layer (R-CONV-2): API routes, the public verification
page and the record-page panel.

- ``POST /api/v1/records/{id}/renditions`` (a person's strong session: clerk or
  archivist) makes a rendition and answers the PDF (or its description as JSON);
  ``GET`` lists a record's renditions.
- ``GET /verify/<rendition id>`` (HTML) and ``GET /api/v1/renditions/{id}/verification``
  (JSON) are public: no login, no session, no content; rate-limited per client address
  (``renditions.verify_rate_per_minute``; 429 with Retry-After). The limiter lives in
  the process: with several server processes (gunicorn workers) each keeps its own
  count, so the effective limit is multiplied by their number.
- The record page's panel offers "Print a paper copy" (a form with its CSRF token) and
  lists earlier renditions.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque

from flask import Response, current_app, jsonify, render_template, request
from flask_babel import lazy_gettext as _l

from access import auth
from access.api import _disposition, _require_login, api, record_id_param
from access.auth import client_address
from access.lifecycle import Panel
from access.web import web
from archive import policy
from archive.errors import InputError

# Status words of the verification page, in both languages (R-CONV-2).
STATUS_WORDS = {
    "valid": (_l("Valid"), "Còn hiệu lực", "Valid"),
    "revoked": (_l("Revoked"), "Đã bị thu hồi hiệu lực", "Revoked"),
    "destroyed": (_l("Destroyed"), "Đã bị hủy", "Destroyed"),
    "unknown": (_l("Unknown"), "Không xác định", "Unknown"),
}


# ---- rate limit of the public verification ------------------------------------------


class RateLimiter:
    """At most ``per_minute`` requests per client address in any 60-second window."""

    WINDOW = 60.0
    MAX_CLIENTS = 10000

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def check(self, address: str, now: float) -> int:
        """0 if allowed (and counted), else the seconds to wait."""
        if self.per_minute <= 0:
            return 0
        with self._lock:
            if len(self._seen) > self.MAX_CLIENTS:
                self._forget(now)
            times = self._seen.setdefault(address, deque())
            while times and times[0] <= now - self.WINDOW:
                times.popleft()
            if len(times) >= self.per_minute:
                return max(1, int(times[0] + self.WINDOW - now + 0.999))
            times.append(now)
            return 0

    def _forget(self, now: float) -> None:
        for address in [a for a, t in self._seen.items() if not t or t[-1] <= now - self.WINDOW]:
            del self._seen[address]


def _wait() -> int:
    """Seconds this client must wait before verifying again (0: go ahead, counted)."""
    inst = auth.instance()
    limiter = current_app.extensions.get("rendition_verify_limiter")
    if limiter is None:
        limiter = current_app.extensions.setdefault(
            "rendition_verify_limiter",
            RateLimiter(inst.settings.renditions.verify_rate_per_minute))
    return limiter.check(client_address(), inst.clock.now().timestamp())


def _too_many(wait: int, *, page: bool) -> Response:
    from access.app import problem
    from access.web import error_page

    detail = f"too many verification requests from this address; retry in {wait} s"
    if page:
        body, status = error_page(429, "Too Many Requests", detail)
        response = Response(body, status=status, mimetype="text/html")
    else:
        response = problem(429, "Too Many Requests", detail)
    response.headers["Retry-After"] = str(wait)
    return response


def _verify(rendition_id: str) -> dict:
    from archive.renditions import verification

    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        return verification(db, rendition_id, client=client_address(), clock=inst.clock)


# ---- public verification --------------------------------------------------------------


@web.get("/verify/<rendition_id>")
def verify_rendition(rendition_id: str):
    """The public page behind the QR code: status, and nothing of the content."""
    wait = _wait()
    if wait:
        return _too_many(wait, page=True)
    result = _verify(rendition_id)
    word = STATUS_WORDS[result["status"]]
    return render_template("verify.html", v=result, word=word), \
        404 if result["status"] == "unknown" else 200


@api.get("/renditions/<rendition_id>/verification")
def rendition_verification(rendition_id: str):
    wait = _wait()
    if wait:
        return _too_many(wait, page=False)
    result = _verify(rendition_id)
    try:
        uuid.UUID(rendition_id)
    except ValueError as exc:  # audited above as an unknown rendition
        raise InputError(f"rendition id {rendition_id!r} is not a UUID") from exc
    return jsonify(result)


# ---- making and listing ---------------------------------------------------------------


def produce(record_id: str):
    """Make a rendition as the current principal (policy RENDER, audited)."""
    from access.rendition_pdf import PdfRenderer
    from archive.keystore import KeyVault
    from archive.renditions import produce_rendition

    principal = _require_login()
    inst = auth.instance()
    return produce_rendition(inst.catalog, inst.store, inst.settings, principal,
                             record_id_param(record_id),
                             renderer=PdfRenderer.from_settings(inst.settings),
                             vault=KeyVault.from_settings(inst.settings),
                             client=client_address(), clock=inst.clock)


def pdf_response(produced) -> Response:
    row = produced.rendition
    response = Response(produced.pdf, mimetype="application/pdf", status=201)
    response.headers["Content-Disposition"] = _disposition(f"ban-in-{row.id}.pdf")
    response.headers["X-Rendition-Id"] = row.id
    response.headers["Location"] = row.verify_url
    return response


@api.post("/records/<record_id>/renditions")
def create_rendition(record_id: str):
    from archive.renditions import rendition_to_dict

    produced = produce(record_id)
    best = request.accept_mimetypes.best_match(["application/pdf", "application/json"],
                                               default="application/pdf")
    if best == "application/json":
        response = jsonify(rendition_to_dict(produced.rendition))
        response.status_code = 201
        return response
    return pdf_response(produced)


@api.get("/records/<record_id>/renditions")
def list_record_renditions(record_id: str):
    from archive.renditions import list_renditions, rendition_to_dict

    principal = _require_login()
    inst = auth.instance()
    rid = record_id_param(record_id)
    with inst.catalog.unit_of_work() as db:
        rows = list_renditions(db, principal, rid, client=client_address(), clock=inst.clock)
        return jsonify({"record_id": rid, "renditions": [rendition_to_dict(r) for r in rows]})


@web.post("/records/<record_id>/renditions")
def print_rendition(record_id: str):
    """The panel's "Print" button: the PDF comes back as a download."""
    return pdf_response(produce(record_id))


# ---- the record page's panel ----------------------------------------------------------


def panel_context(db, inst, principal, record) -> dict | None:
    from archive.renditions import list_renditions

    facts = policy.facts_of(record)
    render = policy.decide(principal, policy.RENDER, facts)
    if principal.kind != "user" or not (render or policy.RENDER in
                                        policy.allowed_actions(principal)):
        return None  # neither allowed nor a role that prints: nothing to show
    rows = list_renditions(db, principal, record.id, client=client_address(),
                           clock=inst.clock)
    from access import labels

    return {"record_id": record.id, "allowed": bool(render),
            "denied": None if render else labels.explain_reason(render.reason),
            "renditions": [{"id": r.id, "at": r.created_at, "converter": r.converter,
                            "pages": r.page_count} for r in reversed(rows)]}


PANEL = Panel(template="lifecycle/renditions.html", context=panel_context, order=40)


# ---- OpenAPI --------------------------------------------------------------------------

_RECORD_ID = {"name": "record_id", "in": "path", "required": True,
              "schema": {"type": "string", "format": "uuid"}, "description": "Record id"}
_RENDITION_ID = {"name": "rendition_id", "in": "path", "required": True,
                 "schema": {"type": "string", "format": "uuid"},
                 "description": "Rendition id (printed on the rendition and in its QR code)"}


def _problem(text: str) -> dict:
    return {"description": text, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _json(schema: dict, text: str = "OK") -> dict:
    return {"description": text, "content": {"application/json": {"schema": schema}}}


_ERRORS = {"400": _problem("Bad input"), "401": _problem("No valid credentials"),
           "403": _problem("Refused by the policy (the denial is audited)"),
           "404": _problem("No such record")}

OPENAPI_PATHS: dict = {
    "/api/v1/records/{record_id}/renditions": {
        "get": {"summary": "Paper renditions made of a record (R-CONV-2)",
                "tags": ["renditions"], "parameters": [_RECORD_ID],
                "responses": {"200": _json({
                    "type": "object", "required": ["record_id", "renditions"],
                    "properties": {"record_id": {"type": "string"},
                                   "renditions": {"type": "array", "items": {
                                       "$ref": "#/components/schemas/Rendition"}}}}),
                    **_ERRORS}},
        "post": {"summary": "Print: make a paper rendition with a verification QR code "
                            "(clerk or archivist, login with a one-time code or a "
                            "certificate; session forms send their CSRF token)",
                 "tags": ["renditions"], "parameters": [_RECORD_ID],
                 "responses": {
                     "201": {"description": "The rendition (PDF), or its description "
                                            "when JSON is asked for (Accept)",
                             "content": {
                                 "application/pdf": {"schema": {"type": "string",
                                                                "format": "binary"}},
                                 "application/json": {"schema": {
                                     "$ref": "#/components/schemas/Rendition"}}}},
                     **_ERRORS,
                     "410": _problem("The data key of the classified original was "
                                     "destroyed"),
                     "422": _problem("The original cannot be rendered")}},
    },
    "/api/v1/renditions/{rendition_id}/verification": {
        "get": {"summary": "Public verification of a paper rendition: valid, revoked, "
                           "destroyed or unknown (no content; rate-limited)",
                "tags": ["renditions"], "security": [], "parameters": [_RENDITION_ID],
                "responses": {
                    "200": _json({"$ref": "#/components/schemas/RenditionVerification"}),
                    "400": _problem("Not a rendition id"),
                    "429": {"description": "Too many requests from this address",
                            "headers": {"Retry-After": {"schema": {"type": "integer"},
                                                        "description": "Seconds to wait"}},
                            "content": {"application/problem+json": {"schema": {
                                "$ref": "#/components/schemas/Problem"}}}}}},
    },
}

_STR = {"type": "string"}
OPENAPI_SCHEMAS: dict = {
    "Rendition": {"type": "object",
                  "required": ["id", "record_id", "created_at", "converter", "pages",
                               "sha256", "verify_url"],
                  "properties": {"id": _STR, "record_id": _STR, "created_at": _STR,
                                 "created_by": _STR, "converter": _STR,
                                 "pages": {"type": "integer"}, "size": {"type": "integer"},
                                 "sha256": _STR, "verify_url": _STR}},
    "RenditionVerification": {
        "type": "object", "required": ["rendition_id", "status"],
        "properties": {"rendition_id": _STR,
                       "status": {"enum": ["valid", "revoked", "destroyed", "unknown"]},
                       "rendered_at": _STR, "revoked_at": {"type": ["string", "null"]},
                       "destroyed_at": {"type": ["string", "null"]},
                       "number_symbol": _STR, "issuing_org": {"type": ["string", "null"]},
                       "date": _STR,
                       "limited": {"type": "boolean",
                                   "description": "true: a classified or sealed record, "
                                                  "only the status and times are told"}}},
}
