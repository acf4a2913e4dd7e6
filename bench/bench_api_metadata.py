"""Metadata GET requests/s and search latency with 100,000 records in PostgreSQL (issue #4).

Catalog: one record is ingested through the real ingest path; its catalog rows (record,
package version, its 12 stored-file rows) are the template for 100,000 records bulk
inserted with SQLAlchemy (``insert(Model)`` with lists of rows), each with its own id,
number, document type, date, issuing organisation (20), fonds, classification and a
Vietnamese summary drawn from a fixed vocabulary. SHORTCUT: the cloned records have no
stored bytes (their package objects do not exist), no ingest events and no audit
entries; metadata GETs and search read only the catalog, so they do not notice.

Served by ``archive serve``'s server (waitress, 8 threads), over HTTP on loopback,
authenticated by API tokens (``records:read``). Measured:

* ``GET /api/v1/records/<id>`` of random records, 8 concurrent clients: requests/s,
  against a bare route in the same server doing one SELECT of the record row (joined to
  its organisation) with no login, policy or audit entry;
* ``GET /api/v1/records?q=...`` with and without filters: latency per query (one client,
  sequential) and under 8 concurrent clients, and the SQL time of each statement;
* the same searches after adding a pg_trgm GIN index on ``lower(summary)`` and
  ``lower(number_symbol)`` in the benchmark's database (an experiment: the index is not
  in the schema).

    .venv/bin/python bench/bench_api_metadata.py [--records 100000] [--no-index-experiment]
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
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.archive_setup import init_archive  # noqa: E402
from bench.http_load import Run, cpu_seconds, load, serving  # noqa: E402
from bench.machine import describe_machine  # noqa: E402

ORGS = 20
FONDS = [f"PHONG-{i:02d}" for i in range(1, 6)]
TYPES = {"quyet-dinh": ("Quyết định", "QĐ"), "cong-van": ("Công văn", "CV"),
         "thong-bao": ("Thông báo", "TB"), "bao-cao": ("Báo cáo", "BC"),
         "ke-hoach": ("Kế hoạch", "KH"), "to-trinh": ("Tờ trình", "TTr"),
         "nghi-quyet": ("Nghị quyết", "NQ"), "chi-thi": ("Chỉ thị", "CT"),
         "huong-dan": ("Hướng dẫn", "HD"), "bien-ban": ("Biên bản", "BB")}
TYPE_WEIGHTS = [30, 25, 12, 10, 8, 5, 3, 3, 2, 2]
ACTIONS = ["ban hành", "phê duyệt", "điều chỉnh", "kiện toàn", "thành lập", "bổ nhiệm",
           "khen thưởng", "triển khai", "tổng kết", "sơ kết", "kiểm tra", "giám sát",
           "hướng dẫn", "tăng cường", "nâng cao chất lượng", "đẩy mạnh", "chấn chỉnh",
           "sửa đổi, bổ sung", "tổ chức", "chuẩn bị"]
TOPICS = ["quy chế làm việc", "chương trình công tác", "kế hoạch kiểm tra",
          "công tác văn thư, lưu trữ", "chuyển đổi số", "công tác cán bộ",
          "đề án phát triển kinh tế - xã hội", "công tác dân vận", "công tác tuyên giáo",
          "công tác phòng, chống tham nhũng, tiêu cực", "ban chỉ đạo", "tổ giúp việc",
          "hội nghị cán bộ chủ chốt", "đại hội đảng bộ", "bảo vệ chính trị nội bộ",
          "cải cách hành chính", "quy hoạch cán bộ", "luân chuyển cán bộ",
          "công tác thi đua, khen thưởng", "học tập và làm theo tư tưởng, đạo đức, phong "
          "cách Hồ Chí Minh", "xây dựng nông thôn mới", "an ninh mạng",
          "ứng dụng công nghệ thông tin", "lưu trữ hồ sơ điện tử", "bảo vệ bí mật nhà nước",
          "công tác kiểm tra, giám sát và thi hành kỷ luật đảng", "phát triển đảng viên",
          "công tác đối ngoại", "quốc phòng, an ninh", "công tác tổ chức xây dựng đảng"]
# Topic popularity falls off (Zipf-like): the first topics are common, the last rare.
TOPIC_WEIGHTS = [1 / (i + 1) for i in range(len(TOPICS))]
PLACES = ["Mường Tè", "Phong Thổ", "Sìn Hồ", "Tam Đường", "Than Uyên", "Tân Uyên",
          "Nậm Nhùn", "thành phố", "các xã biên giới", "cơ quan Tỉnh ủy"]
SIGNERS = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Phạm Thị Dung",
           "Hoàng Văn Em", "Vũ Thị Giang", "Đặng Văn Hải", "Bùi Thị Lan"]


def summary(rng: random.Random, type_label: str, year: int) -> str:
    topic = rng.choices(TOPICS, TOPIC_WEIGHTS)[0]
    scope = rng.choice([f"năm {year}", "giai đoạn 2021 - 2025", "nhiệm kỳ 2020 - 2025",
                        f"quý {rng.randint(1, 4)} năm {year}", f"6 tháng đầu năm {year}",
                        f"tại {rng.choice(PLACES)}", "trên địa bàn tỉnh", ""])
    return f"{type_label} về việc {rng.choice(ACTIONS)} {topic} {scope}".strip()


def org_id(i: int) -> str:
    return f"000.00.{i:02d}.H41"


def populate(env: dict, n: int, seed: int = 4) -> dict:
    """The template ingest, the orgs, ``n`` cloned records, tokens. Returns ids etc."""
    from sqlalchemy import func, select, text

    from archive.agents import register_agent
    from archive.instance import ArchiveInstance
    from archive.models import Agent, PackageVersion, Record, StoredFile
    from archive.principal import Principal
    from archive.settings import load_settings
    from archive.users import create_token
    from bench.bench_ingest import make_inbox
    from ingest.services import IngestService, load_sidecar
    from tests.conftest import ORG

    init_archive(env)
    settings = load_settings(environ=env)
    instance = ArchiveInstance(settings)
    system = Principal.system("bench")
    with instance.catalog.unit_of_work() as session:
        for i in range(1, ORGS):
            register_agent(session, settings, system, kind="organisation",
                           identifier=org_id(i), name=f"Đảng ủy đơn vị {i:02d}")
        _, all_token = create_token(session, settings, system, name="bench-all",
                                    agent=ORG, scopes=["records:read"], clearance="mat",
                                    fonds=["*"])
        _, org_token = create_token(session, settings, system, name="bench-org",
                                    agent=org_id(7), scopes=["records:read"])
    inbox = make_inbox(Path(settings.data_dir).parent / "template-inbox", 1)
    service = IngestService(settings, instance.catalog, instance.store, principal=system)
    meta, source = load_sidecar(inbox[0])
    result = service.ingest(inbox[0], meta, source)
    service.close()
    assert result.status == "archived", result.to_dict()

    rng = random.Random(seed)
    started = time.perf_counter()
    with instance.catalog.unit_of_work() as session:
        template = session.get(Record, result.record_id)
        version = template.versions[0]
        rec_cols = {c.key: getattr(template, c.key) for c in Record.__table__.c}
        ver_cols = {c.key: getattr(version, c.key) for c in PackageVersion.__table__.c}
        file_cols = [{c.key: getattr(f, c.key) for c in StoredFile.__table__.c}
                     for f in version.files]
        orgs = {a.identifier: a.id for a in session.scalars(
            select(Agent).where(Agent.kind == "organisation"))}
        next_version = (session.scalar(select(func.max(PackageVersion.id))) or 0) + 1
        next_file = (session.scalar(select(func.max(StoredFile.id))) or 0) + 1
    org_ids = [orgs[ORG]] + [orgs[org_id(i)] for i in range(1, ORGS)]
    type_keys = list(TYPES)
    base_time = datetime(2024, 1, 1, tzinfo=UTC)
    ids, numbers = [], []  # ids: the records the all-fonds token may read
    batch = 5000
    for start in range(0, n, batch):
        records, versions, files = [], [], []
        for i in range(start, min(n, start + batch)):
            rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            doc_type = rng.choices(type_keys, TYPE_WEIGHTS)[0]
            label, abbr = TYPES[doc_type]
            day = date(2010, 1, 1) + timedelta(days=rng.randrange(16 * 365))
            number = f"{i + 1}-{abbr}/TU"
            level = rng.choices(["normal", "mat", "toi-mat"], [90, 8, 2])[0]
            records.append(dict(
                rec_cols, id=rid, number_symbol=number, doc_type=doc_type, doc_date=day,
                issuing_org_id=rng.choice(org_ids), summary=summary(rng, label, day.year),
                signer=rng.choice(SIGNERS), classification=level, fonds=rng.choice(FONDS),
                file_ref=f"HS-{day.year}-{rng.randint(1, 99):02d}",
                fingerprint=f"{rng.getrandbits(256):064x}",
                created_at=base_time + timedelta(seconds=i)))
            vid = next_version + i
            versions.append(dict(ver_cols, id=vid, record_id=rid,
                                 storage_key=f"aip/{rid}/v0001.tar",
                                 created_at=base_time + timedelta(seconds=i)))
            for k, f in enumerate(file_cols):
                files.append(dict(f, id=next_file + i * len(file_cols) + k, package_id=vid))
            if level != "toi-mat":  # above the tokens' clearance: a GET would be a 403
                ids.append(rid)
                numbers.append(number)
        with instance.catalog.unit_of_work() as session:
            copy_rows(session, Record.__table__, records)
            copy_rows(session, PackageVersion.__table__, versions)
            copy_rows(session, StoredFile.__table__, files)
    with instance.catalog.unit_of_work() as session:
        for table in ("package_versions", "stored_files"):
            session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 - fixed names
                                 f"(SELECT max(id) FROM {table}))"))
    with instance.catalog.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    load_seconds = time.perf_counter() - started
    instance.close()
    return {"ids": ids, "numbers": numbers, "all_token": all_token, "org_token": org_token,
            "load_seconds": round(load_seconds, 1), "files_per_record": len(file_cols)}


def copy_rows(session, table, rows: list[dict]) -> None:
    """Bulk-load ``rows`` into ``table`` with PostgreSQL COPY on the session's connection.

    (SQLAlchemy's executemany of the same rows ran one INSERT per row through psycopg's
    pipeline: ~300 s for the 1.3 million rows of 100,000 records; COPY takes seconds.)
    """
    from psycopg.types.json import Json
    from sqlalchemy import JSON

    names = [c.name for c in table.c]
    is_json = [isinstance(c.type, JSON) for c in table.c]
    columns = ", ".join(f'"{n}"' for n in names)
    raw = session.connection().connection.driver_connection
    with raw.cursor() as cursor, \
            cursor.copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([Json(row[n]) if j and row[n] is not None else row[n]
                            for n, j in zip(names, is_json, strict=True)])


def _engine(settings):
    from archive.db import make_engine

    return make_engine(settings.database_url)


def search_queries(numbers: list[str], rng: random.Random) -> dict[str, dict]:
    """Named searches: query parameters (the all-fonds token unless 'token' says 'org')."""
    return {
        "q=chuyển đổi số (a topic)": {"q": "chuyển đổi số"},
        "q=cán bộ (common words)": {"q": "cán bộ"},
        "q=Mường Tè + type + year": {"q": "Mường Tè", "type": "quyet-dinh",
                                     "from": "2020-01-01", "to": "2020-12-31"},
        "q=a number symbol": {"q": rng.choice(numbers)},
        "q=no match": {"q": "không có văn bản này"},
        "type + year, no text": {"type": "bao-cao", "from": "2019-01-01", "to": "2019-12-31"},
        "q + classification + org": {"q": "kế hoạch", "classification": "mat",
                                     "org": org_id(3)},
        "org token: q=chuyển đổi số": {"q": "chuyển đổi số", "token": "org"},
    }


def sql_breakdown(env: dict, queries: dict[str, dict]) -> dict:
    """SQL time per statement kind of each search, called in-process (median of 5)."""
    from sqlalchemy import event

    from access.api import record_filter
    from archive.instance import ArchiveInstance
    from archive.records import list_records
    from archive.settings import load_settings
    from archive.users import authenticate_token

    instance = ArchiveInstance(load_settings(environ=env))
    engine = instance.catalog.engine
    timings: list[tuple[str, float]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, params, context, executemany):
        conn.info["t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, params, context, executemany):
        s = statement.lstrip().upper()
        kind = "count" if s.startswith("SELECT COUNT") else \
            "page" if s.startswith("SELECT RECORDS") else \
            "audit" if "AUDIT" in s.split("WHERE")[0] else "other"
        timings.append((kind, time.perf_counter() - conn.info.pop("t0", time.perf_counter())))

    out = {}
    for name, params in queries.items():
        params = dict(params)
        which = params.pop("token", "all")
        per: dict[str, list[float]] = {}
        for _ in range(5):
            with instance.catalog.unit_of_work() as session:
                principal = authenticate_token(session, env[f"_BENCH_{which.upper()}_TOKEN"])
            timings.clear()
            t0 = time.perf_counter()
            with instance.catalog.unit_of_work() as session:
                total, _rows = list_records(session, principal, record_filter(params))
            wall = time.perf_counter() - t0
            sums: dict[str, float] = {"total_ms": wall}
            for kind, secs in timings:
                sums[kind] = sums.get(kind, 0.0) + secs
            for k, v in sums.items():
                per.setdefault(k, []).append(v)
        out[name] = {"matches": total,
                     **{f"{k}_ms" if k != "total_ms" else k:
                        round(statistics.median(v) * 1000, 1) for k, v in per.items()}}
    instance.close()
    return out


def measure_search(port: int, queries: dict[str, dict], tokens: dict[str, str], *,
                   repeat: int, clients: int) -> dict:
    def target(params: dict) -> tuple[str, dict]:
        params = dict(params)
        token = tokens[params.pop("token", "all")]
        return f"/api/v1/records?{urlencode(params)}", \
            {"Authorization": f"Bearer {token}"}

    per_query = {}
    overall = Run("search, 1 client")
    for name, params in queries.items():
        path, headers = target(params)
        load(port, "warm-up", lambda _i, p=path: p, headers, clients=1, requests=2)
        run = load(port, name, lambda _i, p=path: p, headers, clients=1, requests=repeat)
        overall.add(run)
        per_query[name] = {k: v for k, v in run.summary().items()
                           if k in ("p50_ms", "p95_ms", "errors", "first_error")}
    # Concurrent: the queries in turn, `clients` at a time (one token: the all-fonds one).
    paths = [target({k: v for k, v in p.items() if k != "token"})[0]
             for p in queries.values()]
    headers = {"Authorization": f"Bearer {tokens['all']}"}
    concurrent = load(port, "search, concurrent", lambda i: paths[i % len(paths)], headers,
                      clients=clients, requests=repeat * len(paths))
    return {"per_query (1 client)": per_query,
            "all queries, 1 client": {k: v for k, v in overall.summary().items()
                                      if k in ("requests", "p50_ms", "p95_ms", "p99_ms",
                                               "errors")},
            f"all queries, {clients} clients": {k: v for k, v in concurrent.summary().items()
                                                if k in ("requests", "per_second", "p50_ms",
                                                         "p95_ms", "p99_ms", "errors")}}


def add_trigram_index(env: dict) -> float:
    from sqlalchemy import text

    from archive.settings import load_settings

    engine = _engine(load_settings(environ=env))
    t0 = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        conn.execute(text("CREATE INDEX bench_records_summary_trgm ON records "
                          "USING gin (lower(summary) gin_trgm_ops)"))
        conn.execute(text("CREATE INDEX bench_records_number_trgm ON records "
                          "USING gin (lower(number_symbol) gin_trgm_ops)"))
        conn.execute(text("ANALYZE records"))
    engine.dispose()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--gets", type=int, default=3000, help="metadata GETs per target")
    parser.add_argument("--repeat", type=int, default=20, help="runs of each search")
    parser.add_argument("--no-index-experiment", action="store_true")
    args = parser.parse_args()

    from tests.services.postgres import create_database, running_postgres

    rng = random.Random(7)
    out: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp, running_postgres() as pg:
        tmp = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
        env.update(ARCHIVE_SIGNATURES__ENFORCE="false",
                   ARCHIVE_ARCHIVE__DATA_DIR=str(tmp / "data"),
                   ARCHIVE_DATABASE__URL=create_database(pg, "metadata"))
        data = populate(env, args.records)
        env["_BENCH_ALL_TOKEN"], env["_BENCH_ORG_TOKEN"] = data["all_token"], \
            data["org_token"]
        tokens = {"all": data["all_token"], "org": data["org_token"]}
        ids = data["ids"]
        queries = search_queries(data["numbers"], rng)
        out["catalog"] = {"records": args.records + 1,
                          "stored_file_rows_per_record": data["files_per_record"],
                          "bulk_load_seconds": data["load_seconds"]}

        with serving(env, "--bare-db", log=tmp / "server.log") as server:
            headers = {"Authorization": f"Bearer {tokens['all']}"}
            picks = [rng.choice(ids) for _ in range(args.gets)]
            gets = {"bare SELECT + jsonify": "/bare/records/{}",
                    "GET /api/v1/records/<id>": "/api/v1/records/{}"}
            for path in gets.values():
                load(server.port, "warm-up", lambda i, p=path: p.format(picks[i]), headers,
                     clients=2, requests=100)
            runs, cpu = {}, {}
            for name, path in gets.items():
                before = cpu_seconds(server.pid)
                runs[name] = load(server.port, name, lambda i, p=path: p.format(picks[i]),
                                  headers, clients=args.clients, requests=args.gets)
                cpu[name] = cpu_seconds(server.pid) - before
            bare = runs["bare SELECT + jsonify"]
            out["metadata GET"] = {}
            for name, run in runs.items():
                row = {k: v for k, v in run.summary().items()
                       if k in ("requests", "per_second", "p50_ms", "p95_ms", "p99_ms",
                                "errors", "first_error")}
                row["server_cpu_ms_per_request"] = round(1000 * cpu[name] / run.requests, 2)
                row["ratio_to_bare"] = round(run.per_second / bare.per_second, 2)
                out["metadata GET"][name] = row
            out["search"] = measure_search(server.port, queries, tokens, repeat=args.repeat,
                                           clients=args.clients)
        out["search SQL (in-process, median of 5)"] = sql_breakdown(env, queries)

        if not args.no_index_experiment:
            seconds = add_trigram_index(env)
            with serving(env, log=tmp / "server-trgm.log") as server:
                result = measure_search(server.port, queries, tokens, repeat=args.repeat,
                                        clients=args.clients)
            out["EXPERIMENT: pg_trgm GIN index on lower(summary), lower(number_symbol)"] = {
                "index_build_seconds": round(seconds, 1), **result,
                "SQL": sql_breakdown(env, queries)}

    print(json.dumps({"machine": describe_machine(),
                      "data": f"{args.records:,} cloned records + 1 ingested, PostgreSQL; "
                              "API tokens; 8 waitress threads",
                      "clients": args.clients, **out}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
