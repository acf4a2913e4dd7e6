"""Fixity throughput of `archive fixity check` against plain hashlib (R-FIX-1).

Builds a throw-away archive (local store + SQLite) holding a few large records, then
measures in the same run:
  - reference: plain hashlib sha256 + sha512 over the same stored object files,
    one thread, 1 MiB reads;
  - ours: the archive's fixity check (catalog read, store streaming, every digest,
    events and audit entry written), with 1 and with 2 workers.
Prints MiB/s and the ratios. Targets: ours(1) >= 0.9x hashlib; ours(2) >= 1.5x ours(1).

    .venv/bin/python bench/bench_fixity.py [--records 6] [--mib 64]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.archive_setup import init_archive  # noqa: E402
from bench.machine import describe_machine  # noqa: E402


def big_pdf(path: Path, mib: int, seed: int) -> None:
    """A valid PDF whose content stream carries ``mib`` MiB of incompressible bytes."""
    import os

    from ingest.demo import make_pdf

    head = make_pdf([f"benchmark document {seed}"])
    # Append an unreferenced binary comment block before %%EOF: still a valid PDF file
    # for identification, and the bytes are what fixity must read.
    body = head[: head.rindex(b"%%EOF")]
    with open(path, "wb") as fh:
        fh.write(body)
        for _ in range(mib):
            fh.write(b"%" + os.urandom(1024 * 1024 - 2) + b"\n")
        fh.write(b"%%EOF\n")


def hashlib_reference(paths: list[Path]) -> float:
    start = time.perf_counter()
    for p in paths:
        a, b = hashlib.sha256(), hashlib.sha512()
        with open(p, "rb") as fh:
            while chunk := fh.read(1024 * 1024):
                a.update(chunk)
                b.update(chunk)
        a.hexdigest(), b.hexdigest()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from archive.instance import ArchiveInstance
    from archive.principal import Principal
    from archive.settings import load_settings
    from ingest.services import IngestService
    from preservation.fixity import run_fixity_check
    from tests.conftest import sample_metadata

    with tempfile.TemporaryDirectory(prefix="bench-fixity-") as tmp:
        env = {"ARCHIVE_ARCHIVE__DATA_DIR": tmp, "ARCHIVE_SIGNATURES__ENFORCE": "false"}
        init_archive(env)
        settings = load_settings(environ=env)
        instance = ArchiveInstance(settings)
        principal = Principal.system("bench")
        service = IngestService(settings, instance.catalog, instance.store,
                                principal=principal)
        for i in range(args.records):
            pdf = Path(tmp) / f"big{i}.pdf"
            big_pdf(pdf, args.mib, i)
            service.ingest(pdf, sample_metadata(number_symbol=f"{i}-BM/TU"), "bench")
            pdf.unlink()
        objects = sorted(settings.local_store_path.glob("aip/*/*.tar"))
        total = sum(p.stat().st_size for p in objects)
        hashlib_reference(objects)  # warm the page cache

        def best(fn) -> float:
            return min(fn() for _ in range(args.repeat))

        t_ref = best(lambda: hashlib_reference(objects))

        def ours(workers: int) -> float:
            start = time.perf_counter()
            report = run_fixity_check(settings, instance.catalog, instance.store, principal,
                                      None, workers=workers)
            assert report.ok and report.checked == args.records
            return time.perf_counter() - start

        t1 = best(lambda: ours(1))
        t2 = best(lambda: ours(2))
        instance.close()

    mib = total / 2**20
    result = {
        "machine": describe_machine(),
        "data": f"{args.records} records, {mib:.0f} MiB stored (sha256+sha512)",
        "hashlib_MiB_s": round(mib / t_ref, 1),
        "fixity_1_worker_MiB_s": round(mib / t1, 1),
        "fixity_2_workers_MiB_s": round(mib / t2, 1),
        "ratio_1_worker_vs_hashlib": round(t_ref / t1, 3),
        "ratio_2_workers_vs_1": round(t1 / t2, 3),
        "targets": {"ratio_1_worker_vs_hashlib": ">= 0.9", "ratio_2_workers_vs_1": ">= 1.5"},
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
