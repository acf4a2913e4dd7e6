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
