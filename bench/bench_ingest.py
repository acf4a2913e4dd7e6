"""Unsigned ingest rate (records/s) on local+SQLite and on SeaweedFS+PostgreSQL.

Each record is a ~100 KiB PDF with sidecar metadata, taken through the whole ingest
path: metadata validation, PRONOM identification, AIP (BagIt + METS + PREMIS) built
with SHA-256 + SHA-512, stored, re-read and verified, catalog rows + audit entry
committed. Measured with 1 and 2 ingest processes. Real SeaweedFS and PostgreSQL are
started on loopback for the run (as the test suite does).

    .venv/bin/python bench/bench_ingest.py [--records 200]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.archive_setup import init_archive  # noqa: E402
from bench.machine import describe_machine  # noqa: E402


def make_inbox(folder: Path, n: int, kib: int = 100) -> list[Path]:
    from ingest.demo import make_pdf
    from tests.conftest import sample_metadata

    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        pdf = folder / f"doc{i:05d}.pdf"
        body = make_pdf([f"benchmark document {i}"])
        pad = b"%" + os.urandom(kib * 1024 // 2).hex()[: kib * 1024 - 2].encode() + b"\n"
        pdf.write_bytes(body[: body.rindex(b"%%EOF")] + pad + b"%%EOF\n")
        meta = sample_metadata(number_symbol=f"{i}-BM/TU")
        pdf.with_name(pdf.name + ".json").write_text(json.dumps(meta, ensure_ascii=False),
                                                     encoding="utf-8")
        paths.append(pdf)
    return paths


def _worker(env: dict, paths: list[str], queue) -> None:
    from archive.instance import ArchiveInstance
    from archive.principal import Principal
    from archive.settings import load_settings
    from ingest.services import IngestService, load_sidecar

    instance = ArchiveInstance(load_settings(environ=env))
    service = IngestService(instance.settings, instance.catalog, instance.store,
                            principal=Principal.system("bench"))
    done = 0
    for p in paths:
        meta, source = load_sidecar(Path(p))
        if service.ingest(Path(p), meta, source).status == "archived":
            done += 1
    service.close()
    instance.close()
    queue.put(done)


def run(env: dict, paths: list[Path], processes: int) -> float:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    shares = [[str(p) for p in paths[i::processes]] for i in range(processes)]
    procs = [ctx.Process(target=_worker, args=(env, share, queue)) for share in shares]
    start = time.perf_counter()
    for p in procs:
        p.start()
    done = sum(queue.get() for _ in procs)
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - start
    assert done == len(paths), f"only {done} of {len(paths)} archived"
    return len(paths) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200)
    args = parser.parse_args()

    from tests.services.postgres import create_database, running_postgres
    from tests.services.seaweed import _start, weed_binary

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        base = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
        base["ARCHIVE_SIGNATURES__ENFORCE"] = "false"  # unsigned ingest is measured here
        for processes in (1, 2):
            paths = make_inbox(tmp / f"inbox-local-{processes}", args.records)
            env = dict(base, ARCHIVE_ARCHIVE__DATA_DIR=str(tmp / f"local-{processes}"))
            init_archive(env)
            results[f"local+sqlite, {processes} process(es)"] = round(
                run(env, paths, processes), 1)

        seaweed = _start(weed_binary(), tmp / "seaweed")
        if isinstance(seaweed, str):
            raise SystemExit(f"SeaweedFS did not start: {seaweed}")
        try:
            with running_postgres() as pg:
                for processes in (1, 2):
                    paths = make_inbox(tmp / f"inbox-s3-{processes}", args.records)
                    env = dict(base,
                               ARCHIVE_ARCHIVE__DATA_DIR=str(tmp / f"s3-{processes}"),
                               ARCHIVE_DATABASE__URL=create_database(pg, f"b{processes}"),
                               ARCHIVE_STORAGE__BACKEND="s3",
                               ARCHIVE_STORAGE__S3_ENDPOINT=seaweed.endpoint,
                               ARCHIVE_STORAGE__S3_BUCKET=f"bench{processes}",
                               ARCHIVE_STORAGE__S3_ACCESS_KEY=seaweed.access_key,
                               ARCHIVE_STORAGE__S3_SECRET_KEY=seaweed.secret_key)
                    init_archive(env)
                    results[f"s3(seaweedfs)+postgresql, {processes} process(es)"] = round(
                        run(env, paths, processes), 1)
        finally:
            seaweed.stop()

    print(json.dumps({"machine": describe_machine(),
                      "data": f"{args.records} PDFs of ~100 KiB per run, unsigned",
                      "records_per_second": results}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
