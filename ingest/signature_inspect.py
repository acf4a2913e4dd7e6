"""Reading what a signed PDF carries: certificate details, key usage, crypto strength,
and the validation material embedded in it (DSS, Adobe revocation archival) or stored
as evidence (R-SIG-2, R-TS-1)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

from ingest.signature_report import CertificateInfo, Evidence

WEAK_DIGESTS = frozenset({"md2", "md5", "sha1"})
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256


@dataclass(frozen=True)
class Material:
    """Certificates, OCSP responses and CRLs (asn1crypto objects) known before fetching."""

    certs: tuple = ()
    ocsps: tuple = ()
    crls: tuple = ()
    notes: list[str] = field(default_factory=list)

    def with_archival(self, emb) -> Material:
        """Plus the signature's own adbe-revocationInfoArchival attribute, if any."""
        from pyhanko.sign.general import find_unique_cms_attribute

        try:
            archival = find_unique_cms_attribute(emb.signer_info["signed_attrs"],
                                                 "adobe_revocation_info_archival")
        except Exception:  # noqa: BLE001 - absent (or unreadable): nothing to add
            return self
        crls = tuple(archival["crl"]) if archival["crl"].native else ()
        ocsps = tuple(archival["ocsp"]) if archival["ocsp"].native else ()
        return replace(self, crls=self.crls + crls, ocsps=self.ocsps + ocsps)


def load_material(reader, evidence: Evidence | None) -> Material:
    """The document's DSS plus stored ``evidence``; an unreadable DSS is ignored (noted)."""
    from asn1crypto import crl as asn1_crl
    from asn1crypto import ocsp as asn1_ocsp
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.misc import PdfError
    from pyhanko.sign.validation.dss import DocumentSecurityStore
    from pyhanko.sign.validation.errors import NoDSSFoundError

    certs: list = []
    ocsps: list = []
    crls: list = []
    notes: list[str] = []
    try:
        dss = DocumentSecurityStore.read_dss(reader)
        certs.extend(dss.load_certs())
        for ref in dss.ocsps:
            ocsps.append(asn1_ocsp.OCSPResponse.load(ref.get_object().data))
        for ref in dss.crls:
            crls.append(asn1_crl.CertificateList.load(ref.get_object().data))
    except NoDSSFoundError:
        pass
    except (PdfError, ValueError, KeyError, TypeError, AttributeError) as exc:
        notes.append(f"unreadable DSS ignored: {type(exc).__name__}")
    if evidence is not None:
        certs.extend(asn1_x509.Certificate.load(d) for d in evidence.certificates)
        ocsps.extend(asn1_ocsp.OCSPResponse.load(d) for d in evidence.ocsp_responses)
        crls.extend(asn1_crl.CertificateList.load(d) for d in evidence.crls)
    return Material(tuple(certs), tuple(ocsps), tuple(crls), notes)


def certificate_info(cert) -> CertificateInfo:
    """Subject, issuer, serial, fingerprint, validity, key and PEM of an asn1crypto cert."""
    from asn1crypto import pem

    der = cert.dump()
    subject = cert.subject.native
    key = cert.public_key
    try:
        key_size = key.bit_size
    except Exception:  # noqa: BLE001 - unusual key types have no size
        key_size = None
    validity = cert["tbs_certificate"]["validity"]
    return CertificateInfo(
        subject=cert.subject.human_friendly,
        common_name=_first(subject.get("common_name")),
        organisation=_first(subject.get("organization_name")),
        serial_number=_first(subject.get("serial_number")),
        issuer=cert.issuer.human_friendly,
        serial=format(cert.serial_number, "x"),
        fingerprint=hashlib.sha256(der).hexdigest(),
        not_before=validity["not_before"].native,
        not_after=validity["not_after"].native,
        key_algorithm=key.algorithm,
        key_size=key_size,
        pem=pem.armor("CERTIFICATE", der).decode("ascii"),
    )


def _first(value):
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def key_usage(cert) -> dict:
    usages = set(cert.key_usage_value.native) if cert.key_usage_value is not None else set()
    extended = cert.extended_key_usage_value
    return {"non_repudiation": "non_repudiation" in usages,
            "digital_signature": "digital_signature" in usages,
            "declared": sorted(usages),
            "extended": sorted(extended.native) if extended is not None else []}


def crypto_strength(cert, md_algorithm: str | None, mechanism: str | None) -> dict:
    """Digest, mechanism and key size, with the reasons they are weak (if they are)."""
    key = cert.public_key
    algorithm = key.algorithm
    try:
        bits = key.bit_size
    except Exception:  # noqa: BLE001
        bits = None
    reasons = []
    digest = (md_algorithm or "").lower()
    if digest in WEAK_DIGESTS:
        reasons.append(f"digest algorithm {digest}")
    if (not reasons and mechanism
            and any(w in mechanism.lower() for w in ("md5", "sha1"))):
        reasons.append(f"signature mechanism {mechanism}")
    if algorithm in ("rsa", "rsassa_pss", "dsa") and bits is not None and bits < MIN_RSA_BITS:
        reasons.append(f"{algorithm.upper()} key of {bits} bits (at least {MIN_RSA_BITS})")
    if algorithm == "ec" and bits is not None and bits < MIN_EC_BITS:
        reasons.append(f"EC key of {bits} bits (at least {MIN_EC_BITS})")
    return {"digest": md_algorithm, "mechanism": mechanism, "key_algorithm": algorithm,
            "key_size": bits, "weak": bool(reasons), "weak_reasons": reasons}


def revocation_source(cert, vc) -> str | None:
    """"ocsp" or "crl" when the context holds such information about ``cert``."""
    serial = cert.serial_number
    issuer = cert.issuer
    try:
        for resp in vc.ocsps:
            basic = resp["response_bytes"]["response"].parsed
            for single in basic["tbs_response_data"]["responses"]:
                if single["cert_id"]["serial_number"].native == serial:
                    return "ocsp"
        for crl in vc.crls:
            if crl.issuer == issuer:
                return "crl"
    except Exception:  # noqa: BLE001, S110 - a malformed response tells nothing
        pass
    return None
