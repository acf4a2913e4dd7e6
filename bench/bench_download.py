"""Authorised download of a 1 MiB record against a bare Flask ``send_file`` (issue #4).

Ours: ``GET /api/v1/records/<id>/original`` over real HTTP on loopback, the whole path:
principal from the API token (``Authorization: Bearer kls_...``) or from the session
cookie of a real password + TOTP login (a strong login), the record read from the
catalog, the policy decision, the audit entry committed, the bytes streamed from the
store through the SHA-256 + SHA-512 verifying reader.
Reference: a bare Flask app whose one route is ``send_file`` of a file holding the same
bytes, mounted at ``/bare`` in the SAME server process (werkzeug DispatcherMiddleware):
one waitress server, 8 threads as ``archive serve`` uses. A second bare route streams
the same file through the SHA-256 + SHA-512 check only, to tell the cost of the
verification the requirement asks for from the cost of the access layer.

Concurrent closed-loop clients (kept-alive ``http.client`` connections in this process);
the targets take turns over interleaved rounds. Configurations: local folder + SQLite
(the embedded default) and SeaweedFS (S3) + PostgreSQL, both on loopback.

    .venv/bin/python bench/bench_download.py [--clients 8] [--requests 400] [--rounds 3]
        [--only local|s3] [--profile]
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.archive_setup import init_archive  # noqa: E402
from bench.http_load import Run, cpu_seconds, folded_top, load, py_spy, serving  # noqa: E402
from bench.machine import describe_machine  # noqa: E402

SIZE = 2**20
PERSON = "001085012345"
USERNAME = "bench.clerk"
PASSWORD = "bench-password-123"  # noqa: S105 (a throw-away benchmark archive)


def make_pdf(path: Path, size: int = SIZE) -> None:
    """A valid PDF of exactly ``size`` bytes (a comment line pads it)."""
    from ingest.demo import make_pdf as pdf

    body = pdf(["benchmark download 1 MiB"])
    head = body[: body.rindex(b"%%EOF")]
    tail = b"%%EOF\n"
    pad_len = size - len(head) - len(tail) - 2  # "%" ... "\n"
    pad = b"%" + os.urandom(pad_len // 2 + 1).hex()[:pad_len].encode() + b"\n"
    data = head + pad + tail
    assert len(data) == size
    path.write_bytes(data)


def prepare(env: dict, tmp: Path) -> dict:
    """Archive one 1 MiB record; a clerk user (TOTP) and an API token; the bare copy."""
    from archive.agents import register_agent
    from archive.instance import ArchiveInstance
    from archive.models import PackageVersion, Record
    from archive.principal import Principal
    from archive.settings import load_settings
    from archive.users import add_user, create_token
    from ingest.services import IngestService
    from tests.conftest import ORG, sample_metadata

    init_archive(env)
    settings = load_settings(environ=env)
    instance = ArchiveInstance(settings)
    system = Principal.system("bench")
    with instance.catalog.unit_of_work() as session:
        register_agent(session, settings, system, kind="person", identifier=PERSON,
                       name="Nguyễn Văn An", parent=ORG)
        user = add_user(session, settings, system, username=USERNAME, person=PERSON,
                        role="clerk", password=PASSWORD, organisations=[ORG])
        totp_secret = user.totp_secret
        _, token = create_token(session, settings, system, name="bench", agent=ORG,
                                scopes=["records:read", "records:download"])
    pdf = tmp / "download-1mib.pdf"
    make_pdf(pdf)
    service = IngestService(settings, instance.catalog, instance.store, principal=system)
    result = service.ingest(pdf, sample_metadata(number_symbol="1-BM/TU"), "metadata")
    service.close()
    assert result.status == "archived", result.to_dict()
    record_id = result.record_id
    with instance.catalog.unit_of_work(snapshot=True) as session:
        record = session.get(Record, record_id)
        version = session.query(PackageVersion).filter_by(record_id=record.id).one()
        original = next(f for f in version.files if f.role == "original")
        key, offset, size = version.storage_key, original.offset, original.size
    with instance.store.open(key, offset, size) as reader:
        stored = reader.read()
    assert stored == pdf.read_bytes() and len(stored) == SIZE
    bare = tmp / "bare-original.pdf"  # the reference serves these very bytes
    bare.write_bytes(stored)
    instance.close()
    return {"record_id": record_id, "token": token, "totp_secret": totp_secret,
            "bare_file": str(bare)}


def login(port: int, totp_secret: str) -> str:
    """Log in through the web UI with password + TOTP (enrolment); the session cookie."""
    import pyotp

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"

    def csrf(html: str) -> str:
        return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)

    page = opener.open(f"{base}/login").read().decode()
    form = {"csrf_token": csrf(page), "username": USERNAME, "password": PASSWORD}
    page = opener.open(f"{base}/login", urllib.parse.urlencode(form).encode())
    assert page.url.endswith("/login/enrol"), page.url
    form = {"csrf_token": csrf(page.read().decode()), "code": pyotp.TOTP(totp_secret).now()}
    page = opener.open(f"{base}/login/enrol", urllib.parse.urlencode(form).encode())
    page.read()
    cookie = next(c for c in jar if c.name == "kls_session")
    me = urllib.request.Request(f"{base}/api/v1/me",  # noqa: S310 - http://127.0.0.1
                                headers={"Cookie": f"kls_session={cookie.value}"})
    body = json.load(urllib.request.urlopen(me))  # noqa: S310 - http://127.0.0.1
    assert body["method"] == "totp" and body["strong"], body
    return f"kls_session={cookie.value}"


PROFILE_KEYS = {  # inclusive: a sample counts for every key whose frame is on its stack
    "principal (token / session lookup)": ["load_principal (access/auth.py"],
    "catalog read of the record (_get)": ["_get (archive/records.py"],
    "policy decision": ["require (archive/policy.py"],
    "audit append": ["append (archive/audit.py"],
    "commit": ["commit (sqlalchemy"],
    "SQLite BEGIN IMMEDIATE (write lock)": ["_on_begin (archive/db.py"],
    "digests (SHA-256 + SHA-512)": ["MultiHasher.update (archive/digests.py"],
    "store open + read (S3: GET round trip)": ["archive/storage/"],
    "waitress temp file for a streamed body > 1 MiB": [
        "OverflowableBuffer._set_large_buffer", "FileBasedBuffer.get (waitress",
        "FileBasedBuffer.append (waitress", "FileBasedBuffer.close (waitress"],
    "waitress file wrapper (send_file)": ["ReadOnlyFileBasedBuffer"],
    "socket send": ["dispatcher.send (waitress/wasyncore.py"],
    "send_file": ["send_file (flask"],
}


def measure(name: str, env: dict, tmp: Path, args) -> dict:
    info = prepare(env, tmp)
    record_path = f"/api/v1/records/{info['record_id']}/original"
    extra = [f"--waitress={w}" for w in args.waitress]
    with serving(env, "--bare-file", info["bare_file"], *extra,
                 log=tmp / f"server-{name}.log") as server:
        cookie = login(server.port, info["totp_secret"])
        targets = {
            "bare send_file": ("/bare/file", {}),
            "bare stream + SHA-256/512 check": ("/bare/verified", {}),
            "ours, API token": (record_path, {"Authorization": f"Bearer {info['token']}"}),
            "ours, session (password + TOTP)": (record_path, {"Cookie": cookie}),
        }
        for path, headers in targets.values():  # warm up every path
            load(server.port, "warm-up", lambda _i, p=path: p, headers, clients=2,
                 requests=20, expect_size=SIZE)
        runs = {t: Run(t) for t in targets}
        cpu = dict.fromkeys(targets, 0.0)
        for rnd in range(args.rounds):
            order = list(targets)[rnd % len(targets):] + list(targets)[:rnd % len(targets)]
            for target in order:
                path, headers = targets[target]
                before = cpu_seconds(server.pid)
                run = load(server.port, target, lambda _i, p=path: p, headers,
                           clients=args.clients, requests=args.requests, expect_size=SIZE)
                cpu[target] += cpu_seconds(server.pid) - before
                runs[target].add(run)
        profile = {}
        if args.profile:
            for target in ("ours, API token", "bare send_file"):
                path, headers = targets[target]
                out = tmp / f"pyspy-{name}-{target.split()[0].strip(',')}.txt"
                with py_spy(server.pid, out, seconds=args.profile_seconds) as ok:
                    if ok:
                        load(server.port, "profile", lambda _i, p=path: p, headers,
                             clients=args.clients, requests=args.requests * 4,
                             expect_size=SIZE)
                profile[target] = folded_top(out, PROFILE_KEYS,
                                             idle=("wait (threading.py",))
                if out.exists():
                    keep = Path(args.profile_dir) / out.name
                    keep.write_bytes(out.read_bytes())
                    profile[target]["raw"] = str(keep)
    bare = runs["bare send_file"]
    verified = runs["bare stream + SHA-256/512 check"]
    result = {}
    for target, run in runs.items():
        row = run.summary()
        row["server_cpu_ms_per_request"] = round(1000 * cpu[target] / max(run.requests, 1), 2)
        if target != "bare send_file":
            row["throughput_ratio"] = round(run.per_second / bare.per_second, 2)
            row["p99_ratio"] = round(run.pct(99) / bare.pct(99), 2)
        if target.startswith("ours"):
            row["target_met"] = row["throughput_ratio"] >= 0.5 and row["p99_ratio"] <= 2
            row["throughput_ratio_to_verified_stream"] = round(
                run.per_second / verified.per_second, 2)
        result[target] = row
    if profile:
        result["profile (py-spy: share of samples of busy server threads, waits on the "
               "database and S3 included)"] = profile
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=400,
                        help="requests per target per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", choices=("local", "s3"))
    parser.add_argument("--profile", action="store_true",
                        help="sample the server with py-spy (pip install py-spy)")
    parser.add_argument("--profile-seconds", type=int, default=15)
    parser.add_argument("--profile-dir", default=".")
    parser.add_argument("--waitress", action="append", default=[], metavar="KEY=VALUE",
                        help="an extra waitress setting for the server (experiments)")
    args = parser.parse_args()

    from tests.services.postgres import create_database, running_postgres
    from tests.services.seaweed import _start, weed_binary

    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-download-") as tmp:
        tmp = Path(tmp)
        base = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_")}
        base["ARCHIVE_SIGNATURES__ENFORCE"] = "false"  # an unsigned sample; reads measured
        if args.only in (None, "local"):
            env = dict(base, ARCHIVE_ARCHIVE__DATA_DIR=str(tmp / "local"))
            (tmp / "l").mkdir()
            results["local folder + SQLite"] = measure("local", env, tmp / "l", args)
        if args.only in (None, "s3"):
            seaweed = _start(weed_binary(), tmp / "seaweed")
            if isinstance(seaweed, str):
                raise SystemExit(f"SeaweedFS did not start: {seaweed}")
            try:
                with running_postgres() as pg:
                    env = dict(base,
                               ARCHIVE_ARCHIVE__DATA_DIR=str(tmp / "s3"),
                               ARCHIVE_DATABASE__URL=create_database(pg, "download"),
                               ARCHIVE_STORAGE__BACKEND="s3",
                               ARCHIVE_STORAGE__S3_ENDPOINT=seaweed.endpoint,
                               ARCHIVE_STORAGE__S3_BUCKET="download",
                               ARCHIVE_STORAGE__S3_ACCESS_KEY=seaweed.access_key,
                               ARCHIVE_STORAGE__S3_SECRET_KEY=seaweed.secret_key)
                    (tmp / "s").mkdir()
                    results["SeaweedFS (S3) + PostgreSQL"] = measure("s3", env, tmp / "s",
                                                                     args)
            finally:
                seaweed.stop()

    print(json.dumps({"machine": describe_machine(),
                      "data": "one 1 MiB record; reference: Flask send_file of the same "
                              "bytes from a local file, same waitress server (8 threads)",
                      "clients": args.clients,
                      "requests_per_target": args.requests * args.rounds,
                      "targets": "throughput ratio >= 0.5, p99 latency ratio <= 2",
                      "results": results}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
