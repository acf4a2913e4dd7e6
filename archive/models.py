"""Catalog tables (SQLAlchemy 2). The schema is owned by Alembic migrations in
``archive/migrations``; a test checks that the models and migrations agree.

Only services in ``archive/`` (and the ingest/preservation services built on them)
change these rows, always together with an audit entry in the same transaction.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class _UTCDateTime(TypeDecorator):
    """A timestamp that is always an aware UTC ``datetime`` in Python, on every database.

    SQLite has no time zones: a plain ``DateTime(timezone=True)`` stores the wall-clock
    time of whatever zone it is given and reads back a naive value, so 10:00+07:00 would
    come back as 10:00 (an instant 7 hours off) and string comparisons would mix zones.
    Values are converted to UTC on the way in and marked UTC on the way out; a naive
    value is refused (its zone is unknown).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} refused: use an aware "
                             "datetime (the clock port gives UTC)")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


UTCDateTime = _UTCDateTime()


class Agent(Base):
    """A person, organisation or system with one unique electronic identifier (R-ID-1)."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # person | organisation | system
    identifier: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(500))
    # Organisation a person belongs to, or parent body of an organisation.
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    position: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | inactive
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Where notifications to this agent are delivered (R-REVOKE-1), besides being listed.
    email: Mapped[str | None] = mapped_column(String(320))
    webhook_url: Mapped[str | None] = mapped_column(String(1000))

    parent: Mapped[Agent | None] = relationship(remote_side=[id], lazy="joined", join_depth=1)


class Record(Base):
    """One archived document (R-META-1 descriptive metadata + lifecycle state)."""

    __tablename__ = "records"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID
    number_symbol: Mapped[str] = mapped_column(String(100))  # số và ký hiệu
    doc_type: Mapped[str] = mapped_column(String(50))
    doc_date: Mapped[date] = mapped_column(Date)
    issuing_org_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    summary: Mapped[str] = mapped_column(Text)  # trích yếu
    signer: Mapped[str] = mapped_column(String(300))
    classification: Mapped[str] = mapped_column(String(16))  # normal | mat | toi-mat
    retention_rule: Mapped[str] = mapped_column(String(32))
    retention_until: Mapped[date | None] = mapped_column(Date)  # None = permanent
    fonds: Mapped[str] = mapped_column(String(100))  # phông
    file_ref: Mapped[str | None] = mapped_column(String(100))  # hồ sơ
    page_count: Mapped[int] = mapped_column(Integer)
    language: Mapped[str] = mapped_column(String(8))
    # Everything else from the metadata (recipients, sent/received times ...), as given.
    extra: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active|revoked|destroyed
    # SHA-256 of the original file: the same file is never archived twice.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    format_puid: Mapped[str | None] = mapped_column(String(32))
    format_name: Mapped[str | None] = mapped_column(String(200))
    pdfa: Mapped[str | None] = mapped_column(String(16))  # PDF/A conformance, e.g. "2b"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    # R-CONV-1: born-digital, or a digitised copy of a paper original.
    origin: Mapped[str] = mapped_column(String(16), default="born-digital",
                                        server_default="born-digital")
    paper_original_id: Mapped[str | None] = mapped_column(ForeignKey("paper_originals.id"))

    issuing_org: Mapped[Agent] = relationship()
    versions: Mapped[list[PackageVersion]] = relationship(
        back_populates="record", order_by="PackageVersion.version")
    # Every seal ever put on the record (R-SEAL-1); at most one is active at a time.
    seals: Mapped[list[Seal]] = relationship(secondary="seal_records", viewonly=True,
                                             order_by="Seal.sealed_at")
    paper_original: Mapped[PaperOriginal | None] = relationship(lazy="selectin")

    @property
    def active_seal(self) -> Seal | None:
        return next((s for s in self.seals if s.status == "active"), None)

    __table_args__ = (
        Index("ix_records_doc_date", "doc_date"),
        Index("ix_records_number_symbol", "number_symbol"),
        # destruction proposals scan expired records (R-DESTROY-1)
        Index("ix_records_retention_until", "retention_until"),
    )


class PackageVersion(Base):
    """One stored AIP version: an immutable serialised bag under one storage key."""

    __tablename__ = "package_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"))
    version: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(500), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    digests: Mapped[dict] = mapped_column(JSON)  # algorithm -> hex, of the whole object
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_fixity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_fixity_outcome: Mapped[str | None] = mapped_column(String(16))

    record: Mapped[Record] = relationship(back_populates="versions")
    files: Mapped[list[StoredFile]] = relationship(
        back_populates="package", order_by="StoredFile.offset")

    __table_args__ = (UniqueConstraint("record_id", "version"),
                      # the fixity cycle picks the least recently checked (R-FIX-1)
                      Index("ix_package_versions_last_fixity_at", "last_fixity_at"))


class StoredFile(Base):
    """A file inside a stored bag, with its byte range in the serialised object."""

    __tablename__ = "stored_files"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    package_id: Mapped[int] = mapped_column(ForeignKey("package_versions.id"))
    path: Mapped[str] = mapped_column(String(1000))  # path inside the bag, e.g. data/content/x.pdf
    role: Mapped[str] = mapped_column(String(16))  # original | metadata | tag
    offset: Mapped[int] = mapped_column(BigInteger)  # first byte of content in the object
    size: Mapped[int] = mapped_column(BigInteger)
    digests: Mapped[dict] = mapped_column(JSON)
    format_puid: Mapped[str | None] = mapped_column(String(32))
    mime_type: Mapped[str | None] = mapped_column(String(100))
    original_name: Mapped[str | None] = mapped_column(String(1000))
    # R-CLASS-1: for a file encrypted at rest, how (algorithm, key id, nonce ...);
    # digests above are then of the stored ciphertext. None for plain files.
    encryption: Mapped[dict | None] = mapped_column(JSON)

    package: Mapped[PackageVersion] = relationship(back_populates="files")

    __table_args__ = (UniqueConstraint("package_id", "path"),)


class Event(Base):
    """A PREMIS-style event (ingestion, fixity check, format identification ...)."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # UUID, PREMIS identifier
    record_id: Mapped[str | None] = mapped_column(ForeignKey("records.id"))
    event_type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    agent: Mapped[str] = mapped_column(String(200))  # principal that performed it
    outcome: Mapped[str] = mapped_column(String(16))  # success | failure | warning
    detail: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)

    __table_args__ = (Index("ix_events_record_time", "record_id", "occurred_at"),)


class AuditEntry(Base):
    """One row of the tamper-evident audit log (R-AUDIT-1), hash-chained by ``seq``."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(500))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | denied | failed
    client: Mapped[str] = mapped_column(String(100), default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_audit_log_actor_time", "actor", "occurred_at"),
                      # a record's accesses in its history (R-HIST-1)
                      Index("ix_audit_log_target_seq", "target", "seq"))


class AuditHead(Base):
    """Single row holding the chain head; locking it serialises appenders."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    seq: Mapped[int] = mapped_column(BigInteger)
    entry_hash: Mapped[str] = mapped_column(String(64))


class Certificate(Base):
    """An X.509 certificate bound to one agent (R-ID-1, R-SIG-3).

    Which signature on a document is the person's and which the organisation's is
    decided by this binding, never by signature field names. A revocation recorded
    here takes effect in every later validation.
    """

    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the DER
    subject: Mapped[str] = mapped_column(String(1000))
    issuer: Mapped[str] = mapped_column(String(1000))
    serial: Mapped[str] = mapped_column(String(100))  # hex
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    pem: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revocation_reason: Mapped[str | None] = mapped_column(String(500))
    bound_at: Mapped[datetime] = mapped_column(UTCDateTime)
    bound_by: Mapped[str] = mapped_column(String(200))

    agent: Mapped[Agent] = relationship()

    __table_args__ = (Index("ix_certificates_issuer_serial", "issuer", "serial"),)


class SigningAuthority(Base):
    """A person's authority to sign for an organisation, over a period (R-SIG-1, R-SIG-3).

    A person is a registered signer of an organisation at time T when a row covers T;
    leaving a position closes the period (``valid_until``), it never deletes the row.
    """

    __tablename__ = "signing_authorities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    position: Mapped[str] = mapped_column(String(200))
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    basis: Mapped[str | None] = mapped_column(String(500))  # decision appointing / ending

    person: Mapped[Agent] = relationship(foreign_keys=[person_id])
    organisation: Mapped[Agent] = relationship(foreign_keys=[organisation_id])


class Submission(Base):
    """A received submission that was refused, with its return-to-sender report (R-SIG-2).

    The report (JSON, machine-readable) is also stored in the object store under
    ``reports/<id>.json``; the refused file itself is not archived.
    """

    __tablename__ = "submissions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source_name: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sender_org: Mapped[str | None] = mapped_column(String(64))
    clerk: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))  # refused
    reason: Mapped[str] = mapped_column(Text)
    report: Mapped[dict] = mapped_column(JSON)
    report_key: Mapped[str | None] = mapped_column(String(500))


class Notification(Base):
    """A notification to an agent or a user (refusals now; revocations in #5)."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    recipient: Mapped[str] = mapped_column(String(200))  # agent identifier or principal
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(500))
    body: Mapped[str] = mapped_column(Text)
    related: Mapped[str | None] = mapped_column(String(200))  # e.g. submission:<id>
    channel: Mapped[str] = mapped_column(String(32), default="recorded")
    status: Mapped[str] = mapped_column(String(16), default="recorded")  # recorded|sent|failed
    # Delivery through the configured channels (e-mail, webhook): an outbox drained
    # after the transaction that recorded the notification commits.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)


class User(Base):
    """A person's login to the archive (R-AUTH-1, R-ID-1).

    One user per person identifier and role. Passwords are argon2 hashes; the TOTP
    secret is the second factor (``totp_confirmed`` once the person has enrolled it),
    and ``totp_last_step`` refuses a code from the same or an earlier 30-second step,
    so a code cannot be replayed. ``failed_logins`` / ``locked_until`` drive the
    back-off after failures; ``status = locked`` is an account locked by an
    administrator (lost or compromised), which only an unlock reopens.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    # One login per person (R-ID-1): the person's certificates and second factor
    # authenticate this user.
    person_id: Mapped[int] = mapped_column(ForeignKey("agents.id"), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    clearance: Mapped[str] = mapped_column(String(16), default="normal")
    # Grants: fonds codes and organisation identifiers whose records the user may
    # reach ("*" = all). Empty lists: the person's own organisation.
    fonds: Mapped[list] = mapped_column(JSON, default=list)
    organisations: Mapped[list] = mapped_column(JSON, default=list)
    password_hash: Mapped[str] = mapped_column(Text)
    totp_secret: Mapped[str | None] = mapped_column(String(64))
    totp_confirmed: Mapped[bool] = mapped_column(default=False)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | locked
    lock_reason: Mapped[str | None] = mapped_column(Text)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))

    person: Mapped[Agent] = relationship()


class WebSession(Base):
    """A logged-in browser session; the cookie carries a random token, this row its hash.

    Kept server-side so that logout, expiry and an account lock end it at once.
    ``method`` is how the person authenticated: password (one factor only), totp or
    certificate; R-AUTH-1 decides what a one-factor session may do.
    """

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    client: Mapped[str] = mapped_column(String(100), default="")

    user: Mapped[User] = relationship()


class ApiToken(Base):
    """An API token of an organisation or system principal: scoped, expiring, revocable.

    Only the SHA-256 of the secret is kept; the token is shown once when created.
    """

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    clearance: Mapped[str] = mapped_column(String(16), default="normal")
    fonds: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    agent: Mapped[Agent] = relationship()


# ---- record lifecycle (#5) ----------------------------------------------------------


class RecordLink(Base):
    """A typed link from a successor document to the one it acts on (R-AMEND-1).

    An archived document is never edited in place: a correction (đính chính),
    replacement (thay thế) or withdrawal (thu hồi) is a new signed document ingested
    with a link to the original; both pages show the link and its reason.
    """

    __tablename__ = "record_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), index=True)  # successor
    target_id: Mapped[str] = mapped_column(ForeignKey("records.id"), index=True)  # original
    kind: Mapped[str] = mapped_column(String(16))  # correction | replacement | withdrawal
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))

    record: Mapped[Record] = relationship(foreign_keys=[record_id])
    target: Mapped[Record] = relationship(foreign_keys=[target_id])

    __table_args__ = (UniqueConstraint("record_id", "target_id", "kind"),)


class Draft(Base):
    """A document being prepared before it is archived; only drafts may change (R-AMEND-1)."""

    __tablename__ = "drafts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    metadata_: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    file_key: Mapped[str | None] = mapped_column(String(500))  # staged file, if any
    file_name: Mapped[str | None] = mapped_column(String(1000))
    file_sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft|archived|discarded
    record_id: Mapped[str | None] = mapped_column(ForeignKey("records.id"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    changes: Mapped[list[DraftChange]] = relationship(back_populates="draft",
                                                      order_by="DraftChange.id")


class DraftChange(Base):
    """Who changed a draft, when, what and why (R-AMEND-1)."""

    __tablename__ = "draft_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    draft_id: Mapped[str] = mapped_column(ForeignKey("drafts.id"), index=True)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    changed_by: Mapped[str] = mapped_column(String(200))
    changes: Mapped[dict] = mapped_column(JSON)  # field -> {"from": old, "to": new}
    reason: Mapped[str] = mapped_column(Text)

    draft: Mapped[Draft] = relationship(back_populates="changes")


class Revocation(Base):
    """A decision on a document's validity (R-REVOKE-1): revoke, or reinstate a mistaken
    revocation. Never deleted or edited; a mistake is corrected by a new decision."""

    __tablename__ = "revocations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))  # revoke | reinstate
    reason: Mapped[str] = mapped_column(Text)
    form: Mapped[str] = mapped_column(String(200))  # hình thức, e.g. "quyết định"
    legal_basis: Mapped[str] = mapped_column(Text)  # căn cứ
    decision_ref: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str] = mapped_column(String(200))
    # A revocation propagated from another record (a paper original to its digitised
    # copy): the decision it follows.
    cause_id: Mapped[str | None] = mapped_column(ForeignKey("revocations.id"))
    # The revocation a reinstatement corrects.
    corrects_id: Mapped[str | None] = mapped_column(ForeignKey("revocations.id"))


class Seal(Base):
    """A sealing decision for inspection (R-SEAL-1..3) over one or more records."""

    __tablename__ = "seals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reference: Mapped[str] = mapped_column(String(200))  # the decision's number
    decision_date: Mapped[date] = mapped_column(Date)
    # The issuing authority: a registered organisation; only it may unseal.
    authority_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    scope: Mapped[str] = mapped_column(Text)  # as the decision words it
    readers: Mapped[list] = mapped_column(JSON, default=list)  # person identifiers
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sealed_by: Mapped[str] = mapped_column(String(200))  # principal
    sealer_person: Mapped[str | None] = mapped_column(String(64))
    manifest_key: Mapped[str] = mapped_column(String(500))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    legal_hold: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | lifted
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[str | None] = mapped_column(String(200))
    lift_reference: Mapped[str | None] = mapped_column(String(200))
    lift_report: Mapped[dict | None] = mapped_column(JSON)

    authority: Mapped[Agent] = relationship()
    records: Mapped[list[Record]] = relationship(secondary="seal_records", viewonly=True)


class SealRecord(Base):
    __tablename__ = "seal_records"

    seal_id: Mapped[str] = mapped_column(ForeignKey("seals.id"), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), primary_key=True,
                                           index=True)


class Rendition(Base):
    """A paper rendition (bản in) of a record with its verification QR (R-CONV-2).

    Its validity is the record's: revoking or destroying the record changes what the
    verification page says for every rendition at the same instant.
    """

    __tablename__ = "renditions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))
    converter: Mapped[str] = mapped_column(String(300))  # the person's name
    storage_key: Mapped[str | None] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    page_count: Mapped[int] = mapped_column(Integer)
    verify_url: Mapped[str] = mapped_column(String(1000))

    record: Mapped[Record] = relationship()


class PaperOriginal(Base):
    """A paper document whose digitised copy is archived (R-CONV-1).

    Revoking the paper original revokes its digitised copies.
    """

    __tablename__ = "paper_originals"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reference: Mapped[str] = mapped_column(String(200), unique=True)  # where it is registered
    description: Mapped[str] = mapped_column(Text, default="")
    holder: Mapped[str] = mapped_column(String(500), default="")  # who keeps the paper
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(200))


# ---- preservation (#6) --------------------------------------------------------------


class JobRun(Base):
    """One run of a scheduled or manual job (R-SCHED-1): who, when, what it counted.

    A run is split into batches (``job_batches``) that any worker may claim; the run is
    finished when every batch is done or failed. A failed run is an alert.
    """

    __tablename__ = "job_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(32))  # schedule | manual | server
    principal: Mapped[str] = mapped_column(String(200))  # accountable principal
    status: Mapped[str] = mapped_column(String(16), default="running")  # running|ok|failed
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    batches_total: Mapped[int] = mapped_column(Integer, default=0)
    batches_done: Mapped[int] = mapped_column(Integer, default=0)
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    errors: Mapped[list] = mapped_column(JSON, default=list)

    __table_args__ = (Index("ix_job_runs_job_started", "job", "started_at"),
                      Index("ix_job_runs_status", "status"))


class JobBatch(Base):
    """A unit of a job run that one worker claims under a lease (``FOR UPDATE SKIP
    LOCKED``); a lease that expires (the worker died) makes the batch claimable again."""

    __tablename__ = "job_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("job_runs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|leased|done|failed
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who completed it: a batch is done exactly once (tests count these).
    done_by: Mapped[str | None] = mapped_column(String(200))
    result: Mapped[dict | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("run_id", "seq"),
                      Index("ix_job_batches_status_lease", "status", "lease_expires_at"),
                      Index("ix_job_batches_run", "run_id"))


class BackupCopy(Base):
    """A verified copy of a stored object in the backup store (R-BACKUP-1).

    ``digests`` are those the catalog holds for the object (re-checked after copying
    and by fixity audits of the backup); a repair uses a copy only after re-verifying it.
    """

    __tablename__ = "backup_copies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    object_key: Mapped[str] = mapped_column(String(500))
    store: Mapped[str] = mapped_column(String(300))  # the backup store's name
    kind: Mapped[str] = mapped_column(String(16))  # aip | rendition | seal | checkpoint | other
    record_id: Mapped[str | None] = mapped_column(String(36), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    digests: Mapped[dict] = mapped_column(JSON)
    copied_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_outcome: Mapped[str | None] = mapped_column(String(16))  # ok | failed | missing
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # destruction

    __table_args__ = (UniqueConstraint("store", "object_key"),
                      # the fixity cycle audits the least recently verified copies first
                      Index("ix_backup_copies_store_verified", "store", "last_verified_at"))


class RetentionExtension(Base):
    """A decision extending a record's retention period (R-DESTROY-1), never edited."""

    __tablename__ = "retention_extensions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), index=True)
    previous_until: Mapped[date | None] = mapped_column(Date)  # None = permanent
    new_until: Mapped[date | None] = mapped_column(Date)  # None = permanent
    reason: Mapped[str] = mapped_column(Text)
    decision_ref: Mapped[str] = mapped_column(String(200))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str] = mapped_column(String(200))


class RecordHold(Base):
    """A hold that stops destruction (R-DESTROY-1): a legal hold, or a pending inquiry
    into the record's validity. Released by a recorded decision, never deleted."""

    __tablename__ = "record_holds"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # legal | revocation-inquiry
    reason: Mapped[str] = mapped_column(Text)
    reference: Mapped[str | None] = mapped_column(String(200))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    placed_by: Mapped[str] = mapped_column(String(200))
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(String(200))


class DestructionList(Base):
    """A proposed list of records whose retention expired (R-DESTROY-1, R-DESTROY-2):
    proposed (by a job or an archivist), reviewed, approved by another person with the
    approving body, decision number and legal basis, and only then executed."""

    __tablename__ = "destruction_lists"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    # proposed | approved | executing | executed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="proposed")
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    proposed_by: Mapped[str] = mapped_column(String(200))
    proposer_person: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text, default="")
    criteria: Mapped[dict] = mapped_column(JSON, default=dict)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approver_person: Mapped[str | None] = mapped_column(String(64))
    approving_body: Mapped[str | None] = mapped_column(String(500))
    decision_number: Mapped[str | None] = mapped_column(String(200))
    decision_date: Mapped[date | None] = mapped_column(Date)
    legal_basis: Mapped[str | None] = mapped_column(Text)
    executed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    executed_by: Mapped[str | None] = mapped_column(String(200))

    items: Mapped[list[DestructionItem]] = relationship(back_populates="destruction_list",
                                                        order_by="DestructionItem.id")


class DestructionItem(Base):
    """A record on a destruction list; the archivist's review removes items with a reason."""

    __tablename__ = "destruction_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[str] = mapped_column(ForeignKey("destruction_lists.id"), index=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="listed")  # listed|removed|destroyed
    note: Mapped[str | None] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    changed_by: Mapped[str] = mapped_column(String(200))

    destruction_list: Mapped[DestructionList] = relationship(back_populates="items")
    record: Mapped[Record] = relationship()

    __table_args__ = (UniqueConstraint("list_id", "record_id"),)


class DestructionEntry(Base):
    """The permanent destruction register (R-DESTROY-2): one row per destroyed record,
    append-only (database triggers refuse UPDATE and DELETE). The tombstone keeps the
    identifying metadata and digests, never content."""

    __tablename__ = "destruction_register"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    list_id: Mapped[str] = mapped_column(ForeignKey("destruction_lists.id"), index=True)
    record_id: Mapped[str] = mapped_column(String(36), index=True)
    destroyed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    performed_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    approving_body: Mapped[str] = mapped_column(String(500))
    decision_number: Mapped[str] = mapped_column(String(200))
    approved_by: Mapped[str] = mapped_column(String(200))
    tombstone: Mapped[dict] = mapped_column(JSON)


class ArchiveTimestamp(Base):
    """An RFC 3161 archive timestamp in a record's chain of proof (R-TS-1).

    ``source = aip``: the token sealed into an AIP version at ingest (``object_key`` is
    the AIP, ``member`` its path in the bag). ``source = renewal``: a newer token over the
    previous one and the evidence it covered, stored as its own object, made before the
    previous token's TSA certificate expires or its hash algorithm weakens.
    """

    __tablename__ = "archive_timestamps"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    record_id: Mapped[str] = mapped_column(ForeignKey("records.id"), index=True)
    package_version_id: Mapped[int | None] = mapped_column(ForeignKey("package_versions.id"))
    source: Mapped[str] = mapped_column(String(16))  # aip | renewal
    object_key: Mapped[str] = mapped_column(String(500))
    member: Mapped[str | None] = mapped_column(String(1000))
    previous_id: Mapped[str | None] = mapped_column(ForeignKey("archive_timestamps.id"))
    covers_sha256: Mapped[str] = mapped_column(String(64))  # what the token's imprint covers
    token_sha256: Mapped[str] = mapped_column(String(64))
    hash_algorithm: Mapped[str] = mapped_column(String(32))
    gen_time: Mapped[datetime] = mapped_column(UTCDateTime)
    tsa_certificate_expires: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
