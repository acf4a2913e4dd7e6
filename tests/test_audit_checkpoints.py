"""Audit checkpoints in the primary AND the backup store, RFC 3161 timestamped by the
test PKI's real TSA (R-AUDIT-1, R-TS-1), on both configurations.

An intruder with database superuser rights (the append-only trigger dropped, hashes
recomputed consistently, the head moved) and write access to the primary store (its
checkpoints deleted) is still caught: the backup store keeps the checkpoints.
"""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import text

from archive.audit import CHECKPOINT_PREFIX, checkpoint_key, checkpoint_token_key
from tests.test_audit import rehash_from, tamper

pytestmark = pytest.mark.services


def _checkpoint(aenv) -> dict:
    data = aenv.json("audit", "checkpoint")
    assert data["checkpoint"] is not None
    return data


def _verify(aenv) -> tuple[int, dict]:
    result = aenv.invoke("audit", "verify", "--json")
    assert "Traceback" not in result.stderr
    return result.exit_code, json.loads(result.stdout)


def _codes(data: dict) -> set[str]:
    return {p["code"] for p in data["problems"]}


def _read(store, key: str) -> bytes:
    with store.open(key) as fh:
        return fh.read()


def _wipe_checkpoints(store) -> int:
    keys = [info.key for info in store.list(CHECKPOINT_PREFIX)]
    for key in keys:
        store.delete(key)
    return len(keys)


def test_checkpoint_in_both_stores_with_a_verifying_token(tsa_env, pki):
    from ingest.timestamps import verify_token

    before = pki.requests.tsa
    data = _checkpoint(tsa_env)
    seq = data["checkpoint"]["seq"]
    assert data["new"] and len(data["stores"]) == 2
    assert data["timestamp"]["trusted"] and "Time Stamping Authority" in data["timestamp"]["tsa"]
    assert pki.requests.tsa == before + 1

    instance = tsa_env.instance()
    primary, backup = instance.store, instance.backup_store
    document = _read(primary, checkpoint_key(seq))
    assert _read(backup, checkpoint_key(seq)) == document
    token = _read(primary, checkpoint_token_key(seq))
    assert _read(backup, checkpoint_token_key(seq)) == token
    assert verify_token(token, document, [pki.root]).trusted

    code, report = _verify(tsa_env)
    assert code == 0 and report["ok"], report
    assert report["checkpoints_timestamped"] == 1 and report["latest_checkpoint_seq"] == seq

    # Again: nothing new is signed and no second token is asked for.
    again = _checkpoint(tsa_env)
    assert again["checkpoint"]["seq"] == seq + 1  # the verify above appended an entry
    assert pki.requests.tsa == before + 2
    human = tsa_env.invoke("audit", "checkpoint")
    assert human.exit_code == 0 and "timestamped by" in human.stdout


def test_the_audit_checkpoint_job_timestamps_into_both_stores(tsa_env, pki):
    from archive.models import JobRun
    from preservation.runner import run_now

    instance = tsa_env.instance()
    run_id = run_now(instance, "audit-checkpoint")
    with instance.catalog.unit_of_work(snapshot=True) as session:
        assert session.get(JobRun, run_id).status == "ok"
    tokens = [info.key for info in instance.backup_store.list(CHECKPOINT_PREFIX)
              if info.key.endswith(".tsr")]
    assert tokens and all(instance.store.exists(key) for key in tokens)
    code, report = _verify(tsa_env)
    assert code == 0 and report["checkpoints_timestamped"] >= 1


def test_truncation_is_detected_after_the_primary_checkpoints_are_deleted(tsa_env):
    seq = _checkpoint(tsa_env)["checkpoint"]["seq"]
    instance = tsa_env.instance()
    catalog = instance.catalog
    keep = seq - 3
    # The intruder deletes the newest entries, moves the head back consistently ...
    tamper(catalog, "DELETE FROM audit_log WHERE seq > :keep", keep=keep)
    rehash_from(catalog, keep)
    # ... and deletes every checkpoint of the primary store.
    assert _wipe_checkpoints(instance.store) >= 2
    code, report = _verify(tsa_env)
    assert code == 1 and not report["ok"]
    assert {"truncated", "checkpoint_missing"} <= _codes(report)
    truncated = next(p for p in report["problems"] if p["code"] == "truncated")
    assert f"checkpoint {seq}" in truncated["message"]
    # A checkpoint is not signed over it (nor does it hide the gap).
    refused = tsa_env.invoke("audit", "checkpoint", "--json")
    assert refused.exit_code == 1


def test_a_rewritten_chain_is_detected_from_the_backup_checkpoints(tsa_env):
    seq = _checkpoint(tsa_env)["checkpoint"]["seq"]
    catalog = tsa_env.instance().catalog
    tamper(catalog, "UPDATE audit_log SET target = 'agent:forged' WHERE seq = 2")
    rehash_from(catalog, 2)
    assert _verify(tsa_env)[0] == 1  # caught by the primary store's checkpoints ...
    _wipe_checkpoints(tsa_env.instance().store)
    code, report = _verify(tsa_env)  # ... and without them, by the backup's
    assert code == 1 and "rewritten" in _codes(report)
    assert "checkpoint_missing" in _codes(report)
    rewritten = [p["detail"]["seq"] for p in report["problems"] if p["code"] == "rewritten"]
    assert seq in rewritten


def test_missing_forged_and_untrue_checkpoints_are_reported(tsa_env):
    seq = _checkpoint(tsa_env)["checkpoint"]["seq"]
    instance = tsa_env.instance()
    primary, backup = instance.store, instance.backup_store
    key = checkpoint_key(seq)
    document = _read(primary, key)

    # Missing from the backup store only: a warning, the primary copy still counts.
    backup.delete(key)
    code, report = _verify(tsa_env)
    assert code == 0 and any(f"checkpoint {seq} is not in the backup store" in w
                             for w in report["warnings"])
    backup.put(key, io.BytesIO(document), size=len(document))

    # Missing from the primary store: reported.
    primary.delete(key)
    code, report = _verify(tsa_env)
    assert code == 1 and "checkpoint_missing" in _codes(report)
    primary.put(key, io.BytesIO(document), size=len(document))
    assert _verify(tsa_env)[0] == 0

    # Different in the two stores, and forged (not signed by the system key).
    forged = json.loads(document)
    forged["entry_hash"] = "f" * 64
    forged_bytes = json.dumps(forged).encode()
    backup.delete(key)
    backup.put(key, io.BytesIO(forged_bytes), size=len(forged_bytes))
    code, report = _verify(tsa_env)
    assert code == 1 and "checkpoint_mismatch" in _codes(report)
    future = checkpoint_key(seq + 1000)
    primary.put(future, io.BytesIO(forged_bytes), size=len(forged_bytes))
    code, report = _verify(tsa_env)
    assert code == 1 and "bad_checkpoint" in _codes(report)
    primary.delete(future)
    backup.delete(key)
    backup.put(key, io.BytesIO(document), size=len(document))
    assert _verify(tsa_env)[0] == 0

    # A token that does not cover its checkpoint.
    token_key = checkpoint_token_key(seq)
    token = _read(primary, token_key)
    for store in (primary, backup):
        store.delete(token_key)
    other = _checkpoint(tsa_env)  # a fresh token, over another checkpoint
    stranger = _read(primary, checkpoint_token_key(other["checkpoint"]["seq"]))
    assert stranger != token
    primary.put(token_key, io.BytesIO(stranger), size=len(stranger))
    code, report = _verify(tsa_env)
    assert code == 1 and {"bad_checkpoint_token", "checkpoint_token_mismatch"} & \
        _codes(report)


def test_without_a_backup_store_checkpoints_stay_in_the_primary(tsa_env):
    tsa_env.env["ARCHIVE_BACKUP__BACKEND"] = "none"
    data = _checkpoint(tsa_env)
    assert len(data["stores"]) == 1 and data["timestamp"]["trusted"]
    code, report = _verify(tsa_env)
    assert code == 0 and report["backup_store"] is None


def test_append_only_trigger_is_what_the_intruder_had_to_drop(tsa_env):
    """The simulation above needs superuser rights: the trigger refuses otherwise."""
    catalog = tsa_env.instance().catalog
    with pytest.raises(Exception, match="append-only"), catalog.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 1"))
