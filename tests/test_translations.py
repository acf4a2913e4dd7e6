"""The web UI speaks Vietnamese by default (issue #4): every message of the templates and
of ``access/*.py`` is translated in ``access/translations/vi``, the compiled catalogue
matches its source, and the reasons people meet (policy denials, bad metadata fields)
read in Vietnamese rather than in the core's English."""

from __future__ import annotations

import io
import re
from datetime import date

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from tests.conftest import REPO

ACCESS = REPO / "access"
PO = ACCESS / "translations" / "vi" / "LC_MESSAGES" / "messages.po"
MO = PO.with_suffix(".mo")
# Lazy strings (module-level tables in access/labels.py) are marked with _l.
KEYWORDS = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")


def _used() -> dict[str, str]:
    """msgid -> where it is first used, extracted as babel.cfg says."""
    with open(REPO / "babel.cfg", encoding="utf-8") as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            ACCESS, method_map, options_map, keywords=KEYWORDS):
        msgid = message if isinstance(message, str) else message[0]
        found.setdefault(msgid, f"access/{filename}:{lineno}")
    return found


def _catalog():
    with open(PO, "rb") as handle:
        return read_po(handle, locale="vi")


def test_every_message_is_translated_into_vietnamese():
    used = _used()
    assert len(used) > 200  # the extraction found the templates and the Python code
    catalog = _catalog()
    missing = [f"{where}: {msgid!r}" for msgid, where in sorted(used.items())
               if msgid not in catalog or not catalog[msgid].string
               or catalog[msgid].fuzzy]
    assert not missing, "untranslated in access/translations/vi:\n" + "\n".join(missing)


def test_the_catalogue_holds_no_stale_messages():
    used = _used()
    stale = [m.id for m in _catalog() if m.id and m.id not in used]
    assert not stale, f"no longer used (run pybabel update, see docs/web-ui.md): {stale}"


def test_translations_keep_every_placeholder():
    wrong = [m.id for m in _catalog() if m.id and
             set(PLACEHOLDER.findall(m.id)) != set(PLACEHOLDER.findall(m.string))]
    assert not wrong


def test_compiled_catalogue_matches_the_po_file():
    expected = io.BytesIO()
    write_mo(expected, _catalog())
    assert MO.read_bytes() == expected.getvalue(), \
        "messages.mo is stale: run .venv/bin/pybabel compile -d access/translations"


# ---- what the core says in English, people read in Vietnamese ------------------------


@pytest.fixture
def vietnamese():
    from flask import Flask
    from flask_babel import Babel

    app = Flask("translations-test")
    Babel(app, locale_selector=lambda: "vi",
          default_translation_directories=str(ACCESS / "translations"))
    with app.test_request_context("/"):
        yield


def _denials() -> list[str]:
    from archive import policy
    from archive.policy import AUDIT_READ, DOWNLOAD, INGEST, VIEW, RecordFacts, decide
    from archive.principal import ANONYMOUS, Principal

    def user(role, clearance="normal", method="totp", fonds=("F",)):
        return Principal("user", role, role, role=role, clearance=clearance, fonds=fonds,
                         method=method)

    normal, secret = RecordFacts("r1", fonds="F"), RecordFacts("r2", "mat", fonds="F")
    cases = [
        (user("clerk"), VIEW, secret),  # above the clearance
        (user("inspector", "mat", method="password"), VIEW, secret),  # password only
        (user("clerk", method="password"), INGEST, None),  # no change without 2FA
        (user("clerk", fonds=("G",)), VIEW, normal),  # outside the grants
        (user("clerk"), AUDIT_READ, None),  # not the role's
        (user("clerk"), DOWNLOAD, RecordFacts("r3", status="destroyed", fonds="F")),
        (user("clerk"), DOWNLOAD, RecordFacts("r4", fonds="F",
                                              seal=policy.SealFacts("07-QĐ/UBKT"))),
        (ANONYMOUS, VIEW, normal),
    ]
    reasons = []
    for principal, action, record in cases:
        decision = decide(principal, action, record)
        assert not decision.allowed, (principal, action, record)
        reasons.append(decision.reason)
    return reasons


@pytest.mark.parametrize("index", range(8 + 9))
def test_policy_reasons_read_in_vietnamese(vietnamese, index):
    """The reasons of the access layer (8) and of the record lifecycle (9)."""
    from access.labels import explain_reason

    reason = (_denials() + _lifecycle_denials())[index]
    explained = explain_reason(reason)
    assert explained != reason, f"no Vietnamese for the policy reason {reason!r}"
    assert "%(" not in explained and not explained.isascii(), explained


def test_metadata_field_problems_read_in_vietnamese(vietnamese):
    from access.labels import explain_field
    from archive.errors import MetadataInvalid
    from archive.metadata import validate_metadata
    from archive.settings import load_settings

    raw = {"number_symbol": "x" * 101, "date": "2999-01-01", "summary": "   ",
           "page_count": "mười", "issuing_org": "not an org", "signer": "A\x01B"}
    with pytest.raises(MetadataInvalid) as caught:
        validate_metadata(raw, load_settings(environ={}), today=date(2025, 6, 1))
    problems = {(p.field, p.message) for p in caught.value.problems}
    assert {f for f, _ in problems} >= {"number_symbol", "date", "summary", "page_count",
                                        "issuing_org", "signer", "doc_type", "fonds"}
    untranslated = [(f, m) for f, m in problems if explain_field(m) == m]
    assert not untranslated


def _lifecycle_denials() -> list[str]:
    """Reasons of the record lifecycle (#5): revocation, renditions, sealing, drafts."""
    from archive import policy
    from archive.policy import (
        DESCRIBE,
        REINSTATE,
        RENDER,
        REVOKE,
        SEAL,
        UNSEAL,
        VIEW,
        RecordFacts,
        decide,
    )
    from archive.principal import Principal

    def user(role, person="P1", organisation="O1"):
        return Principal("user", role, role, role=role, fonds=("F",), method="totp",
                         person=person, organisation=organisation)

    seal = policy.SealFacts("07-QĐ/UBKT", authority="O9", sealer="P9")
    active, revoked = RecordFacts("r1", fonds="F"), RecordFacts("r2", status="revoked",
                                                                fonds="F")
    sealed = RecordFacts("r3", fonds="F", seal=seal)
    token = Principal("token", "t1", method="token", scopes=("records:read",), fonds=("F",))
    cases = [
        (user("approver"), REINSTATE, active),  # nothing to reinstate
        (user("approver"), REVOKE, revoked),  # already revoked
        (user("clerk"), RENDER, revoked),  # no new rendition of a revoked record
        (user("inspector"), UNSEAL, sealed),  # not the sealing authority
        (user("inspector"), SEAL, sealed),  # already sealed
        (user("inspector"), UNSEAL, active),  # not sealed
        (user("clerk"), DESCRIBE, active),  # never edited in place
        (token, REVOKE, active),  # no scope
        (user("clerk"), VIEW, None),  # needs a record
    ]
    reasons = []
    for principal, action, record in cases:
        decision = decide(principal, action, record)
        assert not decision.allowed, (principal, action, record)
        reasons.append(decision.reason)
    return reasons


# ---- preservation (#6): destruction, retention and jobs ----------------------------------


def _refusal(call) -> str:
    """The reason a core service refuses with (a policy denial or a rule's refusal)."""
    from archive.errors import AccessDenied, ArchiveError

    with pytest.raises(ArchiveError) as caught:
        call()
    exc = caught.value
    return exc.denial.reason if isinstance(exc, AccessDenied) else exc.message


def _preservation_refusals(web) -> list[str]:
    """What the destruction, retention and job services refuse with, driven for real on
    an archive (records due, running and permanent; holds; lists in every state)."""
    from archive import destruction, retention
    from archive.principal import Principal
    from archive.retention import is_due
    from preservation import runner
    from preservation.destruction import execute
    from tests.test_retention import EXPIRED, PERMANENT, RUNNING, principal, record

    catalog, instance = web.instance.catalog, web.instance
    archivist, reviewer = principal(web, "luutru", "archivist"), principal(web, "soat", "archivist")
    approver, clerk = principal(web, "duyet", "approver"), principal(web, "vanthu", "clerk")
    token = Principal("token", "t1", method="token", scopes=("records:read",), fonds=("*",))
    due, kept = record(web, "due", **EXPIRED), record(web, "kept", **EXPIRED)
    running, forever = record(web, "running", **RUNNING), record(web, "forever", **PERMANENT)
    held = record(web, "held", **EXPIRED)
    hold = retention.place_hold(catalog, archivist, held, kind="legal", reason="Thanh tra")
    approval = {"approving_body": "Ban Thường vụ Tỉnh ủy", "decision_number": "45-QĐ/TU",
                "decision_date": "2026-11-20", "legal_basis": "Luật Lưu trữ 2024"}
    reasons = [
        _refusal(lambda: destruction.list_lists(catalog, clerk)),  # role may not read
        _refusal(lambda: destruction.propose(catalog, token)),  # not a proposer
    ]
    listed = destruction.propose(catalog, archivist, reason="Rà soát").id
    reasons += [
        _refusal(lambda: destruction.add_item(catalog, archivist, listed, running, note="x")),
        _refusal(lambda: destruction.add_item(catalog, archivist, listed, forever, note="x")),
        _refusal(lambda: destruction.add_item(catalog, archivist, listed, held, note="x")),
        _refusal(lambda: destruction.approve(catalog, Principal.system("job:retention"),
                                             listed, **approval)),  # not a person
        _refusal(lambda: destruction.approve(catalog, archivist, listed, **approval)),
    ]
    destruction.remove_item(catalog, reviewer, listed, kept, note="Còn giá trị")
    reasons += [
        _refusal(lambda: destruction.approve(catalog, reviewer, listed, **approval)),  # editor
        _refusal(lambda: destruction.cancel(catalog, clerk, listed, reason="x")),
    ]
    destruction.approve(catalog, approver, listed, **approval)
    reasons += [
        _refusal(lambda: destruction.remove_item(catalog, archivist, listed, due, note="x")),
        _refusal(lambda: destruction.approve(catalog, approver, listed, **approval)),
    ]
    destruction.cancel(catalog, archivist, listed, reason="Làm lại")
    reasons += [
        _refusal(lambda: destruction.cancel(catalog, archivist, listed, reason="x")),
        _refusal(lambda: execute(instance, archivist, listed)),  # not approved
    ]
    emptied = destruction.propose(catalog, archivist, record_ids=[kept]).id
    destruction.remove_item(catalog, archivist, emptied, kept, note="Giữ lại")
    reasons += [
        _refusal(lambda: destruction.approve(catalog, approver, emptied, **approval)),
        _refusal(lambda: retention.extend_retention(catalog, archivist, forever, until=None,
                                                    reason="x", decision_ref="1")),
        _refusal(lambda: retention.extend_retention(catalog, archivist, running,
                                                    until="2025-01-01", reason="x",
                                                    decision_ref="1")),
    ]
    retention.release_hold(catalog, archivist, hold.id, reason="Đã kết luận")
    reasons.append(_refusal(lambda: retention.release_hold(catalog, archivist, hold.id,
                                                           reason="x")))
    retention.place_hold(catalog, archivist, held, kind="revocation-inquiry", reason="x")
    with catalog.unit_of_work() as session:  # the skips of an execution, alone
        today = instance.clock.now().date()
        reasons += [is_due(session, held, today), is_due(session, running, today)]
    runner.start_run(instance, "retention", trigger="manual")
    reasons.append(_refusal(lambda: runner.start_run(instance, "retention",
                                                     trigger="manual")))
    return reasons


PRESERVATION_REFUSALS = 20


def test_destruction_retention_and_job_refusals_read_in_vietnamese(local_web):
    from flask_babel import force_locale

    from access.labels import explain_reason

    reasons = _preservation_refusals(local_web)
    assert len(reasons) == PRESERVATION_REFUSALS and len(set(reasons)) == len(reasons)
    with local_web.app.test_request_context("/"), force_locale("vi"):
        for reason in reasons:
            explained = explain_reason(reason)
            assert explained != reason, f"no Vietnamese for the refusal {reason!r}"
            assert "%(" not in explained and not explained.isascii(), explained


def test_the_destruction_forms_refusals_read_in_vietnamese(local_web):
    """The web forms' confirmations (400) and a rule's refusal (422) are shown in
    Vietnamese, with the exact message under "Technical detail"."""
    from tests.test_retention import EXPIRED, PERMANENT, record

    rid, forever = record(local_web, "due", **EXPIRED), record(local_web, "vv", **PERMANENT)
    local_web.add_user("luutru", "archivist")
    archivist = local_web.login("luutru")
    csrf = local_web.csrf(archivist)
    missing = archivist.post(f"/records/{rid}/retention",
                             data={"csrf_token": csrf, "reason": "x", "decision_ref": "1"})
    page = missing.get_data(as_text=True)
    assert missing.status_code == 400 and "bảo quản vĩnh viễn" in page
    assert "until: a date (YYYY-MM-DD) or permanent is required" in page  # technical detail
    refused = archivist.post(f"/records/{forever}/retention",
                             data={"csrf_token": csrf, "until": "2099-01-01", "reason": "x",
                                   "decision_ref": "1"})
    page = refused.get_data(as_text=True)
    assert refused.status_code == 422
    assert "Tài liệu đã được bảo quản vĩnh viễn: không thể gia hạn thêm." in page
    assert "is already kept permanently" in page
