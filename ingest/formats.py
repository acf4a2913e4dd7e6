"""Format identification with PRONOM identifiers (siegfried via pygfried), R-META-1.

PDF/A conformance is recorded from the PRONOM identification: siegfried matches
the PDF/A signatures (fmt/95, fmt/354, fmt/476 ...) before plain PDF.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pygfried

# PRONOM PUIDs of PDF/A variants -> conformance level.
PDFA_PUIDS = {
    "fmt/95": "1a", "fmt/354": "1b",
    "fmt/476": "2a", "fmt/477": "2b", "fmt/478": "2u",
    "fmt/479": "3a", "fmt/480": "3b", "fmt/481": "3u",
    "fmt/1910": "4", "fmt/1911": "4e", "fmt/1912": "4f",
}
PDF_MIME = "application/pdf"


@dataclass(frozen=True)
class FormatId:
    puid: str | None  # None when siegfried finds no match ("UNKNOWN")
    name: str | None
    mime_type: str | None
    version: str | None
    basis: str
    warning: str

    @property
    def pdfa(self) -> str | None:
        return PDFA_PUIDS.get(self.puid or "")

    @property
    def is_pdf(self) -> bool:
        return self.mime_type == PDF_MIME or (self.name or "").startswith(
            ("Acrobat PDF", "Portable Document Format", "PDF/A"))


def identify(path: Path) -> FormatId:
    """Identify the format of the file at ``path`` (reads only its signature bytes)."""
    result = pygfried.identify(str(path), detailed=True)
    files = result.get("files") or [{}]
    matches = files[0].get("matches") or []
    match = next((m for m in matches if m.get("ns") == "pronom"), matches[0] if matches else {})
    puid = match.get("id")
    if not puid or puid == "UNKNOWN":
        return FormatId(None, None, None, None, match.get("basis", ""),
                        match.get("warning", "") or files[0].get("errors", ""))
    return FormatId(puid=puid, name=match.get("format") or None,
                    mime_type=match.get("mime") or None, version=match.get("version") or None,
                    basis=match.get("basis", ""), warning=match.get("warning", ""))
