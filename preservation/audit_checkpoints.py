"""Timestamped audit checkpoints kept in both stores (R-AUDIT-1, R-TS-1): the surface
part that talks to the timestamp authority.

The core (:mod:`archive.audit`) signs checkpoints with the system key and keeps the
same bytes in the primary store and the backup store; it makes no HTTP call. Here,
when ``signatures.tsa_url`` is set, an RFC 3161 token over the checkpoint document's
bytes is obtained (``ingest.sealing.SealTimestamps``: asked and verified at once) and
handed to the core, which keeps it next to the checkpoint
(``audit/checkpoints/<seq>.json.tsr``) in both stores.

:func:`verify_log` is what ``archive audit verify`` runs: the chain against the union
of both stores' checkpoints (so deleting or rewriting the checkpoints of one store
hides nothing), every token verified over its checkpoint with the trust roots.
"""

from __future__ import annotations

import hashlib

from archive import audit
from archive.errors import ArchiveError, IntegrityError, StorageError
from archive.keys import load_system_key


def _stores(instance) -> list:
    backup = instance.backup_store
    return [instance.store] if backup is None else [instance.store, backup]


def write_checkpoint(instance, *, timestamps=None) -> dict:
    """Sign the head into both stores and, with a TSA configured, timestamp it.

    The newest checkpoint gets a token even when it was written earlier without one
    (checkpoints after commands are not timestamped, to keep commands off the network).
    Returns {"checkpoint": Checkpoint | None, "token": info dict | None,
    "stores": [names]}. Raises ArchiveError when the TSA fails (nothing is lost: the
    signed checkpoint is already stored; the next run adds the token).
    """
    from ingest.sealing import SealTimestamps

    checkpoint = instance.checkpoint()
    stores = _stores(instance)
    result = {"checkpoint": checkpoint, "token": None, "stores": [s.name for s in stores]}
    if checkpoint is None or not checkpoint.signature_ok:
        return result
    if not instance.settings.signatures.tsa_url:
        return result
    own = timestamps is None
    stamps = SealTimestamps(instance.settings) if own else timestamps
    try:
        existing = next((t for t in (audit.read_checkpoint_token(s, checkpoint.seq)
                                     for s in stores) if t), None)
        document = audit.read_checkpoint_document(instance.store, checkpoint)
        if document is None:
            raise StorageError(f"checkpoint {checkpoint.seq} cannot be read back")
        if existing is not None:
            info = stamps.check(existing, document)
            token = existing
        else:
            stamped = stamps.stamp(document)
            token, info = stamped["token"], stamped["info"]
        audit.store_checkpoint_token(stores, checkpoint.seq, token)
        result["token"] = info
    finally:
        if own:
            stamps.close()
    return result


def verify_log(instance) -> tuple[audit.AuditReport, dict]:
    """Verify the chain against both stores' checkpoints and their tokens.

    Returns the report and extra facts for the output ({"checkpoints_timestamped": n,
    "backup_store": name or None}). Problems added to the chain's own: a checkpoint
    missing from the primary store or different in the two stores, a token that does
    not cover its checkpoint or whose signature is broken. Warnings: a checkpoint not
    yet in the backup store, a token from a TSA outside the trust roots, a backup store
    that cannot be read.
    """
    from ingest.sealing import SealTimestamps

    settings = instance.settings
    public = load_system_key(settings.keys_dir).public_key()
    warnings: list[str] = []
    try:
        backup = instance.backup_store
        found = audit.gather_checkpoints(instance.store, backup, public)
    except StorageError as exc:
        backup = None
        found = audit.gather_checkpoints(instance.store, None, public)
        warnings.append(f"the backup store cannot be read ({exc.message}): only the "
                        "primary store's checkpoints were used")
    with instance.catalog.unit_of_work(snapshot=True) as session:
        report = audit.verify(session, found.checkpoints)
    for code, message, target in found.problems:
        report.add(code, message, target=target)
    report.warnings.extend(warnings + found.warnings)
    stores = [instance.store] if backup is None else [instance.store, backup]
    timestamped = 0
    with SealTimestamps(settings) as stamps:
        for checkpoint in found.checkpoints:
            if not checkpoint.signature_ok:
                continue
            if _check_token(stores, checkpoint, stamps, report):
                timestamped += 1
    return report, {"checkpoints_timestamped": timestamped,
                    "backup_store": backup.name if backup is not None else None}


def _check_token(stores, checkpoint, stamps, report) -> bool:
    """Check the token(s) of one checkpoint; True when a token verified."""
    tokens = {}
    for store in stores:
        token = audit.read_checkpoint_token(store, checkpoint.seq)
        if token is not None:
            tokens.setdefault(token, store)
    if not tokens:
        return False
    document = None
    for store in stores:
        data = audit.read_checkpoint_document(store, checkpoint)
        if data is not None and hashlib.sha256(data).hexdigest() == checkpoint.sha256:
            document = data
            break
    target = audit.checkpoint_token_key(checkpoint.seq)
    if len(tokens) > 1:
        report.add("checkpoint_token_mismatch", f"the timestamp of checkpoint "
                   f"{checkpoint.seq} differs between the primary and the backup store",
                   target=target)
    ok = False
    for token, store in tokens.items():
        try:
            info = stamps.check(token, document or b"")
        except (IntegrityError, ArchiveError) as exc:
            report.add("bad_checkpoint_token", f"the timestamp of checkpoint "
                       f"{checkpoint.seq} in {store.name} does not verify: "
                       f"{exc.message}", target=target)
            continue
        if not info["trusted"]:
            report.warnings.append(f"the timestamp of checkpoint {checkpoint.seq} is from "
                                   f"a TSA outside signatures.trust_roots ({info['tsa']})")
            continue
        ok = True
    return ok
