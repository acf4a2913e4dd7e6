"""DEMO users of `make run`: one login per role, each with a TOTP second factor (R-AUTH-1).

The passwords are generated at first run (never committed) and, like every DEMO
secret, kept in the data folder: ``<data_dir>/demo-logins.json`` (mode 0600), so the
instructions can be printed again. The signers of the DEMO PKI get logins too (their
certificates are bound to them, so certificate login works behind a TLS proxy).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyotp
from sqlalchemy import select

from archive.agents import find_agent, register_agent
from archive.errors import InputError
from archive.models import User
from archive.principal import Principal
from archive.settings import Settings
from archive.users import add_user, new_password, totp_uri

LOGINS_NAME = "demo-logins.json"
VPTU, BTCTU = "000.00.00.H41", "000.00.01.H41"

# username, person id, name, organisation, position, role, clearance, grants
DEMO_USERS = (
    ("vanthu", "099000000011", "Phạm Thị Thư (DEMO)", VPTU, "Văn thư (DEMO)", "clerk",
     "normal", [VPTU, BTCTU]),
    ("luutru", "099000000012", "Hoàng Văn Lưu (DEMO)", VPTU, "Lưu trữ viên (DEMO)",
     "archivist", "mat", ["*"]),
    ("pheduyet", "099000000001", None, VPTU, None, "approver", "mat", ["*"]),
    ("thanhtra", "099000000013", "Đỗ Văn Thanh (DEMO)", BTCTU,
     "Ủy viên Ủy ban Kiểm tra (DEMO)", "inspector", "toi-mat", ["*"]),
    ("kiemtoan", "099000000014", "Vũ Thị Kiểm (DEMO)", VPTU, "Kiểm toán nội bộ (DEMO)",
     "auditor", "normal", ["*"]),
    ("quantri", "099000000015", "Ngô Văn Trị (DEMO)", VPTU, "Quản trị hệ thống (DEMO)",
     "administrator", "normal", [VPTU]),
)


def logins_path(settings: Settings) -> Path:
    return settings.data_dir / LOGINS_NAME


def register_demo_users(catalog, settings: Settings, principal: Principal) -> list[dict]:
    """Create the DEMO users that do not exist yet; returns every DEMO login."""
    path = logins_path(settings)
    known = load_logins(settings) if path.exists() else {}
    with catalog.unit_of_work() as session:
        for username, person, name, org, position, role, clearance, grants in DEMO_USERS:
            if session.scalar(select(User.id).where(User.username == username)):
                continue
            if find_agent(session, person) is None:
                register_agent(session, settings, principal, kind="person",
                               identifier=person, name=name or person, parent=org,
                               position=position)
            password = new_password()
            user = add_user(session, settings, principal, username=username, person=person,
                            role=role, password=password, clearance=clearance,
                            organisations=grants)
            known[username] = {"username": username, "password": password, "role": role,
                               "clearance": clearance, "name": user.person.name,
                               "totp_secret": user.totp_secret,
                               "totp_uri": totp_uri(settings, user)}
    _write_logins(path, known)
    return [known[u[0]] for u in DEMO_USERS if u[0] in known]


def load_logins(settings: Settings) -> dict[str, dict]:
    path = logins_path(settings)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"no DEMO logins in {path}: run `archive demo seed` first") from exc
    except ValueError as exc:
        raise InputError(f"{path} is not valid JSON") from exc


def current_code(settings: Settings, username: str) -> str:
    """The current one-time code of a DEMO user (DEMO only: the secret is on disk)."""
    logins = load_logins(settings)
    if username not in logins:
        raise InputError(f"{username!r} is not a DEMO user; DEMO users: "
                         f"{', '.join(sorted(logins))}")
    return pyotp.TOTP(logins[username]["totp_secret"]).now()


def _write_logins(path: Path, logins: dict) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(logins, handle, ensure_ascii=False, indent=2)
    os.replace(tmp, path)
