"""Benchmark: our BagIt validator against bagit-python on many small files (R-PKG-1).

Builds one bag of N files (sha256 + sha512 manifests, tag manifest, Payload-Oxum) in a
temporary directory, warms the page cache, then times ``archive.bag_validation.validate_bag``
(workers=1 and workers=2) and ``bagit.Bag(path).validate(processes=1)`` on the same data,
best of ``--repeat`` interleaved rounds. Target: ours at least 3x bagit-python.

    .venv/bin/python bench/bench_bag_validate.py [--files 10000] [--size 10240]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bagit  # noqa: E402

from archive.bag_validation import validate_bag  # noqa: E402

ALGORITHMS = ("sha256", "sha512")


def build_bag(root: Path, files: int, size: int) -> None:
    """Write a complete BagIt 1.0 bag by hand (no bagit.make_bag: it calls os.chdir)."""
    data = root / "data"
    lines: dict[str, list[str]] = {a: [] for a in ALGORITHMS}
    per_dir = 1000
    for i in range(files):
        directory = data / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            directory.mkdir(parents=True)
        content = (i.to_bytes(8, "big") * (size // 8 + 1))[:size]
        content = os.urandom(16) + content[16:] if size >= 16 else content
        rel = f"data/d{i // per_dir:04d}/f{i:06d}.bin"
        (root / rel).write_bytes(content)
        for a in ALGORITHMS:
            lines[a].append(f"{hashlib.new(a, content).hexdigest()}  {rel}\n")
    tag_files = {
        "bagit.txt": "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
        "bag-info.txt": f"Payload-Oxum: {files * size}.{files}\nBagging-Date: 2026-01-01\n",
    }
    for a in ALGORITHMS:
        tag_files[f"manifest-{a}.txt"] = "".join(lines[a])
    for name, text in tag_files.items():
        (root / name).write_text(text, encoding="utf-8")
    for a in ALGORITHMS:
        entries = [f"{hashlib.new(a, (root / n).read_bytes()).hexdigest()} {n}\n"
                   for n in sorted(tag_files)]
        (root / f"tagmanifest-{a}.txt").write_text("".join(entries), encoding="utf-8")


def warm(root: Path) -> None:
    for dirpath, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(dirpath, name), "rb") as f:
                while f.read(1 << 20):
                    pass


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=10_240, help="bytes per file")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.getLogger("bagit").setLevel(logging.ERROR)

    print(f"machine: {platform.machine()}, nproc={os.cpu_count()}, "
          f"usable={len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else '?'}"
          f", cpu={cpu_model()}, python {platform.python_version()}, bagit {bagit.VERSION}")
    with tempfile.TemporaryDirectory(prefix="bench-bag-") as tmp:
        root = Path(tmp) / "bag"
        root.mkdir()
        t = time.perf_counter()
        build_bag(root, args.files, args.size)
        print(f"built bag: {args.files} files x {args.size} B, sha256+sha512 "
              f"in {time.perf_counter() - t:.1f}s")
        warm(root)

        def ours(workers: int):
            def run():
                report = validate_bag(root, workers=workers)
                if not report.valid:
                    raise SystemExit(f"our validator rejected the bench bag: {report.problems[:3]}")
            return run

        def theirs():
            bagit.Bag(str(root)).validate(processes=1)

        candidates = {"ours workers=1": ours(1), "ours workers=2": ours(2),
                      "bagit-python processes=1": theirs}
        # Interleaved rounds, so a neighbour's load on the shared cores hits all alike.
        results = {name: float("inf") for name in candidates}
        for _ in range(args.repeat):
            for name, fn in candidates.items():
                results[name] = min(results[name], timed(fn))
    base = results["bagit-python processes=1"]
    for name, seconds in results.items():
        print(f"{name:26} {seconds:7.3f}s  {args.files / seconds:9.0f} files/s  "
              f"{base / seconds:5.2f}x bagit-python")
    ratio = base / min(results["ours workers=1"], results["ours workers=2"])
    print(f"best ratio: {ratio:.2f}x (target >= 3x): {'OK' if ratio >= 3 else 'BELOW TARGET'}")
    return 0 if ratio >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
