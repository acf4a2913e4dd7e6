"""Fixity cycle throughput on S3 (SeaweedFS) against plain GETs of the same objects (R-FIX-1).

Builds a throw-away archive (SeaweedFS primary + PostgreSQL catalog) holding large
records, then measures in the same run, in ``--rounds`` interleaved rounds (the machine
is shared: each ratio is taken within one round, the report gives the median round):
  - reference at concurrency c: plain GETs of every stored object (``store.open`` read
    to the end with ``fixity.chunk_size`` reads, no hashing), c objects at a time (c
    threads);
  - before (c = 1): the cycle as it was, objects one at a time, each chunk read then
    hashed by SHA-256 then SHA-512 in one thread (``hash_stream(pipeline=False)``);
  - the cycle in this process, ``fixity.workers = c``: the ``fixity`` job (``full=true``)
    planned and every batch run here (catalog read, S3 streaming, SHA-256 + SHA-512 of
    every object, events, ``last_fixity_at`` and audit entries written), the batch
    checking c objects at a time -- compared with the GET at the same c;
  - 2 ``archive worker --once --job fixity`` processes with ``fixity.workers = 1``
    (2 objects at a time in all, compared with the GET at c = 2) sharing the run's
    batches through the catalog's leases. Timed from the first batch claimed to the
    run finished (process start-up is outside), and also over the window where both
    processes were working (batches prorated), which is the steady throughput.
Prints MiB/s, objects/s, the ratios and the CPU use. Target: cycle >= 0.8x plain GET.

    .venv/bin/python bench/bench_fixity_cycle.py [--records 32] [--mib 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.archive_setup import init_archive  # noqa: E402
from bench.bench_fixity import big_pdf  # noqa: E402
from bench.machine import describe_machine  # noqa: E402

MiB = 2**20


def plain_get(store, keys: list[str], concurrency: int, chunk: int) -> float:
    def get(key: str) -> int:
        n = 0
        with store.open(key) as fh:
            while data := fh.read(chunk):
                n += len(data)
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(get, keys))
    return time.perf_counter() - start


SERVER_PIDS: list[int] = []  # the SeaweedFS server, whose CPU a GET also costs


class CpuMeter:
    """CPU seconds of this process (all threads) plus the S3 server, and of the whole
    machine (other users' work included: the machine is shared)."""

    def __enter__(self):
        self.t0, self.c0, self.s0 = time.perf_counter(), _our_cpu(), _server_cpu()
        self.m0 = _machine_busy()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.server = _server_cpu() - self.s0
        self.cpu = _our_cpu() - self.c0 + self.server
        m1 = _machine_busy()
        self.cores_machine = (m1 - self.m0) / self.wall if m1 is not None else None


def _our_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _server_cpu() -> float:
    total = 0.0
    for pid in SERVER_PIDS:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def _machine_busy() -> float | None:
    """Busy CPU seconds of the machine since boot (/proc/stat), all processes."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def hashing_cost() -> dict:
    """CPU ms per MiB of hashlib alone on this CPU (process CPU time: robust to load)."""
    import hashlib

    data = memoryview(os.urandom(64 * MiB))
    out = {}
    for name in ("sha256", "sha512"):
        h, start = hashlib.new(name), time.process_time()
        for i in range(0, len(data), MiB):
            h.update(data[i:i + MiB])
        out[name] = round((time.process_time() - start) * 1000 / 64, 2)
    return out


def two_processes(instance, env: dict, n_keys: int) -> tuple[float, float, float]:
    """(seconds from the first claim to the run's end, steady MiB/s while both workers
    worked, seconds of that window)."""
    from sqlalchemy import select

    from archive.models import JobBatch, JobRun
    from preservation import runner

    run_id = runner.run_now(instance, "fixity", params={"full": True}, wait=False)
    procs = [subprocess.Popen([sys.executable, "-m", "cli", "worker", "--once", "--job",
                               "fixity", "--json"], env=env, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for _ in range(2)]
    for proc in procs:
        proc.wait()
    with instance.catalog.unit_of_work(snapshot=True) as session:
        run = session.get(JobRun, run_id)
        assert run.status == "ok" and run.counts.get("checked") == n_keys, \
            (run.status, run.counts, run.errors)
        batches = [(b.started_at, b.finished_at, b.done_by, (b.result or {}).get("bytes", 0))
                   for b in session.scalars(select(JobBatch).where(JobBatch.run_id == run_id))]
        finished = run.finished_at
    first = min(b[0] for b in batches)
    from_first_claim = (finished - first).total_seconds()
    by_worker: dict[str, list] = {}
    for b in batches:
        by_worker.setdefault(b[2], []).append(b)
    assert len(by_worker) == 2, f"only {len(by_worker)} process claimed batches"
    # Both at work: from the later first claim to the earlier last finish.
    lo = max(min(b[0] for b in bs) for bs in by_worker.values())
    hi = min(max(b[1] for b in bs) for bs in by_worker.values())
    window = (hi - lo).total_seconds()
    done = 0.0
    for start, end, _who, size in batches:
        span = (end - start).total_seconds()
        overlap = (min(end, hi) - max(start, lo)).total_seconds()
        if span > 0 and overlap > 0:
            done += size * overlap / span
    return from_first_claim, done / MiB / window, window


def measure(env: dict, args) -> dict:
    from archive.instance import ArchiveInstance
    from archive.principal import Principal
    from archive.settings import load_settings
    from ingest.services import IngestService
    from preservation import fixity_cycle
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
    instance.close()
    mib, n = total / MiB, len(keys)
    chunk = settings.fixity.chunk_size

    def instance_with(**over) -> ArchiveInstance:
        return ArchiveInstance(load_settings(environ={**env, **over}))

    # One instance per configuration; the in-process cycle has one batch of every object.
    cycles = {c: instance_with(ARCHIVE_FIXITY__WORKERS=str(c),
                               ARCHIVE_SCHEDULER__BATCH_SIZE=str(n))
              for c in args.concurrency}
    worker_env = {**env, "ARCHIVE_FIXITY__WORKERS": "1",
                  "ARCHIVE_SCHEDULER__BATCH_SIZE": str(args.batch)}
    planner = instance_with(ARCHIVE_FIXITY__WORKERS="1",
                            ARCHIVE_SCHEDULER__BATCH_SIZE=str(args.batch))
    reader = instance_with()
    plain_get(reader.store, keys, 2, chunk)  # warm up (server caches, connections)

    def sequential_cycle() -> None:
        """The check as it was before pipelining: one object at a time, each chunk read
        then hashed by SHA-256 then SHA-512 in one thread (``pipeline=False``)."""
        from archive import fixity

        pipelined = fixity.hash_stream
        fixity.hash_stream = functools.partial(pipelined, pipeline=False)
        try:
            out = fixity_cycle.run_cycle(cycles[1], Principal.system("job:fixity"), full=True)
        finally:
            fixity.hash_stream = pipelined
        assert out["checked"] == n and out["failed"] == 0, out

    rounds: list[dict] = []
    for _ in range(args.rounds):
        row: dict = {}
        if 1 in cycles:
            with CpuMeter() as cpu:
                sequential_cycle()
            row["before"], row["before_cpu"] = cpu.wall, (cpu.cpu, cpu.cores_machine, cpu.server)
        for c in args.concurrency:
            with CpuMeter() as cpu:
                plain_get(reader.store, keys, c, chunk)
            row[f"get{c}"], row[f"get{c}_cpu"] = cpu.wall, (cpu.cpu, cpu.cores_machine, cpu.server)
            with CpuMeter() as cpu:
                out = fixity_cycle.run_cycle(cycles[c], Principal.system("job:fixity"),
                                             full=True)
            row[f"cycle{c}"] = cpu.wall
            row[f"cycle{c}_cpu"] = (cpu.cpu, cpu.cores_machine, cpu.server)
            assert out["checked"] == n and out["failed"] == 0, out
        if not args.no_workers:
            row["procs"], row["procs_steady"], row["procs_window"] = \
                two_processes(planner, worker_env, n)
        rounds.append(row)
    for inst in (*cycles.values(), planner, reader):
        inst.close()

    def med(values) -> float:
        return statistics.median(values)

    def cpu(name: str) -> dict:
        """CPU ms per MiB (this process + the S3 server) and the machine's busy cores."""
        machine = [r[f"{name}_cpu"][1] for r in rounds if r[f"{name}_cpu"][1] is not None]
        return {"cpu_ms_per_MiB_client_and_server":
                round(med(r[f"{name}_cpu"][0] for r in rounds) * 1000 / mib, 2),
                "of_which_S3_server": round(med(r[f"{name}_cpu"][2] for r in rounds)
                                            * 1000 / mib, 2),
                "cores_used_client_and_server":
                round(med(r[f"{name}_cpu"][0] / r[name] for r in rounds), 2),
                "machine_busy_cores": f"{med(machine):.2f} of {os.cpu_count()}"
                if machine else None}

    result: dict = {
        "data": f"{n} records, {mib:.0f} MiB stored on SeaweedFS (sha256+sha512), "
                f"fixity.chunk_size {chunk // 1024} KiB, {args.rounds} interleaved rounds, "
                f"medians",
    }
    if 1 in cycles:
        t_before = med(r["before"] for r in rounds)
        result["before_sequential_hashing_1_at_a_time"] = {
            "MiB_s": round(mib / t_before, 1), "objects_s": round(n / t_before, 2),
            "ratio_vs_GET_same_concurrency": round(med(r["get1"] / r["before"]
                                                       for r in rounds), 3),
            **cpu("before")}
    for c in args.concurrency:
        t_get, t_cyc = med(r[f"get{c}"] for r in rounds), med(r[f"cycle{c}"] for r in rounds)
        result[f"plain_GET_{c}_at_a_time"] = {
            "MiB_s": round(mib / t_get, 1), "objects_s": round(n / t_get, 2),
            **cpu(f"get{c}")}
        result[f"cycle_1_process_fixity_workers_{c}"] = {
            "MiB_s": round(mib / t_cyc, 1), "objects_s": round(n / t_cyc, 2),
            "ratio_vs_GET_same_concurrency": round(med(r[f"get{c}"] / r[f"cycle{c}"]
                                                       for r in rounds), 3),
            **cpu(f"cycle{c}")}
    if not args.no_workers:
        t2 = med(r["procs"] for r in rounds)
        result["cycle_2_processes_fixity_workers_1"] = {
            "MiB_s_first_claim_to_finish": round(mib / t2, 1),
            "objects_s_first_claim_to_finish": round(n / t2, 2),
            "ratio_vs_GET_2_at_a_time": round(med(r["get2"] / r["procs"] for r in rounds), 3)
            if 2 in args.concurrency else None,
            "MiB_s_steady_both_working": round(med(r["procs_steady"] for r in rounds), 1),
            "steady_window_s": round(med(r["procs_window"] for r in rounds), 2),
            "batch_size": args.batch}
    result["hashlib_cpu_ms_per_MiB"] = hashing_cost()
    result["rounds_seconds"] = [{k: round(v, 3) for k, v in r.items()
                                 if isinstance(v, float)} for r in rounds]
    result["target"] = "cycle >= 0.8x plain GET at the same concurrency"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--mib", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 2],
                        help="objects at a time (GET threads = fixity.workers)")
    parser.add_argument("--batch", type=int, default=2,
                        help="scheduler.batch_size of the 2-process run")
    parser.add_argument("--chunk", type=int, default=0,
                        help="fixity.chunk_size in bytes (default: the configured one)")
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
        SERVER_PIDS.append(seaweed.process.pid)
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
                           ARCHIVE_BACKUP__BACKEND="none")
                if args.chunk:
                    env["ARCHIVE_FIXITY__CHUNK_SIZE"] = str(args.chunk)
                result = measure(env, args)
        finally:
            seaweed.stop()
    print(json.dumps({"machine": describe_machine(), **result}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
