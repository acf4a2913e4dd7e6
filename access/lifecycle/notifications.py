"""Notifications in the access layer (R-REVOKE-1, R-SIG-2): the API listing, delivery on
demand for administrators, and the web page listing the caller's notifications.

Who sees what is decided by :func:`archive.notifications.list_notifications`: a user sees
the notifications addressed to them and to their organisation; auditors and
administrators see all. Every listing is audited.
"""

from __future__ import annotations

from flask import jsonify, render_template, request

from access import auth
from access.api import _choice, _int, _page, _require_login, _text, api
from access.auth import client_address
from access.lifecycle import Panel
from access.web import web
from archive import policy
from archive.notifications import STATUSES, NotificationFilter

PAGE_SIZE = 50


def _filter(args, *, limit: int = 50) -> NotificationFilter:
    return NotificationFilter(status=_choice(args, "status", STATUSES),
                              recipient=_text(args, "recipient", 200),
                              limit=_int(args, "limit", limit, 1, 500),
                              offset=_int(args, "offset", 0, 0, 10**9))


@api.get("/notifications")
def list_notifications():
    from archive.notifications import list_notifications as listing
    from archive.notifications import notification_to_dict

    principal = _require_login()
    flt = _filter(request.args)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        total, rows = listing(db, principal, flt, client=client_address(), clock=inst.clock)
        return _page(total, flt, "notifications", [notification_to_dict(n) for n in rows])


@api.post("/notifications/deliver")
def deliver_notifications():
    """Deliver every pending notification now (administrators, strong login)."""
    from preservation.notify import deliver_pending

    principal = _require_login()
    inst = auth.instance()
    with inst.catalog.unit_of_work():  # a denial is rolled back and audited
        policy.require(principal, policy.AGENT_MANAGE, client=client_address())
    report = deliver_pending(inst.settings, inst.catalog, clock=inst.clock,
                             principal=principal, client=client_address())
    return jsonify(report.to_dict())


@web.get("/notifications")
def notifications():
    from access.pages import _pages
    from archive.notifications import list_notifications as listing
    from archive.notifications import sees_all

    principal = auth.current_principal()
    flt = _filter({**request.args, "limit": str(PAGE_SIZE)}, limit=PAGE_SIZE)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        total, rows = listing(db, principal, flt, client=client_address(), clock=inst.clock)
        items = [_item(n) for n in rows]
    return render_template("notifications.html", items=items, statuses=STATUSES,
                           everything=sees_all(principal),
                           pages=_pages(total, flt.offset, flt.limit))


def _item(note) -> dict:
    related = note.related or ""
    kind, _, ident = related.partition(":")
    return {"id": note.id, "created_at": note.created_at, "recipient": note.recipient,
            "kind": note.kind, "subject": note.subject, "body": note.body,
            "status": note.status, "attempts": note.attempts or 0,
            "delivered_at": note.delivered_at, "last_error": note.last_error,
            "related": related, "record_id": ident if kind == "record" else None}


# ---- OpenAPI -----------------------------------------------------------------------------


def _problem(text: str) -> dict:
    return {"description": text, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _query(name: str, schema: dict, text: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "allowEmptyValue": True, "description": text}


_NULL_STR = {"type": ["string", "null"]}

OPENAPI_PATHS: dict = {
    "/api/v1/notifications": {
        "get": {
            "summary": "Notifications: the caller's own and their organisation's; all for "
                       "auditors and administrators (R-REVOKE-1, R-SIG-2)",
            "tags": ["lifecycle"],
            "parameters": [
                _query("status", {"type": "string", "enum": list(STATUSES)},
                       "Delivery status"),
                _query("recipient", {"type": "string", "maxLength": 200},
                       "Organisation identifier or principal (e.g. user:an); another's "
                       "needs audit.read"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500},
                       "Page size"),
                _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9},
                       "First row"),
            ],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/NotificationPage"}}}},
                "400": _problem("Bad input (every problem named)"),
                "401": _problem("No valid credentials"),
                "403": _problem("Refused by the policy: an API token without audit:read, "
                                "or another recipient's notifications (audited)"),
            },
        },
    },
    "/api/v1/notifications/deliver": {
        "post": {
            "summary": "Deliver every pending notification now by e-mail and webhook "
                       "(administrators, one-time code or certificate login)",
            "tags": ["lifecycle"],
            "responses": {
                "200": {"description": "What each attempt did", "content": {
                    "application/json": {"schema": {
                        "$ref": "#/components/schemas/DeliveryReport"}}}},
                "400": _problem("A missing CSRF token on a cookie-authenticated call"),
                "401": _problem("No valid credentials"),
                "403": _problem("Refused by the policy: not an administrator, or a "
                                "password-only login (audited)"),
            },
        },
    },
}

OPENAPI_SCHEMAS: dict = {
    "Notification": {
        "type": "object",
        "required": ["id", "created_at", "recipient", "kind", "subject", "body", "status",
                     "attempts"],
        "properties": {
            "id": {"type": "string"}, "created_at": {"type": "string"},
            "recipient": {"type": "string"}, "kind": {"type": "string"},
            "subject": {"type": "string"}, "body": {"type": "string"},
            "related": _NULL_STR, "channel": {"type": "string"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "attempts": {"type": "integer"}, "delivered_at": _NULL_STR,
            "last_error": _NULL_STR}},
    "NotificationPage": {
        "type": "object", "required": ["total", "offset", "limit", "notifications"],
        "properties": {"total": {"type": "integer"}, "offset": {"type": "integer"},
                       "limit": {"type": "integer"},
                       "notifications": {"type": "array", "items": {
                           "$ref": "#/components/schemas/Notification"}}}},
    "DeliveryReport": {
        "type": "object",
        "required": ["ok", "attempted", "sent", "retrying", "failed", "recorded", "skipped",
                     "outcomes"],
        "properties": {
            "ok": {"type": "boolean"}, "attempted": {"type": "integer"},
            "sent": {"type": "integer"}, "retrying": {"type": "integer"},
            "failed": {"type": "integer"}, "recorded": {"type": "integer"},
            "skipped": {"type": "integer"},
            "outcomes": {"type": "array", "items": {
                "type": "object", "required": ["id", "recipient", "kind", "status"],
                "properties": {"id": {"type": "string"}, "recipient": {"type": "string"},
                               "kind": {"type": "string"},
                               "status": {"type": "string", "enum": [*STATUSES, "skipped"]},
                               "attempts": {"type": "integer"},
                               "channels": {"type": "array", "items": {"type": "string"}},
                               "error": _NULL_STR}}}}},
}



def _panel(db, inst, principal, record) -> dict | None:
    """The notifications about this record the caller may see (revocations), when any;
    part of the record's history, so only for those who may read its history."""
    from archive.notifications import list_notifications as listing
    from archive.notifications import sees_all

    if not policy.decide(principal, policy.HISTORY, policy.facts_of(record)):
        return None
    if not sees_all(principal) and not policy.decide(principal, policy.ACCOUNT):
        return None
    total, rows = listing(db, principal, NotificationFilter(related=f"record:{record.id}",
                                                            limit=20),
                          client=client_address(), clock=inst.clock)
    if not total:
        return None
    return {"notes": [_item(n) for n in rows], "total": total}


PANEL = Panel(template="lifecycle/notifications.html", context=_panel, order=90)
