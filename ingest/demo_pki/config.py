"""What a simulated PKI holds (a ``Profile``) and its certomancer configuration.

Every key is generated here into the PKI's folder: no private key is ever
committed. Validity periods and revocation dates are relative to the moment of
generation, so the PKI never ages: an "expired" certificate is always expired, a
"revoked" one was always revoked a month ago (R-SIG-2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

TSA = "tsa"  # time-stamping service label
OCSP = "interm"  # OCSP responder for the issuing CA
CONFIG_NAME = "certomancer.yml"

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


@dataclass(frozen=True)
class Profile:
    """One simulated PKI: its certomancer architecture name (part of every URL), how its
    names are marked, and its certificate holders."""

    arch: str
    mark: str  # in the name of every CA and service certificate: "TEST PKI", "DEMO"
    tag: str  # in signatures' reason and location: "TEST", "DEMO"
    holders: tuple[Holder, ...]
    person_organisation: str  # organizationName of personal certificates
    province: str  # localityName of organisation certificates
    untrusted_root: bool = False  # also a second root CA that nobody trusts (root2)

    @property
    def crl_repos(self) -> tuple[str, ...]:
        return ("root", "interm", "root2") if self.untrusted_root else ("root", "interm")

    @property
    def infra_certs(self) -> tuple[str, ...]:
        infra = ("root", "interm", "ocsp", "tsa")
        return (*infra, "root2") if self.untrusted_root else infra


# The DEMO archive's PKI: the two DEMO agencies' seals and three signers. The citizen
# ids start with 099, which is no province code: they cannot be anyone's real number.
DEMO = Profile(
    arch="demopki", mark="DEMO", tag="DEMO",
    person_organisation="Đảng Cộng sản Việt Nam (DEMO)", province="Tỉnh ủy (DEMO)",
    holders=(
        Holder("an", "person", "Nguyễn Văn An (DEMO)", "099000000001",
               title="Chánh Văn phòng (DEMO)"),
        Holder("binh", "person", "Trần Thị Bình (DEMO)", "099000000002",
               title="Phó Chánh Văn phòng (DEMO)"),
        Holder("cuong", "person", "Lê Văn Cường (DEMO)", "099000000003",
               title="Trưởng ban (DEMO)"),
        Holder("org_vptu", "org", "Văn phòng Tỉnh ủy (DEMO)", "000.00.00.H41"),
        Holder("org_btctu", "org", "Ban Tổ chức Tỉnh ủy (DEMO)", "000.00.01.H41"),
    ),
)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _validity(start: datetime, end: datetime) -> dict:
    return {"valid-from": _iso(start), "valid-to": _iso(end)}


# Keys of the certificate issuers. certomancer issues the certificates afresh whenever a
# PKI is loaded; with RSA (PKCS#1 v1.5 signatures are deterministic) it issues the very
# same bytes each time, so fingerprints bound in the archive's registry stay true when
# the DEMO PKI is opened again. ECDSA signatures are randomised: every load would differ.
ISSUER_KEYS = ("root", "interm", "root2")


def generate_keys(key_dir: Path, labels) -> None:
    """One fresh key per label, PEM (PKCS#8, unencrypted, mode 0600): RSA-2048 for the
    issuers (``ISSUER_KEYS``), ECDSA P-256 for everyone else."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)
    for label in labels:
        if label in ISSUER_KEYS:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(key_dir / f"{label}.key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)


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


def _entity(holder: Holder, profile: Profile) -> dict:
    if holder.kind == "person":
        entity = {"common-name": holder.name, "serial-number": holder.identifier,
                  "organization-name": profile.person_organisation}
        if holder.title:
            entity["title"] = holder.title
        return entity
    return {"common-name": holder.name, "organization-name": holder.name,
            "serial-number": holder.identifier, "locality-name": profile.province}


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


def _root(label: str, now: datetime, ca_usage: dict) -> dict:
    year = timedelta(days=365)
    return {"subject": label, "subject-key": label, "issuer": label, "authority-key": label,
            "validity": _validity(now - 5 * year, now + 20 * year),
            "extensions": [{"id": "basic_constraints", "critical": True,
                            "value": {"ca": True}}, ca_usage]}


def build_config(url_prefix: str, now: datetime, profile: Profile,
                 key_subdir: str = "keys") -> dict:
    """The certomancer configuration (as a dict) for a PKI served at ``url_prefix``.

    Key paths are relative to ``key_subdir`` under the key search folder.
    """
    year = timedelta(days=365)
    mark = profile.mark
    entities = {
        "root": {"common-name": f"Root CA ({mark}, not for real use)"},
        "interm": {"common-name": f"Issuing CA ({mark})"},
        "ocsp": {"common-name": f"OCSP responder ({mark})"},
        "tsa": {"common-name": f"Time Stamping Authority ({mark})"},
    }
    if profile.untrusted_root:
        entities["root2"] = {"common-name": f"Untrusted Root CA ({mark})",
                             "organization-name": "Untrusted Test Authority"}
    for holder in profile.holders:
        if not holder.entity:
            entities[holder.label] = _entity(holder, profile)
    ca_usage = _key_usage("digital_signature", "key_cert_sign", "crl_sign")
    certs = {
        "root": _root("root", now, ca_usage),
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
    if profile.untrusted_root:
        certs["root2"] = _root("root2", now, ca_usage)
    for holder in profile.holders:
        certs[holder.label] = _holder_cert(holder, now)
    keys = {label: {"path": f"{label}.key.pem"} for label in certs}
    return {
        "external-url-prefix": url_prefix,
        "keysets": {profile.arch: {"path-prefix": key_subdir, "keys": keys}},
        "pki-architectures": {profile.arch: {
            "keyset": profile.arch,
            "entity-defaults": {"country-name": "VN"},
            "entities": entities,
            "certs": certs,
            "services": {
                "ocsp": {OCSP: {"for-issuer": "interm", "responder-cert": "ocsp",
                                "signing-key": "ocsp"}},
                # CRLs re-issued every 10 minutes: a revocation a day old is always listed
                "crl-repo": {repo: {"for-issuer": repo, "signing-key": repo,
                                    "simulated-update-schedule": "PT10M"}
                             for repo in profile.crl_repos},
                "cert-repo": {"root": {"for-issuer": "root", "publish-issued-certs": True},
                              "interm": {"for-issuer": "interm",
                                         "publish-issued-certs": True}},
                "time-stamping": {TSA: {"signing-key": "tsa", "signing-cert": "tsa",
                                        "certs-to-embed": ["interm"]}},
            },
        }},
    }


def write_config(folder: Path, url_prefix: str, profile: Profile,
                 now: datetime | None = None) -> Path:
    """Generate the keys and ``certomancer.yml`` in ``folder``; return the config path."""
    import yaml

    now = (now or datetime.now(UTC)).replace(microsecond=0)
    config = build_config(url_prefix, now, profile)
    generate_keys(folder / "keys", config["keysets"][profile.arch]["keys"])
    path = folder / CONFIG_NAME
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    return path
