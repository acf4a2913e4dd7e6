"""Drafts in the access layer (R-AMEND-1): the JSON API under ``/api/v1/drafts`` and
the pages ``/drafts`` (list, new draft) and ``/drafts/<id>`` (edit with a required
reason, change history, submit, discard). Imported by :mod:`access.lifecycle.amendments`.
"""

from __future__ import annotations

import json
import uuid

from flask import jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from access import auth
from access.api import _choice, _require_login, api
from access.auth import client_address
from access.web import web
from archive import policy
from archive.errors import InputError, MetadataInvalid, Refused, SubmissionRefused

# The fields the pages offer (others stay as they are, and show in the table).
FIELDS = ("number_symbol", "doc_type", "date", "issuing_org", "summary", "title", "signer",
          "signer_position", "page_count", "language", "classification", "retention_rule",
          "fonds", "file_ref", "notes")


def draft_id_param(draft_id: str) -> str:
    try:
        return str(uuid.UUID(draft_id))
    except ValueError as exc:
        raise InputError(f"draft id {draft_id!r} is not a UUID") from exc


def _json_field(form, name: str, *, required: bool = True) -> dict:
    raw = form.get(name)
    if raw is None or raw == "":
        if required:
            raise InputError(f"{name}: a JSON object is required")
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{name}: not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InputError(f"{name}: expected a JSON object")
    return value


def _file(files):
    upload = files.get("file")
    return (upload.stream, upload.filename) if upload is not None and upload.filename \
        else (None, None)


def _submit(principal, draft_id: str):
    from ingest.drafts import submit_draft
    from ingest.services import IngestService

    inst = auth.instance()
    service = IngestService(inst.settings, inst.catalog, inst.store, principal=principal,
                            clock=inst.clock)
    try:
        return submit_draft(service, draft_id, client=client_address())
    finally:
        service.close()


# ---- API ----------------------------------------------------------------------------


@api.get("/drafts")
def list_drafts():
    from archive.drafts import draft_to_dict
    from archive.drafts import list_drafts as find

    principal = _require_login()
    status = _choice(request.args, "status", ("draft", "archived", "discarded")) or "draft"
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        rows = find(db, principal, status=status, client=client_address(), clock=inst.clock)
        return jsonify({"drafts": [draft_to_dict(d) for d in rows]})


@api.post("/drafts")
def create_draft():
    from archive.drafts import create_draft as create
    from archive.drafts import draft_to_dict

    principal = _require_login()
    metadata = _json_field(request.form, "metadata")
    stream, name = _file(request.files)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        draft = create(db, inst.store, principal, metadata, file=stream, file_name=name,
                       client=client_address(), clock=inst.clock)
        return jsonify(draft_to_dict(draft, changes=True)), 201


@api.get("/drafts/<draft_id>")
def show_draft(draft_id: str):
    from archive.drafts import draft_to_dict
    from archive.drafts import show_draft as show

    principal = _require_login()
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        draft = show(db, principal, draft_id_param(draft_id), client=client_address(),
                     clock=inst.clock)
        return jsonify(draft_to_dict(draft, changes=True))


@api.patch("/drafts/<draft_id>")
def update_draft(draft_id: str):
    from archive.drafts import change_to_dict
    from archive.drafts import update_draft as update

    principal = _require_login()
    did = draft_id_param(draft_id)
    changes = _json_field(request.form, "changes", required=False)
    stream, name = _file(request.files)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        change = update(db, inst.store, principal, did, changes, request.form.get("reason", ""),
                        file=stream, file_name=name, client=client_address(),
                        clock=inst.clock)
        return jsonify(change_to_dict(change))


@api.post("/drafts/<draft_id>/submit")
def submit_draft(draft_id: str):
    principal = _require_login()
    result = _submit(principal, draft_id_param(draft_id))
    return jsonify({**result.to_dict(), "draft_id": draft_id}), 201


@api.post("/drafts/<draft_id>/discard")
def discard_draft(draft_id: str):
    from archive.drafts import change_to_dict
    from archive.drafts import discard_draft as discard

    principal = _require_login()
    did = draft_id_param(draft_id)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        change = discard(db, principal, did, request.form.get("reason", ""),
                         client=client_address(), clock=inst.clock)
        return jsonify(change_to_dict(change))


# ---- pages --------------------------------------------------------------------------


def _form_fields(form) -> dict:
    """Non-empty fields of the page's form (page_count as a number when it is one)."""
    data = {}
    for name in FIELDS:
        value = (form.get(name) or "").strip()
        if value:
            data[name] = int(value) if name == "page_count" and value.isdigit() and \
                len(value) < 10 else value
    return data


@web.route("/drafts", methods=["GET", "POST"])
def drafts_page():
    from archive.drafts import create_draft as create
    from archive.drafts import list_drafts as find

    inst = auth.instance()
    principal = auth.current_principal()
    policy.require(principal, policy.INGEST, client=client_address())
    error, status = None, 200
    if request.method == "POST":
        stream, name = _file(request.files)
        try:
            with inst.catalog.unit_of_work() as db:
                draft = create(db, inst.store, principal, _form_fields(request.form),
                               file=stream, file_name=name, client=client_address(),
                               clock=inst.clock)
            return redirect(url_for("web.draft_page", draft_id=draft.id), 303)
        except InputError as exc:
            error, status = exc.message, 400
    shown = request.args.get("status") or "draft"
    if shown not in ("draft", "archived", "discarded"):
        shown = "draft"
    with inst.catalog.unit_of_work() as db:
        rows = [{"id": d.id, "status": d.status, "updated_at": d.updated_at,
                 "number_symbol": (d.metadata_ or {}).get("number_symbol", ""),
                 "summary": (d.metadata_ or {}).get("summary", ""),
                 "changes": len(d.changes)}
                for d in find(db, principal, status=shown, client=client_address(),
                              clock=inst.clock)]
    return render_template("drafts.html", rows=rows, shown=shown, error=error,
                           fields=FIELDS, values=request.form), status


@web.route("/drafts/<draft_id>", methods=["GET", "POST"])
def draft_page(draft_id: str):
    from archive.drafts import draft_to_dict, show_draft, update_draft

    inst = auth.instance()
    principal = auth.current_principal()
    did = draft_id_param(draft_id)
    error, problems, status = None, [], 200
    if request.method == "POST":
        action = request.form.get("action", "edit")
        try:
            if action == "submit":
                result = _submit(principal, did)
                return redirect(url_for("web.record", record_id=result.record_id), 303)
            if action == "discard":
                from archive.drafts import discard_draft

                with inst.catalog.unit_of_work() as db:
                    discard_draft(db, principal, did, request.form.get("reason", ""),
                                  client=client_address(), clock=inst.clock)
            else:
                with inst.catalog.unit_of_work() as db:
                    current = dict(show_draft(db, principal, did, client=client_address(),
                                              clock=inst.clock).metadata_)
                wanted = _form_fields(request.form)
                # Fields the page shows and the clerk emptied are removed.
                changes = {k: wanted.get(k) for k in FIELDS
                           if wanted.get(k) != current.get(k)}
                stream, name = _file(request.files)
                with inst.catalog.unit_of_work() as db:
                    update_draft(db, inst.store, principal, did, changes,
                                 request.form.get("reason", ""), file=stream, file_name=name,
                                 client=client_address(), clock=inst.clock)
            return redirect(url_for("web.draft_page", draft_id=did), 303)
        except MetadataInvalid as exc:
            error, status = _("Some fields are not valid."), 400
            problems = [f"{p.field}: {p.message}" for p in exc.problems]
        except SubmissionRefused as exc:
            error, status = exc.message, 422
        except (InputError, Refused) as exc:
            if getattr(exc, "denial", None) is not None:
                raise  # AccessDenied: the 403 page with its reason
            error, status = exc.message, 400 if isinstance(exc, InputError) else 422
    with inst.catalog.unit_of_work() as db:
        draft = draft_to_dict(show_draft(db, principal, did, client=client_address(),
                                         clock=inst.clock), changes=True)
    others = {k: v for k, v in draft["metadata"].items() if k not in FIELDS}
    return render_template("drafts_edit.html", d=draft, fields=FIELDS, others=others,
                           error=error, problems=problems), status


# ---- OpenAPI ------------------------------------------------------------------------

_STR = {"type": "string"}
_DRAFT_ID = {"name": "draft_id", "in": "path", "required": True,
             "schema": {"type": "string", "format": "uuid"}, "description": "Draft id"}


def _problem(text: str) -> dict:
    return {"description": text, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _ok(schema: str, text: str = "OK") -> dict:
    return {"description": text, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{schema}"}}}}


_ERRORS = {"400": _problem("Bad input"), "401": _problem("No valid credentials"),
           "403": _problem("Refused by the policy (the denial is audited)")}
_ONE = {**_ERRORS, "404": _problem("No such draft"),
        "422": _problem("Refused: the draft was archived or discarded (an archived record is "
                        "never edited: ingest a correction)")}


def _form(required: list[str], properties: dict) -> dict:
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": required, "properties": properties}}}}


OPENAPI_PATHS: dict = {
    "/api/v1/drafts": {
        "get": {"summary": "Drafts the caller may see (clerks of their fonds/organisation)",
                "tags": ["drafts"],
                "parameters": [{"name": "status", "in": "query", "required": False,
                                "allowEmptyValue": True, "description": "Status (default draft)",
                                "schema": {"type": "string",
                                           "enum": ["draft", "archived", "discarded"]}}],
                "responses": {"200": {"description": "OK", "content": {"application/json": {
                    "schema": {"type": "object", "required": ["drafts"], "properties": {
                        "drafts": {"type": "array",
                                   "items": {"$ref": "#/components/schemas/Draft"}}}}}}},
                    **_ERRORS}},
        "post": {"summary": "Start a draft (metadata JSON, optional file)", "tags": ["drafts"],
                 "requestBody": _form(["metadata"], {
                     "metadata": {"type": "string", "description": "JSON object"},
                     "file": {"type": "string", "format": "binary"}}),
                 "responses": {"201": _ok("Draft", "Created"), **_ERRORS,
                               "413": _problem("File too large")}},
    },
    "/api/v1/drafts/{draft_id}": {
        "get": {"summary": "A draft with its change history (who, when, what, why)",
                "tags": ["drafts"], "parameters": [_DRAFT_ID],
                "responses": {"200": _ok("Draft"), **_ERRORS,
                              "404": _problem("No such draft")}},
        "patch": {"summary": "Change a draft's fields and/or file, with the reason",
                  "tags": ["drafts"], "parameters": [_DRAFT_ID],
                  "requestBody": _form(["reason"], {
                      "changes": {"type": "string",
                                  "description": "JSON object: field -> new value (null "
                                                 "removes it)"},
                      "reason": {"type": "string", "minLength": 1},
                      "file": {"type": "string", "format": "binary"}}),
                  "responses": {"200": _ok("DraftChange"), **_ONE,
                                "413": _problem("File too large")}},
    },
    "/api/v1/drafts/{draft_id}/submit": {
        "post": {"summary": "Archive the draft through the full ingest", "tags": ["drafts"],
                 "parameters": [_DRAFT_ID],
                 "responses": {"201": _ok("IngestResult", "Archived"), **_ONE}},
    },
    "/api/v1/drafts/{draft_id}/discard": {
        "post": {"summary": "Discard the draft (recorded, with the reason)",
                 "tags": ["drafts"], "parameters": [_DRAFT_ID],
                 "requestBody": _form(["reason"], {"reason": {"type": "string",
                                                              "minLength": 1}}),
                 "responses": {"200": _ok("DraftChange"), **_ONE}},
    },
}

OPENAPI_SCHEMAS: dict = {
    "Draft": {"type": "object", "required": ["id", "status", "metadata", "created_by"],
              "properties": {"id": _STR, "status": {"enum": ["draft", "archived", "discarded"]},
                             "created_at": _STR, "created_by": _STR, "updated_at": _STR,
                             "metadata": {"type": "object"},
                             "file_name": {"type": ["string", "null"]},
                             "file_sha256": {"type": ["string", "null"]},
                             "record_id": {"type": ["string", "null"]},
                             "changes": {"type": "array",
                                         "items": {"$ref": "#/components/schemas/DraftChange"}}}},
    "DraftChange": {"type": "object", "required": ["changed_at", "changed_by", "changes",
                                                   "reason"],
                    "properties": {"changed_at": _STR, "changed_by": _STR,
                                   "changes": {"type": "object"}, "reason": _STR}},
}
