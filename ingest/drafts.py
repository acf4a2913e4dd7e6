"""Submitting a draft: its file and metadata go through the normal ingest (R-AMEND-1).

The draft's file is read back from the store (its SHA-256 checked against the one
recorded when it was stored) into a private staging folder and ingested by
:class:`~ingest.services.IngestService`; in the transaction that registers the new
record the draft becomes ``archived`` with the record's id (:func:`archive.drafts.
mark_archived`). From then on the draft refuses every change.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid

from archive.bag import safe_payload_name
from archive.drafts import check_submittable, mark_archived, refuse_submission
from archive.errors import IntegrityError, Refused
from ingest.services import IngestHooks, IngestResult, IngestService


class DraftAlreadyArchived(Refused):
    """The draft's file is already archived (same bytes): the draft stays a draft."""

    def __init__(self, draft_id: str, existing_id: str):
        self.draft_id, self.existing_id = draft_id, existing_id
        super().__init__(f"the file of draft {draft_id} is already archived as record "
                         f"{existing_id}; the draft was not submitted")

    def to_dict(self) -> dict:
        return {**super().to_dict(), "draft_id": self.draft_id,
                "existing_record_id": self.existing_id}


def submit_draft(service: IngestService, draft_id: str, *, client: str = "") -> IngestResult:
    principal = service.principal
    with service.catalog.unit_of_work(snapshot=True) as session:
        draft = check_submittable(session, principal, draft_id, client=client)
        metadata, key, name, sha256 = (dict(draft.metadata_), draft.file_key,
                                       draft.file_name, draft.file_sha256)
    folder = service.settings.staging_dir / f"draft-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        path = folder / safe_payload_name(name or "document.pdf")
        digest = hashlib.sha256()
        with service.store.open(key) as source, open(path, "xb") as sink:
            while chunk := source.read(1024 * 1024):
                digest.update(chunk)
                sink.write(chunk)
        if sha256 and digest.hexdigest() != sha256:
            raise IntegrityError(f"the stored file of draft {draft_id} ({key}) does not match "
                                 "the SHA-256 recorded when it was stored")

        def check(session, _meta) -> None:
            check_submittable(session, principal, draft_id, client=client)

        def register(session, record) -> None:
            mark_archived(session, principal, draft_id, record, client=client,
                          clock=service.clock)

        result = service.ingest(path, metadata, f"draft:{draft_id}",
                                hooks=IngestHooks(check=check, register=register))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if result.status != "archived":
        with service.catalog.unit_of_work() as session:
            refuse_submission(session, principal, draft_id, result.record_id,
                              client=client, clock=service.clock)
        raise DraftAlreadyArchived(draft_id, result.record_id)
    return result
