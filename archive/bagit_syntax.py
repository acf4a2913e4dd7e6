"""The text syntax of BagIt tag files and manifest paths: RFC 8493 (1.0), drafts 0.93-0.97.

Parses bagit.txt, bag-info.txt, manifest lines and fetch.txt, percent-decodes manifest
paths and applies the path-safety rules (nothing may point outside the bag, R-PKG-1).
Parsing does no I/O and never raises on odd content: every problem goes to a
:class:`Findings` sink as an error or a warning, in the order it is met. The one question
about the bag on disk (is a name with a leading '*' a real tag file?) is a callback.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

SUPPORTED_VERSIONS = {(0, 93), (0, 94), (0, 95), (0, 96), (0, 97), (1, 0)}
_LINE_BREAK = re.compile(r"\r\n|\n|\r")
_MANIFEST_LINE = re.compile(r"(\S+)[ \t]+(.+)")
_FETCH_LINE = re.compile(r"(\S+)[ \t]+(\S+)[ \t]+(.+)")
_PERCENT_ENCODED = re.compile(r"%(25|0D|0A)", re.IGNORECASE)
_WINDOWS_ABSOLUTE = re.compile(r"[A-Za-z]:|\\\\|//")
_ENV_SHORTCUT = re.compile(r"%[^%/\\]+%")
_HEX = re.compile(r"[0-9a-f]+")
_MANIFEST_LINES = re.compile(r"^(\S+)[ \t]+(.+)$", re.MULTILINE)
_NEEDS_CLEANING = re.compile(r"[\\%\x00]|//|/\.|/\Z")
_OXUM = re.compile(r"(\d+)\.(\d+)")


class Findings(Protocol):
    """Where parsing reports what it finds: errors make a bag invalid, warnings do not."""

    def error(self, code: str, message: str, target: str = "", **detail) -> None: ...

    def warn(self, code: str, message: str, target: str = "", **detail) -> None: ...


def show(text: str) -> str:
    """Printable form of a path or line: undecodable bytes and control characters escaped."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        text = "".join(c if 32 <= ord(c) != 127 else f"\\x{ord(c):02x}" for c in text)
    return text


def split_lines(text: str) -> list[str]:
    """Lines ended by CR LF, LF or CR; a final line break ends the last line."""
    lines = _LINE_BREAK.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def encode_manifest_path(path: str) -> str:
    # RFC 8493 2.1.3: only CR, LF and '%' are percent-encoded.
    return path.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def decode_manifest_path(path: str) -> str:
    """The inverse of :func:`encode_manifest_path` (BagIt 1.0; earlier drafts encode nothing)."""
    return _PERCENT_ENCODED.sub(lambda m: chr(int(m.group(1), 16)), path)


# ---- bagit.txt ------------------------------------------------------------------------


@dataclass(frozen=True)
class BagitDeclaration:
    """What bagit.txt declares: the BagIt version and the tag files' character encoding."""

    version: tuple[int, int] | None = None
    encoding: str | None = None  # the declared label, printable
    codec: str = "utf-8"  # Python's codec for it; utf-8 when unknown or undeclared

    @property
    def version_label(self) -> str | None:
        return None if self.version is None else "{}.{}".format(*self.version)

    @property
    def v1(self) -> bool:
        return self.version is not None and self.version >= (1, 0)


def parse_bagit_txt(raw: bytes, findings: Findings) -> BagitDeclaration:
    """The declaration in bagit.txt; each deviation from its two exact lines is reported."""
    version: tuple[int, int] | None = None
    encoding: str | None = None
    codec = "utf-8"
    if raw.startswith(codecs.BOM_UTF8):
        findings.error("bagit-txt-bom", "bagit.txt starts with a byte-order mark", "bagit.txt")
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        findings.error("bagit-txt-encoding", f"bagit.txt is not UTF-8 ({exc.reason} at byte "
                       f"{exc.start})", "bagit.txt")
        return BagitDeclaration()
    lines = split_lines(text)
    first = lines[0] if lines else ""
    m = re.fullmatch(r"BagIt-Version: (\d+)\.(\d+)", first)
    if m:
        version = (int(m.group(1)), int(m.group(2)))
    else:
        loose = re.fullmatch(r"\s*BagIt-Version\s*:\s*(.*?)\s*", first)
        value = loose.group(1) if loose else None
        if loose and re.fullmatch(r"\d+\.\d+", value):
            version = tuple(int(x) for x in value.split("."))  # type: ignore[assignment]
            findings.error("bagit-txt-format", f"bagit.txt line 1 must be exactly "
                           f"'BagIt-Version: M.N', found {show(first)!r}", "bagit.txt")
        elif loose:
            findings.error("version-invalid", f"bagit.txt declares an invalid BagIt-Version "
                           f"{show(value)!r} (expected M.N)", "bagit.txt")
        else:
            findings.error("bagit-txt-format", "bagit.txt line 1 must be 'BagIt-Version: M.N', "
                           f"found {show(first)[:80]!r}", "bagit.txt")
    if version is not None and version not in SUPPORTED_VERSIONS:
        findings.error("version-unsupported", "BagIt-Version {}.{} is not one of 0.93-0.97 or "
                       "1.0".format(*version), "bagit.txt")
    second = lines[1] if len(lines) > 1 else ""
    m = re.fullmatch(r"Tag-File-Character-Encoding: (\S+)", second)
    loose = m or re.fullmatch(r"\s*Tag-File-Character-Encoding\s*:\s*(\S+)\s*", second)
    if not loose:
        findings.error("encoding-missing", "bagit.txt line 2 must be "
                       "'Tag-File-Character-Encoding: ENCODING'", "bagit.txt")
    else:
        if not m:
            findings.error("bagit-txt-format", "bagit.txt line 2 must be exactly "
                           f"'Tag-File-Character-Encoding: ENCODING', found {show(second)!r}",
                           "bagit.txt")
        label = loose.group(1)
        encoding = show(label)
        try:
            codec = codecs.lookup(label).name
        except LookupError:
            findings.error("encoding-unknown", f"unknown Tag-File-Character-Encoding "
                           f"{show(label)!r}", "bagit.txt")
    if any(line.strip() for line in lines[2:]):
        findings.error("bagit-txt-format", "bagit.txt has lines after the two required ones",
                       "bagit.txt")
    return BagitDeclaration(version, encoding, codec)


# ---- the other tag files --------------------------------------------------------------


class TagFileParser:
    """Reads the tag files of one bag as its bagit.txt declares them."""

    def __init__(self, declaration: BagitDeclaration, findings: Findings,
                 is_tag_file: Callable[[str], bool]):
        self.declaration = declaration
        self.findings = findings
        self.is_tag_file = is_tag_file  # a regular file at this bag-relative name?

    def decode(self, raw: bytes, name: str) -> str:
        """Text of a tag file in the declared encoding; bad bytes replaced and reported."""
        codec = self.declaration.codec
        try:
            text = raw.decode(codec)
        except UnicodeDecodeError as exc:
            self.findings.error("tag-file-encoding", f"{name} is not valid "
                                f"{self.declaration.encoding} ({exc.reason} at byte "
                                f"{exc.start})", name)
            text = raw.decode(codec, errors="replace")
        if text.startswith("\ufeff"):
            if codec == "utf-8":
                self.findings.warn("tag-file-bom", f"{name} starts with a byte-order mark", name)
            text = text[1:]
        return text

    # ---- paths --------------------------------------------------------------------------

    def clean_path(self, raw: str, source: str, *, payload: bool) -> str | None:
        """Bag-relative, '/'-separated name for a manifest or fetch path; None if refused."""
        error, warn = self.findings.error, self.findings.warn
        path = raw
        if self.declaration.v1:  # RFC 8493 2.1.3: only CR, LF and % are percent-encoded
            path = decode_manifest_path(path)
        if path.startswith("*") and (payload or not self.is_tag_file(path)):
            warn("md5sum-binary-marker", f"{source}: leading '*' (md5sum binary mode) "
                 f"ignored in {show(raw)}", raw)
            path = path[1:]
        # Refused on every OS, Windows forms included: a bag is an interchange package and a
        # path that escapes the bag anywhere is unsafe (R-PKG-1).
        if "\x00" in path:
            error("path-unsafe", f"{source}: path contains a NUL byte: {show(raw)}", raw)
            return None
        if path.startswith("/") or _WINDOWS_ABSOLUTE.match(path):
            error("path-absolute", f"{source}: absolute path {show(raw)} points outside "
                  "the bag", raw)
            return None
        if path.startswith("~") or _ENV_SHORTCUT.match(path):
            error("path-unsafe", f"{source}: path {show(raw)} uses a home-directory or "
                  "environment shortcut that points outside the bag", raw)
            return None
        parts: list[str] = []
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if part == "..":
                if not parts:
                    error("path-escapes", f"{source}: path {show(raw)} escapes the bag", raw)
                    return None
                parts.pop()
            else:
                parts.append(part)
        clean = "/".join(parts)
        if not clean:
            error("manifest-malformed", f"{source}: empty path in {show(raw)!r}", raw)
            return None
        if clean != path:
            code = "relative-path" if path == "./" + clean else "path-not-canonical"
            warn(code, f"{source}: path {show(raw)} is written as {show(clean)}", raw)
        if payload and not clean.startswith("data/"):
            error("path-outside-payload", f"{source}: {show(raw)} is not in the payload "
                  "directory data/", raw)
            return None
        if "\\" in clean:
            warn("path-not-portable", f"{source}: {show(clean)} contains a backslash, a "
                 "directory separator on Windows", clean)
        return clean

    # ---- manifests ----------------------------------------------------------------------

    def manifest_entries(self, text: str, name: str, algorithm: str, hex_len: int, *,
                         tag: bool) -> dict[str, str]:
        """Clean path -> lower-case checksum of a manifest; ``hex_len`` 0 skips the check."""
        error = self.findings.error
        entries: dict[str, str] = {}
        lines = split_lines(text)
        # Fast path: every line is 'checksum path' (one regex pass over the whole text).
        pairs = _MANIFEST_LINES.findall(text if "\r" not in text else "\n".join(lines))
        if len(pairs) != len(lines):
            pairs = []
            for lineno, line in enumerate(lines, 1):
                m = _MANIFEST_LINE.fullmatch(line)
                if m:
                    pairs.append((m.group(1), m.group(2), lineno))
                elif line.strip():
                    error("manifest-malformed", f"{name} line {lineno} is not 'checksum "
                          f"path': {show(line)[:120]!r}", name)
        else:
            pairs = [(d, p, n) for n, (d, p) in enumerate(pairs, 1)]
        if hex_len and pairs and not (
                {len(d) for d, _, _ in pairs} == {hex_len}
                and _HEX.fullmatch("".join(d for d, _, _ in pairs).lower())):
            for digest, _, lineno in pairs:
                if len(digest) != hex_len or not _HEX.fullmatch(digest.lower()):
                    error("manifest-malformed", f"{name} line {lineno}: "
                          f"{show(digest)[:140]!r} is not a {algorithm} checksum", name)
        needs_cleaning = _NEEDS_CLEANING.search
        for digest, raw_path, lineno in pairs:
            digest = digest.lower()
            if raw_path.startswith("data/") and not needs_cleaning(raw_path):
                path: str | None = raw_path  # already canonical: nothing to decode or refuse
            else:
                path = self.clean_path(raw_path, f"{name} line {lineno}", payload=not tag)
                if path is None:
                    continue
            known = entries.get(path)
            if known is None:
                entries[path] = digest
            elif known != digest:
                error("duplicate-entry-conflict", f"{name} lists {show(path)} more than "
                      "once with different checksums", path)
            elif self.declaration.v1:
                # the suite files this under invalid for 1.0, a warning before
                error("duplicate-entry", f"{name} lists {show(path)} more than once", path)
            else:
                self.findings.warn("duplicate-entry", f"{name} lists {show(path)} more than "
                                   "once (same checksum)", path)
        return entries

    # ---- bag-info.txt and fetch.txt -----------------------------------------------------

    def bag_info(self, text: str, name: str) -> list[tuple[str, str]]:
        """(label, value) of every tag in bag-info.txt, continuation lines joined."""
        tags: list[list[str]] = []
        for lineno, line in enumerate(split_lines(text), 1):
            if not line.strip():
                continue
            if line[0] in " \t":
                if tags:  # continuation line (RFC 8493 2.2.2)
                    tags[-1][1] += " " + line.strip()
                else:
                    self.findings.error("bag-info-malformed", f"{name} line {lineno} "
                                        "continues nothing", name)
                continue
            label, sep, value = line.partition(":")
            if not sep or not label.strip():
                self.findings.error("bag-info-malformed", f"{name} line {lineno} is not "
                                    f"'Label: value': {show(line)[:120]!r}", name)
                continue
            tags.append([label.strip(), value.strip()])  # repeated labels are allowed
        return [(label, value) for label, value in tags]

    def payload_oxum(self, tags: list[tuple[str, str]], name: str) -> tuple[int, int] | None:
        """(octets, streams) of the Payload-Oxum tag; None when absent or unusable."""
        oxums = {value for label, value in tags if label.lower() == "payload-oxum"}
        if len(oxums) > 1:
            self.findings.error("oxum-conflict", f"{name} has conflicting Payload-Oxum values",
                                name)
            return None
        if not oxums:
            return None
        value = oxums.pop()
        m = _OXUM.fullmatch(value)
        if not m:
            self.findings.error("oxum-malformed", f"Payload-Oxum {show(value)!r} is not "
                                "'octets.streams'", name)
            return None
        return int(m.group(1)), int(m.group(2))

    def fetch_entries(self, text: str) -> Iterator[tuple[str, str, str]]:
        """(line label, length or '-', clean path) of each usable fetch.txt line, in order."""
        for lineno, line in enumerate(split_lines(text), 1):
            if not line.strip():
                continue
            source = f"fetch.txt line {lineno}"
            m = _FETCH_LINE.fullmatch(line)
            if not m or not (m.group(2) == "-" or m.group(2).isdigit()):
                self.findings.error("fetch-malformed", f"{source} is not 'url length path': "
                                    f"{show(line)[:120]!r}", "fetch.txt")
                continue
            url, length, raw_path = m.groups()
            try:
                parts = urlsplit(url)
                ok = bool(parts.scheme and (parts.netloc or parts.scheme == "file"))
            except ValueError:
                ok = False
            if not ok:
                self.findings.error("fetch-malformed", f"{source}: malformed URL {show(url)!r}",
                                    "fetch.txt")
            path = self.clean_path(raw_path, source, payload=True)
            if path is None:
                continue
            yield source, length, path
