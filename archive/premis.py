"""PREMIS 3.0 preservation metadata of one AIP version (R-PKG-1, R-META-1, R-FIX-1).

``build_premis`` describes, in ``data/metadata/preservation/premis.xml``:

* one ``intellectualEntity`` object: the record (identifier type ``UUID``);
* one ``file`` object per payload file: fixity for every configured algorithm, size,
  format (PRONOM PUID when identified, R-META-1), the original file name as received,
  and structural ``isIncludedIn`` / ``includes`` relationships with the entity;
* the events (ingest, validation, digest calculation ...) and the agents behind them.

The document is built from the spec alone, so the same spec gives the same bytes.
It validates against ``premis-v3-0.xsd`` (tests/test_aip_package.py).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from lxml import etree

if TYPE_CHECKING:
    from archive.bag import AipSpec, PayloadFile

PREMIS_NS = "http://www.loc.gov/premis/v3"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
PREMIS_SCHEMA_LOCATION = "http://www.loc.gov/standards/premis/v3/premis-v3-0.xsd"

# Names of the digest algorithms as PREMIS / METS spell them (LoC cryptographicHashFunctions).
DIGEST_ALGORITHM_NAMES = {
    "md5": "MD5",
    "sha1": "SHA-1",
    "sha256": "SHA-256",
    "sha384": "SHA-384",
    "sha512": "SHA-512",
}

# Our agent kinds in the LoC agentType vocabulary (id.loc.gov/vocabulary/preservation/agentType).
AGENT_TYPES = {
    "person": "person",
    "organisation": "organization",
    "software": "software",
    "system": "software",
}

# Characters XML 1.0 cannot carry at all; replaced so that odd input never breaks a package.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: object) -> str:
    """Text safe for an XML 1.0 document: forbidden characters become U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(value))


def xml_datetime(moment: datetime) -> str:
    """ISO 8601 / xsd:dateTime with its UTC offset; naive datetimes are a caller bug."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime without timezone: {moment!r}")
    return moment.isoformat(timespec="seconds")


def digest_algorithm_name(algorithm: str) -> str:
    """PREMIS/METS name of a hashlib algorithm (``sha256`` -> ``SHA-256``)."""
    return DIGEST_ALGORITHM_NAMES.get(algorithm.lower(), algorithm.upper())


def file_object_uuid(record_id: str, payload: PayloadFile) -> str:
    """Stable PREMIS identifier of a payload file: same record, path and bytes, same UUID."""
    sha = payload.digests.get("sha256", "")
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"urn:archive:{record_id}/{payload.bag_path}#{sha}"))


def _el(parent: etree._Element, tag: str, text: object | None = None,
        **attrs: str) -> etree._Element:
    node = etree.SubElement(parent, f"{{{PREMIS_NS}}}{tag}", attrs)
    if text is not None:
        node.text = xml_text(text)
    return node


def _identifier(parent: etree._Element, tag: str, id_type: str, value: str) -> etree._Element:
    node = _el(parent, tag)
    _el(node, f"{tag}Type", id_type)
    _el(node, f"{tag}Value", value)
    return node


def _relationship(parent: etree._Element, sub_type: str, related_uuid: str) -> None:
    rel = _el(parent, "relationship")
    _el(rel, "relationshipType", "structural")
    _el(rel, "relationshipSubType", sub_type)
    _identifier(rel, "relatedObjectIdentifier", "UUID", related_uuid)


def build_premis(spec: AipSpec) -> bytes:
    """Serialise the PREMIS 3.0 document (UTF-8, XML declaration) for ``spec``."""
    root = etree.Element(f"{{{PREMIS_NS}}}premis", nsmap={"premis": PREMIS_NS, "xsi": XSI_NS},
                         version="3.0")
    root.set(f"{{{XSI_NS}}}schemaLocation", f"{PREMIS_NS} {PREMIS_SCHEMA_LOCATION}")
    xsi_type = f"{{{XSI_NS}}}type"
    file_uuids = {pf.bag_path: file_object_uuid(spec.record_id, pf) for pf in spec.files}
    events_by_path: dict[str, list[str]] = {}
    for event in spec.events:
        for path in event.linked_paths:
            events_by_path.setdefault(path, []).append(event.id)

    entity = _el(root, "object", **{xsi_type: "premis:intellectualEntity"})
    _identifier(entity, "objectIdentifier", "UUID", spec.record_id)
    for pf in spec.files:
        _relationship(entity, "includes", file_uuids[pf.bag_path])
    for event in spec.events:
        if not event.linked_paths:
            _identifier(entity, "linkingEventIdentifier", "UUID", event.id)

    for pf in spec.files:
        obj = _el(root, "object", **{xsi_type: "premis:file"})
        _identifier(obj, "objectIdentifier", "UUID", file_uuids[pf.bag_path])
        _identifier(obj, "objectIdentifier", "local", pf.bag_path)
        chars = _el(obj, "objectCharacteristics")
        _el(chars, "compositionLevel", "0")
        for algorithm in spec.algorithms:
            fixity = _el(chars, "fixity")
            _el(fixity, "messageDigestAlgorithm", digest_algorithm_name(algorithm))
            _el(fixity, "messageDigest", pf.digests[algorithm])
        _el(chars, "size", str(pf.size))
        fmt = _el(chars, "format")
        if pf.format_name or not pf.format_puid:
            designation = _el(fmt, "formatDesignation")
            _el(designation, "formatName", pf.format_name or pf.mime_type or "unknown")
        if pf.format_puid:
            registry = _el(fmt, "formatRegistry")
            _el(registry, "formatRegistryName", "PRONOM")
            _el(registry, "formatRegistryKey", pf.format_puid)
            _el(registry, "formatRegistryRole", "specification")
        _el(obj, "originalName", pf.original_name)
        _relationship(obj, "isIncludedIn", spec.record_id)
        for event_id in events_by_path.get(pf.bag_path, []):
            _identifier(obj, "linkingEventIdentifier", "UUID", event_id)

    agent_kinds = {agent.identifier: agent.kind for agent in spec.agents}
    for event in spec.events:
        node = _el(root, "event")
        _identifier(node, "eventIdentifier", "UUID", event.id)
        _el(node, "eventType", event.event_type)
        _el(node, "eventDateTime", xml_datetime(event.occurred_at))
        if event.detail:
            _el(_el(node, "eventDetailInformation"), "eventDetail", event.detail)
        _el(_el(node, "eventOutcomeInformation"), "eventOutcome", event.outcome)
        link = _identifier(node, "linkingAgentIdentifier", "local", event.agent)
        kind = agent_kinds.get(event.agent)
        if kind in ("software", "system"):
            _el(link, "linkingAgentRole", "executing program")
        elif kind is not None:
            _el(link, "linkingAgentRole", "implementer")
        targets = ([file_uuids[p] for p in event.linked_paths if p in file_uuids]
                   or [spec.record_id])
        for target in targets:
            _identifier(node, "linkingObjectIdentifier", "UUID", target)

    for agent in spec.agents:
        node = _el(root, "agent")
        _identifier(node, "agentIdentifier", "local", agent.identifier)
        _el(node, "agentName", agent.name)
        _el(node, "agentType", AGENT_TYPES.get(agent.kind, agent.kind))
        if agent.kind == "system":
            _el(node, "agentNote", "system")

    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
