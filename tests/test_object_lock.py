"""WORM storage end to end on real SeaweedFS (R-REPO-1): `archive init --create-bucket
--object-lock` makes a locked bucket, every AIP carries COMPLIANCE retention, nothing
can delete it early, and the sweeper keeps a locked orphan instead of failing."""

from __future__ import annotations

import io
import secrets

import pytest

from archive.errors import Refused
from tests.conftest import ORG, ArchiveEnv, _base_env


@pytest.fixture
def worm_archive(seaweed, pg_url, tmp_path):
    env = _base_env(tmp_path)
    env.update({
        "ARCHIVE_DATABASE__URL": pg_url,
        "ARCHIVE_STORAGE__BACKEND": "s3",
        "ARCHIVE_STORAGE__S3_ENDPOINT": seaweed.endpoint,
        "ARCHIVE_STORAGE__S3_BUCKET": f"worm-{secrets.token_hex(4)}",
        "ARCHIVE_STORAGE__S3_ACCESS_KEY": seaweed.access_key,
        "ARCHIVE_STORAGE__S3_SECRET_KEY": seaweed.secret_key,
        "ARCHIVE_STORAGE__S3_RETENTION_DAYS": "1",
    })
    aenv = ArchiveEnv("worm", env, tmp_path)
    missing = aenv.invoke("init")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    created = aenv.invoke("init", "--create-bucket", "--object-lock")
    assert created.exit_code == 0, created.output
    assert aenv.invoke("agents", "add-org", ORG, "Văn phòng").exit_code == 0
    yield aenv
    aenv.close()


def test_aips_are_locked_and_cannot_be_deleted(worm_archive):
    pdf = worm_archive.sample("worm.pdf")
    rid = worm_archive.json("ingest", str(pdf))["results"][0]["record_id"]
    store = worm_archive.instance().store
    key = f"aip/{rid}/v0001.tar"
    info = store.stat(key)
    assert info.extra.get("lock_mode") == "COMPLIANCE"
    assert info.extra.get("retain_until")
    with pytest.raises(Refused):
        store.delete(key)
    assert worm_archive.invoke("fixity", "check", rid).exit_code == 0

    # An orphan left by a crashed ingest is locked too: the sweeper keeps and reports it.
    store.put("aip/00000000-0000-4000-8000-000000000000/v0001.tar", io.BytesIO(b"orphan"))
    swept = worm_archive.json("storage", "sweep", "--grace", "0")
    assert swept["removed"] == [] and swept["errors"] == []
    assert swept["locked"][0].startswith("aip/00000000-0000-4000-8000-000000000000/v0001.tar")
    assert store.exists(key)
