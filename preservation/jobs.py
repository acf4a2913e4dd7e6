"""Scheduled jobs: plain functions taking the archive instance, run by the scheduler.

Each job is a named system principal in the audit log (R-SCHED-1). Issue #6 adds
fixity cycles, backups, retention and timestamp renewal here.
"""

from __future__ import annotations

import logging

from archive.errors import ArchiveError
from archive.instance import ArchiveInstance

log = logging.getLogger("archive.jobs")


def audit_checkpoint(instance: ArchiveInstance) -> None:
    """Sign the audit chain head and keep it in the object store (R-AUDIT-1)."""
    try:
        checkpoint = instance.checkpoint()
    except ArchiveError as exc:
        # A failed checkpoint is an incident (R-INCIDENT-1): log it loudly.
        log.error("audit checkpoint failed: %s", exc.message)
        return
    if checkpoint is not None and checkpoint.new:
        log.info("audit checkpoint written at entry %s", checkpoint.seq)
