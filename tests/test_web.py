"""The thin web app of issue #2: /healthz and the read-only record list (audited)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from access.app import create_app
from tests.services.common import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def client(local_archive):
    app = create_app(local_archive.instance())
    app.testing = True
    return app.test_client()


def test_healthz_reports_database_and_storage(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] and body["checks"]["storage"]["ok"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_healthz_fails_when_the_store_is_gone(local_archive, client):
    shutil.rmtree(local_archive.settings.local_store_path)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["storage"]["ok"] is False


def test_record_list_and_detail_are_audited(local_archive, client):
    pdf = local_archive.sample("web.pdf")
    rid = local_archive.json("ingest", str(pdf))["results"][0]["record_id"]
    listed = client.get("/api/v1/records?q=quy%20ch%E1%BA%BF",
                        environ_base={"REMOTE_ADDR": "127.0.0.9"})
    assert listed.status_code == 200
    body = listed.get_json()
    assert body["total"] == 1 and body["records"][0]["id"] == rid
    assert body["records"][0]["summary"].startswith("Quyết định")
    detail = client.get(f"/api/v1/records/{rid}").get_json()
    assert detail["versions"][0]["storage_key"] == f"aip/{rid}/v0001.tar"

    from sqlalchemy import select

    from archive.models import AuditEntry

    with local_archive.instance().catalog.unit_of_work(snapshot=True) as session:
        rows = list(session.scalars(select(AuditEntry).where(
            AuditEntry.action.in_(["records.search", "record.view"]))))
    assert [r.action for r in rows] == ["records.search", "record.view"]
    assert rows[0].client == "127.0.0.9" and rows[0].actor == "anonymous:-"


@pytest.mark.parametrize("url, status", [
    ("/api/v1/records/does-not-exist", 404),
    ("/api/v1/records?from=yesterday", 400),
    ("/api/v1/records?limit=100000", 400),
    ("/api/v1/nothing", 404),
])
def test_errors_are_problem_json(client, url, status):
    response = client.get(url)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["status"] == status


def test_archive_serve_answers_on_loopback(local_archive):
    port = free_port()
    env = dict(local_archive.env)
    proc = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",
                                            timeout=2) as resp:
                    assert json.load(resp)["status"] == "ok"
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


def test_wsgi_entry_point_builds_the_app_from_the_environment(local_archive, monkeypatch):
    import importlib

    for name, value in local_archive.env.items():
        if name.startswith("ARCHIVE_"):
            monkeypatch.setenv(name, value)
    import access.wsgi

    module = importlib.reload(access.wsgi)
    try:
        response = module.app.test_client().get("/healthz")
        assert response.status_code == 200
    finally:
        module.app.config["ARCHIVE"].close()


def test_serve_scheduler_writes_audit_checkpoints(local_archive):
    """The server's in-process scheduler runs the checkpoint job (R-AUDIT-1)."""
    from preservation import jobs
    from preservation.scheduler import start_background_scheduler

    instance = local_archive.instance()
    scheduler = start_background_scheduler(instance)
    try:
        [job] = scheduler.get_jobs()
        assert job.id == "audit-checkpoint" and job.trigger.interval.total_seconds() == 900
    finally:
        scheduler.shutdown(wait=False)
    store = instance.store
    before = {o.key for o in store.list("audit/checkpoints/")}
    local_archive.json("records", "list")  # a read: appends an entry, writes no checkpoint
    with instance.catalog.unit_of_work() as session:
        from archive import audit
        from archive.principal import Principal

        audit.append(session, Principal.system("test"), "records.search", "records")
    jobs.audit_checkpoint(instance)
    after = {o.key for o in store.list("audit/checkpoints/")}
    assert len(after - before) >= 1
    assert local_archive.invoke("audit", "verify").exit_code == 0
