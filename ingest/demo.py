"""Sample documents for the demo archive `make run` creates (marked DEMO).

The PDFs are generated here (small, valid PDF 1.4 with one text page) and ingested
through the real ingest path. Signed samples arrive with the test PKI (issue #3).
"""

from __future__ import annotations

import json
import unicodedata
from datetime import date, timedelta
from pathlib import Path

DEMO_ORGS = [
    ("000.00.00.H41", "Văn phòng Tỉnh ủy (DEMO)"),
    ("000.00.01.H41", "Ban Tổ chức Tỉnh ủy (DEMO)"),
]

_SAMPLES = [
    ("nghi-quyet", "15-NQ/TU", "Nghị quyết về phát triển kinh tế số của tỉnh đến năm 2030", "vv"),
    ("quyet-dinh", "102-QĐ/TU", "Quyết định thành lập Ban Chỉ đạo chuyển đổi số", "vv"),
    ("chi-thi", "07-CT/TU", "Chỉ thị tăng cường công tác bảo vệ bí mật nhà nước", "70y"),
    ("ket-luan", "21-KL/TU", "Kết luận của Ban Thường vụ về công tác cán bộ quý III", "70y"),
    ("thong-bao", "88-TB/VPTU", "Thông báo lịch làm việc của Thường trực Tỉnh ủy", "10y"),
    ("bao-cao", "45-BC/TU", "Báo cáo sơ kết 6 tháng thực hiện nhiệm vụ chính trị", "20y"),
    ("ke-hoach", "33-KH/BTCTU", "Kế hoạch tổ chức đại hội chi bộ nhiệm kỳ 2025-2030", "20y"),
    ("cong-van", "512-CV/VPTU", "Công văn về việc triển khai giao dịch điện tử", "10y"),
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


def write_samples(folder: Path, today: date) -> list[Path]:
    """Write the demo PDFs with their sidecar metadata into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (doc_type, number, summary, rule) in enumerate(_SAMPLES):
        issued = today - timedelta(days=30 * (i + 1))
        org = DEMO_ORGS[i % 2][0]
        pdf = folder / f"demo-{i + 1:02d}-{doc_type}.pdf"
        pdf.write_bytes(make_pdf([
            "DANG CONG SAN VIET NAM - DEMO DOCUMENT (not a real record)",
            f"So: {number}    Ngay {issued.isoformat()}",
            summary, "", "Tai lieu mau cua kho luu tru so (DEMO).",
        ]))
        meta = {
            "number_symbol": number, "doc_type": doc_type, "date": issued.isoformat(),
            "issuing_org": org, "summary": summary + " (DEMO)",
            "signer": "Nguyễn Văn A (DEMO)", "signer_position": "Chánh Văn phòng",
            "classification": "normal", "retention_rule": rule, "fonds": "PHONG-TU-DEMO",
            "file_ref": f"HS-{issued.year}-{i + 1:03d}", "page_count": 1, "language": "vi",
            "recipients": [DEMO_ORGS[(i + 1) % 2][0]],
        }
        pdf.with_name(pdf.name + ".json").write_text(
            json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
        paths.append(pdf)
    return paths
