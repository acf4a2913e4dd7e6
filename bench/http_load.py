"""HTTP load for the benchmarks: start the server, closed-loop clients, latency stats.

Clients are threads of this process, each with its own kept-alive ``http.client``
connection, sending the next request as soon as the previous response body has been
read to its last byte (a closed loop). Latency is from sending the request to the last
body byte. No ``wrk`` on the benchmark machine; these clients are light (the body is
read into one reused buffer) but share the 2 cores with the server, as a real client
on the same host would.
"""

from __future__ import annotations

import http.client
import itertools
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.services.common import free_port

HERE = Path(__file__).resolve().parent


@dataclass
class Server:
    port: int
    proc: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextmanager
def serving(env: dict, *args: str, log: Path) -> Iterator[Server]:
    """Run bench/http_server.py with ``env`` until the block ends."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(HERE / "http_server.py"),
                                 "--port", str(port), *args],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                    break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start:\n{log.read_text()[-2000:]}") \
                        from exc
                time.sleep(0.2)
        yield Server(port, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Run:
    name: str
    requests: int = 0
    seconds: float = 0.0
    body_bytes: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds
    errors: list[str] = field(default_factory=list)

    def add(self, other: Run) -> None:
        self.requests += other.requests
        self.seconds += other.seconds
        self.body_bytes += other.body_bytes
        self.latencies += other.latencies
        self.errors += other.errors

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mib_per_second(self) -> float:
        return self.body_bytes / 2**20 / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        """Latency percentile ``p`` (0-100) in milliseconds (nearest rank)."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        rank = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
        return ordered[rank] * 1000

    def summary(self) -> dict:
        out = {"requests": self.requests, "per_second": round(self.per_second, 1),
               "p50_ms": round(self.pct(50), 2), "p95_ms": round(self.pct(95), 2),
               "p99_ms": round(self.pct(99), 2),
               "mean_ms": round(statistics.fmean(self.latencies) * 1000, 2)
               if self.latencies else 0.0}
        if self.body_bytes:
            out["MiB_per_second"] = round(self.mib_per_second, 1)
        if self.errors:
            out["errors"] = len(self.errors)
            out["first_error"] = self.errors[0]
        return out


def load(port: int, name: str, paths: Callable[[int], str], headers: dict[str, str], *,
         clients: int, requests: int, expect_status: int = 200,
         expect_size: int | None = None) -> Run:
    """``requests`` GETs of ``paths(i)`` by ``clients`` concurrent kept-alive connections."""
    counter = itertools.count()
    lock = threading.Lock()
    run = Run(name)
    start_gate = threading.Barrier(clients + 1)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        buf = bytearray(4 * 2**20)
        view = memoryview(buf)
        mine: list[float] = []
        errors: list[str] = []
        nbytes = 0
        start_gate.wait()
        while True:
            i = next(counter)
            if i >= requests:
                break
            t0 = time.perf_counter()
            try:
                conn.request("GET", paths(i), headers=headers)
                resp = conn.getresponse()
                got = 0
                while True:
                    n = resp.readinto(view)
                    if not n:
                        break
                    got += n
                resp.close()
            except (OSError, http.client.HTTPException) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            mine.append(time.perf_counter() - t0)
            nbytes += got
            if resp.status != expect_status or (expect_size is not None and
                                                got != expect_size):
                errors.append(f"HTTP {resp.status}, {got} bytes")
            if resp.will_close:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.close()
        with lock:
            run.latencies.extend(mine)
            run.errors.extend(errors)
            run.body_bytes += nbytes

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start_gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    run.seconds = time.perf_counter() - t0
    run.requests = len(run.latencies)
    return run


@contextmanager
def py_spy(pid: int, out: Path, seconds: int) -> Iterator[bool]:
    """Sample the server with py-spy (if installed) while the block runs."""
    exe = Path(sys.executable).with_name("py-spy")
    if not exe.exists():
        yield False
        return
    proc = subprocess.Popen([str(exe), "record", "-p", str(pid), "-o", str(out), "-f", "raw",
                             "-r", "200", "-d", str(seconds), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield True
    finally:
        try:
            proc.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()


def folded_top(path: Path, keys: dict[str, list[str]], idle: tuple[str, ...] = ()) -> dict:
    """Share of busy samples whose stack contains any of each key's frame substrings.

    ``path`` is py-spy raw (folded) output: "frame;frame;... count" per line. Stacks
    containing an ``idle`` substring (threads waiting for work) are not counted.
    """
    totals = dict.fromkeys(keys, 0)
    busy = 0
    if not path.exists():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        if any(s in stack for s in idle):
            continue
        n = int(count)
        busy += n
        for key, needles in keys.items():
            if any(s in stack for s in needles):
                totals[key] += n
    if not busy:
        return {}
    return {"busy_samples": busy,
            **{k: f"{100 * v / busy:.0f} %" for k, v in totals.items()}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick
