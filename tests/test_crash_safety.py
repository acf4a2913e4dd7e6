"""Write then register (R-PKG-1, R-FIX-1): SIGKILL an ingest at random points; the
catalog never points at missing bytes, and after `archive storage sweep` nothing in
the store is unregistered. Re-running the ingest archives each file exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _spawn(aenv, *args: str, slowdown: float) -> subprocess.Popen:
    env = dict(aenv.env, ARCHIVE_INGEST_SLOWDOWN=str(slowdown))
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _check_catalog_points_at_bytes(aenv) -> None:
    result = aenv.invoke("fixity", "check", "--all", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report["failures"]


@pytest.mark.slow
def test_sigkill_during_ingest_never_leaves_a_dangling_row(archive_env):
    rng = random.Random(20251123)
    files = [archive_env.sample(f"k{i:02d}.pdf", text=f"kill test {i}") for i in range(12)]
    inbox = files[0].parent
    kills = 0
    for _ in range(8):
        proc = _spawn(archive_env, "ingest", str(inbox), slowdown=0.03)
        time.sleep(rng.uniform(0.3, 2.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        _check_catalog_points_at_bytes(archive_env)
    assert kills >= 4, "the ingest finished before being killed: the test did not test"

    swept = archive_env.json("storage", "sweep", "--grace", "0")
    assert swept["errors"] == [] and swept["missing"] == []
    instance = archive_env.instance()
    from sqlalchemy import select

    from archive.models import PackageVersion

    with instance.catalog.unit_of_work(snapshot=True) as session:
        registered = set(session.scalars(select(PackageVersion.storage_key)))
    stored = {o.key for o in instance.store.list("aip/")}
    assert stored == registered

    # Finishing the job archives every file exactly once.
    final = archive_env.invoke("ingest", str(inbox), "--json")
    assert final.exit_code == 0, final.output
    statuses = [r["status"] for r in json.loads(final.stdout)["results"]]
    assert set(statuses) <= {"archived", "duplicate"}
    listed = archive_env.json("records", "list", "--limit", "100")
    assert listed["total"] == len(files)
    _check_catalog_points_at_bytes(archive_env)


def test_sweep_removes_lifecycle_orphans_and_keeps_registered_objects(archive_env):
    """Renditions and seal manifests are stored before their rows commit too: an
    unregistered one (a crash between the two) is swept, a registered one never."""
    import io
    import uuid
    from datetime import UTC, date, datetime

    from archive.models import Agent, Rendition, Seal

    pdf = archive_env.sample("s.pdf", text="sweep lifecycle")
    record_id = archive_env.json("ingest", str(pdf))["results"][0]["record_id"]
    instance = archive_env.instance()
    store = instance.store
    kept_rendition = f"renditions/{record_id}/{uuid.uuid4()}.pdf"
    lost_rendition = f"renditions/{record_id}/{uuid.uuid4()}.pdf"
    seal_id, lost_seal = str(uuid.uuid4()), str(uuid.uuid4())
    kept_seal = [f"seals/{seal_id}/manifest.json", f"seals/{seal_id}/manifest.sig"]
    lost_seal_keys = [f"seals/{lost_seal}/manifest.json"]
    for key in [kept_rendition, lost_rendition, *kept_seal, *lost_seal_keys]:
        store.put(key, io.BytesIO(b"%PDF-1.7 test"), size=13)
    now = datetime.now(UTC)
    with instance.catalog.unit_of_work() as session:
        from sqlalchemy import select

        org = session.scalar(select(Agent).where(Agent.kind == "organisation"))
        session.add(Rendition(id=kept_rendition.rsplit("/", 1)[1][:-4], record_id=record_id,
                              created_at=now, created_by="test", converter="test",
                              storage_key=kept_rendition, sha256="0" * 64, size=13,
                              page_count=1, verify_url="http://x/verify"))
        session.add(Seal(id=seal_id, reference="01/QĐ-TEST", decision_date=date(2026, 1, 1),
                         authority_id=org.id, scope="test", readers=[], sealed_at=now,
                         sealed_by="test", manifest_key=kept_seal[0],
                         manifest_sha256="0" * 64, legal_hold=False, status="lifted"))

    swept = archive_env.json("storage", "sweep", "--grace", "0")
    assert sorted(swept["removed"]) == sorted([lost_rendition, *lost_seal_keys])
    assert swept["errors"] == [] and swept["missing"] == []
    left = {o.key for prefix in ("renditions/", "seals/") for o in store.list(prefix)}
    assert left == {kept_rendition, *kept_seal}
