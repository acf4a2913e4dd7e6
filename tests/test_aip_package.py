"""The AIP is a valid serialised BagIt bag with valid METS and PREMIS (R-PKG-1, R-FIX-1).

Schemas are loaded from the shared conformance corpus and validated offline: the OASIS
catalog shipped with them is read into an lxml resolver, the parser has no network,
and the test fails if a schema asks for any location the catalog does not map.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import io
import json
import os
import tarfile
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import bagit
import pytest
from lxml import etree

from archive.bag import (
    AipSpec,
    BagMember,
    PayloadFile,
    PremisAgent,
    PremisEvent,
    build_aip,
    payload_paths,
    safe_payload_name,
)
from archive.bag_inspection import (
    extract_record_json,
    inspect_bag,
    member_problem,
    read_member_index,
)
from archive.digests import CHUNK, hash_bytes
from archive.errors import AipSpecInvalid, FixityMismatch, SizeMismatch, UnsafeBag
from archive.mets import build_mets
from archive.premis import build_premis
from tests.xml_schemas import validate_xml

ALGORITHMS = ("sha256", "sha512")
RECORD_ID = "0b7e3f5c-3a41-4c1e-9d55-6f7a2b9c8d10"
ICT = timezone(timedelta(hours=7))
CREATED = datetime(2025, 3, 14, 9, 30, 0, tzinfo=ICT)
METADATA = {
    "number_symbol": "125-QĐ/TU",
    "doc_type": "Quyết định",
    "date": "2025-03-14",
    "issuing_org": "TU-QNg",
    "summary": "Về việc ban hành Quy chế giao dịch điện tử\ntrong hoạt động của các cơ quan Đảng",
    "signer": "Nguyễn Văn Đức",
    "classification": "normal",
    "retention_rule": "vinh-vien",
    "fonds": "Phông Tỉnh ủy",
    "page_count": 12,
    "language": "vi",
}
PDF = b"%PDF-1.7\n% t\xe1\xba\xa1o b\xe1\xbb\x9fi\n" + bytes(range(256)) * 9 + b"\n%%EOF\n"


# ---- fixtures --------------------------------------------------------------------------


def _payload(directory: Path, name: str, data: bytes, role: str = "original",
             bag_path: str | None = None) -> PayloadFile:
    source = directory / "sources" / hashlib.sha256(name.encode()).hexdigest()[:12]
    source.parent.mkdir(exist_ok=True)
    source.write_bytes(data)
    return PayloadFile(source=source, bag_path=bag_path or payload_paths([name])[0], role=role,
                       original_name=name, size=len(data), digests=hash_bytes(data, ALGORITHMS),
                       format_puid="fmt/276", format_name="Acrobat PDF 1.7 - Portable Document "
                       "Format", mime_type="application/pdf")


def _spec(files: list[PayloadFile], version: int = 1) -> AipSpec:
    agents = [PremisAgent("kho-luu-tru-so/0.1.0", "Kho lưu trữ số 0.1.0", "software"),
              PremisAgent("VT-0001", "Trần Thị Hồng Nhung (văn thư)", "person"),
              PremisAgent("TU-QNg", "Tỉnh ủy Quảng Ngãi", "organisation")]
    paths = [pf.bag_path for pf in files]
    events = [
        PremisEvent(str(uuid.UUID(int=1)), "message digest calculation", CREATED,
                    "kho-luu-tru-so/0.1.0", "success", "SHA-256, SHA-512 khi tiếp nhận", paths),
        PremisEvent(str(uuid.UUID(int=2)), "ingestion", CREATED, "VT-0001", "success",
                    "Tiếp nhận văn bản điện tử", paths[:1]),
        PremisEvent(str(uuid.UUID(int=3)), "accession", CREATED, "TU-QNg", "success"),
    ]
    return AipSpec(record_id=RECORD_ID, version=version, metadata=dict(METADATA), files=files,
                   events=events, agents=agents,
                   source_organization="Văn phòng Tỉnh ủy Quảng Ngãi", algorithms=ALGORITHMS,
                   created_at=CREATED, software="kho-luu-tru-so 0.1.0")


def _members_bytes(path: Path, members: list[BagMember]) -> dict[str, bytes]:
    out = {}
    with open(path, "rb") as fh:
        for member in members:
            fh.seek(member.offset)
            out[member.path] = fh.read(member.size)
    return out


def _safe_extract(tar_path: Path, dest: Path) -> Path:
    """Extract only after every member passed the structure check (and with 'data')."""
    with open(tar_path, "rb") as fh:
        inspection = inspect_bag(fh)
    assert inspection.ok, inspection.problems
    with tarfile.open(tar_path, "r:") as tar:
        assert all(member_problem(m) is None for m in tar.getmembers())
        tar.extractall(dest, filter="data")
    bag_dir = dest / inspection.bag_name
    for path in [bag_dir, *bag_dir.rglob("*")]:  # read-only modes would block cleanup
        path.chmod(0o755 if path.is_dir() else 0o644)
    return bag_dir


@pytest.fixture
def one_file(tmp_path: Path) -> AipSpec:
    return _spec([_payload(tmp_path, "Quyết định 125-QĐ/TU ký số.pdf", PDF)])


@pytest.fixture
def two_files(tmp_path: Path) -> AipSpec:
    return _spec([_payload(tmp_path, "Quyết định 125-QĐ/TU ký số.pdf", PDF),
                  _payload(tmp_path, "Báo cáo kiểm tra chữ ký.xml", b"<r>h\xe1\xbb\xa3p l\xe1"
                           b"\xbb\x87</r>\n", role="validation")], version=2)


@pytest.fixture(params=["one_file", "two_files"])
def spec(request) -> AipSpec:
    return request.getfixturevalue(request.param)


# ---- METS / PREMIS schema validity --------------------------------------------------------


def test_premis_is_valid_premis_3(spec: AipSpec, schemas: dict):
    data = build_premis(spec)
    assert validate_xml(schemas["premis"], data) == []
    doc = etree.fromstring(data)
    ns = {"p": "http://www.loc.gov/premis/v3"}
    assert doc.get("version") == "3.0"
    assert doc.xpath("//p:originalName/text()", namespaces=ns) == [
        pf.original_name for pf in spec.files]
    assert doc.xpath("//p:messageDigestAlgorithm/text()", namespaces=ns)[:2] == [
        "SHA-256", "SHA-512"]
    assert doc.xpath("//p:formatRegistryKey/text()", namespaces=ns)[0] == "fmt/276"
    assert "Tỉnh ủy Quảng Ngãi" in doc.xpath("//p:agentName/text()", namespaces=ns)


def test_mets_is_valid_mets_1_12_1(spec: AipSpec, schemas: dict):
    data = build_mets(spec, (10, hash_bytes(b"premis")), (20, hash_bytes(b"json")))
    assert validate_xml(schemas["mets"], data) == []
    doc = etree.fromstring(data)
    ns = {"m": "http://www.loc.gov/METS/", "x": "http://www.w3.org/1999/xlink"}
    assert doc.get("OBJID") == RECORD_ID and doc.get("TYPE") == "Quyết định"
    assert doc.xpath("//m:fileGrp/@USE", namespaces=ns)[0] == "original"
    hrefs = doc.xpath("//m:FLocat/@x:href", namespaces=ns)
    assert len(hrefs) == len(spec.files) and all(h.startswith("content/") for h in hrefs)
    assert len(doc.xpath("//m:structMap//m:fptr", namespaces=ns)) == len(spec.files)


def test_metadata_inside_the_built_aip_is_schema_valid(spec, schemas, tmp_path):
    built = build_aip(spec, tmp_path / "staging")
    data = _members_bytes(built.path, built.members)
    assert validate_xml(schemas["mets"], data["data/METS.xml"]) == []
    assert validate_xml(schemas["premis"], data["data/metadata/preservation/premis.xml"]) == []
    record = json.loads(data["data/metadata/descriptive/record.json"].decode("utf-8"))
    assert record == METADATA  # Vietnamese text round-trips
    mets = etree.fromstring(data["data/METS.xml"])
    ref = mets.find(".//{http://www.loc.gov/METS/}dmdSec/{http://www.loc.gov/METS/}mdRef")
    assert ref.get("CHECKSUM") == hashlib.sha256(
        data["data/metadata/descriptive/record.json"]).hexdigest()


def test_validator_catches_broken_documents(schemas: dict, one_file: AipSpec):
    premis_dir = schemas["examples"] / "premis3"
    # The official example 2 is invalid (empty *Extension elements); example 1 is valid.
    example_1 = (premis_dir / "PREMIS_3_example_1.xml").read_bytes()
    assert validate_xml(schemas["premis"], example_1) == []
    assert validate_xml(schemas["premis"], (premis_dir / "PREMIS_3_example_2.xml").read_bytes())
    # And our own METS, once a required attribute is removed.
    mets = etree.fromstring(build_mets(one_file, (1, hash_bytes(b"p")), (1, hash_bytes(b"j"))))
    flocat = mets.find(".//{http://www.loc.gov/METS/}FLocat")
    del flocat.attrib["LOCTYPE"]
    assert validate_xml(schemas["mets"], etree.tostring(mets))


# ---- the serialised bag ----------------------------------------------------------------


def test_tar_is_one_deterministic_pax_directory(spec: AipSpec, tmp_path: Path):
    built = build_aip(spec, tmp_path / "staging")
    assert built.bag_name == f"{RECORD_ID}.v{spec.version}"
    with tarfile.open(built.path, "r:") as tar:
        infos = tar.getmembers()
    assert infos[0].name == built.bag_name and infos[0].isdir()
    assert all(i.name.startswith(built.bag_name + "/") for i in infos[1:])
    for info in infos:
        assert (info.uid, info.gid, info.uname, info.gname) == (0, 0, "", "")
        assert info.mtime == int(CREATED.timestamp())
        assert info.mode == (0o555 if info.isdir() else 0o444)
    vietnamese = [i for i in infos if "Quyết" in i.name][0]
    assert vietnamese.pax_headers["path"] == vietnamese.name  # PAX, UTF-8 name


def test_extracted_bag_is_valid_bagit(spec: AipSpec, tmp_path: Path):
    built = build_aip(spec, tmp_path / "staging")
    bag_dir = _safe_extract(built.path, tmp_path / "out")
    bag = bagit.Bag(str(bag_dir))
    bag.validate()  # raises BagValidationError on any problem
    assert sorted(bag.algorithms) == ["sha256", "sha512"]
    for name in ("manifest-sha256.txt", "manifest-sha512.txt", "tagmanifest-sha256.txt",
                 "tagmanifest-sha512.txt"):
        assert (bag_dir / name).is_file()
    assert (bag_dir / "bagit.txt").read_bytes() == (
        b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
    info = bag.info
    assert info["External-Identifier"] == RECORD_ID
    assert info["Archive-Version"] == str(spec.version)
    assert info["Internal-Sender-Identifier"] == "125-QĐ/TU"
    assert info["Bag-Group-Identifier"] == "Phông Tỉnh ủy"
    assert info["Internal-Sender-Description"] == (
        "Về việc ban hành Quy chế giao dịch điện tử trong hoạt động của các cơ quan Đảng")
    assert info["Payload-Oxum"].endswith(f".{len(spec.files) + 3}")
    for pf in spec.files:  # the originals, byte for byte
        assert (bag_dir / pf.bag_path).read_bytes() == pf.source.read_bytes()


def test_sealed_manifest_tag_file_is_covered_by_tag_manifests(one_file: AipSpec,
                                                              tmp_path: Path):
    """R-TS-1: a token over the payload manifest travels in the bag as a tag file."""
    seen = {}

    def seal(manifests: dict[str, bytes]) -> dict[str, bytes]:
        seen.update(manifests)
        return {"tags/timestamps/manifest-sha256.txt.tsr":
                b"TOKEN:" + hashlib.sha256(manifests["manifest-sha256.txt"]).digest()}

    built = build_aip(one_file, tmp_path / "staging", seal_manifests=seal)
    assert set(seen) == {"manifest-sha256.txt", "manifest-sha512.txt"}
    bag_dir = _safe_extract(built.path, tmp_path / "out")
    bagit.Bag(str(bag_dir)).validate()
    token = (bag_dir / "tags/timestamps/manifest-sha256.txt.tsr").read_bytes()
    manifest = (bag_dir / "manifest-sha256.txt").read_bytes()
    assert token == b"TOKEN:" + hashlib.sha256(manifest).digest()
    assert b"tags/timestamps/manifest-sha256.txt.tsr" in (
        bag_dir / "tagmanifest-sha256.txt").read_bytes()
    with pytest.raises(AipSpecInvalid, match="unusable tag file name"):
        build_aip(one_file, tmp_path / "s2", seal_manifests=lambda m: {"../evil": b"x"})


def test_member_offsets_give_exact_bytes_and_object_digests(spec: AipSpec, tmp_path: Path):
    built = build_aip(spec, tmp_path / "staging")
    blob = built.path.read_bytes()
    assert built.size == len(blob)
    assert built.digests == {a: hashlib.new(a, blob).hexdigest() for a in ALGORITHMS}
    paths = [m.path for m in built.members]
    assert paths[:2] == ["bagit.txt", "bag-info.txt"]
    assert {"data/METS.xml", "data/metadata/descriptive/record.json",
            "data/metadata/preservation/premis.xml", "manifest-sha512.txt",
            "tagmanifest-sha256.txt"} <= set(paths)
    for member, data in _members_bytes(built.path, built.members).items():
        entry = next(m for m in built.members if m.path == member)
        assert hash_bytes(data, ALGORITHMS) == entry.digests, member
    roles = {m.path: m.role for m in built.members}
    assert roles["bagit.txt"] == "tag" and roles["data/METS.xml"] == "metadata"
    for pf in spec.files:
        assert roles[pf.bag_path] == pf.role
        assert _members_bytes(built.path, built.members)[pf.bag_path] == pf.source.read_bytes()
    with tarfile.open(built.path, "r:") as tar:  # same offsets as tarfile reports
        offsets = {i.name.split("/", 1)[1]: i.offset_data for i in tar if i.isfile()}
    assert offsets == {m.path: m.offset for m in built.members}


def test_build_is_deterministic(spec: AipSpec, tmp_path: Path):
    first = build_aip(spec, tmp_path / "a")
    second = build_aip(spec, tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.members == second.members and first.digests == second.digests


def test_payload_source_is_streamed_once(tmp_path: Path, monkeypatch):
    data = os.urandom(3 * CHUNK + 12345)  # bigger than one chunk: whole loads would show
    spec = _spec([_payload(tmp_path, "lớn.pdf", data)])
    source = spec.files[0].source.resolve()
    opened: list[dict] = []
    real_open = builtins.open

    class CountingFile:
        def __init__(self, fh):
            self._fh, self.stats = fh, {"bytes": 0, "largest": 0}
            opened.append(self.stats)

        def read(self, n=-1):
            chunk = self._fh.read(n)
            self.stats["bytes"] += len(chunk)
            self.stats["largest"] = max(self.stats["largest"], len(chunk))
            return chunk

        def __getattr__(self, name):
            if name in ("readinto", "readall", "read1", "readline", "readlines", "mmap"):
                raise AssertionError(f"payload read through {name}")
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def counting_open(file, *args, **kwargs):
        fh = real_open(file, *args, **kwargs)
        if isinstance(file, str | os.PathLike) and Path(file).resolve() == source:
            return CountingFile(fh)
        return fh

    monkeypatch.setattr(builtins, "open", counting_open)
    built = build_aip(spec, tmp_path / "staging")
    monkeypatch.undo()
    assert len(opened) == 1, "the source must be opened exactly once"
    assert opened[0]["bytes"] == len(data)
    assert opened[0]["largest"] <= CHUNK
    assert _members_bytes(built.path, built.members)[spec.files[0].bag_path] == data


@pytest.mark.parametrize(("name", "expected"), [
    ("Tờ trình số 12.pdf", "Tờ trình số 12.pdf"),
    ("Quye\u0302\u0301t đi\u0323nh.pdf", "Quyết định.pdf"),  # NFD in, NFC out
    ("100% đúng.pdf", "100_ đúng.pdf"),
    ("dòng1\ndòng2.pdf", "dòng1_dòng2.pdf"),
    ("../x", "_x"),
    ("/etc/passwd", "_etc_passwd"),
    ("a\\b:c*?.pdf", "a_b_c__.pdf"),
    ("  .ẩn  ", "ẩn"),
    ("tab\there\u2028end\u202e.pdf", "tab_here_end_.pdf"),
    ("CON.pdf", "_CON.pdf"),
    ("", "file"),
    ("..", "file"),
])
def test_safe_payload_name(name: str, expected: str):
    assert safe_payload_name(name) == expected
    assert safe_payload_name(expected) == expected  # idempotent


def test_long_names_keep_extension_and_fit_filesystems():
    safe = safe_payload_name("Tài liệu " * 60 + ".pdf")
    assert safe.endswith(".pdf") and len(safe.encode("utf-8")) <= 200


def test_hostile_names_give_a_valid_bag(tmp_path: Path):
    names = ["../x", "100% đúng.pdf", "dòng\nmới.pdf", "Văn bản.PDF", "văn bản.pdf", "/abs"]
    files = [_payload(tmp_path, n, n.encode(), bag_path=p)
             for n, p in zip(names, payload_paths(names), strict=True)]
    spec = _spec(files)
    assert [pf.bag_path for pf in files] == [
        "data/content/_x", "data/content/100_ đúng.pdf", "data/content/dòng_mới.pdf",
        "data/content/Văn bản.PDF", "data/content/văn bản (2).pdf", "data/content/_abs"]
    built = build_aip(spec, tmp_path / "staging")
    bag_dir = _safe_extract(built.path, tmp_path / "out")
    bagit.Bag(str(bag_dir)).validate()
    extracted = sorted(p.relative_to(tmp_path / "out").as_posix()
                       for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert all(p.startswith(f"{built.bag_name}/") for p in extracted)
    premis = etree.fromstring(_members_bytes(built.path, built.members)[
        "data/metadata/preservation/premis.xml"])
    assert premis.xpath("//p:originalName/text()",
                        namespaces={"p": "http://www.loc.gov/premis/v3"}) == names


def test_size_mismatch_is_refused_and_leaves_nothing(one_file: AipSpec, tmp_path: Path):
    pf = one_file.files[0]
    pf.source.write_bytes(PDF + b"appended later")
    staging = tmp_path / "staging"
    with pytest.raises(SizeMismatch):
        build_aip(one_file, staging)
    assert list(staging.iterdir()) == []


def test_changed_payload_is_caught_when_asked(one_file: AipSpec, tmp_path: Path):
    pf = one_file.files[0]
    pf.source.write_bytes(PDF.replace(b"%%EOF", b"%%EOG"))  # same size, other bytes
    with pytest.raises(FixityMismatch) as caught:
        build_aip(one_file, tmp_path / "strict", verify_payload_digests=True)
    assert caught.value.expected == pf.digests[caught.value.algorithm]
    assert list((tmp_path / "strict").iterdir()) == []
    # Trusting the caller's digests (the default) packs a bag whose manifest is wrong;
    # a fixity check of the stored object finds it.
    built = build_aip(one_file, tmp_path / "trusting")
    with open(built.path, "rb") as fh:
        assert {p.code for p in inspect_bag(fh).problems} == {"fixity-mismatch"}


def test_invalid_spec_lists_every_problem(one_file: AipSpec, tmp_path: Path):
    pf = one_file.files[0]
    bad_file = PayloadFile(pf.source, "data/content/../x", "original", "x", pf.size,
                           {"sha256": pf.digests["sha256"]})
    bad = dataclasses.replace(one_file, files=[bad_file], algorithms=("sha256",),
                              record_id="not-a-uuid", created_at=datetime(2025, 1, 1))
    with pytest.raises(AipSpecInvalid) as caught:
        build_aip(bad, tmp_path / "staging")
    fields = {p.field for p in caught.value.problems}
    assert {"record_id", "algorithms", "created_at", "files[0]"} <= fields
    assert not (tmp_path / "staging").exists()


# ---- reading stored bags ---------------------------------------------------------------


def test_read_member_index_matches_build(spec: AipSpec, tmp_path: Path):
    built = build_aip(spec, tmp_path / "staging")
    with open(built.path, "rb") as fh:
        assert read_member_index(fh, expected_name=built.bag_name) == built.members
    with open(built.path, "rb") as fh:
        assert extract_record_json(fh) == METADATA


def test_tampered_byte_is_found_by_inspection(one_file: AipSpec, tmp_path: Path):
    built = build_aip(one_file, tmp_path / "staging")
    blob = bytearray(built.path.read_bytes())
    target = next(m for m in built.members if m.role == "original")
    blob[target.offset + 100] ^= 0x01
    inspection = inspect_bag(io.BytesIO(bytes(blob)))
    assert not inspection.ok
    assert {(p.code, p.target) for p in inspection.problems} == {
        ("fixity-mismatch", target.path)}
    with pytest.raises(UnsafeBag):
        read_member_index(io.BytesIO(bytes(blob)))


def _hostile_tar(kind: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name: str, data: bytes = b"x", **attrs) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data) if attrs.get("type", tarfile.REGTYPE) == tarfile.REGTYPE else 0
            for key, value in attrs.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if info.size else None)

        add("bag/bagit.txt", b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
        if kind == "dotdot":
            add("bag/../../evil.txt")
        elif kind == "absolute":
            add("/etc/cron.d/evil")
        elif kind == "symlink":
            add("bag/data/link", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        elif kind == "hardlink":
            add("bag/data/link", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        elif kind == "device":
            add("bag/data/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)
        elif kind == "fifo":
            add("bag/data/fifo", type=tarfile.FIFOTYPE)
        elif kind == "two-roots":
            add("other/data/x.pdf")
        elif kind == "duplicate":
            add("bag/bagit.txt", b"BagIt-Version: 0.97\n")
        elif kind == "setuid":
            add("bag/data/x", mode=0o4755)
        add("bag/data/metadata/descriptive/record.json", b"{}")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device",
                                  "fifo", "two-roots", "duplicate", "setuid"])
def test_hostile_tar_is_an_error_not_an_extraction(kind: str, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _hostile_tar(kind)
    inspection = inspect_bag(io.BytesIO(data))
    assert "unsafe-member" in {p.code for p in inspection.problems}
    with pytest.raises(UnsafeBag):
        read_member_index(io.BytesIO(data))
    with pytest.raises(UnsafeBag):
        extract_record_json(io.BytesIO(data))
    assert list(tmp_path.iterdir()) == []  # nothing was written anywhere


def test_not_a_tar_is_reported():
    inspection = inspect_bag(io.BytesIO(b"this is not a tar archive" * 100))
    assert not inspection.ok
    assert inspection.problems[0].code == "unreadable-tar"

