"""The OpenAPI 3.1 description of ``/api/v1`` (served at ``/api/v1/openapi.json``).

Written by hand next to the views in :mod:`access.api`; ``tests/test_openapi.py``
checks that every route is described and every described path exists, and fuzzes
the API from this document (schemathesis).
"""

from __future__ import annotations

from typing import Any

from access import jobs, lifecycle
from archive import __version__ as VERSION

_STR = {"type": "string"}
_STR_NULL = {"type": ["string", "null"]}
_INT = {"type": "integer"}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _problem_response(text: str) -> dict:
    return {"description": text,
            "content": {"application/problem+json": {"schema": _ref("Problem")}}}


_ERRORS = {
    "400": _problem_response("Bad input (every problem named)"),
    "401": _problem_response("No valid credentials"),
    "403": _problem_response("Refused by the policy (the denial is audited)"),
}


def _json(schema: dict, text: str = "OK") -> dict:
    return {"description": text, "content": {"application/json": {"schema": schema}}}


def _query(name: str, schema: dict, text: str) -> dict:
    # Every query parameter sent empty counts as left out (as an HTML form sends it).
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "allowEmptyValue": True, "description": text}


_RECORD_ID = {"name": "record_id", "in": "path", "required": True,
              "schema": {"type": "string", "format": "uuid"}, "description": "Record id"}
_PAGE = [_query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Page size"),
         _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9}, "First row")]
_INSTANT = {"type": "string", "maxLength": 40,
            "anyOf": [{"format": "date"}, {"format": "date-time"}]}
_AUDIT_FILTERS = [
    _query("actor", {"type": "string", "maxLength": 200}, "Principal, e.g. user:an"),
    _query("action", {"type": "string", "maxLength": 64},
           "Action, exact or a prefix ending in *"),
    _query("outcome", {"type": "string", "enum": ["ok", "denied", "failed", "not_found",
                                                  "refused", "duplicate"]},
           "Outcome"),
    _query("target", {"type": "string", "maxLength": 500}, "Target, e.g. record:<id>"),
    _query("from", _INSTANT, "From this date (YYYY-MM-DD) or RFC 3339 time with offset"),
    _query("to", _INSTANT, "Until this date (inclusive) or time"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size"),
    _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9}, "First row"),
]


def _get(summary: str, ok: dict, *, params: list | None = None, tag: str,
         errors: tuple[str, ...] = ("400", "401", "403"), extra: dict | None = None) -> dict:
    responses = {"200": ok, **{code: _ERRORS[code] for code in errors}}
    responses.update(extra or {})
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        op["parameters"] = params
    return op


def _not_found() -> dict:
    return {"404": _problem_response("No such record")}


def document() -> dict:
    records_params = [
        _query("q", {"type": "string", "maxLength": 200},
               "Full text in the summary (trích yếu) or number (số, ký hiệu)"),
        _query("type", {"type": "string", "maxLength": 50}, "Document type code"),
        _query("org", {"type": "string", "maxLength": 64}, "Issuing organisation identifier"),
        _query("classification", {"type": "string", "enum": ["normal", "mat", "toi-mat"]},
               "Classification"),
        _query("status", {"type": "string", "enum": ["active", "revoked", "destroyed"]},
               "Status"),
        _query("from", {"type": "string", "format": "date"}, "Document date from"),
        _query("to", {"type": "string", "format": "date"}, "Document date until"),
        *_PAGE,
    ]
    paths = {
        "/api/v1/records": {
            "get": _get("Search and list records the caller may see",
                        _json(_ref("RecordPage")), params=records_params, tag="records"),
            "post": {
                "summary": "Ingest one signed document (clerks; token scope records:ingest)",
                "tags": ["records"],
                "requestBody": {"required": True, "content": {"multipart/form-data": {
                    "schema": {"type": "object", "required": ["file", "metadata"],
                               "properties": {
                                   "file": {"type": "string", "format": "binary"},
                                   "metadata": {"type": "string",
                                                "description": "Descriptive metadata "
                                                               "(R-META-1) as JSON text"}}},
                }}},
                "responses": {
                    "201": _json(_ref("IngestResult"), "Archived"),
                    "200": _json(_ref("IngestResult"), "Already archived (duplicate)"),
                    **_ERRORS,
                    "413": _problem_response("File too large"),
                    "422": _problem_response("Refused with a return-to-sender report "
                                             "(invalid or missing signature ...)"),
                },
            },
        },
        "/api/v1/records/{record_id}": {
            "get": _get("Record metadata, package versions and digests",
                        _json(_ref("RecordDetail")), params=[_RECORD_ID], tag="records",
                        extra=_not_found()),
        },
        "/api/v1/records/{record_id}/signatures": {
            "get": _get("Signature validation report kept at ingest",
                        _json({"type": "object", "required": ["record_id", "report"],
                               "properties": {"record_id": _STR,
                                              "report": {"type": ["object", "null"]}}}),
                        params=[_RECORD_ID], tag="records", extra=_not_found()),
        },
        "/api/v1/records/{record_id}/events": {
            "get": _get("Processing history (PREMIS events, R-HIST-1)",
                        _json({"type": "object", "required": ["record_id", "events"],
                               "properties": {"record_id": _STR,
                                              "events": {"type": "array",
                                                         "items": _ref("Event")}}}),
                        params=[_RECORD_ID], tag="records", extra=_not_found()),
        },
        "/api/v1/records/{record_id}/original": {
            "get": _get("Download the original, digests verified while streaming",
                        {"description": "The original file",
                         "content": {"application/pdf": {"schema": {
                             "type": "string", "format": "binary"}}}},
                        params=[_RECORD_ID], tag="records", extra={
                            **_not_found(), "410": _problem_response(
                                "The data key of the classified original was destroyed "
                                "(crypto-shredding): it can never be read again")}),
        },
        "/api/v1/records/{record_id}/aip": {
            "get": _get("Download the stored AIP (BagIt tar), verified while streaming",
                        {"description": "The AIP", "content": {"application/x-tar": {
                            "schema": {"type": "string", "format": "binary"}}}},
                        params=[_RECORD_ID, _query("version",
                                                   {"type": "integer", "minimum": 1,
                                                    "maximum": 10**6},
                                                   "Package version (default: latest)")],
                        tag="records", extra=_not_found()),
        },
        "/api/v1/agents": {
            "get": _get("Registered persons and organisations (R-ID-1)",
                        _json({"type": "object", "required": ["agents"],
                               "properties": {"agents": {"type": "array",
                                                         "items": _ref("Agent")}}}),
                        params=[_query("kind", {"type": "string",
                                                "enum": ["person", "organisation", "system"]},
                                       "Kind of agent")], tag="agents"),
        },
        "/api/v1/agents/{identifier}": {
            "get": _get("One agent", _json(_ref("Agent")),
                        params=[{"name": "identifier", "in": "path", "required": True,
                                 "schema": {"type": "string", "maxLength": 64},
                                 "description": "Electronic identifier"}],
                        tag="agents", extra={"404": _problem_response("No such agent")}),
        },
        "/api/v1/users": {
            "get": _get("Users (administrators)",
                        _json({"type": "object", "required": ["users"],
                               "properties": {"users": {"type": "array",
                                                        "items": _ref("User")}}}),
                        tag="users"),
        },
        "/api/v1/me": {
            "get": _get("Who the caller is, and how they authenticated",
                        _json(_ref("Me")), tag="users", errors=("400", "401")),
        },
        "/api/v1/me/access": {
            "get": _get("The caller's own access history", _json(_ref("AuditPage")),
                        params=_AUDIT_FILTERS, tag="users"),
        },
        "/api/v1/audit": {
            "get": _get("Query the audit log (auditors; token scope audit:read)",
                        _json(_ref("AuditPage")), params=_AUDIT_FILTERS, tag="audit"),
        },
        "/api/v1/audit/export": {
            "get": _get("Export the audit log as CSV or JSON Lines",
                        {"description": "The entries",
                         "content": {"text/csv": {"schema": _STR},
                                     "application/jsonl": {"schema": _STR}}},
                        params=[_query("format", {"type": "string", "enum": ["csv", "jsonl"]},
                                       "Format"),
                                *[p for p in _AUDIT_FILTERS if p["name"] != "limit"],
                                _query("limit", {"type": "integer", "minimum": 1,
                                                 "maximum": 100000}, "At most this many")],
                        tag="audit"),
        },
        "/api/v1/health": {
            "get": {"summary": "Database, storage and last job runs", "tags": ["operations"],
                    "security": [],
                    "responses": {"200": _json(_ref("Health")),
                                  "503": _json(_ref("Health"), "Something is down")}},
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "tags": ["operations"], "security": [],
                    "responses": {"200": _json({"type": "object"})}},
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Kho lưu trữ số API", "version": VERSION,
                 "description": "Permissioned access to the archive (R-REPO-1). Every "
                                "call is checked by one policy and written to the audit "
                                "log (R-AUDIT-1)."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": {**paths, **lifecycle.openapi_paths(), **jobs.OPENAPI_PATHS},
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "API token of an organisation or system "
                                      "(archive tokens create)"},
            "session": {"type": "apiKey", "in": "cookie", "name": "kls_session",
                        "description": "Browser session (web login)"}},
            "schemas": {**_schemas(), **lifecycle.openapi_schemas(),
                        **jobs.OPENAPI_SCHEMAS}},
    }


def _schemas() -> dict:
    record = {"type": "object",
              "required": ["id", "number_symbol", "doc_type", "date", "summary",
                           "classification", "status", "created_at"],
              "properties": {"id": _STR, "number_symbol": _STR, "doc_type": _STR,
                             "date": {"type": "string", "format": "date"},
                             "issuing_org": _STR_NULL, "issuing_org_name": _STR_NULL,
                             "summary": _STR,
                             "classification": {"enum": ["normal", "mat", "toi-mat"]},
                             "status": _STR, "created_at": _STR}}
    detail = {"allOf": [record, {"type": "object", "required": ["versions"],
                                 "properties": {
                                     "versions": {"type": "array"},
                                     "fingerprint_sha256": _STR,
                                     "sealed": {"type": "boolean"},
                                     "seal": {"type": ["object", "null"]},
                                     "origin": {"enum": ["born-digital", "digitised"]},
                                     "paper_original": {"type": ["object", "null"]}}}]}
    audit_entry = {"type": "object",
                   "required": ["seq", "occurred_at", "actor", "action", "target", "outcome"],
                   "properties": {"seq": _INT, "occurred_at": _STR, "actor": _STR,
                                  "action": _STR, "target": _STR, "outcome": _STR,
                                  "client": _STR, "detail": {"type": "object"},
                                  "entry_hash": _STR}}
    page = {"type": "object", "required": ["total", "offset", "limit"],
            "properties": {"total": _INT, "offset": _INT, "limit": _INT}}
    return {
        "Problem": {"type": "object", "required": ["title", "status"],
                    "properties": {"type": _STR, "title": _STR, "status": _INT,
                                   "detail": _STR, "reason": _STR}},
        "Record": record,
        "RecordDetail": detail,
        "RecordPage": {"allOf": [page, {"type": "object", "required": ["records"],
                                        "properties": {"records": {"type": "array",
                                                                   "items": _ref("Record")}}}]},
        "Event": {"type": "object", "required": ["id", "type", "occurred_at", "outcome"],
                  "properties": {"id": _STR, "type": _STR, "occurred_at": _STR,
                                 "agent": _STR, "outcome": _STR, "detail": _STR}},
        "IngestResult": {"type": "object", "required": ["status", "record_id"],
                         "properties": {"source": _STR, "status": _STR, "record_id": _STR,
                                        "version": _INT, "storage_key": _STR, "size": _INT,
                                        "digests": {"type": "object"}}},
        "Agent": {"type": "object", "required": ["identifier", "kind", "name"],
                  "properties": {"identifier": _STR, "kind": _STR, "name": _STR}},
        "User": {"type": "object", "required": ["username", "role", "clearance", "status"],
                 "properties": {"username": _STR, "person": _STR, "name": _STR, "role": _STR,
                                "clearance": _STR, "status": _STR,
                                "totp_enrolled": {"type": "boolean"}}},
        "Me": {"type": "object", "required": ["principal", "kind", "method", "strong"],
               "properties": {"principal": _STR, "kind": _STR, "name": _STR,
                              "role": _STR_NULL, "clearance": _STR, "method": _STR,
                              "strong": {"type": "boolean"}}},
        "AuditEntry": audit_entry,
        "AuditPage": {"allOf": [page, {"type": "object", "required": ["entries"],
                                       "properties": {"entries": {"type": "array",
                                                                  "items": _ref("AuditEntry")}}}]},
        "Health": {"type": "object", "required": ["status", "checks"],
                   "properties": {"status": {"enum": ["ok", "degraded", "unavailable"]},
                                  "checks": {"type": "object"}}},
    }
