"""The certificate registry and signing authority (R-ID-1, R-SIG-1, R-SIG-3), on SQLite
and PostgreSQL, and its CLI (`archive agents bind-cert|revoke-cert|grant-authority|
end-authority|certs`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier
from sqlalchemy import select

from archive import audit
from archive.agents import register_agent
from archive.certificates import (
    Binding,
    CatalogRegistry,
    CertificateAlreadyBound,
    CertificateAlreadyRevoked,
    bind_certificate,
    end_signing_authority,
    fingerprint_of,
    grant_signing_authority,
    list_authorities,
    list_certificates,
    lookup,
    normalise_fingerprint,
    parse_instant,
    revoke_certificate,
    subject_kind,
)
from archive.clock import FixedClock
from archive.db import Catalog
from archive.errors import InputError, NotFound
from archive.models import AuditEntry, Certificate, SigningAuthority
from archive.principal import Principal
from archive.settings import load_settings
from tests.conftest import ORG, ORG2

HANOI = timezone(timedelta(hours=7))
NOW = datetime(2025, 6, 1, 3, 0, tzinfo=UTC)
PERSON = "001085012345"
PERSON2 = "001085099999"
OPERATOR = Principal.system("test")

# ---- a self-made test certificate ---------------------------------------------------

_CA_KEY = ec.generate_private_key(ec.SECP256R1())
_CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA"),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")])
_QC_STATEMENTS = ObjectIdentifier("1.3.6.1.5.5.7.1.3")


def _der(tag: int, body: bytes) -> bytes:
    assert len(body) < 128
    return bytes([tag, len(body)]) + body


def _qc_statements(qct: int) -> bytes:
    """QCStatements { QCStatement { id-etsi-qcs-QcType, QcType { 0.4.0.1862.1.6.qct } } }."""
    qc_type_oid = bytes.fromhex("04008e460106")
    statement = _der(0x06, qc_type_oid) + _der(0x30, _der(0x06, qc_type_oid + bytes([qct])))
    return _der(0x30, _der(0x30, statement))


_QC_DER = {"esign": _qc_statements(1), "eseal": _qc_statements(2)}


def make_cert(cn: str = "Signer", *, not_before: datetime | None = None,
              not_after: datetime | None = None, given_name: str | None = None,
              qc_type: str | None = None, ca: bool = False,
              key_usage: str = "sign") -> x509.Certificate:
    """A certificate issued by the test CA, valid around ``NOW`` unless told otherwise."""
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn),
             x509.NameAttribute(NameOID.COUNTRY_NAME, "VN")]
    if given_name:
        attrs.append(x509.NameAttribute(NameOID.GIVEN_NAME, given_name))
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name(attrs)).issuer_name(_CA_NAME)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - timedelta(days=365))
               .not_valid_after(not_after or NOW + timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    sign, enc = key_usage == "sign", key_usage == "encrypt"
    builder = builder.add_extension(x509.KeyUsage(
        digital_signature=sign, content_commitment=sign, key_encipherment=enc,
        data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
        encipher_only=False, decipher_only=False), critical=True)
    if qc_type:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(_QC_STATEMENTS, _QC_DER[qc_type]), critical=False)
    return builder.sign(_CA_KEY, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


# ---- fixtures -----------------------------------------------------------------------


@pytest.fixture
def settings():
    return load_settings(environ={})


@pytest.fixture
def catalog(catalog_engine, settings):
    """A migrated catalog (SQLite, then PostgreSQL) with two organisations, two persons."""
    catalog = Catalog(str(catalog_engine.url), engine=catalog_engine)
    clock = FixedClock(NOW - timedelta(days=400))
    with catalog.unit_of_work() as s:
        for kind, ident, name in (("organisation", ORG, "Văn phòng Tỉnh ủy"),
                                  ("organisation", ORG2, "Ban Tổ chức Tỉnh ủy"),
                                  ("person", PERSON, "Trần Thị Bình"),
                                  ("person", PERSON2, "Lê Văn Cường")):
            register_agent(s, settings, OPERATOR, kind=kind, identifier=ident, name=name,
                           clock=clock)
    return catalog


def bind(catalog, settings, agent, cert, clock=None):
    with catalog.unit_of_work() as s:
        result = bind_certificate(s, settings, OPERATOR, agent, pem(cert),
                                  clock or FixedClock(NOW))
        return result.certificate.fingerprint, result.warnings


def look(catalog, fingerprint, at) -> Binding | None:
    return CatalogRegistry(catalog).lookup(fingerprint, at)


def actions(catalog) -> list[str]:
    with catalog.unit_of_work() as s:
        return list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


# ---- binding ------------------------------------------------------------------------


def test_bind_stores_what_the_certificate_says(catalog, settings):
    cert = make_cert("Trần Thị Bình")
    fingerprint, warnings = bind(catalog, settings, PERSON, cert)
    assert warnings == []
    assert fingerprint == fingerprint_of(cert) == cert.fingerprint(hashes.SHA256()).hex()
    with catalog.unit_of_work() as s:
        row = s.scalar(select(Certificate))
        assert row.agent.identifier == PERSON
        assert row.subject == "C=VN,CN=Trần Thị Bình"
        assert row.issuer == "C=VN,CN=Test CA"
        assert row.serial == format(cert.serial_number, "x")
        assert row.not_before == cert.not_valid_before_utc
        assert row.not_after == cert.not_valid_after_utc
        assert row.not_after.tzinfo is not None
        assert row.status == "active" and row.revoked_at is None
        assert row.bound_at == NOW and row.bound_by == str(OPERATOR)
        assert x509.load_pem_x509_certificate(row.pem.encode()) == cert
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert (entry.action, entry.target) == ("certificate.bind", f"certificate:{fingerprint}")
        assert entry.detail["agent"] == PERSON
        assert audit.verify(s).ok


def test_der_certificate_is_accepted(catalog, settings):
    cert = make_cert()
    with catalog.unit_of_work() as s:
        row = bind_certificate(s, settings, OPERATOR, ORG,
                               cert.public_bytes(serialization.Encoding.DER),
                               FixedClock(NOW)).certificate
        assert row.fingerprint == fingerprint_of(cert)


@pytest.mark.parametrize("data, words", [
    (b"hello", "not a certificate"),
    (b"-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
     "not a certificate"),
    (ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), "not a certificate"),
    (pem(make_cert()) + pem(make_cert()), "holds 2 certificates"),
    (pem(make_cert(ca=True)), "CA certificate"),
], ids=["garbage", "bad-pem", "private-key", "two-certs", "ca-cert"])
def test_bind_refuses_what_is_not_one_signer_certificate(catalog, settings, data, words):
    with pytest.raises(InputError, match=words), catalog.unit_of_work() as s:
        bind_certificate(s, settings, OPERATOR, PERSON, data, FixedClock(NOW))
    assert "certificate.bind" not in actions(catalog)


def test_a_certificate_belongs_to_exactly_one_agent(catalog, settings):
    cert = make_cert()
    fingerprint, _ = bind(catalog, settings, PERSON, cert)
    for agent in (PERSON, PERSON2):
        with pytest.raises(CertificateAlreadyBound, match=f"already bound to agent {PERSON}"):
            bind(catalog, settings, agent, cert)
    # Revocation does not free it: it stays bound to its agent for good.
    with catalog.unit_of_work() as s:
        revoke_certificate(s, settings, OPERATOR, fingerprint, NOW, "key lost",
                           FixedClock(NOW))
    with pytest.raises(CertificateAlreadyBound):
        bind(catalog, settings, PERSON2, cert)
    assert actions(catalog).count("certificate.bind") == 1


def test_unknown_agent_is_refused(catalog, settings):
    with pytest.raises(NotFound, match="no agent with identifier '999999999999'"):
        bind(catalog, settings, "999999999999", make_cert())


def test_expired_and_odd_certificates_bind_with_warnings(catalog, settings):
    expired = make_cert(not_before=NOW - timedelta(days=800), not_after=NOW - timedelta(days=1))
    _, warnings = bind(catalog, settings, PERSON, expired)
    assert len(warnings) == 1 and "expired" in warnings[0]
    future = make_cert(not_before=NOW + timedelta(days=3))
    _, warnings = bind(catalog, settings, PERSON, future)
    assert "not valid before" in warnings[0]
    encrypt_only = make_cert(key_usage="encrypt")
    _, warnings = bind(catalog, settings, ORG, encrypt_only)
    assert "digitalSignature" in warnings[0]


@pytest.mark.parametrize("cert_kw, agent, words", [
    ({"qc_type": "esign"}, ORG, "natural person but agent 000.00.00.H41 is an organisation"),
    ({"given_name": "Bình"}, ORG, "natural person"),
    ({"qc_type": "eseal"}, PERSON, "an organisation but agent 001085012345 is a natural"),
], ids=["esign-to-org", "given-name-to-org", "eseal-to-person"])
def test_kind_mismatch_is_refused_when_the_certificate_says_so(catalog, settings, cert_kw,
                                                               agent, words):
    with pytest.raises(InputError, match=words):
        bind(catalog, settings, agent, make_cert(**cert_kw))


def test_names_are_not_guessed_from():
    # A common name that "looks like" an organisation says nothing: no refusal.
    assert subject_kind(make_cert("Văn phòng Tỉnh ủy")) is None
    assert subject_kind(make_cert("Nguyễn Văn A")) is None
    assert subject_kind(make_cert(qc_type="esign")) == "person"
    assert subject_kind(make_cert(qc_type="eseal")) == "organisation"


def test_matching_kinds_bind(catalog, settings):
    bind(catalog, settings, PERSON, make_cert(qc_type="esign", given_name="Bình"))
    bind(catalog, settings, ORG, make_cert(qc_type="eseal"))
    bind(catalog, settings, ORG, make_cert("Trần Thị Bình"))  # no statement: allowed


# ---- revocation ---------------------------------------------------------------------


def test_revocation_is_recorded_never_deleted_and_not_repeated(catalog, settings):
    fingerprint, _ = bind(catalog, settings, PERSON, make_cert())
    when = datetime(2025, 5, 20, 9, 30, tzinfo=HANOI)  # in the past: the CA's date
    with catalog.unit_of_work() as s:
        revoke_certificate(s, settings, OPERATOR, fingerprint.upper(), when,
                           "key compromise reported", FixedClock(NOW))
    with catalog.unit_of_work() as s:
        row = s.scalar(select(Certificate))
        assert row.status == "revoked"
        assert row.revoked_at == when and row.revoked_at.tzinfo == UTC
        assert row.revocation_reason == "key compromise reported"
    with pytest.raises(CertificateAlreadyRevoked), catalog.unit_of_work() as s:
        revoke_certificate(s, settings, OPERATOR, fingerprint, NOW, "again", FixedClock(NOW))
    with catalog.unit_of_work() as s:
        assert s.scalar(select(Certificate)).revoked_at == when  # not moved
        assert len(list(s.scalars(select(Certificate)))) == 1
    assert actions(catalog).count("certificate.revoke") == 1


def test_revocation_refusals(catalog, settings):
    fingerprint, _ = bind(catalog, settings, PERSON, make_cert())
    cases = [
        (fingerprint, datetime(2025, 5, 1, 10, 0), "x", InputError, "naive datetime"),
        (fingerprint, NOW + timedelta(hours=1), "x", InputError, "in the future"),
        (fingerprint, NOW, "  ", InputError, "reason is required"),
        ("ab" * 32, NOW, "x", NotFound, "no certificate with fingerprint"),
        ("not-hex", NOW, "x", InputError, "not a SHA-256"),
    ]
    for fp, at, reason, error, words in cases:
        with pytest.raises(error, match=words), catalog.unit_of_work() as s:
            revoke_certificate(s, settings, OPERATOR, fp, at, reason, FixedClock(NOW))


# ---- lookup: later validations reflect what was recorded (R-SIG-3) ------------------


def test_lookup_unknown_certificate_is_none(catalog):
    assert look(catalog, "00" * 32, NOW) is None
    assert look(catalog, "garbage", NOW) is None


def test_lookup_organisation_is_authorised_for_itself(catalog, settings):
    fingerprint, _ = bind(catalog, settings, ORG, make_cert())
    binding = look(catalog, fingerprint, NOW)
    assert binding == Binding(ORG, "organisation", "Văn phòng Tỉnh ủy", None, [ORG],
                              fingerprint, NOW)


def test_lookup_before_and_after_revocation(catalog, settings):
    fingerprint, _ = bind(catalog, settings, PERSON, make_cert())
    before = look(catalog, fingerprint, NOW)
    assert before.revoked_at is None
    revoked = datetime(2025, 5, 20, tzinfo=UTC)
    with catalog.unit_of_work() as s:
        revoke_certificate(s, settings, OPERATOR, fingerprint, revoked, "CA revoked it",
                           FixedClock(NOW))
    # A later lookup reports the recorded revocation, whatever moment is asked about;
    # whether the signature came first is the validator's call, on the proven time.
    earlier = look(catalog, fingerprint, revoked - timedelta(days=1))
    later = look(catalog, fingerprint, revoked + timedelta(days=1))
    assert earlier.revoked_at == later.revoked_at == revoked
    assert not earlier.revoked_by(earlier.at)
    assert later.revoked_by(later.at)
    assert later.revoked_by(revoked)  # effective from that instant on


def test_lookup_before_during_and_after_signing_authority(catalog, settings):
    fingerprint, _ = bind(catalog, settings, PERSON, make_cert())
    start = datetime(2025, 1, 1, tzinfo=HANOI)
    end = datetime(2025, 5, 15, tzinfo=HANOI)
    with catalog.unit_of_work() as s:
        grant_signing_authority(s, OPERATOR, PERSON, ORG, "Chánh Văn phòng", start,
                                "Quyết định 12-QĐ/TU", FixedClock(NOW))
    assert look(catalog, fingerprint, start - timedelta(seconds=1)).authorised_for == []
    assert look(catalog, fingerprint, start).authorised_for == [ORG]
    assert look(catalog, fingerprint, NOW).authorised_for == [ORG]
    with catalog.unit_of_work() as s:
        end_signing_authority(s, OPERATOR, PERSON, ORG, end, "Quyết định 40-QĐ/TU",
                              FixedClock(NOW))
    # Later lookups reflect that the person left; signatures before the end still count.
    assert look(catalog, fingerprint, end - timedelta(seconds=1)).authorised_for == [ORG]
    assert look(catalog, fingerprint, end).authorised_for == []
    assert look(catalog, fingerprint, NOW).authorised_for == []
    with catalog.unit_of_work() as s:
        row = s.scalar(select(SigningAuthority))
        assert row.valid_until == end
        assert row.basis == "Quyết định 12-QĐ/TU | ended: Quyết định 40-QĐ/TU"


def test_lookup_rejects_naive_time(catalog, settings):
    fingerprint, _ = bind(catalog, settings, PERSON, make_cert())
    with pytest.raises(InputError, match="naive"), catalog.unit_of_work() as s:
        lookup(s, fingerprint, datetime(2025, 1, 1))


# ---- signing authority --------------------------------------------------------------


def test_authority_rules(catalog, settings):
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with catalog.unit_of_work() as s:
        grant_signing_authority(s, OPERATOR, PERSON, ORG, "Chánh Văn phòng", start)
        grant_signing_authority(s, OPERATOR, PERSON, ORG2, "Trưởng ban", start)
    refusals = [
        (lambda s: grant_signing_authority(s, OPERATOR, PERSON, ORG, "Phó", NOW),
         InputError, "already holds signing authority"),
        (lambda s: grant_signing_authority(s, OPERATOR, ORG, ORG2, "x", NOW),
         InputError, "is not a person"),
        (lambda s: grant_signing_authority(s, OPERATOR, PERSON, PERSON2, "x", NOW),
         InputError, "is not an organisation"),
        (lambda s: grant_signing_authority(s, OPERATOR, PERSON, "000.00.09.H41", "x", NOW),
         NotFound, "no agent"),
        (lambda s: grant_signing_authority(s, OPERATOR, PERSON2, ORG, "", NOW),
         InputError, "position is required"),
        (lambda s: grant_signing_authority(s, OPERATOR, PERSON2, ORG, "x",
                                           datetime(2025, 1, 1)),
         InputError, "naive"),
        (lambda s: end_signing_authority(s, OPERATOR, PERSON2, ORG, NOW),
         InputError, "no open signing authority"),
        (lambda s: end_signing_authority(s, OPERATOR, PERSON, ORG, start),
         InputError, "not after the start"),
    ]
    for call, error, words in refusals:
        with pytest.raises(error, match=words), catalog.unit_of_work() as s:
            call(s)
    end = datetime(2025, 3, 1, tzinfo=UTC)
    with catalog.unit_of_work() as s:
        end_signing_authority(s, OPERATOR, PERSON, ORG, end)
        # A grant overlapping the closed period is refused; a new one after it is fine.
        with pytest.raises(InputError, match="already holds"):
            grant_signing_authority(s, OPERATOR, PERSON, ORG, "Phó", end - timedelta(days=1))
        grant_signing_authority(s, OPERATOR, PERSON, ORG, "Phó Chánh Văn phòng", NOW)
    with catalog.unit_of_work() as s:
        rows = list_authorities(s, OPERATOR, person=PERSON, organisation=ORG)
        assert [(r.position, r.valid_until) for r in rows] == [
            ("Chánh Văn phòng", end), ("Phó Chánh Văn phòng", None)]
    assert [a for a in actions(catalog) if a.startswith("authorit")] == [
        "authority.grant", "authority.grant", "authority.end", "authority.grant",
        "authorities.list"]


def test_list_certificates(catalog, settings):
    fp_person, _ = bind(catalog, settings, PERSON, make_cert("B"))
    fp_org, _ = bind(catalog, settings, ORG, make_cert("O"))
    with catalog.unit_of_work() as s:
        assert {c.fingerprint for c in list_certificates(s, OPERATOR)} == {fp_person, fp_org}
        assert [c.fingerprint for c in list_certificates(s, OPERATOR, PERSON)] == [fp_person]
        with pytest.raises(NotFound):
            list_certificates(s, OPERATOR, "000.00.09.H41")
        assert audit.verify(s).ok


# ---- input parsing ------------------------------------------------------------------


def test_parse_instant():
    assert parse_instant("2025-06-01", "x") == datetime(2025, 5, 31, 17, 0, tzinfo=UTC)
    assert parse_instant("2025-06-01T08:30+07:00", "x") == datetime(2025, 6, 1, 1, 30,
                                                                    tzinfo=UTC)
    assert parse_instant("2025-06-01T01:30Z", "x").tzinfo == UTC
    with pytest.raises(InputError, match="no UTC offset"):
        parse_instant("2025-06-01T08:30", "--at")
    with pytest.raises(InputError, match="not an ISO 8601"):
        parse_instant("yesterday", "--at")


def test_normalise_fingerprint():
    hexa = "AB:" * 31 + "AB"
    assert normalise_fingerprint(hexa) == "ab" * 32
    assert normalise_fingerprint("SHA256:" + "cd" * 32) == "cd" * 32


# ---- CLI round trip -----------------------------------------------------------------


def test_cli_round_trip(archive_env, tmp_path):
    env = archive_env
    assert env.invoke("agents", "add-person", PERSON, "Trần Thị Bình", "--org", ORG,
                      ).exit_code == 0
    now = datetime.now(UTC)
    person_pem = tmp_path / "person.pem"
    person_pem.write_bytes(pem(make_cert("Trần Thị Bình", given_name="Bình",
                                         not_before=now - timedelta(days=1),
                                         not_after=now + timedelta(days=30))))
    org_pem = tmp_path / "org.pem"
    org_pem.write_bytes(pem(make_cert("Văn phòng Tỉnh ủy", qc_type="eseal",
                                      not_before=now - timedelta(days=1),
                                      not_after=now + timedelta(days=30))))

    bound = env.json("agents", "bind-cert", PERSON, str(person_pem))
    assert bound["agent"] == PERSON and bound["status"] == "active"
    assert bound["warnings"] == []
    fingerprint = bound["fingerprint"]
    org_fp = env.json("agents", "bind-cert", ORG, str(org_pem))["fingerprint"]

    # Refusals: exit 2 with a clear message.
    result = env.invoke("agents", "bind-cert", ORG2, str(person_pem))
    assert result.exit_code == 2 and "already bound" in result.stderr
    result = env.invoke("agents", "bind-cert", "999999999999", str(org_pem))
    assert result.exit_code == 2 and "no agent" in result.stderr
    bad = tmp_path / "bad.pem"
    bad.write_text("nope")
    result = env.invoke("agents", "bind-cert", ORG2, str(bad))
    assert result.exit_code == 2 and "not a certificate" in result.stderr
    result = env.invoke("agents", "bind-cert", ORG2, str(tmp_path / "missing.pem"))
    assert result.exit_code == 2 and "cannot read" in result.stderr
    result = env.invoke("agents", "bind-cert", ORG, str(person_pem))
    assert result.exit_code == 2

    granted = env.json("agents", "grant-authority", PERSON, ORG, "--position",
                       "Chánh Văn phòng", "--from", "2025-01-01", "--basis", "QĐ 12")
    assert granted["valid_from"] == "2024-12-31T17:00:00+00:00"
    assert granted["valid_until"] is None
    result = env.invoke("agents", "end-authority", PERSON, ORG, "--until",
                        "2025-06-01T08:00")
    assert result.exit_code == 2 and "no UTC offset" in result.stderr
    ended = env.json("agents", "end-authority", PERSON, ORG, "--until",
                     "2025-06-01T08:00+07:00", "--basis", "QĐ 40")
    assert ended["valid_until"] == "2025-06-01T01:00:00+00:00"

    result = env.invoke("agents", "revoke-cert", fingerprint, "--at", "2025-05-01",
                        "--reason", "khóa bị lộ")
    assert result.exit_code == 0, result.output
    assert "revoked certificate" in result.stdout
    result = env.invoke("agents", "revoke-cert", fingerprint, "--at", "2025-05-01",
                        "--reason", "again")
    assert result.exit_code == 2 and "already revoked" in result.stderr

    listed = env.json("agents", "certs")
    assert {(c["agent"], c["status"]) for c in listed} == {(PERSON, "revoked"),
                                                           (ORG, "active")}
    mine = env.json("agents", "certs", PERSON)
    assert [c["revoked_at"] for c in mine] == ["2025-04-30T17:00:00+00:00"]
    result = env.invoke("agents", "certs")
    assert result.exit_code == 0 and org_fp in result.stdout

    # What the validator will ask, through the port.
    instance = env.instance()
    registry = CatalogRegistry(instance.catalog)
    before_end = registry.lookup(fingerprint, datetime(2025, 3, 1, tzinfo=UTC))
    assert before_end.authorised_for == [ORG] and before_end.revoked_by(before_end.at) is False
    assert registry.lookup(fingerprint, datetime(2025, 6, 2, tzinfo=UTC)).authorised_for == []
    assert registry.lookup(org_fp, now).authorised_for == [ORG]
    assert env.invoke("audit", "verify").exit_code == 0
