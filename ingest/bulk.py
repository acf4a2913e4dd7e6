"""Bulk ingest: many files over all cores, safe to interrupt and re-run.

Each worker process opens its own catalog and store and ingests whole files through
the same ``IngestService``. Interrupting (Ctrl-C, SIGINT, SIGKILL) loses nothing: a
file is either registered with all its bytes or not at all (write then register), and
a re-run reports already archived files as duplicates instead of storing them again.
"""

from __future__ import annotations

import atexit
import os
import signal
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from archive.errors import ArchiveError
from archive.principal import Principal

_worker_state: dict = {}  # per worker process: its service, built once by _init_worker


@dataclass
class BulkSummary:
    results: list[dict] = field(default_factory=list)
    interrupted: bool = False

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for r in self.results if r["status"] == s)
                for s in ("archived", "duplicate", "refused", "failed")}

    @property
    def exit_code(self) -> int:
        # refused (3) outranks bad input (2) outranks a failed check (1)
        codes = [r.get("exit_code", 0) for r in self.results]
        return max(codes, default=0)


def ingest_one(service, path: Path, metadata_file: Path | None) -> dict:
    """Ingest one file; every outcome becomes a result dict, never an exception."""
    from ingest.services import load_sidecar

    try:
        meta, source = load_sidecar(path, metadata_file)
        return service.ingest(path, meta, source).to_dict() | {"exit_code": 0}
    except ArchiveError as exc:
        return {"source": str(path), "status": "refused" if exc.exit_code == 3 else "failed",
                "exit_code": exc.exit_code, **exc.to_dict()}


def _init_worker(environ: dict, config_file: str | None, principal: Principal) -> None:
    # The parent handles Ctrl-C: workers finish (or lose) only their current file.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.clear()
    os.environ.update(environ)
    from archive.instance import ArchiveInstance
    from archive.settings import load_settings
    from ingest.services import IngestService

    instance = ArchiveInstance(load_settings(config_file))
    _worker_state["parent"] = os.getppid()
    service = IngestService(instance.settings, instance.catalog, instance.store,
                            principal=principal)
    _worker_state["service"] = service
    atexit.register(service.close)


def _work(path: str) -> dict:
    if os.getppid() != _worker_state["parent"]:  # the parent was killed: stop quietly
        os._exit(0)
    return ingest_one(_worker_state["service"], Path(path), None)


def run_bulk(files: Iterable[Path], *, workers: int, principal: Principal,
             config_file: str | None, on_result: Callable[[dict], None]) -> BulkSummary:
    """Ingest ``files`` with ``workers`` processes; ``on_result`` sees each outcome."""
    summary = BulkSummary()
    pending_paths = [str(p) for p in files]
    ctx = get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(dict(os.environ), config_file, principal))
    in_flight: set[Future] = set()
    try:
        queue = iter(pending_paths)
        for path in queue:  # keep at most 2 files per worker queued: interrupts stay quick
            in_flight.add(pool.submit(_work, path))
            if len(in_flight) >= workers * 2:
                break
        while in_flight:
            done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                summary.results.append(result)
                on_result(result)
                nxt = next(queue, None)
                if nxt is not None:
                    in_flight.add(pool.submit(_work, nxt))
    except KeyboardInterrupt:
        summary.interrupted = True
        for future in in_flight:
            future.cancel()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return summary
