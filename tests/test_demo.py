"""The DEMO archive of `make run` (docs/demo.md): `archive demo seed` generates a DEMO
PKI, registers the DEMO agencies and signers, and ingests signed samples through the real
ingest path with signature enforcement on (R-SIG-1, R-SIG-2, R-TS-1, R-CLASS-1)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# A PEM private key block: the armour line, then base64 (not a mention of the armour).
PEM_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\r?\n[A-Za-z0-9+/=]{40}")


class Demo:
    def __init__(self, data_dir: Path):
        self.data_dir = data_dir
        # Only what the test sets: no ARCHIVE_* setting leaks in from outside.
        self.env = {k: None for k in os.environ if k.startswith("ARCHIVE_")}
        self.env["ARCHIVE_ARCHIVE__DATA_DIR"] = str(data_dir)

    def invoke(self, *args: str, config: Path | None = None):
        from click.testing import CliRunner

        from cli.main import cli

        env = dict(self.env, ARCHIVE_CONFIG=str(config) if config else None)
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    def json(self, *args: str, config: Path | None = None, expect: int = 0):
        result = self.invoke(*args, "--json", config=config)
        assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    try:
        import certomancer  # noqa: F401
    except ImportError as exc:
        from tests.services.common import unavailable

        unavailable("DEMO PKI", f"certomancer missing ({exc}); install the 'demo' extra")
    demo = Demo(tmp_path_factory.mktemp("demo") / "var")
    assert demo.invoke("init", "--if-needed").exit_code == 0
    demo.summary = demo.json("demo", "seed", "--if-empty")
    return demo


def test_signed_samples_are_archived_with_valid_signatures(demo):
    from ingest.demo import SAMPLES

    summary = demo.summary
    assert summary["seeded"] == len(SAMPLES) >= 12
    assert {r["status"] for r in summary["records"]} == {"archived"}
    listed = demo.json("records", "list", "--limit", "100")
    assert listed["total"] == len(SAMPLES)
    assert "mat" in {r["classification"] for r in listed["records"]}  # a classified sample
    for record in listed["records"]:
        events = {e["type"]: e for e in demo.json("records", "history", record["id"])["events"]}
        validation = events["validation"]
        assert validation["outcome"] == "success", validation
        assert validation["detail"].startswith("signatures valid") and "policy satisfied" \
            in validation["detail"]
        assert events["timestamping"]["outcome"] == "success"
        seal = "organisation: valid" in validation["detail"]
        assert seal is (record["doc_type"] != "bien-ban")  # minutes carry no seal


def test_records_revalidate_offline_with_the_demo_settings(demo):
    config = Path(demo.summary["config"])
    settings = tomllib.loads(config.read_text(encoding="utf-8"))
    assert settings["signatures"]["enforce"] is True
    assert settings["signatures"]["trust_roots"] == [demo.summary["pki"]["trust_root"]]
    assert settings["archive"]["data_dir"] == str(demo.data_dir.resolve())
    records = demo.json("records", "list", "--limit", "100")["records"]
    # the PKI was served only while seeding: this re-validation is offline
    for record in (records[0], next(r for r in records if r["classification"] == "mat"),
                   next(r for r in records if r["doc_type"] == "bien-ban")):
        result = demo.json("signatures", "revalidate", record["id"], config=config)
        assert result["verdict"] == "valid", result
    shown = demo.json("config", "show", config=config)
    assert shown["archive"]["system_name"].endswith("(DEMO)")


def test_every_certificate_is_marked_demo(demo):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    certs = sorted((demo.data_dir / "demo-pki" / "certs").glob("*.cert.pem"))
    assert len(certs) >= 9  # root, issuing CA, OCSP, TSA, two seals, three signers
    for path in certs:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        for name in (cert.subject, cert.issuer):
            (common_name,) = name.get_attributes_for_oid(NameOID.COMMON_NAME)
            assert "DEMO" in common_name.value, (path.name, name.rfc4514_string())
    agents = demo.json("agents", "list")
    assert all("(DEMO)" in a["name"] for a in agents)
    bound = demo.json("agents", "certs")
    assert len(bound) == 5 and all("DEMO" in c["subject"] for c in bound)


def test_private_keys_stay_in_the_data_folder(demo):
    keys = sorted((demo.data_dir / "demo-pki" / "keys").glob("*.key.pem"))
    assert keys
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert not key.resolve().is_relative_to(REPO)
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: no tracked files to check")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        path = REPO / name
        assert not name.endswith((".key.pem", ".key")), name
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert not PEM_PRIVATE_KEY.search(path.read_bytes()), name


def test_a_second_if_empty_run_does_nothing(demo):
    config = Path(demo.summary["config"])
    before = (config.read_bytes(), demo.json("records", "list")["total"])
    again = demo.json("demo", "seed", "--if-empty")
    assert again["seeded"] == 0 and "already holds records" in again["reason"]
    assert (config.read_bytes(), demo.json("records", "list")["total"]) == before


def test_seeding_again_reuses_the_pki_and_finds_duplicates(demo):
    """Without --if-empty the same PKI (same certificates, same port) and the same signed
    files are used again: nothing new is registered or archived."""
    again = demo.json("demo", "seed")
    assert again["pki"] == demo.summary["pki"]
    assert again["agents"] == {"registered": [], "certificates": [], "authorities": []}
    assert {r["status"] for r in again["records"]} == {"duplicate"} and again["seeded"] == 0


def test_demo_users_cover_every_role_and_can_log_in(demo):
    """R-AUTH-1: `make run` prints a login per role; the DEMO secrets stay private to the
    data folder, and a DEMO code from `archive demo code` passes the real TOTP check."""
    from archive.db import Catalog
    from archive.policy import ROLES
    from archive.settings import load_settings
    from archive.users import check_password, check_totp

    users = {u["username"]: u for u in demo.summary["users"]}
    assert {u["role"] for u in users.values()} == set(ROLES)
    for login in users.values():
        assert login["totp_uri"].startswith("otpauth://totp/") and login["password"]
    logins = demo.data_dir / "demo-logins.json"
    assert stat.S_IMODE(logins.stat().st_mode) == 0o600
    assert demo.json("users", "list")[0]["username"] in users

    # printed again (without seeding) by the next `make run`
    again = demo.invoke("demo", "seed", "--if-empty")
    assert "vanthu" in again.stdout and users["vanthu"]["password"] in again.stdout

    code = demo.json("demo", "code", "kiemtoan")["code"]
    settings = load_settings(environ={"ARCHIVE_ARCHIVE__DATA_DIR": str(demo.data_dir)})
    catalog = Catalog.from_settings(settings)
    try:
        with catalog.unit_of_work() as session:
            first = check_password(session, settings, "kiemtoan", users["kiemtoan"]["password"])
            assert first.ok
            assert check_totp(session, settings, first.user, code).ok
    finally:
        catalog.dispose()
    assert demo.invoke("demo", "code", "nobody").exit_code == 2
