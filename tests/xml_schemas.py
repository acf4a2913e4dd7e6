"""Offline XML Schema validation with the shipped METS/PREMIS schemas (R-PKG-1).

The ``schemas`` fixture loads METS 1.12.1 and PREMIS 3.0 from the conformance corpus
through its OASIS catalog; network access is impossible (``no_network``), and a schema
asking for a location the catalog does not map fails the fixture.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from lxml import etree


class _CatalogResolver(etree.Resolver):
    """Maps the loc.gov schema locations to local files, as catalog.xml says."""

    def __init__(self, catalog: Path):
        super().__init__()
        self.base = catalog.parent
        self.mapping: dict[str, Path] = {}
        self.unmapped: list[str] = []
        for entry in etree.parse(str(catalog), etree.XMLParser(no_network=True)).getroot():
            name = entry.get("name") or entry.get("systemId")
            if name and entry.get("uri"):
                self.mapping[name] = (self.base / entry.get("uri")).resolve()

    def resolve(self, url, pubid, context):
        if url in self.mapping:
            return self.resolve_filename(str(self.mapping[url]), context)
        if not Path(url).resolve().is_relative_to(self.base.resolve()):
            self.unmapped.append(url)
        return None


@pytest.fixture(scope="session")
def schemas(conformance_dir: Path) -> dict:
    base = conformance_dir / "xml-schemas"
    resolver = _CatalogResolver(base / "catalog.xml")
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    parser.resolvers.add(resolver)

    def load(relative: str) -> etree.XMLSchema:
        return etree.XMLSchema(etree.parse(str(base / relative), parser))

    loaded = {"mets": load("mets/1.12.1/mets.xsd"), "premis": load("premis/v3/premis-v3-0.xsd"),
              "examples": base / "examples"}
    assert resolver.unmapped == [], f"schema asked for unmapped locations {resolver.unmapped}"
    return loaded


def validate_xml(schema: etree.XMLSchema, data: bytes) -> list[str]:
    doc = etree.parse(io.BytesIO(data), etree.XMLParser(no_network=True,
                                                        resolve_entities=False))
    schema.validate(doc)
    return [f"{e.line}: {e.message}" for e in schema.error_log]
