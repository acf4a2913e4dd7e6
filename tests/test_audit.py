"""The tamper-evident audit log (R-AUDIT-1) on SQLite and PostgreSQL.

Tampering is done the way an intruder with database rights would: the append-only
triggers are dropped first, then rows are edited directly.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from archive.audit import (
    GENESIS_HASH,
    AuditChainBroken,
    append,
    checkpoint_key,
    compute_hash,
    load_checkpoints,
    verify,
    write_checkpoint,
)
from archive.db import Catalog
from archive.errors import NotInitialised, ObjectExists, ObjectNotFound
from archive.keys import (
    KeyExists,
    KeyUnreadable,
    generate_system_key,
    key_id,
    load_system_key,
    public_key_pem,
)
from archive.models import AuditEntry, AuditHead
from archive.principal import Principal
from archive.storage.base import ObjectInfo, PutResult

REPO = Path(__file__).resolve().parent.parent
ALICE = Principal("person", "001234567890", "Nguyễn Văn An")


class TickingClock:
    """Each call is one millisecond and a few microseconds later."""

    def __init__(self):
        self.at = datetime(2025, 3, 14, 8, 0, 0, 1, tzinfo=UTC)

    def now(self) -> datetime:
        self.at += timedelta(microseconds=1007)
        return self.at


class DictStore:
    """A dict-backed put-if-absent object store: enough for checkpoints."""

    name = "dict:"

    def __init__(self):
        self.objects: dict[str, bytes] = {}

    def put(self, key, stream, *, size=None, algorithms=("sha256",), sha256=None):
        if key in self.objects:
            raise ObjectExists(key)
        self.objects[key] = stream.read()
        return PutResult(key, len(self.objects[key]), {})

    def open(self, key, start=0, length=None):
        if key not in self.objects:
            raise ObjectNotFound(key)
        return io.BytesIO(self.objects[key])

    def exists(self, key):
        return key in self.objects

    def list(self, prefix=""):
        for key in sorted(self.objects):
            if key.startswith(prefix):
                yield ObjectInfo(key, len(self.objects[key]), datetime.now(UTC))


@pytest.fixture
def catalog(catalog_engine):
    return Catalog(str(catalog_engine.url), engine=catalog_engine)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def fill(catalog: Catalog, n: int, clock=None) -> None:
    clock = clock or TickingClock()
    for i in range(n):
        with catalog.unit_of_work() as s:
            append(s, ALICE if i % 2 else Principal.system("job:fixity"),
                   "record.read" if i % 3 else "record.ingest", f"record/{i:04d}",
                   outcome="denied" if i % 7 == 0 else "ok",
                   detail={"i": i, "lý do": "kiểm tra", "ratio": i / 3, "tags": ("a", "b"),
                           "nested": {"z": None, "a": [True, False]}},
                   client="127.0.0.1", clock=clock)


def check(catalog: Catalog, checkpoints=None):
    with catalog.unit_of_work(snapshot=True) as s:
        return verify(s, checkpoints, batch_size=7)  # small batches: cross boundaries


def tamper(catalog: Catalog, *statements: str, **params) -> None:
    """Drop the append-only guard and run raw SQL, as an intruder would."""
    with catalog.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_update"))
            conn.execute(text("DROP TRIGGER IF EXISTS audit_log_no_delete"))
        for statement in statements:
            conn.execute(text(statement), params)


def rehash_from(catalog: Catalog, start: int) -> None:
    """Recompute the chain from ``start`` and move the head: a consistent rewrite."""
    tamper(catalog)
    with catalog.unit_of_work() as s:
        prev = s.execute(select(AuditEntry.entry_hash).where(AuditEntry.seq == start - 1)
                         ).scalar() or GENESIS_HASH
        rows = s.execute(select(AuditEntry).where(AuditEntry.seq >= start)
                         .order_by(AuditEntry.seq)).scalars().all()
        for row in rows:
            row.prev_hash = prev
            row.entry_hash = compute_hash(prev, seq=row.seq, occurred_at=row.occurred_at,
                                          actor=row.actor, action=row.action,
                                          target=row.target, outcome=row.outcome,
                                          client=row.client, detail=row.detail)
            prev = row.entry_hash
        head = s.get(AuditHead, 1)
        last = s.execute(select(AuditEntry.seq).order_by(AuditEntry.seq.desc())).scalar()
        head.seq, head.entry_hash = last or 0, prev


# ---- appending and a clean chain ------------------------------------------------------


def test_append_and_verify_clean_chain(catalog):
    report = check(catalog)
    assert report.ok and report.entries_checked == 0 and report.head_seq == 0
    fill(catalog, 30)
    report = check(catalog)
    assert report.ok, report.problems
    assert (report.entries_checked, report.last_seq, report.head_seq) == (30, 30, 30)
    assert report.first_bad_seq is None
    # Honest about what a chain alone cannot show.
    assert any("cannot be detected" in w for w in report.warnings)
    with catalog.unit_of_work() as s:
        entry = s.get(AuditEntry, 2)
        assert entry.actor == "person:001234567890"
        assert entry.detail["tags"] == ["a", "b"]  # stored exactly as hashed
        assert entry.occurred_at.tzinfo == UTC and entry.occurred_at.microsecond != 0
        head = s.get(AuditHead, 1)
        assert (head.seq, head.entry_hash) == (30, s.get(AuditEntry, 30).entry_hash)


def test_append_rolls_back_with_its_transaction(catalog):
    fill(catalog, 3)
    with pytest.raises(ZeroDivisionError), catalog.unit_of_work() as s:
        append(s, ALICE, "record.read", "record/x")
        1 / 0  # noqa: B018
    assert check(catalog).last_seq == 3
    fill(catalog, 1)
    assert check(catalog).ok


def test_long_values_are_cut_to_their_columns(catalog):
    with catalog.unit_of_work() as s:
        entry = append(s, ALICE, "record.read", "x" * 2000, client="c" * 500)
    assert len(entry.target) == 500 and entry.target.endswith("…")
    assert check(catalog).ok


def test_application_code_cannot_update_or_delete(catalog):
    fill(catalog, 2)
    for statement in ("UPDATE audit_log SET actor = 'x' WHERE seq = 1",
                      "DELETE FROM audit_log WHERE seq = 2"):
        with pytest.raises(DBAPIError, match="append-only"), catalog.engine.begin() as conn:
            conn.execute(text(statement))
    assert check(catalog).ok


# ---- tampering ------------------------------------------------------------------------


@pytest.mark.parametrize(("bad", "change"), [
    (17, "UPDATE audit_log SET actor = 'person:999999999999' WHERE seq = 17"),
    (17, "UPDATE audit_log SET detail = '{\"i\": 0}' WHERE seq = 17"),
    (15, "UPDATE audit_log SET outcome = 'ok' WHERE seq = 15"),  # hide a denial
    (3, "UPDATE audit_log SET occurred_at = occurred_at + INTERVAL '1' SECOND "
        "WHERE seq = 3"),
], ids=["actor", "detail", "outcome", "time"])
def test_edited_entry_is_named(catalog, bad, change):
    fill(catalog, 30)
    if "INTERVAL" in change and catalog.engine.dialect.name == "sqlite":
        change = ("UPDATE audit_log SET occurred_at = '2025-03-14 08:00:01.000000' "
                  "WHERE seq = 3")
    tamper(catalog, change)
    report = check(catalog)
    assert not report.ok
    assert report.first_bad_seq == bad
    assert [p.message for p in report.problems] == [
        f"entry {bad} was altered (its content does not match its hash)"]


def test_deleted_entry_is_named(catalog):
    fill(catalog, 30)
    tamper(catalog, "DELETE FROM audit_log WHERE seq = 18")
    report = check(catalog)
    assert report.first_bad_seq == 18
    assert [p.message for p in report.problems] == ["entry 18 is missing (gap after 17)"]


def test_deleted_range_is_named(catalog):
    fill(catalog, 30)
    tamper(catalog, "DELETE FROM audit_log WHERE seq BETWEEN 5 AND 9")
    report = check(catalog)
    assert report.first_bad_seq == 5
    assert "entries 5-9 are missing (gap after 4)" in report.problems[0].message


def test_reordered_entries_are_detected(catalog):
    fill(catalog, 30)
    tamper(catalog, "UPDATE audit_log SET seq = -20 WHERE seq = 20",
           "UPDATE audit_log SET seq = 20 WHERE seq = 21",
           "UPDATE audit_log SET seq = 21 WHERE seq = -20")
    report = check(catalog)
    assert report.first_bad_seq == 20
    messages = [p.message for p in report.problems]
    assert messages[0].startswith("entries out of order at 20")
    assert "written as entry 21" in messages[0]


def test_forged_entry_with_a_wrong_hash(catalog):
    fill(catalog, 10)
    tamper(catalog, "INSERT INTO audit_log (seq, occurred_at, actor, action, target, outcome,"
                    " client, detail, prev_hash, entry_hash) VALUES (11, :at, 'person:x',"
                    " 'record.read', 'record/1', 'ok', '', '{}', :prev, :hash)",
           at=datetime(2025, 3, 14, 9, tzinfo=UTC), prev="1" * 64, hash="2" * 64)
    report = check(catalog)
    assert report.first_bad_seq == 11
    assert any("entry 11 was altered" in p.message for p in report.problems)
    assert any("head row disagrees with last entry" in p.message for p in report.problems)


def test_forged_entry_with_a_correct_hash_after_the_head(catalog):
    """Hashes need no secret, so an intruder can compute them: the head row catches
    an entry appended behind its back."""
    fill(catalog, 10)
    with catalog.unit_of_work() as s:
        head = s.get(AuditHead, 1)
        at = datetime(2025, 3, 14, 9, tzinfo=UTC)
        forged = AuditEntry(seq=11, occurred_at=at, actor="person:x", action="record.read",
                            target="record/1", outcome="ok", client="", detail={},
                            prev_hash=head.entry_hash,
                            entry_hash=compute_hash(head.entry_hash, seq=11, occurred_at=at,
                                                    actor="person:x", action="record.read",
                                                    target="record/1", outcome="ok",
                                                    client="", detail={}))
        s.add(forged)
    report = check(catalog)
    assert report.first_bad_seq == 11
    assert report.problems[0].message.startswith("head row disagrees with last entry")


def test_replaced_entry_with_a_recomputed_hash(catalog):
    fill(catalog, 20)
    tamper(catalog)
    with catalog.unit_of_work() as s:
        row = s.get(AuditEntry, 10)
        row.actor = "person:someone-else"
        row.entry_hash = compute_hash(row.prev_hash, seq=10, occurred_at=row.occurred_at,
                                      actor=row.actor, action=row.action, target=row.target,
                                      outcome=row.outcome, client=row.client,
                                      detail=row.detail)
    report = check(catalog)
    assert report.first_bad_seq == 10
    assert report.problems[0].message.startswith("entry 10 was altered or replaced")


def test_head_row_moved(catalog):
    fill(catalog, 10)
    with catalog.unit_of_work() as s:
        s.get(AuditHead, 1).seq = 12
    report = check(catalog)
    assert report.first_bad_seq == 11
    assert "head row disagrees with last entry" in report.problems[0].message


# ---- checkpoints ----------------------------------------------------------------------


def test_checkpoint_written_once_and_signed(catalog, key):
    store = DictStore()
    with catalog.unit_of_work(snapshot=True) as s:
        assert write_checkpoint(s, store, key) is None  # empty log
    fill(catalog, 5)
    with catalog.unit_of_work(snapshot=True) as s:
        cp = write_checkpoint(s, store, key, TickingClock())
    assert cp.new and cp.seq == 5 and cp.key == "audit/checkpoints/000000000005.json"
    assert cp.key_id == key_id(key) and cp.created_at.endswith("Z")
    with catalog.unit_of_work(snapshot=True) as s:
        again = write_checkpoint(s, store, key)
    assert not again.new and again.signature == cp.signature
    (loaded,) = load_checkpoints(store, key.public_key())
    assert loaded.signature_ok and loaded.entry_hash == cp.entry_hash
    report = check(catalog, [loaded])
    assert report.ok and report.latest_checkpoint_seq == 5 and report.warnings == []


def test_checkpoint_refuses_to_sign_a_tampered_segment(catalog, key):
    store = DictStore()
    fill(catalog, 10)
    with catalog.unit_of_work(snapshot=True) as s:
        assert write_checkpoint(s, store, key).seq == 10
    fill(catalog, 10)
    tamper(catalog, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 15")
    with catalog.unit_of_work(snapshot=True) as s, \
            pytest.raises(AuditChainBroken, match="entry 15"):
        write_checkpoint(s, store, key)
    assert [i.key for i in store.list("audit/")] == ["audit/checkpoints/000000000010.json"]


def test_checkpoint_refuses_when_an_older_checkpoint_was_rewritten(catalog, key):
    store = DictStore()
    fill(catalog, 10)
    with catalog.unit_of_work(snapshot=True) as s:
        write_checkpoint(s, store, key)
    fill(catalog, 3)
    tamper(catalog, "UPDATE audit_log SET target = 'x' WHERE seq = 4")
    rehash_from(catalog, 4)  # a consistent rewrite behind the checkpoint
    with catalog.unit_of_work(snapshot=True) as s, \
            pytest.raises(AuditChainBroken, match="no longer matches its signed checkpoint"):
        write_checkpoint(s, store, key)


def test_truncation_after_a_checkpoint_is_detected(catalog, key):
    store = DictStore()
    fill(catalog, 30)
    with catalog.unit_of_work(snapshot=True) as s:
        write_checkpoint(s, store, key)
    # Delete the newest entries and move the head back to look consistent.
    tamper(catalog, "DELETE FROM audit_log WHERE seq > 24")
    rehash_from(catalog, 25)
    report = check(catalog, load_checkpoints(store, key.public_key()))
    assert not report.ok
    assert report.first_bad_seq == 25
    (problem,) = report.problems
    assert problem.message.startswith("log truncated: checkpoint 30 signed at ")
    assert problem.message.endswith("but the log ends at 24")


def test_truncation_without_a_checkpoint_is_undetectable(catalog):
    """Be honest: with no checkpoint, dropping the tail and moving the head back
    leaves a valid-looking chain. verify says it cannot see this."""
    fill(catalog, 30)
    tamper(catalog, "DELETE FROM audit_log WHERE seq > 24")
    rehash_from(catalog, 25)
    report = check(catalog)
    assert report.ok and report.last_seq == 24
    assert report.warnings == [
        "no checkpoints: deleting the newest entries together with moving the head row "
        "back, or rewriting the whole chain, cannot be detected without them"]


def test_entries_after_the_latest_checkpoint_are_flagged_as_chain_only(catalog, key):
    store = DictStore()
    fill(catalog, 10)
    with catalog.unit_of_work(snapshot=True) as s:
        write_checkpoint(s, store, key)
    fill(catalog, 5)
    report = check(catalog, load_checkpoints(store, key.public_key()))
    assert report.ok
    assert report.warnings[0].startswith("entries 11-15 are newer than the latest checkpoint")


def test_rewritten_chain_is_detected_by_checkpoint(catalog, key):
    store = DictStore()
    fill(catalog, 20)
    with catalog.unit_of_work(snapshot=True) as s:
        write_checkpoint(s, store, key)
    tamper(catalog, "UPDATE audit_log SET actor = 'person:x' WHERE seq = 12")
    rehash_from(catalog, 12)
    assert check(catalog).ok  # the chain alone is consistent again...
    report = check(catalog, load_checkpoints(store, key.public_key()))
    assert not report.ok  # ...but it no longer matches the signed checkpoint
    assert report.first_bad_seq == 20
    assert report.problems[0].message.startswith("chain rewritten: checkpoint 20 signed at")
    assert "between entries 1 and 20" in report.problems[0].message


def test_checkpoint_with_a_bad_signature_is_a_problem(catalog, key):
    store = DictStore()
    fill(catalog, 8)
    with catalog.unit_of_work(snapshot=True) as s:
        cp = write_checkpoint(s, store, key)
    doc = json.loads(store.objects[cp.key])
    doc["created_at"] = "2020-01-01T00:00:00.000000Z"
    store.objects[cp.key] = json.dumps(doc).encode()
    store.objects[checkpoint_key(3)] = b"not json"
    other = Ed25519PrivateKey.generate()
    fill(catalog, 1)
    with catalog.unit_of_work(snapshot=True) as s:
        foreign = write_checkpoint(s, DictStore(), other)
    store.objects[checkpoint_key(9)] = foreign.document()

    checkpoints = load_checkpoints(store, key.public_key())
    assert [(c.seq, c.signature_ok) for c in checkpoints] == [(3, False), (8, False),
                                                              (9, False)]
    report = check(catalog, checkpoints)
    assert not report.ok and report.first_bad_seq is None  # no entry is shown bad
    messages = [p.message for p in report.problems]
    assert messages == [
        "checkpoint 3 is not a valid checkpoint document",
        "checkpoint 8 has a bad signature",
        f"checkpoint 9 was signed by key {key_id(other)}, not the system key {key_id(key)}",
    ]


# ---- concurrency ----------------------------------------------------------------------

WORKER = """
import sys, time
from archive.audit import append
from archive.db import Catalog
from archive.principal import Principal
import pathlib
url, name, count, gate = sys.argv[1], sys.argv[2], int(sys.argv[3]), pathlib.Path(sys.argv[4])
catalog = Catalog(url)
catalog.engine.connect().close()  # connected and imported: ready
(gate.parent / f"ready-{name}").touch()
while not gate.exists():  # start line: every worker starts appending at the same moment
    time.sleep(0.005)
began = time.time()
for i in range(count):
    with catalog.unit_of_work() as session:
        append(session, Principal.system(name), "test.concurrent", f"{name}/{i}",
               detail={"i": i})
print(began, time.time())
catalog.dispose()
"""


@pytest.mark.slow
def test_concurrent_writers_make_one_chain(catalog, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    gate = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, catalog.url, f"w{n}", "50",
                                 str(gate)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
               for n in range(4)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < 4:
        assert time.monotonic() < deadline, "workers did not get ready"
        assert all(w.poll() is None for w in workers), "a worker died before the start"
        time.sleep(0.02)
    gate.touch()
    windows = []
    for worker in workers:
        out, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err
        windows.append([float(t) for t in out.split()])
    # They really ran at the same time: every one began before the first one finished.
    assert max(b for b, _ in windows) < min(e for _, e in windows)
    report = check(catalog)
    assert report.ok, report.problems
    assert report.entries_checked == report.last_seq == report.head_seq == 200
    with catalog.unit_of_work(snapshot=True) as s:
        seqs = s.execute(select(AuditEntry.seq).order_by(AuditEntry.seq)).scalars().all()
        actors = s.execute(select(AuditEntry.actor)).scalars().all()
    assert seqs == list(range(1, 201))
    assert sorted(actors) == sorted(f"system:w{n}" for n in range(4) for _ in range(50))


# ---- the system key -------------------------------------------------------------------


def test_system_key_files(tmp_path):
    folder = tmp_path / "keys"
    with pytest.raises(NotInitialised, match="archive init"):
        load_system_key(folder)
    created = generate_system_key(folder)
    path = folder / "system-ed25519.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    loaded = load_system_key(folder)
    assert key_id(loaded) == key_id(created) and len(key_id(loaded)) == 16
    assert (folder / "system-ed25519.pub.pem").read_text() == public_key_pem(created)
    with pytest.raises(KeyExists):
        generate_system_key(folder)
    assert key_id(load_system_key(folder)) == key_id(created)  # not overwritten
    path.write_text("garbage")
    with pytest.raises(KeyUnreadable):
        load_system_key(folder)


# ---- the CLI --------------------------------------------------------------------------


def test_cli_verify_and_checkpoint(catalog, tmp_path):
    from click.testing import CliRunner

    from cli.main import cli

    data_dir = tmp_path / "data"
    generate_system_key(data_dir / "keys")
    (data_dir / "objects").mkdir(parents=True)
    (data_dir / "backup").mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env.update(ARCHIVE_DATABASE__URL=catalog.url, ARCHIVE_ARCHIVE__DATA_DIR=str(data_dir))
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(cli, ["audit", *args, "--json"], env=env,
                               catch_exceptions=False)
        return result.exit_code, json.loads(result.stdout), result

    code, data, _ = run("checkpoint")
    assert code == 0 and data["checkpoint"] is None and data["new"] is False
    fill(catalog, 12)
    code, data, _ = run("checkpoint")
    assert code == 0 and data["new"] and data["checkpoint"]["seq"] == 12
    code, data, _ = run("verify")
    assert code == 0 and data["ok"] and data["latest_checkpoint_seq"] == 12
    assert data["recorded_as"] == 13  # reads are audited, after verifying
    with catalog.unit_of_work() as s:
        entry = s.get(AuditEntry, 13)
        assert (entry.action, entry.outcome, entry.client) == ("audit.verify", "ok", "cli")

    tamper(catalog, "UPDATE audit_log SET target = 'record/other' WHERE seq = 7")
    code, data, result = run("verify")
    assert code == 1 and not data["ok"] and data["first_bad_seq"] == 7
    assert data["problems"][0]["message"] == \
        "entry 7 was altered (its content does not match its hash)"
    assert data["recorded_as"] == 14
    code, data, _ = run("checkpoint")  # refuses to sign a broken chain
    assert code == 1 and data["checkpoint"] is None

    human = runner.invoke(cli, ["audit", "verify"], env=env)
    assert human.exit_code == 1
    assert "first bad entry: 7" in human.stdout


def test_cli_verify_on_an_uninitialised_catalog(tmp_path):
    from click.testing import CliRunner

    from cli.main import cli

    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
    env["ARCHIVE_ARCHIVE__DATA_DIR"] = str(tmp_path / "nothing")
    result = CliRunner().invoke(cli, ["audit", "verify"], env=env)
    assert result.exit_code == 2
    assert "run `archive init`" in result.stderr
