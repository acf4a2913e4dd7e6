"""The signature report: what the validator found, in data and in plain words (R-SIG-2).

A report never raises: every finding is a :class:`SignatureProblem` with a stable code, an
English message and, for the codes a clerk meets, a Vietnamese one. Each code has a
severity that decides the verdict: ``error`` makes a signature invalid, ``indeterminate``
means validity could not be established (e.g. revocation status unobtainable), ``warning``
and ``info`` are reported and change nothing.

The validation material actually used (certificates, OCSP responses, CRLs) is kept in
:class:`Evidence` for the AIP (R-TS-1); it is left out of ``to_dict()`` unless asked for.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

VERDICTS = ("valid", "invalid", "indeterminate", "unsigned", "malformed")
SEVERITIES = ("error", "indeterminate", "warning", "info")

# code -> (severity, English, Vietnamese). Messages may use {placeholders} from detail.
PROBLEMS: dict[str, tuple[str, str, str]] = {
    # ---- the file ------------------------------------------------------------------
    "malformed": ("error", "the file is not a readable PDF: {reason}",
                  "Tệp không phải là tệp PDF đọc được: {reason}"),
    "encrypted": ("error", "the PDF is encrypted; an encrypted document cannot be checked or "
                  "archived as received", "Tệp PDF bị mã hóa nên không thể kiểm tra chữ ký "
                  "và lưu trữ."),
    "too_large": ("error", "the file is {size} bytes, more than the {limit} bytes allowed",
                  "Tệp có dung lượng {size} byte, vượt quá giới hạn {limit} byte."),
    "timeout": ("error", "checking the file took longer than {seconds} s and was stopped",
                "Việc kiểm tra tệp vượt quá {seconds} giây và đã bị dừng."),
    "lenient_syntax": ("warning", "the PDF has syntax defects ({reason}); it was read "
                       "leniently and every change after signing was still analysed",
                       "Tệp PDF có lỗi cú pháp ({reason}); đã được đọc ở chế độ dung sai và "
                       "mọi thay đổi sau khi ký vẫn được phân tích."),
    "unsigned": ("error", "the document carries no digital signature",
                 "Văn bản không có chữ ký số."),
    # ---- one signature ---------------------------------------------------------------
    "signature_malformed": ("error", "{target}: the signature cannot be read: {reason}",
                            "{target}: không đọc được chữ ký số: {reason}"),
    "integrity": ("error", "{target}: the signed content was changed after signing or the "
                  "signature value is wrong ({reason})",
                  "{target}: nội dung đã ký bị thay đổi sau khi ký hoặc giá trị chữ ký "
                  "không đúng."),
    "coverage": ("error", "{target}: the signature does not cover the whole document as it "
                 "was when signed ({reason})",
                 "{target}: chữ ký số không bao phủ toàn bộ văn bản tại thời điểm ký."),
    "modified": ("error", "{target}: the document was changed after signing in a way that is "
                 "not allowed ({reason})",
                 "{target}: văn bản bị sửa đổi sau khi ký theo cách không được phép."),
    "modified_allowed": ("info", "{target}: later revisions only add {level} (allowed)",
                         "{target}: các lần cập nhật sau chỉ bổ sung {level} (được phép)."),
    "untrusted": ("error", "{target}: the signer's certificate does not chain to a trusted "
                  "root certificate ({reason})",
                  "{target}: chứng thư số của người ký không thuộc tổ chức cung cấp dịch vụ "
                  "chứng thực được tin cậy."),
    "revoked": ("error", "{target}: the signer's certificate{ca} was revoked on {revoked_at}, "
                "before the proven signing time",
                "{target}: chứng thư số{ca_vi} đã bị thu hồi ngày {revoked_at}, trước thời "
                "điểm ký được chứng minh."),
    "revoked_after_signing": ("info", "{target}: the certificate was revoked on {revoked_at}, "
                              "after the signing time proven by a trusted timestamp "
                              "({signing_time}); the signature stays valid",
                              "{target}: chứng thư số bị thu hồi ngày {revoked_at}, sau thời "
                              "điểm ký được dấu thời gian chứng minh; chữ ký vẫn hợp lệ."),
    "registry_revoked": ("error", "{target}: the archive's registry records the certificate "
                         "as revoked from {revoked_at}, and no trusted timestamp proves the "
                         "signature is older",
                         "{target}: sổ đăng ký chứng thư số của kho ghi nhận chứng thư đã bị "
                         "thu hồi từ {revoked_at}, không có dấu thời gian tin cậy chứng minh "
                         "chữ ký được tạo trước đó."),
    "revocation_unknown": ("indeterminate", "{target}: the revocation status of the "
                           "certificate could not be obtained ({reason})",
                           "{target}: không xác định được tình trạng thu hồi của chứng thư "
                           "số (OCSP/CRL)."),
    "expired": ("error", "{target}: the signer's certificate was not valid at the signing "
                "time: it expired on {not_after}",
                "{target}: chứng thư số của người ký đã hết hạn ngày {not_after}, trước thời "
                "điểm ký."),
    "not_yet_valid": ("error", "{target}: the signer's certificate was not yet valid at the "
                      "signing time (valid from {not_before})",
                      "{target}: chứng thư số chưa có hiệu lực tại thời điểm ký (hiệu lực từ "
                      "{not_before})."),
    "key_usage": ("error", "{target}: the signer's certificate is not meant for signatures "
                  "with legal effect (no non-repudiation key usage)",
                  "{target}: chứng thư số không dùng cho chữ ký có giá trị pháp lý (thiếu "
                  "mục đích chống chối bỏ)."),
    "weak": ("error", "{target}: weak cryptography: {reason}",
             "{target}: thuật toán mật mã yếu, không còn an toàn: {reason}"),
    "timestamp_invalid": ("warning", "{target}: the signature timestamp is not valid or not "
                          "trusted ({reason}); the signing time is not proven",
                          "{target}: dấu thời gian của chữ ký không hợp lệ hoặc không tin cậy; "
                          "thời điểm ký chưa được chứng minh."),
    "no_timestamp": ("info", "{target}: no trusted timestamp: the signing time is the "
                     "signer's claim, validity was checked at {validation_time}",
                     "{target}: chữ ký không có dấu thời gian tin cậy; thời điểm ký chỉ do "
                     "người ký khai."),
    "document_timestamp_invalid": ("warning", "{target}: a document timestamp is not valid "
                                   "or not trusted ({reason})",
                                   "{target}: dấu thời gian của tài liệu không hợp lệ hoặc "
                                   "không tin cậy."),
    "validation_failed": ("indeterminate", "{target}: the signature could not be validated: "
                          "{reason}", "{target}: không thể kiểm tra chữ ký số: {reason}"),
}


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def problem(code: str, target: str = "", *, severity: str | None = None,
            **detail: Any) -> SignatureProblem:
    """A finding of ``code`` with its messages filled from ``detail``.

    ``severity`` overrides the code's usual one (e.g. unknown revocation status accepted
    in soft-fail mode is only a warning).
    """
    usual, en, vi = PROBLEMS[code]
    values = _Blank({k: _plain(v) for k, v in detail.items()}, target=target or "document")
    return SignatureProblem(code, en.format_map(values), vi.format_map(values),
                            severity or usual, target,
                            {k: _plain(v) for k, v in detail.items()})


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


@dataclass
class SignatureProblem:
    """One finding (the shape of ``archive.errors.Problem`` plus severity and Vietnamese)."""

    code: str
    message: str
    message_vi: str
    severity: str
    target: str = ""
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "message_vi": self.message_vi, "target": self.target, "detail": self.detail}


@dataclass
class Evidence:
    """Validation material as DER bytes, deduplicated, for offline re-validation."""

    certificates: list[bytes] = field(default_factory=list)
    ocsp_responses: list[bytes] = field(default_factory=list)
    crls: list[bytes] = field(default_factory=list)

    def add(self, kind: str, der: bytes) -> None:
        bucket = getattr(self, kind)
        if der not in bucket:
            bucket.append(der)

    def merge(self, other: Evidence) -> None:
        for kind in ("certificates", "ocsp_responses", "crls"):
            for der in getattr(other, kind):
                self.add(kind, der)

    def to_dict(self) -> dict:
        """JSON-safe form: base64 DER per kind (the format stored in the AIP)."""
        return {kind: [base64.b64encode(d).decode("ascii") for d in getattr(self, kind)]
                for kind in ("certificates", "ocsp_responses", "crls")}

    @classmethod
    def from_dict(cls, data: dict) -> Evidence:
        return cls(**{kind: [base64.b64decode(v) for v in data.get(kind, [])]
                      for kind in ("certificates", "ocsp_responses", "crls")})

    def summary(self) -> dict:
        return {kind: len(getattr(self, kind))
                for kind in ("certificates", "ocsp_responses", "crls")}


@dataclass
class CertificateInfo:
    subject: str
    common_name: str | None
    organisation: str | None
    serial_number: str | None  # the subject's serialNumber attribute (e.g. MST/CCCD)
    issuer: str
    serial: str  # the certificate's serial, hex
    fingerprint: str  # SHA-256 of the DER, hex
    not_before: datetime
    not_after: datetime
    key_algorithm: str
    key_size: int | None
    pem: str

    def to_dict(self) -> dict:
        return {k: _plain(v) for k, v in self.__dict__.items()}


@dataclass
class TimestampInfo:
    present: bool = False
    time: datetime | None = None
    tsa: str | None = None
    valid: bool | None = None  # intact and cryptographically valid
    trusted: bool | None = None  # chains to a configured root

    def to_dict(self) -> dict:
        return {k: _plain(v) for k, v in self.__dict__.items()}


@dataclass
class SignatureResult:
    """Everything found about one signature (or document timestamp) of the PDF."""

    index: int
    field_name: str
    kind: str = "signature"  # signature | document_timestamp
    verdict: str = "indeterminate"
    signer: CertificateInfo | None = None
    signing_time_claimed: datetime | None = None
    signing_time_proven: datetime | None = None
    validation_time: datetime | None = None
    timestamp: TimestampInfo = field(default_factory=TimestampInfo)
    intact: bool | None = None
    valid: bool | None = None
    coverage: str | None = None  # entire_file | entire_revision | other
    modification_level: str | None = None  # none | lta_updates | form_filling | ...
    modification_allowed: bool | None = None
    trusted: bool | None = None
    chain: list[str] = field(default_factory=list)
    revocation: dict = field(default_factory=lambda: {"status": "unknown", "revoked_at": None,
                                                      "reason": None, "source": None})
    validity_at_signing: str | None = None  # ok | expired | not_yet_valid
    key_usage: dict = field(default_factory=dict)
    crypto: dict = field(default_factory=dict)
    bound_agent: dict | None = None
    role: str | None = None
    problems: list[SignatureProblem] = field(default_factory=list)

    def add(self, code: str, *, severity: str | None = None, **detail: Any) -> None:
        self.problems.append(problem(code, self.field_name, severity=severity, **detail))

    def codes(self) -> set[str]:
        return {p.code for p in self.problems}

    def decide(self) -> str:
        severities = {p.severity for p in self.problems}
        if "signature_malformed" in self.codes():
            self.verdict = "malformed"
        elif "error" in severities:
            self.verdict = "invalid"
        elif "indeterminate" in severities:
            self.verdict = "indeterminate"
        else:
            self.verdict = "valid"
        return self.verdict

    def to_dict(self) -> dict:
        d = {k: _plain(v) for k, v in self.__dict__.items()
             if k not in ("signer", "timestamp", "problems", "chain", "revocation",
                          "key_usage", "crypto", "bound_agent")}
        d.update(signer=self.signer.to_dict() if self.signer else None,
                 timestamp=self.timestamp.to_dict(), chain=list(self.chain),
                 revocation={k: _plain(v) for k, v in self.revocation.items()},
                 key_usage=dict(self.key_usage), crypto=dict(self.crypto),
                 bound_agent=dict(self.bound_agent) if self.bound_agent else None,
                 problems=[p.to_dict() for p in self.problems])
        return d


@dataclass
class SignatureReport:
    """The whole check of one PDF. ``verdict`` is the worst over its signatures."""

    verdict: str
    size: int = 0
    sha256: str = ""
    checked_at: datetime | None = None
    validation_time: datetime | None = None  # the moment asked for (--at), None = now
    signatures: list[SignatureResult] = field(default_factory=list)
    document_timestamps: list[SignatureResult] = field(default_factory=list)
    problems: list[SignatureProblem] = field(default_factory=list)
    evidence: Evidence = field(default_factory=Evidence)
    source: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == "valid"

    def all_problems(self) -> list[SignatureProblem]:
        out = list(self.problems)
        for sig in [*self.signatures, *self.document_timestamps]:
            out.extend(sig.problems)
        return out

    def codes(self) -> set[str]:
        return {p.code for p in self.all_problems()}

    def decide(self) -> str:
        """Overall verdict: malformed > unsigned > invalid > indeterminate > valid."""
        if any(p.code in ("malformed", "encrypted", "too_large", "timeout")
               for p in self.problems):
            self.verdict = "malformed"
            return self.verdict
        verdicts = [s.decide() for s in self.signatures]
        for ts in self.document_timestamps:
            ts.decide()
        if not verdicts:
            self.verdict = "unsigned"
            if "unsigned" not in {p.code for p in self.problems}:
                self.problems.append(problem("unsigned"))
        else:
            for v in ("malformed", "invalid", "indeterminate", "valid"):
                if v in verdicts:
                    self.verdict = v
                    break
        return self.verdict

    def to_dict(self, *, include_evidence: bool = False) -> dict:
        d = {"verdict": self.verdict, "source": self.source, "size": self.size,
             "sha256": self.sha256, "checked_at": _plain(self.checked_at),
             "validation_time": _plain(self.validation_time),
             "signatures": [s.to_dict() for s in self.signatures],
             "document_timestamps": [s.to_dict() for s in self.document_timestamps],
             "problems": [p.to_dict() for p in self.problems],
             "evidence_summary": self.evidence.summary()}
        if include_evidence:
            d["evidence"] = self.evidence.to_dict()
        return d


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
