"""Pages of the web UI after login: search, record, ingest, own history, audit."""

from __future__ import annotations

from flask import redirect, render_template, request, url_for

from access import auth
from access.api import record_filter
from access.auth import client_address
from access.web import web


@web.get("/")
def home():
    return redirect(url_for("web.records"))


@web.get("/records")
def records():
    from archive.records import list_records

    flt = record_filter(request.args)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        total, rows = list_records(db, auth.current_principal(), flt, client=client_address(),
                                   clock=inst.clock)
        return render_template("records.html", total=total, rows=rows, flt=flt)
