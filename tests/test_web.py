"""The web app (R-AUTH-1, R-AUDIT-1, R-INCIDENT-1): health, errors as problem details,
the login flow through the real pages (password, then a TOTP code or enrolment, or the
password alone for a browse-only session), the login wall, logout, language, and the
server entry points (``archive serve``, WSGI, the checkpoint scheduler)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from archive.models import AuditEntry
from tests.accounts import PASSWORD, WebArchive, csrf_of
from tests.services.common import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def web(local_archive):
    archive = WebArchive(local_archive)
    yield archive
    archive.close()


@pytest.fixture
def client(web):
    return web.client()


def _entries(web: WebArchive, **where) -> list[AuditEntry]:
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        stmt = select(AuditEntry).order_by(AuditEntry.seq)
        for name, value in where.items():
            stmt = stmt.where(getattr(AuditEntry, name) == value)
        rows = list(db.scalars(stmt))
        db.expunge_all()
    return rows


def _password(client, username: str, password: str = PASSWORD, **environ):
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_of(page.data)},
                       environ_base=dict(environ))


def _code(client, step_page: str, code: str):
    page = client.get(step_page)
    assert page.status_code == 200, page.status_code
    return client.post(step_page, data={"code": code, "csrf_token": csrf_of(page.data)})


# ---- health and errors --------------------------------------------------------------


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
    assert response.get_json()["status"] == "unavailable"
    assert response.get_json()["checks"]["storage"]["ok"] is False


def test_healthz_is_degraded_when_a_package_failed_its_fixity_check(local_archive, client):
    from tests.test_fixity import _ingest, _original, _raw_rewrite, _read

    [rid] = _ingest(local_archive, 1)
    key = f"aip/{rid}/v0001.tar"
    data = bytearray(_read(local_archive, key))
    data[_original(local_archive, rid)[1] + 3] ^= 0x01
    _raw_rewrite(local_archive, key, bytes(data))
    assert local_archive.invoke("fixity", "check", "--all").exit_code == 1
    body = client.get("/healthz").get_json()
    assert body["status"] == "degraded"
    assert body["checks"]["jobs"]["fixity"]["packages_failing"] == 1
    metrics = text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    [failing] = [f for f in metrics if f.name == "archive_packages_fixity_failing"]
    assert failing.samples[0].value == 1


@pytest.mark.parametrize("url, status", [
    ("/api/v1/records", 401),
    ("/api/v1/records/does-not-exist", 401),  # nothing is said before the login
    ("/api/v1/nothing", 404),
])
def test_api_errors_are_problem_json(client, url, status):
    response = client.get(url)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status and body["type"] == "about:blank" and body["title"]


def test_page_errors_are_pages(web):
    web.add_user("an", "clerk")
    client = web.login("an")
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"


# ---- login --------------------------------------------------------------------------


def test_first_login_enrols_the_second_factor(web):
    account = web.add_user("an", "clerk")
    client = web.client()
    sent = _password(client, "an")
    assert sent.status_code == 302 and sent.headers["Location"].endswith("/login/enrol")
    assert client.get("/login/totp").status_code == 302  # not enrolled yet: no code page
    page = client.get("/login/enrol")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert account.secret in text and "data:image/svg+xml" in text  # secret and QR code
    assert "otpauth://totp/" in text or account.secret in text
    wrong = _code(client, "/login/enrol", "000000" if pyotp.TOTP(account.secret).now()
                  != "000000" else "111111")
    assert wrong.status_code == 401
    done = _code(client, "/login/enrol", web.next_code(account))
    assert done.status_code == 302 and done.headers["Location"].endswith("/records")
    me = client.get("/api/v1/me").get_json()
    assert me["method"] == "totp" and me["strong"] is True
    [totp] = _entries(web, action="auth.totp")
    assert totp.detail == {"enrolled": True}
    # Enrolled now: the next login asks for a code, never shows the secret again.
    other = web.client()
    assert _password(other, "an").headers["Location"].endswith("/login/totp")
    assert other.get("/login/enrol").status_code == 302
    assert account.secret not in other.get("/login/totp").get_data(as_text=True)


def test_wrong_password_and_unknown_user_are_refused_alike_and_audited(web):
    web.add_user("an", "clerk")
    client = web.client()
    wrong = _password(client, "an", "not the password", REMOTE_ADDR="203.0.113.5")
    unknown = _password(client, "nobody", PASSWORD, REMOTE_ADDR="203.0.113.5")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_data(as_text=True).count("csrf_token") == \
        unknown.get_data(as_text=True).count("csrf_token")
    assert client.get("/api/v1/me").status_code == 401
    failed = _entries(web, action="auth.login", outcome="failed")
    assert [(e.actor, e.detail["reason"], e.client) for e in failed] == [
        ("user:an", "wrong password", "203.0.113.5"),
        ("user:nobody", "unknown user", "203.0.113.5")]


def test_a_code_cannot_be_used_twice(web):
    account = web.add_user("an", "clerk")
    web.enrol("an")
    code = pyotp.TOTP(account.secret).at(account.last_step * 30 + 15)  # the one just used
    client = web.client()
    assert _password(client, "an").status_code == 302
    replay = _code(client, "/login/totp", code)
    assert replay.status_code == 401
    assert client.get("/api/v1/me").status_code == 401
    assert _entries(web, action="auth.login", outcome="failed")[-1].detail["reason"] == \
        "code already used"


def test_repeated_failures_make_the_login_wait(web):
    web.add_user("an", "clerk")
    client = web.client()
    for _ in range(3):  # auth.backoff_after = 3
        assert _password(client, "an", "wrong password!").status_code == 401
    refused = _password(client, "an")  # even the right password must wait now
    assert refused.status_code == 401
    assert "seconds" in refused.get_data(as_text=True) or "giây" in refused.get_data(
        as_text=True)
    web.clock.offset += timedelta(seconds=10)
    assert _password(client, "an").status_code == 302


def test_browse_only_login_with_the_password_alone(web):
    web.add_user("an", "clerk", "mat")
    web.enrol("an")
    client = web.login("an", browse_only=True)
    me = client.get("/api/v1/me").get_json()
    assert me["method"] == "password" and me["strong"] is False
    assert _entries(web, action="auth.session-start")[-1].detail == {"method": "password"}
    # The browse-only choice needs an enrolled second factor: it is not offered at
    # enrolment (a new user must set up the code first).
    web.add_user("binh", "clerk")
    fresh = web.client()
    _password(fresh, "binh")
    page = fresh.get("/login/enrol")
    fresh.post("/login/enrol", data={"browse_only": "1", "csrf_token": csrf_of(page.data)})
    assert fresh.get("/api/v1/me").status_code == 401


def test_the_second_step_expires(web):
    account = web.add_user("an", "clerk")
    web.enrol("an")
    client = web.client()
    _password(client, "an")
    page = client.get("/login/totp")
    with pytest.MonkeyPatch.context() as patch:  # as if PENDING_SECONDS (300) had passed
        patch.setattr("access.web.PENDING_SECONDS", -1)
        late = client.post("/login/totp", data={"code": web.next_code(account),
                                                "csrf_token": csrf_of(page.data)})
    assert late.status_code == 302 and late.headers["Location"].endswith("/login")
    assert client.get("/api/v1/me").status_code == 401


def test_a_new_session_id_at_login(web):
    """No session fixation: the cookie set before the login is not the one after it."""
    web.add_user("an", "clerk")
    client = web.client()
    client.get("/login")
    before = client.get_cookie("kls_session").value
    web.login("an", client=client)
    after = client.get_cookie("kls_session").value
    assert before != after
    stale = web.client()
    stale.set_cookie("kls_session", before)
    assert stale.get("/api/v1/me").status_code == 401


def test_login_forms_need_the_csrf_token(web):
    web.add_user("an", "clerk")
    client = web.client()
    client.get("/login")
    refused = client.post("/login", data={"username": "an", "password": PASSWORD})
    assert refused.status_code == 400
    assert not _entries(web, action="auth.password")


def test_the_login_wall_and_the_way_back(web):
    web.add_user("an", "clerk")
    client = web.client()
    wall = client.get("/records?q=quy")
    assert wall.status_code == 302
    assert wall.headers["Location"].startswith("/login?next=")
    client.get(wall.headers["Location"])
    sent = _password(client, "an")
    done = _code(client, sent.headers["Location"], web.next_code(web.accounts["an"]))
    assert done.headers["Location"] == "/records?q=quy"


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/",
                                    "/\\evil.example", "javascript:alert(1)"])
def test_no_redirect_away_from_the_archive(web, target):
    web.add_user("an", "clerk")
    client = web.client()
    client.get("/login", query_string={"next": target})
    sent = _password(client, "an")
    done = _code(client, sent.headers["Location"], web.next_code(web.accounts["an"]))
    assert done.headers["Location"] == "/records"
    lang = client.get("/lang/en", query_string={"next": target})
    assert lang.headers["Location"] == "/records"


def test_logout_ends_the_session_and_needs_the_csrf_token(web):
    web.add_user("an", "clerk")
    client = web.login("an")
    assert client.post("/logout").status_code == 400  # no token: refused
    assert client.get("/api/v1/me").status_code == 200
    out = client.post("/logout", data={"csrf_token": web.csrf(client)})
    assert out.status_code == 302 and out.headers["Location"].endswith("/login")
    assert client.get("/api/v1/me").status_code == 401
    assert [e.action for e in _entries(web, actor="user:an")][-1] == "auth.logout"


def test_language_is_vietnamese_by_default_and_switchable(client):
    assert 'lang="vi"' in client.get("/login").get_data(as_text=True)
    switched = client.get("/lang/en")
    assert switched.status_code == 302
    cookie = next(c for c in switched.headers.getlist("Set-Cookie") if c.startswith("lang="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert 'lang="en"' in client.get("/login").get_data(as_text=True)
    assert client.get("/lang/xx").status_code == 404


# ---- serving ------------------------------------------------------------------------


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
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz",  # noqa: S310
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
        job = scheduler.get_job("audit-checkpoint")  # among the other jobs (#6)
        assert job.trigger.interval.total_seconds() == 900
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
