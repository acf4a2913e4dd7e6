"""Bulk ingest over all cores: progress, summary, JSON report, and interruption by
SIGINT (Ctrl-C) or SIGKILL followed by a re-run that loses and duplicates nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _inbox(aenv, n: int) -> Path:
    paths = [aenv.sample(f"b{i:03d}.pdf", text=f"bulk {i}") for i in range(n)]
    return paths[0].parent


def _spawn(aenv, *args, slowdown="0.05") -> subprocess.Popen:
    env = dict(aenv.env, ARCHIVE_INGEST_SLOWDOWN=slowdown)
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _archived_once(aenv, n: int) -> None:
    from sqlalchemy import func, select

    from archive.models import PackageVersion, Record

    instance = aenv.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        assert session.scalar(select(func.count()).select_from(Record)) == n
        keys = set(session.scalars(select(PackageVersion.storage_key)))
    assert len(keys) == n
    swept = aenv.json("storage", "sweep", "--grace", "0")
    assert swept["missing"] == [] and swept["errors"] == []
    assert {o.key for o in instance.store.list("aip/")} == keys
    assert aenv.invoke("fixity", "check", "--all").exit_code == 0


def test_folder_ingest_uses_workers_and_reports(local_archive):
    inbox = _inbox(local_archive, 6)
    local_archive.sample("bad.pdf", page_count=0)
    out = local_archive.invoke("ingest", str(inbox), "--workers", "2", "--json")
    assert out.exit_code == 2, out.stderr
    report = json.loads(out.stdout)
    assert report["workers"] == 2 and report["interrupted"] is False
    assert report["summary"] == {"archived": 6, "duplicate": 0, "refused": 0, "failed": 1}
    human = local_archive.invoke("ingest", str(inbox), "--workers", "2")
    assert "duplicate" in human.stdout and "total" in human.stdout
    assert "page_count" in human.stderr
    _archived_once(local_archive, 6)


def test_sigint_then_rerun_loses_and_duplicates_nothing(archive_env):
    inbox = _inbox(archive_env, 16)
    proc = _spawn(archive_env, "ingest", str(inbox), "--workers", "2")
    time.sleep(4.0)
    assert proc.poll() is None, "finished before the interrupt: the test did not test"
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again" in err
    rerun = archive_env.invoke("ingest", str(inbox), "--json")
    assert rerun.exit_code == 0, rerun.stderr
    summary = json.loads(rerun.stdout)["summary"]
    assert summary["archived"] + summary["duplicate"] == 16 and summary["duplicate"] > 0
    _archived_once(archive_env, 16)


def test_sigkill_of_the_whole_group_then_rerun(local_archive):
    inbox = _inbox(local_archive, 16)
    proc = _spawn(local_archive, "ingest", str(inbox), "--workers", "2")
    time.sleep(4.0)
    assert proc.poll() is None, "finished before the kill: the test did not test"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    rerun = local_archive.invoke("ingest", str(inbox), "--json")
    assert rerun.exit_code == 0, rerun.stderr
    _archived_once(local_archive, 16)
