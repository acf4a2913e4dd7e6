"""METS 1.12.1 structural map of one AIP version (R-PKG-1).

``data/METS.xml`` ties the package together: a header naming the archive that created
it and the software, a ``dmdSec`` pointing at ``metadata/descriptive/record.json``, an
``amdSec`` pointing at ``metadata/preservation/premis.xml``, a ``fileSec`` listing the
payload files grouped by role (``USE="original"`` first) with size and SHA-256, and a
``structMap`` whose one ``div`` (the record) holds one ``div``/``fptr`` per file.

Metadata is referenced (``mdRef``), never embedded, so the document validates against
``mets.xsd`` alone. Every ``href`` is a percent-encoded URL relative to ``data/``,
where METS.xml itself lives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from lxml import etree

from archive.premis import xml_datetime, xml_text

if TYPE_CHECKING:
    from archive.bag import AipSpec

METS_NS = "http://www.loc.gov/METS/"
XLINK_NS = "http://www.w3.org/1999/xlink"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
METS_SCHEMA_LOCATION = (f"{METS_NS} http://www.loc.gov/standards/mets/version1121/mets.xsd "
                        f"{XLINK_NS} http://www.loc.gov/standards/xlink/xlink.xsd")

RECORD_JSON_HREF = "metadata/descriptive/record.json"
PREMIS_HREF = "metadata/preservation/premis.xml"
# Name of our descriptive metadata format in OTHERMDTYPE (the dict archive.metadata makes).
RECORD_JSON_MDTYPE = "ARCHIVE-RECORD-JSON"


def _el(parent: etree._Element, tag: str, text: object | None = None,
        **attrs: str) -> etree._Element:
    node = etree.SubElement(parent, f"{{{METS_NS}}}{tag}",
                            {k: xml_text(v) for k, v in attrs.items()})
    if text is not None:
        node.text = xml_text(text)
    return node


def _href(node: etree._Element, relative_path: str) -> None:
    node.set("LOCTYPE", "URL")
    node.set(f"{{{XLINK_NS}}}type", "simple")
    # xlink:href is an anyURI: keep '/' and percent-encode the rest (UTF-8).
    node.set(f"{{{XLINK_NS}}}href", quote(relative_path, safe="/"))


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def build_mets(spec: AipSpec, premis_digests: tuple[int, dict[str, str]],
               record_json_digests: tuple[int, dict[str, str]], *,
               other_metadata: dict[str, tuple[int, dict[str, str]]] | None = None) -> bytes:
    """Serialise METS.xml for ``spec``.

    ``premis_digests`` and ``record_json_digests`` are ``(size, {algorithm: hex})`` of the
    premis.xml and record.json bytes that go into the same bag; ``other_metadata`` the
    same for further JSON metadata files (bag path -> size and digests), each referenced
    as digital provenance (e.g. a later version's ``metadata/lifecycle.json``).
    """
    meta = spec.metadata
    created = xml_datetime(spec.created_at)
    label = _one_line(meta.get("title") or meta.get("summary") or spec.record_id)
    attrs = {"OBJID": spec.record_id, "LABEL": label}
    if meta.get("doc_type"):
        attrs["TYPE"] = _one_line(meta["doc_type"])
    root = etree.Element(f"{{{METS_NS}}}mets",
                         nsmap={"mets": METS_NS, "xlink": XLINK_NS, "xsi": XSI_NS})
    for key, value in attrs.items():
        root.set(key, xml_text(value))
    root.set(f"{{{XSI_NS}}}schemaLocation", METS_SCHEMA_LOCATION)

    header = _el(root, "metsHdr", CREATEDATE=created,
                 RECORDSTATUS="NEW" if spec.version == 1 else "REVISED")
    org = _el(header, "agent", ROLE="CREATOR", TYPE="ORGANIZATION")
    _el(org, "name", spec.source_organization)
    software = _el(header, "agent", ROLE="CREATOR", TYPE="OTHER", OTHERTYPE="SOFTWARE")
    _el(software, "name", spec.software)
    if meta.get("number_symbol"):
        _el(header, "altRecordID", _one_line(meta["number_symbol"]), TYPE="number-symbol")
    _el(header, "altRecordID", str(spec.version), TYPE="aip-version")
    _el(header, "metsDocumentID", f"{spec.record_id}.v{spec.version}/data/METS.xml")

    size, digests = record_json_digests
    dmd = _el(root, "dmdSec", ID="dmd-record", CREATED=created)
    ref = _el(dmd, "mdRef", MDTYPE="OTHER", OTHERMDTYPE=RECORD_JSON_MDTYPE,
              MIMETYPE="application/json", SIZE=str(size), CREATED=created,
              CHECKSUM=digests["sha256"], CHECKSUMTYPE="SHA-256")
    _href(ref, RECORD_JSON_HREF)

    size, digests = premis_digests
    amd = _el(root, "amdSec", ID="amd-record")
    digiprov = _el(amd, "digiprovMD", ID="digiprov-premis", CREATED=created)
    ref = _el(digiprov, "mdRef", MDTYPE="PREMIS", MDTYPEVERSION="3.0",
              MIMETYPE="text/xml", SIZE=str(size), CREATED=created,
              CHECKSUM=digests["sha256"], CHECKSUMTYPE="SHA-256")
    _href(ref, PREMIS_HREF)
    for n, (path, (size, digests)) in enumerate(sorted((other_metadata or {}).items()), 1):
        name = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        extra = _el(amd, "digiprovMD", ID=f"digiprov-{n:02d}", CREATED=created)
        ref = _el(extra, "mdRef", MDTYPE="OTHER",
                  OTHERMDTYPE=f"ARCHIVE-{_one_line(name).upper()}-JSON",
                  MIMETYPE="application/json", SIZE=str(size), CREATED=created,
                  CHECKSUM=digests["sha256"], CHECKSUMTYPE="SHA-256")
        _href(ref, path.removeprefix("data/"))

    file_ids = {pf.bag_path: f"file-{n:04d}" for n, pf in enumerate(spec.files, start=1)}
    roles = sorted({pf.role for pf in spec.files}, key=lambda r: (r != "original", r))
    file_sec = _el(root, "fileSec")
    for role in roles:
        group = _el(file_sec, "fileGrp", USE=role)
        for pf in spec.files:
            if pf.role != role:
                continue
            attrs = {"ID": file_ids[pf.bag_path], "SIZE": str(pf.size), "CREATED": created,
                     "CHECKSUM": pf.digests["sha256"], "CHECKSUMTYPE": "SHA-256",
                     "ADMID": "digiprov-premis"}
            if pf.mime_type:
                attrs["MIMETYPE"] = pf.mime_type
            node = _el(group, "file", **attrs)
            _href(_el(node, "FLocat"), pf.bag_path.removeprefix("data/"))

    struct = _el(root, "structMap", TYPE="physical", LABEL=label)
    record_div = _el(struct, "div", TYPE=_one_line(meta.get("doc_type") or "record"),
                     LABEL=label, DMDID="dmd-record", ADMID="digiprov-premis")
    for order, pf in enumerate(spec.files, start=1):
        file_div = _el(record_div, "div", ORDER=str(order), TYPE=pf.role,
                       LABEL=_one_line(pf.original_name) or pf.bag_path)
        _el(file_div, "fptr", FILEID=file_ids[pf.bag_path])

    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def file_roles(mets_bytes: bytes) -> dict[str, str]:
    """Bag path -> fileGrp USE of every file a (possibly foreign) METS.xml lists.

    Parsed without network or entity expansion; an unreadable document gives {}.
    """
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    try:
        root = etree.fromstring(mets_bytes, parser)
    except etree.XMLSyntaxError:
        return {}
    roles = {}
    for group in root.iter(f"{{{METS_NS}}}fileGrp"):
        use = group.get("USE")
        for flocat in group.iterfind(f"{{{METS_NS}}}file/{{{METS_NS}}}FLocat"):
            href = flocat.get(f"{{{XLINK_NS}}}href")
            if use and href:
                roles[f"data/{unquote(href)}"] = use
    return roles
