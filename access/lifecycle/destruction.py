"""Retention and destruction in the access layer (R-DESTROY-1, R-DESTROY-2): the
destruction lists (propose, review, approve, execute), the permanent register (search,
export), the record-page panel (retention, extensions, holds; the archivist's extension
and hold forms) and the read-only JSON API.

Proposing, reviewing, approving, executing, extending and holding are a person's
decisions: web forms only (CSRF-protected, strong login through the policy), never an
API token. Every read and change is audited by the core services
(:mod:`archive.destruction`, :mod:`archive.retention`,
:mod:`preservation.destruction`). R-CLASS-1: a listed or destroyed record above the
reader's clearance is shown as "a record you may not see": neither its number nor its
summary (the services mask them: :func:`archive.destruction.get_list`,
:func:`archive.destruction_register.register_entries`).
"""

from __future__ import annotations

import uuid

from flask import (
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from access import auth, labels
from access.api import _choice, _date, _int, _require_login, _text, api, record_id_param
from access.auth import client_address
from access.lifecycle import Panel
from access.openapi import _json, _query, _ref
from access.openapi import _problem_response as _problem
from access.web import web
from archive import policy
from archive.errors import ArchiveError, InputError

LIST_STATUSES = ("proposed", "approved", "executing", "executed", "cancelled")
STATUS_LABELS = labels.DESTRUCTION_STATUSES
ITEM_LABELS = {"listed": _l("listed"), "removed": _l("removed"),
               "destroyed": _l("destroyed"), "skipped": _l("skipped"), "failed": _l("failed")}
HOLD_LABELS = {"legal": _l("Legal hold"),
               "revocation-inquiry": _l("Inquiry into its validity")}
REGISTER_PAGE = 50
EXPORT_FORMATS = ("csv", "json")


def list_id_param(list_id: str) -> str:
    try:
        return str(uuid.UUID(list_id))
    except ValueError as exc:
        raise InputError(f"destruction list id {list_id!r} is not a UUID") from exc


def hold_id_param(hold_id: str) -> str:
    try:
        return str(uuid.UUID(hold_id))
    except ValueError as exc:
        raise InputError(f"hold id {hold_id!r} is not a UUID") from exc


def entry_dict(entry) -> dict:
    """A register entry as the API shows it: the register masks the number of a record
    above the reader's clearance and never keeps a classified summary
    (:class:`archive.destruction_register.RegisterEntryView`)."""
    data = entry.to_dict()
    data["hidden"] = bool(data["tombstone"].get("number_withheld"))
    return data


# ---- the service calls -------------------------------------------------------------


def _lists(principal, status: str | None, limit: int, offset: int):
    from archive.destruction import list_lists

    inst = auth.instance()
    return list_lists(inst.catalog, principal, status=status, limit=limit, offset=offset,
                      client=client_address(), clock=inst.clock)


def _one_list(principal, list_id: str):
    from archive.destruction import get_list

    inst = auth.instance()
    return get_list(inst.catalog, principal, list_id, client=client_address(),
                    clock=inst.clock)


def _register_args(args) -> dict:
    since, until = _date(args, "from"), _date(args, "to")
    if since and until and since > until:
        raise InputError("from: must not be after to")
    return {"query": _text(args, "q", 200), "since": since, "until": until,
            "limit": _int(args, "limit", REGISTER_PAGE, 1, 500),
            "offset": _int(args, "offset", 0, 0, 10**9)}


def _register(principal, values: dict) -> tuple[int, list[dict]]:
    from archive.destruction_register import register_entries

    inst = auth.instance()
    page = register_entries(inst.catalog, principal, client=client_address(),
                            clock=inst.clock, **values)
    return page.total, [entry_dict(e) for e in page.entries]


def _export(principal, fmt: str) -> Response:
    from archive.destruction_register import register_export

    inst = auth.instance()
    body = register_export(inst.catalog, principal, fmt=fmt, client=client_address(),
                           clock=inst.clock)
    mimetype = "text/csv" if fmt == "csv" else "application/json"
    return Response(body, mimetype=mimetype, headers={
        "Content-Disposition": f'attachment; filename="destruction-register.{fmt}"'})


def _retention(principal, record_id: str) -> dict:
    """The record's retention (rule, until, extensions, holds) after the policy's VIEW
    (audited by :func:`archive.records.show_record`)."""
    from archive.records import show_record
    from archive.retention import extensions_of, holds_of

    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        record = show_record(db, principal, record_id, client=client_address(),
                             clock=inst.clock)
        return _retention_dict(db, inst, record, extensions_of(db, record.id),
                               holds_of(db, record.id))


def _retention_dict(db, inst, record, extensions, holds) -> dict:
    from sqlalchemy import select

    from archive.models import DestructionEntry

    rule = inst.settings.retention.get(record.retention_rule)
    destroyed = None
    if record.status == "destroyed":
        entry = db.scalar(select(DestructionEntry).where(
            DestructionEntry.record_id == record.id).order_by(DestructionEntry.id.desc()))
        if entry is not None:
            destroyed = {"at": entry.destroyed_at.isoformat(), "list_id": entry.list_id,
                         "decision_number": entry.decision_number,
                         "approving_body": entry.approving_body}
    today = inst.clock.now().date()
    return {"record_id": record.id, "status": record.status,
            "retention_rule": record.retention_rule,
            "rule_label": rule.label if rule else record.retention_rule,
            "rule_period_years": rule.period if rule else None,
            "retention_until": record.retention_until.isoformat()
            if record.retention_until else None,
            "permanent": record.retention_until is None,
            "expired": record.retention_until is not None and record.retention_until < today,
            "extensions": [e.to_dict() for e in extensions],
            "holds": [h.to_dict() for h in holds],
            "on_hold": any(h.active for h in holds),
            "destroyed": destroyed}


# ---- API (reads only) ---------------------------------------------------------------


@api.get("/destruction/lists")
def destruction_lists_api():
    principal = _require_login()
    status = _choice(request.args, "status", LIST_STATUSES)
    limit = _int(request.args, "limit", 100, 1, 500)
    offset = _int(request.args, "offset", 0, 0, 10**9)
    rows = _lists(principal, status, limit, offset)
    return jsonify({"offset": offset, "limit": limit,
                    "lists": [r.to_dict() for r in rows]})


@api.get("/destruction/lists/<list_id>")
def destruction_list_api(list_id: str):
    principal = _require_login()
    return jsonify(_one_list(principal, list_id_param(list_id)).to_dict())


@api.get("/destruction/register")
def destruction_register_api():
    principal = _require_login()
    values = _register_args(request.args)
    total, entries = _register(principal, values)
    return jsonify({"total": total, "offset": values["offset"], "limit": values["limit"],
                    "entries": entries})


@api.get("/destruction/register/export")
def destruction_register_export_api():
    principal = _require_login()
    fmt = _choice(request.args, "format", EXPORT_FORMATS) or "csv"
    return _export(principal, fmt)


@api.get("/records/<record_id>/retention")
def record_retention_api(record_id: str):
    principal = _require_login()
    return jsonify(_retention(principal, record_id_param(record_id)))


# ---- web: lists, review, approval, execution ----------------------------------------


def _may(principal, action: str) -> bool:
    return action in policy.allowed_actions(principal) and \
        (principal.kind != "user" or principal.strong or action not in policy.CHANGES)


@web.get("/destruction")
def destruction_page(message: str | None = None, status_code: int = 200):
    principal = auth.current_principal()
    status = _choice(request.args, "status", LIST_STATUSES)
    rows = _lists(principal, status, 200, 0)
    return render_template("lifecycle/destruction_lists.html",
                           lists=[r.to_dict() for r in rows], status=status,
                           labels=STATUS_LABELS, message=message,
                           may_propose=_may(principal, policy.PROPOSE_DESTRUCTION),
                           may_register=_may(principal, policy.REGISTER_READ)), status_code


@web.post("/destruction/propose")
def destruction_propose_form():
    from archive.destruction import propose

    principal = auth.current_principal()
    inst = auth.instance()
    limit = _int(request.form, "limit", 0, 0, 100_000) or None
    made = propose(inst.catalog, principal, reason=request.form.get("reason", ""),
                   limit=limit, clock=inst.clock, client=client_address())
    if made is None:
        return destruction_page(message=_("No record is due for destruction: no list "
                                          "was made."))
    return redirect(url_for("web.destruction_list_page", list_id=made.id))


@web.get("/destruction/<list_id>")
def destruction_list_page(list_id: str):
    principal = auth.current_principal()
    found = _one_list(principal, list_id_param(list_id))
    data = found.to_dict()
    proposer = data["proposed_by"] == str(principal) or (
        principal.person is not None and data.get("proposer_person") == principal.person)
    editor = str(principal) in data.get("editors", [])
    return render_template(
        "lifecycle/destruction_list.html", dl=data, labels=STATUS_LABELS,
        item_labels=ITEM_LABELS,
        may_review=data["status"] == "proposed" and _may(principal,
                                                         policy.PROPOSE_DESTRUCTION),
        may_approve=data["status"] == "proposed" and _may(principal,
                                                          policy.APPROVE_DESTRUCTION),
        approve_blocked=proposer or editor,
        may_execute=data["status"] in ("approved", "executing") and _may(
            principal, policy.EXECUTE_DESTRUCTION),
        may_cancel=data["status"] in ("proposed", "approved") and (
            _may(principal, policy.PROPOSE_DESTRUCTION)
            or _may(principal, policy.APPROVE_DESTRUCTION)),
        today=auth.instance().clock.now().date().isoformat())


@web.post("/destruction/<list_id>/remove")
def destruction_remove_form(list_id: str):
    from archive.destruction import remove_item

    lid = list_id_param(list_id)
    rid = record_id_param(request.form.get("record_id", ""))
    inst = auth.instance()
    remove_item(inst.catalog, auth.current_principal(), lid, rid,
                note=request.form.get("note", ""), clock=inst.clock, client=client_address())
    return redirect(url_for("web.destruction_list_page", list_id=lid, _anchor="items"))


@web.post("/destruction/<list_id>/approve")
def destruction_approve_form(list_id: str):
    from archive.destruction import approve

    lid = list_id_param(list_id)
    form = request.form
    if form.get("irreversible") != "1":
        raise InputError("irreversible: confirm that you understand that approving lets "
                         "the listed records be destroyed for ever")
    inst = auth.instance()
    approve(inst.catalog, auth.current_principal(), lid,
            approving_body=form.get("approving_body", ""),
            decision_number=form.get("decision_number", ""),
            decision_date=form.get("decision_date", ""),
            legal_basis=form.get("legal_basis", ""), clock=inst.clock,
            client=client_address())
    return redirect(url_for("web.destruction_list_page", list_id=lid))


@web.post("/destruction/<list_id>/execute")
def destruction_execute_form(list_id: str):
    from preservation.destruction import execute

    lid = list_id_param(list_id)
    if request.form.get("confirm") != "1":
        raise InputError("confirm: tick the box to confirm that every copy of the listed "
                         "records is destroyed; this cannot be undone")
    inst = auth.instance()
    execute(inst, auth.current_principal(), lid, client=client_address())
    return redirect(url_for("web.destruction_list_page", list_id=lid))


@web.post("/destruction/<list_id>/cancel")
def destruction_cancel_form(list_id: str):
    from archive.destruction import cancel

    lid = list_id_param(list_id)
    inst = auth.instance()
    cancel(inst.catalog, auth.current_principal(), lid,
           reason=request.form.get("reason", ""), clock=inst.clock, client=client_address())
    return redirect(url_for("web.destruction_list_page", list_id=lid))


# ---- web: the register ------------------------------------------------------------


@web.get("/destruction/register")
def destruction_register_page():
    from access.pages import _pages

    principal = auth.current_principal()
    error = None
    values = {"query": None, "since": None, "until": None, "limit": REGISTER_PAGE,
              "offset": 0}
    try:
        values = _register_args(request.args)
    except InputError as exc:
        error = exc.message
    total, entries = _register(principal, values)
    return render_template("lifecycle/destruction_register.html", entries=entries,
                           pages=_pages(total, values["offset"], values["limit"]),
                           args=request.args, error=error), 400 if error else 200


@web.get("/destruction/register/export")
def destruction_register_export_page():
    fmt = _choice(request.args, "format", EXPORT_FORMATS) or "csv"
    return _export(auth.current_principal(), fmt)


# ---- web: extension and holds (record page) -----------------------------------------


@web.post("/records/<record_id>/retention")
def retention_extend_form(record_id: str):
    from archive.retention import extend_retention

    rid = record_id_param(record_id)
    form = request.form
    until = "permanent" if form.get("permanent") == "1" else (form.get("until") or "")
    if not until:
        raise InputError("until: a date (YYYY-MM-DD) or permanent is required")
    inst = auth.instance()
    extend_retention(inst.catalog, auth.current_principal(), rid, until=until,
                     reason=form.get("reason", ""), decision_ref=form.get("decision_ref", ""),
                     clock=inst.clock, client=client_address())
    lock_after_extension(inst, rid)
    return redirect(url_for("web.record", record_id=rid, _anchor="retention"))


def lock_after_extension(inst, record_id: str) -> None:
    """R-DESTROY-1: the record's AIP versions keep Object Lock retention until the new
    date (S3 with Object Lock only, :func:`archive.retention.lock_after_extension`). The
    decision is committed first; a storage failure here is logged for the operators (the
    lock of the old date still holds; the next extension or repackaging sets it)."""
    from archive.retention import lock_after_extension as lock

    try:
        lock(inst.catalog, inst.store, record_id)
    except ArchiveError as exc:
        current_app.logger.error("retention extension of record %s: Object Lock not "
                                 "extended: %s", record_id, exc.message)


@web.post("/records/<record_id>/holds")
def hold_place_form(record_id: str):
    from archive.retention import place_hold

    rid = record_id_param(record_id)
    form = request.form
    inst = auth.instance()
    place_hold(inst.catalog, auth.current_principal(), rid, kind=form.get("kind", ""),
               reason=form.get("reason", ""), reference=form.get("reference") or None,
               clock=inst.clock, client=client_address())
    return redirect(url_for("web.record", record_id=rid, _anchor="retention"))


@web.post("/holds/<hold_id>/release")
def hold_release_form(hold_id: str):
    from archive.retention import release_hold

    hid = hold_id_param(hold_id)
    inst = auth.instance()
    released = release_hold(inst.catalog, auth.current_principal(), hid,
                            reason=request.form.get("reason", ""), clock=inst.clock,
                            client=client_address())
    return redirect(url_for("web.record", record_id=released.record_id, _anchor="retention"))


def panel_context(db, inst, principal, record) -> dict | None:
    """Retention (rule, until), extensions, holds, the destruction of a destroyed record,
    and the forms an archivist (extension, holds) may use. Runs after the page's VIEW
    was allowed and audited."""
    from archive.retention import extensions_of, holds_of

    facts = policy.facts_of(record)
    data = _retention_dict(db, inst, record, extensions_of(db, record.id),
                           holds_of(db, record.id))
    alive = record.status != "destroyed"
    data.update(
        may_extend=alive and record.retention_until is not None and
        policy.decide(principal, policy.PROPOSE_RETENTION, facts).allowed,
        may_hold=alive and policy.decide(principal, policy.HOLD, facts).allowed,
        hold_labels=HOLD_LABELS, title=_("Retention"))
    return data


PANEL = Panel(template="lifecycle/retention.html", context=panel_context, order=60)


# ---- OpenAPI ------------------------------------------------------------------------

_LIST_ID = {"name": "list_id", "in": "path", "required": True,
            "schema": {"type": "string", "format": "uuid"},
            "description": "Destruction list id"}
_RECORD_ID = {"name": "record_id", "in": "path", "required": True,
              "schema": {"type": "string", "format": "uuid"}, "description": "Record id"}


def _ok(schema: str, text: str = "OK") -> dict:
    return _json(_ref(schema), text)


_ERRORS = {"400": _problem("Bad input (every problem named)"),
           "401": _problem("No valid credentials"),
           "403": _problem("Refused by the policy (the denial is audited): only "
                           "archivists, approvers, inspectors and auditors read the "
                           "destruction lists and the register; API tokens have no scope "
                           "for them")}
_PAGE = [_query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "Page size"),
         _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9}, "First row")]
_STR = {"type": "string"}
_STR_NULL = {"type": ["string", "null"]}
_DATE_NULL = {"type": ["string", "null"]}

OPENAPI_PATHS: dict = {
    "/api/v1/destruction/lists": {
        "get": {"summary": "Destruction lists, newest first, with their item counts "
                           "(R-DESTROY-1)",
                "tags": ["lifecycle"],
                "parameters": [_query("status", {"type": "string",
                                                 "enum": list(LIST_STATUSES)}, "Status"),
                               *_PAGE],
                "responses": {"200": _ok("DestructionListPage"), **_ERRORS}},
    },
    "/api/v1/destruction/lists/{list_id}": {
        "get": {"summary": "One destruction list with its items (a classified record "
                           "above the reader's clearance: number hidden)",
                "tags": ["lifecycle"], "parameters": [_LIST_ID],
                "responses": {"200": _ok("DestructionList"), **_ERRORS,
                              "404": _problem("No such destruction list")}},
    },
    "/api/v1/destruction/register": {
        "get": {"summary": "Search the permanent destruction register (R-DESTROY-2)",
                "tags": ["lifecycle"],
                "parameters": [
                    _query("q", {"type": "string", "maxLength": 200},
                           "Text in the destroyed record's number or summary"),
                    _query("from", {"type": "string", "format": "date"},
                           "Destroyed on or after this date"),
                    _query("to", {"type": "string", "format": "date"},
                           "Destroyed on or before this date"),
                    *_PAGE],
                "responses": {"200": _ok("DestructionRegisterPage"), **_ERRORS}},
    },
    "/api/v1/destruction/register/export": {
        "get": {"summary": "The whole destruction register as CSV or JSON (R-DESTROY-2)",
                "tags": ["lifecycle"],
                "parameters": [_query("format", {"type": "string",
                                                 "enum": list(EXPORT_FORMATS)},
                                      "csv (default) or json")],
                "responses": {
                    "200": {"description": "The register",
                            "content": {"text/csv": {"schema": _STR},
                                        "application/json": {"schema": {}}}},
                    **_ERRORS}},
    },
    "/api/v1/records/{record_id}/retention": {
        "get": {"summary": "The record's retention: rule, until, extensions, holds, and "
                           "its destruction if destroyed",
                "tags": ["lifecycle"], "parameters": [_RECORD_ID],
                "responses": {"200": _ok("RecordRetention"),
                              "400": _problem("Bad input"),
                              "401": _problem("No valid credentials"),
                              "403": _problem("Refused by the policy (the denial is "
                                              "audited)"),
                              "404": _problem("No such record")}},
    },
}

_ITEM = {"type": "object",
         "required": ["record_id", "status", "changed_at", "changed_by", "hidden"],
         "properties": {"record_id": _STR,
                        "status": {"enum": ["listed", "removed", "destroyed", "skipped"]},
                        "note": _STR_NULL, "changed_at": _STR, "changed_by": _STR,
                        "number_symbol": _STR_NULL, "doc_date": _DATE_NULL,
                        "classification": _STR_NULL, "retention_until": _DATE_NULL,
                        "hidden": {"type": "boolean",
                                   "description": "Above the reader's clearance: the "
                                                  "number and date are not shown "
                                                  "(null)"}}}

OPENAPI_SCHEMAS: dict = {
    "DestructionList": {
        "type": "object",
        "required": ["id", "status", "proposed_at", "proposed_by", "reason", "counts",
                     "editors"],
        "properties": {
            "id": _STR, "status": {"enum": list(LIST_STATUSES)}, "proposed_at": _STR,
            "proposed_by": _STR, "proposer_person": _STR_NULL, "reason": _STR,
            "criteria": {"type": "object"}, "approved_at": _STR_NULL,
            "approved_by": _STR_NULL, "approver_person": _STR_NULL,
            "approving_body": _STR_NULL, "decision_number": _STR_NULL,
            "decision_date": _DATE_NULL, "legal_basis": _STR_NULL,
            "executed_at": _STR_NULL, "executed_by": _STR_NULL,
            "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "editors": {"type": "array", "items": _STR},
            "items": {"type": "array", "items": _ITEM}}},
    "DestructionListPage": {
        "type": "object", "required": ["offset", "limit", "lists"],
        "properties": {"offset": {"type": "integer"}, "limit": {"type": "integer"},
                       "lists": {"type": "array", "items": {
                           "$ref": "#/components/schemas/DestructionList"}}}},
    "DestructionEntry": {
        "type": "object",
        "required": ["record_id", "destroyed_at", "tombstone", "hidden"],
        "properties": {"id": {"type": "integer"}, "list_id": _STR, "record_id": _STR,
                       "destroyed_at": _STR, "performed_by": _STR, "reason": _STR,
                       "legal_basis": _STR, "approving_body": _STR,
                       "decision_number": _STR, "approved_by": _STR,
                       "tombstone": {"type": "object",
                                     "description": "Identifying metadata and digests "
                                                    "of the destroyed record, no content "
                                                    "(identifying text null when hidden)"},
                       "hidden": {"type": "boolean"}}},
    "DestructionRegisterPage": {
        "type": "object", "required": ["total", "offset", "limit", "entries"],
        "properties": {"total": {"type": "integer"}, "offset": {"type": "integer"},
                       "limit": {"type": "integer"},
                       "entries": {"type": "array", "items": {
                           "$ref": "#/components/schemas/DestructionEntry"}}}},
    "RecordRetention": {
        "type": "object",
        "required": ["record_id", "status", "retention_rule", "retention_until",
                     "permanent", "expired", "extensions", "holds", "on_hold"],
        "properties": {
            "record_id": _STR, "status": _STR, "retention_rule": _STR,
            "rule_label": _STR, "rule_period_years": {"type": ["integer", "null"]},
            "retention_until": _DATE_NULL, "permanent": {"type": "boolean"},
            "expired": {"type": "boolean"},
            "extensions": {"type": "array", "items": {
                "type": "object", "required": ["id", "new_until", "reason", "decision_ref",
                                               "decided_at", "decided_by"],
                "properties": {"id": _STR, "record_id": _STR,
                               "previous_until": _DATE_NULL, "new_until": _DATE_NULL,
                               "permanent": {"type": "boolean"}, "reason": _STR,
                               "decision_ref": _STR, "decided_at": _STR,
                               "decided_by": _STR}}},
            "holds": {"type": "array", "items": {
                "type": "object", "required": ["id", "kind", "reason", "placed_at",
                                               "placed_by", "active"],
                "properties": {"id": _STR, "record_id": _STR,
                               "kind": {"enum": ["legal", "revocation-inquiry"]},
                               "reason": _STR, "reference": _STR_NULL, "placed_at": _STR,
                               "placed_by": _STR, "released_at": _STR_NULL,
                               "released_by": _STR_NULL, "active": {"type": "boolean"}}}},
            "on_hold": {"type": "boolean"},
            "destroyed": {"type": ["object", "null"],
                          "properties": {"at": _STR, "list_id": _STR,
                                         "decision_number": _STR,
                                         "approving_body": _STR}}}},
}
