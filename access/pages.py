"""Pages of the web UI after login: search, record, download, own history, audit log.

Each page calls the same core services as the API (policy-checked and audited there);
the page only decides what to show. Links and buttons appear only for what the policy
would allow (:func:`archive.policy.decide`), and a denied request still reaches the
service, so the denial is logged and shown with its reason (HTTP 403).
"""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from flask_babel import format_decimal
from flask_babel import lazy_gettext as _l

from access import auth, ingest_form, labels, lifecycle  # noqa: F401 - ingest_form adds /ingest
from access.api import (
    AUDIT_OUTCOMES,
    audit_query,
    original_response,
    record_filter,
    record_id_param,
)
from access.auth import client_address
from access.web import web
from archive import policy
from archive.errors import InputError

PAGE_SIZE = 20
AUDIT_PAGE_SIZE = 50
# Query parameters of the search and audit forms (kept across pages and exports).
SEARCH_ARGS = ("q", "type", "from", "to", "org", "classification", "status")
AUDIT_ARGS = ("actor", "action", "outcome", "target", "from", "to")
# Events of one ingest share its time: show them in the order the steps happen.
EVENT_ORDER = {"message digest calculation": 0, "format identification": 1, "validation": 2,
               "encryption": 3, "timestamping": 4, "ingestion": 5, "fixity check": 6}


# ---- what every page may use --------------------------------------------------------


@web.app_context_processor
def _page_context():
    principal = auth.current_principal()
    nav = []
    if principal.kind != "anonymous":
        def may(action: str) -> bool:
            return policy.decide(principal, action).allowed

        entries = (
            ("web.records", may(policy.SEARCH), _l("Search")),
            ("web.ingest", may(policy.INGEST), _l("Submit a document")),
            ("web.drafts_page", may(policy.INGEST), _l("Drafts")),
            ("web.digitise", may(policy.INGEST), _l("Digitise paper")),
            ("web.my_access", may(policy.ACCOUNT), _l("My access history")),
            ("web.notifications", may(policy.ACCOUNT), _l("Notifications")),
            # The seal list is for those who seal or audit (archive.sealing.list_seals).
            ("web.seals_page", bool({policy.SEAL, policy.AUDIT_READ}
                                    & policy.allowed_actions(principal)), _l("Seals")),
            # Destruction lists and the register (R-DESTROY-1/2): archivists, approvers,
            # inspectors and auditors.
            ("web.destruction_page", may(policy.REGISTER_READ), _l("Destruction")),
            # Job runs (R-SCHED-1): auditors and administrators (preservation.runner).
            ("web.jobs_page", bool({policy.AUDIT_READ, policy.CONFIG_MANAGE}
                                   & policy.allowed_actions(principal)), _l("Jobs")),
            ("web.audit", may(policy.AUDIT_READ), _l("Audit log")))
        nav = [(endpoint, str(text)) for endpoint, shown, text in entries if shown]
    return {"nav": nav, "L": labels, "DISPLAY_ZONE": "UTC+7"}


@web.app_template_filter("day")
def _day(value):
    return labels.show_date(value)


@web.app_template_filter("moment")
def _moment(value):
    return labels.show_time(value)


@web.app_template_filter("number")
def _number(value):
    return format_decimal(value)


@web.app_template_global()
def page_url(offset: int | None = None, **changes) -> str:
    """The current page's URL with the same query, at another offset or filter."""
    args = {k: v for k, v in request.args.items() if v != "" and k != "offset"}
    args.update({k: v for k, v in changes.items() if v is not None})
    if offset:
        args["offset"] = offset
    return url_for(request.endpoint, **(request.view_args or {}), **args)


def _pages(total: int, offset: int, limit: int) -> dict:
    return {"total": total, "offset": offset, "limit": limit,
            "first": offset + 1 if total else 0, "last": min(offset + limit, total),
            "prev": max(offset - limit, 0) if offset > 0 else None,
            "next": offset + limit if offset + limit < total else None}


def _with_limit(args, limit: int) -> dict:
    values = {k: v for k, v in args.items() if v != ""}
    values.setdefault("limit", str(limit))
    return values


def record_badges(record) -> list[tuple[str, str]]:
    """(css class, text) of the record's status badges: classified, revoked, sealed..."""
    out = []
    if record.classification != "normal":
        out.append((f"badge-{record.classification}",
                    labels.label(labels.CLASSIFICATIONS, record.classification)))
    if record.active_seal is not None:  # R-SEAL-3: the system marks sealed documents
        out.append(("badge-sealed", labels.label(labels.STATUSES, "sealed")))
    if record.status != "active":
        out.append((f"badge-{record.status}", labels.label(labels.STATUSES, record.status)))
    return out


# ---- search -------------------------------------------------------------------------


@web.get("/")
def home():
    return redirect(url_for("web.records"))


@web.get("/records")
def records():
    from archive.records import list_records

    inst = auth.instance()
    error = None
    try:
        flt = record_filter(_with_limit(request.args, PAGE_SIZE))
    except InputError as exc:
        error, flt = exc.message, None
    total, rows = 0, []
    if flt is not None:
        with inst.catalog.unit_of_work() as db:
            total, rows = list_records(db, auth.current_principal(), flt,
                                       client=client_address(), clock=inst.clock)
            rows = [(r, r.issuing_org.name if r.issuing_org else "", record_badges(r))
                    for r in rows]
    return render_template(
        "records.html", rows=rows, error=error, searched=any(
            request.args.get(k) for k in SEARCH_ARGS),
        pages=_pages(total, flt.offset if flt else 0, flt.limit if flt else PAGE_SIZE),
        doc_types=inst.settings.document_types,
        classifications=policy.LEVELS, statuses=("active", "revoked", "destroyed"),
    ), 400 if error else 200


# ---- one record ---------------------------------------------------------------------


@web.get("/records/<record_id>")
def record(record_id: str):
    from archive.records import record_history, record_to_dict, show_record, signature_report

    inst = auth.instance()
    principal = auth.current_principal()
    rid = record_id_param(record_id)
    with inst.catalog.unit_of_work() as db:
        found = show_record(db, principal, rid, client=client_address(), clock=inst.clock)
        data = record_to_dict(found, detail=True)
        facts = policy.facts_of(found)
        badges = record_badges(found)
        history = policy.decide(principal, policy.HISTORY, facts)
        download = policy.decide(principal, policy.DOWNLOAD, facts)
        events = record_history(db, principal, rid, client=client_address(),
                                clock=inst.clock) if history else []
        events = [{"type": e.event_type, "at": e.occurred_at, "agent": e.agent,
                   "outcome": e.outcome, "detail": e.detail}
                  for e in sorted(events, key=lambda e: (e.occurred_at,
                                                         EVENT_ORDER.get(e.event_type, 99)))]
        panels = [(p.template, ctx) for p in lifecycle.panels()
                  if (ctx := p.context(db, inst, principal, found)) is not None]
        report = report_denied = None
        if facts.seal is not None and not history:  # R-SEAL-2: read from the sealed AIP
            report_denied = labels.explain_reason(
                f"the record is sealed under decision {facts.seal.reference}")
        elif found.status != "destroyed":  # the AIP of a destroyed record is gone (#6)
            report = signature_report(db, inst.store, principal, rid,
                                      client=client_address(), clock=inst.clock)
    settings = inst.settings
    doc_type = settings.document_types.get(data["doc_type"])
    retention = settings.retention.get(data["retention_rule"])
    return render_template(
        "record.html", r=data, status_badges=badges, events=events, report=report,
        report_denied=report_denied,
        panels=panels,
        history_denied=None if history else labels.explain_reason(history.reason),
        download_denied=None if download else labels.explain_reason(download.reason),
        doc_type_label=doc_type.label if doc_type else data["doc_type"],
        retention_label=retention.label if retention else data["retention_rule"])


@web.get("/records/<record_id>/download")
def download(record_id: str):
    """The original, verified while it streams (R-FIX-1); decrypted when classified."""
    return original_response(record_id)


# ---- own access history (every user) and the audit log (auditors) -------------------


@web.get("/me/access")
def my_access():
    from archive.audit import own_entries

    inst = auth.instance()
    q = audit_query(_with_limit({"offset": request.args.get("offset", "")},
                                AUDIT_PAGE_SIZE))
    with inst.catalog.unit_of_work() as db:
        total, rows = own_entries(db, auth.current_principal(), q, client=client_address(),
                                  clock=inst.clock)
        entries = [_entry(e) for e in rows]
    return render_template("my_access.html", entries=entries,
                           pages=_pages(total, q.offset, q.limit))


@web.get("/audit")
def audit():
    from archive.audit import query

    inst = auth.instance()
    error = None
    try:
        q = audit_query(_with_limit(request.args, AUDIT_PAGE_SIZE))
    except InputError as exc:
        error, q = exc.message, None
        policy.require(auth.current_principal(), policy.AUDIT_READ, client=client_address())
    total, entries = 0, []
    if q is not None:
        with inst.catalog.unit_of_work() as db:
            total, rows = query(db, auth.current_principal(), q, client=client_address(),
                                clock=inst.clock)
            entries = [_entry(e) for e in rows]
    filters = {k: request.args[k] for k in AUDIT_ARGS if request.args.get(k)}
    return render_template(
        "audit.html", entries=entries, error=error, outcomes=AUDIT_OUTCOMES,
        pages=_pages(total, q.offset if q else 0, q.limit if q else AUDIT_PAGE_SIZE),
        export_csv=url_for("api.audit_export", format="csv", **filters),
        export_jsonl=url_for("api.audit_export", format="jsonl", **filters),
    ), 400 if error else 200


def _entry(entry) -> dict:
    target = entry.target or ""
    record_id = target.split(":", 1)[1] if target.startswith("record:") else None
    return {"seq": entry.seq, "at": entry.occurred_at, "actor": entry.actor,
            "action": entry.action, "target": target, "record_id": record_id,
            "outcome": entry.outcome, "client": entry.client,
            "reason": (entry.detail or {}).get("reason")}
