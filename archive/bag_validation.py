"""Our own BagIt validator: RFC 8493 (1.0) and the drafts 0.93-0.97 (R-PKG-1).

``validate_bag`` examines a bag and returns a :class:`BagReport` listing every problem
(errors) and warning instead of raising at the first one. It never writes anything and
never fetches ``fetch.txt`` URLs; odd content and I/O errors become problems, never
exceptions. Every payload file is read once, feeding all manifest algorithms at the same
time, and files are hashed in parallel threads (hashlib releases the GIL). The text of
the tag files and manifest paths is parsed by :mod:`archive.bagit_syntax`; this module
examines the bag on disk and checks what the tag files say against it.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from archive.bagit_syntax import BagitDeclaration, TagFileParser, parse_bagit_txt, show
from archive.digests import CHUNK, MultiHasher, hash_stream
from archive.errors import Problem

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
        check.error("validation-aborted", f"validation stopped early: {show(str(exc))}")
    except Exception as exc:  # noqa: BLE001 - fail closed: a validator bug must not pass a bag
        check.error("internal-error", f"validation stopped by an internal error "
                    f"({type(exc).__name__}: {show(str(exc))})")
    return check.report


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
        self.parser = TagFileParser(BagitDeclaration(), self, self._is_tag_file)
        self.real_root = os.path.realpath(root)
        self.payload: dict[str, tuple[int, str]] = {}   # "data/..." -> (size, path to open)
        self.refused: set[str] = set()                  # payload names already reported

    # ---- reporting ------------------------------------------------------------------

    def error(self, code: str, message: str, target: str = "", **detail) -> None:
        self.report.problems.append(Problem(code, message, show(target), detail))

    def warn(self, code: str, message: str, target: str = "", **detail) -> None:
        self.report.warnings.append(Problem(code, message, show(target), detail))

    @property
    def v1(self) -> bool:
        return self.parser.declaration.v1

    # ---- the whole check ------------------------------------------------------------

    def run(self) -> None:
        if not self.root.is_dir():
            self.error("not-a-directory", f"{show(str(self.root))} is not a directory")
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
        declaration = parse_bagit_txt(raw, self)
        self.report.version = declaration.version_label
        self.report.encoding = declaration.encoding
        self.parser = TagFileParser(declaration, self, self._is_tag_file)

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
            self.error("unreadable", f"cannot examine {show(rel)}: {exc.strerror}", rel)
            return None
        real = os.path.realpath(full)
        if not self._inside(real):
            self.error("symlink-escapes", f"{show(rel)} leads outside the bag; not followed",
                       rel)
            return None
        if stat.S_ISLNK(st.st_mode):
            try:
                st = os.stat(real)
            except OSError:
                return None
        if not stat.S_ISREG(st.st_mode):
            self.error("not-a-file", f"{show(rel)} is not a regular file", rel)
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
            self.error("unreadable", f"cannot read {show(rel)}: {exc.strerror}", rel)
            return b""
        data = b"".join(chunks)
        if limit is not None and len(data) > limit:
            self.error("tag-file-too-large", f"{show(rel)} is larger than {limit} bytes", rel)
            return data[:limit]
        return data

    def _is_tag_file(self, rel: str) -> bool:
        return self._tag_file(rel) is not None

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
                self.error("unreadable", f"cannot list {show(rel_dir)}: {exc.strerror}",
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
                        self.error("not-a-file", f"{show(rel)} is not a regular file (device, "
                                   "pipe or socket); not read", rel)
                except OSError as exc:
                    self.refused.add(rel)
                    self.error("unreadable", f"cannot examine {show(rel)}: {exc.strerror}", rel)
        self.report.payload_files = len(payload)
        self.report.payload_bytes = sum(size for size, _ in payload.values())

    def _payload_symlink(self, full: str, rel: str) -> None:
        real = os.path.realpath(full)
        self.refused.add(rel)
        if not self._inside(real):
            self.error("symlink-escapes", f"{show(rel)} is a symbolic link leading outside "
                       "the bag; not followed", rel)
        elif os.path.isdir(real):
            self.error("symlink-directory", f"{show(rel)} is a symbolic link to a directory; "
                       "not followed", rel)
        elif not os.path.isfile(real):
            self.error("symlink-dangling", f"{show(rel)} is a dangling symbolic link", rel)
        else:
            self.refused.discard(rel)
            self.warn("symlink", f"{show(rel)} is a symbolic link inside the bag", rel)
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
        text = self.parser.decode(raw, name)
        entries = self.parser.manifest_entries(text, name, algorithm, hex_len, tag=tag)
        return _Manifest(name, algorithm, hash_name, entries)

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
                self.warn("name-collision", f"{mf.name} lists {', '.join(map(show, group))}, "
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
                    self.warn("normalization-mismatch", f"{mf.name} lists {show(path)}, found "
                              f"on disk only as {show(disk)} (different Unicode normalization)",
                              path)
                    expect(disk, mf, digest, path)
                    continue
                self.error("file-missing", f"{show(path)} is listed in {mf.name} but is not in "
                           "the bag", path)
            for path in unlisted:
                if path not in covered:
                    self.error("file-not-in-manifest", f"{show(path)} is in the payload but not "
                               f"listed in {mf.name}", path)
        for path in sorted(specials):
            self.warn("special-file", f"{show(path)} is an operating-system file (Thumbs.db, "
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
                        self.error("tag-file-missing", f"{show(path)} is listed in {mf.name} "
                                   "but is not in the bag", path)
                        continue
                    job = jobs[path] = _Job(path, found[0], found[1], set(), [])
                if mf.hash_name:
                    job.algorithms.add(mf.hash_name)  # type: ignore[union-attr]
                    job.expected.append((mf.hash_name, digest, mf.name, path))
        return {f"tag:{k}": v for k, v in jobs.items()}

    # ---- bag-info.txt and fetch.txt -------------------------------------------------

    def _check_bag_info(self) -> tuple[int, int] | None:
        version = self.parser.declaration.version
        name = "package-info.txt" if version == (0, 93) else "bag-info.txt"
        raw = self._read_tag_file(name)
        if raw is None:
            return None
        tags = self.parser.bag_info(self.parser.decode(raw, name), name)
        return self.parser.payload_oxum(tags, name)

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
        text = self.parser.decode(raw, "fetch.txt")
        for source, length, path in self.parser.fetch_entries(text):
            fetched[path] = length
            missing_from = [mf.name for mf in manifests if path not in mf.entries]
            if missing_from:
                self.error("fetch-not-in-manifest", f"{source}: {show(path)} is not listed in "
                           f"{', '.join(missing_from)}", path)
            if path not in self.payload:
                self.error("not-fetched", f"{show(path)} is listed in fetch.txt but has not "
                           "been fetched (validation never fetches)", path)
            elif length != "-" and int(length) != self.payload[path][0]:
                self.error("fetch-length-mismatch", f"{source}: {show(path)} should be "
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
                self.error("unreadable", f"cannot read {show(job.path)}: {failure}", job.path)
                continue
            for algorithm, expected, manifest, entry in job.expected:
                found = digests[algorithm]
                if found != expected:
                    self.error("checksum-mismatch", f"{show(entry)}: {algorithm} checksum in "
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
