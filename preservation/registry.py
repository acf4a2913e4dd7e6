"""The preservation jobs the runner knows (R-SCHED-1): name -> :class:`JobSpec`.

``JOBS`` holds the jobs of :mod:`preservation.jobs` (audit checkpoints, notification
delivery, repackaging) and those of the job modules listed in ``_JOB_MODULES`` (fixity
cycles, backups, retention, timestamp renewal). A job's interval is a setting: an
``interval_setting`` without a dot names an attribute of ``settings.scheduler``, a
dotted one a setting of another section (``audit.checkpoint_interval_minutes``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from archive.errors import NotFound
from preservation import jobs
from preservation.jobspec import JobSpec

log = logging.getLogger("archive.jobs")

# Job modules of issue #6, each defining ``JOB``.
_JOB_MODULES = ("preservation.fixity_cycle", "preservation.backup",
                "preservation.retention_job", "preservation.timestamp_renewal")


class UnknownJob(NotFound):
    """No job of that name is registered."""


def _load() -> dict[str, JobSpec]:
    found: dict[str, JobSpec] = {spec.name: spec for spec in jobs.JOBS}
    for name in _JOB_MODULES:
        spec = importlib.import_module(name).JOB
        if not isinstance(spec, JobSpec) or spec.name in found:
            raise TypeError(f"{name}.JOB must be a JobSpec with a name of its own")
        found[spec.name] = spec
    return dict(sorted(found.items()))


JOBS: dict[str, JobSpec] = _load()


def get(name: str) -> JobSpec:
    try:
        return JOBS[name]
    except KeyError:
        raise UnknownJob(f"no job named {name!r} (known: {', '.join(JOBS)})") from None


def interval_minutes(spec: JobSpec, settings) -> int:
    """Minutes between scheduled runs of ``spec`` (0: run by hand only)."""
    if not spec.interval_setting:
        return 0
    section, _, attribute = spec.interval_setting.rpartition(".")
    holder = getattr(settings, section) if section else settings.scheduler
    return max(0, int(getattr(holder, attribute)))


@contextmanager
def register_for_tests(spec: JobSpec) -> Iterator[JobSpec]:
    """Register ``spec`` while the block runs (runner tests use tiny jobs)."""
    previous = JOBS.get(spec.name)
    JOBS[spec.name] = spec
    try:
        yield spec
    finally:
        if previous is None:
            JOBS.pop(spec.name, None)
        else:
            JOBS[spec.name] = previous
