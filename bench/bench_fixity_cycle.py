"""Fixity cycle throughput on S3 (SeaweedFS) against plain GETs of the same objects (R-FIX-1).

Builds a throw-away archive (SeaweedFS primary + PostgreSQL catalog) holding a few large
records, then measures in the same run:
  - reference: plain GETs of every stored object (``store.open`` read to the end, one
    thread, 1 MiB reads, no hashing);
  - ours, 1 worker: the ``fixity`` job (``full=true``) planned and every batch run in
    this process (catalog read, S3 streaming, SHA-256 + SHA-512 of every object, events,
    ``last_fixity_at`` and audit entries written);
  - ours, 2 workers: the same run handed to two ``archive worker --once --job fixity``
    processes through the catalog's batch leases (batch size 1, so both get work).
Prints MiB/s, objects/s and the ratios. Target: ours(1) >= 0.8x plain GET.

    .venv/bin/python bench/bench_fixity_cycle.py [--records 8] [--mib 32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.archive_setup import init_archive  # noqa: E402
from bench.bench_fixity import big_pdf  # noqa: E402
from bench.machine import describe_machine  # noqa: E402


def plain_get(store, keys: list[str]) -> float:
    start = time.perf_counter()
    for key in keys:
        with store.open(key) as fh:
            while fh.read(1024 * 1024):
                pass
    return time.perf_counter() - start


def measure(env: dict, args) -> dict:
    from archive.instance import ArchiveInstance
    from archive.models import JobRun
    from archive.principal import Principal
    from archive.settings import load_settings
    from ingest.services import IngestService
    from preservation import fixity_cycle, runner
    from tests.conftest import sample_metadata

    init_archive(env)
    settings = load_settings(environ=env)
    instance = ArchiveInstance(settings)
    principal = Principal.system("bench")
    service = IngestService(settings, instance.catalog, instance.store, principal=principal)
    tmp = Path(env["ARCHIVE_ARCHIVE__DATA_DIR"])
    for i in range(args.records):
        pdf = tmp / f"big{i}.pdf"
        big_pdf(pdf, args.mib, i)
        service.ingest(pdf, sample_metadata(number_symbol=f"{i}-FC/TU"), "bench")
        pdf.unlink()
    keys = sorted(info.key for info in instance.store.list("aip/"))
    total = sum(instance.store.stat(k).size for k in keys)
    plain_get(instance.store, keys)  # warm up

    def best(fn) -> float:
        return min(fn() for _ in range(args.repeat))

    t_get = best(lambda: plain_get(instance.store, keys))

    def one_worker() -> float:
        start = time.perf_counter()
        out = fixity_cycle.run_cycle(instance, Principal.system("job:fixity"), full=True)
        assert out["checked"] == len(keys) and out["failed"] == 0, out
        return time.perf_counter() - start

    t1 = best(one_worker)

    def two_workers() -> float:
        start = time.perf_counter()
        run_id = runner.run_now(instance, "fixity", params={"full": True}, wait=False)
        procs = [subprocess.Popen([sys.executable, "-m", "cli", "worker", "--once", "--job",
                                   "fixity", "--json"], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(2)]
        for proc in procs:
            proc.wait()
        elapsed = time.perf_counter() - start
        with instance.catalog.unit_of_work(snapshot=True) as session:
            run = session.get(JobRun, run_id)
            assert run.status == "ok" and run.counts.get("checked") == len(keys), \
                (run.status, run.counts, run.errors)
        return elapsed

    t2 = best(two_workers) if not args.no_workers else None
    instance.close()
    mib = total / 2**20
    n = len(keys)
    return {
        "data": f"{n} records, {mib:.0f} MiB stored on SeaweedFS (sha256+sha512)",
        "plain_GET_MiB_s": round(mib / t_get, 1),
        "plain_GET_objects_s": round(n / t_get, 2),
        "cycle_1_worker_MiB_s": round(mib / t1, 1),
        "cycle_1_worker_objects_s": round(n / t1, 2),
        "ratio_1_worker_vs_GET": round(t_get / t1, 3),
        **({"cycle_2_workers_MiB_s": round(mib / t2, 1),
            "cycle_2_workers_objects_s": round(n / t2, 2),
            "ratio_2_workers_vs_GET": round(t_get / t2, 3)} if t2 else {}),
        "target": {"ratio_1_worker_vs_GET": ">= 0.8"},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=8)
    parser.add_argument("--mib", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-workers", action="store_true",
                        help="skip the 2-process measurement")
    args = parser.parse_args()

    from tests.services.postgres import create_database, running_postgres
    from tests.services.seaweed import _start, weed_binary

    with tempfile.TemporaryDirectory(prefix="bench-fixity-cycle-") as tmp:
        tmp = Path(tmp)
        seaweed = _start(weed_binary(), tmp / "seaweed")
        if isinstance(seaweed, str):
            raise SystemExit(f"SeaweedFS did not start: {seaweed}")
        try:
            with running_postgres() as pg:
                env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
                env.update(ARCHIVE_ARCHIVE__DATA_DIR=str(tmp / "data"),
                           ARCHIVE_SIGNATURES__ENFORCE="false",
                           ARCHIVE_DATABASE__URL=create_database(pg, "fixitycycle"),
                           ARCHIVE_STORAGE__BACKEND="s3",
                           ARCHIVE_STORAGE__S3_ENDPOINT=seaweed.endpoint,
                           ARCHIVE_STORAGE__S3_BUCKET="fixitycycle",
                           ARCHIVE_STORAGE__S3_ACCESS_KEY=seaweed.access_key,
                           ARCHIVE_STORAGE__S3_SECRET_KEY=seaweed.secret_key,
                           ARCHIVE_BACKUP__BACKEND="none",
                           ARCHIVE_SCHEDULER__BATCH_SIZE="1")
                result = measure(env, args)
        finally:
            seaweed.stop()
    print(json.dumps({"machine": describe_machine(), **result}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
