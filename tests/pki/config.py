"""The test PKI's catalogue: who holds a certificate, and every special case.

The machinery (keys generated at test time, never committed; validity and revocation
relative to the moment of generation) is ``ingest.demo_pki.config`` (R-SIG-2).
"""

from __future__ import annotations

from ingest.demo_pki.config import (  # noqa: F401 - re-exported for the tests
    BACKDATE,
    OCSP,
    REVOKED_AGO,
    REVOKED_LATER_AGO,
    TSA,
    Holder,
    Profile,
    build_config,
)

ARCH = "testpki"
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

TEST = Profile(arch=ARCH, mark="TEST PKI", tag="TEST", holders=HOLDERS,
               person_organisation="Đảng Cộng sản Việt Nam (TEST)", province=PROVINCE,
               untrusted_root=True)

CRL_REPOS = TEST.crl_repos
INFRA_CERTS = TEST.infra_certs
