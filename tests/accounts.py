"""People, logins and API tokens for the access-layer tests (R-AUTH-1, R-ID-1).

:class:`WebArchive` puts the Flask app over an :class:`~tests.conftest.ArchiveEnv`:
users are made with :func:`archive.users.add_user`, tokens with
:func:`archive.users.create_token`, and a browser logs in through the real ``/login``
and ``/login/totp`` (or ``/login/enrol``) pages with a TOTP code computed by pyotp.
The app's clock is the real time plus an offset the test may move (session expiry,
and a fresh 30-second TOTP step for each new login of the same person, since codes
cannot be replayed).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pyotp

from tests.conftest import ORG, ArchiveEnv

PASSWORD = "correct horse battery staple"  # noqa: S105 (a test password)


class ShiftClock:
    """The real time plus ``offset`` (moved by tests)."""

    def __init__(self):
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


@dataclass
class Account:
    username: str
    person: str
    role: str
    clearance: str
    secret: str
    last_step: int = -1
    extra: dict = field(default_factory=dict)


def csrf_of(html: str | bytes) -> str:
    """The CSRF token of the first form in a page."""
    text = html.decode() if isinstance(html, bytes) else html
    found = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert found, "no CSRF token in the page"
    return found.group(1)


class WebArchive:
    """The web app over an initialised archive, with helpers to make people and logins."""

    def __init__(self, aenv: ArchiveEnv, *, config: dict | None = None, env: dict | None = None):
        from access.app import create_app
        from archive.instance import ArchiveInstance

        self.aenv = aenv
        aenv.env.update(env or {})
        self.clock = ShiftClock()
        self.instance = ArchiveInstance(aenv.settings, clock=self.clock)
        self.app = create_app(self.instance, config=config)
        self.app.testing = True
        self.accounts: dict[str, Account] = {}
        self._ids = itertools.count(1)

    def close(self) -> None:
        self.instance.close()

    @property
    def operator(self):
        from archive.principal import Principal

        return Principal.system("test")

    def db(self):
        return self.instance.catalog.unit_of_work()

    # ---- people and credentials -----------------------------------------------------

    def add_user(self, username: str, role: str, clearance: str = "normal", *,
                 fonds: tuple[str, ...] = ("PHONG-01",), organisations: tuple[str, ...] = (),
                 person: str | None = None) -> Account:
        from archive.agents import find_agent, register_agent
        from archive.users import add_user

        person = person or f"{990000000000 + next(self._ids):012d}"
        with self.db() as db:
            if find_agent(db, person) is None:
                register_agent(db, self.instance.settings, self.operator, kind="person",
                               identifier=person, name=f"Người dùng {username}", parent=ORG)
            user = add_user(db, self.instance.settings, self.operator, username=username,
                            person=person, role=role, password=PASSWORD,
                            clearance=clearance, fonds=list(fonds),
                            organisations=list(organisations))
            secret = user.totp_secret
        account = Account(username, person, role, clearance, secret)
        self.accounts[username] = account
        return account

    def token(self, scopes: list[str], *, clearance: str = "normal", agent: str = ORG,
              fonds: tuple[str, ...] = ("PHONG-01",), name: str = "test system") -> str:
        """A new API token's secret (``kls_...``)."""
        from archive.users import create_token

        with self.db() as db:
            _, secret = create_token(db, self.instance.settings, self.operator, name=name,
                                     agent=agent, scopes=scopes, clearance=clearance,
                                     fonds=list(fonds))
        return secret

    # ---- browsers -------------------------------------------------------------------

    def client(self, **kwargs):
        return self.app.test_client(**kwargs)

    def next_code(self, account: Account) -> str:
        """A TOTP code of a step not used before (moves the clock if needed)."""
        step = int(self.clock.now().timestamp()) // 30
        if step <= account.last_step:
            self.clock.offset += timedelta(seconds=30 * (account.last_step - step + 1))
            step = account.last_step + 1
        account.last_step = step
        return pyotp.TOTP(account.secret).at(step * 30 + 15)

    def login(self, username: str, *, browse_only: bool = False, client=None, **environ):
        """A test client logged in through the real pages: password, then a TOTP code
        (or, with ``browse_only``, the password alone)."""
        account = self.accounts[username]
        client = client or self.client()
        environ_base = dict(environ)
        page = client.get("/login", environ_base=environ_base)
        assert page.status_code == 200
        sent = client.post("/login", data={"username": username, "password": PASSWORD,
                                           "csrf_token": csrf_of(page.data)},
                           environ_base=environ_base)
        assert sent.status_code == 302, sent.data
        second = sent.headers["Location"]
        assert second.endswith(("/login/totp", "/login/enrol")), second
        form = client.get(second, environ_base=environ_base)
        assert form.status_code == 200
        data = {"csrf_token": csrf_of(form.data)}
        if browse_only:
            assert second.endswith("/login/totp"), "browse-only needs an enrolled TOTP"
            data["browse_only"] = "1"
        else:
            data["code"] = self.next_code(account)
        done = client.post(second, data=data, environ_base=environ_base)
        assert done.status_code == 302, done.data
        assert "/login" not in done.headers["Location"]
        return client

    def enrol(self, username: str) -> None:
        """Log in once with a code, so the TOTP is enrolled (needed for browse-only)."""
        self.login(username)

    def session_client(self, username: str, method: str = "totp"):
        """A test client with a session opened by :func:`archive.users.start_session`
        (the core service behind the login pages)."""
        from access.auth import SESSION_KEY
        from archive.users import get_user, start_session

        with self.db() as db:
            token = start_session(db, self.instance.settings, get_user(db, username), method,
                                  clock=self.clock)
        client = self.client()
        with client.session_transaction() as session:
            session[SESSION_KEY] = token
        return client

    def csrf(self, client) -> str:
        """The CSRF token of a logged-in browser (from a page's logout form)."""
        page = client.get("/records")
        assert page.status_code == 200, page.status_code
        return csrf_of(page.data)
