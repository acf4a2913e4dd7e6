"""Sealing for inspection (R-SEAL-1, R-SEAL-2, R-SEAL-3) on a real archive: SQLite +
local folder and PostgreSQL + SeaweedFS (``archive_env``), the real CLI with a named
inspector's one-time code, the test PKI's TSA for the manifest timestamp, and a
SeaweedFS bucket with Object Lock for the legal holds.

What is shown: the signed, timestamped seal manifest lists every digest of the sealed
packages; only the sealing authority may unseal; unsealing re-reads every byte and
names a byte changed in storage while sealed; every refusal is in the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import tarfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select

from archive.errors import IntegrityError
from archive.keys import key_id, load_system_key
from archive.models import AuditEntry, Event, PackageVersion, Seal, SealRecord, StoredFile
from tests.accounts import WebArchive
from tests.conftest import ORG, ArchiveEnv, _base_env
from tests.test_api import ingest
from tests.test_fixity import _original, _raw_delete, _raw_rewrite, _read

AUTHORITY = "000.00.02.H41"  # the inspection committee that issues sealing decisions
AUTHORITY_NAME = "Ủy ban Kiểm tra Tỉnh ủy"
AUTHORITY_PERSON = "880000000001"  # an inspector of the committee itself


class Sealing:
    """A web archive with the people of a sealing: inspectors, an authority, readers."""

    def __init__(self, aenv: ArchiveEnv, *, env: dict | None = None):
        self.web = WebArchive(aenv, env=env)
        self.aenv = aenv
        assert aenv.invoke("agents", "add-org", AUTHORITY, AUTHORITY_NAME).exit_code == 0
        assert aenv.invoke("agents", "add-person", AUTHORITY_PERSON, "Lê Văn Kiểm",
                           "--org", AUTHORITY).exit_code == 0
        # The inspector who seals (a person of ORG, acting on the committee's decision),
        # another inspector outside the decision, and the committee's own inspector.
        self.sealer = self.web.add_user("thanh", "inspector", "mat")
        self.other_inspector = self.web.add_user("tra", "inspector", "mat")
        self.authority_inspector = self.web.add_user("kiem", "inspector", "mat",
                                                     person=AUTHORITY_PERSON)

    def close(self) -> None:
        self.web.close()

    def cli(self, *args: str, user: str = "thanh", expect: int | None = None):
        """Run ``archive ARGS --as USER --code <fresh code> --json``.

        The command runs on the web app's clock: one-time codes are never accepted twice,
        so each new code is of a later 30-second step (:meth:`WebArchive.next_code`).
        """
        from unittest import mock

        from archive.instance import ArchiveInstance
        from cli.context import AppContext

        clock = self.web.clock

        def instance(ctx):
            if ctx._instance is None:
                ctx._instance = ArchiveInstance(ctx.settings, clock=clock)
            return ctx._instance

        code = self.web.next_code(self.web.accounts[user])
        with mock.patch.object(AppContext, "instance", property(instance)):
            result = self.aenv.invoke(*args, "--as", user, "--code", code, "--json")
        if expect is not None:
            assert result.exit_code == expect, (result.exit_code, result.stdout,
                                                result.stderr)
        return result

    def seal(self, *record_ids: str, file_ref: str | None = None, user: str = "thanh",
             readers: tuple[str, ...] = (), expect: int = 0, reference: str = "05/QĐ-UBKT"):
        args = ["seal", *record_ids]
        if file_ref:
            args += ["--file-ref", file_ref]
        args += ["--reference", reference, "--date", "2026-03-02", "--authority", AUTHORITY,
                 "--scope", "Kiểm tra việc chấp hành quy chế lưu trữ năm 2025"]
        for reader in readers:
            args += ["--reader", reader]
        result = self.cli(*args, user=user, expect=expect)
        return json.loads(result.stdout) if result.stdout.strip() else None

    def unseal(self, seal_id: str, *, user: str = "thanh", expect: int = 0):
        result = self.cli("unseal", seal_id, "--reference", "09/QĐ-UBKT", user=user,
                          expect=expect)
        return json.loads(result.stdout)

    def rows(self, model, **where):
        with self.web.instance.catalog.unit_of_work(snapshot=True) as db:
            stmt = select(model)
            for name, value in where.items():
                stmt = stmt.where(getattr(model, name) == value)
            rows = list(db.scalars(stmt))
            db.expunge_all()
        return rows

    def events(self, record_id: str, event_type: str) -> list[Event]:
        return [e for e in self.rows(Event, record_id=record_id)
                if e.event_type == event_type]

    def audit(self, **where) -> list[AuditEntry]:
        return sorted(self.rows(AuditEntry, **where), key=lambda e: e.seq)


@pytest.fixture
def sealing(archive_env):
    s = Sealing(archive_env)
    yield s
    s.close()


@pytest.fixture
def local_sealing(local_archive):
    s = Sealing(local_archive)
    yield s
    s.close()


def _public(aenv) -> Ed25519PublicKey:
    return load_system_key(aenv.settings.keys_dir).public_key()


# ---- sealing writes a signed manifest of every digest --------------------------------


def test_seal_writes_a_signed_manifest_and_unseal_finds_nothing_changed(sealing):
    aenv = sealing.aenv
    sealed_id, _ = ingest(aenv, "sealed", file_ref="HS-A")
    other_id, other_bytes = ingest(aenv, "other", file_ref="HS-B")

    made = sealing.seal(sealed_id)
    assert made["status"] == "active" and made["reference"] == "05/QĐ-UBKT"
    assert made["authority"] == AUTHORITY and made["authority_name"] == AUTHORITY_NAME
    assert [r["id"] for r in made["records"]] == [sealed_id]
    assert made["sealed_by"] == "user:thanh" and made["sealer_person"] == sealing.sealer.person
    assert made["legal_hold"] is False  # no Object Lock on these stores

    # The manifest: its SHA-256 is in the catalog, it lists every digest the catalog has.
    store = sealing.web.instance.store
    data = _read(aenv, made["manifest_key"])
    assert hashlib.sha256(data).hexdigest() == made["manifest_sha256"]
    manifest = json.loads(data)
    assert manifest["seal_id"] == made["id"]
    assert manifest["decision"]["reference"] == "05/QĐ-UBKT"
    assert manifest["decision"]["date"] == "2026-03-02"
    assert manifest["decision"]["authority"]["identifier"] == AUTHORITY
    assert manifest["sealer"] == {"principal": "user:thanh", "person": sealing.sealer.person,
                                  "name": "Người dùng thanh"}
    [entry] = manifest["records"]
    [package] = sealing.rows(PackageVersion, record_id=sealed_id)
    files = sealing.rows(StoredFile, package_id=package.id)
    assert entry["id"] == sealed_id and entry["package"]["storage_key"] == package.storage_key
    assert entry["package"]["digests"] == package.digests and set(package.digests) == {
        "sha256", "sha512"}
    assert {f["path"]: f["digests"] for f in entry["files"]} == \
        {f.path: f.digests for f in files}
    assert any(f["role"] == "original" for f in entry["files"])

    # Signed with the archive's Ed25519 system key over the exact bytes.
    sig = json.loads(_read(aenv, f"seals/{made['id']}/manifest.sig"))
    public = _public(aenv)
    assert sig["key_id"] == key_id(public) and sig["algorithm"] == "Ed25519"
    public.verify(base64.b64decode(sig["signature"]), data)  # raises if it does not match
    assert not store.exists(f"seals/{made['id']}/manifest.tsr")  # no TSA configured here

    # One transaction: seal rows, a sealing event, one audit entry.
    [row] = sealing.rows(Seal, id=made["id"])
    assert row.manifest_sha256 == made["manifest_sha256"] and row.status == "active"
    assert [r.record_id for r in sealing.rows(SealRecord, seal_id=row.id)] == [sealed_id]
    [event] = sealing.events(sealed_id, "sealing")
    assert event.outcome == "success" and event.agent == "user:thanh"
    assert "05/QĐ-UBKT" in event.detail and event.data["seal_id"] == row.id
    assert sealing.events(other_id, "sealing") == []
    [entry_row] = sealing.audit(action="record.seal", outcome="ok")
    assert entry_row.target == f"seal:{row.id}" and entry_row.actor == "user:thanh"
    assert entry_row.detail["records"] == [sealed_id] and entry_row.client == "cli"

    # The other record is untouched: the operator still retrieves it.
    out = aenv.tmp_path / "other.pdf"
    assert aenv.invoke("records", "get", other_id, "-o", str(out)).exit_code == 0
    assert out.read_bytes() == other_bytes

    report = sealing.unseal(row.id)
    assert report["ok"] is True and report["differences"] == []
    assert report["checks"]["manifest_sha256"] is True and report["checks"]["signature"]
    assert report["records_checked"] == 1 and report["lift_reference"] == "09/QĐ-UBKT"
    [row] = sealing.rows(Seal, id=row.id)
    assert row.status == "lifted" and row.lifted_by == "user:thanh"
    assert row.lift_reference == "09/QĐ-UBKT" and row.lift_report["ok"] is True
    [event] = sealing.events(sealed_id, "unsealing")
    assert event.outcome == "success" and "unchanged since sealing" in event.detail
    [lifted] = sealing.audit(action="record.unseal", outcome="ok")
    assert lifted.target == f"seal:{row.id}"
    # The next AIP version carries the sealing and unsealing events in its PREMIS.
    assert [v["version"] for v in report["versions"]] == [2] and report["warnings"] == []
    with tarfile.open(fileobj=io.BytesIO(_read(aenv, f"aip/{sealed_id}/v0002.tar"))) as tar:
        premis = next(tar.extractfile(m).read() for m in tar.getmembers()
                      if m.name.endswith("preservation/premis.xml"))
    assert b">sealing<" in premis and b">unsealing<" in premis
    # Lifted: the operator reads the record again.
    out = aenv.tmp_path / "sealed-again.pdf"
    assert aenv.invoke("records", "get", sealed_id, "-o", str(out)).exit_code == 0
    shown = aenv.json("seals", "show", row.id)
    assert shown["status"] == "lifted" and shown["lift_report"]["ok"] is True


def test_a_whole_file_is_sealed_and_nothing_else(sealing):
    aenv = sealing.aenv
    in_file = [ingest(aenv, f"hs{i}", file_ref="HS-2025-09")[0] for i in range(3)]
    outside, _ = ingest(aenv, "outside", file_ref="HS-2025-10")
    made = sealing.seal(file_ref="HS-2025-09")
    assert sorted(r["id"] for r in made["records"]) == sorted(in_file)
    manifest = json.loads(_read(aenv, made["manifest_key"]))
    assert sorted(r["id"] for r in manifest["records"]) == sorted(in_file)
    assert all(r["file_ref"] == "HS-2025-09" for r in manifest["records"])
    assert sealing.events(outside, "sealing") == []
    for rid in in_file:
        assert aenv.invoke("records", "get", rid, "-o", str(aenv.tmp_path / rid)
                           ).exit_code == 3
    assert aenv.invoke("records", "get", outside, "-o", str(aenv.tmp_path / "o")
                       ).exit_code == 0
    listed = aenv.json("seals", "list", "--status", "active")
    assert [s["id"] for s in listed["seals"]] == [made["id"]] and listed["total"] == 1
    assert aenv.json("seals", "list", "--record", outside)["total"] == 0


# ---- a byte changed while sealed is reported at unseal ------------------------------


def test_a_byte_changed_in_storage_while_sealed_is_reported_at_unseal(sealing):
    aenv = sealing.aenv
    damaged, _ = ingest(aenv, "damaged", file_ref="HS-X")
    intact, _ = ingest(aenv, "intact", file_ref="HS-X")
    made = sealing.seal(file_ref="HS-X")
    key = f"aip/{damaged}/v0001.tar"
    data = bytearray(_read(aenv, key))
    path, offset = _original(aenv, damaged)
    data[offset + 5] ^= 0x01
    _raw_rewrite(aenv, key, bytes(data))

    result = sealing.cli("unseal", made["id"], "--reference", "09/QĐ-UBKT", expect=1)
    report = json.loads(result.stdout)
    assert report["ok"] is False
    codes = {(d["code"], d["record_id"]) for d in report["differences"]}
    assert ("object-changed", damaged) in codes and ("file-changed", damaged) in codes
    assert not any(d["record_id"] == intact for d in report["differences"])
    [named] = [d for d in report["differences"] if d["code"] == "file-changed"]
    assert named["path"] == path and "content changed" in named["message"]
    assert "DIFFERENCES" not in result.stdout  # JSON only on stdout with --json

    # The seal is lifted anyway; the damaged record carries a failed unsealing event and
    # a failed fixity check (an alert); the intact one a clean unsealing.
    [row] = sealing.rows(Seal, id=made["id"])
    assert row.status == "lifted" and row.lift_report["ok"] is False
    [event] = sealing.events(damaged, "unsealing")
    assert event.outcome == "failure" and path in event.detail
    alerts = [e for e in sealing.events(damaged, "fixity check") if e.outcome == "failure"]
    assert alerts and alerts[-1].data["alert"] is True and alerts[-1].data["seal_id"] == row.id
    [clean] = sealing.events(intact, "unsealing")
    assert clean.outcome == "success"
    # The intact record gets its next AIP version; the damaged one cannot be copied.
    assert [v["record_id"] for v in report["versions"]] == [intact]
    assert len(report["warnings"]) == 1 and damaged in report["warnings"][0]
    [entry] = sealing.audit(action="record.unseal")
    assert entry.outcome == "failed" and entry.detail["differences"] == len(
        report["differences"])
    # The CLI prints the differences prominently without --json.
    shown = aenv.invoke("seals", "show", row.id)
    assert "DIFFERENCES FOUND" in shown.stdout and path in shown.stdout


def test_a_missing_object_and_a_changed_manifest_are_reported(sealing):
    aenv = sealing.aenv
    rid, _ = ingest(aenv, "gone")
    made = sealing.seal(rid)
    manifest = json.loads(_read(aenv, made["manifest_key"]))
    manifest["records"][0]["package"]["digests"]["sha256"] = "0" * 64  # forged entry
    _raw_rewrite(aenv, made["manifest_key"], json.dumps(manifest).encode())
    _raw_delete(aenv, f"aip/{rid}/v0001.tar")

    report = sealing.unseal(made["id"], expect=1)
    codes = {d["code"] for d in report["differences"]}
    assert {"manifest-changed", "object-missing", "signature"} <= codes
    assert report["checks"]["manifest_sha256"] is False
    assert report["checks"]["signature"] is False  # the signature covers the old bytes


# ---- refusals -----------------------------------------------------------------------


def test_only_the_sealing_authority_unseals(sealing):
    aenv = sealing.aenv
    first, _ = ingest(aenv, "first")
    second, _ = ingest(aenv, "second")
    made = sealing.seal(first)

    # An inspector outside the decision: refused, exit 3, audited with the reason.
    refused = sealing.cli("unseal", made["id"], "--reference", "X", user="tra", expect=3)
    assert "sealing authority" in refused.stderr
    [denied] = sealing.audit(action="record.unseal", outcome="denied")
    assert denied.actor == "user:tra" and denied.target == f"record:{first}"
    assert "05/QĐ-UBKT" in denied.detail["reason"]
    assert sealing.rows(Seal, id=made["id"])[0].status == "active"
    assert sealing.events(first, "unsealing") == []

    # A person of the issuing committee may unseal what another inspector sealed.
    report = sealing.unseal(made["id"], user="kiem")
    assert report["ok"] is True and report["lifted_by"] == "user:kiem"
    # Lifted once: lifting again is refused and audited.
    again = sealing.cli("unseal", made["id"], "--reference", "Y", expect=3)
    assert "not active" in again.stderr

    # The committee's inspector seals; the inspector of ORG who did not seal may not lift.
    second_seal = sealing.seal(second, user="kiem", reference="06/QĐ-UBKT")
    sealing.cli("unseal", second_seal["id"], "--reference", "Z", user="thanh", expect=3)
    assert sealing.unseal(second_seal["id"], user="kiem")["ok"] is True


def test_sealing_refusals_are_audited(sealing):
    aenv = sealing.aenv
    web = sealing.web
    rid, _ = ingest(aenv, "refusals")
    web.add_user("van", "clerk")
    # A clerk may not seal (role); refused before anything is written.
    out = sealing.seal(rid, user="van", expect=3)
    assert out["reason"].startswith("the role clerk does not allow record.seal")
    assert sealing.rows(Seal) == []
    assert not list(web.instance.store.list("seals/"))
    [denied] = sealing.audit(action="record.seal", outcome="denied")
    assert denied.actor == "user:van" and denied.target == f"record:{rid}"

    # Bad input: exit 2, nothing sealed.
    bad = sealing.cli("seal", rid, "--reference", "1", "--date", "2026-03-02", "--authority",
                      "000.99.99.H41", "--scope", "x", expect=2)
    assert "not a registered organisation" in bad.stderr
    bad = sealing.cli("seal", rid, "--reference", "1", "--date", "2026-03-02", "--authority",
                      AUTHORITY, "--scope", "x", "--reader", "123456789012", expect=2)
    assert "not registered persons: 123456789012" in bad.stderr
    bad = sealing.cli("seal", rid, "--file-ref", "HS-1", "--reference", "1", "--date",
                      "2026-03-02", "--authority", AUTHORITY, "--scope", "x", expect=2)
    assert "not both" in bad.stderr
    bad = sealing.cli("seal", rid, "--reference", " ", "--date", "2026-03-02",
                      "--authority", AUTHORITY, "--scope", "x", expect=2)
    assert "reference: required" in bad.stderr
    unknown = "00000000-0000-4000-8000-000000000000"
    sealing.seal(unknown, expect=2)
    [missing] = sealing.audit(action="record.seal", outcome="not_found")
    assert missing.target == f"record:{unknown}"
    sealing.seal(file_ref="HS-NONE", expect=2)
    assert sealing.audit(action="record.seal", outcome="not_found")[-1].target == \
        "file:HS-NONE"
    # A wrong one-time code: not authenticated, nothing sealed.
    wrong = aenv.invoke("seal", rid, "--reference", "1", "--date", "2026-03-02",
                        "--authority", AUTHORITY, "--scope", "x", "--as", "thanh",
                        "--code", "000000")
    assert wrong.exit_code == 3 and sealing.rows(Seal) == []

    made = sealing.seal(rid)
    # Already sealed: a second seal is refused with the first decision's reference.
    again = sealing.seal(rid, reference="07/QĐ-UBKT", expect=3)
    assert "already sealed under decision 05/QĐ-UBKT" in again["reason"]
    assert len(sealing.rows(Seal)) == 1
    assert sealing.audit(action="record.seal", outcome="denied")[-1].actor == "user:thanh"
    # An unknown seal id: not found, audited.
    sealing.cli("unseal", "no-such-seal", "--reference", "X", expect=2)
    assert sealing.audit(action="record.unseal", outcome="not_found")[-1].target == \
        "seal:no-such-seal"
    assert made["status"] == "active"


# ---- timestamp authority and legal hold --------------------------------------------


def test_the_manifest_is_timestamped_by_the_tsa_and_checked_at_unseal(local_archive, pki):
    env = {"ARCHIVE_SIGNATURES__TRUST_ROOTS": json.dumps([str(pki.trust_roots_path)]),
           "ARCHIVE_SIGNATURES__TSA_URL": pki.tsa_url}
    sealing = Sealing(local_archive, env=env)
    try:
        aenv = sealing.aenv
        rid, _ = ingest(aenv, "stamped")
        made = sealing.seal(rid)
        token = _read(aenv, f"seals/{made['id']}/manifest.tsr")
        data = _read(aenv, made["manifest_key"])
        from ingest.sealing import SealTimestamps

        with SealTimestamps(aenv.settings) as stamps:
            info = stamps.check(token, data)  # against the test PKI's roots, offline
            with pytest.raises(IntegrityError):
                stamps.check(token, data + b" ")
        assert info["trusted"] is True
        [event] = sealing.events(rid, "sealing")
        assert event.data["timestamp"]["serial"] == info["serial"]
        assert event.data["timestamp"]["trusted"] is True

        report = sealing.unseal(made["id"])
        assert report["ok"] is True
        assert report["checks"]["timestamp"]["verified"] is True
        assert report["checks"]["timestamp"]["serial"] == info["serial"]

        # A second seal whose token is deleted behind the archive's back: reported.
        made = sealing.seal(rid, reference="08/QĐ-UBKT")
        _raw_delete(aenv, f"seals/{made['id']}/manifest.tsr")
        report = sealing.unseal(made["id"], expect=1)
        assert [d["code"] for d in report["differences"]] == ["timestamp"]
        assert "missing" in report["differences"][0]["message"]
    finally:
        sealing.close()


@pytest.fixture
def worm_sealing(seaweed, pg_url, tmp_path):
    env = _base_env(tmp_path)
    env.update({
        "ARCHIVE_DATABASE__URL": pg_url,
        "ARCHIVE_STORAGE__BACKEND": "s3",
        "ARCHIVE_STORAGE__S3_ENDPOINT": seaweed.endpoint,
        "ARCHIVE_STORAGE__S3_BUCKET": f"seal-{secrets.token_hex(4)}",
        "ARCHIVE_STORAGE__S3_ACCESS_KEY": seaweed.access_key,
        "ARCHIVE_STORAGE__S3_SECRET_KEY": seaweed.secret_key,
        "ARCHIVE_STORAGE__S3_RETENTION_DAYS": "0",
    })
    aenv = ArchiveEnv("worm", env, tmp_path)
    created = aenv.invoke("init", "--create-bucket", "--object-lock")
    assert created.exit_code == 0, created.output
    assert aenv.invoke("agents", "add-org", ORG, "Văn phòng").exit_code == 0
    s = Sealing(aenv)
    yield s
    s.close()
    aenv.close()


def test_legal_hold_on_a_bucket_with_object_lock(worm_sealing):
    from archive.errors import Refused

    sealing = worm_sealing
    aenv = sealing.aenv
    rid, _ = ingest(aenv, "held")
    store = sealing.web.instance.store
    assert store.object_lock_enabled()
    made = sealing.seal(rid)
    assert made["legal_hold"] is True
    held = [made["manifest_key"], f"seals/{made['id']}/manifest.sig", f"aip/{rid}/v0001.tar"]
    for key in held:
        assert store.legal_hold(key) is True, key
    with pytest.raises(Refused, match="legal hold"):
        store.delete(made["manifest_key"])
    with pytest.raises(Refused, match="legal hold"):
        store.delete(f"aip/{rid}/v0001.tar")
    [event] = sealing.events(rid, "sealing")
    assert sorted(event.data["legal_hold"]) == sorted(held)

    report = sealing.unseal(made["id"])
    assert report["ok"] is True and sorted(report["holds_released"]) == sorted(held)
    for key in held:
        assert store.legal_hold(key) is False, key


def test_legal_hold_setting_off(worm_sealing):
    sealing = worm_sealing
    sealing.aenv.env["ARCHIVE_SEALING__LEGAL_HOLD"] = "false"
    rid, _ = ingest(sealing.aenv, "not-held")
    made = sealing.seal(rid)
    assert made["legal_hold"] is False
    assert sealing.web.instance.store.legal_hold(made["manifest_key"]) is False


# ---- who sees seals -----------------------------------------------------------------


def test_seal_listing_and_details_follow_the_decision(local_sealing):
    from archive.errors import AccessDenied
    from archive.sealing import get_seal, list_seals
    from archive.users import get_user, principal_for

    sealing = local_sealing
    web = sealing.web
    rid, _ = ingest(sealing.aenv, "listed")
    reader = web.add_user("doc", "clerk")
    web.add_user("khac", "clerk")
    web.add_user("kt", "auditor", "toi-mat")
    made = sealing.seal(rid, readers=(reader.person,))

    def principal(username):
        with web.db() as db:
            return principal_for(get_user(db, username), "totp")

    people = {name: principal(name) for name in ("thanh", "kt", "doc", "khac")}
    for username in ("thanh", "kt", "doc"):  # inspector, auditor, reader of the decision
        with web.db() as db:
            total, rows = list_seals(db, people[username])
            assert [s.id for s in rows] == [made["id"]] and total == 1, username
            assert get_seal(db, people[username], made["id"]).reference == "05/QĐ-UBKT"
    with web.db() as db:
        assert list_seals(db, people["khac"]) == (0, [])
    with pytest.raises(AccessDenied, match="readers named"), web.db() as db:
        get_seal(db, people["khac"], made["id"])
    [denied] = sealing.audit(action="seal.view", outcome="denied")
    assert denied.actor == "user:khac" and denied.target == f"seal:{made['id']}"
    assert len(sealing.audit(action="seal.view", outcome="ok")) == 3
    assert len(sealing.audit(action="seals.list", outcome="ok")) == 4
