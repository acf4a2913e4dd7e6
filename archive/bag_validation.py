"""Our own BagIt validator: RFC 8493 (1.0) and the drafts 0.93-0.97 (R-PKG-1).

``validate_bag`` examines a bag and returns a :class:`BagReport` listing every problem
(errors) and warning instead of raising at the first one. It never writes anything and
never fetches ``fetch.txt`` URLs; odd content and I/O errors become problems, never
exceptions. Every payload file is read once, feeding all manifest algorithms at the same
time, and files are hashed in parallel threads (hashlib releases the GIL).
"""

from __future__ import annotations

import codecs
import hashlib
import os
import re
import stat
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from archive.digests import CHUNK, MultiHasher, hash_stream
from archive.errors import Problem

SUPPORTED_VERSIONS = {(0, 93), (0, 94), (0, 95), (0, 96), (0, 97), (1, 0)}
# Manifest file names carry the lower-cased algorithm name without punctuation (RFC 8493 2.4).
_ALGORITHM_NAMES = {
    "md5": "md5", "sha1": "sha1", "sha224": "sha224", "sha256": "sha256",
    "sha384": "sha384", "sha512": "sha512", "sha3224": "sha3_224", "sha3256": "sha3_256",
    "sha3384": "sha3_384", "sha3512": "sha3_512", "blake2b": "blake2b", "blake2s": "blake2s",
}
_WEAK_ALGORITHMS = {"md5", "sha1"}
# Operating-system litter that should not be preserved (RFC 8493 section 7).
_SPECIAL_FILES = {".ds_store", "thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r",
                  ".spotlight-v100", ".trashes", ".fseventsd", ".directory"}
_MANIFEST_NAME = re.compile(r"(tag)?manifest-([A-Za-z0-9]+)\.txt")
_LINE_BREAK = re.compile(r"\r\n|\n|\r")
_MANIFEST_LINE = re.compile(r"(\S+)[ \t]+(.+)")
_FETCH_LINE = re.compile(r"(\S+)[ \t]+(\S+)[ \t]+(.+)")
_PERCENT = re.compile(r"%(0[AaDd]|25)")
_WINDOWS_ABSOLUTE = re.compile(r"[A-Za-z]:|\\\\|//")
_ENV_SHORTCUT = re.compile(r"%[^%/\\]+%")
_HEX = re.compile(r"[0-9a-f]+")
_MANIFEST_LINES = re.compile(r"^(\S+)[ \t]+(.+)$", re.MULTILINE)
_NEEDS_CLEANING = re.compile(r"[\\%\x00]|//|/\.|/\Z")
_OXUM = re.compile(r"(\d+)\.(\d+)")
_MAX_BAGIT_TXT = 64 * 1024
_SMALL_FILE = CHUNK
_BATCH_FILES, _BATCH_BYTES = 64, 16 * CHUNK
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))


@dataclass
class BagReport:
    """What validation found: errors in ``problems``; the bag is valid when it has none."""

    path: str
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    version: str | None = None
    encoding: str | None = None
    algorithms: list[str] = field(default_factory=list)
    tag_algorithms: list[str] = field(default_factory=list)
    payload_files: int = 0
    payload_bytes: int = 0
    manifest_entries: int = 0
    fetch_entries: int = 0
    files_hashed: int = 0
    fast: bool = False

    @property
    def valid(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "path": self.path, "valid": self.valid, "version": self.version,
            "encoding": self.encoding, "algorithms": self.algorithms,
            "tag_algorithms": self.tag_algorithms, "fast": self.fast,
            "counts": {"payload_files": self.payload_files, "payload_bytes": self.payload_bytes,
                       "manifest_entries": self.manifest_entries,
                       "fetch_entries": self.fetch_entries, "files_hashed": self.files_hashed,
                       "problems": len(self.problems), "warnings": len(self.warnings)},
            "problems": [p.to_dict() for p in self.problems],
            "warnings": [w.to_dict() for w in self.warnings],
        }


def validate_bag(path: Path, *, workers: int = 2, fast: bool = False) -> BagReport:
    """Validate the bag at ``path``; ``fast`` checks Payload-Oxum instead of payload digests."""
    check = _BagCheck(Path(path), max(1, int(workers)), fast)
    try:
        check.run()
    except (OSError, UnicodeError, ValueError, LookupError, RecursionError) as exc:
        check.error("validation-aborted", f"validation stopped early: {_show(str(exc))}")
    except Exception as exc:  # noqa: BLE001 - fail closed: a validator bug must not pass a bag
        check.error("internal-error", f"validation stopped by an internal error "
                    f"({type(exc).__name__}: {_show(str(exc))})")
    return check.report


def _show(text: str) -> str:
    """Printable form of a path or line: undecodable bytes and control characters escaped."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        text = "".join(c if 32 <= ord(c) != 127 else f"\\x{ord(c):02x}" for c in text)
    return text


def _lines(text: str) -> list[str]:
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _key(path: str) -> str:
    """Names that one case-insensitive, normalising file system would treat as the same."""
    if path.isascii():
        return path.lower()
    return unicodedata.normalize("NFC", path).casefold()


def _hash_name(algorithm: str) -> str | None:
    """The hashlib name for a manifest algorithm, None when this Python cannot compute it."""
    name = _ALGORITHM_NAMES.get(algorithm)
    if name is not None:
        try:
            hashlib.new(name)
        except ValueError:
            return None
    return name


@dataclass
class _Manifest:
    name: str
    algorithm: str
    hash_name: str | None           # hashlib name, None when this Python cannot compute it
    entries: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Job:
    path: str                       # bag-relative name used in reports
    open_path: str
    size: int
    algorithms: set[str] | frozenset[str]
    expected: list[tuple[str, str, str, str]]  # algorithm, hex, manifest, entry


class _BagCheck:
    def __init__(self, root: Path, workers: int, fast: bool):
        self.root = root
        self.workers = workers
        self.fast = fast
        self.report = BagReport(path=str(root), fast=fast)
        self.version: tuple[int, int] | None = None
        self.codec = "utf-8"
        self.real_root = os.path.realpath(root)
        self.payload: dict[str, tuple[int, str]] = {}   # "data/..." -> (size, path to open)
        self.refused: set[str] = set()                  # payload names already reported

    # ---- reporting ------------------------------------------------------------------

    def error(self, code: str, message: str, target: str = "", **detail) -> None:
        self.report.problems.append(Problem(code, message, _show(target), detail))

    def warn(self, code: str, message: str, target: str = "", **detail) -> None:
        self.report.warnings.append(Problem(code, message, _show(target), detail))

    @property
    def v1(self) -> bool:
        return self.version is not None and self.version >= (1, 0)

    # ---- the whole check ------------------------------------------------------------

    def run(self) -> None:
        if not self.root.is_dir():
            self.error("not-a-directory", f"{_show(str(self.root))} is not a directory")
            return
        self._check_bagit_txt()
        self._walk_payload()
        names = sorted(os.listdir(self.root))
        if self.workers == 1:  # no threads at all: nothing to hand the GIL back and forth
            self._check(names, None, [])
            return
        with ThreadPoolExecutor(self.workers, thread_name_prefix="bag-verify") as pool:
            # Payload files are hashed (every algorithm named by a payload manifest, one pass
            # per file) while this thread parses manifests and checks completeness.
            algorithms = {_hash_name(m.group(2).lower()) for n in names
                          if (m := _MANIFEST_NAME.fullmatch(n)) and not m.group(1)} - {None}
            early = []
            if algorithms and not self.fast:
                algs = frozenset(algorithms)
                todo = [_Job(path, open_path, size, algs, [])  # type: ignore[arg-type]
                        for path, (size, open_path) in sorted(self.payload.items())]
                early = [pool.submit(_digest_batch, batch) for batch in _batches(todo)]
            self._check(names, pool, early)

    def _check(self, names: list[str], pool: ThreadPoolExecutor | None, early: list) -> None:
        payload_mfs = [self._read_manifest(n) for n in names
                       if (m := _MANIFEST_NAME.fullmatch(n)) and not m.group(1)]
        tag_mfs = [self._read_manifest(n, tag=True) for n in names
                   if (m := _MANIFEST_NAME.fullmatch(n)) and m.group(1)]
        payload_mfs = [m for m in payload_mfs if m is not None]
        tag_mfs = [m for m in tag_mfs if m is not None]
        self.report.algorithms = [m.algorithm for m in payload_mfs]
        self.report.tag_algorithms = [m.algorithm for m in tag_mfs]
        self.report.manifest_entries = sum(len(m.entries) for m in payload_mfs)
        if not payload_mfs:
            self.error("manifest-missing", "no payload manifest (manifest-<algorithm>.txt)")
        elif not any(m.hash_name for m in payload_mfs):
            self.error("algorithm-unsupported", "no payload manifest uses an algorithm this "
                       "validator can compute, so no checksum can be verified")
        elif self.v1 and {m.algorithm for m in payload_mfs} <= _WEAK_ALGORITHMS:
            self.warn("weak-algorithm", "payload manifests use only md5/sha1; RFC 8493 "
                      "recommends sha256 or sha512")
        oxum = self._check_bag_info()
        fetched = self._check_fetch(payload_mfs)
        jobs = self._match_payload(payload_mfs, set(fetched))
        tag_jobs = self._match_tags(tag_mfs)
        self._check_oxum(oxum)
        if self.fast:
            if oxum is None:
                self.error("oxum-missing", "fast validation needs a Payload-Oxum in bag-info.txt")
            jobs = {}
        self._verify({**jobs, **tag_jobs}, pool, early)

    # ---- bagit.txt ------------------------------------------------------------------

    def _check_bagit_txt(self) -> None:
        raw = self._read_tag_file("bagit.txt", limit=_MAX_BAGIT_TXT)
        if raw is None:
            self.error("bagit-txt-missing", "bagit.txt is missing: not a bag", "bagit.txt")
            return
        if raw.startswith(codecs.BOM_UTF8):
            self.error("bagit-txt-bom", "bagit.txt starts with a byte-order mark", "bagit.txt")
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.error("bagit-txt-encoding", f"bagit.txt is not UTF-8 ({exc.reason} at byte "
                       f"{exc.start})", "bagit.txt")
            return
        lines = _lines(text)
        first = lines[0] if lines else ""
        m = re.fullmatch(r"BagIt-Version: (\d+)\.(\d+)", first)
        if m:
            self.version = (int(m.group(1)), int(m.group(2)))
        else:
            loose = re.fullmatch(r"\s*BagIt-Version\s*:\s*(.*?)\s*", first)
            value = loose.group(1) if loose else None
            if loose and re.fullmatch(r"\d+\.\d+", value):
                self.version = tuple(int(x) for x in value.split("."))  # type: ignore[assignment]
                self.error("bagit-txt-format", f"bagit.txt line 1 must be exactly "
                           f"'BagIt-Version: M.N', found {_show(first)!r}", "bagit.txt")
            elif loose:
                self.error("version-invalid", f"bagit.txt declares an invalid BagIt-Version "
                           f"{_show(value)!r} (expected M.N)", "bagit.txt")
            else:
                self.error("bagit-txt-format", "bagit.txt line 1 must be 'BagIt-Version: M.N', "
                           f"found {_show(first)[:80]!r}", "bagit.txt")
        if self.version is not None:
            self.report.version = "{}.{}".format(*self.version)
            if self.version not in SUPPORTED_VERSIONS:
                self.error("version-unsupported", f"BagIt-Version {self.report.version} is not "
                           "one of 0.93-0.97 or 1.0", "bagit.txt")
        second = lines[1] if len(lines) > 1 else ""
        m = re.fullmatch(r"Tag-File-Character-Encoding: (\S+)", second)
        loose = m or re.fullmatch(r"\s*Tag-File-Character-Encoding\s*:\s*(\S+)\s*", second)
        if not loose:
            self.error("encoding-missing", "bagit.txt line 2 must be "
                       "'Tag-File-Character-Encoding: ENCODING'", "bagit.txt")
        else:
            if not m:
                self.error("bagit-txt-format", "bagit.txt line 2 must be exactly "
                           f"'Tag-File-Character-Encoding: ENCODING', found {_show(second)!r}",
                           "bagit.txt")
            label = loose.group(1)
            self.report.encoding = _show(label)
            try:
                self.codec = codecs.lookup(label).name
            except LookupError:
                self.error("encoding-unknown", f"unknown Tag-File-Character-Encoding "
                           f"{_show(label)!r}", "bagit.txt")
        if any(line.strip() for line in lines[2:]):
            self.error("bagit-txt-format", "bagit.txt has lines after the two required ones",
                       "bagit.txt")

    # ---- reading tag files safely ---------------------------------------------------

    def _inside(self, real: str) -> bool:
        return real == self.real_root or real.startswith(self.real_root.rstrip(os.sep) + os.sep)

    def _tag_file(self, rel: str) -> tuple[str, int] | None:
        """(path to open, size) of a regular file in the bag, or None (problem reported)."""
        full = os.path.join(self.root, rel)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return None
        except OSError as exc:
            self.error("unreadable", f"cannot examine {_show(rel)}: {exc.strerror}", rel)
            return None
        real = os.path.realpath(full)
        if not self._inside(real):
            self.error("symlink-escapes", f"{_show(rel)} leads outside the bag; not followed",
                       rel)
            return None
        if stat.S_ISLNK(st.st_mode):
            try:
                st = os.stat(real)
            except OSError:
                return None
        if not stat.S_ISREG(st.st_mode):
            self.error("not-a-file", f"{_show(rel)} is not a regular file", rel)
            return None
        return real, st.st_size

    def _read_tag_file(self, rel: str, limit: int | None = None) -> bytes | None:
        found = self._tag_file(rel)
        if found is None:
            return None
        try:
            fd = os.open(found[0], _OPEN_FLAGS)
            try:
                chunks, size = [], 0
                while limit is None or size <= limit:
                    chunk = os.read(fd, CHUNK)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
            finally:
                os.close(fd)
        except OSError as exc:
            self.error("unreadable", f"cannot read {_show(rel)}: {exc.strerror}", rel)
            return b""
        data = b"".join(chunks)
        if limit is not None and len(data) > limit:
            self.error("tag-file-too-large", f"{_show(rel)} is larger than {limit} bytes", rel)
            return data[:limit]
        return data

    def _decode(self, raw: bytes, name: str) -> str:
        try:
            text = raw.decode(self.codec)
        except UnicodeDecodeError as exc:
            self.error("tag-file-encoding", f"{name} is not valid {self.report.encoding} "
                       f"({exc.reason} at byte {exc.start})", name)
            text = raw.decode(self.codec, errors="replace")
        if text.startswith("\ufeff"):
            if self.codec == "utf-8":
                self.warn("tag-file-bom", f"{name} starts with a byte-order mark", name)
            text = text[1:]
        return text

    # ---- paths ----------------------------------------------------------------------

    def _clean_path(self, raw: str, source: str, *, payload: bool) -> str | None:
        """Bag-relative, '/'-separated name for a manifest or fetch path; None if refused."""
        path = raw
        if self.v1:  # RFC 8493 2.1.3: only CR, LF and % are percent-encoded in 1.0
            path = _PERCENT.sub(lambda m: chr(int(m.group(1), 16)), path)
        if path.startswith("*") and (payload or self._tag_file(path) is None):
            self.warn("md5sum-binary-marker", f"{source}: leading '*' (md5sum binary mode) "
                      f"ignored in {_show(raw)}", raw)
            path = path[1:]
        # Refused on every OS, Windows forms included: a bag is an interchange package and a
        # path that escapes the bag anywhere is unsafe (R-PKG-1).
        if "\x00" in path:
            self.error("path-unsafe", f"{source}: path contains a NUL byte: {_show(raw)}", raw)
            return None
        if path.startswith("/") or _WINDOWS_ABSOLUTE.match(path):
            self.error("path-absolute", f"{source}: absolute path {_show(raw)} points outside "
                       "the bag", raw)
            return None
        if path.startswith("~") or _ENV_SHORTCUT.match(path):
            self.error("path-unsafe", f"{source}: path {_show(raw)} uses a home-directory or "
                       "environment shortcut that points outside the bag", raw)
            return None
        parts: list[str] = []
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    self.error("path-escapes", f"{source}: path {_show(raw)} escapes the bag",
                               raw)
                    return None
                parts.pop()
            else:
                parts.append(part)
        clean = "/".join(parts)
        if not clean:
            self.error("manifest-malformed", f"{source}: empty path in {_show(raw)!r}", raw)
            return None
        if clean != path:
            code = "relative-path" if path == "./" + clean else "path-not-canonical"
            self.warn(code, f"{source}: path {_show(raw)} is written as {_show(clean)}", raw)
        if payload and not clean.startswith("data/"):
            self.error("path-outside-payload", f"{source}: {_show(raw)} is not in the payload "
                       "directory data/", raw)
            return None
        if "\\" in clean:
            self.warn("path-not-portable", f"{source}: {_show(clean)} contains a backslash, a "
                      "directory separator on Windows", clean)
        return clean

    # ---- payload directory ----------------------------------------------------------

    def _walk_payload(self) -> None:
        data = os.path.join(self.root, "data")
        if os.path.islink(data):
            self.error("symlink-directory", "the payload directory data/ is a symbolic link; "
                       "not followed", "data")
            return
        if not os.path.isdir(data):
            self.error("payload-missing", "the payload directory data/ is missing", "data")
            return
        stack = [(data, "data")]
        payload = self.payload
        while stack:
            directory, rel_dir = stack.pop()
            try:
                with os.scandir(directory) as it:
                    entries = list(it)
            except OSError as exc:
                self.error("unreadable", f"cannot list {_show(rel_dir)}: {exc.strerror}",
                           rel_dir)
                continue
            for entry in entries:
                rel = f"{rel_dir}/{entry.name}"
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append((entry.path, rel))
                    elif entry.is_file(follow_symlinks=False):
                        payload[rel] = (entry.stat(follow_symlinks=False).st_size, entry.path)
                    elif entry.is_symlink():
                        self._payload_symlink(entry.path, rel)
                    else:
                        self.refused.add(rel)
                        self.error("not-a-file", f"{_show(rel)} is not a regular file (device, "
                                   "pipe or socket); not read", rel)
                except OSError as exc:
                    self.refused.add(rel)
                    self.error("unreadable", f"cannot examine {_show(rel)}: {exc.strerror}", rel)
        self.report.payload_files = len(payload)
        self.report.payload_bytes = sum(size for size, _ in payload.values())

    def _payload_symlink(self, full: str, rel: str) -> None:
        real = os.path.realpath(full)
        self.refused.add(rel)
        if not self._inside(real):
            self.error("symlink-escapes", f"{_show(rel)} is a symbolic link leading outside "
                       "the bag; not followed", rel)
        elif os.path.isdir(real):
            self.error("symlink-directory", f"{_show(rel)} is a symbolic link to a directory; "
                       "not followed", rel)
        elif not os.path.isfile(real):
            self.error("symlink-dangling", f"{_show(rel)} is a dangling symbolic link", rel)
        else:
            self.refused.discard(rel)
            self.warn("symlink", f"{_show(rel)} is a symbolic link inside the bag", rel)
            self.payload[rel] = (os.stat(real).st_size, real)

    # ---- manifests ------------------------------------------------------------------

    def _read_manifest(self, name: str, tag: bool = False) -> _Manifest | None:
        algorithm = _MANIFEST_NAME.fullmatch(name).group(2).lower()  # type: ignore[union-attr]
        hash_name = _hash_name(algorithm)
        if hash_name is not None:
            hex_len = hashlib.new(hash_name).digest_size * 2
        else:
            self.warn("algorithm-unsupported", f"{name}: algorithm {algorithm!r} is not "
                      "supported; its checksums cannot be verified", name)
            hex_len = 0
        raw = self._read_tag_file(name)
        if raw is None:
            return None
        manifest = _Manifest(name, algorithm, hash_name)
        entries = manifest.entries
        text = self._decode(raw, name)
        lines = _lines(text)
        # Fast path: every line is 'checksum path' (one regex pass over the whole text).
        pairs = _MANIFEST_LINES.findall(text if "\r" not in text else "\n".join(lines))
        if len(pairs) != len(lines):
            pairs = []
            for lineno, line in enumerate(lines, 1):
                m = _MANIFEST_LINE.fullmatch(line)
                if m:
                    pairs.append((m.group(1), m.group(2), lineno))
                elif line.strip():
                    self.error("manifest-malformed", f"{name} line {lineno} is not 'checksum "
                               f"path': {_show(line)[:120]!r}", name)
        else:
            pairs = [(d, p, n) for n, (d, p) in enumerate(pairs, 1)]
        if hex_len and pairs and not (
                {len(d) for d, _, _ in pairs} == {hex_len}
                and _HEX.fullmatch("".join(d for d, _, _ in pairs).lower())):
            for digest, _, lineno in pairs:
                if len(digest) != hex_len or not _HEX.fullmatch(digest.lower()):
                    self.error("manifest-malformed", f"{name} line {lineno}: "
                               f"{_show(digest)[:140]!r} is not a {algorithm} checksum", name)
        needs_cleaning = _NEEDS_CLEANING.search
        for digest, raw_path, lineno in pairs:
            digest = digest.lower()
            if raw_path.startswith("data/") and not needs_cleaning(raw_path):
                path: str | None = raw_path  # already canonical: nothing to decode or refuse
            else:
                path = self._clean_path(raw_path, f"{name} line {lineno}", payload=not tag)
                if path is None:
                    continue
            known = entries.get(path)
            if known is None:
                entries[path] = digest
            elif known != digest:
                self.error("duplicate-entry-conflict", f"{name} lists {_show(path)} more than "
                           "once with different checksums", path)
            elif self.v1:  # the suite files this under invalid for 1.0, a warning before
                self.error("duplicate-entry", f"{name} lists {_show(path)} more than once",
                           path)
            else:
                self.warn("duplicate-entry", f"{name} lists {_show(path)} more than once "
                          "(same checksum)", path)
        return manifest

    def _match_payload(self, manifests: list[_Manifest], fetched: set[str]) -> dict[str, _Job]:
        """Completeness: every payload file in every manifest and every entry on disk."""
        jobs: dict[str, _Job] = {}
        payload = self.payload

        def expect(path: str, mf: _Manifest, digest: str, entry: str) -> None:
            job = jobs.get(path)
            if job is None:
                size, open_path = payload[path]
                job = jobs[path] = _Job(path, open_path, size, set(), [])
            if mf.hash_name:
                job.algorithms.add(mf.hash_name)  # type: ignore[union-attr]
                job.expected.append((mf.hash_name, digest, mf.name, entry))

        specials = {p for p in payload if p.rsplit("/", 1)[-1].lower() in _SPECIAL_FILES}
        for mf in manifests:
            entries = mf.entries
            specials.update(p for p in entries if p.rsplit("/", 1)[-1].lower() in _SPECIAL_FILES)
            groups: dict[str, list[str]] = {}
            joined = "\x00".join(entries)  # NUL never occurs in an accepted path
            if joined.isascii() and len(set(joined.lower().split("\x00"))) == len(entries):
                pass  # no two names can collide: skip the per-name grouping
            else:
                for path in entries:
                    groups.setdefault(_key(path), []).append(path)
            for group in (g for g in groups.values() if len(g) > 1):
                kind = ("Unicode normalization" if len({unicodedata.normalize("NFC", p)
                                                        for p in group}) < len(group)
                        else "case")
                self.warn("name-collision", f"{mf.name} lists {', '.join(map(_show, group))}, "
                          f"which differ only in {kind} and name one file on many file "
                          "systems", group[0])
            if mf.hash_name:
                spec = (mf.hash_name, mf.name)
                for path, digest in entries.items():
                    if path in payload:
                        job = jobs.get(path)
                        if job is None:
                            size, open_path = payload[path]
                            job = jobs[path] = _Job(path, open_path, size, set(), [])
                        job.algorithms.add(spec[0])  # type: ignore[union-attr]
                        job.expected.append((spec[0], digest, spec[1], path))
            unlisted = [p for p in payload if p not in entries]
            by_nfc = {unicodedata.normalize("NFC", p): p for p in unlisted}
            covered: set[str] = set()
            for path, digest in entries.items():
                if path in payload or path in fetched or path in self.refused:
                    continue
                twins = [p for p in groups.get(_key(path), ()) if p != path and p in payload]
                if any(entries[p] == digest for p in twins):
                    continue  # same file under a case/normalization twin: warned above
                disk = by_nfc.get(unicodedata.normalize("NFC", path))
                if disk is not None and disk not in covered:
                    covered.add(disk)
                    self.warn("normalization-mismatch", f"{mf.name} lists {_show(path)}, found "
                              f"on disk only as {_show(disk)} (different Unicode normalization)",
                              path)
                    expect(disk, mf, digest, path)
                    continue
                self.error("file-missing", f"{_show(path)} is listed in {mf.name} but is not in "
                           "the bag", path)
            for path in unlisted:
                if path not in covered:
                    self.error("file-not-in-manifest", f"{_show(path)} is in the payload but not "
                               f"listed in {mf.name}", path)
        for path in sorted(specials):
            self.warn("special-file", f"{_show(path)} is an operating-system file (Thumbs.db, "
                      ".DS_Store ...) that is usually not meant to be preserved", path)
        return jobs

    def _match_tags(self, manifests: list[_Manifest]) -> dict[str, _Job]:
        jobs: dict[str, _Job] = {}
        for mf in manifests:
            for path, digest in mf.entries.items():
                job = jobs.get(path)
                if job is None:
                    found = self._tag_file(path)
                    if found is None:
                        self.error("tag-file-missing", f"{_show(path)} is listed in {mf.name} "
                                   "but is not in the bag", path)
                        continue
                    job = jobs[path] = _Job(path, found[0], found[1], set(), [])
                if mf.hash_name:
                    job.algorithms.add(mf.hash_name)  # type: ignore[union-attr]
                    job.expected.append((mf.hash_name, digest, mf.name, path))
        return {f"tag:{k}": v for k, v in jobs.items()}

    # ---- bag-info.txt and fetch.txt -------------------------------------------------

    def _check_bag_info(self) -> tuple[int, int] | None:
        name = "package-info.txt" if self.version == (0, 93) else "bag-info.txt"
        raw = self._read_tag_file(name)
        if raw is None:
            return None
        tags: list[list[str]] = []
        for lineno, line in enumerate(_lines(self._decode(raw, name)), 1):
            if not line.strip():
                continue
            if line[0] in " \t":
                if tags:  # continuation line (RFC 8493 2.2.2)
                    tags[-1][1] += " " + line.strip()
                else:
                    self.error("bag-info-malformed", f"{name} line {lineno} continues nothing",
                               name)
                continue
            label, sep, value = line.partition(":")
            if not sep or not label.strip():
                self.error("bag-info-malformed", f"{name} line {lineno} is not 'Label: value':"
                           f" {_show(line)[:120]!r}", name)
                continue
            tags.append([label.strip(), value.strip()])  # repeated labels are allowed
        oxums = {value for label, value in tags if label.lower() == "payload-oxum"}
        if len(oxums) > 1:
            self.error("oxum-conflict", f"{name} has conflicting Payload-Oxum values", name)
            return None
        if not oxums:
            return None
        value = oxums.pop()
        m = _OXUM.fullmatch(value)
        if not m:
            self.error("oxum-malformed", f"Payload-Oxum {_show(value)!r} is not "
                       "'octets.streams'", name)
            return None
        return int(m.group(1)), int(m.group(2))

    def _check_oxum(self, oxum: tuple[int, int] | None) -> None:
        if oxum is None:
            return
        found = (self.report.payload_bytes, self.report.payload_files)
        if oxum != found:
            self.error("oxum-mismatch", f"Payload-Oxum says {oxum[0]} bytes in {oxum[1]} files, "
                       f"the payload has {found[0]} bytes in {found[1]} files", "bag-info.txt",
                       expected="{}.{}".format(*oxum), found="{}.{}".format(*found))

    def _check_fetch(self, manifests: list[_Manifest]) -> dict[str, str]:
        """Parse fetch.txt and check its targets; nothing is ever fetched."""
        raw = self._read_tag_file("fetch.txt")
        if raw is None:
            return {}
        fetched: dict[str, str] = {}
        for lineno, line in enumerate(_lines(self._decode(raw, "fetch.txt")), 1):
            if not line.strip():
                continue
            source = f"fetch.txt line {lineno}"
            m = _FETCH_LINE.fullmatch(line)
            if not m or not (m.group(2) == "-" or m.group(2).isdigit()):
                self.error("fetch-malformed", f"{source} is not 'url length path': "
                           f"{_show(line)[:120]!r}", "fetch.txt")
                continue
            url, length, raw_path = m.groups()
            try:
                parts = urlsplit(url)
                ok = bool(parts.scheme and (parts.netloc or parts.scheme == "file"))
            except ValueError:
                ok = False
            if not ok:
                self.error("fetch-malformed", f"{source}: malformed URL {_show(url)!r}",
                           "fetch.txt")
            path = self._clean_path(raw_path, source, payload=True)
            if path is None:
                continue
            fetched[path] = length
            missing_from = [mf.name for mf in manifests if path not in mf.entries]
            if missing_from:
                self.error("fetch-not-in-manifest", f"{source}: {_show(path)} is not listed in "
                           f"{', '.join(missing_from)}", path)
            if path not in self.payload:
                self.error("not-fetched", f"{_show(path)} is listed in fetch.txt but has not "
                           "been fetched (validation never fetches)", path)
            elif length != "-" and int(length) != self.payload[path][0]:
                self.error("fetch-length-mismatch", f"{source}: {_show(path)} should be "
                           f"{length} bytes, is {self.payload[path][0]}", path)
        self.report.fetch_entries = len(fetched)
        return fetched

    # ---- checksums ------------------------------------------------------------------

    def _verify(self, jobs: dict[str, _Job], pool: ThreadPoolExecutor | None,
                early: list) -> None:
        done: dict[str, tuple[dict[str, str], str | None]] = {}
        for future in early:
            for job, digests, failure in future.result():
                done[job.open_path] = (digests, failure)
        results, todo = [], []
        for job in sorted((j for j in jobs.values() if j.algorithms), key=lambda j: j.path):
            got = done.get(job.open_path)
            if got is not None and (got[1] is not None or job.algorithms <= got[0].keys()):
                results.append((job, *got))
            else:
                todo.append(job)
        for part in pool.map(_digest_batch, _batches(todo)) if pool else [_digest_batch(todo)]:
            results.extend(part)
        self.report.files_hashed = len(results)  # files whose checksums were verified
        results.sort(key=lambda r: r[0].path)
        for job, digests, failure in results:
            if failure is not None:
                self.error("unreadable", f"cannot read {_show(job.path)}: {failure}", job.path)
                continue
            for algorithm, expected, manifest, entry in job.expected:
                found = digests[algorithm]
                if found != expected:
                    self.error("checksum-mismatch", f"{_show(entry)}: {algorithm} checksum in "
                               f"{manifest} does not match the file", entry,
                               algorithm=algorithm, expected=expected, found=found)


def _batches(jobs: list[_Job]) -> list[list[_Job]]:
    """Groups of small files so each thread task amortises its scheduling cost."""
    batches: list[list[_Job]] = []
    batch: list[_Job] = []
    size = 0
    for job in jobs:
        batch.append(job)
        size += job.size
        if len(batch) >= _BATCH_FILES or size >= _BATCH_BYTES:
            batches.append(batch)
            batch, size = [], 0
    if batch:
        batches.append(batch)
    return batches


def _digest_batch(jobs: list[_Job]) -> list[tuple[_Job, dict[str, str], str | None]]:
    out = []
    for job in jobs:
        try:
            out.append((job, _digest_file(job.open_path, job.size, job.algorithms), None))
        except OSError as exc:
            out.append((job, {}, exc.strerror or str(exc)))
    return out


def _digest_file(open_path: str, size: int, algorithms: set[str]) -> dict[str, str]:
    """All digests of one file in one pass; small files in one read, large ones streamed."""
    fd = os.open(open_path, _OPEN_FLAGS)
    try:
        if size >= _SMALL_FILE:
            with open(fd, "rb", buffering=0, closefd=False) as stream:
                return hash_stream(stream, algorithms)[1]
        hasher = MultiHasher(algorithms)
        want = size + 1
        while chunk := os.read(fd, want):
            hasher.update(chunk)
            want = CHUNK
        return hasher.hexdigests()
    finally:
        os.close(fd)
