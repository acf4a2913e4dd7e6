"""Corrections, replacements and withdrawals (R-AMEND-1) and the full record history
(R-HIST-1) in the access layer: API routes, the clerk's form on the record page and the
record-page panel. Drafts are in :mod:`access.lifecycle.drafts` (imported here).
"""

from __future__ import annotations

import json

from flask import Response, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from access import auth
from access.api import _choice, _require_login, api, ingest_upload, record_id_param
from access.auth import client_address
from access.lifecycle import Panel
from access.lifecycle import drafts as _drafts
from access.web import web
from archive import policy
from archive.amendments import KINDS
from archive.errors import AccessDenied, InputError, MetadataInvalid, Refused, SubmissionRefused

KIND_LABELS = {"correction": _l("Correction (đính chính)"),
               "replacement": _l("Replacement (thay thế)"),
               "withdrawal": _l("Withdrawal (thu hồi)")}
# Fields a correction inherits from the original unless the form gives them.
INHERITED = ("doc_type", "issuing_org", "classification", "retention_rule", "fonds",
             "file_ref", "language", "signer", "signer_position")
FORM_FIELDS = ("number_symbol", "date", "summary", "signer", "page_count", "doc_type")


def _amend_upload(upload, metadata: dict, principal, original_id: str, kind: str,
                  reason: str, *, source: str):
    from ingest.amendments import amend

    if upload is None or not upload.filename:
        raise InputError("file: the signed PDF of the new document is required")
    return ingest_upload(upload, metadata, principal, source=source,
                         run=lambda service, path: amend(
                             service, path, metadata, source, original_id=original_id,
                             kind=kind, reason=reason, client=client_address()))


# ---- API ----------------------------------------------------------------------------


@api.post("/records/<record_id>/amendments")
def create_amendment(record_id: str):
    """Ingest a signed correction, replacement or withdrawal of the record."""
    principal = _require_login()
    original_id = record_id_param(record_id)
    kind = _choice(request.form, "kind", KINDS)
    if kind is None:
        raise InputError(f"kind: expected one of {', '.join(KINDS)}")
    raw = request.form.get("metadata", "")
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"metadata: not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise InputError("metadata: expected a JSON object")
    upload = request.files.get("file")
    done = _amend_upload(upload, metadata, principal, original_id, kind,
                         request.form.get("reason", ""), source="metadata")
    return jsonify({**done.to_dict(), "source": upload.filename}), 201


@api.get("/records/<record_id>/links")
def record_links(record_id: str):
    from archive.amendments import links_of

    principal = _require_login()
    rid = record_id_param(record_id)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as session:
        views = links_of(session, principal, rid, client=client_address(), clock=inst.clock)
        return jsonify({"record_id": rid, "links": [v.to_dict() for v in views]})


@api.get("/records/<record_id>/history")
def record_full_history(record_id: str):
    from archive.history import full_history, to_json, to_premis

    principal = _require_login()
    rid = record_id_param(record_id)
    fmt = _choice(request.args, "format", ("json", "premis")) or "json"
    inst = auth.instance()
    with inst.catalog.unit_of_work() as session:
        found = full_history(session, principal, rid, fmt=fmt, client=client_address(),
                             clock=inst.clock)
        if fmt == "premis":
            response = Response(to_premis(found), mimetype="application/xml")
            response.headers["Content-Disposition"] = \
                f'attachment; filename="{rid}-premis.xml"'
            return response
        return jsonify({"record_id": rid, **to_json(found)})


# ---- web: the clerk's form on the record page ---------------------------------------


def form_metadata(form, original: dict) -> dict:
    """The new document's metadata: the form's fields over the original's."""
    data = {k: original[k] for k in INHERITED if original.get(k)}
    for name in FORM_FIELDS:
        value = (form.get(name) or "").strip()
        if value:
            data[name] = value
    pages = data.get("page_count")
    if isinstance(pages, str) and pages.isdigit() and len(pages) < 10:
        data["page_count"] = int(pages)
    return data


@web.post("/records/<record_id>/amend")
def amend_form(record_id: str):
    from archive.records import record_to_dict, show_record

    inst = auth.instance()
    principal = auth.current_principal()
    rid = record_id_param(record_id)
    with inst.catalog.unit_of_work() as db:
        original = record_to_dict(show_record(db, principal, rid, client=client_address(),
                                              clock=inst.clock), detail=True)
    kind = request.form.get("kind", "")
    error, problems, refusal = None, [], None
    try:
        done = _amend_upload(request.files.get("file"), form_metadata(request.form, original),
                             principal, rid, kind, request.form.get("reason", ""),
                             source="form")
        return redirect(url_for("web.record", record_id=done.result.record_id), 303)
    except MetadataInvalid as exc:
        problems = [f"{p.field}: {p.message}" for p in exc.problems]
        error, status = _("Some fields are not valid."), 400
    except SubmissionRefused as exc:
        from access.ingest_form import refusal_view

        refusal, status = refusal_view(exc), 422
        error = _("The new document was not archived: it is returned to the sender.")
    except AccessDenied:
        raise  # the 403 page, with the reason
    except (InputError, Refused) as exc:
        error, status = exc.message, 400 if isinstance(exc, InputError) else 422
    return render_template("lifecycle/amend_result.html", r=original, error=error,
                           problems=problems, refusal=refusal, kinds=KIND_LABELS,
                           values=request.form), status


# ---- the record-page panel ----------------------------------------------------------


def _panel(db, inst, principal, record) -> dict | None:
    from archive.amendments import link_views

    views = link_views(db, principal, record.id)
    may_amend = policy.decide(principal, policy.AMEND, policy.facts_of(record)).allowed
    if not views and not may_amend:
        return None
    return {"successors": [v for v in views if v.direction == "successor"],
            "predecessors": [v for v in views if v.direction == "predecessor"],
            "may_amend": may_amend, "kinds": KIND_LABELS,
            "doc_types": inst.settings.document_types, "record_id": record.id,
            "history_json": url_for("api.record_full_history", record_id=record.id,
                                    format="json"),
            "history_premis": url_for("api.record_full_history", record_id=record.id,
                                      format="premis")}


PANEL = Panel(template="lifecycle/amendments.html", context=_panel, order=40)

_HISTORY_QUERY = {"name": "format", "in": "query", "required": False, "allowEmptyValue": True,
                  "schema": {"type": "string", "enum": ["json", "premis"]},
                  "description": "json (default) or premis (PREMIS 3.0 XML)"}
_RECORD_ID = {"name": "record_id", "in": "path", "required": True,
              "schema": {"type": "string", "format": "uuid"}, "description": "Record id"}


def _problem(text: str) -> dict:
    return {"description": text, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


_ERRORS = {"400": _problem("Bad input"), "401": _problem("No valid credentials"),
           "403": _problem("Refused by the policy (the denial is audited)"),
           "404": _problem("No such record")}

OPENAPI_PATHS: dict = {
    "/api/v1/records/{record_id}/amendments": {
        "post": {
            "summary": "Ingest a signed correction, replacement or withdrawal of the record "
                       "(clerks, strong login; R-AMEND-1)",
            "tags": ["lifecycle"], "parameters": [_RECORD_ID],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file", "metadata", "kind", "reason"],
                "properties": {
                    "file": {"type": "string", "format": "binary"},
                    "metadata": {"type": "string",
                                 "description": "Metadata of the new document, JSON text"},
                    "kind": {"type": "string", "enum": list(KINDS)},
                    "reason": {"type": "string", "minLength": 1, "maxLength": 2000}}}}}},
            "responses": {
                "201": {"description": "Archived and linked", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/AmendResult"}}}},
                **_ERRORS,
                "413": _problem("File too large"),
                "422": _problem("Refused: invalid signatures (with the return-to-sender "
                                "report), or the file is already archived")},
        },
    },
    "/api/v1/records/{record_id}/links": {
        "get": {
            "summary": "Successors and predecessors of the record (R-AMEND-1)",
            "tags": ["lifecycle"], "parameters": [_RECORD_ID],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["record_id", "links"],
                    "properties": {"record_id": {"type": "string"},
                                   "links": {"type": "array", "items": {
                                       "$ref": "#/components/schemas/RecordLink"}}}}}}},
                **_ERRORS},
        },
    },
    "/api/v1/records/{record_id}/history": {
        "get": {
            "summary": "The record's full history as JSON or PREMIS 3.0 XML; accesses for "
                       "auditors (R-HIST-1)",
            "tags": ["lifecycle"], "parameters": [_RECORD_ID, _HISTORY_QUERY],
            "responses": {
                "200": {"description": "The history", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/History"}},
                    "application/xml": {"schema": {"type": "string"}}}},
                **_ERRORS},
        },
    },
    **_drafts.OPENAPI_PATHS,
}

_STR = {"type": "string"}
_STR_NULL = {"type": ["string", "null"]}
OPENAPI_SCHEMAS: dict = {
    "AmendResult": {"type": "object",
                    "required": ["status", "record_id", "original_id", "kind", "reason"],
                    "properties": {"status": _STR, "record_id": _STR, "original_id": _STR,
                                   "kind": {"enum": list(KINDS)}, "reason": _STR,
                                   "source": _STR, "storage_key": _STR}},
    "RecordLink": {"type": "object", "required": ["direction", "kind", "visible"],
                   "properties": {"direction": {"enum": ["successor", "predecessor"]},
                                  "kind": _STR, "visible": {"type": "boolean"},
                                  "created_at": _STR, "created_by": _STR,
                                  "record_id": _STR_NULL, "number_symbol": _STR_NULL,
                                  "summary": _STR_NULL, "status": _STR_NULL,
                                  "reason": _STR_NULL}},
    "History": {"type": "object",
                "required": ["record_id", "record", "events", "links", "accesses_included"],
                "properties": {"record_id": _STR, "record": {"type": "object"},
                               "events": {"type": "array"},
                               "links": {"type": "array",
                                         "items": {"$ref": "#/components/schemas/RecordLink"}},
                               "draft": {"type": ["object", "null"]},
                               "revocations": {"type": "array"}, "seals": {"type": "array"},
                               "renditions": {"type": "array"},
                               "accesses_included": {"type": "boolean"},
                               "accesses": {"type": "array"}}},
    **_drafts.OPENAPI_SCHEMAS,
}
