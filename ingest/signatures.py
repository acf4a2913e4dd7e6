"""Validation of the signatures of a received PDF (R-SIG-2, R-SIG-3, R-TS-1).

:func:`check_pdf` reads a PDF (path or bytes) and returns a :class:`SignatureReport`:
an overall verdict, per signature what pyHanko found (integrity, coverage, changes after
signing, chain to a configured root, revocation, validity at the signing time, key usage,
crypto strength), the agent the certificate is bound to in the archive's registry, and
each problem in plain words. It never raises on hostile input: an unreadable file is the
verdict ``malformed``.

Signing time: a signature timestamp that validates against the trust roots *proves* the
signing time, and the certificate chain is then judged at that moment (a certificate
revoked or expired later does not matter, R-SIG-3). Without one the chain is judged at
the validation time (now, or ``at``).

A :class:`Validator` keeps one event loop and one OCSP/CRL fetcher (with its cache) for
many files, so bulk validation does not fetch the same CRL again for every document.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Protocol

from ingest.signature_findings import (
    apply_registry,
    claimed_timestamp_time,
    collect_evidence,
    coverage_name,
    field_name_of,
    fill,
    indication,
    level_name,
    reason_of,
    subject_name,
    timestamp_reason,
)
from ingest.signature_inspect import (
    Material,
    certificate_info,
    load_material,
)
from ingest.signature_report import (
    Evidence,
    SignatureReport,
    SignatureResult,
    TimestampInfo,
    problem,
    sha256_hex,
)

log = logging.getLogger(__name__)

MAX_PDF_BYTES = 256 * 1024 * 1024


# ---- the certificate registry port (R-SIG-3) ---------------------------------------


class Binding(Protocol):
    """What the registry knows about a certificate (``archive.certificates.Binding``)."""

    identifier: str
    kind: str  # person | organisation
    name: str
    revoked_at: datetime | None
    authorised_for: list[str]


class CertificateRegistry(Protocol):
    """The archive's registry of signing certificates bound to agents.

    ``archive.certificates.CatalogRegistry`` implements it; a plain callable
    ``(fingerprint, at) -> Binding | None`` is accepted too.
    """

    def lookup(self, fingerprint: str, at: datetime) -> Binding | None: ...


RegistryLike = CertificateRegistry | Callable[[str, datetime], Binding | None]


# ---- trust configuration ------------------------------------------------------------


@dataclass(frozen=True)
class TrustConfig:
    """Trust roots (DER) and revocation policy for validation (``[signatures]``)."""

    trust_roots: tuple[bytes, ...] = ()
    revocation_mode: str = "require"
    allow_fetching: bool = True
    fetch_timeout: int = 10
    max_pdf_bytes: int = MAX_PDF_BYTES

    @classmethod
    def from_settings(cls, section, extra_roots: Iterable[str] = (), **overrides):
        roots = load_trust_roots([*section.trust_roots, *extra_roots])
        values = {"trust_roots": roots, "revocation_mode": section.revocation_mode,
                  "allow_fetching": section.allow_fetching,
                  "fetch_timeout": section.fetch_timeout}
        values.update(overrides)
        return cls(**values)


def load_trust_roots(paths: Iterable[str | Path]) -> tuple[bytes, ...]:
    """DER of every certificate in the PEM (or DER) files; a bad file is a ConfigError."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from archive.errors import ConfigError

    roots: list[bytes] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
            if b"-----BEGIN" in data:
                certs = x509.load_pem_x509_certificates(data)
            else:
                certs = [x509.load_der_x509_certificate(data)]
        except OSError as exc:
            raise ConfigError(f"signatures.trust_roots: cannot read {path}: "
                              f"{exc.strerror}") from exc
        except ValueError as exc:
            raise ConfigError(f"signatures.trust_roots: {path} holds no readable "
                              f"certificate ({exc})") from exc
        for cert in certs:
            der = cert.public_bytes(Encoding.DER)
            if der not in roots:
                roots.append(der)
    return tuple(roots)


# ---- the validator ------------------------------------------------------------------


class Validator:
    """Validates PDFs with one configuration, sharing fetched OCSP/CRL across files.

    The fetcher cache is dropped after ``cache_ttl`` seconds so that a long-running
    process does not keep using stale revocation information. Close it when done.
    """

    def __init__(self, config: TrustConfig, *, cache_ttl: float = 300.0,
                 monotonic: Callable[[], float] = time.monotonic):
        self.config = config
        self.cache_ttl = cache_ttl
        self._monotonic = monotonic
        self._loop = asyncio.new_event_loop()
        self._backend = None
        self._fetchers = None
        self._fetchers_born = 0.0
        self._roots = None

    # -- resources --

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._backend is not None:
            self._loop.run_until_complete(self._backend.close())
            self._backend = None
        self._loop.close()

    def fetchers(self):
        """The shared fetchers (OCSP, CRL, certificates) with their response cache."""
        from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend

        if self._backend is None:
            self._backend = AIOHttpFetcherBackend(
                per_request_timeout=self.config.fetch_timeout)
        now = self._monotonic()
        if self._fetchers is None or now - self._fetchers_born > self.cache_ttl:
            self._fetchers = self._backend.get_fetchers()
            self._fetchers_born = now
        return self._fetchers

    def _trust_roots(self):
        from asn1crypto import x509 as asn1_x509

        if self._roots is None:
            self._roots = [asn1_x509.Certificate.load(der) for der in self.config.trust_roots]
        return self._roots

    def context(self, moment: datetime | None, material, *, fetching: bool):
        from pyhanko_certvalidator import ValidationContext

        return ValidationContext(
            trust_roots=list(self._trust_roots()), other_certs=list(material.certs),
            crls=list(material.crls), ocsps=list(material.ocsps), moment=moment,
            best_signature_time=moment, allow_fetching=fetching,
            fetchers=self.fetchers() if fetching else None,
            revocation_mode=self.config.revocation_mode,
            # revocation information issued after the signing time (LT signatures,
            # OCSP fetched at receipt) speaks for that time
            retroactive_revinfo=True)

    # -- checking --

    def check_certificate(self, der: bytes, *, intermediates: Iterable[bytes] = (),
                          key_usage: frozenset[str] = frozenset({"digital_signature"})
                          ) -> str | None:
        """Validate one end-entity certificate now (chain to a trust root, validity,
        revocation per the configured mode, key usage): None if valid, else why not.

        ``intermediates`` (DER) may complete the path to a trust root; they are never
        trusted themselves. Used for client-certificate login (R-AUTH-1)."""
        from asn1crypto import x509 as asn1_x509
        from pyhanko_certvalidator import CertificateValidator

        try:
            cert = asn1_x509.Certificate.load(der)
            others = tuple(asn1_x509.Certificate.load(d) for d in intermediates)
            for parsed in (cert, *others):
                parsed.native  # noqa: B018 - parse fully now, not inside the validator
        except ValueError as exc:
            return f"not a certificate: {exc}"
        context = self.context(None, Material(certs=others),
                               fetching=self.config.allow_fetching)
        validator = CertificateValidator(cert, validation_context=context)
        try:
            self._loop.run_until_complete(validator.async_validate_usage(set(key_usage)))
        except Exception as exc:  # noqa: BLE001 - certvalidator raises assorted errors
            return reason_of(exc)
        return None

    def check(self, pdf: str | Path | bytes, *, at: datetime | None = None,
              registry: RegistryLike | None = None, evidence: Evidence | None = None,
              allow_fetching: bool | None = None) -> SignatureReport:
        """Check every signature of ``pdf``. Never raises on bad input (a missing path is
        an ``InputError``)."""
        from archive.errors import InputError

        if at is not None and (at.tzinfo is None or at.utcoffset() is None):
            raise InputError(f"validation time {at.isoformat()} has no UTC offset")
        report = SignatureReport("malformed", checked_at=datetime.now(UTC),
                                 validation_time=at)
        if isinstance(pdf, bytes | bytearray):
            data = bytes(pdf)
        else:
            path = Path(pdf)
            report.source = str(path)
            try:
                size = path.stat().st_size
                if size > self.config.max_pdf_bytes:
                    report.size = size
                    report.problems.append(problem("too_large", size=size,
                                                   limit=self.config.max_pdf_bytes))
                    report.decide()
                    return report
                data = path.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read {path}: {exc.strerror}") from exc
        report.size, report.sha256 = len(data), sha256_hex(data)
        if len(data) > self.config.max_pdf_bytes:
            report.problems.append(problem("too_large", size=len(data),
                                           limit=self.config.max_pdf_bytes))
            report.decide()
            return report
        fetching = self.config.allow_fetching if allow_fetching is None else allow_fetching
        try:
            self._check(data, report, at, registry, evidence, fetching)
        except RecursionError:
            report.problems.append(problem("malformed", reason="objects nested too deeply "
                                           "(recursive structure)"))
        except Exception as exc:  # noqa: BLE001 - hostile input must never crash ingest
            log.debug("unreadable PDF", exc_info=True)
            report.problems.append(problem("malformed", reason=reason_of(exc)))
        report.decide()
        return report

    def _check(self, data: bytes, report: SignatureReport, at, registry, evidence,
               fetching: bool) -> None:
        from pyhanko.pdf_utils.reader import PdfFileReader

        head = data[:1024]
        if b"%PDF-" not in head:
            report.problems.append(problem("malformed", reason="no %PDF header"))
            return
        from pyhanko.pdf_utils.misc import PdfStrictReadError

        # Strict syntax first. Files with syntax defects or hybrid cross-references
        # (common from office suites) are read leniently: pyHanko's difference analysis
        # still judges every later revision, and the report says so.
        try:
            reader = PdfFileReader(BytesIO(data), strict=True)
            lenient = reader.xrefs.hybrid_xrefs_present
            reason = "hybrid cross-reference sections"
        except PdfStrictReadError as exc:
            lenient, reason = True, reason_of(exc)
        if lenient:
            reader = PdfFileReader(BytesIO(data), strict=False)
            report.problems.append(problem("lenient_syntax", reason=reason))
        if reader.encrypted:
            report.problems.append(problem("encrypted"))
            return
        embedded = list(reader.embedded_signatures)
        material = load_material(reader, evidence)
        for index, emb in enumerate(embedded):
            if _is_document_timestamp(emb):
                result, used = self._doc_timestamp(emb, index, material, at, fetching)
                report.document_timestamps.append(result)
            else:
                result, used = self._signature(emb, index, material, at, registry, fetching)
                report.signatures.append(result)
            report.evidence.merge(used)

    # -- one signature --

    def _signature(self, emb, index, material, at, registry,
                   fetching) -> tuple[SignatureResult, Evidence]:
        from pyhanko.sign.validation import KeyUsageConstraints
        from pyhanko.sign.validation.pdf_embedded import async_validate_pdf_signature

        res = SignatureResult(index, field_name_of(emb, index))
        now = at or datetime.now(UTC)
        try:
            cert = emb.signer_cert
            res.signer = certificate_info(cert)
            claimed_ts = claimed_timestamp_time(emb)
            sig_material = material.with_archival(emb)
        except Exception as exc:  # noqa: BLE001
            res.add("signature_malformed", reason=reason_of(exc))
            return res, Evidence()

        def validate(moment):
            signer_vc = self.context(moment, sig_material, fetching=fetching)
            ts_vc = self.context(at, sig_material, fetching=fetching)
            coro = async_validate_pdf_signature(
                emb, signer_validation_context=signer_vc, ts_validation_context=ts_vc,
                key_usage_settings=KeyUsageConstraints(key_usage=set()))
            return self._loop.run_until_complete(coro), signer_vc

        try:
            moment = claimed_ts or at
            status, vc = validate(moment)
            tst = status.timestamp_validity
            ts_ok = bool(tst and tst.intact and tst.valid and tst.trusted)
            if claimed_ts is not None and not ts_ok:
                moment = at  # the timestamp proves nothing: judge at the validation time
                status, vc = validate(moment)
        except RecursionError:
            res.add("signature_malformed", reason="objects nested too deeply")
            return res, Evidence()
        except Exception as exc:  # noqa: BLE001 - pyHanko's many errors on bad input
            log.debug("signature %s unreadable", res.field_name, exc_info=True)
            res.add("signature_malformed", reason=reason_of(exc))
            return res, Evidence()
        fill(res, status, vc, cert, now if moment is None else moment,
              self.config.revocation_mode)
        res.signing_time_proven = tst.timestamp if ts_ok else None
        res.validation_time = now
        if claimed_ts is not None and not ts_ok:
            res.add("timestamp_invalid", reason=timestamp_reason(tst))
        elif claimed_ts is None:
            res.add("no_timestamp", validation_time=now)
        if registry is not None:
            apply_registry(res, registry, now)
        return res, collect_evidence(status, vc, emb)

    def _doc_timestamp(self, emb, index, material, at,
                       fetching) -> tuple[SignatureResult, Evidence]:
        from pyhanko.sign.validation.pdf_embedded import async_validate_pdf_timestamp

        res = SignatureResult(index, field_name_of(emb, index), kind="document_timestamp")
        try:
            vc = self.context(at, material, fetching=fetching)
            status = self._loop.run_until_complete(
                async_validate_pdf_timestamp(emb, validation_context=vc))
        except Exception as exc:  # noqa: BLE001
            res.add("document_timestamp_invalid", reason=reason_of(exc))
            return res, Evidence()
        res.intact, res.valid, res.trusted = status.intact, status.valid, status.trusted
        res.timestamp = TimestampInfo(True, status.timestamp, subject_name(status.signing_cert),
                                      status.intact and status.valid, status.trusted)
        res.signer = certificate_info(status.signing_cert)
        res.coverage = coverage_name(status)
        res.modification_level = level_name(status)
        if not status.trusted:
            res.add("document_timestamp_invalid",
                    reason=indication(status) or "not intact or not valid")
        return res, collect_evidence(status, vc, emb)


def _is_document_timestamp(emb) -> bool:
    try:
        return (str(emb.sig_object_type) == "/DocTimeStamp"
                or str(emb.sig_object.get("/SubFilter", "")) == "/ETSI.RFC3161")
    except Exception:  # noqa: BLE001 - unreadable: validated (and refused) as a signature
        return False


# ---- module API ----------------------------------------------------------------------


def check_pdf(pdf: str | Path | bytes, ctx: TrustConfig, *, at: datetime | None = None,
              registry: RegistryLike | None = None,
              validator: Validator | None = None) -> SignatureReport:
    """Check the signatures of one PDF. Pass a shared ``validator`` for bulk work."""
    if validator is not None:
        return validator.check(pdf, at=at, registry=registry)
    with Validator(ctx) as own:
        return own.check(pdf, at=at, registry=registry)


def revalidate_offline(pdf: str | Path | bytes, evidence: Evidence | dict,
                       trust_roots: Iterable[bytes], at: datetime | None = None, *,
                       revocation_mode: str = "require",
                       registry: RegistryLike | None = None) -> SignatureReport:
    """Re-validate from stored material only (no network): the PDF's own DSS and CMS
    content plus ``evidence`` (R-TS-1). ``at`` is typically the archive timestamp time."""
    if isinstance(evidence, dict):
        evidence = Evidence.from_dict(evidence)
    config = TrustConfig(trust_roots=tuple(trust_roots), revocation_mode=revocation_mode,
                         allow_fetching=False)
    with Validator(config) as validator:
        return validator.check(pdf, at=at, registry=registry, evidence=evidence,
                               allow_fetching=False)
