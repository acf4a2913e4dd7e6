"""The web UI: server-rendered pages, Vietnamese by default, English switchable.

Login is password + TOTP (or a client certificate through the TLS proxy); a person
may also continue with the password alone, which gives a browse-only session
(R-AUTH-1: nothing classified, no change). Pages call the same core services as the
API; forms carry a CSRF token.
"""

from __future__ import annotations

import time

from flask import (
    Blueprint,
    Flask,
    abort,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import Babel
from flask_babel import gettext as _

from access import auth
from access.auth import PENDING_KEY, PENDING_SECONDS, SESSION_KEY, client_address

web = Blueprint("web", __name__, template_folder="templates", static_folder="static",
                static_url_path="/static")

LANGUAGES = ("vi", "en")
LANG_COOKIE = "lang"


def select_locale() -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    return chosen if chosen in LANGUAGES else "vi"


def init_app(app: Flask) -> None:
    from access import pages  # noqa: F401 - registers the page routes on ``web``

    Babel(app, locale_selector=select_locale)
    app.register_blueprint(web)

    @app.context_processor
    def _globals():
        principal = auth.current_principal()
        return {"principal": principal, "user": auth.current_user(),
                "lang": select_locale(), "languages": LANGUAGES,
                "system_name": auth.instance().settings.archive.system_name,
                "owner_name": auth.instance().settings.archive.owner_name}


def error_page(status: int, title: str, message: str, **extra):
    return render_template("error.html", status=status, title=title, message=message,
                           extra=extra), status


def login_required():
    """The current principal, or a redirect to the login page."""
    principal = auth.current_principal()
    if principal.kind == "anonymous":
        return None
    return principal


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return url_for("web.records")


# ---- language -----------------------------------------------------------------------


@web.get("/lang/<code>")
def set_language(code: str):
    if code not in LANGUAGES:
        abort(404)
    response = redirect(_safe_next(request.args.get("next")))
    response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, samesite="Lax",
                        httponly=True)
    return response


# ---- login --------------------------------------------------------------------------


def _pending_user():
    """The user whose password was just checked (second step of the login)."""
    from archive.models import User

    pending = session.get(PENDING_KEY)
    if not pending or time.time() - pending.get("at", 0) > PENDING_SECONDS:
        session.pop(PENDING_KEY, None)
        return None
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        user = db.get(User, pending.get("user"))
        if user is None or user.status != "active":
            return None
        db.expunge(user)
        return user


def _open_session(user, method: str):
    from archive.models import User
    from archive.users import start_session

    inst = auth.instance()
    next_url = _safe_next(session.get("next"))
    with inst.catalog.unit_of_work() as db:
        fresh = db.get(User, user.id)
        token = start_session(db, inst.settings, fresh, method, client=client_address(),
                              clock=inst.clock)
    session.clear()  # a new session id at every login (no fixation)
    session.permanent = True
    session[SESSION_KEY] = token
    return redirect(next_url)


@web.route("/login", methods=["GET", "POST"])
def login():
    from archive.users import check_password

    message = None
    if request.method == "GET":
        if request.args.get("next"):
            session["next"] = _safe_next(request.args.get("next"))
        return render_template("login.html", message=message,
                               certificate=bool(auth.instance().settings.auth
                                                .client_cert_header))
    username = (request.form.get("username") or "").strip().lower()[:64]
    password = request.form.get("password") or ""
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        outcome = check_password(db, inst.settings, username, password,
                                 client=client_address(), clock=inst.clock)
        user_id = outcome.user.id if outcome.user is not None else None
        confirmed = bool(outcome.user and outcome.user.totp_confirmed)
    if not outcome.ok:
        if outcome.reason == "account locked":
            message = _("This account is locked. Contact the administrator.")
        elif outcome.retry_after:
            message = _("Too many failed attempts. Try again in %(seconds)s seconds.",
                        seconds=outcome.retry_after)
        else:
            message = _("Wrong user name or password.")
        return render_template("login.html", message=message, username=username), 401
    next_url = session.get("next")
    session.clear()
    session[PENDING_KEY] = {"user": user_id, "at": time.time()}
    if next_url:
        session["next"] = next_url
    return redirect(url_for("web.login_totp" if confirmed else "web.login_enrol"))


def _second_step(template: str, *, enrol: bool):
    from archive.models import User
    from archive.users import check_totp, totp_uri

    user = _pending_user()
    if user is None or (enrol and user.totp_confirmed) or (not enrol and not user.totp_confirmed):
        return redirect(url_for("web.login"))
    inst = auth.instance()
    context = {}
    if enrol:
        import segno

        uri = totp_uri(inst.settings, user)
        context = {"qr": segno.make(uri, error="m").svg_data_uri(scale=5),
                   "secret": user.totp_secret, "uri": uri}
    if request.method == "GET":
        return render_template(template, **context)
    if request.form.get("browse_only") and not enrol:
        return _open_session(user, "password")
    with inst.catalog.unit_of_work() as db:
        fresh = db.get(User, user.id)
        outcome = check_totp(db, inst.settings, fresh, request.form.get("code") or "",
                             client=client_address(), clock=inst.clock)
    if outcome.ok:
        return _open_session(user, "totp")
    if outcome.retry_after:
        message = _("Too many failed attempts. Try again in %(seconds)s seconds.",
                    seconds=outcome.retry_after)
    else:
        message = _("The code is wrong or was already used. Wait for the next code.")
    return render_template(template, message=message, **context), 401


@web.route("/login/totp", methods=["GET", "POST"])
def login_totp():
    return _second_step("totp.html", enrol=False)


@web.route("/login/enrol", methods=["GET", "POST"])
def login_enrol():
    return _second_step("enrol.html", enrol=True)


@web.get("/login/certificate")
def login_certificate():
    from archive.users import user_for_certificate

    pem = auth.presented_certificate()
    if pem is None:
        return render_template("login.html", message=_(
            "No client certificate was presented."), certificate=True), 401
    fingerprint, reason = auth.validate_client_certificate(pem)
    inst = auth.instance()
    with inst.catalog.unit_of_work() as db:
        if fingerprint is None:
            from archive import audit

            audit.append(db, "certificate:presented", "auth.login", "users",
                         outcome="failed", client=client_address(), clock=inst.clock,
                         detail={"step": "certificate", "reason": reason})
            outcome = None
        else:
            outcome = user_for_certificate(db, fingerprint, client=client_address(),
                                           clock=inst.clock)
            if outcome.ok:
                db.expunge(outcome.user)
    if outcome is None or not outcome.ok:
        return render_template("login.html", message=_(
            "The certificate was not accepted."), certificate=True), 401
    return _open_session(outcome.user, "certificate")


@web.post("/logout")
def logout():
    from archive.users import end_session

    token = session.get(SESSION_KEY)
    if token:
        inst = auth.instance()
        with inst.catalog.unit_of_work() as db:
            end_session(db, token, client=client_address(), clock=inst.clock)
    session.clear()
    return redirect(url_for("web.login"))


@web.before_app_request
def _login_wall():
    """Pages need a login; the API answers 401 itself, health and metrics are open."""
    if request.blueprint != "web" or request.endpoint in (
            "web.login", "web.login_totp", "web.login_enrol", "web.login_certificate",
            "web.set_language", "web.static", "web.verify_rendition"):
        return None
    if g.get("principal") is None or g.principal.kind == "anonymous":
        return redirect(url_for("web.login", next=request.full_path.rstrip("?")))
    return None
