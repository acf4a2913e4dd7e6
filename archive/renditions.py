"""Paper renditions with a verification QR code (R-CONV-2, Art. 16.3-4).

"Print" makes a PDF of the record's full content with a footer on every page (this
system and its owner, the document's identifier, the converter, the time, the
rendition's id and a QR code of its public verification URL). Each rendition is
registered with its own id, stored under ``renditions/<record id>/<rendition id>.pdf``
(storage first, catalog second) and recorded as a ``rendition`` event and an audit
entry. The public verification page says only whether the record is still valid
(valid | revoked | destroyed | unknown), its number, issuing body and date, and when:
never its content, summary or signer; for a classified or sealed record only the
status and the times.

The PDF itself is drawn by a :class:`Renderer` (a port: the pyHanko implementation
lives in the access layer, ``access/rendition_pdf.py``), since the rendition id must
be inside the PDF before it is stored: the id is made first, then the original is
read (verified and decrypted as it streams), rendered, stored and registered.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import BinaryIO, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from archive import audit, policy
from archive.clock import Clock, SystemClock
from archive.errors import InputError, IntegrityError, NotFound, ObjectExists, Refused
from archive.models import Agent, Event, Record, Rendition, Revocation
from archive.principal import ANONYMOUS, Principal
from archive.storage import ObjectStore

PREFIX = "renditions/"
STATUSES = ("valid", "revoked", "destroyed", "unknown")
# The PDF read into memory to render it: an original larger than this is refused.
MAX_ORIGINAL_BYTES = 512 * 1024 * 1024


def vietnam_time() -> timezone:
    """Asia/Ho_Chi_Minh (UTC+07:00 all year: no daylight saving since 1975)."""
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo("Asia/Ho_Chi_Minh")  # type: ignore[return-value]
    except (ImportError, KeyError, OSError, ValueError):
        return timezone(timedelta(hours=7), "ICT")


class UnrenderableOriginal(Refused):
    """The original is not a PDF the renderer can read (damaged, password-protected,
    not a PDF): no rendition is made."""

    def __init__(self, record_id: str, reason: str):
        self.record_id = record_id
        self.reason = reason
        super().__init__(f"record {record_id}: no paper rendition can be made of its "
                         f"original: {reason}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(record_id=self.record_id, reason=self.reason)
        return d


@dataclass(frozen=True)
class Footer:
    """What the footer of every page says (R-CONV-2)."""

    system_name: str
    owner_name: str
    record_id: str
    number_symbol: str
    converter: str
    made_at: datetime  # aware; shown in Vietnam time
    rendition_id: str
    verify_url: str

    @property
    def local_time(self) -> datetime:
        return self.made_at.astimezone(vietnam_time())


@dataclass(frozen=True)
class RenderedPdf:
    data: bytes
    page_count: int


class Renderer(Protocol):
    """Draws the rendition: every page of ``original`` with ``footer`` on it."""

    def render(self, original: bytes, footer: Footer) -> RenderedPdf: ...


def storage_key(record_id: str, rendition_id: str) -> str:
    return f"{PREFIX}{record_id}/{rendition_id}.pdf"


def verify_url(public_url: str, rendition_id: str) -> str:
    return f"{public_url.rstrip('/')}/verify/{rendition_id}"


def _record(session: Session, record_id: str) -> Record:
    record = session.scalar(select(Record).where(Record.id == record_id)
                            .options(selectinload(Record.issuing_org)))
    if record is None:
        raise NotFound(f"no record with id {record_id!r}")
    return record


def _not_found_audited(exc: NotFound, principal, action: str, record_id: str,
                       client: str) -> NotFound:
    exc.audit_after_rollback = {"principal": principal, "action": action,
                                "target": f"record:{record_id}", "outcome": "not_found",
                                "client": client}
    return exc


def converter_name(session: Session, principal: Principal) -> str:
    """The acting person's registered name (R-ID-1), else how the principal is shown."""
    if principal.person:
        person = session.scalar(select(Agent).where(Agent.identifier == principal.person))
        if person is not None:
            return person.name
    return principal.display or str(principal)


# ---- making a rendition -------------------------------------------------------------


def register_rendition(session: Session, store: ObjectStore, principal: Principal,
                       record_id: str, *, rendition_id: str,
                       pdf_bytes_or_stream: bytes | BinaryIO, converter: str,
                       page_count: int, verify_url: str, client: str = "",
                       clock: Clock | None = None, made_at: datetime | None = None
                       ) -> Rendition:
    """Store a rendered PDF and register it (R-CONV-2), in the caller's unit of work.

    The policy (RENDER: a clerk or archivist with a strong login; not for a sealed,
    destroyed or revoked record) is asked first; then the PDF is stored put-if-absent
    under its own key, then the row, the ``rendition`` event (carried into the next AIP
    version) and the audit entry are added. ``made_at``: the time printed on the
    rendition (default: now).
    """
    clock = clock or SystemClock()
    try:
        record = _record(session, record_id)
    except NotFound as exc:
        raise _not_found_audited(exc, principal, policy.RENDER, record_id, client) from None
    policy.require(principal, policy.RENDER, policy.facts_of(record), client=client)
    try:
        rendition_id = str(uuid.UUID(rendition_id))
    except ValueError as exc:
        raise InputError(f"rendition id {rendition_id!r} is not a UUID") from exc
    data = pdf_bytes_or_stream if isinstance(pdf_bytes_or_stream, bytes) \
        else pdf_bytes_or_stream.read()
    if not data.startswith(b"%PDF-"):
        raise InputError("a rendition must be a PDF")
    if page_count < 1:
        raise InputError("a rendition has at least one page")
    key = storage_key(record_id, rendition_id)
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        put = store.put(key, io.BytesIO(data), size=len(data), sha256=sha256)
    except ObjectExists as exc:
        raise Refused(f"rendition {rendition_id} is already stored: ids are never "
                      "reused") from exc
    now = made_at or clock.now()
    row = Rendition(id=rendition_id, record_id=record_id, created_at=now,
                    created_by=str(principal), converter=converter, storage_key=put.key,
                    sha256=sha256, size=len(data), page_count=page_count,
                    verify_url=verify_url)
    session.add(row)
    session.add(Event(id=str(uuid.uuid4()), record_id=record_id, event_type="rendition",
                      occurred_at=now, agent=str(principal), outcome="success",
                      detail=f"paper rendition {rendition_id} made by {converter} "
                             f"({page_count} pages, verification {verify_url})",
                      data={"rendition_id": rendition_id, "sha256": sha256,
                            "storage_key": put.key, "pages": page_count,
                            "converter": converter}))
    audit.append(session, principal, "record.render", f"record:{record_id}", client=client,
                 clock=clock, detail={"rendition_id": rendition_id, "sha256": sha256,
                                      "size": len(data), "pages": page_count,
                                      "storage_key": put.key})
    session.flush()
    return row


@dataclass(frozen=True)
class Produced:
    rendition: Rendition
    pdf: bytes


def produce_rendition(catalog, store: ObjectStore, settings, principal: Principal,
                      record_id: str, *, renderer: Renderer, vault=None, client: str = "",
                      clock: Clock | None = None) -> Produced:
    """The whole "Print" use case: id first, read the original, render, store, register.

    The original is read through :func:`archive.records.open_original` (digests
    checked while streaming; decrypted when classified), after the policy allowed the
    rendition. The catalog is not locked while the PDF is drawn; the policy is asked
    again when the rendition is registered (a seal or revocation in between wins).
    """
    from archive.records import open_original

    clock = clock or SystemClock()
    rendition_id = str(uuid.uuid4())
    url = verify_url(settings.renditions.public_url, rendition_id)
    with catalog.unit_of_work() as session:
        try:
            record = _record(session, record_id)
        except NotFound as exc:
            raise _not_found_audited(exc, principal, policy.RENDER, record_id,
                                     client) from None
        policy.require(principal, policy.RENDER, policy.facts_of(record), client=client)
        footer = Footer(system_name=settings.archive.system_name,
                        owner_name=settings.archive.owner_name, record_id=record.id,
                        number_symbol=record.number_symbol,
                        converter=converter_name(session, principal), made_at=clock.now(),
                        rendition_id=rendition_id, verify_url=url)
        stored, reader = open_original(session, store, principal, record_id, client=client,
                                       clock=clock, vault=vault)
    try:
        with reader:
            original = _read_all(reader, record_id)
        rendered = renderer.render(original, footer)
    except IntegrityError as exc:  # R-FIX-1: the stored original did not match its digests
        from archive.records import report_retrieval_failure

        with catalog.unit_of_work() as session:
            report_retrieval_failure(session, principal, record_id, exc.message,
                                     client=client, clock=clock)
        raise
    except UnrenderableOriginal as exc:
        with catalog.unit_of_work() as session:
            audit.append(session, principal, "record.render", f"record:{record_id}",
                         outcome="failed", client=client, clock=clock,
                         detail={"rendition_id": rendition_id, "reason": exc.reason})
        raise
    with catalog.unit_of_work() as session:
        row = register_rendition(session, store, principal, record_id,
                                 rendition_id=rendition_id, pdf_bytes_or_stream=rendered.data,
                                 converter=footer.converter,
                                 page_count=rendered.page_count, verify_url=url,
                                 client=client, clock=clock, made_at=footer.made_at)
    return Produced(row, rendered.data)


def _read_all(reader: BinaryIO, record_id: str) -> bytes:
    """The whole verified original (an IntegrityError is raised by the final read)."""
    chunks, total = [], 0
    while chunk := reader.read(1024 * 1024):
        total += len(chunk)
        if total > MAX_ORIGINAL_BYTES:
            raise UnrenderableOriginal(record_id, f"larger than {MAX_ORIGINAL_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# ---- reading ------------------------------------------------------------------------


def list_renditions(session: Session, principal: Principal, record_id: str, *,
                    client: str = "", clock: Clock | None = None) -> list[Rendition]:
    """Every rendition of a record, oldest first (policy VIEW; the read is audited)."""
    try:
        record = _record(session, record_id)
    except NotFound as exc:
        raise _not_found_audited(exc, principal, "record.renditions", record_id,
                                 client) from None
    policy.require(principal, policy.VIEW, policy.facts_of(record), client=client)
    rows = list(session.scalars(select(Rendition).where(Rendition.record_id == record_id)
                                .order_by(Rendition.created_at, Rendition.id)))
    audit.append(session, principal, "record.renditions", f"record:{record_id}",
                 client=client, clock=clock, detail={"renditions": len(rows)})
    return rows


def rendition_to_dict(row: Rendition) -> dict:
    return {"id": row.id, "record_id": row.record_id,
            "created_at": row.created_at.isoformat(), "created_by": row.created_by,
            "converter": row.converter, "pages": row.page_count, "size": row.size,
            "sha256": row.sha256, "verify_url": row.verify_url}


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def verification(session: Session, rendition_id: str, *, client: str = "",
                 clock: Clock | None = None) -> dict:
    """What the public verification page says about a rendition (R-CONV-2).

    Nothing of the content: the status (valid | revoked | destroyed | unknown), when
    the rendition was made and when the record was revoked or destroyed; the number,
    issuing body and date only for an unclassified, unsealed record. Every check is
    audited (actor anonymous, the client's address, the status found).
    """
    row = None
    try:
        wanted = str(uuid.UUID(rendition_id))
    except (ValueError, TypeError, AttributeError):
        wanted = None
    if wanted is not None:
        row = session.scalar(select(Rendition).where(Rendition.id == wanted)
                             .options(selectinload(Rendition.record)
                                      .selectinload(Record.issuing_org)))
    target = f"rendition:{(rendition_id or '')[:80]}"
    if row is None:
        audit.append(session, ANONYMOUS, "rendition.verify", target, outcome="not_found",
                     client=client, clock=clock, detail={"status": "unknown"})
        return {"rendition_id": rendition_id, "status": "unknown"}
    record = row.record
    result: dict = {"rendition_id": row.id, "status": "valid",
                    "rendered_at": _when(row.created_at)}
    if record.status == "destroyed":
        result["status"] = "destroyed"
        result["destroyed_at"] = _when(_destroyed_at(session, record.id))
    elif record.status == "revoked":
        result["status"] = "revoked"
        result["revoked_at"] = _when(_revoked_at(session, record.id))
    limited = record.classification != "normal" or record.active_seal is not None
    if not limited:
        result.update(number_symbol=record.number_symbol,
                      issuing_org=record.issuing_org.name if record.issuing_org else None,
                      date=record.doc_date.isoformat())
    result["limited"] = limited
    audit.append(session, ANONYMOUS, "rendition.verify", f"rendition:{row.id}",
                 client=client, clock=clock,
                 detail={"status": result["status"], "record_id": record.id})
    return result


def _revoked_at(session: Session, record_id: str) -> datetime | None:
    return session.scalar(select(Revocation.decided_at)
                          .where(Revocation.record_id == record_id,
                                 Revocation.action == "revoke")
                          .order_by(Revocation.decided_at.desc()).limit(1))


def _destroyed_at(session: Session, record_id: str) -> datetime | None:
    return session.scalar(select(Event.occurred_at)
                          .where(Event.record_id == record_id,
                                 Event.event_type.in_(("destruction", "deletion")),
                                 Event.outcome == "success")
                          .order_by(Event.occurred_at.desc()).limit(1))
