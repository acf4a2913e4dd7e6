"""Words people read in the web UI for the archive's codes, in the request's language.

Codes (classification, status, role, audit action, event type, verdict) stay English
and stable in the catalog and the API; the UI shows them through these tables. The
policy's reasons and the metadata check's field messages are English sentences from
the core: :func:`explain_reason` and :func:`explain_field` give the known ones in the
user's language and fall back to the original text (never hide a reason).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

# Times are stored in UTC and shown in Vietnam's time (no daylight saving).
DISPLAY_ZONE = timezone(timedelta(hours=7))

CLASSIFICATIONS = {"normal": _l("Unclassified"), "mat": _l("Secret"),
                   "toi-mat": _l("Top secret")}
STATUSES = {"active": _l("In force"), "revoked": _l("Validity revoked"),
            "destroyed": _l("Destroyed"), "sealed": _l("Sealed")}
ROLES = {"clerk": _l("Clerk"), "archivist": _l("Archivist"), "approver": _l("Approver"),
         "inspector": _l("Inspector"), "auditor": _l("Audit log reviewer"),
         "administrator": _l("System administrator")}
LOGIN_METHODS = {"password": _l("password only (browse only)"),
                 "totp": _l("password and one-time code"),
                 "certificate": _l("digital certificate")}
OUTCOMES = {"ok": _l("done"), "denied": _l("denied"), "failed": _l("failed"),
            "not_found": _l("not found"), "refused": _l("refused"),
            "duplicate": _l("already archived")}
VERDICTS = {"valid": _l("Valid"), "invalid": _l("Invalid"),
            "indeterminate": _l("Could not be established"), "unsigned": _l("Not signed"),
            "malformed": _l("Unreadable")}
FIXITY = {"ok": _l("passed"), "success": _l("passed"), "failure": _l("not passed"),
          "failed": _l("not passed")}
SIGNER_KINDS = {"person": _l("person"), "organisation": _l("organisation")}
REVOCATION = {"good": _l("not revoked"), "revoked": _l("revoked"),
              "unknown": _l("unknown")}
EVENT_TYPES = {
    "message digest calculation": _l("Digests computed on receipt"),
    "format identification": _l("File format identified"),
    "ingestion": _l("Archived"),
    "validation": _l("Signatures checked"),
    "timestamping": _l("Archive timestamp obtained"),
    "encryption": _l("Encrypted at rest"),
    "fixity check": _l("Integrity check"),
    "sealing": _l("Sealed for inspection"),
    "unsealing": _l("Seal lifted"),
    "revocation": _l("Validity revoked"),
    "reinstatement": _l("Validity reinstated"),
    "repackaging": _l("New archival package version"),
    "amendment": _l("Correction, replacement or withdrawal"),
    "creation": _l("Prepared as a draft"),
    "digitization": _l("Digitised from a paper original"),
    "rendition": _l("Paper rendition made"),
}
ACTIONS = {
    "records.search": _l("Search records"),
    "record.view": _l("View a record"),
    "record.signatures": _l("View the signature report"),
    "record.history": _l("View the processing history"),
    "record.amend": _l("Correct, replace or withdraw a document"),
    "record.links": _l("View the links of a record"),
    "draft.create": _l("Start a draft"),
    "draft.update": _l("Change a draft"),
    "draft.view": _l("View a draft"),
    "drafts.list": _l("List drafts"),
    "draft.discard": _l("Discard a draft"),
    "draft.submit": _l("Archive a draft"),
    "record.download": _l("Download the original"),
    "record.export": _l("Export the archival package"),
    "record.ingest": _l("Submit a document"),
    "submission.refuse": _l("Submission returned to the sender"),
    "auth.login": _l("Login attempt not accepted"),
    "auth.password": _l("Log in (password)"),
    "auth.totp": _l("Log in (one-time code)"),
    "auth.certificate": _l("Log in (certificate)"),
    "auth.session-start": _l("Session opened"),
    "auth.logout": _l("Logged out"),
    "account.history": _l("View own access history"),
    "audit.query": _l("Query the audit log"),
    "audit.export": _l("Export the audit log"),
    "agents.list": _l("List agents"),
    "record.reinstate": _l("Reinstate the validity of a record"),
    "record.revocations": _l("View validity decisions"),
    "record.repackage": _l("Write a new archival package version"),
    "paper.revoke": _l("Revoke a paper original and its digitised copies"),
    "paper.register": _l("Register a paper original"),
    "paper.view": _l("View a paper original"),
    "paper.list": _l("List paper originals"),
    "record.digitise": _l("Digitise a paper document"),
    "record.render": _l("Print a paper rendition"),
    "record.renditions": _l("View the paper renditions of a record"),
    "rendition.verify": _l("Verify a paper rendition"),
    "notifications.list": _l("View notifications"),
    "notification.retry": _l("Send a notification again"),
    "record.revalidate": _l("Check the signatures again from the stored evidence"),
    # actions of the policy decision point that are not audit actions themselves
    "record.search": _l("Search records"),
    "record.describe": _l("Describe a record"),
    "record.revoke": _l("Revoke the validity of a record"),
    "record.seal": _l("Seal a record"),
    "record.unseal": _l("Unseal a record"),
    "seal.view": _l("View a seal"),
    "seals.list": _l("List seals"),
    "retention.propose": _l("Propose a retention period"),
    "destruction.propose": _l("Propose destruction"),
    "destruction.approve": _l("Approve destruction"),
    "audit.read": _l("Read the audit log"),
    "agent.read": _l("View agents"),
    "agent.manage": _l("Manage agents"),
    "user.manage": _l("Manage users"),
    "token.manage": _l("Manage API tokens"),
    "config.manage": _l("Manage the configuration"),
    "account.view": _l("View own account"),
    "account.password": _l("Change own password"),
}

# Reasons of the policy decision point (archive/policy.py) and of the services that
# refuse on their own (archive/sealing.py, ingest/versions.py, access/lifecycle/
# digitisation.py), most specific first.
_REASONS: list[tuple[re.Pattern, object]] = [
    (re.compile(r"classified records need a login with a one-time code"),
     _l("Classified records can only be opened after logging in with a one-time code or "
        "a digital certificate. This session was opened with the password only.")),
    (re.compile(r"the record is classified '?(?P<level>[\w-]+)'?, above the clearance"),
     _l("The record is classified %(level)s, above the clearance of your login.")),
    (re.compile(r"a password-only login may not change anything"),
     _l("A session opened with the password only may not change anything: log in with a "
        "one-time code or a digital certificate.")),
    (re.compile(r"outside the fonds and organisations granted"),
     _l("The record belongs to a fonds or organisation you have not been granted.")),
    (re.compile(r"the record was destroyed"),
     _l("The record was destroyed; only its register entry remains.")),
    (re.compile(r"already sealed under decision (?P<ref>.+)$"),
     _l("The record is already sealed under decision %(ref)s.")),
    (re.compile(r"only the sealing authority of decision (?P<ref>.+?) may unseal"),
     _l("Only the sealing authority of decision %(ref)s (the person who sealed the record "
        "or the organisation that issued the decision) may lift the seal.")),
    (re.compile(r"^seal \S+ \((?P<ref>.+)\) is not active on the record"),
     _l("The seal under decision %(ref)s is no longer active on this record.")),
    (re.compile(r"only inspectors, auditors and the readers named in the sealing decision "
                r"(?P<ref>.+) may see it"),
     _l("Only inspectors, audit log reviewers and the readers named in sealing decision "
        "%(ref)s may see this seal.")),
    (re.compile(r"sealed under decision (?P<ref>.+)$"),
     _l("The record is sealed under decision %(ref)s.")),
    (re.compile(r"^the record is not sealed"), _l("The record is not sealed.")),
    (re.compile(r"validity is already revoked"),
     _l("The validity of the record has already been revoked.")),
    (re.compile(r"validity is not revoked"),
     _l("The validity of the record has not been revoked: there is nothing to reinstate.")),
    (re.compile(r"validity is revoked: no new paper rendition"),
     _l("The validity of the record has been revoked: no new paper rendition is made of "
        "it.")),
    (re.compile(r"an archived record is never edited in place"),
     _l("An archived record is never edited in place: submit a correction instead.")),
    (re.compile(r"^repackaging is a preservation action of the system"),
     _l("A new archival package version is written by the system only, as a preservation "
        "action.")),
    (re.compile(r"^digitisation is done by a clerk"),
     _l("Digitisation is done by a clerk logged in with a one-time code or a digital "
        "certificate, not with an API token.")),
    (re.compile(r"the API token has no scope allowing (?P<action>\S+)"),
     _l("The API token does not allow this: %(action)s.")),
    (re.compile(r"the role (?P<role>\S+) does not allow (?P<action>\S+)"),
     _l("Your role (%(role)s) does not allow this: %(action)s.")),
    (re.compile(r"^not logged in"), _l("You are not logged in.")),
    (re.compile(r"^(?P<action>\S+) needs a record$"),
     _l("This needs a record: %(action)s.")),
    (re.compile(r"^unknown action"), _l("This action is not known to the archive.")),
]

# Field messages of the metadata check (archive/metadata.py).
_FIELD_MESSAGES: list[tuple[re.Pattern, object]] = [
    (re.compile(r"^required field is missing$"), _l("This field is required.")),
    (re.compile(r"^must not be blank$"), _l("This field must not be blank.")),
    (re.compile(r"^longer than (?P<n>\d+) characters$"),
     _l("At most %(n)s characters.")),
    (re.compile(r"^contains control characters or line breaks$"),
     _l("Must be a single line without control characters.")),
    (re.compile(r"^not a date in YYYY-MM-DD form"), _l("Not a valid date.")),
    (re.compile(r"^(?P<d>[\d-]+) is in the future$"),
     _l("The date %(d)s is in the future.")),
    (re.compile(r"^must be a whole number$"), _l("Must be a whole number.")),
    (re.compile(r"^must be between 1 and 100000$"),
     _l("Must be between 1 and 100000.")),
    (re.compile(r"is not registered"),
     _l("This organisation is not registered in the archive.")),
    (re.compile(r"does not follow the organisation identifier scheme"),
     _l("Not a valid organisation code.")),
]


def label(table: dict, code: str | None) -> str:
    """The readable name of ``code`` in ``table``, or the code itself."""
    if code is None:
        return ""
    found = table.get(code)
    return str(found) if found is not None else code


def explain_reason(reason: str | None) -> str:
    """The policy's reason in the user's language (the original when unknown)."""
    if not reason:
        return ""
    for pattern, message in _REASONS:
        match = pattern.search(reason)
        if match:
            values = match.groupdict()
            if "level" in values:
                values["level"] = label(CLASSIFICATIONS, values["level"])
            if "role" in values:
                values["role"] = label(ROLES, values["role"])
            if "action" in values:
                values["action"] = label(ACTIONS, values["action"])
            return str(message) % values if values else str(message)
    return reason


def explain_field(message: str) -> str:
    """A metadata check message in the user's language (the original when unknown)."""
    for pattern, text in _FIELD_MESSAGES:
        match = pattern.search(message)
        if match:
            values = match.groupdict()
            return str(text) % values if values else str(text)
    return message


def localised(item: dict, key: str = "message") -> str:
    """The Vietnamese ``message_vi`` of a report finding when the UI is Vietnamese."""
    if str(get_locale() or "vi") == "vi" and item.get(f"{key}_vi"):
        return item[f"{key}_vi"]
    return item.get(key) or ""


def show_date(value) -> str:
    """A document date: 14/03/2025 in Vietnamese, 2025-03-14 in English."""
    if not value:
        return ""
    if isinstance(value, str):
        try:
            value = date.fromisoformat(value[:10])
        except ValueError:
            return value
    if str(get_locale() or "vi") == "vi":
        return value.strftime("%d/%m/%Y")
    return value.isoformat()


def show_time(value) -> str:
    """A moment in Vietnam's time, to the second (UTC+7 is said once, in the page)."""
    if not value:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(DISPLAY_ZONE)
    if str(get_locale() or "vi") == "vi":
        return local.strftime("%d/%m/%Y %H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M:%S")


def yes_no(value) -> str:
    if value is None:
        return _("not checked")
    return _("yes") if value else _("no")
