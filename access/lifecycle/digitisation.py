"""Digitisation of paper in the access layer (R-CONV-1, R-INCIDENT-1): the API
(``POST /api/v1/digitisations``), the clerks' form (``/digitise``) and the record-page
panel "digitised from paper original REF" with the paper's status.

Digitisation is a person's act: R-CONV-1 wants the clerk responsible for the conversion
authenticated with a second factor or a certificate, so the API takes a logged-in
user's session, never an API token (a scanning station's ``records:ingest`` token is
refused and the refusal audited); the policy then refuses a password-only session.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from flask import jsonify, request

from access import auth
from access.api import _require_login, api
from access.auth import client_address
from access.lifecycle import Panel
from access.web import web
from archive import policy
from archive.errors import AccessDenied, InputError

MAX_FILES = 2000


def _require_person(principal):
    """R-CONV-1: a named clerk, not a system's token (the denial is audited)."""
    if principal.kind != "user":
        raise AccessDenied(str(principal), policy.INGEST, "digitisation",
                           "digitisation is done by a clerk logged in with a one-time "
                           "code or a certificate (R-CONV-1), not with an API token",
                           client=client_address())


def _flag(value: str | None) -> bool:
    text = (value or "").strip().lower()
    if text in ("", "0", "false", "no", "off"):
        return False
    if text in ("1", "true", "yes", "on"):
        return True
    raise InputError("qr: expected true or false")


def _text(form, name: str, limit: int) -> str:
    value = form.get(name) or ""
    if len(value) > limit:
        raise InputError(f"{name}: at most {limit} characters")
    return value


def digitise_uploads(uploads, metadata: dict, principal, *, source: str, paper_ref: str,
                     paper_description: str, holder: str, qr: bool):
    """Run the digitisation over uploaded files saved in a private staging folder
    (removed afterwards); errors name the files as the sender did."""
    from archive.bag import safe_payload_name
    from archive.errors import ArchiveError
    from ingest.digitise import DigitisationService, ScanSource

    uploads = [u for u in uploads if u is not None and u.filename]
    if not uploads:
        raise InputError("files: the scan is required (one PDF, or TIFF/JPEG/PNG pages)")
    if len(uploads) > MAX_FILES:
        raise InputError(f"files: at most {MAX_FILES} files")
    inst = auth.instance()
    folder = inst.settings.staging_dir / f"upload-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        sources = []
        for n, upload in enumerate(uploads, 1):
            path = folder / f"{n:04d}-{safe_payload_name(Path(upload.filename).name or 'x')}"
            upload.save(path)
            sources.append(ScanSource(path, upload.filename))
        service = DigitisationService(inst.settings, inst.catalog, inst.store,
                                      principal=principal, clock=inst.clock,
                                      client=client_address())
        try:
            return service.digitise(sources, metadata, source, paper_reference=paper_ref,
                                    paper_description=paper_description, holder=holder,
                                    qr=qr)
        except ArchiveError as exc:
            for s in sources:
                exc.message = exc.message.replace(str(s.path), s.name)
            raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---- API ----------------------------------------------------------------------------


@api.post("/digitisations")
def create_digitisation():
    """Digitise a scan (multipart: ``files`` in page order, ``metadata`` as JSON text,
    ``paper_ref``, optional ``paper_description``, ``holder``, ``qr``)."""
    principal = _require_login()
    _require_person(principal)
    try:
        metadata = json.loads(request.form.get("metadata", ""))
    except ValueError as exc:
        raise InputError(f"metadata: not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise InputError("metadata: expected a JSON object")
    result = digitise_uploads(
        request.files.getlist("files"), metadata, principal, source="metadata",
        paper_ref=_text(request.form, "paper_ref", 200),
        paper_description=_text(request.form, "paper_description", 2000),
        holder=_text(request.form, "holder", 500), qr=_flag(request.form.get("qr")))
    return jsonify(result.to_dict()), 201 if result.status == "archived" else 200


# ---- web: the clerks' form ------------------------------------------------------------


@web.route("/digitise", methods=["GET", "POST"])
def digitise():
    from access.ingest_form import form_page

    principal = auth.current_principal()
    # Clerks only, with a strong login (R-AUTH-1, R-CONV-1); a denial is logged (403).
    policy.require(principal, policy.INGEST, client=client_address())
    _require_person(principal)
    return form_page("digitise.html", principal, lambda metadata: digitise_uploads(
        request.files.getlist("files"), metadata, principal,
        source="form", paper_ref=_text(request.form, "paper_ref", 200),
        paper_description=_text(request.form, "paper_description", 2000),
        holder=_text(request.form, "holder", 500), qr=request.form.get("qr") == "1"))


# ---- the record-page panel ----------------------------------------------------------


def _panel(db, inst, principal, record) -> dict | None:
    from sqlalchemy import select

    from archive.models import Event, PaperOriginal

    if record.paper_original_id is None:
        return None
    paper = db.get(PaperOriginal, record.paper_original_id)
    event = db.scalar(select(Event).where(Event.record_id == record.id,
                                          Event.event_type == "digitization")
                      .order_by(Event.occurred_at.desc()))
    data = (event.data or {}) if event is not None else {}
    return {"reference": paper.reference, "description": paper.description,
            "holder": paper.holder, "status": paper.status,
            "digitised_at": event.occurred_at if event is not None else None,
            "digitised_by": event.agent if event is not None else None,
            "pages": data.get("pages"), "organisation": data.get("organisation"),
            "certificate_sha256": data.get("certificate_sha256"),
            "sources": data.get("sources") or []}


PANEL = Panel(template="lifecycle/digitisation.html", context=_panel, order=30)


# ---- OpenAPI ----------------------------------------------------------------------------

def _problem(text: str) -> dict:
    return {"description": text, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


_STR = {"type": "string"}
_STR_NULL = {"type": ["string", "null"]}

OPENAPI_PATHS: dict = {
    "/api/v1/digitisations": {
        "post": {
            "summary": "Digitise a paper document: the scan is signed with the issuing "
                       "organisation's key, archived and linked to the paper original "
                       "(clerks logged in with a one-time code or a certificate; API tokens "
                       "are refused; R-CONV-1)",
            "tags": ["lifecycle"],
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["files", "metadata", "paper_ref"],
                "properties": {
                    "files": {"type": "array", "minItems": 1,
                              "items": {"type": "string", "format": "binary"},
                              "description": "One PDF, or TIFF/JPEG/PNG pages in order"},
                    "metadata": {"type": "string",
                                 "description": "Descriptive metadata (R-META-1) as JSON "
                                                "text, with the document's original date"},
                    "paper_ref": {"type": "string", "minLength": 1, "maxLength": 200,
                                  "description": "Reference of the paper original"},
                    "paper_description": {"type": "string", "maxLength": 2000},
                    "holder": {"type": "string", "maxLength": 500},
                    "qr": {"type": "string", "enum": ["true", "false"],
                           "description": "Stamp a QR code to the record on page 1"}}}}}},
            "responses": {
                "201": {"description": "Archived", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/DigitisationResult"}}}},
                "200": {"description": "Already archived (duplicate)", "content": {
                    "application/json": {"schema": {
                        "$ref": "#/components/schemas/DigitisationResult"}}}},
                "400": _problem("Bad input: metadata, a corrupt or unsupported scan"),
                "401": _problem("No valid credentials"),
                "403": _problem("Refused by the policy: an API token, a password-only "
                                "session, a role that may not ingest (audited)"),
                "413": _problem("Upload too large"),
                "422": _problem("Refused: no signing key for the organisation, its "
                                "certificate not bound, a revoked paper original, or the "
                                "signature gate (with the return-to-sender report)"),
            },
        },
    },
}

OPENAPI_SCHEMAS: dict = {
    "DigitisationResult": {
        "type": "object",
        "required": ["status", "record_id", "paper_reference", "pages", "organisation",
                     "certificate_sha256", "signed_sha256", "sources"],
        "properties": {
            "status": {"enum": ["archived", "duplicate"]}, "record_id": _STR,
            "storage_key": _STR, "paper_reference": _STR, "pages": {"type": "integer"},
            "organisation": _STR, "certificate_sha256": _STR, "signed_sha256": _STR,
            "signed_size": {"type": "integer"}, "qr_url": _STR_NULL,
            "sources": {"type": "array", "items": {"type": "object"}},
            "signatures": {"type": ["object", "null"]}, "message": _STR}},
}
