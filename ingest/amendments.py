"""Ingest of a correction, replacement or withdrawal (R-AMEND-1).

The successor goes through the normal :class:`~ingest.services.IngestService` (every
signature validated; a refusal gets its return-to-sender report) with hooks from
:mod:`archive.amendments`: the original is checked before anything is staged, and the
link, events and audit entry are registered in the transaction that registers the new
record. The original's package is never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from archive.amendments import (
    AlreadyArchived,
    check_amendment,
    refuse_duplicate,
    register_amendment,
    validate_request,
)
from ingest.services import IngestHooks, IngestResult, IngestService


@dataclass
class AmendResult:
    original_id: str
    kind: str
    reason: str
    result: IngestResult

    def to_dict(self) -> dict:
        return {**self.result.to_dict(), "original_id": self.original_id,
                "kind": self.kind, "reason": self.reason}


def amend(service: IngestService, path: Path, raw_metadata: dict, metadata_source: str, *,
          original_id: str, kind: str, reason: str, client: str = "") -> AmendResult:
    """Ingest ``path`` as the ``kind`` of ``original_id``; raises on any refusal."""
    reason = validate_request(kind, reason)
    principal = service.principal
    # Asked first, so that who may not amend is refused as such (and audited) before
    # the ingest looks at the file; asked again inside the ingest's own transactions.
    with service.catalog.unit_of_work(snapshot=True) as session:
        check_amendment(session, principal, original_id, kind, reason, client=client)

    def check(session, _meta) -> None:
        check_amendment(session, principal, original_id, kind, reason, client=client)

    def register(session, record) -> None:
        register_amendment(session, principal, original_id, record, kind, reason,
                           client=client, clock=service.clock)

    result = service.ingest(path, raw_metadata, metadata_source,
                            hooks=IngestHooks(check=check, register=register))
    if result.status != "archived":
        with service.catalog.unit_of_work() as session:
            refuse_duplicate(session, principal, original_id, result.record_id,
                             client=client, clock=service.clock)
        raise AlreadyArchived(original_id, result.record_id)
    return AmendResult(original_id, kind, reason, result)
