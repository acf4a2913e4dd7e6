"""Descriptive metadata of a record, following Vietnamese clerical practice (R-META-1).

``validate_metadata`` checks every field and reports *all* problems at once, so a
clerk fixes a sidecar file in one go. Classification rules (R-CLASS-1) that are
refusals rather than typos raise :class:`~archive.errors.Refused`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime

from archive.errors import FieldProblem, MetadataInvalid, Refused
from archive.settings import Settings

# Classification codes and the spellings clerks use for them (R-CLASS-1).
CLASSIFICATIONS = {
    "normal": "normal", "thuong": "normal", "thường": "normal",
    "mat": "mat", "mật": "mat",
    "toi-mat": "toi-mat", "toi mat": "toi-mat", "tối mật": "toi-mat", "tối-mật": "toi-mat",
}
OUT_OF_SCOPE_CLASSIFICATIONS = {"tuyet-mat", "tuyet mat", "tuyệt mật", "tuyệt-mật"}
CLASSIFICATION_LABELS = {"normal": "Thường", "mat": "Mật", "toi-mat": "Tối mật"}

REQUIRED = ("number_symbol", "doc_type", "date", "issuing_org", "summary", "signer",
            "classification", "retention_rule", "fonds", "page_count", "language")
OPTIONAL = ("file_ref", "signer_position", "signer_id", "title", "recipients",
            "sent_at", "received_at", "notes")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class DescriptiveMetadata:
    number_symbol: str
    doc_type: str
    date: date
    issuing_org: str
    summary: str
    signer: str
    classification: str
    retention_rule: str
    fonds: str
    page_count: int
    language: str
    file_ref: str | None = None
    signer_position: str | None = None
    signer_id: str | None = None
    title: str | None = None
    recipients: tuple[str, ...] = ()
    sent_at: datetime | None = None
    received_at: datetime | None = None
    notes: str | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """JSON-ready dict (ISO dates), as stored in the AIP's record.json."""
        out = {}
        for key, value in asdict(self).items():
            if key == "extra":
                continue
            if value is None or value == ():
                continue
            if isinstance(value, datetime | date):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out

    def extra_fields(self) -> dict:
        """Fields kept in the catalog's ``extra`` JSON column."""
        data = self.to_json()
        return {k: data[k] for k in ("signer_position", "signer_id", "title", "recipients",
                                     "sent_at", "received_at", "notes") if k in data}


def validate_metadata(
    raw: object,
    settings: Settings,
    *,
    source: str = "metadata",
    today: date | None = None,
    org_registered: Callable[[str], bool] | None = None,
) -> DescriptiveMetadata:
    """Validate ``raw`` (parsed JSON) and return normalised metadata.

    Raises MetadataInvalid listing every bad field, or Refused for a classification
    the archive must not hold.
    """
    if not isinstance(raw, dict):
        raise MetadataInvalid(source, [FieldProblem("(document)", "must be a JSON object")])
    today = today or datetime.now(UTC).date()
    problems: list[FieldProblem] = []
    out: dict = {}

    def bad(name: str, message: str) -> None:
        problems.append(FieldProblem(name, message))

    for key in raw:
        if key not in REQUIRED and key not in OPTIONAL:
            bad(key, "unknown field (allowed: " + ", ".join(REQUIRED + OPTIONAL) + ")")
    for key in REQUIRED:
        if key not in raw or raw[key] is None or raw[key] == "":
            bad(key, "required field is missing")

    def text(name: str, max_len: int, multiline: bool = False) -> str | None:
        if name not in raw or raw[name] in (None, ""):
            return None
        value = raw[name]
        if not isinstance(value, str):
            bad(name, "must be text")
            return None
        value = unicodedata.normalize("NFC", value.strip())
        if not value:
            bad(name, "must not be blank")
            return None
        if _CONTROL.search(value) or (not multiline and ("\n" in value or "\r" in value)):
            bad(name, "contains control characters or line breaks")
            return None
        if len(value) > max_len:
            bad(name, f"longer than {max_len} characters")
            return None
        return value

    out["number_symbol"] = text("number_symbol", 100)
    out["summary"] = text("summary", 2000, multiline=True)
    out["signer"] = text("signer", 300)
    out["fonds"] = text("fonds", 100)
    out["file_ref"] = text("file_ref", 100)
    out["signer_position"] = text("signer_position", 200)
    out["title"] = text("title", 500)
    out["notes"] = text("notes", 4000, multiline=True)

    def configured(name: str, max_len: int, table, what: str) -> str | None:
        value = text(name, max_len)
        if value is not None and value not in table:
            bad(name, f"unknown {what} {value!r} (configured: "
                      + ", ".join(sorted(table)) + ")")
            return None
        return value

    out["doc_type"] = configured("doc_type", 50, settings.document_types, "document type")
    out["retention_rule"] = configured("retention_rule", 32, settings.retention,
                                       "retention rule")

    language = text("language", 8)
    if language is not None:
        language = language.lower()
        if language not in settings.metadata.languages:
            bad("language", f"unsupported language code {language!r} (accepted: "
                            + ", ".join(settings.metadata.languages) + ")")
            language = None
    out["language"] = language

    out["date"] = None
    if isinstance(raw.get("date"), str) and raw["date"]:
        try:
            d = date.fromisoformat(raw["date"])
        except ValueError:
            bad("date", f"not a date in YYYY-MM-DD form: {raw['date']!r}")
        else:
            if d > today:
                bad("date", f"{d.isoformat()} is in the future")
            elif d.year < 1900:
                bad("date", f"{d.isoformat()} is before 1900")
            else:
                out["date"] = d
    elif "date" in raw and raw["date"] not in (None, ""):
        bad("date", "must be a date string in YYYY-MM-DD form")

    org_pattern = re.compile(settings.identifiers.organisation_pattern)
    person_pattern = re.compile(settings.identifiers.person_pattern)
    org = text("issuing_org", 64)
    if org is not None:
        if not org_pattern.fullmatch(org):
            bad("issuing_org", f"{org!r} does not follow the organisation identifier scheme "
                               f"{settings.identifiers.organisation_pattern}")
            org = None
        elif org_registered is not None and not org_registered(org):
            bad("issuing_org", f"organisation {org!r} is not registered "
                               "(register it with `archive agents add-org`)")
            org = None
    out["issuing_org"] = org

    signer_id = text("signer_id", 64)
    if signer_id is not None and not person_pattern.fullmatch(signer_id):
        bad("signer_id", f"{signer_id!r} does not follow the person identifier scheme "
                         f"{settings.identifiers.person_pattern}")
        signer_id = None
    out["signer_id"] = signer_id

    recipients: list[str] = []
    if raw.get("recipients") is not None:
        value = raw["recipients"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            bad("recipients", "must be a list of organisation identifiers")
        else:
            for v in value:
                if not org_pattern.fullmatch(v.strip()):
                    bad("recipients", f"{v!r} does not follow the organisation identifier "
                                      "scheme")
                else:
                    recipients.append(v.strip())
    out["recipients"] = tuple(recipients)

    for name in ("sent_at", "received_at"):
        out[name] = None
        value = raw.get(name)
        if value in (None, ""):
            continue
        if not isinstance(value, str):
            bad(name, "must be an ISO 8601 date-time string")
            continue
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            bad(name, f"not an ISO 8601 date-time: {value!r}")
            continue
        if moment.tzinfo is None:
            bad(name, "must include a time zone offset (e.g. +07:00)")
            continue
        out[name] = moment

    out["page_count"] = None
    if "page_count" in raw and raw["page_count"] not in (None, ""):
        value = raw["page_count"]
        if isinstance(value, bool) or not isinstance(value, int):
            bad("page_count", "must be a whole number")
        elif not 1 <= value <= 100_000:
            bad("page_count", "must be between 1 and 100000")
        else:
            out["page_count"] = value

    out["classification"] = None
    value = raw.get("classification")
    if isinstance(value, str) and value:
        key = unicodedata.normalize("NFC", value.strip().lower())
        if key in OUT_OF_SCOPE_CLASSIFICATIONS:
            # R-CLASS-1: "tuyệt mật" records are out of this system's scope.
            raise Refused(f"{source}: classification 'tuyệt mật' (top secret) documents "
                          "must not be stored in this archive (R-CLASS-1)")
        if key not in CLASSIFICATIONS:
            bad("classification", f"unknown classification {value!r} "
                                  "(accepted: normal, mat / mật, toi-mat / tối mật)")
        else:
            out["classification"] = CLASSIFICATIONS[key]
    elif value not in (None, ""):
        bad("classification", "must be text")

    if problems:
        raise MetadataInvalid(source, problems)
    return DescriptiveMetadata(**out)


def retention_until(meta: DescriptiveMetadata, settings: Settings) -> date | None:
    """End of the retention period, or None for permanent records."""
    rule = settings.retention[meta.retention_rule]
    if rule.period is None:
        return None
    start = getattr(meta, rule.counted_from, None) or meta.date
    if isinstance(start, datetime):
        start = start.date()
    try:
        return start.replace(year=start.year + rule.period)
    except ValueError:  # 29 February
        return start.replace(year=start.year + rule.period, day=28)
