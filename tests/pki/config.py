"""The test PKI's catalogue and its certomancer configuration, generated at test time.

Every key is generated here (ECDSA P-256) into a temporary folder: no private key is
ever committed. Validity periods and revocation dates are relative to the moment of
generation, so the PKI never ages: the "expired" certificate is always expired, the
"revoked" one was always revoked a month ago (R-SIG-2).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

ARCH = "testpki"
TSA = "tsa"  # time-stamping service label
OCSP = "interm"  # OCSP responder for the issuing CA
CRL_REPOS = ("root", "interm", "root2")

# How far the back-dated TSA's clock runs behind, and when "revoked_later" was revoked:
# a signature timestamped by the back-dated TSA provably precedes that revocation
# (R-SIG-3: signatures made before revocation stay valid when a timestamp proves it).
BACKDATE = timedelta(days=2)
REVOKED_LATER_AGO = timedelta(days=1)
REVOKED_AGO = timedelta(days=30)


@dataclass(frozen=True)
class Holder:
    """A certificate holder: a person or an organisation (whose certificate is its seal)."""

    label: str  # certificate label (also the key label)
    kind: str  # "person" | "org"
    name: str
    identifier: str  # person: 12-digit citizen id; org: organisation code
    entity: str = ""  # entity label when several certificates share one subject
    case: str = "good"  # good | revoked | revoked_later | expired | not_yet_valid
    #                     | untrusted | no_non_repudiation
    title: str = ""

    @property
    def subject(self) -> str:
        return self.entity or self.label


PROVINCE = "Tỉnh ủy (TEST PKI)"

HOLDERS: tuple[Holder, ...] = (
    Holder("an", "person", "Nguyễn Văn An", "001085012345", title="Chủ tịch"),
    Holder("binh", "person", "Trần Thị Bình", "001190023456", title="Chánh Văn phòng"),
    Holder("cuong", "person", "Lê Văn Cường", "001078034567", title="Phó Trưởng ban"),
    Holder("org_vptu", "org", "Văn phòng Tỉnh ủy", "000.00.00.H41"),
    Holder("org_btctu", "org", "Ban Tổ chức Tỉnh ủy", "000.00.01.H41"),
    # special cases
    Holder("org_vptu_revoked", "org", "Văn phòng Tỉnh ủy", "000.00.00.H41",
           entity="org_vptu", case="revoked"),
    Holder("revoked", "person", "Phạm Văn Dũng", "001082045678", case="revoked"),
    Holder("revoked_later", "person", "Hoàng Thị Em", "001195056789", case="revoked_later"),
    Holder("expired", "person", "Vũ Văn Phúc", "001070067890", case="expired"),
    Holder("not_yet_valid", "person", "Đặng Thị Giang", "001199078901",
           case="not_yet_valid"),
    Holder("untrusted", "person", "Bùi Văn Hải", "001088089012", case="untrusted"),
    Holder("no_non_repudiation", "person", "Đỗ Thị Hương", "001192090123",
           case="no_non_repudiation"),
)

INFRA_CERTS = ("root", "interm", "ocsp", "tsa", "root2")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _validity(start: datetime, end: datetime) -> dict:
    return {"valid-from": _iso(start), "valid-to": _iso(end)}


def generate_keys(key_dir: Path, labels) -> None:
    """One fresh ECDSA P-256 key per label, PEM (PKCS#8, unencrypted) in ``key_dir``."""
    key_dir.mkdir(parents=True, exist_ok=True)
    for label in labels:
        key = ec.generate_private_key(ec.SECP256R1())
        (key_dir / f"{label}.key.pem").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))


def _key_usage(*usages: str) -> dict:
    return {"id": "key_usage", "critical": True,
            "smart-value": {"schema": "key-usage", "params": list(usages)}}


def _crl_dp(*repos: str) -> dict:
    return {"id": "crl_distribution_points",
            "smart-value": {"schema": "crl-dist-url", "params": {"crl-repo-names": list(repos)}}}


def _aia_ocsp(responder: str) -> dict:
    return {"id": "authority_information_access",
            "smart-value": {"schema": "aia-urls",
                            "params": {"ocsp-responder-names": [responder]}}}


def _entity(holder: Holder) -> dict:
    if holder.kind == "person":
        entity = {"common-name": holder.name, "serial-number": holder.identifier,
                  "organization-name": "Đảng Cộng sản Việt Nam (TEST)"}
        if holder.title:
            entity["title"] = holder.title
        return entity
    return {"common-name": holder.name, "organization-name": holder.name,
            "serial-number": holder.identifier, "locality-name": PROVINCE}


def _holder_cert(holder: Holder, now: datetime) -> dict:
    year = timedelta(days=365)
    start, end = now - year, now + 2 * year
    usages = ["digital_signature", "non_repudiation"]
    issuer, crl_repo = "interm", "interm"
    revocation = None
    if holder.case == "revoked":
        revocation = {"revoked-since": _iso(now - REVOKED_AGO), "reason": "key_compromise"}
    elif holder.case == "revoked_later":
        revocation = {"revoked-since": _iso(now - REVOKED_LATER_AGO),
                      "reason": "affiliation_changed"}
    elif holder.case == "expired":
        start, end = now - 3 * year, now - year
    elif holder.case == "not_yet_valid":
        start = now + timedelta(days=30)
    elif holder.case == "untrusted":
        issuer, crl_repo = "root2", "root2"
    elif holder.case == "no_non_repudiation":
        usages = ["digital_signature"]
    extensions = [_key_usage(*usages), _crl_dp(crl_repo)]
    if issuer == "interm":
        extensions.append(_aia_ocsp(OCSP))
    cert = {"subject": holder.subject, "subject-key": holder.label, "issuer": issuer,
            "validity": _validity(start, end), "extensions": extensions}
    if revocation:
        cert["revocation"] = revocation
    return cert


def build_config(url_prefix: str, now: datetime, key_subdir: str = "keys") -> dict:
    """The certomancer configuration (as a dict) for a PKI served at ``url_prefix``.

    Key paths are relative to ``key_subdir`` under the key search folder.
    """
    year = timedelta(days=365)
    entities = {
        "root": {"common-name": "Root CA (TEST PKI, not for real use)"},
        "interm": {"common-name": "Issuing CA (TEST PKI)"},
        "ocsp": {"common-name": "OCSP responder (TEST PKI)"},
        "tsa": {"common-name": "Time Stamping Authority (TEST PKI)"},
        "root2": {"common-name": "Untrusted Root CA (TEST PKI)",
                  "organization-name": "Untrusted Test Authority"},
    }
    for holder in HOLDERS:
        if not holder.entity:
            entities[holder.label] = _entity(holder)
    ca_usage = _key_usage("digital_signature", "key_cert_sign", "crl_sign")
    certs = {
        "root": {"subject": "root", "subject-key": "root", "issuer": "root",
                 "authority-key": "root", "validity": _validity(now - 5 * year, now + 20 * year),
                 "extensions": [{"id": "basic_constraints", "critical": True,
                                 "value": {"ca": True}}, ca_usage]},
        "root2": {"subject": "root2", "subject-key": "root2", "issuer": "root2",
                  "authority-key": "root2",
                  "validity": _validity(now - 5 * year, now + 20 * year),
                  "extensions": [{"id": "basic_constraints", "critical": True,
                                  "value": {"ca": True}}, ca_usage]},
        "interm": {"subject": "interm", "subject-key": "interm", "issuer": "root",
                   "validity": _validity(now - 4 * year, now + 10 * year),
                   "extensions": [{"id": "basic_constraints", "critical": True,
                                   "value": {"ca": True, "path-len-constraint": 0}},
                                  ca_usage, _crl_dp("root")]},
        "ocsp": {"subject": "ocsp", "subject-key": "ocsp", "issuer": "interm",
                 "validity": _validity(now - 4 * year, now + 10 * year),
                 "extensions": [_key_usage("digital_signature"),
                                {"id": "extended_key_usage", "critical": True,
                                 "value": ["ocsp_signing"]},
                                {"id": "ocsp_no_check"}]},
        "tsa": {"subject": "tsa", "subject-key": "tsa", "issuer": "interm",
                "validity": _validity(now - 4 * year, now + 10 * year),
                "extensions": [_key_usage("digital_signature"),
                               {"id": "extended_key_usage", "critical": True,
                                "value": ["time_stamping"]},
                               _crl_dp("interm"), _aia_ocsp(OCSP)]},
    }
    for holder in HOLDERS:
        certs[holder.label] = _holder_cert(holder, now)
    keys = {label: {"path": f"{label}.key.pem"} for label in certs}
    return {
        "external-url-prefix": url_prefix,
        "keysets": {ARCH: {"path-prefix": key_subdir, "keys": keys}},
        "pki-architectures": {ARCH: {
            "keyset": ARCH,
            "entity-defaults": {"country-name": "VN"},
            "entities": entities,
            "certs": certs,
            "services": {
                "ocsp": {OCSP: {"for-issuer": "interm", "responder-cert": "ocsp",
                                "signing-key": "ocsp"}},
                # CRLs re-issued every 10 minutes: a revocation a day old is always listed
                "crl-repo": {repo: {"for-issuer": repo, "signing-key": repo,
                                    "simulated-update-schedule": "PT10M"}
                             for repo in CRL_REPOS},
                "cert-repo": {"root": {"for-issuer": "root", "publish-issued-certs": True},
                              "interm": {"for-issuer": "interm",
                                         "publish-issued-certs": True}},
                "time-stamping": {TSA: {"signing-key": "tsa", "signing-cert": "tsa",
                                        "certs-to-embed": ["interm"]}},
            },
        }},
    }


def write_config(folder: Path, url_prefix: str, now: datetime | None = None) -> Path:
    """Generate the keys and ``certomancer.yml`` in ``folder``; return the config path."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    config = build_config(url_prefix, now)
    generate_keys(folder / "keys", config["keysets"][ARCH]["keys"])
    path = folder / "certomancer.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    return path
