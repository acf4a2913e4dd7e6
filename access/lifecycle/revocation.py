"""Revocation of validity in the access layer (R-REVOKE-1): API routes, web forms and the
record-page panel.

A decision is taken by an approver logged in with a one-time code or a certificate; API
tokens have no scope for it (the policy refuses them, 403). After the decision commits,
its notifications are delivered at once and the record's next AIP version is written,
both best effort (:func:`cli.revocation.after_decision` does the same for the CLI).
"""

from __future__ import annotations

from flask import jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from access import auth
from access.api import _require_login, api, record_id_param
from access.auth import client_address
from access.lifecycle import Panel
from access.web import web
from archive import policy
from archive.errors import InputError

FIELDS = ("reason", "form", "legal_basis", "decision_ref")
# Who repackages after a decision taken over the web: the system, not the approver
# (repackaging is a preservation action, R-HIST-1).
REPACKAGER = "web:repackage"


def after_decision(inst, outcome) -> dict:
    """Notifications delivered now, the next AIP version written (best effort)."""
    from archive.principal import Principal
    from ingest.versions import after_decision as follow

    return follow(inst.settings, inst.catalog, inst.store, outcome,
                  principal=Principal.system(REPACKAGER), clock=inst.clock,
                  client=client_address())


def _decide(service, record_id: str, values: dict) -> tuple[dict, object]:
    from archive.revocation import revocation_to_dict

    principal = _require_login()
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        outcome = service(db, principal, record_id, reason=values.get("reason"),
                          form=values.get("form"), legal_basis=values.get("legal_basis"),
                          decision_ref=values.get("decision_ref") or None,
                          client=client_address(), clock=inst.clock)
        body = {"revocation": revocation_to_dict(outcome.revocation),
                "notifications": [{"id": n.id, "recipient": n.recipient, "kind": n.kind,
                                   "subject": n.subject} for n in outcome.notifications]}
    body.update(after_decision(inst, outcome))
    return body, outcome


def _json_body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise InputError("body: expected a JSON object with reason, form, legal_basis "
                         "and optionally decision_ref")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InputError(f"body: unknown field(s) {', '.join(unknown)}")
    for name in FIELDS:
        if data.get(name) is not None and not isinstance(data[name], str):
            raise InputError(f"{name}: must be a string")
    return data


# ---- API ----------------------------------------------------------------------------


@api.post("/records/<record_id>/revocation")
def revoke_record(record_id: str):
    from archive.revocation import revoke

    rid = record_id_param(record_id)
    body, _ = _decide(revoke, rid, _json_body())
    return jsonify(body), 201


@api.post("/records/<record_id>/reinstatement")
def reinstate_record(record_id: str):
    from archive.revocation import reinstate

    rid = record_id_param(record_id)
    body, _ = _decide(reinstate, rid, _json_body())
    return jsonify(body), 201


@api.get("/records/<record_id>/revocations")
def record_revocations(record_id: str):
    from archive.models import Record
    from archive.revocation import revocation_to_dict, revocations_of

    principal = _require_login()
    rid = record_id_param(record_id)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        rows = revocations_of(db, principal, rid, client=client_address(), clock=inst.clock)
        status = db.get(Record, rid).status
        return jsonify({"record_id": rid, "status": status,
                        "revocations": [revocation_to_dict(r) for r in rows]})


# ---- web ----------------------------------------------------------------------------


def _form_page(action: str, record_id: str):
    """Two steps: the filled form is shown back for confirmation; only a confirmed form
    takes the decision."""
    from archive.records import show_record
    from archive.revocation import Decision, reinstate, revoke

    rid = record_id_param(record_id)
    values = {name: request.form.get(name, "") for name in FIELDS}
    inst = auth.instance()
    principal = auth.current_principal()
    if request.form.get("confirmed") != "1":
        error = None
        with inst.catalog.unit_of_work() as db:
            found = show_record(db, principal, rid, client=client_address(), clock=inst.clock)
            policy.require(principal, policy.REVOKE if action == "revoke"
                           else policy.REINSTATE, policy.facts_of(found),
                           client=client_address())
            summary = {"id": found.id, "number_symbol": found.number_symbol,
                       "date": found.doc_date, "issuing_org": found.issuing_org.name}
        try:
            Decision.of(reason=values["reason"], form=values["form"],
                        legal_basis=values["legal_basis"],
                        decision_ref=values["decision_ref"] or None)
        except InputError as exc:
            error = exc.message
        return render_template("lifecycle/revocation_confirm.html", action=action,
                               values=values, record=summary, error=error), \
            400 if error else 200
    _decide(revoke if action == "revoke" else reinstate, rid, values)
    return redirect(url_for("web.record", record_id=rid, _anchor="revocation"))


@web.post("/records/<record_id>/revoke")
def revoke_form(record_id: str):
    return _form_page("revoke", record_id)


@web.post("/records/<record_id>/reinstate")
def reinstate_form(record_id: str):
    return _form_page("reinstate", record_id)


def panel_context(db, inst, principal, record) -> dict | None:
    """The decisions on the record, a banner when revoked, and the forms an approver may
    use. Runs after the page's VIEW was allowed and audited."""
    from archive.revocation import decisions

    rows = decisions(db, record.id)
    facts = policy.facts_of(record)
    may_revoke = policy.decide(principal, policy.REVOKE, facts).allowed
    may_reinstate = policy.decide(principal, policy.REINSTATE, facts).allowed
    if not rows and not may_revoke and record.status != "revoked":
        return None
    return {"record_id": record.id, "revoked": record.status == "revoked",
            "decisions": [{"action": r.action, "at": r.decided_at, "by": r.decided_by,
                           "reason": r.reason, "form": r.form, "basis": r.legal_basis,
                           "ref": r.decision_ref, "id": r.id, "cause": r.cause_id,
                           "corrects": r.corrects_id} for r in reversed(rows)],
            "may_revoke": may_revoke, "may_reinstate": may_reinstate,
            "title": _("Validity")}


PANEL = Panel(template="lifecycle/revocation.html", context=panel_context, order=10)


# ---- OpenAPI ------------------------------------------------------------------------

_RECORD_ID = {"name": "record_id", "in": "path", "required": True,
              "schema": {"type": "string", "format": "uuid"}, "description": "Record id"}


def _problem(text: str) -> dict:
    return {"description": text, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _decision_op(summary: str, extra: dict | None = None) -> dict:
    return {
        "summary": summary, "tags": ["lifecycle"], "parameters": [_RECORD_ID],
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/RevocationRequest"}}}},
        "responses": {
            "201": {"description": "Decision recorded; notifications and the next AIP "
                                   "version follow (best effort)",
                    "content": {"application/json": {"schema": {
                        "$ref": "#/components/schemas/RevocationOutcome"}}}},
            "400": _problem("Bad input (every problem named), or a missing CSRF token "
                            "on a cookie-authenticated call"),
            "401": _problem("No valid credentials"),
            "403": _problem("Refused by the policy: not an approver, a password-only "
                            "login, an API token, a sealed or destroyed record, already "
                            "revoked / not revoked (the denial is audited)"),
            "404": _problem("No such record"),
            **(extra or {}),
        },
    }


_DECISION = {"type": "object",
             "required": ["id", "record_id", "action", "reason", "form", "legal_basis",
                          "decided_at", "decided_by"],
             "properties": {"id": {"type": "string"}, "record_id": {"type": "string"},
                            "action": {"enum": ["revoke", "reinstate"]},
                            "reason": {"type": "string"}, "form": {"type": "string"},
                            "legal_basis": {"type": "string"},
                            "decision_ref": {"type": ["string", "null"]},
                            "decided_at": {"type": "string"},
                            "decided_by": {"type": "string"},
                            "cause_id": {"type": ["string", "null"]},
                            "corrects_id": {"type": ["string", "null"]}}}

OPENAPI_PATHS: dict = {
    "/api/v1/records/{record_id}/revocation": {
        "post": _decision_op("Revoke the record's validity (approvers, one-time code or "
                             "certificate login; R-REVOKE-1)"),
    },
    "/api/v1/records/{record_id}/reinstatement": {
        "post": _decision_op("Correct a mistaken revocation by a new decision (approvers)",
                             {"422": _problem("No revocation decision to correct")}),
    },
    "/api/v1/records/{record_id}/revocations": {
        "get": {"summary": "Every validity decision on the record, oldest first",
                "tags": ["lifecycle"], "parameters": [_RECORD_ID],
                "responses": {
                    "200": {"description": "OK", "content": {"application/json": {
                        "schema": {"type": "object",
                                   "required": ["record_id", "status", "revocations"],
                                   "properties": {
                                       "record_id": {"type": "string"},
                                       "status": {"type": "string"},
                                       "revocations": {"type": "array", "items": {
                                           "$ref": "#/components/schemas/Revocation"}}}}}}},
                    "400": _problem("Bad input"),
                    "401": _problem("No valid credentials"),
                    "403": _problem("Refused by the policy (the denial is audited)"),
                    "404": _problem("No such record")}},
    },
}

OPENAPI_SCHEMAS: dict = {
    "RevocationRequest": {
        "type": "object", "required": ["reason", "form", "legal_basis"],
        "additionalProperties": False,
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 4000,
                                  "description": "Why (lý do)"},
                       "form": {"type": "string", "minLength": 1, "maxLength": 200,
                                "description": "Form of the decision (hình thức)"},
                       "legal_basis": {"type": "string", "minLength": 1, "maxLength": 4000,
                                       "description": "Legal basis (căn cứ)"},
                       "decision_ref": {"type": ["string", "null"], "maxLength": 200,
                                        "description": "The decision's number"}}},
    "Revocation": _DECISION,
    "RevocationOutcome": {
        "type": "object", "required": ["revocation", "notifications", "versions",
                                       "warnings"],
        "properties": {"revocation": {"$ref": "#/components/schemas/Revocation"},
                       "notifications": {"type": "array", "items": {"type": "object"}},
                       "delivery": {"type": ["object", "null"]},
                       "versions": {"type": "array", "items": {"type": "object"}},
                       "warnings": {"type": "array", "items": {"type": "string"}}}},
}
