"""Fixtures shared by the whole suite (Flask-tutorial style: settings, stores, catalog).

Real services (PostgreSQL, SeaweedFS) are started by plugins in ``tests/services``;
without them a test is skipped with the reason, and with ARCHIVE_REQUIRE_SERVICES=1
(CI) a missing service is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.services.postgres", "tests.services.seaweed", "tests.services.pki",
                  "tests.xml_schemas"]

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = Path(os.environ.get("ARCHIVE_CONFORMANCE_DIR",
                                  REPO.parent / "shared" / "conformance"))


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    if not CONFORMANCE.is_dir():
        from tests.services.common import unavailable

        unavailable("conformance corpora", f"{CONFORMANCE} not found "
                    "(set ARCHIVE_CONFORMANCE_DIR)")
    return CONFORMANCE


# ---- an initialised archive on either embedded or real-service defaults -----------

ORG = "000.00.00.H41"
ORG2 = "000.00.01.H41"


class ArchiveEnv:
    """An initialised archive in tmp_path, driven through the real CLI."""

    def __init__(self, name: str, env: dict[str, str], tmp_path: Path):
        self.name = name
        self.env = env
        self.tmp_path = tmp_path
        self._instances: list = []

    def invoke(self, *args: str, input: str | None = None):
        from click.testing import CliRunner

        from cli.main import cli

        runner = CliRunner()
        return runner.invoke(cli, list(args), env=self.env, input=input,
                             catch_exceptions=False)

    def json(self, *args: str, expect: int = 0):
        import json

        result = self.invoke(*args, "--json")
        assert result.exit_code == expect, (result.exit_code, result.stdout, result.stderr)
        return json.loads(result.stdout)

    @property
    def settings(self):
        from archive.settings import load_settings

        return load_settings(environ=self.env)

    def instance(self):
        from archive.instance import ArchiveInstance

        instance = ArchiveInstance(self.settings)
        self._instances.append(instance)
        return instance

    def close(self) -> None:
        for instance in self._instances:
            instance.close()
        self._instances.clear()

    def sample(self, name: str = "doc.pdf", *, text: str = "sample", **meta) -> Path:
        """Write a small PDF with its sidecar metadata; ``meta`` overrides fields."""
        import json

        from ingest.demo import make_pdf

        folder = self.tmp_path / "inbox"
        folder.mkdir(exist_ok=True)
        path = folder / name
        path.write_bytes(make_pdf([f"Test document {name}", text]))
        data = sample_metadata(**meta)
        path.with_name(path.name + ".json").write_text(json.dumps(data, ensure_ascii=False),
                                                       encoding="utf-8")
        return path


def sample_metadata(**overrides) -> dict:
    data = {
        "number_symbol": "12-QĐ/TU", "doc_type": "quyet-dinh", "date": "2025-03-14",
        "issuing_org": ORG, "summary": "Quyết định về việc ban hành quy chế lưu trữ số",
        "signer": "Trần Thị Bình", "classification": "normal", "retention_rule": "vv",
        "fonds": "PHONG-01", "file_ref": "HS-2025-07", "page_count": 1, "language": "vi",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env["ARCHIVE_ARCHIVE__DATA_DIR"] = str(tmp_path / "data")
    # Storage, fixity and catalog tests use unsigned sample PDFs: signature enforcement
    # is off for them (the report is still made and stored). Signed ingest, with
    # enforcement on, is tested against the test PKI in test_signed_ingest.py.
    env["ARCHIVE_SIGNATURES__ENFORCE"] = "false"
    env["ARCHIVE_SIGNATURES__ALLOW_FETCHING"] = "false"
    return env


def make_archive_env(kind: str, tmp_path: Path, request) -> ArchiveEnv:
    env = _base_env(tmp_path)
    if kind == "s3-postgresql":
        seaweed = request.getfixturevalue("seaweed")
        env["ARCHIVE_DATABASE__URL"] = request.getfixturevalue("pg_url")
        env.update({
            "ARCHIVE_STORAGE__BACKEND": "s3",
            "ARCHIVE_STORAGE__S3_ENDPOINT": seaweed.endpoint,
            "ARCHIVE_STORAGE__S3_BUCKET": seaweed.new_bucket(),
            "ARCHIVE_STORAGE__S3_ACCESS_KEY": seaweed.access_key,
            "ARCHIVE_STORAGE__S3_SECRET_KEY": seaweed.secret_key,
        })
    aenv = ArchiveEnv(kind, env, tmp_path)
    result = aenv.invoke("init")
    assert result.exit_code == 0, result.output
    result = aenv.invoke("agents", "add-org", ORG, "Văn phòng Tỉnh ủy")
    assert result.exit_code == 0, result.output
    result = aenv.invoke("agents", "add-org", ORG2, "Ban Tổ chức Tỉnh ủy")
    assert result.exit_code == 0, result.output
    return aenv


@pytest.fixture(params=["local-sqlite", "s3-postgresql"])
def archive_env(request, tmp_path):
    """An initialised archive: local folder + SQLite, or SeaweedFS + PostgreSQL."""
    aenv = make_archive_env(request.param, tmp_path, request)
    yield aenv
    aenv.close()


@pytest.fixture
def local_archive(request, tmp_path):
    """An initialised archive on embedded defaults only (fast tests)."""
    aenv = make_archive_env("local-sqlite", tmp_path, request)
    yield aenv
    aenv.close()


@pytest.fixture
def web(archive_env):
    """The web app of an archive on both configurations, with users and logins
    (tests/accounts.py)."""
    from tests.accounts import WebArchive

    archive = WebArchive(archive_env)
    yield archive
    archive.close()


@pytest.fixture
def local_web(local_archive):
    """The web app of an archive on embedded defaults."""
    from tests.accounts import WebArchive

    archive = WebArchive(local_archive)
    yield archive
    archive.close()
