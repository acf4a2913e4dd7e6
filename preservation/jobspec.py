"""What a preservation job is (R-SCHED-1): a name, how to split a run into batches, and
how to do one batch. The runner (``preservation/runner.py``) records the run, hands the
batches out under leases to whichever worker asks first and finishes the run; a job
module only says what to do.

A job module defines ``JOB = JobSpec(...)``; ``preservation/registry.py`` lists them.

- ``plan(ctx, params)`` decides what this run covers and returns one ``dict`` of
  JSON-serialisable parameters per batch (e.g. a list of package ids). It runs once per
  run, in the process that starts the run (the scheduler, ``archive jobs run``, or
  ``archive serve``). An empty list is a run with nothing to do (outcome ok).
- ``run_batch(ctx, batch_params)`` does one batch and returns counts (``str -> int``),
  summed over the batches into the run's counts. It must be safe to run again for the
  same batch (a reclaimed lease), since a worker may die after doing the work and
  before recording it. It calls ``ctx.heartbeat()`` between items so a long batch keeps
  its lease, and raises to fail the batch (the error is recorded, the run fails).
  Problems the job found (a damaged object) are not exceptions: they are counts and
  events; ``ctx.alert(message)`` marks the run as needing attention.
- ``finish(ctx, counts)`` (optional) runs once after the last batch, in the worker that
  completed it, e.g. to write a summary; returns extra counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from archive.clock import Clock
from archive.principal import Principal


@dataclass
class JobContext:
    instance: Any  # archive.instance.ArchiveInstance
    run_id: str
    job: str
    principal: Principal  # the job's accountable system principal, e.g. system:job:fixity
    clock: Clock
    worker: str  # who runs this batch (host:pid:n), recorded on the batch
    params: dict = field(default_factory=dict)  # the run's parameters
    heartbeat: Callable[[], None] = lambda: None  # extend the lease of the current batch
    alerts: list[str] = field(default_factory=list)

    def alert(self, message: str) -> None:
        """Record that this run found something an operator must look at."""
        self.alerts.append(message)


@dataclass(frozen=True)
class JobSpec:
    name: str  # e.g. "fixity"; used in `archive jobs run NAME` and the principal
    description: str  # one line, shown by `archive jobs list` and in the UI
    plan: Callable[[JobContext, dict], list[dict]]
    run_batch: Callable[[JobContext, dict], dict[str, int]]
    finish: Callable[[JobContext, dict[str, int]], dict[str, int]] | None = None
    # Attribute of settings.scheduler holding the minutes between runs (None: manual only).
    interval_setting: str | None = None
    # Parameters `archive jobs run NAME --param key=value` accepts, with their help text.
    param_help: dict[str, str] = field(default_factory=dict)
