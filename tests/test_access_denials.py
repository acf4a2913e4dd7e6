"""Every denial is logged (R-AUDIT-1, R-AUTH-1, R-CLASS-1): the real read and ingest
services on a real archive (local folder + SQLite, SeaweedFS + PostgreSQL) refuse what
the policy forbids, write who, what, which record and why to the audit log with outcome
``denied``, and the chain still verifies. Search returns only what a principal may see.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from archive import records
from archive.audit import verify
from archive.errors import AccessDenied
from archive.models import AuditEntry, Record
from archive.principal import ANONYMOUS, Principal
from archive.records import RecordFilter
from ingest.services import IngestService
from tests.conftest import ORG, ORG2

PERSON = "001085012345"


def user(role: str, *, clearance: str = "normal", method: str = "totp",
         fonds: tuple[str, ...] = ("PHONG-01",), organisations: tuple[str, ...] = ()):
    return Principal("user", f"{role}-{clearance}-{method}", role=role, clearance=clearance,
                     fonds=fonds, organisations=organisations, method=method, person=PERSON)


CLERK = user("clerk")  # no clearance, fonds PHONG-01
ARCHIVIST = user("archivist", clearance="mat")
ARCHIVIST_PASSWORD_ONLY = user("archivist", clearance="mat", method="password")
AUDITOR = user("auditor", clearance="toi-mat")
ADMIN = user("administrator", clearance="toi-mat", fonds=("*",))
READ_TOKEN = Principal("token", "tok-1", clearance="mat", organisations=(ORG,),
                       method="token", scopes=("records:read",))
ORG2_TOKEN = Principal("token", "tok-2", organisations=(ORG2,), method="token",
                       scopes=("records:read", "records:download"))


@dataclass
class Archive:
    aenv: object
    instance: object
    normal: str  # PHONG-01, issued by ORG
    mat: str  # PHONG-01, classified "mat"
    other: str  # PHONG-02, issued by ORG2

    def denied(self) -> list[AuditEntry]:
        with self.instance.catalog.unit_of_work() as s:
            return list(s.scalars(select(AuditEntry).where(AuditEntry.outcome == "denied")
                                  .order_by(AuditEntry.seq)))

    def entries_after(self, seq: int) -> list[AuditEntry]:
        with self.instance.catalog.unit_of_work() as s:
            return list(s.scalars(select(AuditEntry).where(AuditEntry.seq > seq)
                                  .order_by(AuditEntry.seq)))

    def last_seq(self) -> int:
        with self.instance.catalog.unit_of_work() as s:
            return s.scalar(select(func.max(AuditEntry.seq)))

    def chain_ok(self) -> None:
        with self.instance.catalog.unit_of_work(snapshot=True) as s:
            report = verify(s)
        assert report.ok, report.to_dict()
        result = self.aenv.invoke("audit", "verify")
        assert result.exit_code == 0, result.output


@pytest.fixture
def archive(archive_env):
    def ingest(name, **meta):
        pdf = archive_env.sample(name, **meta)
        result = archive_env.json("ingest", str(pdf))["results"][0]
        assert result["status"] == "archived", result
        return result["record_id"]

    return Archive(archive_env, archive_env.instance(),
                   normal=ingest("normal.pdf", number_symbol="1-QĐ/TU"),
                   mat=ingest("mat.pdf", number_symbol="2-QĐ/TU", classification="mat"),
                   other=ingest("other.pdf", number_symbol="3-QĐ/BTC", fonds="PHONG-02",
                                issuing_org=ORG2))


def call(archive: Archive, fn, principal, record_id=None, **kwargs):
    """One read use case in its own unit of work, as the CLI and web app run it."""
    instance = archive.instance
    with instance.catalog.unit_of_work() as session:
        if fn is records.list_records:
            return fn(session, principal, RecordFilter(), **kwargs)
        if fn in (records.open_original, records.open_package, records.signature_report):
            result = fn(session, instance.store, principal, record_id, **kwargs)
            if isinstance(result, tuple):
                result[1].close()
            return result
        return fn(session, principal, record_id, **kwargs)


def test_a_clerk_without_clearance_is_refused_a_classified_record_and_it_is_logged(archive):
    before = archive.last_seq()
    with pytest.raises(AccessDenied) as info:
        call(archive, records.show_record, CLERK, archive.mat, client="10.1.2.3")
    assert info.value.logged and info.value.exit_code == 3
    (entry,) = archive.entries_after(before)  # the refused use case wrote nothing else
    assert (entry.actor, entry.action, entry.target, entry.outcome, entry.client) == (
        "user:clerk-normal-totp", "record.view", f"record:{archive.mat}", "denied",
        "10.1.2.3")
    assert "classified 'mat'" in entry.detail["reason"]
    assert "clearance" in entry.detail["reason"]
    # the same clerk reads the unclassified record of its fonds, and that is logged too
    shown = call(archive, records.show_record, CLERK, archive.normal)
    assert shown.id == archive.normal
    (ok,) = archive.entries_after(entry.seq)
    assert (ok.action, ok.outcome, ok.target) == ("record.view", "ok",
                                                  f"record:{archive.normal}")
    archive.chain_ok()


@pytest.mark.parametrize("fn, who, which, action, words", [
    (records.show_record, ARCHIVIST_PASSWORD_ONLY, "mat", "record.view", "one-time code"),
    (records.show_record, CLERK, "other", "record.view", "outside the fonds"),
    (records.record_history, ADMIN, "normal", "record.history", "role administrator"),
    (records.open_original, AUDITOR, "normal", "record.download", "role auditor"),
    (records.open_original, CLERK, "mat", "record.download", "clearance"),
    (records.open_original, READ_TOKEN, "normal", "record.download", "no scope"),
    (records.open_package, CLERK, "normal", "record.export", "role clerk"),
    (records.signature_report, CLERK, "mat", "record.view", "clearance"),
    (records.record_history, ORG2_TOKEN, "normal", "record.history", "outside"),
    (records.open_package, ADMIN, "mat", "record.export", "role administrator"),
], ids=["password-only-classified", "outside-grants", "admin-history", "auditor-download",
        "clerk-download-classified", "token-without-download-scope", "clerk-export",
        "clerk-signature-report-classified", "token-outside-organisation",
        "admin-export-classified"])
def test_every_read_service_denies_and_logs(archive, fn, who, which, action, words):
    record_id = getattr(archive, which)
    before = archive.last_seq()
    with pytest.raises(AccessDenied, match=words):
        call(archive, fn, who, record_id)
    (entry,) = archive.entries_after(before)
    assert (entry.actor, entry.action, entry.target, entry.outcome) == (
        str(who), action, f"record:{record_id}", "denied")
    assert words in entry.detail["reason"]
    archive.chain_ok()


def test_anonymous_search_is_refused_and_logged(archive):
    with pytest.raises(AccessDenied, match="not logged in"):
        call(archive, records.list_records, ANONYMOUS)
    (entry,) = archive.denied()
    assert (entry.actor, entry.action, entry.target) == ("anonymous:-", "record.search",
                                                         "record.search")


@pytest.mark.parametrize("who, visible", [
    (CLERK, {"normal"}),
    (ARCHIVIST, {"normal", "mat"}),
    (ARCHIVIST_PASSWORD_ONLY, {"normal"}),  # R-AUTH-1: nothing classified
    (ADMIN, {"normal", "other"}),  # every fonds, but nothing classified
    (AUDITOR, {"normal", "mat"}),
    (READ_TOKEN, {"normal", "mat"}),  # its organisation's records
    (ORG2_TOKEN, {"other"}),
    (Principal.system("job:test"), {"normal", "mat", "other"}),
], ids=["clerk", "archivist", "archivist-password-only", "administrator", "auditor",
        "token-org", "token-org2", "system"])
def test_search_returns_only_what_the_principal_may_view(archive, who, visible):
    total, rows = call(archive, records.list_records, who)
    want = {getattr(archive, name) for name in visible}
    assert {r.id for r in rows} == want and total == len(want)
    for record_id in (archive.normal, archive.mat, archive.other):
        if record_id in want:
            call(archive, records.show_record, who, record_id)
        else:
            with pytest.raises(AccessDenied):
                call(archive, records.show_record, who, record_id)
    assert len(archive.denied()) == 3 - len(want)
    with archive.instance.catalog.unit_of_work() as s:
        search = s.scalars(select(AuditEntry).where(AuditEntry.action == "records.search")
                           .order_by(AuditEntry.seq.desc())).first()
    assert search.actor == str(who) and search.detail["returned"] == len(want)


def test_a_denial_is_logged_once(archive):
    catalog = archive.instance.catalog
    with pytest.raises(AccessDenied) as info, catalog.unit_of_work() as session:
        records.show_record(session, CLERK, archive.mat)
    assert info.value.logged
    catalog.log_denial(info.value)  # a surface that sees it again writes nothing
    assert len(archive.denied()) == 1


# ---- ingest -------------------------------------------------------------------------


def _ingest(archive: Archive, principal, name, **meta):
    instance = archive.instance
    pdf = archive.aenv.sample(name, **meta)
    raw = json.loads(pdf.with_name(pdf.name + ".json").read_text(encoding="utf-8"))
    service = IngestService(instance.settings, instance.catalog, instance.store,
                            principal=principal)
    try:
        return service.ingest(pdf, raw, "test")
    finally:
        service.close()


def _record_count(archive: Archive) -> int:
    with archive.instance.catalog.unit_of_work() as s:
        return s.scalar(select(func.count()).select_from(Record))


@pytest.mark.parametrize("who, meta, target, words", [
    (AUDITOR, {}, "record.ingest", "role auditor"),
    (user("clerk", method="password"), {}, "record.ingest", "password-only"),
    (CLERK, {"fonds": "PHONG-02", "issuing_org": ORG2}, "record:(new)", "outside"),
    (CLERK, {"classification": "mat"}, "record:(new)", "clearance"),
], ids=["role", "password-only", "outside-grants", "above-clearance"])
def test_ingest_denials_are_logged_and_store_nothing(archive, who, meta, target, words):
    count = _record_count(archive)
    objects = sorted(o.key for o in archive.instance.store.list())
    with pytest.raises(AccessDenied, match=words):
        _ingest(archive, who, "new.pdf", number_symbol="9-QĐ/TU", **meta)
    (entry,) = archive.denied()
    assert (entry.actor, entry.action, entry.target) == (str(who), "record.ingest", target)
    assert words in entry.detail["reason"]
    assert _record_count(archive) == count
    assert sorted(o.key for o in archive.instance.store.list()) == objects
    archive.chain_ok()


def test_a_clerk_ingests_within_its_grants(archive):
    clerk = user("clerk", clearance="mat")
    result = _ingest(archive, clerk, "mine.pdf", number_symbol="10-QĐ/TU",
                     classification="mat")
    assert result.status == "archived"
    assert call(archive, records.show_record, clerk, result.record_id).created_by == \
        str(clerk)
    assert not archive.denied()


@pytest.mark.parametrize("read", ["view", "history", "download", "export", "signatures"])
def test_a_read_of_a_missing_record_is_audited(archive, read):
    """R-AUDIT-1: the attempt stays on record even though the use case fails (NotFound
    rolls its transaction back; the entry is written after, in its own)."""
    from archive.errors import NotFound

    missing = "00000000-0000-4000-8000-000000000000"
    inst = archive.instance
    calls = {
        "view": lambda s: records.show_record(s, CLERK, missing, client="10.0.0.7"),
        "history": lambda s: records.record_history(s, CLERK, missing, client="10.0.0.7"),
        "download": lambda s: records.open_original(s, inst.store, CLERK, missing,
                                                    client="10.0.0.7"),
        "export": lambda s: records.open_package(s, inst.store, CLERK, missing,
                                                 client="10.0.0.7"),
        "signatures": lambda s: records.signature_report(s, inst.store, CLERK, missing,
                                                         client="10.0.0.7"),
    }
    with inst.catalog.unit_of_work() as s:
        before = s.scalar(select(func.max(AuditEntry.seq)))
    with pytest.raises(NotFound), inst.catalog.unit_of_work() as s:
        calls[read](s)
    [entry] = archive.entries_after(before)
    assert (entry.actor, entry.target, entry.outcome, entry.client) == (
        str(CLERK), f"record:{missing}", "not_found", "10.0.0.7")
    assert entry.action == f"record.{read}"
