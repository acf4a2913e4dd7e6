"""Archival Information Packages as serialised BagIt bags (R-PKG-1, R-META-1, R-FIX-1).

Bag -> object mapping. Each record version's AIP is ONE BagIt 1.0 bag (RFC 8493),
serialised as RFC 8493 section 4 allows: an uncompressed POSIX tar (PAX format, UTF-8
names) holding a single top-level directory ``<record_id>.v<version>``. It is stored
as ONE immutable object: an S3 PUT costs ~3 ms, so one object per version instead of
one per file, and the object is self-describing if the catalog is ever lost. The catalog
keeps every member's byte range (``tarinfo.offset_data`` and size), so one file is read
with a single ranged GET and checked against its own digests.

Layout inside the bag::

    bagit.txt, bag-info.txt, manifest-<alg>.txt, tagmanifest-<alg>.txt
    data/METS.xml                                 METS 1.12.1 (archive.mets)
    data/metadata/descriptive/record.json         the descriptive metadata, sorted keys
    data/metadata/preservation/premis.xml         PREMIS 3.0 (archive.premis)
    data/content/<safe name>                      the original file(s), byte for byte

Tag files and metadata come first in the tar so a streaming reader finds them without
reading the payload. Headers are deterministic (mtime = ``created_at``, uid/gid 0,
empty owner names, mode 0o444 files / 0o555 dirs), so the same spec gives the same
bytes. ``build_aip`` reads each payload source exactly once, in chunks, while the tar
and its whole-object digests are written in the same pass (``HashingWriter``); the
caller's payload digests are trusted for the manifests, sizes are always checked.

bagit-python's ``make_bag``/``save`` are not used: they call ``os.chdir`` (process-wide).
Reading a stored bag back (safely, never extracting it) is :mod:`archive.bag_inspection`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import unicodedata
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from archive.bagit_syntax import encode_manifest_path
from archive.digests import CHUNK, HashingReader, HashingWriter, hash_bytes
from archive.errors import AipSpecInvalid, FieldProblem, FixityMismatch, SizeMismatch
from archive.mets import build_mets
from archive.premis import build_premis

# R-FIX-1: every stored file carries at least these digests.
REQUIRED_ALGORITHMS = ("sha256", "sha512")
METS_PATH = "data/METS.xml"
RECORD_JSON_PATH = "data/metadata/descriptive/record.json"
PREMIS_PATH = "data/metadata/preservation/premis.xml"
CONTENT_DIR = "data/content"
FILE_MODE = 0o444
DIR_MODE = 0o555
_NAME_BYTES = 200  # room under the 255-byte file name limit of common filesystems
_UNSAFE_CHARS = frozenset('/\\%<>:"|?*')
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_WINDOWS_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(\..*)?", re.IGNORECASE)
TAG_EXTRA_DIR = "tags"  # tag directory for extra tag files (archive timestamps ...)
ROLE_NAME = re.compile(r"[a-z][a-z0-9-]{0,15}")  # a payload role (METS fileGrp USE)
_BAG_INFO_ORDER = ("Bagging-Date", "Payload-Oxum", "External-Identifier",
                   "Source-Organization", "Bag-Software-Agent", "Bag-Size",
                   "Bag-Group-Identifier", "Internal-Sender-Identifier",
                   "Internal-Sender-Description", "Archive-Version")


@dataclass(frozen=True)
class PayloadFile:
    source: Path
    bag_path: str  # e.g. data/content/<safe name>
    role: str  # original | validation-report | timestamp ... (METS fileGrp USE)
    original_name: str
    size: int
    digests: dict[str, str]  # computed by the caller at ingest, trusted here
    format_puid: str | None = None
    format_name: str | None = None
    mime_type: str | None = None


@dataclass(frozen=True)
class PremisEvent:
    id: str  # UUID
    event_type: str
    occurred_at: datetime
    agent: str  # identifier of one of the spec's agents
    outcome: str  # success | failure | warning
    detail: str = ""
    linked_paths: list[str] = field(default_factory=list)  # payload bag paths


@dataclass(frozen=True)
class PremisAgent:
    identifier: str
    name: str
    kind: str  # person | organisation | software | system


@dataclass(frozen=True)
class AipSpec:
    record_id: str  # canonical UUID
    version: int
    metadata: dict
    files: list[PayloadFile]
    events: list[PremisEvent]
    agents: list[PremisAgent]
    source_organization: str
    algorithms: tuple[str, ...]
    created_at: datetime
    software: str
    # Further metadata files under data/metadata/ (e.g. a later version's lifecycle.json,
    # R-HIST-1): bag path -> bytes, listed in the manifests and referenced from METS.
    metadata_files: dict[str, bytes] = field(default_factory=dict)

    @property
    def bag_name(self) -> str:
        return f"{self.record_id}.v{self.version}"


@dataclass(frozen=True)
class BagMember:
    path: str  # relative to the bag root, e.g. data/content/x.pdf
    offset: int  # first content byte in the serialised object
    size: int
    digests: dict[str, str]
    role: str  # original (or the payload's role) | metadata | tag


@dataclass(frozen=True)
class BuiltAip:
    path: Path
    size: int
    digests: dict[str, str]  # of the whole tar object
    members: list[BagMember]
    bag_name: str


# ---- names ---------------------------------------------------------------------------


def safe_payload_name(name: str) -> str:
    """A file name safe in a bag, a manifest, a tar and on common filesystems.

    NFC; Vietnamese (any) letters kept; path separators, '%', control/format characters
    and characters Windows forbids become '_'; odd spaces become ' '; leading/trailing
    dots and spaces go; at most 200 UTF-8 bytes, keeping the extension.
    """
    chars = []
    for ch in unicodedata.normalize("NFC", name):
        category = unicodedata.category(ch)
        if ch in _UNSAFE_CHARS or category in _BAD_CATEGORIES:
            chars.append("_")
        elif category == "Zs":
            chars.append(" ")
        else:
            chars.append(ch)
    safe = re.sub(r" {2,}", " ", "".join(chars)).strip(" .")
    safe = unicodedata.normalize("NFC", safe) or "file"
    if _WINDOWS_RESERVED.fullmatch(safe):
        safe = "_" + safe
    if len(safe.encode("utf-8")) > _NAME_BYTES:
        stem, dot, ext = safe.rpartition(".")
        if not dot or len(ext) > 16:
            stem, ext = safe, ""
        suffix = f".{ext}" if ext else ""
        while len((stem + suffix).encode("utf-8")) > _NAME_BYTES:
            stem = stem[:-1]
        safe = unicodedata.normalize("NFC", stem.rstrip(" .") + suffix)
    return safe


def payload_paths(original_names: Iterable[str], directory: str = CONTENT_DIR) -> list[str]:
    """Bag paths for files received under ``original_names``, unique even case-folded."""
    taken: set[str] = set()
    out = []
    for name in original_names:
        safe = safe_payload_name(name)
        stem, dot, ext = safe.rpartition(".")
        if not dot:
            stem, ext = safe, ""
        candidate, n = safe, 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{stem} ({n}).{ext}" if ext else f"{stem} ({n})"
        taken.add(candidate.casefold())
        out.append(f"{directory}/{candidate}")
    return out


def _tag_value(value: object) -> str:
    """bag-info.txt value on one line: no CR/LF or other line breaks, spaces collapsed."""
    text = "".join(" " if unicodedata.category(ch) in _BAD_CATEGORIES else ch
                   for ch in unicodedata.normalize("NFC", str(value)))
    return " ".join(text.split())


# ---- checking the spec ----------------------------------------------------------------


def _check_spec(spec: AipSpec) -> list[FieldProblem]:
    problems: list[FieldProblem] = []

    def bad(name: str, message: str) -> None:
        problems.append(FieldProblem(name, message))

    try:
        if str(uuid.UUID(spec.record_id)) != spec.record_id:
            bad("record_id", "must be a canonical lower-case UUID")
    except (ValueError, TypeError, AttributeError):
        bad("record_id", "must be a UUID")
    if type(spec.version) is not int or spec.version < 1:
        bad("version", "must be a positive integer")
    algorithms = list(spec.algorithms)
    for algorithm in REQUIRED_ALGORITHMS:
        if algorithm not in algorithms:
            bad("algorithms", f"{algorithm} is required (R-FIX-1)")
    for algorithm in algorithms:
        if algorithm not in hashlib.algorithms_guaranteed or algorithm != algorithm.lower():
            bad("algorithms", f"unsupported algorithm {algorithm!r}")
    if len(set(algorithms)) != len(algorithms):
        bad("algorithms", "listed twice")
    if spec.created_at.tzinfo is None or spec.created_at.timestamp() < 0:
        bad("created_at", "must be timezone-aware and after 1970")
    if not spec.files:
        bad("files", "an AIP holds at least one payload file")
    if not _tag_value(spec.source_organization) or not _tag_value(spec.software):
        bad("source_organization", "source organisation and software must be named")
    reserved = {p.casefold() for p in (METS_PATH, RECORD_JSON_PATH, PREMIS_PATH)}
    used: set[str] = set()
    dirs: set[str] = set()
    for n, pf in enumerate(spec.files):
        where = f"files[{n}]"
        parts = pf.bag_path.split("/")
        if (len(parts) < 2 or parts[0] != "data"
                or any(p != safe_payload_name(p) for p in parts[1:])):
            bad(where, f"unsafe bag path {pf.bag_path!r} (use safe_payload_name)")
        folded = unicodedata.normalize("NFC", pf.bag_path).casefold()
        if folded in reserved or folded.startswith("data/metadata/") or folded in used:
            bad(where, f"bag path {pf.bag_path!r} is reserved or used twice")
        used.add(folded)
        dirs.update("/".join(parts[:i]).casefold() for i in range(2, len(parts)))
        if not ROLE_NAME.fullmatch(pf.role or ""):
            bad(where, f"role {pf.role!r} must be a short lower-case word")
        if type(pf.size) is not int or pf.size < 0:
            bad(where, "size must be a non-negative integer")
        for algorithm in algorithms:
            digest = pf.digests.get(algorithm, "")
            if (algorithm in hashlib.algorithms_guaranteed and not re.fullmatch(
                    f"[0-9a-f]{{{2 * hashlib.new(algorithm).digest_size}}}", digest)):
                bad(where, f"missing or malformed {algorithm} digest")
    if used & dirs:
        bad("files", "a bag path is both a file and a directory")
    for path, data in spec.metadata_files.items():
        parts = path.split("/")
        if (len(parts) < 3 or parts[:2] != ["data", "metadata"]
                or any(p != safe_payload_name(p) for p in parts[2:])
                or path.casefold() in reserved or not isinstance(data, bytes)):
            bad("metadata_files", f"unusable metadata file {path!r}")
    agent_ids = [a.identifier for a in spec.agents]
    if len(set(agent_ids)) != len(agent_ids):
        bad("agents", "agent identifiers must be unique")
    for agent in spec.agents:
        if agent.kind not in ("person", "organisation", "software", "system"):
            bad("agents", f"unknown kind {agent.kind!r} of {agent.identifier!r}")
    paths = {pf.bag_path for pf in spec.files}
    for n, event in enumerate(spec.events):
        where = f"events[{n}]"
        try:
            uuid.UUID(event.id)
        except (ValueError, TypeError, AttributeError):
            bad(where, "id must be a UUID")
        if event.occurred_at.tzinfo is None:
            bad(where, "occurred_at must be timezone-aware")
        if event.agent not in agent_ids:
            bad(where, f"agent {event.agent!r} is not among the spec's agents")
        if not event.event_type or not event.outcome:
            bad(where, "event_type and outcome are required")
        for path in event.linked_paths:
            if path not in paths:
                bad(where, f"linked path {path!r} is not a payload file")
    return problems


# ---- building -------------------------------------------------------------------------


def _human_size(n: int) -> str:
    value, unit = float(n), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):  # noqa: B007 - the last unit is kept
        if value < 1000 or unit == "TB":
            break
        value /= 1000
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def _bag_info(spec: AipSpec, payload_bytes: int, payload_count: int) -> bytes:
    meta = spec.metadata
    values = {
        "Bagging-Date": spec.created_at.date().isoformat(),
        "Payload-Oxum": f"{payload_bytes}.{payload_count}",
        "External-Identifier": spec.record_id,
        "Source-Organization": spec.source_organization,
        "Bag-Software-Agent": spec.software,
        "Bag-Size": _human_size(payload_bytes),  # approximate: the payload's size
        "Bag-Group-Identifier": meta.get("fonds") or "",
        "Internal-Sender-Identifier": meta.get("number_symbol") or "",
        "Internal-Sender-Description": meta.get("summary") or "",
        "Archive-Version": str(spec.version),
    }
    lines = [f"{label}: {_tag_value(values[label])}\n" for label in _BAG_INFO_ORDER
             if _tag_value(values[label])]
    return "".join(lines).encode("utf-8")


def _manifest(entries: dict[str, dict[str, str]], algorithm: str) -> bytes:
    return "".join(f"{entries[path][algorithm]}  {encode_manifest_path(path)}\n"
                   for path in sorted(entries)).encode("utf-8")


def _tarinfo(name: str, size: int, mtime: int, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = 0 if directory else size
    info.mode = DIR_MODE if directory else FILE_MODE
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _padded(size: int) -> int:
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def build_aip(spec: AipSpec, staging_dir: Path, *,
              verify_payload_digests: bool = False,
              seal_manifests: Callable[[dict[str, bytes]], dict[str, bytes]] | None = None,
              ) -> BuiltAip:
    """Write the AIP of ``spec`` as one tar in ``staging_dir`` and index its members.

    Payload sources are streamed once; a size that differs from the spec raises
    SizeMismatch (and with ``verify_payload_digests`` a digest that differs raises
    FixityMismatch). On any error the partial file is removed.

    ``seal_manifests`` (R-TS-1) is called with the finished payload manifests
    (``{"manifest-sha256.txt": bytes, ...}``) and returns extra tag files, e.g. an
    RFC 3161 timestamp token over the manifest; they are written into the bag and
    covered by the tag manifests.
    """
    problems = _check_spec(spec)
    if problems:
        raise AipSpecInvalid(problems)
    algorithms = tuple(spec.algorithms)
    try:
        record_json = (json.dumps(spec.metadata, sort_keys=True, indent=2, ensure_ascii=False)
                       + "\n").encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise AipSpecInvalid([FieldProblem("metadata", f"not JSON-serialisable: {exc}")]) from exc
    premis = build_premis(spec)
    premis_digests = hash_bytes(premis, algorithms)
    record_digests = hash_bytes(record_json, algorithms)
    other = {path: (len(data), hash_bytes(data, algorithms))
             for path, data in spec.metadata_files.items()}
    mets = build_mets(spec, (len(premis), premis_digests), (len(record_json), record_digests),
                      other_metadata=other)
    generated = {METS_PATH: mets, RECORD_JSON_PATH: record_json, PREMIS_PATH: premis,
                 **spec.metadata_files}

    payload = {path: hash_bytes(data, algorithms) for path, data in generated.items()}
    payload.update({pf.bag_path: {a: pf.digests[a] for a in algorithms} for pf in spec.files})
    payload_bytes = sum(len(d) for d in generated.values()) + sum(pf.size for pf in spec.files)
    tags = {"bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
            "bag-info.txt": _bag_info(spec, payload_bytes, len(payload))}
    for algorithm in algorithms:
        tags[f"manifest-{algorithm}.txt"] = _manifest(payload, algorithm)
    if seal_manifests is not None:
        manifests = {k: v for k, v in tags.items() if k.startswith("manifest-")}
        for name, data in seal_manifests(manifests).items():
            if name in tags or not name.startswith(TAG_EXTRA_DIR + "/") \
                    or ".." in name.split("/"):
                raise AipSpecInvalid([FieldProblem("seal_manifests",
                                                   f"unusable tag file name {name!r}")])
            tags[name] = data
    tag_digests = {path: hash_bytes(data, algorithms) for path, data in tags.items()}
    for algorithm in algorithms:
        tags[f"tagmanifest-{algorithm}.txt"] = _manifest(tag_digests, algorithm)

    staging_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{spec.bag_name}.", suffix=".tar", dir=staging_dir)
    path = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as raw:
            writer = HashingWriter(raw, algorithms)
            members = _write_tar(spec, writer, tags, generated, verify_payload_digests)
            raw.flush()
            os.fsync(raw.fileno())
        if path.stat().st_size != writer.size:
            raise SizeMismatch(str(path), writer.size, path.stat().st_size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return BuiltAip(path=path, size=writer.size, digests=writer.hexdigests(),
                    members=members, bag_name=spec.bag_name)


def _write_tar(spec: AipSpec, writer: HashingWriter, tags: dict[str, bytes],
               generated: dict[str, bytes], verify: bool) -> list[BagMember]:
    algorithms = tuple(spec.algorithms)
    mtime = int(spec.created_at.timestamp())
    root = spec.bag_name
    members: list[BagMember] = []
    written_dirs: set[str] = set()
    tar = tarfile.open(fileobj=writer, mode="w", format=tarfile.PAX_FORMAT,  # noqa: SIM115
                       encoding="utf-8", errors="strict")
    tar.copybufsize = CHUNK

    def add(path: str, size: int, source: BinaryIO, digests: dict[str, str], role: str) -> None:
        parts = path.split("/")
        for i in range(len(parts)):  # parent directories first, each once
            directory = "/".join([root, *parts[:i]])
            if directory not in written_dirs:
                written_dirs.add(directory)
                tar.addfile(_tarinfo(directory, 0, mtime, directory=True))
        tar.addfile(_tarinfo(f"{root}/{path}", size, mtime), source)
        members.append(BagMember(path, tar.offset - _padded(size), size, digests, role))

    try:
        for path, data in tags.items():
            add(path, len(data), io.BytesIO(data), hash_bytes(data, algorithms), "tag")
        for path, data in generated.items():
            add(path, len(data), io.BytesIO(data), hash_bytes(data, algorithms), "metadata")
        for pf in spec.files:
            with open(pf.source, "rb") as fh:  # R-PKG-1: the original bytes, read once
                found = os.fstat(fh.fileno()).st_size
                if found != pf.size:
                    raise SizeMismatch(str(pf.source), pf.size, found)
                reader = HashingReader(fh, algorithms if verify else ())
                try:
                    add(pf.bag_path, pf.size, reader,
                        {a: pf.digests[a] for a in algorithms}, pf.role)
                except OSError as exc:  # tarfile: "unexpected end of data"
                    raise SizeMismatch(str(pf.source), pf.size, reader.size) from exc
                if fh.read(1):  # grew while being copied
                    raise SizeMismatch(str(pf.source), pf.size, pf.size + 1)
            if verify:
                for algorithm, found_digest in reader.hexdigests().items():
                    if found_digest != pf.digests[algorithm]:
                        raise FixityMismatch(str(pf.source), algorithm,
                                             pf.digests[algorithm], found_digest)
    finally:
        tar.close()
    return members
