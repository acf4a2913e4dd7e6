"""The scheduled retention job (R-DESTROY-1): proposes a destruction list of the records
whose retention expired. It never destroys: a list waits for an archivist's review and
an approver's decision (``archive destruction approve``) before anyone executes it.

One batch per run, as the job's principal ``system:job:retention``; counts
``proposed_lists`` (0 or 1) and ``records`` (how many were listed).
"""

from __future__ import annotations

from archive.destruction import propose
from preservation.jobspec import JobContext, JobSpec

# Written on the list (data, read by Vietnamese archivists): "retention period expired
# (proposed by the schedule)".
REASON = "Hết thời hạn bảo quản (đề nghị theo lịch định kỳ)"

def plan(ctx: JobContext, params: dict) -> list[dict]:
    limit = params.get("limit")
    return [{"limit": int(limit) if limit not in (None, "") else None,
             "reason": params.get("reason") or REASON}]


def run_batch(ctx: JobContext, batch: dict) -> dict[str, int]:
    proposed = propose(ctx.instance.catalog, ctx.principal, reason=batch["reason"],
                       limit=batch.get("limit"), clock=ctx.clock, client=ctx.worker)
    if proposed is None:
        return {"proposed_lists": 0, "records": 0}
    return {"proposed_lists": 1, "records": proposed.counts.get("listed", 0)}


JOB = JobSpec(
    name="retention",
    description="Propose a destruction list of records whose retention expired (never "
                "destroys)",
    plan=plan,
    run_batch=run_batch,
    interval_setting="retention_every_minutes",
    param_help={"limit": "at most this many records on the list",
                "reason": "the reason written on the list"},
)
