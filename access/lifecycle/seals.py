"""Sealing for inspection in the access layer (R-SEAL-1..3): API routes, the record-page
panel (the "sealed" banner with the decision, the inspector's seal form, the
authority's unseal form) and the seal pages with the lift report.

Sealing and unsealing are a person's decisions: an inspector logged in with a one-time
code or a certificate; API tokens have no scope for them (the policy refuses, 403).
The manifest timestamp comes from ``signatures.tsa_url`` when set
(:class:`ingest.sealing.SealTimestamps`).
"""

from __future__ import annotations

import re
import uuid
from datetime import date

from flask import jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from access import auth
from access.api import _choice, _int, _require_login, _text, api, record_id_param
from access.auth import client_address
from access.lifecycle import Panel
from access.web import web
from archive import policy
from archive.errors import InputError

FIELDS = ("records", "file_ref", "reference", "date", "authority", "scope", "readers")


def seal_id_param(seal_id: str) -> str:
    try:
        return str(uuid.UUID(seal_id))
    except ValueError as exc:
        raise InputError(f"seal id {seal_id!r} is not a UUID") from exc


def _decision_date(value) -> date:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise InputError("date: the decision's date in YYYY-MM-DD form is required")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InputError("date: not a calendar date") from exc


def _strings(value, name: str, limit: int) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{name}: expected a list of strings")
    if len(value) > limit:
        raise InputError(f"{name}: at most {limit} items")
    return value


def do_seal(values: dict) -> dict:
    """Seal as the request's principal (one unit of work); the seal as a dict."""
    from archive.keys import load_system_key
    from archive.sealing import MAX_RECORDS, seal, seal_to_dict
    from ingest.sealing import SealTimestamps

    principal = _require_login()
    records = [record_id_param(r) for r in _strings(values.get("records"), "records",
                                                     MAX_RECORDS)]
    for name in ("file_ref", "reference", "authority", "scope"):
        if values.get(name) is not None and not isinstance(values[name], str):
            raise InputError(f"{name}: must be a string")
    decided = _decision_date(values.get("date"))
    inst = auth.instance()
    key = load_system_key(inst.settings.keys_dir)
    with SealTimestamps(inst.settings) as stamps, inst.catalog.unit_of_work() as db:
        row = seal(db, inst.store, principal, record_ids=records or None,
                   file_ref=values.get("file_ref") or None,
                   reference=values.get("reference") or "", decision_date=decided,
                   authority=values.get("authority") or "", scope=values.get("scope") or "",
                   readers=_strings(values.get("readers"), "readers", 100), signing_key=key,
                   timestamp=stamps.stamp if stamps.enabled else None,
                   legal_hold=inst.settings.sealing.legal_hold, client=client_address(),
                   clock=inst.clock)
        return seal_to_dict(row)


def do_unseal(seal_id: str, lift_reference) -> dict:
    from archive.keys import load_system_key
    from archive.sealing import unseal
    from ingest.sealing import SealTimestamps, after_unseal

    principal = _require_login()
    if lift_reference is not None and not isinstance(lift_reference, str):
        raise InputError("reference: must be a string")
    inst = auth.instance()
    public = load_system_key(inst.settings.keys_dir).public_key()
    with SealTimestamps(inst.settings) as stamps, inst.catalog.unit_of_work() as db:
        report = unseal(db, inst.store, principal, seal_id,
                        lift_reference=lift_reference or "", public_key=public,
                        verify_timestamp=stamps.check, client=client_address(),
                        clock=inst.clock)
    report.update(after_unseal(inst.settings, inst.catalog, inst.store, report,
                               clock=inst.clock, client=client_address()))
    return report


def _json_body(allowed: tuple[str, ...]) -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InputError("body: expected a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise InputError(f"body: unknown field(s) {', '.join(unknown)}")
    return data


# ---- API ----------------------------------------------------------------------------


@api.post("/seals")
def create_seal():
    return jsonify(do_seal(_json_body(FIELDS))), 201


@api.get("/seals")
def seals_list():
    from archive.sealing import list_seals, seal_to_dict

    principal = _require_login()
    status = _choice(request.args, "status", ("active", "lifted"))
    record = _text(request.args, "record", 36)
    record = record_id_param(record) if record else None
    limit = _int(request.args, "limit", 50, 1, 500)
    offset = _int(request.args, "offset", 0, 0, 10**9)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        total, rows = list_seals(db, principal, status=status, record_id=record, limit=limit,
                                 offset=offset, client=client_address(), clock=inst.clock)
        return jsonify({"total": total, "offset": offset, "limit": limit,
                        "seals": [seal_to_dict(s, principal=principal) for s in rows]})


@api.get("/seals/<seal_id>")
def seal_detail(seal_id: str):
    from archive.sealing import get_seal, seal_to_dict

    principal = _require_login()
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        row = get_seal(db, principal, seal_id_param(seal_id), client=client_address(),
                       clock=inst.clock)
        return jsonify(seal_to_dict(row, report=True, principal=principal))


@api.post("/seals/<seal_id>/unseal")
def unseal_api(seal_id: str):
    sid = seal_id_param(seal_id)
    body = _json_body(("reference",))
    return jsonify(do_unseal(sid, body.get("reference")))


# ---- web ----------------------------------------------------------------------------


@web.post("/records/<record_id>/seal")
def seal_form(record_id: str):
    """The inspector's seal form on the record page (this record, or its whole file)."""
    rid = record_id_param(record_id)
    form = request.form
    values = {name: form.get(name, "") for name in ("reference", "date", "authority",
                                                    "scope")}
    values["readers"] = [r for r in re.split(r"[\s,;]+", form.get("readers", "")) if r]
    if form.get("whole_file") == "1":
        values["file_ref"] = form.get("file_ref", "")
    else:
        values["records"] = [rid]
    made = do_seal(values)
    return redirect(url_for("web.seal_page", seal_id=made["id"]))


@web.post("/seals/<seal_id>/unseal")
def unseal_form(seal_id: str):
    sid = seal_id_param(seal_id)
    do_unseal(sid, request.form.get("reference", ""))
    return redirect(url_for("web.seal_page", seal_id=sid, _anchor="lift-report"))


@web.get("/seals")
def seals_page():
    from archive.sealing import list_seals

    principal = auth.current_principal()
    status = _choice(request.args, "status", ("active", "lifted"))
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        total, rows = list_seals(db, principal, status=status, limit=200,
                                 client=client_address(), clock=inst.clock)
        seals = [_seal_view(s, principal) for s in rows]
    return render_template("lifecycle/seals_list.html", seals=seals, total=total,
                           status=status)


@web.get("/seals/<seal_id>")
def seal_page(seal_id: str):
    from archive.sealing import get_seal

    principal = auth.current_principal()
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        row = get_seal(db, principal, seal_id_param(seal_id), client=client_address(),
                       clock=inst.clock)
        view = _seal_view(row, principal)
        view["may_unseal"] = row.status == "active" and all(
            policy.decide(principal, policy.UNSEAL, policy.facts_of(r)).allowed
            for r in row.records)
    return render_template("lifecycle/seal.html", seal=view)


def _seal_view(row, principal) -> dict:
    from archive.sealing import seal_to_dict

    data = seal_to_dict(row, report=True, principal=principal)
    data["sealed_at_dt"] = row.sealed_at
    data["lifted_at_dt"] = row.lifted_at
    return data


def panel_context(db, inst, principal, record) -> dict | None:
    """The seal banner (for whoever may view the record), the seals on it, and the
    forms the principal may use. Runs after the page's VIEW was allowed and audited."""
    facts = policy.facts_of(record)
    active = record.active_seal
    may_seal = policy.decide(principal, policy.SEAL, facts).allowed
    may_unseal = active is not None and \
        policy.decide(principal, policy.UNSEAL, facts).allowed
    if not record.seals and not may_seal:
        return None
    return {
        "record_id": record.id, "file_ref": record.file_ref,
        "active": None if active is None else {
            "id": active.id, "reference": active.reference, "date": active.decision_date,
            "authority": active.authority.name if active.authority else "",
            "authority_id": active.authority.identifier if active.authority else "",
            "scope": active.scope, "sealed_at": active.sealed_at,
            "reader": bool(principal.person) and principal.person in (active.readers or ())},
        "past": [{"id": s.id, "reference": s.reference, "date": s.decision_date,
                  "lifted_at": s.lifted_at, "lift_reference": s.lift_reference,
                  "ok": (s.lift_report or {}).get("ok")}
                 for s in reversed(record.seals) if s.status == "lifted"],
        "may_seal": may_seal, "may_unseal": may_unseal, "today": date.today().isoformat(),
        "title": _("Seal for inspection"),
    }


PANEL = Panel(template="lifecycle/seals.html", context=panel_context, order=5)


# ---- OpenAPI ------------------------------------------------------------------------

_SEAL_ID = {"name": "seal_id", "in": "path", "required": True,
            "schema": {"type": "string", "format": "uuid"}, "description": "Seal id"}


def _problem(text: str) -> dict:
    return {"description": text, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _ok(schema: str, text: str = "OK") -> dict:
    return {"description": text, "content": {"application/json": {"schema": {
        "$ref": f"#/components/schemas/{schema}"}}}}


def _query(name: str, schema: dict, text: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "allowEmptyValue": True, "description": text}


_COMMON = {"400": _problem("Bad input (every problem named), or a missing CSRF token on a "
                           "cookie-authenticated call"),
           "401": _problem("No valid credentials"),
           "403": _problem("Refused by the policy (the denial is audited): not an "
                           "inspector, a password-only login, an API token, a record "
                           "already sealed or destroyed, not the sealing authority")}

OPENAPI_PATHS: dict = {
    "/api/v1/seals": {
        "post": {
            "summary": "Seal records, or a whole file (hồ sơ), for inspection under a "
                       "decision (inspectors, one-time code or certificate; R-SEAL-1)",
            "tags": ["lifecycle"],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/SealRequest"}}}},
            "responses": {"201": _ok("Seal", "Sealed: the signed manifest is stored"),
                          **_COMMON, "404": _problem("No such record")},
        },
        "get": {
            "summary": "Seals the caller may see (inspectors, auditors; readers named in "
                       "a decision see theirs)",
            "tags": ["lifecycle"],
            "parameters": [_query("status", {"type": "string", "enum": ["active", "lifted"]},
                                  "Status"),
                           _query("record", {"type": "string", "format": "uuid"},
                                  "Only seals on this record"),
                           _query("limit", {"type": "integer", "minimum": 1, "maximum": 500},
                                  "Page size"),
                           _query("offset", {"type": "integer", "minimum": 0,
                                             "maximum": 10**9}, "First row")],
            "responses": {"200": _ok("SealPage"), **_COMMON},
        },
    },
    "/api/v1/seals/{seal_id}": {
        "get": {"summary": "One seal: decision, records, manifest, lift report",
                "tags": ["lifecycle"], "parameters": [_SEAL_ID],
                "responses": {"200": _ok("Seal"), **_COMMON,
                              "404": _problem("No such seal")}},
    },
    "/api/v1/seals/{seal_id}/unseal": {
        "post": {
            "summary": "Lift a seal (the sealing authority only, R-SEAL-3): every sealed "
                       "byte is checked against the manifest; differences are reported "
                       "(ok false) and the seal is lifted",
            "tags": ["lifecycle"], "parameters": [_SEAL_ID],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"type": "object", "required": ["reference"],
                           "additionalProperties": False,
                           "properties": {"reference": {
                               "type": "string", "minLength": 1, "maxLength": 200,
                               "description": "The decision lifting the seal"}}}}}},
            "responses": {"200": _ok("UnsealReport", "Lifted; read ok and differences"),
                          **_COMMON, "404": _problem("No such seal")},
        },
    },
}

_STR = {"type": "string"}
_STR_NULL = {"type": ["string", "null"]}

OPENAPI_SCHEMAS: dict = {
    "SealRequest": {
        "type": "object", "required": ["reference", "date", "authority", "scope"],
        "additionalProperties": False,
        "description": "Either records or file_ref.",
        "properties": {
            "records": {"type": "array", "items": {"type": "string", "format": "uuid"},
                        "maxItems": 10000},
            "file_ref": {"type": "string", "maxLength": 100,
                         "description": "Seal every record of this file (hồ sơ)"},
            "reference": {"type": "string", "minLength": 1, "maxLength": 200,
                          "description": "The sealing decision's number"},
            "date": {"type": "string", "format": "date"},
            "authority": {"type": "string", "maxLength": 64,
                          "description": "Identifier of the organisation that issued it"},
            "scope": {"type": "string", "minLength": 1, "maxLength": 4000},
            "readers": {"type": "array", "items": {"type": "string", "maxLength": 64},
                        "maxItems": 100,
                        "description": "Persons the decision lets read meanwhile"}}},
    "Seal": {
        "type": "object",
        "required": ["id", "reference", "date", "authority", "scope", "readers",
                     "sealed_at", "sealed_by", "status", "records", "manifest_key",
                     "manifest_sha256", "legal_hold"],
        "properties": {
            "id": _STR, "reference": _STR, "date": {"type": "string", "format": "date"},
            "authority": _STR_NULL, "authority_name": _STR_NULL, "scope": _STR,
            "readers": {"type": "array", "items": _STR}, "sealed_at": _STR,
            "sealed_by": _STR, "sealer_person": _STR_NULL,
            "status": {"enum": ["active", "lifted"]},
            "records": {"type": "array", "items": {
                "type": "object", "required": ["id", "number_symbol"],
                "properties": {"id": _STR, "number_symbol": _STR}}},
            "manifest_key": _STR, "manifest_sha256": _STR,
            "legal_hold": {"type": "boolean"}, "lifted_at": _STR_NULL,
            "lifted_by": _STR_NULL, "lift_reference": _STR_NULL,
            "lift_report": {"type": ["object", "null"]}}},
    "SealPage": {
        "type": "object", "required": ["total", "offset", "limit", "seals"],
        "properties": {"total": {"type": "integer"}, "offset": {"type": "integer"},
                       "limit": {"type": "integer"},
                       "seals": {"type": "array",
                                 "items": {"$ref": "#/components/schemas/Seal"}}}},
    "UnsealReport": {
        "type": "object",
        "required": ["seal_id", "reference", "ok", "checks", "records_checked",
                     "differences", "lift_reference", "lifted_at", "lifted_by"],
        "properties": {
            "seal_id": _STR, "reference": _STR, "ok": {"type": "boolean"},
            "checks": {"type": "object"}, "records_checked": {"type": "integer"},
            "differences": {"type": "array", "items": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": _STR, "message": _STR, "target": _STR,
                               "record_id": _STR_NULL, "path": _STR}}},
            "records": {"type": "array", "items": _STR},
            "lift_reference": _STR, "lifted_at": _STR, "lifted_by": _STR,
            "holds_released": {"type": "array", "items": _STR},
            "versions": {"type": "array", "items": {"type": "object"},
                         "description": "Each record's next AIP version, carrying the "
                                        "sealing and unsealing events"},
            "warnings": {"type": "array", "items": _STR}}},
}
