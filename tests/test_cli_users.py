"""`archive users ...` and `archive tokens ...` through the real CLI, on local folder +
SQLite and SeaweedFS + PostgreSQL (R-AUTH-1, R-ID-1)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

from sqlalchemy import select

from archive.models import AuditEntry
from archive.users import authenticate_token, check_password
from tests.conftest import ORG

PERSON, PERSON2 = "001085012345", "001085099999"
QR_BLOCKS = ("█", "▀", "▄")


def _people(aenv) -> None:
    for ident, name in ((PERSON, "Nguyễn Văn An"), (PERSON2, "Trần Thị Bình")):
        result = aenv.invoke("agents", "add-person", ident, name, "--org", ORG)
        assert result.exit_code == 0, result.output


def _login(aenv, username: str, password: str) -> bool:
    instance = aenv.instance()
    with instance.catalog.unit_of_work() as s:
        return check_password(s, instance.settings, username, password).ok


def _actions(aenv) -> list[tuple[str, str, str]]:
    with aenv.instance().catalog.unit_of_work() as s:
        return [(e.actor, e.action, e.outcome) for e in
                s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]


def _totp_secret(uri: str) -> str:
    parsed = urlparse(uri)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    query = parse_qs(parsed.query)
    assert query["issuer"] == ["Kho lưu trữ số"]
    return query["secret"][0]


def test_users_add_prints_a_generated_password_the_otpauth_uri_and_a_qr(archive_env):
    _people(archive_env)
    # CliRunner's stdin is not a terminal: the password is generated and shown once.
    result = archive_env.invoke("users", "add", "an", "--person", PERSON, "--role", "clerk",
                                "--clearance", "mat")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "user an (clerk, clearance mat) for Nguyễn Văn An created" in out
    password = out.split("password (shown once; change it at first login): ")[1].split()[0]
    uri = next(line.strip() for line in out.splitlines() if "otpauth://" in line)
    assert _totp_secret(uri)
    assert any(block in out for block in QR_BLOCKS)
    assert _login(archive_env, "an", password)
    assert not _login(archive_env, "an", password + "x")


def test_users_add_json_with_password_from_stdin_and_no_qr(archive_env):
    _people(archive_env)
    result = archive_env.invoke("users", "add", "binh", "--person", PERSON2, "--role",
                                "auditor", "--password-stdin", "--no-qr", "--json",
                                input="một mật khẩu đủ dài\n")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["username"], data["role"], data["clearance"], data["status"]) == (
        "binh", "auditor", "normal", "active")
    assert data["organisations"] == [ORG] and not data["totp_enrolled"]
    assert "password" not in data and _totp_secret(data["totp_uri"])
    assert not any(block in result.stdout for block in QR_BLOCKS)
    assert _login(archive_env, "binh", "một mật khẩu đủ dài")
    # --json with a generated password carries it (shown once)
    generated = archive_env.json("users", "add", "an", "--person", PERSON, "--role",
                                 "inspector", "--fonds", "PHONG-01", "--no-qr")
    assert generated["fonds"] == ["PHONG-01"] and generated["organisations"] == []
    assert _login(archive_env, "an", generated["password"])


def test_bad_input_exits_2_and_creates_nothing(archive_env):
    _people(archive_env)
    cases = [
        (["users", "add", "an", "--person", "001000000000", "--role", "clerk"], None,
         "no agent"),
        (["users", "add", "an", "--person", ORG, "--role", "clerk"], None, "persons"),
        (["users", "add", "an", "--person", PERSON, "--role", "superuser"], None,
         "superuser"),
        (["users", "add", "an", "--person", PERSON, "--role", "clerk", "--password-stdin"],
         "short\n", "at least 12"),
        (["users", "add", "an", "--person", PERSON, "--role", "clerk", "--password-stdin"],
         "", "no password"),
        (["users", "lock", "nobody", "--reason", "x"], None, "no user"),
        (["users", "unlock", "nobody"], None, "no user"),
        (["users", "reset-totp", "nobody"], None, "no user"),
        (["tokens", "create", "x", "--agent", PERSON, "--scope", "records:read"], None,
         "persons log in"),
        (["tokens", "create", "x", "--agent", ORG, "--scope", "records:read", "--days", "0"],
         None, "days"),
        (["tokens", "create", "x", "--agent", ORG, "--scope", "records:write"], None,
         "records:write"),
        (["tokens", "revoke", "no-such-token"], None, "no API token"),
    ]
    for args, stdin, words in cases:
        result = archive_env.invoke(*args, input=stdin)
        assert result.exit_code == 2, (args, result.output)
        assert words in result.stderr, (args, result.stderr)
    assert archive_env.json("users", "list") == []
    assert archive_env.json("tokens", "list") == []
    # a refusal in JSON is an object with the error
    result = archive_env.invoke("users", "add", "an", "--person", "001000000000", "--role",
                                "clerk", "--json")
    assert json.loads(result.stdout)["error"] == "NotFound"


def test_users_list_lock_unlock_reset_totp_and_set_password(archive_env):
    _people(archive_env)
    first = archive_env.json("users", "add", "an", "--person", PERSON, "--role", "clerk",
                             "--no-qr")
    archive_env.json("users", "add", "binh", "--person", PERSON2, "--role", "auditor",
                     "--no-qr")
    listed = archive_env.json("users", "list")
    assert [(u["username"], u["role"], u["status"]) for u in listed] == [
        ("an", "clerk", "active"), ("binh", "auditor", "active")]
    human = archive_env.invoke("users", "list")
    assert human.exit_code == 0 and "Nguyễn Văn An" in human.stdout and ORG in human.stdout

    locked = archive_env.json("users", "lock", "an", "--reason", "mất điện thoại",
                              "--incident", "lost")
    assert locked["status"] == "locked" and locked["lock_reason"] == "mất điện thoại"
    assert not _login(archive_env, "an", first["password"])
    result = archive_env.invoke("users", "lock", "an")  # --reason is required
    assert result.exit_code == 2
    assert archive_env.json("users", "unlock", "an", "--reason", "tìm thấy")["status"] == \
        "active"
    assert _login(archive_env, "an", first["password"])

    reset = archive_env.json("users", "reset-totp", "an", "--no-qr")
    assert _totp_secret(reset["totp_uri"]) != _totp_secret(first["totp_uri"])
    with_qr = archive_env.invoke("users", "reset-totp", "an")
    assert with_qr.exit_code == 0 and any(b in with_qr.stdout for b in QR_BLOCKS)

    result = archive_env.invoke("users", "set-password", "an", "--password-stdin",
                                input="mật khẩu mới thật dài\n")
    assert result.exit_code == 0 and "password of an set" in result.stdout
    assert _login(archive_env, "an", "mật khẩu mới thật dài")
    generated = archive_env.json("users", "set-password", "binh")
    assert _login(archive_env, "binh", generated["password"])

    done = [(a, o) for actor, a, o in _actions(archive_env) if actor.startswith("system:cli:")]
    for action in ("user.add", "users.list", "user.lock", "user.unlock", "user.reset-totp",
                   "user.set-password"):
        assert (action, "ok") in done, action
    assert archive_env.invoke("audit", "verify").exit_code == 0


def test_tokens_create_list_revoke(archive_env):
    created = archive_env.json("tokens", "create", "một cửa", "--agent", ORG, "--scope",
                               "records:read", "--scope", "records:download",
                               "--clearance", "mat", "--days", "30")
    secret = created["token"]
    assert secret.startswith("kls_") and created["status"] == "active"
    assert created["scopes"] == ["records:download", "records:read"]
    instance = archive_env.instance()
    with instance.catalog.unit_of_work() as s:
        principal = authenticate_token(s, secret)
    assert principal.scopes == ("records:download", "records:read")
    assert principal.organisations == (ORG,) and principal.clearance == "mat"

    human = archive_env.invoke("tokens", "create", "báo cáo", "--agent", ORG, "--scope",
                               "agents:read")
    assert human.exit_code == 0 and "secret (shown once): kls_" in human.stdout
    listed = archive_env.json("tokens", "list")
    assert [(t["name"], t["status"]) for t in listed] == [("một cửa", "active"),
                                                         ("báo cáo", "active")]
    assert secret not in json.dumps(listed, ensure_ascii=False)
    assert all("token" not in t for t in listed)

    revoked = archive_env.json("tokens", "revoke", created["id"])
    assert revoked["status"] == "revoked" and revoked["revoked_at"]
    with instance.catalog.unit_of_work() as s:
        assert authenticate_token(s, secret) is None
    assert archive_env.invoke("tokens", "revoke", created["id"]).exit_code == 0
    assert [t["status"] for t in archive_env.json("tokens", "list")] == ["revoked", "active"]
    done = [a for _, a, _ in _actions(archive_env)]
    assert done.count("token.create") == 2 and done.count("token.revoke") == 1
    assert "tokens.list" in done
    assert archive_env.invoke("audit", "verify").exit_code == 0
