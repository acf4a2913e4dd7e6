"""Retention (R-DESTROY-1): extensions, holds, what is due, proposals and the scheduled
job that proposes and never destroys. Every test runs on SQLite + a local folder and on
PostgreSQL + SeaweedFS (``web`` is parametrised over ``archive_env``)."""

from __future__ import annotations

import socket
from datetime import date

import pyotp
import pytest

from archive import destruction, retention
from archive.errors import AccessDenied, InputError, Refused
from archive.models import (
    AuditEntry,
    DestructionItem,
    DestructionList,
    Event,
    Record,
    RecordHold,
    RetentionExtension,
)
from tests.test_api import ingest
from tests.test_revocation import _rows, seal_record, set_status

EXPIRED = {"retention_rule": "5y", "date": "2015-03-14"}  # kept until 2020-03-14
RUNNING = {"retention_rule": "5y", "date": "2024-06-01"}  # kept until 2029-06-01
PERMANENT = {"retention_rule": "vv", "date": "2001-01-01"}


def principal(web, username: str, role: str | None = None, **kwargs):
    """The strong-login principal of ``username`` (made with ``role`` if new)."""
    from archive.users import get_user, principal_for

    if username not in web.accounts:
        web.add_user(username, role, **kwargs)
    with web.db() as db:
        return principal_for(get_user(db, username), "totp")


def record(web, name: str, **meta) -> str:
    return ingest(web.aenv, name, number_symbol=f"{len(name)}{name}-QĐ/TU", **meta)[0]


def audit_actions(web, target: str) -> list[tuple[str, str]]:
    return [(e.action, e.outcome) for e in _rows(web, AuditEntry, AuditEntry.target == target,
                                                 order=AuditEntry.seq)]


# ---- what is due ------------------------------------------------------------------------


def test_proposal_lists_only_expired_records_never_sealed_held_permanent_or_listed(web):
    due = record(web, "due", **EXPIRED)
    revoked = record(web, "revoked", **EXPIRED)
    set_status(web, revoked, "revoked")  # kept for its retention period only (Art. 19.4)
    sealed = record(web, "sealed", **EXPIRED)
    seal_record(web, sealed)
    held = record(web, "held", **EXPIRED)
    running = record(web, "running", **RUNNING)
    permanent = record(web, "permanent", **PERMANENT)
    gone = record(web, "gone", **EXPIRED)
    set_status(web, gone, "destroyed")
    archivist = principal(web, "luutru", "archivist")
    catalog = web.instance.catalog
    retention.place_hold(catalog, archivist, held, kind="legal", reason="vụ án 12/2026",
                         reference="CV 3/VKS")

    with catalog.unit_of_work() as session:
        found = [r.id for r in retention.due_records(session, date(2026, 1, 1))]
        assert set(found) == {due, revoked}
        # the record's own expiry day is not yet past it
        assert retention.due_records(session, date(2020, 3, 14)) == []
        assert retention.due_records(session, date(2026, 1, 1), limit=1)[0].id in found

    listed = destruction.propose(catalog, archivist, reason="hết hạn")
    assert listed.status == "proposed" and listed.proposed_by == "user:luutru"
    assert listed.proposer_person == web.accounts["luutru"].person
    assert {i.record_id for i in listed.items} == {due, revoked}
    assert listed.counts == {"listed": 2}
    assert {sealed, held, running, permanent, gone}.isdisjoint(
        i.record_id for i in listed.items)
    # already on an open list: a second proposal finds nothing and makes no list
    assert destruction.propose(catalog, archivist) is None
    assert len(_rows(web, DestructionList)) == 1
    # nothing was destroyed by proposing
    assert {r.status for r in _rows(web, Record, Record.id.in_([due, revoked]))} == \
        {"active", "revoked"}
    # proposing given records: each must be due
    with pytest.raises(Refused, match="not due"):
        destruction.propose(catalog, archivist, record_ids=[running])
    with pytest.raises(Refused, match="sealed"):
        destruction.propose(catalog, archivist, record_ids=[sealed])
    # cancelled: the records may be proposed again
    destruction.cancel(catalog, archivist, listed.id, reason="đề xuất lại")
    again = destruction.propose(catalog, archivist, record_ids=[due])
    assert [i.record_id for i in again.items] == [due]
    assert ("destruction.propose", "refused") in audit_actions(web, f"record:{running}")


def test_a_clerk_or_a_password_login_may_not_propose(web):
    record(web, "due", **EXPIRED)
    clerk = principal(web, "vanthu", "clerk")
    with pytest.raises(AccessDenied):
        destruction.propose(web.instance.catalog, clerk)
    assert ("destruction.propose", "denied") in [
        (e.action, e.outcome) for e in _rows(web, AuditEntry, AuditEntry.actor == "user:vanthu")]
    from archive.users import get_user, principal_for

    principal(web, "luutru", "archivist")
    with web.db() as db:
        weak = principal_for(get_user(db, "luutru"), "password")
    with pytest.raises(AccessDenied, match="password-only"):
        destruction.propose(web.instance.catalog, weak)
    assert _rows(web, DestructionList) == []


# ---- extensions -----------------------------------------------------------------------------


def test_an_extension_moves_a_record_out_and_is_never_a_shortening(web):
    rid = record(web, "due", **EXPIRED)
    archivist = principal(web, "luutru", "archivist")
    catalog = web.instance.catalog
    ext = retention.extend_retention(catalog, archivist, rid, until=date(2035, 12, 31),
                                     reason="Giá trị lịch sử", decision_ref="45-QĐ/VPTU")
    assert ext.previous_until == date(2020, 3, 14) and ext.new_until == date(2035, 12, 31)
    assert ext.to_dict()["permanent"] is False
    [row] = _rows(web, Record, Record.id == rid)
    assert row.retention_until == date(2035, 12, 31)
    with catalog.unit_of_work() as session:
        assert retention.due_records(session, date(2030, 1, 1)) == []
    [event] = _rows(web, Event, Event.record_id == rid, Event.event_type == "retention extension")
    assert event.data["decision_ref"] == "45-QĐ/VPTU" and event.agent == "user:luutru"
    assert ("retention.extend", "ok") in audit_actions(web, f"record:{rid}")

    for shorter in (date(2030, 1, 1), date(2035, 12, 31)):  # earlier, or the same date
        with pytest.raises(Refused, match="only be extended"):
            retention.extend_retention(catalog, archivist, rid, until=shorter, reason="x",
                                       decision_ref="1")
    assert ("retention.extend", "refused") in audit_actions(web, f"record:{rid}")
    forever = retention.extend_retention(catalog, archivist, rid, until="permanent",
                                         reason="Vĩnh viễn", decision_ref="46-QĐ/VPTU")
    assert forever.new_until is None and forever.to_dict()["permanent"] is True
    assert _rows(web, Record, Record.id == rid)[0].retention_until is None
    with pytest.raises(Refused, match="permanently"):
        retention.extend_retention(catalog, archivist, rid, until=date(2099, 1, 1),
                                   reason="x", decision_ref="2")
    assert len(_rows(web, RetentionExtension, RetentionExtension.record_id == rid)) == 2
    with pytest.raises(InputError):
        retention.extend_retention(catalog, archivist, rid, until="mai", reason="x",
                                   decision_ref="3")
    with pytest.raises(InputError, match="reason"):
        retention.extend_retention(catalog, archivist, rid, until=None, reason=" ",
                                   decision_ref="3")
    approver = principal(web, "duyet", "approver")
    with pytest.raises(AccessDenied):
        retention.extend_retention(catalog, approver, rid, until=None, reason="x",
                                   decision_ref="4")


# ---- holds ------------------------------------------------------------------------------------


def test_a_hold_stops_proposals_until_released_by_a_decision(web):
    rid = record(web, "due", **EXPIRED)
    inspector = principal(web, "thanhtra", "inspector")
    catalog = web.instance.catalog
    hold = retention.place_hold(catalog, inspector, rid, kind="revocation-inquiry",
                                reason="Đang xác minh hiệu lực", reference="TB 9/UBKT")
    assert hold.active and hold.placed_by == "user:thanhtra"
    with catalog.unit_of_work() as session:
        assert retention.due_records(session, date(2026, 1, 1)) == []
    with pytest.raises(InputError, match="kind"):
        retention.place_hold(catalog, inspector, rid, kind="forever", reason="x")
    clerk = principal(web, "vanthu", "clerk")
    with pytest.raises(AccessDenied):
        retention.release_hold(catalog, clerk, hold.id, reason="x")

    released = retention.release_hold(catalog, inspector, hold.id, reason="Đã kết luận")
    assert not released.active and released.released_by == "user:thanhtra"
    with pytest.raises(Refused, match="already released"):
        retention.release_hold(catalog, inspector, hold.id, reason="again")
    [row] = _rows(web, RecordHold, RecordHold.record_id == rid)  # kept, never deleted
    assert row.released_at is not None
    with catalog.unit_of_work() as session:
        assert [r.id for r in retention.due_records(session, date(2026, 1, 1))] == [rid]
    types = [e.event_type for e in _rows(web, Event, Event.record_id == rid,
                                         order=Event.occurred_at)]
    assert "hold placement" in types and "hold release" in types
    actions = audit_actions(web, f"record:{rid}")
    assert ("record.hold", "ok") in actions and ("record.hold_release", "ok") in actions
    assert ("record.hold", "denied") in [  # the policy action refused to the clerk
        (e.action, e.outcome) for e in _rows(web, AuditEntry, AuditEntry.actor == "user:vanthu")]


# ---- the scheduled job -----------------------------------------------------------------------


def _job_context(web):
    from archive.principal import Principal
    from preservation.jobspec import JobContext

    return JobContext(instance=web.instance, run_id="test-run", job="retention",
                      principal=Principal.system("job:retention"), clock=web.instance.clock,
                      worker=f"{socket.gethostname()}:test")


def test_the_job_proposes_a_list_and_destroys_nothing(web):
    from preservation.retention_job import JOB

    rid = record(web, "due", **EXPIRED)
    keep = record(web, "keep", **RUNNING)
    keys_before = sorted(i.key for i in web.instance.store.list("aip/"))
    ctx = _job_context(web)
    assert JOB.name == "retention" and JOB.interval_setting == "retention_every_minutes"
    batches = JOB.plan(ctx, {})
    assert len(batches) == 1
    assert JOB.run_batch(ctx, batches[0]) == {"proposed_lists": 1, "records": 1}
    [row] = _rows(web, DestructionList)
    assert row.proposed_by == "system:job:retention" and row.proposer_person is None
    assert [i.record_id for i in _rows(web, DestructionItem)] == [rid]
    # run again (a reclaimed batch, or the next day): nothing new to propose
    assert JOB.run_batch(ctx, batches[0]) == {"proposed_lists": 0, "records": 0}
    assert {r.status for r in _rows(web, Record)} == {"active"}
    assert sorted(i.key for i in web.instance.store.list("aip/")) == keys_before
    assert keep not in [i.record_id for i in _rows(web, DestructionItem)]
    assert _rows(web, Event, Event.event_type == "destruction") == []


# ---- CLI ------------------------------------------------------------------------------------


def test_cli_extend_hold_release_and_due(web):
    rid = record(web, "due", **EXPIRED)
    held = record(web, "held", **EXPIRED)
    principal(web, "luutru", "archivist")
    principal(web, "thanhtra", "inspector")
    aenv = web.aenv
    due = aenv.json("retention", "due")
    assert {r["id"] for r in due["records"]} == {rid, held}

    code = pyotp.TOTP(web.accounts["thanhtra"].secret).now()
    hold = aenv.json("retention", "hold", held, "--kind", "legal", "--reason", "Vụ án",
                     "--reference", "QĐ 1/CA", "--as", "thanhtra", "--code", code)
    assert hold["kind"] == "legal" and hold["active"] is True
    assert [r["id"] for r in aenv.json("retention", "due", "--limit", "5")["records"]] == [rid]

    code = pyotp.TOTP(web.accounts["luutru"].secret).now()
    ext = aenv.json("retention", "extend", rid, "--until", "permanent", "--reason",
                    "Giá trị lịch sử", "--decision", "45-QĐ/VPTU", "--as", "luutru",
                    "--code", code)
    assert ext["new_until"] is None and ext["permanent"] is True
    assert aenv.json("retention", "due")["records"] == []
    result = aenv.invoke("retention", "extend", held, "--until", "someday", "--reason", "x",
                         "--decision", "1", "--as", "luutru", "--code", "000000")
    assert result.exit_code == 2 and "until" in result.stderr

    principal(web, "duyet", "approver")  # any holder of record.hold releases it
    code = pyotp.TOTP(web.accounts["duyet"].secret).now()
    released = aenv.json("retention", "release", hold["id"], "--reason", "Đã xét xử",
                         "--as", "duyet", "--code", code)
    assert released["active"] is False and released["released_by"] == "user:duyet"
    assert [r["id"] for r in aenv.json("retention", "due")["records"]] == [held]


def test_a_proposal_inserts_its_items_in_one_statement_with_a_bounded_audit(web):
    """The items are inserted server-side (INSERT ... SELECT, R-DESTROY-1): the limit
    takes the oldest expiries first, the audit entry names the count, the first ids and
    the SHA-256 of every listed id (never the whole list), and a record above the
    proposer's clearance is out of a search-based proposal and refused when named."""
    import hashlib

    older = record(web, "older", retention_rule="5y", date="2014-01-02")  # until 2019
    newer = record(web, "newer", **EXPIRED)  # until 2020
    secret = record(web, "secret", classification="mat", **EXPIRED)
    catalog = web.instance.catalog
    archivist = principal(web, "luutru", "archivist")  # cleared for normal only

    with pytest.raises(InputError, match="limit"):
        destruction.propose(catalog, archivist, limit=0)
    with pytest.raises(AccessDenied, match="classified"):
        destruction.propose(catalog, archivist, record_ids=[secret])
    assert _rows(web, DestructionList) == [] and _rows(web, DestructionItem) == []

    first = destruction.propose(catalog, archivist, limit=1)
    assert [i.record_id for i in first.items] == [older]
    second = destruction.propose(catalog, archivist)  # the secret one is not in scope
    assert [i.record_id for i in second.items] == [newer]
    assert destruction.propose(catalog, archivist) is None
    assert len(_rows(web, DestructionList)) == 2

    def detail(list_id: str) -> dict:
        [entry] = _rows(web, AuditEntry, AuditEntry.action == "destruction.propose",
                        AuditEntry.target == f"destruction:{list_id}")
        return entry.detail

    assert detail(first.id)["records"] == 1 and detail(first.id)["first"] == [older]
    assert detail(first.id)["records_sha256"] == hashlib.sha256(
        f"{older}\n".encode()).hexdigest()

    operator = destruction.propose(catalog, web.operator)  # cleared for every level
    assert [i.record_id for i in operator.items] == [secret]
    destruction.cancel(catalog, web.operator, first.id, reason="gộp danh sách")
    destruction.cancel(catalog, web.operator, operator.id, reason="gộp danh sách")
    both = destruction.propose(catalog, web.operator)
    ids = sorted([older, secret])
    assert [i.record_id for i in both.items] == [older, secret]  # oldest expiry first
    assert detail(both.id)["records"] == 2 and detail(both.id)["first"] == ids
    assert detail(both.id)["records_sha256"] == hashlib.sha256(
        "".join(f"{i}\n" for i in ids).encode()).hexdigest()
    assert {i.status for i in _rows(web, DestructionItem,
                                    DestructionItem.list_id == both.id)} == {"listed"}
