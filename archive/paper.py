"""The register of paper originals whose digitised copies are archived (R-CONV-1).

A paper original is known by its reference: where the paper is registered and kept
(the incoming/outgoing register number, the archive box ...). A digitised copy is an
archived record with ``origin = "digitised"`` linked to it; revoking the paper
original revokes its copies (``archive.revocation``). After an outage (R-INCIDENT-1)
documents handled on paper are brought in this way with their original dates.

The digitisation use case itself (assemble, sign with the organisation's key, ingest)
lives in ``ingest/digitise.py``; this module holds the catalog side: the register,
the link made in the ingest's transaction, and the audited reads.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from archive import audit, policy
from archive.clock import Clock, SystemClock
from archive.errors import InputError, NotFound, Refused
from archive.models import Event, PaperOriginal, Record
from archive.principal import Principal

ORIGIN_DIGITISED = "digitised"
EVENT_TYPE = "digitization"  # PREMIS 3 eventType vocabulary (id.loc.gov): "digitization"
REFERENCE_MAX = 200
TEXT_MAX = 2000
HOLDER_MAX = 500
STATUSES = ("active", "revoked")


def clean_text(value: str | None, name: str, limit: int, *, required: bool = False) -> str:
    """A free-text field as given, stripped; refused when too long or with control
    characters (they would make the register unreadable)."""
    text = (value or "").strip()
    if required and not text:
        raise InputError(f"{name}: required")
    if len(text) > limit:
        raise InputError(f"{name}: at most {limit} characters")
    if any(ord(c) < 32 and c not in "\n\t" for c in text):
        raise InputError(f"{name}: must not contain control characters")
    return text


def check_reference(reference: str | None) -> str:
    text = clean_text(reference, "paper reference (where the paper original is registered "
                      "and kept)", REFERENCE_MAX, required=True)
    if "\n" in text or "\t" in text:
        raise InputError("paper reference: one line of text")
    return text


def find_paper_original(session: Session, reference: str) -> PaperOriginal | None:
    return session.scalar(select(PaperOriginal).where(PaperOriginal.reference == reference))


def check_may_digitise(session: Session, principal: Principal, reference: str, *,
                       client: str = "") -> PaperOriginal | None:
    """Refuse early what the digitisation would be refused for: a clerk without a
    strong login (R-AUTH-1: MFA or a certificate) or a revoked paper original.

    Call inside a unit of work: a denial is rolled back and audited there."""
    policy.require(principal, policy.INGEST, client=client)
    paper = find_paper_original(session, check_reference(reference))
    if paper is not None and paper.status != "active":
        raise Refused(f"the paper original {reference!r} is {paper.status}: its copies are "
                      "not valid, so it is not digitised again")
    return paper


@dataclass(frozen=True)
class DigitisationFacts:
    """What the digitisation event records (R-CONV-1, R-HIST-1)."""

    paper_reference: str
    paper_description: str
    paper_holder: str
    pages: int
    sources: list[dict]  # [{"name", "sha256", "size", "format"}] in page order
    organisation: str
    certificate_sha256: str
    certificate_subject: str
    signed_sha256: str
    qr_url: str | None = None
    key_source: str = "file"  # file | pkcs11
    timestamped: bool = False

    def to_dict(self) -> dict:
        return {"paper_reference": self.paper_reference, "pages": self.pages,
                "sources": self.sources, "organisation": self.organisation,
                "certificate_sha256": self.certificate_sha256,
                "certificate_subject": self.certificate_subject,
                "signed_sha256": self.signed_sha256, "qr_url": self.qr_url,
                "key_source": self.key_source, "timestamped": self.timestamped}


def link_digitised_copy(session: Session, principal: Principal, record: Record,
                        facts: DigitisationFacts, *, client: str = "",
                        clock: Clock | None = None) -> PaperOriginal:
    """In the transaction registering ``record``: find or create the paper original,
    mark the record a digitised copy of it, add the PREMIS event and audit entries."""
    clock = clock or SystemClock()
    now = clock.now()
    paper = find_paper_original(session, facts.paper_reference)
    if paper is None:
        paper = PaperOriginal(id=str(uuid.uuid4()), reference=facts.paper_reference,
                              description=facts.paper_description,
                              holder=facts.paper_holder, status="active", created_at=now,
                              created_by=str(principal))
        session.add(paper)
        session.flush()
        audit.append(session, principal, "paper.register", f"paper:{paper.id}",
                     detail={"reference": paper.reference, "holder": paper.holder},
                     client=client, clock=clock)
    elif paper.status != "active":  # revoked between the check and now
        raise Refused(f"the paper original {paper.reference!r} is {paper.status}")
    record.origin = ORIGIN_DIGITISED
    record.paper_original_id = paper.id
    sources = ", ".join(f"{s['name']} (SHA-256 {s['sha256']})" for s in facts.sources)
    session.add(Event(
        id=str(uuid.uuid4()), record_id=record.id, event_type="digitization",
        occurred_at=now, agent=str(principal), outcome="success",
        detail=f"digitised copy of the paper original {paper.reference}: {facts.pages} "
               f"page(s) from {sources}; signed by the organisation {facts.organisation} "
               f"(certificate SHA-256 {facts.certificate_sha256})",
        data={**facts.to_dict(), "paper_original_id": paper.id}))
    audit.append(session, principal, "record.digitise", f"record:{record.id}",
                 detail={"paper_reference": paper.reference, "paper_original_id": paper.id,
                         "pages": facts.pages, "organisation": facts.organisation,
                         "certificate_sha256": facts.certificate_sha256,
                         "signed_sha256": facts.signed_sha256},
                 client=client, clock=clock)
    return paper


# ---- reads (audited) ------------------------------------------------------------------


def _visible_copies(session: Session, principal: Principal, paper: PaperOriginal
                    ) -> list[Record]:
    rows = session.scalars(select(Record).where(Record.paper_original_id == paper.id)
                           .order_by(Record.created_at, Record.id))
    return [r for r in rows if policy.decide(principal, policy.VIEW, policy.facts_of(r))]


def list_paper_originals(session: Session, principal: Principal, *,
                         text: str | None = None, status: str | None = None,
                         limit: int = 50, offset: int = 0, client: str = "",
                         clock: Clock | None = None
                         ) -> tuple[int, list[tuple[PaperOriginal, int]]]:
    """Paper originals (newest first) with the number of their copies the principal
    may see."""
    policy.require(principal, policy.SEARCH, client=client)
    if status is not None and status not in STATUSES:
        raise InputError(f"status: expected one of {', '.join(STATUSES)}")
    query = select(PaperOriginal)
    if text:
        like = f"%{text.lower()}%"
        query = query.where(or_(func.lower(PaperOriginal.reference).like(like),
                                func.lower(PaperOriginal.description).like(like),
                                func.lower(PaperOriginal.holder).like(like)))
    if status:
        query = query.where(PaperOriginal.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = list(session.scalars(query.order_by(PaperOriginal.created_at.desc(),
                                               PaperOriginal.reference)
                                .limit(limit).offset(offset)))
    out = [(p, len(_visible_copies(session, principal, p))) for p in rows]
    audit.append(session, principal, "paper.list", "paper-originals",
                 detail={"text": text, "status": status, "returned": len(out),
                         "total": total}, client=client, clock=clock)
    return total, out


def show_paper_original(session: Session, principal: Principal, reference: str, *,
                        client: str = "", clock: Clock | None = None
                        ) -> tuple[PaperOriginal, list[Record]]:
    """The paper original and the digitised copies the principal may see."""
    policy.require(principal, policy.SEARCH, client=client)
    paper = find_paper_original(session, reference)
    if paper is None:
        exc = NotFound(f"no paper original with reference {reference!r}")
        exc.audit_after_rollback = {"principal": principal, "action": "paper.view",
                                    "target": f"paper-ref:{reference[:150]}",
                                    "outcome": "not_found", "client": client}
        raise exc
    copies = _visible_copies(session, principal, paper)
    audit.append(session, principal, "paper.view", f"paper:{paper.id}",
                 detail={"reference": paper.reference, "copies": len(copies)},
                 client=client, clock=clock)
    return paper, copies


def paper_to_dict(paper: PaperOriginal, copies: list[Record] | None = None,
                  copy_count: int | None = None) -> dict:
    data = {"id": paper.id, "reference": paper.reference, "description": paper.description,
            "holder": paper.holder, "status": paper.status,
            "created_at": paper.created_at.isoformat(), "created_by": paper.created_by}
    if copies is not None:
        data["copies"] = [{"record_id": r.id, "number_symbol": r.number_symbol,
                           "date": r.doc_date.isoformat(), "status": r.status,
                           "created_at": r.created_at.isoformat()} for r in copies]
    if copy_count is not None:
        data["copies"] = copy_count
    return data
