"""Destruction proposal over 1,000,000 catalog rows in PostgreSQL (issue #6, R-DESTROY-1;
target <= 10 s).

Catalog: 1,000,000 ``records`` rows bulk-loaded with PostgreSQL ``COPY`` (the loader of
``bench_api_metadata.py``), each with its own id, number, type, date, one of 20 issuing
organisations, fonds, classification (90 % normal, 8 % mật, 2 % tối mật), status and
retention: ~20 % permanent, ~5 % whose retention already ended, the rest running for
years. Among the expired: 2 % sealed (one seal decision per 100 records), 2 % under an
unreleased hold, 1 % held by a hold since released (so due again), 3 % revoked (due too).
SHORTCUT: the records have no package versions, stored bytes, events or audit entries;
the proposal reads only the records and the tables that block a destruction.

Measured, each on the warm catalog, median of ``--repeat`` runs:

* the reference: ``SELECT count(*) FROM records`` (a full scan of the same table);
* ``archive.retention.due_records`` (the query a proposal runs: expired, not permanent,
  active or revoked, no active seal, no unreleased hold, not on an open list);
* ``archive.destruction.propose`` as the scheduled job's system principal: the query plus
  the list and one item per due record, audited, committed (each run proposes the whole
  backlog again on a fresh copy of the state: the lists of the previous run are cancelled
  first, outside the timing).

    .venv/bin/python bench/bench_destruction_proposal.py [--records 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.archive_setup import init_archive  # noqa: E402
from bench.bench_api_metadata import (  # noqa: E402
    FONDS,
    ORGS,
    SIGNERS,
    TYPE_WEIGHTS,
    TYPES,
    copy_rows,
    org_id,
    summary,
)
from bench.machine import describe_machine  # noqa: E402

TODAY = date(2026, 11, 23)
RULES = [("vv", None, 20), ("70y", 70, 15), ("20y", 20, 25), ("10y", 10, 25),
         ("5y", 5, 15)]  # (code, years, weight)
EXPIRED_SHARE = 0.05


def _plus_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def populate(env: dict, n: int, seed: int = 6) -> dict:
    """``n`` records (about 5 % expired, some of them sealed or held); returns counts."""
    from sqlalchemy import select, text

    from archive.agents import register_agent
    from archive.instance import ArchiveInstance
    from archive.models import Agent, Record, RecordHold, Seal, SealRecord
    from archive.principal import Principal
    from archive.settings import load_settings
    from tests.conftest import ORG

    init_archive(env)
    settings = load_settings(environ=env)
    instance = ArchiveInstance(settings)
    system = Principal.system("bench")
    with instance.catalog.unit_of_work() as session:
        for i in range(1, ORGS):
            register_agent(session, settings, system, kind="organisation",
                           identifier=org_id(i), name=f"Đảng ủy đơn vị {i:02d}")
    with instance.catalog.unit_of_work() as session:
        orgs = {a.identifier: a.id for a in session.scalars(
            select(Agent).where(Agent.kind == "organisation"))}
    org_ids = [orgs[ORG]] + [orgs[org_id(i)] for i in range(1, ORGS)]

    rng = random.Random(seed)
    started = time.perf_counter()
    type_keys = list(TYPES)
    rule_weights = [w for _, _, w in RULES]
    created = datetime(2024, 1, 1, tzinfo=UTC)
    counts = {"records": 0, "expired": 0, "permanent": 0, "sealed_expired": 0,
              "held_expired": 0, "released_hold_expired": 0, "revoked_expired": 0,
              "expected_due": 0}
    seal_id: str | None = None
    batch = 20_000
    for start in range(0, n, batch):
        records, seals, seal_rows, holds = [], [], [], []
        for i in range(start, min(n, start + batch)):
            rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            doc_type = rng.choices(type_keys, TYPE_WEIGHTS)[0]
            label, abbr = TYPES[doc_type]
            expired = rng.random() < EXPIRED_SHARE
            if expired:
                code, years = rng.choice([("5y", 5), ("10y", 10), ("20y", 20)])
                until = TODAY - timedelta(days=rng.randrange(1, 3 * 365))
                day = _plus_years(until, -years)
            else:
                code, years, _ = rng.choices(RULES, rule_weights)[0]
                if years is None:
                    day = date(1990, 1, 1) + timedelta(days=rng.randrange(36 * 365))
                    until = None
                else:  # still running: dated so that it ends after today
                    until = TODAY + timedelta(days=rng.randrange(1, years * 365))
                    day = _plus_years(until, -years)
            status = "active"
            blocked = False
            if expired:
                counts["expired"] += 1
                roll = rng.random()
                if roll < 0.02:
                    if seal_id is None or len(seal_rows) % 100 == 0:
                        seal_id = str(uuid.uuid4())
                        seals.append(dict(
                            id=seal_id, reference=f"{len(seals) + 1}-QĐ/UBKT",
                            decision_date=TODAY, authority_id=orgs[ORG],
                            scope="Kiểm tra", readers=[], sealed_at=created,
                            sealed_by="user:thanhtra", sealer_person="thanhtra",
                            manifest_key=f"seals/{seal_id}/manifest.json",
                            manifest_sha256="0" * 64, legal_hold=False, status="active",
                            lifted_at=None, lifted_by=None, lift_reference=None,
                            lift_report=None))
                    seal_rows.append({"seal_id": seal_id, "record_id": rid})
                    counts["sealed_expired"] += 1
                    blocked = True
                elif roll < 0.05:
                    released = roll >= 0.04
                    holds.append(dict(
                        id=str(uuid.uuid4()), record_id=rid,
                        kind="legal" if rng.random() < 0.7 else "revocation-inquiry",
                        reason="Đang giải quyết khiếu nại", reference=None,
                        placed_at=created, placed_by="user:luutru",
                        released_at=created + timedelta(days=30) if released else None,
                        released_by="user:luutru" if released else None))
                    key = "released_hold_expired" if released else "held_expired"
                    counts[key] += 1
                    blocked = not released
                elif roll < 0.08:
                    status = "revoked"
                    counts["revoked_expired"] += 1
                if not blocked:
                    counts["expected_due"] += 1
            elif until is None:
                counts["permanent"] += 1
            records.append(dict(
                id=rid, number_symbol=f"{i + 1}-{abbr}/TU", doc_type=doc_type,
                doc_date=day, issuing_org_id=rng.choice(org_ids),
                summary=summary(rng, label, day.year), signer=rng.choice(SIGNERS),
                classification=rng.choices(["normal", "mat", "toi-mat"], [90, 8, 2])[0],
                retention_rule=code, retention_until=until, fonds=rng.choice(FONDS),
                file_ref=f"HS-{day.year}-{rng.randint(1, 99):02d}", page_count=1,
                language="vi", extra={}, status=status,
                fingerprint=f"{rng.getrandbits(256):064x}", format_puid="fmt/354",
                format_name="Acrobat PDF/A - Portable Document Format", pdfa="2b",
                created_at=created + timedelta(seconds=i), created_by="system:bench",
                origin="born-digital", paper_original_id=None))
        counts["records"] += len(records)
        with instance.catalog.unit_of_work() as session:
            copy_rows(session, Record.__table__, records)
            if seals:
                copy_rows(session, Seal.__table__, seals)
            if seal_rows:
                copy_rows(session, SealRecord.__table__, seal_rows)
            if holds:
                copy_rows(session, RecordHold.__table__, holds)
    with instance.catalog.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    counts["load_seconds"] = round(time.perf_counter() - started, 1)
    instance.close()
    return counts


def _timed(fn, repeat: int, before=None) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(env: dict, repeat: int) -> dict:
    from sqlalchemy import func, select, text, update

    from archive.instance import ArchiveInstance
    from archive.models import DestructionItem, DestructionList, Record
    from archive.principal import Principal
    from archive.retention import due_query, due_records
    from archive.settings import load_settings

    instance = ArchiveInstance(load_settings(environ=env))
    catalog = instance.catalog
    out: dict = {}

    def count_all() -> int:
        with catalog.unit_of_work() as session:
            return session.scalar(select(func.count()).select_from(Record))

    def due() -> int:
        with catalog.unit_of_work() as session:
            return len(due_records(session, TODAY))

    count_all()  # warm the cache
    ref, total = _timed(count_all, repeat)
    out["reference: SELECT count(*) FROM records"] = {"seconds": round(ref, 3),
                                                       "rows": total}
    seconds, found = _timed(due, repeat)
    out["due_records (the proposal's query)"] = {
        "seconds": round(seconds, 3), "due": found, "ratio_to_count": round(seconds / ref, 2)}
    with catalog.unit_of_work() as session:
        plan = session.execute(text("EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) "
                                    + str(due_query(TODAY).compile(
                                        dialect=session.bind.dialect,
                                        compile_kwargs={"literal_binds": True}))))
        out["due_records plan"] = [row[0] for row in plan]

    try:
        from archive.destruction import propose
    except ImportError:
        out["archive.destruction.propose"] = "not available in this checkout"
    else:
        principal = Principal.system("job:destruction-proposal")

        def reset() -> None:  # the next run proposes the whole backlog again
            with catalog.unit_of_work() as session:
                session.execute(update(DestructionList)
                                .where(DestructionList.status == "proposed")
                                .values(status="cancelled"))

        def run():
            return propose(catalog, principal, today=TODAY, reason="benchmark",
                           clock=instance.clock)

        seconds, made = _timed(run, repeat, before=reset)
        with catalog.unit_of_work() as session:
            items = session.scalar(select(func.count()).select_from(DestructionItem)
                                   .where(DestructionItem.status == "listed")
                                   .join(DestructionList)
                                   .where(DestructionList.status == "proposed"))
        made = made.to_dict() if hasattr(made, "to_dict") else made
        out["archive.destruction.propose (query + list + items + audit, committed)"] = {
            "seconds": round(seconds, 3), "items_listed": items,
            "ratio_to_count": round(seconds / ref, 2), "target_seconds": 10,
            "list_id": (made or {}).get("id") if isinstance(made, dict) else None}
    instance.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from tests.services.postgres import create_database, running_postgres

    with tempfile.TemporaryDirectory(prefix="bench-destroy-") as tmp, \
            running_postgres() as pg:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
        env.update(ARCHIVE_SIGNATURES__ENFORCE="false",
                   ARCHIVE_ARCHIVE__DATA_DIR=str(Path(tmp) / "data"),
                   ARCHIVE_DATABASE__URL=create_database(pg, "destruction"))
        counts = populate(env, args.records)
        out = measure(env, args.repeat)
    print(json.dumps({"machine": describe_machine(),
                      "data": f"{args.records:,} records in PostgreSQL; today = {TODAY}",
                      "catalog": counts, **out}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
