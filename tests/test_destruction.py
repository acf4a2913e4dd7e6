"""Approved destruction (R-DESTROY-1) and the permanent register (R-DESTROY-2): approval by
another person, execution that leaves no byte of the record in either store and its
encrypted copies undecryptable, skips for seals and holds placed after approval, other
records untouched, the append-only register. Both databases (``web`` runs on SQLite +
local folder and PostgreSQL + SeaweedFS)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from archive import destruction, retention
from archive.errors import AccessDenied, DataKeyDestroyed, Refused
from archive.models import (
    AuditEntry,
    BackupCopy,
    DestructionEntry,
    DestructionItem,
    Event,
    PackageVersion,
    Record,
    StoredFile,
)
from archive.principal import Principal
from tests.test_api import API
from tests.test_retention import EXPIRED, RUNNING, principal, record
from tests.test_revocation import _rows, seal_record

APPROVAL = {"approving_body": "Ban Thường vụ Tỉnh ủy", "decision_number": "99-QĐ/TU",
            "decision_date": "2026-11-20",
            "legal_basis": "Điều 20 Quy định về giao dịch điện tử; Luật Lưu trữ"}
PDF = b"%PDF-1.4\n% rendition of a record to destroy\n%%EOF\n"


def _keys(store, record_id: str) -> list[str]:
    """Every key of the store that names the record."""
    return sorted(i.key for i in store.list("") if record_id in i.key)


def _sha(store, key: str) -> str:
    with store.open(key) as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def _backup(web) -> int:
    """Copy every object to the backup store (the backup job's own code)."""
    from preservation.backup import copy_objects

    counts = copy_objects(web.instance, Principal.system("job:backup"))
    assert counts["failed"] == 0, counts
    return counts["copied"]


def _rendition(web, record_id: str, archivist) -> str:
    from archive.renditions import register_rendition

    rid = str(uuid.uuid4())
    with web.db() as db:
        register_rendition(db, web.instance.store, archivist, record_id, rendition_id=rid,
                           pdf_bytes_or_stream=PDF, converter="Lưu trữ viên", page_count=1,
                           verify_url=f"https://example.invalid/verify/{rid}")
    return rid


def _ciphertext(web, record_id: str) -> tuple[bytes, dict, int]:
    with web.instance.catalog.unit_of_work(snapshot=True) as db:
        [f] = [f for f in db.scalars(select(StoredFile).join(PackageVersion)
                                     .where(PackageVersion.record_id == record_id))
               if f.encryption]
        key = f.package.storage_key
        meta, offset, size = dict(f.encryption), f.offset, f.size
    with web.instance.store.open(key, offset, size) as stream:
        return stream.read(), meta, size


def _decrypt(web, data: bytes, meta: dict, size: int) -> bytes:
    from archive.encryption import open_decrypting
    from archive.keystore import KeyVault

    vault = KeyVault.from_settings(web.instance.settings)
    with open_decrypting(io.BytesIO(data), meta, size, vault) as reader:
        return reader.read()


def test_approved_destruction_leaves_no_byte_and_keeps_the_register(web):
    aenv = web.aenv
    archivist = principal(web, "luutru", "archivist", clearance="mat")
    gone = record(web, "gone", **EXPIRED)
    secret = record(web, "secret", classification="mat", **EXPIRED)
    other = record(web, "other", **RUNNING)
    rendition = _rendition(web, gone, archivist)
    assert _backup(web) > 0
    backup = web.instance.backup_store
    assert _keys(backup, gone) and _keys(backup, secret)
    ciphertext, meta, size = _ciphertext(web, secret)
    assert _decrypt(web, ciphertext, meta, size).startswith(b"%PDF")  # readable before
    # a renewed archive timestamp of the record (R-TS-1) is evidence of it: destroyed too
    import io

    for store in (web.instance.store, backup):
        store.put(f"timestamps/{gone}/1.json", io.BytesIO(b'{"renewal": 1}'))
    other_digests = {k: _sha(web.instance.store, k) for k in _keys(web.instance.store, other)}
    other_backup = {k: _sha(backup, k) for k in _keys(backup, other)}

    listed = destruction.propose(web.instance.catalog, archivist, reason="Hết thời hạn")
    assert {i.record_id for i in listed.items} == {gone, secret}
    # not approved yet: execution refused (exit 3), audited
    result = aenv.invoke("destruction", "execute", listed.id)
    assert result.exit_code == 3, result.output
    assert "only an approved list" in result.stderr
    # the proposer may not approve (even with the approver's powers), nor an editor
    proposer_as_approver = Principal("user", "luutru", role="approver", clearance="mat",
                                     fonds=("PHONG-01",), method="totp",
                                     person=archivist.person)
    with pytest.raises(AccessDenied, match="proposer"):
        destruction.approve(web.instance.catalog, proposer_as_approver, listed.id, **APPROVAL)
    editor = principal(web, "luutru2", "archivist", clearance="mat")
    destruction.remove_item(web.instance.catalog, editor, listed.id, secret, note="xem lại")
    destruction.add_item(web.instance.catalog, editor, listed.id, secret, note="đủ điều kiện")
    editor_as_approver = Principal("user", "luutru2", role="approver", clearance="mat",
                                   fonds=("PHONG-01",), method="totp", person=editor.person)
    with pytest.raises(AccessDenied, match="edited"):
        destruction.approve(web.instance.catalog, editor_as_approver, listed.id, **APPROVAL)
    with pytest.raises(AccessDenied, match="person"):  # a system account never approves
        destruction.approve(web.instance.catalog, Principal.cli_operator(), listed.id,
                            **APPROVAL)
    denied = _rows(web, AuditEntry, AuditEntry.action == "destruction.approve",
                   AuditEntry.outcome == "denied")
    assert {e.actor for e in denied} >= {"user:luutru", "user:luutru2"}

    approver = principal(web, "duyet", "approver", clearance="mat")
    approved = destruction.approve(web.instance.catalog, approver, listed.id, **APPROVAL)
    assert approved.status == "approved" and approved.approver_person == approver.person
    assert approved.editors == ["user:luutru2"]

    # an archivist executes (the CLI operator could too)
    from preservation.destruction import execute

    report = execute(web.instance, archivist, listed.id)
    assert report.ok and report.destroyed == 2 and report.status == "executed", \
        report.to_dict()
    assert {i.status for i in _rows(web, DestructionItem)} == {"destroyed"}

    # no byte of either record remains in the primary or the backup store
    for rid in (gone, secret):
        assert _keys(web.instance.store, rid) == []
        assert _keys(backup, rid) == []
        assert list(web.instance.store.list(f"aip/{rid}/")) == []
        assert list(web.instance.store.list(f"renditions/{rid}/")) == []
        assert list(backup.list(f"aip/{rid}/")) == []
        assert list(web.instance.store.list(f"timestamps/{rid}/")) == []
        assert list(backup.list(f"timestamps/{rid}/")) == []
    assert {c.deleted_at is not None for c in _rows(
        web, BackupCopy, BackupCopy.record_id.in_([gone, secret]))} == {True}
    # the copy of the ciphertext taken before can no longer be decrypted
    with pytest.raises(DataKeyDestroyed):
        _decrypt(web, ciphertext, meta, size)
    # other records are untouched: same bytes, fixity check passes
    assert {k: _sha(web.instance.store, k) for k in _keys(web.instance.store, other)} == \
        other_digests
    assert {k: _sha(backup, k) for k in _keys(backup, other)} == other_backup
    fixity = aenv.invoke("fixity", "check", other)
    assert fixity.exit_code == 0, fixity.output
    assert _rows(web, Record, Record.id == other)[0].status == "active"

    # the records say destroyed: events, API, refused download, verification page
    assert {r.status for r in _rows(web, Record, Record.id.in_([gone, secret]))} == \
        {"destroyed"}
    [event] = _rows(web, Event, Event.record_id == secret, Event.event_type == "destruction")
    assert event.outcome == "success" and event.data["data_keys"] == [meta["dek_id"]]
    client = web.session_client("luutru")
    shown = client.get(f"{API}/records/{gone}")
    assert shown.status_code == 200 and shown.get_json()["status"] == "destroyed"
    assert client.get(f"{API}/records/{gone}/original").status_code == 403
    from archive.renditions import verification

    with web.db() as db:
        checked = verification(db, rendition)
    assert checked["status"] == "destroyed" and checked["destroyed_at"]

    # the register: JSON and CSV exports through the CLI, the classified summary withheld
    entries = json.loads(aenv.invoke("destruction", "register", "--format", "json").stdout)
    by_record = {e["record_id"]: e for e in entries}
    assert set(by_record) == {gone, secret}
    for entry in entries:
        assert entry["decision_number"] == "99-QĐ/TU"
        assert entry["approving_body"] == APPROVAL["approving_body"]
        assert entry["performed_by"] == "user:luutru" and entry["approved_by"] == "user:duyet"
        assert entry["tombstone"]["packages"][0]["digests"]["sha256"]
    assert by_record[gone]["tombstone"]["summary"]
    assert by_record[gone]["tombstone"]["renditions"][0]["id"] == rendition
    assert by_record[secret]["tombstone"]["summary"] is None
    assert by_record[secret]["tombstone"]["data_keys_shredded"] == [meta["dek_id"]]
    out = aenv.invoke("destruction", "register", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {r["record_id"] for r in rows} == {gone, secret}
    assert {r["decision_number"] for r in rows} == {"99-QĐ/TU"}
    found = aenv.json("destruction", "register", "--query", "gone")
    assert [e["record_id"] for e in found] == [gone]
    page = destruction.register_entries(web.instance.catalog, approver, query=secret)
    assert page.total == 1 and "number_withheld" not in page.entries[0].tombstone
    low = principal(web, "kiemtoan", "auditor")  # clearance normal: number masked
    page = destruction.register_entries(web.instance.catalog, low, query=secret)
    assert page.entries[0].tombstone["number_symbol"] == "(văn bản mật / classified)"
    with pytest.raises(AccessDenied):
        destruction.register_entries(web.instance.catalog, principal(web, "vanthu", "clerk"))
    # executing again is refused: the list is executed
    with pytest.raises(Refused, match="executed"):
        execute(web.instance, archivist, listed.id)


def test_a_seal_or_hold_placed_after_approval_skips_the_record(web):

    archivist = principal(web, "luutru", "archivist")
    sealed, held, fine = (record(web, n, **EXPIRED) for n in ("sealed", "held", "fine"))
    listed = destruction.propose(web.instance.catalog, archivist)
    approver = principal(web, "duyet", "approver")
    destruction.approve(web.instance.catalog, approver, listed.id, **APPROVAL)
    seal_record(web, sealed)
    retention.place_hold(web.instance.catalog, archivist, held, kind="legal",
                         reason="Tranh chấp")
    result = web.aenv.invoke("destruction", "execute", listed.id, "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    outcome = {i["record_id"]: i for i in report["items"]}
    assert outcome[fine]["status"] == "destroyed"
    assert outcome[sealed]["status"] == "skipped" and "sealed" in outcome[sealed]["reason"]
    assert outcome[held]["status"] == "skipped" and "hold" in outcome[held]["reason"]
    statuses = {r.id: r.status for r in _rows(web, Record)}
    assert statuses == {sealed: "active", held: "active", fine: "destroyed"}
    assert _keys(web.instance.store, sealed) and _keys(web.instance.store, held)
    assert _keys(web.instance.store, fine) == []
    assert report["status"] == "executed"
    assert [e.record_id for e in _rows(web, DestructionEntry)] == [fine]
    skips = _rows(web, AuditEntry, AuditEntry.action == "destruction.skip")
    assert {e.target for e in skips} == {f"record:{sealed}", f"record:{held}"}
    # skipped records are due again once free: a later proposal may list the held one
    with web.instance.catalog.unit_of_work() as session:
        assert [r.id for r in retention.due_records(session, web.clock.now().date())] == []


def test_the_register_is_append_only_in_the_database(web):
    from preservation.destruction import execute

    archivist = principal(web, "luutru", "archivist")
    record(web, "gone", **EXPIRED)
    listed = destruction.propose(web.instance.catalog, archivist)
    destruction.approve(web.instance.catalog, principal(web, "duyet", "approver"), listed.id,
                        **APPROVAL)
    assert execute(web.instance, Principal.cli_operator(), listed.id).ok
    [entry] = _rows(web, DestructionEntry)
    for statement in ("UPDATE destruction_register SET reason = 'sửa' WHERE id = :id",
                      "DELETE FROM destruction_register WHERE id = :id"):
        with pytest.raises(DBAPIError, match="append-only"), web.db() as db:
            db.execute(text(statement), {"id": entry.id})
    [again] = _rows(web, DestructionEntry)
    assert again.reason == entry.reason and again.tombstone == entry.tombstone


def _number(web, record_id: str) -> str:
    return _rows(web, Record, Record.id == record_id)[0].number_symbol


def test_a_list_shows_a_classified_number_only_to_a_cleared_reader(web):
    """R-CLASS-1 in the service (and so in the CLI): the items of a list give the number
    and date of a record above the reader's clearance to no one but cleared readers and
    the operator; a password-only login is not cleared."""
    from archive.users import get_user, principal_for

    plain = record(web, "plain", **EXPIRED)
    secret = record(web, "secret", classification="mat", **EXPIRED)
    number = _number(web, secret)
    archivist = principal(web, "luutru", "archivist", clearance="mat")
    listed = destruction.propose(web.instance.catalog, archivist)
    shown = {i.record_id: i for i in listed.items}
    assert shown[secret].number_symbol == number and not shown[secret].hidden

    auditor = principal(web, "kiemtoan", "auditor")  # may read lists, clearance normal
    with web.db() as db:
        weak = principal_for(get_user(db, "luutru"), "password")  # cleared, one factor
    for reader in (auditor, weak):
        seen = destruction.get_list(web.instance.catalog, reader, listed.id)
        items = {i.record_id: i for i in seen.items}
        assert items[secret].hidden and items[secret].number_symbol is None
        assert items[secret].doc_date is None and items[secret].classification == "mat"
        assert not items[plain].hidden and items[plain].number_symbol == _number(web, plain)
        assert number not in json.dumps(seen.to_dict(), ensure_ascii=False)
    operator = destruction.get_list(web.instance.catalog, Principal.cli_operator(), listed.id)
    assert {i.record_id: i.number_symbol for i in operator.items}[secret] == number

    # a review by an archivist cleared for normal only answers the masked list too
    other = principal(web, "luutru2", "archivist")
    edited = destruction.remove_item(web.instance.catalog, other, listed.id, plain,
                                     note="còn giá trị")
    assert number not in json.dumps(edited.to_dict(), ensure_ascii=False)
    assert {i.record_id: i.hidden for i in edited.items} == {plain: False, secret: True}

    # the CLI: the operator sees the number, a person (--as) sees what they may
    aenv = web.aenv
    as_operator = aenv.json("destruction", "show", listed.id)
    assert {i["record_id"]: i["number_symbol"] for i in as_operator["items"]}[secret] == number
    code = web.next_code(web.accounts["kiemtoan"])
    as_auditor = aenv.invoke("destruction", "show", listed.id, "--as", "kiemtoan",
                             "--code", code)
    assert as_auditor.exit_code == 0, as_auditor.output
    assert number not in as_auditor.stdout and "(classified: not shown)" in as_auditor.stdout
    assert secret in as_auditor.stdout
    code = web.next_code(web.accounts["kiemtoan"])
    data = aenv.json("destruction", "show", listed.id, "--as", "kiemtoan", "--code", code)
    assert {i["record_id"]: i["hidden"] for i in data["items"]} == {plain: False, secret: True}
    assert number not in json.dumps(data, ensure_ascii=False)
    refused = aenv.invoke("destruction", "show", listed.id, "--as", "kiemtoan", "--code",
                          "000000")
    assert refused.exit_code != 0 and number not in refused.stdout
    clerk = principal(web, "vanthu", "clerk")
    with pytest.raises(AccessDenied):
        destruction.get_list(web.instance.catalog, clerk, listed.id)


def test_the_register_is_searched_and_exported_only_through_what_the_reader_may_see(web):
    """R-CLASS-1: a search by a hidden number finds nothing for an uncleared reader (no
    oracle), by the record id it finds the masked entry; the exports mask the same."""
    from preservation.destruction import execute

    secret = record(web, "secret", classification="mat", **EXPIRED)
    number = _number(web, secret)
    archivist = principal(web, "luutru", "archivist", clearance="mat")
    listed = destruction.propose(web.instance.catalog, archivist)
    destruction.approve(web.instance.catalog, principal(web, "duyet", "approver",
                                                        clearance="mat"),
                        listed.id, **APPROVAL)
    assert execute(web.instance, archivist, listed.id).ok
    catalog = web.instance.catalog
    auditor = principal(web, "kiemtoan", "auditor")
    needle = number.split("-")[0]  # part of the number, as a user would type it

    assert destruction.register_entries(catalog, archivist, query=needle).total == 1
    assert destruction.register_entries(catalog, Principal.cli_operator(),
                                        query=needle).total == 1
    assert destruction.register_entries(catalog, auditor, query=needle).total == 0
    assert destruction.register_entries(catalog, auditor, query="secret").total == 0
    page = destruction.register_entries(catalog, auditor, query=secret[:13])
    assert page.total == 1 and page.entries[0].tombstone["number_withheld"] is True
    assert destruction.register_entries(catalog, auditor, query="99-QĐ").total == 1

    assert json.loads(destruction.register_export(catalog, auditor, "json",
                                                  query=needle)) == []
    exported = destruction.register_export(catalog, auditor, "json").decode()
    assert secret in exported and number not in exported
    rows = list(csv.DictReader(io.StringIO(
        destruction.register_export(catalog, auditor, "csv").decode("utf-8-sig"))))
    assert [(r["record_id"], r["number_symbol"], r["summary"]) for r in rows] == \
        [(secret, "(văn bản mật / classified)", "")]
    rows = list(csv.DictReader(io.StringIO(
        destruction.register_export(catalog, archivist, "csv").decode("utf-8-sig"))))
    assert [r["number_symbol"] for r in rows] == [number]
