"""Re-validation of an archived record's signatures from stored evidence, offline
(R-TS-1): the original bytes, the validation material kept in the AIP at ingest, and
the archive timestamp's time as the validation time. No network is used, so the
answer is the same decades later, after certificates have expired.
"""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select

from archive import audit
from archive.certificates import CatalogRegistry
from archive.errors import IntegrityError, NotFound
from archive.fixity import VerifyingReader
from archive.instance import ArchiveInstance
from archive.keystore import KeyVault
from archive.models import Event
from archive.principal import Principal
from archive.records import open_original, show_record
from ingest.signature_gate import EVIDENCE_PATH
from ingest.signature_report import SignatureReport
from ingest.signatures import TrustConfig, revalidate_offline


def revalidate_record(instance: ArchiveInstance, principal: Principal,
                      record_id: str) -> tuple[SignatureReport, dict]:
    """Re-check ``record_id`` offline; record the outcome as a ``validation`` event."""
    settings = instance.settings
    vault = KeyVault.from_settings(settings)
    with instance.catalog.unit_of_work() as session:
        record = show_record(session, principal, record_id)
        version = record.versions[-1]
        evidence_file = next((f for f in version.files if f.path == EVIDENCE_PATH), None)
        if evidence_file is None:
            raise NotFound(f"record {record_id} has no stored validation material "
                           f"({EVIDENCE_PATH}); it was archived without a signature check")
        stamp = session.scalars(select(Event).where(Event.record_id == record_id,
                                                    Event.event_type == "timestamping")
                                .order_by(Event.occurred_at)).first()
        at = stamp.occurred_at if stamp is not None else version.created_at
        _, reader = open_original(session, instance.store, principal, record_id,
                                  vault=vault)
        with reader:
            pdf = reader.read()
            while chunk := reader.read():
                pdf += chunk
        raw = instance.store.open(version.storage_key, evidence_file.offset,
                                  evidence_file.size)
        with VerifyingReader(raw, name=f"{version.storage_key}:{EVIDENCE_PATH}",
                             size=evidence_file.size,
                             digests=dict(evidence_file.digests)) as verified:
            data = b""
            while chunk := verified.read():
                data += chunk
    try:
        evidence = json.loads(data)
    except ValueError as exc:
        raise IntegrityError(f"stored validation material of {record_id} is not JSON") \
            from exc
    config = TrustConfig.from_settings(settings.signatures)
    report = revalidate_offline(pdf, evidence, config.trust_roots, at=at,
                                revocation_mode=settings.signatures.revocation_mode,
                                registry=CatalogRegistry(instance.catalog))
    context = {"validation_time": at.isoformat(), "timestamped": stamp is not None}
    with instance.catalog.unit_of_work() as session:
        session.add(Event(id=str(uuid.uuid4()), record_id=record_id, event_type="validation",
                          occurred_at=instance.clock.now(), agent=str(principal),
                          outcome="success" if report.ok else "failure",
                          detail=f"offline re-validation from stored evidence at "
                                 f"{at.isoformat()}: {report.verdict}",
                          data={"verdict": report.verdict, **context}))
        audit.append(session, principal, "record.revalidate", f"record:{record_id}",
                     outcome="ok" if report.ok else "failed",
                     detail={"verdict": report.verdict, **context}, clock=instance.clock)
    return report, context
