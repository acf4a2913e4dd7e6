"""Job runs in the access layer (R-SCHED-1, R-INCIDENT-1): ``GET /api/v1/jobs``,
``GET /api/v1/jobs/<run_id>`` and the ``/jobs`` pages, for auditors and administrators
(``audit.read`` or ``config.manage``; others are refused, 403, and the denial audited).
Every view is audited (``job.list``, ``job.view``) by :mod:`preservation.runner`.

Imported by :func:`access.app.create_app` before the blueprints are registered; its
``OPENAPI_PATHS`` / ``OPENAPI_SCHEMAS`` are merged by :mod:`access.openapi`.
"""

from __future__ import annotations

import uuid

from flask import jsonify, render_template, request

from access import auth
from access.api import _choice, _int, _require_login, _text, api
from access.auth import client_address
from access.web import web
from archive.errors import InputError

STATUSES = ("running", "ok", "failed")


def run_id_param(run_id: str) -> str:
    try:
        return str(uuid.UUID(run_id))
    except ValueError as exc:
        raise InputError(f"run id {run_id!r} is not a UUID") from exc


def _list(principal, args, limit_default: int = 50):
    from preservation import runner

    flt = runner.RunFilter(job=_text(args, "job", 64), status=_choice(args, "status", STATUSES),
                           limit=_int(args, "limit", limit_default, 1, 500),
                           offset=_int(args, "offset", 0, 0, 10**9))
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        total, rows = runner.list_runs(db, principal, flt, client=client_address(),
                                       clock=inst.clock)
        return flt, total, [runner.run_to_dict(r) for r in rows]


def _one(principal, run_id: str) -> dict:
    from preservation import runner

    rid = run_id_param(run_id)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        run, batches = runner.get_run(db, principal, rid, client=client_address(),
                                      clock=inst.clock)
        return runner.run_to_dict(run, batches)


@api.get("/jobs")
def jobs_list():
    flt, total, runs = _list(_require_login(), request.args)
    return jsonify({"total": total, "offset": flt.offset, "limit": flt.limit, "runs": runs})


@api.get("/jobs/<run_id>")
def job_detail(run_id: str):
    return jsonify(_one(_require_login(), run_id))


@web.get("/jobs")
def jobs_page():
    from preservation import registry

    flt, total, runs = _list(auth.current_principal(), request.args, 100)
    return render_template("jobs.html", runs=runs, total=total, flt=flt, run=None,
                           job_names=list(registry.JOBS), statuses=STATUSES)


@web.get("/jobs/<run_id>")
def job_page(run_id: str):
    run = _one(auth.current_principal(), run_id)
    return render_template("jobs.html", run=run, runs=None, total=None, flt=None,
                           job_names=[], statuses=STATUSES)


# ---- OpenAPI ------------------------------------------------------------------------


def _problem(text: str) -> dict:
    return {"description": text, "content": {"application/problem+json": {
        "schema": {"$ref": "#/components/schemas/Problem"}}}}


def _ok(schema: str) -> dict:
    return {"description": "OK", "content": {"application/json": {"schema": {
        "$ref": f"#/components/schemas/{schema}"}}}}


def _query(name: str, schema: dict, text: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "allowEmptyValue": True, "description": text}


_COMMON = {"400": _problem("Bad input (every problem named)"),
           "401": _problem("No valid credentials"),
           "403": _problem("Refused by the policy (audited): neither an auditor "
                           "(audit.read) nor an administrator")}

OPENAPI_PATHS: dict = {
    "/api/v1/jobs": {
        "get": {
            "summary": "Runs of the preservation jobs, newest first: job, trigger, "
                       "accountable principal, times, counts, status, errors (R-SCHED-1)",
            "tags": ["operations"],
            "parameters": [
                _query("job", {"type": "string", "maxLength": 64}, "Only runs of this job"),
                _query("status", {"type": "string", "enum": list(STATUSES)}, "Status"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500},
                       "Page size"),
                _query("offset", {"type": "integer", "minimum": 0, "maximum": 10**9},
                       "First row")],
            "responses": {"200": _ok("JobRunPage"), **_COMMON},
        },
    },
    "/api/v1/jobs/{run_id}": {
        "get": {
            "summary": "One job run with its batches (who did each, attempts, results)",
            "tags": ["operations"],
            "parameters": [{"name": "run_id", "in": "path", "required": True,
                            "schema": {"type": "string", "format": "uuid"},
                            "description": "Run id"}],
            "responses": {"200": _ok("JobRun"), **_COMMON,
                          "404": _problem("No such run")},
        },
    },
}

_TIME_NULL = {"type": ["string", "null"], "format": "date-time"}
_STR_NULL = {"type": ["string", "null"]}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}

OPENAPI_SCHEMAS: dict = {
    "JobRun": {
        "type": "object",
        "required": ["id", "job", "trigger", "principal", "status", "started_at",
                     "finished_at", "params", "batches_total", "batches_done", "counts",
                     "errors"],
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "job": {"type": "string"},
            "trigger": {"type": "string", "enum": ["manual", "schedule", "server"]},
            "principal": {"type": "string", "description": "Accountable principal"},
            "status": {"type": "string", "enum": list(STATUSES)},
            "started_at": {"type": "string", "format": "date-time"},
            "finished_at": _TIME_NULL,
            "params": {"type": "object"},
            "batches_total": {"type": "integer"},
            "batches_done": {"type": "integer"},
            "counts": _COUNTS,
            "errors": {"type": "array", "items": {
                "type": "object", "required": ["at", "kind", "message"],
                "properties": {"at": {"type": "string", "format": "date-time"},
                               "kind": {"type": "string", "enum": ["error", "alert"]},
                               "batch": {"type": ["integer", "null"]},
                               "message": {"type": "string"}}}},
            "batches": {"type": "array", "items": {
                "type": "object",
                "required": ["seq", "status", "attempts", "done_by"],
                "properties": {
                    "seq": {"type": "integer"},
                    "status": {"type": "string",
                               "enum": ["pending", "leased", "done", "failed"]},
                    "attempts": {"type": "integer"},
                    "lease_owner": _STR_NULL, "lease_expires_at": _TIME_NULL,
                    "started_at": _TIME_NULL, "finished_at": _TIME_NULL,
                    "done_by": _STR_NULL,
                    "result": {"oneOf": [_COUNTS, {"type": "null"}]},
                    "error": _STR_NULL}}},
        },
    },
    "JobRunPage": {
        "type": "object", "required": ["total", "offset", "limit", "runs"],
        "properties": {"total": {"type": "integer"}, "offset": {"type": "integer"},
                       "limit": {"type": "integer"},
                       "runs": {"type": "array",
                                "items": {"$ref": "#/components/schemas/JobRun"}}},
    },
}
