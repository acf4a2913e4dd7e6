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
DESTRUCTION_STATUSES = {"proposed": _l("Proposed"), "approved": _l("Approved"),
                        "executing": _l("Being destroyed"), "executed": _l("Destroyed"),
                        "cancelled": _l("Cancelled")}
# Form fields named by the core's input errors (archive/retention.clean_text ...).
FORM_FIELDS = {"approving_body": _l("Approving body"), "decision_number": _l("Decision number"),
               "decision_date": _l("Decision date"), "legal_basis": _l("Legal basis"),
               "decision_ref": _l("Decision number"), "reason": _l("Reason"),
               "note": _l("Note"), "reference": _l("Reference"), "until": _l("Keep until"),
               "kind": _l("Kind")}
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
    # preservation (#6): retention, destruction, jobs, backups, integrity, timestamps
    "retention.extend": _l("Extend the retention period"),
    "retention.due": _l("List the records due for destruction"),
    "record.hold": _l("Put a record on hold"),
    "record.hold_release": _l("Release a hold"),
    "destruction.view": _l("View a destruction list"),
    "destruction.lists": _l("List the destruction lists"),
    "destruction.item_remove": _l("Take a record off a destruction list"),
    "destruction.item_add": _l("Put a record on a destruction list"),
    "destruction.cancel": _l("Cancel a destruction list"),
    "destruction.start": _l("Start the destruction of an approved list"),
    "destruction.skip": _l("Record not destroyed at execution"),
    "destruction.execute": _l("Destroy a record"),
    "destruction.finish": _l("Destruction of a list ended"),
    "destruction.register": _l("Search the destruction register"),
    "destruction.register_export": _l("Export the destruction register"),
    "job.start": _l("Start a job run"),
    "job.finish": _l("Job run ended"),
    "job.list": _l("List job runs"),
    "job.view": _l("View a job run"),
    "fixity.check": _l("Integrity check"),
    "fixity.repair": _l("Repair a damaged object from its backup"),
    "backup.copy": _l("Back up objects"),
    "backup.verify": _l("Verify backup copies"),
    "backup.repair": _l("Repair a backup copy"),
    "backup.catalog": _l("Back up the catalog"),
    "backup.prune": _l("Delete old catalog backups"),
    "backup.restore": _l("Restore from a backup"),
    "timestamp.register": _l("Register archive timestamps"),
    "timestamp.renew": _l("Renew an archive timestamp"),
    "timestamp.verify": _l("Verify a timestamp chain"),
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
    # Destruction and retention (#6: archive/destruction.py, archive/retention.py,
    # preservation/destruction.py), the jobs (preservation/runner.py) and the web forms'
    # confirmations: anchored, and first, since some quote another reason after a colon.
    (re.compile(r"^the role (?P<role>\S+) may not read destruction lists"),
     _l("Your role (%(role)s) may not read the destruction lists.")),
    (re.compile(r"^destruction is proposed by an archivist or the retention job"),
     _l("A destruction list is proposed only by an archivist or by the scheduled retention "
        "job.")),
    (re.compile(r"^a destruction is approved by a person"),
     _l("A destruction is approved by a person: an approver logged in with a one-time code "
        "or a digital certificate, never a system account.")),
    (re.compile(r"^the proposer of a destruction list may not approve it"),
     _l("The person who proposed a destruction list may not approve it.")),
    (re.compile(r"^a person who edited the destruction list may not approve it"),
     _l("A person who reviewed or changed the destruction list may not approve it.")),
    (re.compile(r"^only an archivist or an approver with a strong login \(or the operator\) "
                r"cancels a destruction list"),
     _l("Only an archivist or an approver logged in with a one-time code or a digital "
        "certificate (or the system operator) may cancel a destruction list.")),
    (re.compile(r"^destruction list \S+ is (?P<list_status>\w+): only a proposed list is "
                r"reviewed"),
     _l("The destruction list's status is %(list_status)s: only a proposed list is reviewed.")),
    (re.compile(r"^destruction list \S+ is (?P<list_status>\w+): only a proposed list is "
                r"approved"),
     _l("The destruction list's status is %(list_status)s: only a proposed list is approved.")),
    (re.compile(r"^destruction list \S+ is (?P<list_status>\w+): it cannot be cancelled"),
     _l("The destruction list's status is %(list_status)s: it can no longer be cancelled.")),
    (re.compile(r"^destruction list \S+ is (?P<list_status>\w+): only an approved list is "
                r"executed"),
     _l("The destruction list's status is %(list_status)s: only an approved list is executed.")),
    (re.compile(r"^destruction list \S+ has no listed record"),
     _l("No record is left on the destruction list: there is nothing to approve.")),
    (re.compile(r"^record \S+ is not due for destruction: (?P<why>.+)$"),
     _l("The record is not due for destruction: %(why)s.")),
    (re.compile(r"^not destroyed: (?P<why>.+)$"), _l("Not destroyed: %(why)s.")),
    (re.compile(r"^record \S+ is already kept permanently"),
     _l("The record is already kept permanently: its retention cannot be extended.")),
    (re.compile(r"^retention may only be extended: (?P<until>[\d-]+) is not later than the "
                r"current (?P<current>[\d-]+)"),
     _l("The retention may only be extended: %(until)s is not later than the current end "
        "of retention, %(current)s.")),
    (re.compile(r"^hold \S+ was already released"), _l("This hold was already released.")),
    (re.compile(r"^backup copies of record \S+ are in (?P<stores>.+), which is not the "
                r"configured backup store"),
     _l("The backup copies of the record are in %(stores)s, which is not the configured "
        "backup store: nothing was deleted.")),
    (re.compile(r"^job (?P<job>\S+) is already running \(run \S+, started (?P<started>\S+) "
                r"by (?P<who>[^)]+)\)"),
     _l("The job %(job)s is already running (a run started %(started)s by %(who)s).")),
    (re.compile(r"^irreversible: confirm that you understand"),
     _l("Tick the box confirming that you understand that approving lets the listed records "
        "be destroyed for ever.")),
    (re.compile(r"^confirm: tick the box to confirm that every copy"),
     _l("Tick the box confirming that every copy of the listed records is destroyed now; "
        "this cannot be undone.")),
    (re.compile(r"^until: a date \(YYYY-MM-DD\) or permanent is required"),
     _l("Give the new end of retention (a date) or choose to keep the record permanently.")),
    (re.compile(r"^(?P<field>\w+): required$"), _l("%(field)s: this field is required.")),
    (re.compile(r"^(?P<field>\w+): at most (?P<n>\d+) characters$"),
     _l("%(field)s: at most %(n)s characters.")),
    (re.compile(r"^(?P<field>\w+): must not contain control characters$"),
     _l("%(field)s: must not contain control characters.")),
    (re.compile(r"^(?P<field>\w+): expected YYYY-MM-DD"), _l("%(field)s: not a valid date.")),
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

# Why a record may not be destroyed now (archive/retention.is_due, and the skips of an
# execution in preservation/destruction.py): clauses, also met alone in the audit log.
_NOT_DUE: list[tuple[re.Pattern, object]] = [
    (re.compile(r"^the record is kept permanently$"), _l("the record is kept permanently")),
    (re.compile(r"^the record is (?P<status>[\w-]+)$"),
     _l("the record's status is: %(status)s")),
    (re.compile(r"^its retention runs until (?P<until>[\d-]+)$"),
     _l("its retention runs until %(until)s")),
    (re.compile(r"^it is sealed$"), _l("it is sealed")),
    (re.compile(r"^it is on hold$"), _l("it is on hold")),
    (re.compile(r"^it is on another open destruction list$"),
     _l("it is on another destruction list that is not closed")),
    (re.compile(r"^refused by the policy: (?P<reason>.+)$"),
     _l("refused by the access rules: %(reason)s")),
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


def _clause(text: str) -> str | None:
    """Why a record is not due for destruction, as a clause; None when unknown."""
    for pattern, message in _NOT_DUE:
        match = pattern.search(text)
        if match:
            return _fill(message, match.groupdict())
    return None


def _nested(reason: str) -> str | None:
    explained = explain_reason(reason)
    return explained.rstrip(".") if explained != reason else None


# How a reason's named parts are shown; None from one of them: the reason is not known.
_PARTS = {
    "level": lambda v: label(CLASSIFICATIONS, v),
    "role": lambda v: label(ROLES, v),
    "action": lambda v: label(ACTIONS, v),
    "status": lambda v: label(STATUSES, v),
    "list_status": lambda v: label(DESTRUCTION_STATUSES, v),
    "field": lambda v: label(FORM_FIELDS, v),
    "until": lambda v: show_date(v),
    "current": lambda v: show_date(v),
    "started": lambda v: show_time(v),
    "why": lambda v: _clause(v) or _nested(v),
    "reason": _nested,
}


def _fill(message, values: dict) -> str | None:
    for name, show in _PARTS.items():
        if name in values:
            values[name] = show(values[name])
            if values[name] is None:
                return None
    return str(message) % values if values else str(message)


def explain_reason(reason: str | None) -> str:
    """The policy's reason (or a service's refusal) in the user's language (the original
    when unknown)."""
    if not reason:
        return ""
    for pattern, message in _REASONS:
        match = pattern.search(reason)
        if match:
            explained = _fill(message, match.groupdict())
            return reason if explained is None else explained
    clause = _clause(reason)  # a skip of an execution, in the audit log
    if clause is not None:
        return clause[:1].upper() + clause[1:] + "."
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
