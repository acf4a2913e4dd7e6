"""The ingest form of the web UI (clerks): a PDF and its descriptive metadata.

The submission goes through the same :class:`~ingest.services.IngestService` as the CLI
and the API (R-META-1, R-SIG-2). What comes back is shown where the clerk can act on
it: every bad field next to its input, a refusal as its return-to-sender report in
plain words, an archived document as a link to its record.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import render_template, request
from flask_babel import gettext as _

from access import auth, labels
from access.auth import client_address
from access.web import web
from archive import policy
from archive.errors import (
    AccessDenied,
    InputError,
    MetadataInvalid,
    Refused,
    SubmissionRefused,
)

TEXT_FIELDS = ("number_symbol", "summary", "signer", "signer_position", "fonds",
               "file_ref", "title", "notes")
CHOICE_FIELDS = ("doc_type", "issuing_org", "classification", "retention_rule", "language")
CLASSIFICATIONS = ("normal", "mat", "toi-mat")


def metadata_from_form(form) -> dict:
    """The metadata object of the submission; empty inputs are left out."""
    data: dict = {}
    for name in (*TEXT_FIELDS, *CHOICE_FIELDS, "date"):
        value = (form.get(name) or "").strip()
        if value:
            data[name] = form.get(name) if name in ("summary", "notes") else value
    pages = (form.get("page_count") or "").strip()
    if pages:
        data["page_count"] = int(pages) if pages.isdigit() and len(pages) < 10 else pages
    recipients = [r.strip() for r in (form.get("recipients") or "").split(",") if r.strip()]
    if recipients:
        data["recipients"] = recipients
    return data


def _organisations(principal) -> list[tuple[str, str]]:
    """Registered organisations for the select box (empty: a text input is shown)."""
    from archive.agents import list_agents

    if not policy.decide(principal, policy.AGENT_READ).allowed:
        return []
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        return [(a.identifier, a.name) for a in
                list_agents(db, principal, "organisation", clock=inst.clock)
                if a.status == "active"]


def _ingest(upload, metadata: dict, principal):
    from access.api import ingest_upload

    if upload is None or not upload.filename:
        raise InputError(_("Choose the PDF file of the document."))
    return ingest_upload(upload, metadata, principal, source="form")


def refusal_view(exc: SubmissionRefused) -> dict:
    """The return-to-sender report as the page shows it: each problem in plain words."""
    report = exc.report or {}
    problems: list[dict] = []
    signatures = report.get("signatures") or {}
    for item in signatures.get("problems") or []:
        problems.append({"text": labels.localised(item), "severity": item.get("severity")})
    for sig in signatures.get("signatures") or []:
        for item in sig.get("problems") or []:
            if item.get("severity") in ("error", "indeterminate"):
                problems.append({"text": labels.localised(item),
                                 "severity": item.get("severity")})
    for item in (report.get("policy") or {}).get("problems") or []:
        if item.get("blocking", True):
            problems.append({"text": labels.localised(item), "severity": "error"})
    fmt = report.get("format")
    if fmt:
        problems.append({"text": _("The file format %(name)s is not accepted: only "
                                          "PDF documents are archived.",
                                          name=fmt.get("name") or fmt.get("puid") or "?"),
                         "severity": "error"})
    return {"submission_id": exc.submission_id, "reason": report.get("reason") or exc.message,
            "verdict": signatures.get("verdict"), "problems": problems,
            "signatures": signatures.get("signatures") or []}


@web.route("/ingest", methods=["GET", "POST"])
def ingest():
    principal = auth.current_principal()
    # Clerks only, with a strong login (R-AUTH-1); a denial is logged and shown (403).
    policy.require(principal, policy.INGEST, client=client_address())
    return form_page("ingest.html", principal, lambda metadata: _ingest(
        request.files.get("file"), metadata, principal))


def form_page(template: str, principal, run: Callable[[dict], object]):
    """A submission form (ingest, digitisation): on POST, ``run(metadata)`` archives;
    bad fields, a refusal report or another error are shown on the same page, with
    what was typed kept. A denial (e.g. a classification above the clerk's clearance)
    is the 403 page."""
    context: dict = {"values": {}, "field_errors": {}, "error": None, "refusal": None,
                     "result": None}
    status = 200
    if request.method == "POST":
        context["values"] = request.form
        try:
            context["result"] = run(metadata_from_form(request.form))
            context["values"] = {}
        except MetadataInvalid as exc:
            for problem in exc.problems:
                context["field_errors"].setdefault(problem.field, []).append(
                    labels.explain_field(problem.message))
            status = 400
        except SubmissionRefused as exc:
            context["refusal"] = refusal_view(exc)
            status = 422
        except AccessDenied:
            raise
        except (InputError, Refused) as exc:
            context["error"] = exc.message
            status = 400 if isinstance(exc, InputError) else 422
    settings = auth.instance().settings
    return render_template(
        template, organisations=_organisations(principal),
        doc_types=settings.document_types, retention=settings.retention,
        languages=settings.metadata.languages, classifications=CLASSIFICATIONS,
        text_fields=TEXT_FIELDS, **context), status
