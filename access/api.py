"""The JSON API under ``/api/v1`` (R-REPO-1: permissioned access for other systems).

Every endpoint calls the same core services as the CLI; the services ask the policy
decision point and write the audit entries. Views here only translate HTTP to
service calls and back. The OpenAPI document (``/api/v1/openapi.json``) is built in
:mod:`access.openapi`, and a test checks it against these routes.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from flask import Blueprint, Response, g, jsonify, request, stream_with_context

from access.auth import client_address, current_principal, instance
from archive.errors import ArchiveError, InputError, IntegrityError

api = Blueprint("api", __name__, url_prefix="/api/v1")

CHUNK = 1024 * 1024


# ---- parameters ---------------------------------------------------------------------


def _date(args, name: str) -> date | None:
    value = args.get(name)
    if not value:
        return None
    try:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
            raise ValueError(value)  # fromisoformat also takes 20250314, 2025-W11-5 ...
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"{name}: not a date in YYYY-MM-DD form") from exc


def _int(args, name: str, default: int, low: int, high: int) -> int:
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError as exc:
        raise InputError(f"{name}: not a whole number") from exc
    if not low <= number <= high:
        raise InputError(f"{name}: must be between {low} and {high}")
    return number


def _text(args, name: str, limit: int = 200) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    if len(value) > limit:
        raise InputError(f"{name}: at most {limit} characters")
    if "\x00" in value:
        raise InputError(f"{name}: must not contain a NUL character")
    return value


def _choice(args, name: str, choices) -> str | None:
    value = args.get(name) or None
    if value is not None and value not in choices:
        raise InputError(f"{name}: expected one of {', '.join(choices)}")
    return value


def record_filter(args):
    """A :class:`~archive.records.RecordFilter` from query parameters (validated)."""
    from archive.policy import LEVELS
    from archive.records import RecordFilter

    date_from, date_to = _date(args, "from"), _date(args, "to")
    if date_from and date_to and date_from > date_to:
        raise InputError("from: must not be after to")
    return RecordFilter(text=_text(args, "q"), doc_type=_text(args, "type", 50),
                        issuing_org=_text(args, "org", 64),
                        status=_choice(args, "status", ("active", "revoked", "destroyed")),
                        classification=_choice(args, "classification", tuple(LEVELS)),
                        date_from=date_from, date_to=date_to,
                        limit=_int(args, "limit", 50, 1, 500),
                        offset=_int(args, "offset", 0, 0, 10**9))


def record_id_param(record_id: str) -> str:
    try:
        return str(uuid.UUID(record_id))
    except ValueError as exc:
        raise InputError(f"record id {record_id!r} is not a UUID") from exc


def _require_login():
    from archive.errors import NotAuthenticated

    principal = current_principal()
    if principal.kind == "anonymous":
        reason = "invalid, expired or revoked API token" if g.get("invalid_token") \
            else "not logged in: send 'Authorization: Bearer <API token>' or log in"
        raise NotAuthenticated(str(principal), request.endpoint or request.path,
                               request.path, reason, client=client_address())
    return principal


def _page(total: int, query, key: str, items: list):
    """One page of a listing: the total, the window asked for and the items."""
    return jsonify({"total": total, "offset": query.offset, "limit": query.limit, key: items})


# ---- records ------------------------------------------------------------------------


@api.get("/records")
def list_records():
    from archive.records import list_records as search
    from archive.records import record_to_dict

    principal = _require_login()
    flt = record_filter(request.args)
    inst = instance()
    with inst.catalog.unit_of_work() as session:
        total, rows = search(session, principal, flt, client=client_address(),
                             clock=inst.clock)
        return _page(total, flt, "records", [record_to_dict(r) for r in rows])


def ingest_upload(upload, metadata: dict, principal, *, source: str, run=None):
    """Ingest an uploaded file (API or web form) from a private staging folder, removed
    afterwards; errors name the file as the sender did, not the staging path.
    ``run(service, path)``, when given, does the ingest (e.g. a correction, #5)."""
    from archive.bag import safe_payload_name
    from ingest.services import IngestService

    inst = instance()
    name = safe_payload_name(Path(upload.filename).name or "document.pdf")
    folder = inst.settings.staging_dir / f"upload-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        path = folder / name
        upload.save(path)
        service = IngestService(inst.settings, inst.catalog, inst.store, principal=principal,
                                clock=inst.clock)
        try:
            if run is not None:
                return run(service, path)
            return service.ingest(path, metadata, source)
        except ArchiveError as exc:
            exc.message = exc.message.replace(str(path), upload.filename)
            raise
        finally:
            service.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@api.post("/records")
def ingest_record():
    """Ingest one document (multipart: ``file`` and ``metadata`` as JSON text)."""
    principal = _require_login()
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InputError("file: a PDF file is required (multipart field 'file')")
    raw = request.form.get("metadata", "")
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"metadata: not valid JSON ({exc})") from exc
    if not isinstance(metadata, dict):
        raise InputError("metadata: expected a JSON object")
    result = ingest_upload(upload, metadata, principal, source="metadata")
    body = {**result.to_dict(), "source": upload.filename}
    return jsonify(body), 201 if result.status == "archived" else 200


@api.get("/records/<record_id>")
def show_record(record_id: str):
    from archive.records import record_to_dict
    from archive.records import show_record as show

    principal = _require_login()
    inst = instance()
    with inst.catalog.unit_of_work() as session:
        record = show(session, principal, record_id_param(record_id), client=client_address(),
                      clock=inst.clock)
        return jsonify(record_to_dict(record, detail=True))


@api.get("/records/<record_id>/signatures")
def signatures(record_id: str):
    from archive.records import signature_report

    principal = _require_login()
    inst = instance()
    with inst.catalog.unit_of_work() as session:
        report = signature_report(session, inst.store, principal, record_id_param(record_id),
                                  client=client_address(), clock=inst.clock)
    return jsonify({"record_id": record_id, "report": report})


@api.get("/records/<record_id>/events")
def events(record_id: str):
    from archive.records import event_to_dict, record_history

    principal = _require_login()
    inst = instance()
    with inst.catalog.unit_of_work() as session:
        rows = record_history(session, principal, record_id_param(record_id),
                              client=client_address(), clock=inst.clock)
        return jsonify({"record_id": record_id, "events": [event_to_dict(e) for e in rows]})


def stream_verified(reader, record_id: str, principal):
    """Yield the reader's bytes; a digest mismatch stops the stream and raises an alert.

    The check is made as the bytes pass (R-FIX-1): the last chunk is only released
    once the whole object matched, so a damaged file never arrives complete.
    """
    from archive.records import report_retrieval_failure

    inst = instance()
    client = client_address()

    def generate():
        try:
            with reader:
                pending = reader.read(CHUNK)
                while pending:
                    chunk = reader.read(CHUNK)
                    if not chunk:
                        break
                    yield pending
                    pending = chunk
                yield pending
        except IntegrityError as exc:
            with inst.catalog.unit_of_work() as session:
                report_retrieval_failure(session, principal, record_id, exc.message,
                                         client=client, clock=inst.clock)
            raise

    return stream_with_context(generate())


def original_response(record_id: str) -> Response:
    """The original file of a record, decrypted if classified, verified while streaming."""
    from archive.keystore import KeyVault
    from archive.records import open_original

    principal = _require_login()
    inst = instance()
    record_id = record_id_param(record_id)
    with inst.catalog.unit_of_work() as session:
        stored, reader = open_original(session, inst.store, principal, record_id,
                                       client=client_address(), clock=inst.clock,
                                       vault=KeyVault.from_settings(inst.settings))
        status = stored.package.record.status
    name = stored.original_name or Path(stored.path).name
    response = Response(stream_verified(reader, record_id, principal),
                        mimetype=stored.mime_type or "application/octet-stream")
    # R-REVOKE-1: a revoked document stays retrievable for inspection, marked as such.
    response.headers["Archive-Record-Status"] = status
    if not stored.encryption:
        response.content_length = stored.size
    response.headers["Content-Disposition"] = _disposition(name)
    return response


def _disposition(name: str) -> str:
    from urllib.parse import quote

    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


@api.get("/records/<record_id>/original")
def original(record_id: str):
    return original_response(record_id)


@api.get("/records/<record_id>/aip")
def aip(record_id: str):
    from archive.records import open_package

    principal = _require_login()
    inst = instance()
    record_id = record_id_param(record_id)
    version = _int(request.args, "version", 0, 1, 10**6) or None  # absent: the latest
    with inst.catalog.unit_of_work() as session:
        package, reader = open_package(session, inst.store, principal, record_id, version,
                                       client=client_address(), clock=inst.clock)
    response = Response(stream_verified(reader, record_id, principal),
                        mimetype="application/x-tar")
    response.content_length = package.size
    response.headers["Content-Disposition"] = _disposition(
        f"{record_id}-v{package.version:04d}.tar")
    return response


# ---- agents, users, me --------------------------------------------------------------


@api.get("/agents")
def agents():
    from archive import policy
    from archive.agents import agent_to_dict, list_agents

    principal = _require_login()
    kind = _choice(request.args, "kind", ("person", "organisation", "system"))
    inst = instance()
    with inst.catalog.unit_of_work() as session:
        policy.require(principal, policy.AGENT_READ, client=client_address())
        rows = list_agents(session, principal, kind)
        return jsonify({"agents": [agent_to_dict(a) for a in rows]})


@api.get("/agents/<identifier>")
def agent(identifier: str):
    from archive import policy
    from archive.agents import agent_to_dict, get_agent

    principal = _require_login()
    inst = instance()
    with inst.catalog.unit_of_work() as session:
        policy.require(principal, policy.AGENT_READ, client=client_address())
        return jsonify(agent_to_dict(get_agent(session, _text({"id": identifier}, "id", 64))))


@api.get("/users")
def users():
    from archive.users import list_users, user_to_dict

    principal = _require_login()
    inst = instance()
    with inst.catalog.unit_of_work() as session:
        rows = list_users(session, principal, client=client_address())
        return jsonify({"users": [user_to_dict(u) for u in rows]})


@api.get("/me")
def me():
    principal = _require_login()
    return jsonify({"principal": str(principal), "kind": principal.kind,
                    "name": principal.display, "role": principal.role,
                    "clearance": principal.clearance, "method": principal.method,
                    "strong": principal.strong, "fonds": list(principal.fonds),
                    "organisations": list(principal.organisations),
                    "scopes": list(principal.scopes) if principal.scopes is not None
                    else None})


# ---- audit log ----------------------------------------------------------------------


# Outcomes written to the audit log (docs/events.md).
AUDIT_OUTCOMES = ("ok", "denied", "failed", "not_found", "refused", "duplicate")


# A date, or an RFC 3339 date-time (its offset checked separately, to say it is missing).
_INSTANT = re.compile(r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})(?:[Tt](?P<time>[0-9]{2}:[0-9]{2}:"
                      r"[0-9]{2})(?P<fraction>\.[0-9]+)?(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?)?")


def audit_query(args):
    from archive.audit import AuditQuery

    def instant(name: str, end: bool = False) -> datetime | None:
        value = _text(args, name, 40)
        if value is None:
            return None
        found = _INSTANT.fullmatch(value)
        if found and found["time"] and not found["offset"]:
            raise InputError(f"{name}: give a UTC offset (e.g. 2026-01-01T00:00:00+07:00)")
        try:
            if not found:
                raise ValueError(value)
            if not found["time"]:
                day = date.fromisoformat(found["date"])
                moment = datetime.combine(day + timedelta(days=1) if end else day, time.min)
                moment = moment.replace(tzinfo=instance().clock.now().tzinfo)
            else:
                offset = "+00:00" if found["offset"] in ("Z", "z") else found["offset"]
                moment = datetime.fromisoformat(
                    f"{found['date']}T{found['time']}{(found['fraction'] or '')[:7]}{offset}")
            return moment.astimezone(UTC)  # also refuses times beyond year 1 or 9999
        except (ValueError, OverflowError) as exc:
            raise InputError(f"{name}: not a date (YYYY-MM-DD) or a time with its UTC "
                             "offset (RFC 3339)") from exc

    return AuditQuery(actor=_text(args, "actor"), action=_text(args, "action", 64),
                      outcome=_choice(args, "outcome", AUDIT_OUTCOMES),
                      target=_text(args, "target", 500), since=instant("from"),
                      until=instant("to", end=True),
                      limit=_int(args, "limit", 100, 1, 1000),
                      offset=_int(args, "offset", 0, 0, 10**9))


@api.get("/audit")
def audit_log():
    from archive.audit import entry_to_dict, query

    principal = _require_login()
    q = audit_query(request.args)
    inst = instance()
    with inst.catalog.unit_of_work() as session:
        total, rows = query(session, principal, q, client=client_address(), clock=inst.clock)
        return _page(total, q, "entries", [entry_to_dict(e) for e in rows])


@api.get("/audit/export")
def audit_export():
    """The matching entries as CSV or JSON Lines (up to 100,000 per request)."""
    import csv
    import io
    from dataclasses import replace

    from archive.audit import entry_to_dict, query

    principal = _require_login()
    fmt = _choice(request.args, "format", ("csv", "jsonl")) or "csv"
    q = replace(audit_query(request.args), limit=_int(request.args, "limit", 100000, 1,
                                                      100000))
    inst = instance()
    with inst.catalog.unit_of_work() as session:
        _, rows = query(session, principal, q, client=client_address(), clock=inst.clock,
                        export=True)
        entries = [entry_to_dict(e) for e in rows]
    if fmt == "jsonl":
        body = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        mimetype = "application/jsonl"
    else:
        out = io.StringIO()
        writer = csv.writer(out)
        columns = ["seq", "occurred_at", "actor", "action", "target", "outcome", "client",
                   "detail", "entry_hash"]
        writer.writerow(columns)
        for e in entries:
            writer.writerow([json.dumps(e[c], ensure_ascii=False) if c == "detail" else e[c]
                             for c in columns])
        body, mimetype = out.getvalue(), "text/csv"
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="audit.{fmt}"'
    return response


@api.get("/me/access")
def my_access():
    from archive.audit import entry_to_dict, own_entries

    principal = _require_login()
    q = audit_query(request.args)
    inst = instance()
    with inst.catalog.unit_of_work() as session:
        total, rows = own_entries(session, principal, q, client=client_address(),
                                  clock=inst.clock)
        return _page(total, q, "entries", [entry_to_dict(e) for e in rows])


# ---- health and the API description -------------------------------------------------


@api.get("/health")
def health():
    from access.ops import healthz

    return healthz()


@api.get("/openapi.json")
def openapi():
    from access.openapi import document

    return jsonify(document())
