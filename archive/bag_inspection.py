"""Reading a stored AIP bag safely: index, digests and manifests, never extraction (R-PKG-1).

A stored AIP is one serialised BagIt bag (an uncompressed tar, see :mod:`archive.bag`).
Reading it never extracts it: ``inspect_bag`` streams the tar ('r|'), refuses hostile
members (absolute paths, '..', links, devices) and checks the manifests; problems are
collected in a :class:`BagInspection`, not raised. ``read_member_index`` gives each
member's byte range and recomputed digests (or raises UnsafeBag), so one file can later
be read with a single ranged GET; ``extract_record_json`` reads the descriptive metadata
without reading the payload.
"""

from __future__ import annotations

import json
import re
import tarfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from archive.bag import CONTENT_DIR, METS_PATH, RECORD_JSON_PATH, ROLE_NAME, BagMember
from archive.bagit_syntax import decode_manifest_path
from archive.digests import CHUNK, DEFAULT_ALGORITHMS, MultiHasher
from archive.errors import Problem, UnsafeBag
from archive.mets import file_roles

MAX_TAG_FILE = 64 * 1024 * 1024  # tag files and record.json are read into memory


@dataclass
class BagInspection:
    """What a streaming pass over a serialised bag found."""

    bag_name: str | None
    members: list[BagMember]
    problems: list[Problem]

    @property
    def ok(self) -> bool:
        return not self.problems


def member_problem(info: tarfile.TarInfo) -> str | None:
    """Why a tar member is unacceptable in a bag, or None (never extracts anything)."""
    name = info.name
    if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        return "only regular files and directories are allowed (no links, devices, fifos)"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    if not name or name.startswith("/") or re.match(r"[A-Za-z]:", name) or "\\" in name:
        return "absolute or non-POSIX path"
    if any(unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in name):
        return "control character in name"
    parts = name.rstrip("/").split("/") if info.isdir() else name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "empty, '.' or '..' path component"
    if info.mode & 0o7000:
        return "setuid, setgid or sticky mode"
    return None


def _role(path: str) -> str:
    if path.startswith(f"{CONTENT_DIR}/"):
        return "original"
    return "metadata" if path.startswith("data/") else "tag"


def _iter_files(stream: BinaryIO, problems: list[Problem], state: dict):
    """Yield (tarinfo, bag-relative path, file object) for each acceptable regular file.

    Unacceptable members are recorded in ``problems`` and skipped, never opened; the
    top-level directory's name goes into ``state["root"]``.
    """
    root: str | None = None
    seen: set[str] = set()
    with tarfile.open(fileobj=stream, mode="r|", encoding="utf-8") as tar:
        for info in tar:
            problem = member_problem(info)
            parts = info.name.rstrip("/").split("/")
            if problem is None and root is not None and parts[0] != root:
                problem = "more than one top-level directory"
            folded = unicodedata.normalize("NFC", info.name.rstrip("/")).casefold()
            if problem is None and folded in seen:
                problem = "duplicate member"
            if problem is None and len(parts) == 1 and not info.isdir():
                problem = "file outside the bag directory"
            if problem is not None:
                problems.append(Problem("unsafe-member", problem, target=info.name))
                continue
            root = state["root"] = root or parts[0]
            seen.add(folded)
            if info.isfile():
                yield info, "/".join(parts[1:]), tar.extractfile(info)


def _parse_manifest(text: str) -> dict[str, str]:
    entries = {}
    for line in text.splitlines():
        if line.strip():
            digest, _, path = line.strip().partition(" ")
            entries[decode_manifest_path(path.strip())] = digest.lower()
    return entries


def inspect_bag(stream: BinaryIO, algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
                *, expected_name: str | None = None) -> BagInspection:
    """One streaming pass over a serialised bag: index, digests, structure, manifests.

    Nothing is extracted. Problems (hostile members, several roots, missing or wrong
    manifest entries) are collected, not raised.
    """
    algorithms = tuple(algorithms)
    problems: list[Problem] = []
    members: list[BagMember] = []
    tag_texts: dict[str, str] = {}
    state: dict = {"root": None}
    roles: dict[str, str] = {}  # payload roles as METS.xml records them (fileGrp USE)
    try:
        for info, rel, fh in _iter_files(stream, problems, state):
            keep = ("/" not in rel or rel == METS_PATH) and info.size <= MAX_TAG_FILE
            hasher, kept = MultiHasher(algorithms), bytearray()
            while chunk := fh.read(CHUNK):
                hasher.update(chunk)
                if keep:
                    kept += chunk
            members.append(BagMember(rel, info.offset_data, info.size, hasher.hexdigests(),
                                     _role(rel)))
            if keep:
                tag_texts[rel] = kept.decode("utf-8", errors="replace")
                if rel == METS_PATH:
                    roles = file_roles(bytes(kept))
    except (tarfile.TarError, EOFError, OSError) as exc:
        problems.append(Problem("unreadable-tar", f"not a readable tar: {exc}"))
    root = state["root"]
    members = [BagMember(m.path, m.offset, m.size, m.digests, roles[m.path])
               if m.path in roles and ROLE_NAME.fullmatch(roles[m.path]) else m for m in members]
    if expected_name is not None and root != expected_name:
        problems.append(Problem("wrong-bag-name", f"expected top-level directory "
                                f"{expected_name!r}, found {root!r}", target=str(root)))
    if "bagit.txt" not in tag_texts:
        problems.append(Problem("not-a-bag", "bagit.txt is missing", target=str(root)))
    _check_manifests(members, tag_texts, algorithms, problems)
    return BagInspection(bag_name=root, members=members, problems=problems)


def _check_manifests(members: list[BagMember], tag_texts: dict[str, str],
                     algorithms: tuple[str, ...], problems: list[Problem]) -> None:
    by_path = {m.path: m for m in members}
    payload = {m.path for m in members if m.path.startswith("data/")}
    for algorithm in algorithms:
        for kind in ("manifest", "tagmanifest"):
            name = f"{kind}-{algorithm}.txt"
            if name not in tag_texts:
                if kind == "manifest":
                    problems.append(Problem("manifest-missing", f"{name} is missing"))
                continue
            entries = _parse_manifest(tag_texts[name])
            if kind == "manifest":
                for path in sorted(payload - entries.keys()):
                    problems.append(Problem("not-in-manifest", f"not listed in {name}", path))
            for path, digest in sorted(entries.items()):
                member = by_path.get(path)
                if member is None:
                    problems.append(Problem("file-missing", f"listed in {name}, absent", path))
                elif member.digests.get(algorithm) != digest:
                    problems.append(Problem("fixity-mismatch", f"{algorithm} differs from "
                                            f"{name}", path, {"expected": digest,
                                            "found": member.digests.get(algorithm)}))


def read_member_index(stream: BinaryIO, algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
                      *, expected_name: str | None = None) -> list[BagMember]:
    """Members of a stored bag with offsets and recomputed digests; UnsafeBag if unsound."""
    inspection = inspect_bag(stream, algorithms, expected_name=expected_name)
    if not inspection.ok:
        raise UnsafeBag(inspection.problems)
    return inspection.members


def extract_record_json(stream: BinaryIO) -> dict:
    """The descriptive metadata of a stored bag, read by streaming up to record.json.

    Members before record.json are checked like ``inspect_bag`` does and the stream is
    not read further; use ``inspect_bag`` to vet a whole object.
    """
    problems: list[Problem] = []
    try:
        for info, rel, fh in _iter_files(stream, problems, {}):
            if problems:
                break
            if rel == RECORD_JSON_PATH:
                if info.size > MAX_TAG_FILE:
                    raise UnsafeBag([Problem("too-large", "record.json is too large", rel)])
                try:
                    return json.loads(fh.read().decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as exc:
                    raise UnsafeBag([Problem("bad-json", str(exc), rel)]) from exc
    except (tarfile.TarError, EOFError, OSError) as exc:
        problems.append(Problem("unreadable-tar", f"not a readable tar: {exc}"))
    raise UnsafeBag(problems or [Problem("missing", "no record.json", RECORD_JSON_PATH)])
