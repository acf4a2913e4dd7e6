"""Sample documents of the DEMO archive `make run` creates (every one marked DEMO).

The PDFs are generated here (small, valid PDF 1.4 with one text page), then signed with
the DEMO PKI (``ingest/demo_pki``): the issuer's signer, and the issuing organisation's
seal where the document type's policy asks for it (config/defaults.toml). The seed
(``ingest/demo_seed.py``) ingests them through the real ingest path.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

VPTU, BTCTU = "000.00.00.H41", "000.00.01.H41"
DEMO_ORGS = [
    (VPTU, "Văn phòng Tỉnh ủy (DEMO)"),
    (BTCTU, "Ban Tổ chức Tỉnh ủy (DEMO)"),
]
# The organisations' seals (DEMO PKI certificate labels).
SEALS = {VPTU: "org_vptu", BTCTU: "org_btctu"}
# Who signs for which organisation (DEMO PKI person label, organisation, position).
SIGNERS = [
    ("an", VPTU, "Chánh Văn phòng"),
    ("binh", VPTU, "Phó Chánh Văn phòng"),
    ("cuong", BTCTU, "Trưởng ban"),
]


@dataclass(frozen=True)
class Sample:
    doc_type: str
    number: str
    summary: str
    retention: str
    signer: str  # DEMO PKI person label; the issuing organisation is the one they sign for
    classification: str = "normal"


SAMPLES = [
    Sample("nghi-quyet", "15-NQ/TU", "Nghị quyết về phát triển kinh tế số của tỉnh đến năm "
           "2030", "vv", "an"),
    Sample("quyet-dinh", "102-QĐ/TU", "Quyết định thành lập Ban Chỉ đạo chuyển đổi số", "vv",
           "an"),
    Sample("chi-thi", "07-CT/TU", "Chỉ thị tăng cường công tác bảo vệ bí mật nhà nước", "70y",
           "binh", classification="mat"),
    Sample("ket-luan", "21-KL/BTCTU", "Kết luận về công tác cán bộ quý III", "70y", "cuong"),
    Sample("thong-bao", "88-TB/VPTU", "Thông báo lịch làm việc của Thường trực Tỉnh ủy", "10y",
           "binh"),
    Sample("bao-cao", "45-BC/VPTU", "Báo cáo sơ kết 6 tháng thực hiện nhiệm vụ chính trị",
           "20y", "an"),
    Sample("ke-hoach", "33-KH/BTCTU", "Kế hoạch tổ chức đại hội chi bộ nhiệm kỳ 2025-2030",
           "20y", "cuong"),
    Sample("cong-van", "512-CV/VPTU", "Công văn về việc triển khai giao dịch điện tử", "10y",
           "binh"),
    Sample("huong-dan", "12-HD/BTCTU", "Hướng dẫn đánh giá, xếp loại chất lượng đảng viên",
           "20y", "cuong"),
    Sample("to-trinh", "09-TTr/VPTU", "Tờ trình phê duyệt danh mục hồ sơ lưu trữ năm 2025",
           "10y", "an"),
    Sample("quy-dinh", "05-QĐi/VPTU", "Quy định sử dụng chữ ký số trong các cơ quan đảng",
           "vv", "an"),
    Sample("bien-ban", "03-BB/VPTU", "Biên bản họp giao ban Văn phòng Tỉnh ủy", "10y", "binh"),
]


def ascii_text(text: str) -> str:
    """Drop Vietnamese diacritics for the built-in PDF font (demo only)."""
    text = text.replace("Đ", "D").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c) and ord(c) < 128)


def make_pdf(lines: list[str]) -> bytes:
    """A valid single-page PDF 1.4 showing ``lines`` in Helvetica."""
    ops = ["BT", "/F1 12 Tf", "14 TL", "72 770 Td"]
    for line in lines:
        safe = ascii_text(line).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({safe}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream
        + b"\nendstream",
    ]
    return write_pdf(objects)


def write_pdf(objects: list[bytes]) -> bytes:
    """A PDF 1.4 file of ``objects`` (object 1 is the catalog), with its xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def _organisation(signer: str) -> str:
    return next(org for label, org, _ in SIGNERS if label == signer)


def _position(signer: str) -> str:
    return next(position for label, _, position in SIGNERS if label == signer)


def write_signed_samples(folder: Path, pki, today: date, doc_types: dict) -> list[Path]:
    """Write the DEMO PDFs, signed with ``pki`` (a DEMO ``PKI``, served), each with its
    sidecar metadata, into ``folder``. ``doc_types`` (settings.document_types) decides
    which samples also carry their organisation's seal. Files already there are kept
    (a re-run ingests the same bytes: duplicates, not new records)."""
    from ingest.demo_pki.signing import sign

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, sample in enumerate(SAMPLES):
        pdf = folder / f"demo-{i + 1:02d}-{sample.doc_type}.pdf"
        sidecar = pdf.with_name(pdf.name + ".json")
        paths.append(pdf)
        if pdf.is_file() and sidecar.is_file():
            continue
        issued = today - timedelta(days=5 * i)
        org = _organisation(sample.signer)
        person = pki.holders[sample.signer]
        data = make_pdf([
            "DANG CONG SAN VIET NAM - DEMO DOCUMENT (not a real record)",
            f"So: {sample.number}    Ngay {issued.isoformat()}",
            sample.summary, "", "Tai lieu mau cua kho luu tru so (DEMO).",
            f"Ky: {person.name}",
        ])
        data = sign(data, pki, sample.signer)
        if "organisation" in doc_types[sample.doc_type].signatures:
            data = sign(data, pki, SEALS[org])
        meta = {
            "number_symbol": sample.number, "doc_type": sample.doc_type,
            "date": issued.isoformat(), "issuing_org": org,
            "summary": sample.summary + " (DEMO)", "signer": person.name,
            "signer_position": _position(sample.signer),
            "classification": sample.classification, "retention_rule": sample.retention,
            "fonds": "PHONG-TU-DEMO", "file_ref": f"HS-{issued.year}-{i + 1:03d}",
            "page_count": 1, "language": "vi",
            "recipients": [other for other, _ in DEMO_ORGS if other != org],
        }
        sidecar.write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        partial = pdf.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(pdf)
    return paths
