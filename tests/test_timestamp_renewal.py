"""Archive timestamp renewal (R-TS-1) against the test PKI's real TSAs over HTTP, on
both configurations (local folder + SQLite, SeaweedFS + PostgreSQL).

A record timestamped at ingest by the short-lived TSA (certificate expiring in 30 days,
within ``timestamps.renew_before_days``) is renewed by the ``timestamps`` job; one
timestamped by the main TSA (10 years) is not. The chain verifies offline; tampering
with a renewal object or the previous token breaks it; re-running renews nothing
twice; with the TSA down the batch fails and nothing is registered.
"""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from tests.conftest import ORG

pytestmark = pytest.mark.services


def _ingest(aenv, name: str, tsa_url: str) -> str:
    aenv.env["ARCHIVE_SIGNATURES__TSA_URL"] = tsa_url
    path = aenv.sample(f"{name}.pdf", text=name, number_symbol=f"{name}-QĐ/TU",
                       issuing_org=ORG)
    result = aenv.invoke("ingest", str(path), "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["results"][0]["record_id"]


def _run_job(aenv):
    from archive.models import JobRun
    from preservation.runner import run_now

    instance = aenv.instance()
    run_id = run_now(instance, "timestamps")
    with instance.catalog.unit_of_work(snapshot=True) as session:
        run = session.get(JobRun, run_id)
        return run.status, dict(run.counts or {}), list(run.errors or [])


def _rows(aenv, record_id: str) -> list:
    from archive.models import ArchiveTimestamp

    instance = aenv.instance()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        rows = session.scalars(select(ArchiveTimestamp)
                               .where(ArchiveTimestamp.record_id == record_id)
                               .order_by(ArchiveTimestamp.created_at)).all()
        for row in rows:
            session.expunge(row)
        return rows


def _audited(aenv, action: str) -> list[str]:
    from archive.models import AuditEntry

    with aenv.instance().catalog.unit_of_work(snapshot=True) as session:
        return list(session.scalars(select(AuditEntry.target)
                                    .where(AuditEntry.action == action)
                                    .order_by(AuditEntry.seq)))


def _chain(aenv, record_id: str):
    result = aenv.invoke("signatures", "timestamps", record_id, "--json")
    assert "Traceback" not in result.stderr
    return result.exit_code, json.loads(result.stdout)


def _overwrite(store, key: str, data: bytes) -> None:
    """An attacker with storage credentials replaces an object."""
    store.delete(key)
    store.put(key, io.BytesIO(data), size=len(data))


def test_due_timestamp_is_renewed_and_the_chain_verifies(tsa_env, pki):
    due = _ingest(tsa_env, "due", pki.short_tsa_url)
    fresh = _ingest(tsa_env, "fresh", pki.tsa_url)
    tsa_env.env["ARCHIVE_SIGNATURES__TSA_URL"] = pki.tsa_url
    before = pki.requests.tsa

    status, counts, errors = _run_job(tsa_env)
    assert status == "ok", errors
    assert counts.get("renewed") == 1
    assert pki.requests.tsa == before + 1  # one renewal token asked, nothing else

    root, renewal = _rows(tsa_env, due)
    assert root.source == "aip" and root.superseded_at is not None
    assert root.hash_algorithm == "sha256"
    assert renewal.source == "renewal" and renewal.previous_id == root.id
    assert renewal.superseded_at is None and renewal.hash_algorithm == "sha512"
    assert renewal.object_key == f"timestamps/{due}/1.tsr"
    assert renewal.member == f"timestamps/{due}/1.json"
    assert renewal.tsa_certificate_expires > root.tsa_certificate_expires
    (only,) = _rows(tsa_env, fresh)  # far from expiry: registered, not renewed
    assert only.source == "aip" and only.superseded_at is None

    store = tsa_env.instance().store
    renewal_input = json.loads(store.open(renewal.member).read())
    assert renewal_input["previous"]["token_sha256"] == root.token_sha256
    assert renewal_input["evidence"]["manifest_sha256"] == root.covers_sha256
    events = tsa_env.json("records", "history", due)["events"]
    assert [e["outcome"] for e in events if e["type"] == "timestamp renewal"] == ["success"]
    assert _audited(tsa_env, "timestamp.renew") == [f"record:{due}"]

    # Re-running renews nothing twice.
    status, counts, _ = _run_job(tsa_env)
    assert status == "ok" and not counts.get("renewed")
    assert len(_rows(tsa_env, due)) == 2

    # The chain verifies offline (the PKI is not asked).
    quiet = pki.requests.snapshot()
    code, report = _chain(tsa_env, due)
    assert code == 0 and report["ok"], report
    assert [link["source"] for link in report["chains"][0]["links"]] == ["aip", "renewal"]
    assert all(link["trusted"] for link in report["chains"][0]["links"])
    assert pki.requests.snapshot() == quiet
    code, report = _chain(tsa_env, fresh)
    assert code == 0 and len(report["chains"][0]["links"]) == 1
    human = tsa_env.invoke("signatures", "timestamps", due)
    assert human.exit_code == 0 and "INTACT" in human.stdout

    # A tampered renewal input breaks the chain (exit 1).
    renewal_input["evidence"]["aip_key"] = "aip/other/v0001.tar"
    original = store.open(renewal.member).read()
    _overwrite(store, renewal.member, json.dumps(renewal_input).encode())
    code, report = _chain(tsa_env, due)
    assert code == 1 and not report["ok"]
    assert any(renewal.object_key in p and "SHA-256" in p for p in report["problems"])
    _overwrite(store, renewal.member, original)
    assert _chain(tsa_env, due)[0] == 0

    # So does a tampered renewal token.
    token = store.open(renewal.object_key).read()
    _overwrite(store, renewal.object_key, token[:-1] + bytes([token[-1] ^ 1]))
    code, report = _chain(tsa_env, due)
    assert code == 1 and not report["ok"]


def test_weak_hash_is_renewed_and_a_tampered_previous_token_is_detected(tsa_env, pki):
    from archive.models import ArchiveTimestamp

    rid = _ingest(tsa_env, "weak", pki.tsa_url)
    tsa_env.env["ARCHIVE_TIMESTAMPS__WEAK_ALGORITHMS"] = json.dumps(["sha1", "sha256"])
    status, counts, errors = _run_job(tsa_env)
    assert status == "ok" and counts.get("renewed") == 1, errors
    root, renewal = _rows(tsa_env, rid)
    assert root.hash_algorithm == "sha256" and renewal.hash_algorithm == "sha512"
    events = tsa_env.json("records", "history", rid)["events"]
    renewed = [e for e in events if e["type"] == "timestamp renewal"]
    assert len(renewed) == 1 and "weak" in renewed[0]["detail"]
    assert _chain(tsa_env, rid)[0] == 0

    # The previous token (the AIP's, as the catalog recorded it) no longer matches
    # what the renewal input holds: someone re-pointed the chain at another token.
    instance = tsa_env.instance()
    with instance.catalog.unit_of_work() as session:
        session.get(ArchiveTimestamp, root.id).token_sha256 = "0" * 64
    code, report = _chain(tsa_env, rid)
    assert code == 1 and not report["ok"]
    assert any("previous token" in p for p in report["problems"])


def test_tsa_down_fails_the_batch_and_registers_nothing(tsa_env, pki):
    from tests.services.common import free_port

    rid = _ingest(tsa_env, "down", pki.short_tsa_url)
    tsa_env.env["ARCHIVE_SIGNATURES__TSA_URL"] = f"http://127.0.0.1:{free_port()}/tsa"
    tsa_env.env["ARCHIVE_SIGNATURES__FETCH_TIMEOUT"] = "2"
    status, counts, errors = _run_job(tsa_env)
    assert status == "failed" and not counts.get("renewed")
    assert any("timestamp" in json.dumps(e) for e in errors)
    (root,) = _rows(tsa_env, rid)  # registered as a root, not renewed, not superseded
    assert root.superseded_at is None
    assert not list(tsa_env.instance().store.list(f"timestamps/{rid}/"))
    events = tsa_env.json("records", "history", rid)["events"]
    assert not [e for e in events if e["type"] == "timestamp renewal"]

    # No TSA at all: the job fails clearly when something is due.
    tsa_env.env["ARCHIVE_SIGNATURES__TSA_URL"] = ""
    status, _, errors = _run_job(tsa_env)
    assert status == "failed"
    assert any("signatures.tsa_url" in json.dumps(e) for e in errors)

    # Once the TSA answers again, the renewal happens.
    tsa_env.env["ARCHIVE_SIGNATURES__TSA_URL"] = pki.tsa_url
    status, counts, _ = _run_job(tsa_env)
    assert status == "ok" and counts.get("renewed") == 1


def test_nothing_due_and_no_tsa_does_nothing(tsa_env, pki):
    rid = _ingest(tsa_env, "calm", pki.tsa_url)
    tsa_env.env["ARCHIVE_SIGNATURES__TSA_URL"] = ""
    status, counts, errors = _run_job(tsa_env)
    assert status == "ok" and not counts.get("renewed") and not errors
    assert len(_rows(tsa_env, rid)) == 1
