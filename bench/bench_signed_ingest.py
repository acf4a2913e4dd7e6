"""End-to-end signed ingest rate (issue #3) against the bare cost of pyHanko validation.

Each document carries two PAdES B-T signatures (a person and the issuing organisation)
from the test PKI, which is served over HTTP on loopback (OCSP, CRLs, TSA). Ingest
does everything: metadata, PRONOM, both signatures validated with OCSP/CRL, registry
and policy, RFC 3161 archive timestamp over the manifest, dual digests, AIP stored and
verified, catalog committed. Reference in the same run: pyHanko's
`validate_pdf_signature` of the same files with live revocation fetching, one process.

    .venv/bin/python bench/bench_signed_ingest.py [--docs 120] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.archive_setup import init_archive  # noqa: E402
from bench.bench_ingest import run  # noqa: E402
from bench.machine import describe_machine  # noqa: E402


def register_signers(env: dict, pki) -> None:
    from datetime import UTC, datetime

    from archive.certificates import bind_certificate, grant_signing_authority
    from archive.instance import ArchiveInstance
    from archive.principal import Principal
    from archive.settings import load_settings
    from tests.conftest import ORG

    settings = load_settings(environ=env)
    instance = ArchiveInstance(settings)
    principal = Principal.system("bench")
    from archive.agents import register_agent

    with instance.catalog.unit_of_work() as session:
        register_agent(session, settings, principal, kind="person",
                       identifier=pki.identifier("an"), name="An")
        bind_certificate(session, settings, principal, pki.identifier("an"),
                         pki.cert_pem("an"))
        bind_certificate(session, settings, principal, ORG, pki.cert_pem("org_vptu"))
        grant_signing_authority(session, principal, pki.identifier("an"), ORG, "Chủ tịch",
                                datetime(2020, 1, 1, tzinfo=UTC))
    instance.close()


def make_inbox(folder: Path, factory, n: int) -> list[Path]:
    from tests.conftest import sample_metadata

    folder.mkdir(parents=True)
    paths = []
    for i in range(n):
        signed = factory.signed("an", "org_vptu", text=f"benchmark document {i}")
        pdf = folder / f"doc{i:04d}.pdf"
        pdf.write_bytes(signed.read_bytes())
        pdf.with_name(pdf.name + ".json").write_text(
            json.dumps(sample_metadata(number_symbol=f"{i}-QĐ/TU"), ensure_ascii=False),
            encoding="utf-8")
        paths.append(pdf)
    return paths


def bare_pyhanko(paths: list[Path], pki) -> float:
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature

    async def validate_all():
        context = pki.validation_context()
        try:
            for p in paths:
                reader = PdfFileReader(io.BytesIO(p.read_bytes()))
                for sig in reader.embedded_signatures:
                    status = await async_validate_pdf_signature(sig, context)
                    assert status.bottom_line, p
        finally:
            await context.aclose() if hasattr(context, "aclose") else None

    start = time.perf_counter()
    asyncio.run(validate_all())
    return len(paths) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=120)
    parser.add_argument("--profile", action="store_true",
                        help="also profile 30 documents in one process")
    args = parser.parse_args()

    from cli.signatures import _silence_pyhanko
    from tests.pki.factories import SignedPdfFactory
    from tests.pki.server import serve
    from tests.services.postgres import create_database, running_postgres
    from tests.services.seaweed import _start, weed_binary

    _silence_pyhanko()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-signed-") as tmp:
        tmp = Path(tmp)
        pki, server = serve(tmp / "pki")
        try:
            factory = SignedPdfFactory(pki, tmp / "pdfs")
            base = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
            base.update({"ARCHIVE_SIGNATURES__TRUST_ROOTS": json.dumps([str(pki.trust_roots_path)]),
                         "ARCHIVE_SIGNATURES__TSA_URL": pki.tsa_url,
                         "ARCHIVE_SIGNATURES__ENFORCE": "true"})
            started = time.perf_counter()
            docs = {name: make_inbox(tmp / f"inbox-{name}", factory, args.docs)
                    for name in ("local", "s3")}
            results["signing_seconds_per_doc"] = round(
                (time.perf_counter() - started) / (2 * args.docs), 3)
            results["bare_pyhanko_validation_docs_per_s"] = round(
                bare_pyhanko(docs["local"], pki), 1)

            env = dict(base, ARCHIVE_ARCHIVE__DATA_DIR=str(tmp / "local"))
            init_archive(env)
            register_signers(env, pki)
            results["local+sqlite, 2 processes"] = round(run(env, docs["local"], 2), 1)

            seaweed = _start(weed_binary(), tmp / "seaweed")
            if isinstance(seaweed, str):
                raise SystemExit(f"SeaweedFS did not start: {seaweed}")
            try:
                with running_postgres() as pg:
                    env = dict(base, ARCHIVE_ARCHIVE__DATA_DIR=str(tmp / "s3"),
                               ARCHIVE_DATABASE__URL=create_database(pg, "signed"),
                               ARCHIVE_STORAGE__BACKEND="s3",
                               ARCHIVE_STORAGE__S3_ENDPOINT=seaweed.endpoint,
                               ARCHIVE_STORAGE__S3_BUCKET="signed",
                               ARCHIVE_STORAGE__S3_ACCESS_KEY=seaweed.access_key,
                               ARCHIVE_STORAGE__S3_SECRET_KEY=seaweed.secret_key)
                    init_archive(env)
                    register_signers(env, pki)
                    results["s3(seaweedfs)+postgresql, 2 processes"] = round(
                        run(env, docs["s3"], 2), 1)
            finally:
                seaweed.stop()
            for key in [k for k in results if "processes" in k]:
                results[f"ratio {key} / bare pyHanko"] = round(
                    results[key] / results["bare_pyhanko_validation_docs_per_s"], 2)

            if args.profile:
                results["profile"] = profile(tmp, base, factory, pki)
        finally:
            server.stop()
    print(json.dumps({"machine": describe_machine(),
                      "data": f"{args.docs} PDFs with 2 B-T signatures per configuration",
                      "target": ">= 30 docs/s on S3+PostgreSQL", **results},
                     indent=2, ensure_ascii=False))


def profile(tmp: Path, base: dict, factory, pki) -> list[str]:
    from archive.instance import ArchiveInstance
    from archive.principal import Principal
    from archive.settings import load_settings
    from ingest.services import IngestService, load_sidecar

    env = dict(base, ARCHIVE_ARCHIVE__DATA_DIR=str(tmp / "profile"))
    init_archive(env)
    register_signers(env, pki)
    paths = make_inbox(tmp / "inbox-profile", factory, 30)
    instance = ArchiveInstance(load_settings(environ=env))
    service = IngestService(instance.settings, instance.catalog, instance.store,
                            principal=Principal.system("bench"))
    profiler = cProfile.Profile()
    profiler.enable()
    for p in paths:
        meta, source = load_sidecar(p)
        service.ingest(p, meta, source)
    profiler.disable()
    service.close()
    instance.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    return [line for line in out.getvalue().splitlines() if line.strip()][:45]


if __name__ == "__main__":
    main()
