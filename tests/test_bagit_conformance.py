"""BagIt validation against the Library of Congress conformance suite, plus odd inputs (R-PKG-1).

Every row of ``bagit-conformance/index.csv`` is one test, driven through the real CLI
(``archive bag validate``) with click's CliRunner. Further tests prove that validation
writes nothing, never fetches ``fetch.txt`` URLs, and turns odd input into problems.
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from archive.bag_validation import validate_bag
from cli.main import cli
from tests.conftest import CONFORMANCE

SUITE = CONFORMANCE / "bagit-conformance"


def _rows() -> list[dict]:
    index = SUITE / "index.csv"
    if not index.is_file():
        return []
    with index.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


ROWS = _rows()


@pytest.fixture(scope="session")
def suite(conformance_dir: Path) -> Path:
    return conformance_dir / "bagit-conformance"


def run_cli(*args: str):
    result = CliRunner().invoke(cli, ["bag", "validate", *args])
    # Never a traceback: only our own exits (0/1/2) may end the command.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


# ---- the conformance suite, one test per case --------------------------------------


@pytest.mark.parametrize("row", ROWS, ids=[r["path"] for r in ROWS])
def test_conformance_case(suite: Path, row: dict) -> None:
    expected = row["expected"]
    if expected == "invalid_on_posix" and os.name != "posix":
        pytest.skip("linux-only case: the suite runs it on POSIX systems only")
    result = run_cli(str(suite / row["path"]))

    if expected == "valid":
        assert result.exit_code == 0, result.output
    elif expected in ("invalid", "invalid_on_posix"):
        assert result.exit_code == 1, result.output
        assert "error:" in result.stdout
    elif expected == "invalid_on_windows":
        # The suite runs these only on Windows, where C:\..., %HomeDrive%\... and \\?\UNC\...
        # lead outside the bag. On POSIX the same strings are odd relative names of files that
        # are not in the bag (and not under data/), so the bags are invalid here as well; our
        # validator also refuses the Windows forms on every OS, because a bag is an
        # interchange package and must be safe wherever it is opened (R-PKG-1).
        assert result.exit_code == 1, result.output
        assert "outside the bag" in result.stdout
    elif expected == "valid_with_warning":
        assert result.stderr.strip(), "a warning was expected on stderr"
        if row["path"].endswith("special-system-files"):
            # README caveat: the manifest lists data/.DS_Store, which the upstream git
            # repository does not carry. Accept a warning (valid) or a missing-file error;
            # test_special_system_files_when_complete checks the complete bag.
            assert result.exit_code in (0, 1), result.output
            if result.exit_code == 1:
                assert "file-missing: data/.DS_Store" in result.stdout
        else:
            assert result.exit_code == 0, result.output
    else:
        pytest.fail(f"unknown expectation {expected!r} in index.csv")


def test_index_covers_every_bag(suite: Path) -> None:
    on_disk = {str(p.parent.relative_to(suite)) for p in suite.glob("v*/*/*/data")}
    assert on_disk == {r["path"] for r in ROWS}
    assert len(ROWS) == 60


def test_special_system_files_when_complete(suite: Path, tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    shutil.copytree(suite / "v0.97/warning/special-system-files", bag, symlinks=True)
    (bag / "data/.DS_Store").write_bytes(b"")  # what upstream had (empty: sha512 cf83e...)
    result = run_cli(str(bag))
    assert result.exit_code == 0, result.output
    assert ".DS_Store" in result.stderr and "Thumbs.db" in result.stderr


# ---- validation writes nothing -----------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root (not following symlinks) with type, size and mtime."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            out[rel] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def file_digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def test_whole_suite_writes_nothing(suite: Path, tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "corpus"
    shutil.copytree(suite, copy, symlinks=True)  # copy2: bytes (CRLF included) and mtimes
    assert file_digests(copy) == file_digests(suite), "the copy must be byte-identical"
    work, temp = tmp_path / "cwd", tmp_path / "tmp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))

    before, shared_before = snapshot(copy), snapshot(suite)
    for row in ROWS:
        run_cli(str(copy / row["path"]))
        run_cli("--json", "--fast", str(copy / row["path"]))
        validate_bag(suite / row["path"])  # the shared corpus itself, read in place
    assert snapshot(copy) == before
    assert snapshot(suite) == shared_before
    assert not any(work.iterdir()) and not any(temp.iterdir())


# ---- fetch.txt is never fetched ----------------------------------------------------


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def _any(self) -> None:
        self.requests.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"hi")

    do_GET = do_HEAD = do_POST = _any

    def log_message(self, *args) -> None:
        pass


def test_fetch_urls_are_never_fetched(suite: Path, tmp_path: Path) -> None:
    _CountingHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        bag = tmp_path / "holey"
        shutil.copytree(suite / "v0.97/valid/holey-bag", bag, symlinks=True)
        fetch = (bag / "fetch.txt").read_bytes()
        (bag / "fetch.txt").write_bytes(fetch.replace(b"http://localhost:8989", base.encode()))
        (bag / "data/test2.txt").unlink()  # a hole: listed in fetch.txt, not yet fetched

        result = run_cli(str(bag))
        report = validate_bag(bag, workers=2)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert result.exit_code == 1
    assert "not-fetched: data/test2.txt" in result.stdout
    assert any(p.code == "not-fetched" and p.target == "data/test2.txt" for p in report.problems)
    assert _CountingHandler.requests == []


# ---- odd inputs: problems, never a crash -------------------------------------------


def make_bag(root: Path, files: dict[str, bytes], *, version: str = "1.0",
             algorithms: tuple[str, ...] = ("sha256",), oxum: bool = True,
             encode=lambda p: p) -> Path:
    """Write a small bag by hand; ``encode`` maps a payload name to its manifest form."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        target = root / "data" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    (root / "data").mkdir(exist_ok=True)
    (root / "bagit.txt").write_text(
        f"BagIt-Version: {version}\nTag-File-Character-Encoding: UTF-8\n", encoding="utf-8")
    info = "Bagging-Date: 2026-01-01\n"
    if oxum:
        info += f"Payload-Oxum: {sum(map(len, files.values()))}.{len(files)}\n"
    (root / "bag-info.txt").write_text(info, encoding="utf-8")
    for alg in algorithms:
        lines = [f"{hashlib.new(alg, c).hexdigest()}  {encode('data/' + n)}\n"
                 for n, c in files.items()]
        (root / f"manifest-{alg}.txt").write_text("".join(lines), encoding="utf-8",
                                                  newline="")
    return root


def codes(report) -> set[str]:
    return {p.code for p in report.problems}


def test_empty_directory_is_not_a_bag(tmp_path: Path) -> None:
    report = validate_bag(tmp_path)
    assert not report.valid
    assert {"bagit-txt-missing", "payload-missing", "manifest-missing"} <= codes(report)
    assert run_cli(str(tmp_path)).exit_code == 1


def test_ordinary_directory_is_not_a_bag(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    result = run_cli(str(tmp_path))
    assert result.exit_code == 1
    assert "bagit-txt-missing" in result.stdout


@pytest.mark.parametrize("garbage", [
    b"\xff\xfe\x00\x81garbage\x00\x9f" * 10,
    b"\x00\x01\x02\x03\n\x04\x05\n",
    b"BagIt-Version: 1.0\nTag-File-Character-Encoding: no-such-codec\n",
    b"BagIt-Version: 9.9\nTag-File-Character-Encoding: UTF-8\n",
    b"",
    b"x" * 200_000,
], ids=["binary", "control-chars", "unknown-encoding", "unknown-version", "empty", "huge"])
def test_garbage_bagit_txt(tmp_path: Path, garbage: bytes) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"})
    (bag / "bagit.txt").write_bytes(garbage)
    report = validate_bag(bag)
    assert not report.valid
    assert run_cli(str(bag)).exit_code == 1


def test_garbage_manifest_and_bag_info(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"})
    (bag / "manifest-sha256.txt").write_bytes(b"\xff\xfe\x00garbage\n\x00\n" + os.urandom(64))
    (bag / "bag-info.txt").write_bytes(b"no colon here\n  \x00\x01\nPayload-Oxum: nonsense\n")
    report = validate_bag(bag)
    assert not report.valid
    assert {"manifest-malformed", "bag-info-malformed", "oxum-malformed"} <= codes(report)
    result = run_cli(str(bag))
    assert result.exit_code == 1
    assert all(line.isprintable() for line in result.stdout.splitlines())


def test_unreadable_payload_file(tmp_path: Path, monkeypatch) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a", "b.txt": b"b"})
    locked = bag / "data/b.txt"
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the open fail the way it would
        real_open = os.open

        def refusing_open(path, flags, *args, **kwargs):
            if os.fspath(path) == str(locked):
                raise PermissionError(13, "Permission denied", str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing_open)
    try:
        report = validate_bag(bag)
    finally:
        locked.chmod(0o644)
    assert [(p.code, p.target) for p in report.problems] == [("unreadable", "data/b.txt")]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX FIFOs")
@pytest.mark.timeout(30)
def test_fifo_in_payload_is_never_opened(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"})
    os.mkfifo(bag / "data/pipe")  # opening it for reading would block forever
    report = validate_bag(bag)
    assert "not-a-file" in codes(report)


def test_symlink_out_of_the_bag_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"outside")
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"})
    (bag / "data/link.txt").symlink_to(secret)
    (bag / "data/dirlink").symlink_to(tmp_path)
    report = validate_bag(bag)
    assert {("symlink-escapes", "data/link.txt"), ("symlink-escapes", "data/dirlink")} <= {
        (p.code, p.target) for p in report.problems}


def test_unsafe_manifest_paths(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"})
    digest = hashlib.sha256(b"a").hexdigest()
    with (bag / "manifest-sha256.txt").open("a", encoding="utf-8") as f:
        for path in ("/etc/passwd", "data/../../x", "~/x", "C:\\x", "bag-info.txt"):
            f.write(f"{digest}  {path}\n")
    report = validate_bag(bag)
    assert {"path-absolute", "path-escapes", "path-unsafe", "path-outside-payload"} <= codes(
        report)


def test_v1_percent_encoded_names(tmp_path: Path) -> None:
    # RFC 8493 2.1.3: CR, LF and % in 1.0 manifest paths are percent-encoded.
    files = {"line\nbreak.txt": b"1", "100%.txt": b"2", "%7Eliteral.txt": b"3"}
    bag = make_bag(tmp_path / "bag", files, encode=lambda p: p.replace("%", "%25")
                   .replace("\n", "%0A"))
    report = validate_bag(bag)
    assert report.valid, report.problems
    result = run_cli(str(bag))
    assert result.exit_code == 0


def test_v1_duplicate_and_weak_algorithms(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"a"}, algorithms=("md5",))
    report = validate_bag(bag)
    assert report.valid and "weak-algorithm" in {w.code for w in report.warnings}
    manifest = bag / "manifest-md5.txt"
    manifest.write_bytes(manifest.read_bytes() * 2)
    assert "duplicate-entry" in codes(validate_bag(bag))


def test_corruption_found_with_any_number_of_workers(tmp_path: Path) -> None:
    files = {f"d{i % 7}/f{i}.bin": os.urandom(i * 37 % 5000) for i in range(300)}
    files["big.bin"] = os.urandom(3 * 1024 * 1024 + 17)  # streamed, not read at once
    bag = make_bag(tmp_path / "bag", files, algorithms=("sha256", "sha512", "md5"))
    assert validate_bag(bag, workers=1).valid
    (bag / "data/d3/f10.bin").write_bytes(b"changed")
    (bag / "data/big.bin").write_bytes(b"x" * len(files["big.bin"]))
    (bag / "data/extra.bin").write_bytes(b"")
    (bag / "data/d1/f1.bin").unlink()
    reports = [validate_bag(bag, workers=w) for w in (1, 2, 4)]
    dicts = [r.to_dict() for r in reports]
    assert dicts[0] == dicts[1] == dicts[2]
    found = {(p.code, p.target) for p in reports[0].problems}
    assert ("checksum-mismatch", "data/d3/f10.bin") in found
    assert ("checksum-mismatch", "data/big.bin") in found
    assert ("file-not-in-manifest", "data/extra.bin") in found
    assert ("file-missing", "data/d1/f1.bin") in found
    assert "oxum-mismatch" in codes(reports[0])


def test_fast_mode_checks_oxum_only(tmp_path: Path) -> None:
    bag = make_bag(tmp_path / "bag", {"a.txt": b"aaaa"})
    (bag / "data/a.txt").write_bytes(b"bbbb")  # same size, different bytes
    assert validate_bag(bag, fast=True).valid
    assert not validate_bag(bag).valid
    (bag / "data/a.txt").write_bytes(b"bbbbb")
    assert "oxum-mismatch" in codes(validate_bag(bag, fast=True))
    no_oxum = make_bag(tmp_path / "no-oxum", {"a.txt": b"a"}, oxum=False)
    assert "oxum-missing" in codes(validate_bag(no_oxum, fast=True))
    assert run_cli("--fast", str(no_oxum)).exit_code == 1


def test_json_report_and_warnings_on_stderr(suite: Path) -> None:
    result = run_cli("--json", str(suite / "v0.97/warning/relative-path"))
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["version"] == "0.97"
    assert data["counts"]["payload_files"] == 1
    assert [w["code"] for w in data["warnings"]] == ["relative-path"]
    assert "relative-path" in result.stderr

    result = run_cli("--json", str(suite / "v0.97/invalid/corrupt-data-file"))
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["valid"] is False
    assert "checksum-mismatch" in {p["code"] for p in data["problems"]}


@pytest.mark.parametrize("what", ["missing", "file"])
def test_path_that_is_not_a_directory_exits_2(tmp_path: Path, what: str) -> None:
    target = tmp_path / "nothing"
    if what == "file":
        target.write_text("x", encoding="utf-8")
    result = run_cli(str(target))
    assert result.exit_code == 2
    assert "error:" in result.stderr and str(target) in result.stderr
    result = run_cli("--json", str(target))
    assert result.exit_code == 2


def test_invalid_lists_every_problem_one_per_line(suite: Path) -> None:
    result = run_cli(str(suite / "v0.97/invalid/corrupt-tag-file"))
    assert result.exit_code == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 3  # bag-info.txt, bagit.txt and manifest-md5.txt all corrupt
