"""The next AIP version of a record (R-HIST-1, R-REVOKE-1): lifecycle events carried into
the package, the payload copied byte for byte, older versions untouched; sealed and
destroyed records refused; two concurrent repackagings never overwrite each other.

Runs on SQLite + local folder and on PostgreSQL + SeaweedFS (``archive_env``).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import threading

import pytest
from lxml import etree
from sqlalchemy import select

from archive.bag_validation import validate_bag
from archive.errors import Refused
from archive.models import AuditEntry, Event, PackageVersion, StoredFile
from archive.principal import Principal
from tests.accounts import WebArchive
from tests.conftest import ORG2
from tests.test_api import API, CORPUS, ingest
from tests.test_revocation import DECISION, _principal, seal_record, set_status

PREMIS = "{http://www.loc.gov/premis/v3}"
OPERATOR = Principal.system("test-operator")



def _files(web: WebArchive, record_id: str, version: int) -> dict[str, StoredFile]:
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        rows = db.scalars(select(StoredFile).join(PackageVersion).where(
            PackageVersion.record_id == record_id, PackageVersion.version == version)).all()
        db.expunge_all()
    return {f.path: f for f in rows}


def _versions(web: WebArchive, record_id: str) -> list[PackageVersion]:
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        rows = db.scalars(select(PackageVersion).where(PackageVersion.record_id == record_id)
                          .order_by(PackageVersion.version)).all()
        db.expunge_all()
    return list(rows)


def _object(web: WebArchive, key: str) -> bytes:
    with web.instance.store.open(key) as stream:
        return stream.read()


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name.split("/", 1)[1]: tar.extractfile(m).read()
                for m in tar.getmembers() if m.isfile()}


def _repackage(web: WebArchive, record_id: str, store=None, reason: str = "test"):
    from ingest.versions import repackage

    inst = web.instance
    return repackage(inst.settings, inst.catalog, store or inst.store, OPERATOR, record_id,
                     reason=reason, clock=inst.clock)


def _revoke(web: WebArchive, record_id: str) -> str:
    from archive.revocation import revoke

    if "duyet" not in web.accounts:
        web.add_user("duyet", "approver", "mat")
    approver = _principal(web, "duyet")
    with web.db() as db:
        return revoke(db, approver, record_id, **DECISION).revocation.id


def test_version_two_carries_the_revocation_and_the_same_payload(web, tmp_path):
    rid, pdf = ingest(web.aenv, "qd", recipients=[ORG2], **CORPUS["qd"])
    v1_bytes = _object(web, f"aip/{rid}/v0001.tar")
    decision = _revoke(web, rid)

    result = _repackage(web, rid, reason="after the revocation")
    assert (result.version, result.previous_version) == (2, 1)
    assert result.storage_key == f"aip/{rid}/v0002.tar"
    # The old version is never rewritten.
    assert _object(web, f"aip/{rid}/v0001.tar") == v1_bytes
    v1, v2 = _files(web, rid, 1), _files(web, rid, 2)
    payload = {p for p, f in v1.items() if f.role not in ("metadata", "tag")}
    assert "data/content/qd.pdf" in payload and len(payload) >= 2  # + signature report
    assert payload == {p for p, f in v2.items() if f.role not in ("metadata", "tag")}
    for path in payload:  # byte for byte: the same digests, role and description
        assert v2[path].digests == v1[path].digests, path
        assert (v2[path].role, v2[path].original_name, v2[path].format_puid) == \
            (v1[path].role, v1[path].original_name, v1[path].format_puid)

    v2_bytes = _object(web, result.storage_key)
    members = _members(v2_bytes)
    assert members["data/content/qd.pdf"] == pdf
    v1_members = _members(v1_bytes)
    assert members["data/metadata/descriptive/record.json"] == \
        v1_members["data/metadata/descriptive/record.json"]
    lifecycle = json.loads(members["data/metadata/lifecycle.json"])
    assert lifecycle["status"] == "revoked" and lifecycle["record_id"] == rid
    [revocation] = lifecycle["revocations"]
    assert revocation["id"] == decision and revocation["legal_basis"] == DECISION["legal_basis"]
    assert lifecycle["links"] == {"to": [], "from": []} and lifecycle["seals"] == []

    premis = etree.fromstring(members["data/metadata/preservation/premis.xml"])
    types = [e.findtext(f"{PREMIS}eventType") for e in premis.iter(f"{PREMIS}event")]
    assert "revocation" in types and "ingestion" in types and types[-1] == "repackaging"
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        events = db.scalars(select(Event).where(Event.record_id == rid)).all()
        revocation_event = next(e for e in events if e.event_type == "revocation")
        carried = {e.id for e in events if e.event_type not in ("repackaging",)
                   and e.data.get("storage_key") != result.storage_key}
    ids = {e.findtext(f"{PREMIS}eventIdentifier/{PREMIS}eventIdentifierValue")
           for e in premis.iter(f"{PREMIS}event")}
    assert revocation_event.id in ids and carried <= ids
    mets = members["data/METS.xml"].decode()
    assert 'xlink:href="metadata/lifecycle.json"' in mets and 'RECORDSTATUS="REVISED"' in mets

    # The serialised bag validates as BagIt 1.0 (manifests cover lifecycle.json).
    bag = tmp_path / "v2"
    with tarfile.open(fileobj=io.BytesIO(v2_bytes)) as tar:
        tar.extractall(bag, filter="data")
    report = validate_bag(bag / f"{rid}.v2")
    assert report.valid, report.to_dict()["problems"]

    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        [event] = db.scalars(select(Event).where(Event.record_id == rid,
                                                 Event.event_type == "repackaging")).all()
        [entry] = db.scalars(select(AuditEntry).where(
            AuditEntry.action == "record.repackage")).all()
    assert event.data["version"] == 2 and event.data["reason"] == "after the revocation"
    assert entry.outcome == "ok" and entry.detail["storage_key"] == result.storage_key
    assert [v.digests["sha256"] for v in _versions(web, rid)] == [
        hashlib.sha256(v1_bytes).hexdigest(), hashlib.sha256(v2_bytes).hexdigest()]


def test_a_classified_record_stays_encrypted_in_the_next_version(web):
    rid, pdf = ingest(web.aenv, "bc", text="NOI DUNG MAT 4711", **CORPUS["bc"])
    _revoke(web, rid)
    result = _repackage(web, rid)
    v1, v2 = _files(web, rid, 1), _files(web, rid, 2)
    original = "data/content/document.enc"
    assert v2[original].encryption == v1[original].encryption is not None
    assert v2[original].digests == v1[original].digests
    data = _object(web, result.storage_key)
    assert b"NOI DUNG MAT 4711" not in data and pdf[:200] not in data
    # The latest version is what a download reads: decrypted for a cleared approver.
    client = web.session_client("duyet", "totp")
    download = client.get(f"{API}/records/{rid}/original")
    assert download.status_code == 200 and download.data == pdf


@pytest.mark.parametrize("state", ["sealed", "destroyed"])
def test_a_sealed_or_destroyed_record_is_not_repackaged(web, state):
    rid, _ = ingest(web.aenv, "qd", **CORPUS["qd"])
    if state == "sealed":
        seal_record(web, rid)
    else:
        set_status(web, rid, "destroyed")
    result = web.aenv.invoke("records", "repackage", rid)
    assert result.exit_code == 3
    assert ("sealed under decision" if state == "sealed" else "destroyed") in result.stderr
    assert [v.version for v in _versions(web, rid)] == [1]
    assert not web.instance.store.exists(f"aip/{rid}/v0002.tar")
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        [entry] = db.scalars(select(AuditEntry).where(
            AuditEntry.action == "record.repackage")).all()
    assert entry.outcome == "refused" and entry.target == f"record:{rid}"


def test_a_user_may_not_repackage(web):
    from archive.errors import AccessDenied

    rid, _ = ingest(web.aenv, "qd", **CORPUS["qd"])
    web.add_user("duyet", "approver")
    from ingest.versions import repackage

    inst = web.instance
    with pytest.raises(AccessDenied, match="preservation action"):
        repackage(inst.settings, inst.catalog, inst.store, _principal(web, "duyet"), rid,
                  reason="x")
    assert [v.version for v in _versions(web, rid)] == [1]


class _BarrierStore:
    """The real store, with both repackagings made to reach ``put`` before either puts."""

    def __init__(self, store, barrier: threading.Barrier):
        self._store = store
        self._barrier = barrier

    def put(self, *args, **kwargs):
        self._barrier.wait(timeout=60)
        return self._store.put(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_concurrent_repackagings_never_overwrite(web):
    rid, _ = ingest(web.aenv, "qd", **CORPUS["qd"])
    barrier = threading.Barrier(2)
    outcomes: list = []

    def run():
        try:
            outcomes.append(_repackage(web, rid, store=_BarrierStore(web.instance.store,
                                                                     barrier)))
        except Refused as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done = [o for o in outcomes if not isinstance(o, Exception)]
    refused = [o for o in outcomes if isinstance(o, Refused)]
    assert len(done) == 1 and len(refused) == 1, outcomes
    assert "written by another repackaging" in refused[0].message
    assert "nothing was overwritten" in refused[0].message
    versions = _versions(web, rid)
    assert [v.version for v in versions] == [1, 2]
    # What is registered is what is stored: the winner's bytes.
    stored = _object(web, versions[1].storage_key)
    assert hashlib.sha256(stored).hexdigest() == versions[1].digests["sha256"] == \
        done[0].digests["sha256"]
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        outcomes_logged = sorted(e.outcome for e in db.scalars(select(AuditEntry).where(
            AuditEntry.action == "record.repackage")))
    assert outcomes_logged == ["ok", "refused"]


def test_a_version_key_already_taken_is_refused_cleanly(web):
    """An unregistered object under the next key (another repackaging in flight, or one
    that crashed before registering) is never overwritten."""
    rid, _ = ingest(web.aenv, "qd", **CORPUS["qd"])
    key = f"aip/{rid}/v0002.tar"
    web.instance.store.put(key, io.BytesIO(b"in flight"), size=9)
    result = web.aenv.invoke("records", "repackage", rid, "--json")
    assert result.exit_code == 3 and "nothing was overwritten" in result.stderr
    assert _object(web, key) == b"in flight"
    assert [v.version for v in _versions(web, rid)] == [1]


def test_cli_repackage(web):
    rid, _ = ingest(web.aenv, "qd", **CORPUS["qd"])
    first = web.aenv.json("records", "repackage", rid, "--reason", "lifecycle catch-up")
    second = web.aenv.json("records", "repackage", rid)
    assert (first["version"], second["version"]) == (2, 3)
    assert first["reason"] == "lifecycle catch-up"
    # Version 3's PREMIS carries version 2's repackaging event.
    members = _members(_object(web, second["storage_key"]))
    premis = etree.fromstring(members["data/metadata/preservation/premis.xml"])
    types = [e.findtext(f"{PREMIS}eventType") for e in premis.iter(f"{PREMIS}event")]
    assert types.count("repackaging") == 2
    assert web.aenv.invoke("records", "repackage",
                           "00000000-0000-4000-8000-000000000000").exit_code == 2
