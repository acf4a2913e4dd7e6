"""The DEMO archive of `make run`: a DEMO PKI, its agents, and signed samples ingested
through the real ingest path with signature enforcement on (R-SIG-1, R-SIG-2, R-TS-1).

``seed_demo`` runs the steps in order and returns a summary; each step is safe to run
again (the PKI, agents, certificates and sample files are kept and reused). Everything
lives under the data folder: the DEMO PKI (fresh keys, never committed) in
``demo-pki/``, the signed samples in ``demo-samples/``, and ``demo.toml``, the settings a
later ``archive`` command needs to work with this archive (ARCHIVE_CONFIG). See
docs/demo.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from archive.agents import find_agent, register_agent
from archive.certificates import bind_certificate, grant_signing_authority
from archive.models import Certificate, SigningAuthority
from archive.principal import Principal
from archive.settings import Settings
from ingest.demo import DEMO_ORGS, SIGNERS, write_signed_samples
from ingest.demo_users import register_demo_users
from ingest.services import IngestService, load_sidecar

PKI_DIR = "demo-pki"
SAMPLES_DIR = "demo-samples"
CONFIG_NAME = "demo.toml"
DEMO_MARK = " (DEMO)"


def seed_demo(instance, *, pki_port: int = 0, principal: Principal | None = None) -> dict:
    """Seed the DEMO archive of ``instance`` (initialised, normally empty).

    Generates the DEMO PKI under ``<data_dir>/demo-pki`` on first use and serves its
    OCSP, CRLs and TSA on loopback (``pki_port``, 0 = any free port) while seeding;
    writes ``<data_dir>/demo.toml``; registers the DEMO agencies and signers with their
    certificates and signing authority; signs the samples and ingests them with
    ``signatures.enforce`` on. Returns a summary (JSON-ready).
    """
    from ingest.demo_pki.server import served

    settings = instance.settings
    principal = principal or Principal.system("demo-seed")
    summary: dict = {}
    with served(settings.data_dir / PKI_DIR, port=pki_port) as pki:
        overrides = demo_overrides(settings, pki)
        summary["config"] = str(write_demo_config(settings.data_dir / CONFIG_NAME, overrides))
        demo = with_overrides(settings, overrides)
        summary["pki"] = {"folder": str(pki.folder), "url_prefix": pki.url_prefix,
                          "trust_root": str(pki.trust_roots_path), "tsa_url": pki.tsa_url,
                          "ocsp_url": pki.ocsp_url}
        summary["agents"] = register_demo_agents(instance.catalog, demo, principal, pki)
        summary["users"] = register_demo_users(instance.catalog, demo, principal)
        summary["organisation_keys"] = write_demo_org_keys(demo, pki)
        paths = write_signed_samples(settings.data_dir / SAMPLES_DIR, pki,
                                     datetime.now(UTC).date(), demo.document_types)
        summary["records"] = ingest_samples(instance, demo, principal, paths)
    summary["seeded"] = sum(1 for r in summary["records"] if r["status"] == "archived")
    return summary


# ---- settings ---------------------------------------------------------------------------


def demo_overrides(settings: Settings, pki) -> dict[str, dict]:
    """What the DEMO archive sets on top of the defaults: its data folder (so the config
    file stands alone), a DEMO name, and signature validation against the DEMO PKI."""
    name = settings.archive.system_name
    return {
        "archive": {"data_dir": str(settings.data_dir),
                    "system_name": name if name.endswith(DEMO_MARK) else name + DEMO_MARK},
        "signatures": {"trust_roots": [str(pki.trust_roots_path)], "tsa_url": pki.tsa_url,
                       "revocation_mode": "require", "allow_fetching": True,
                       "enforce": True},
    }


def with_overrides(settings: Settings, overrides: dict[str, dict]) -> Settings:
    changes = {}
    for section, values in overrides.items():
        typed = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        changes[section] = dataclasses.replace(getattr(settings, section), **typed)
    return dataclasses.replace(settings, **changes)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    raise TypeError(f"no TOML form for {value!r}")


def write_demo_config(path: Path, overrides: dict[str, dict]) -> Path:
    """Write the DEMO settings as TOML (replaced atomically)."""
    lines = ["# Settings of the DEMO archive, written by `archive demo seed` (docs/demo.md).",
             "# Use them with ARCHIVE_CONFIG=<this file>, as `make run` does. The trust root",
             "# is the DEMO PKI generated next to this file: never use it for real documents.",
             ""]
    for section, values in overrides.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    partial = path.with_name(path.name + ".part")
    partial.write_text("\n".join(lines), encoding="utf-8")
    os.replace(partial, path)
    return path


# ---- agents -----------------------------------------------------------------------------


def register_demo_agents(catalog, settings: Settings, principal: Principal, pki) -> dict:
    """The DEMO agencies, their signers, every DEMO certificate bound to its holder, and
    who signs for which agency (one transaction; what exists already is kept)."""
    done = {"registered": [], "certificates": [], "authorities": []}
    people = {label: (org, position) for label, org, position in SIGNERS}
    with catalog.unit_of_work() as session:
        for identifier, name in DEMO_ORGS:
            if find_agent(session, identifier) is None:
                register_agent(session, settings, principal, kind="organisation",
                               identifier=identifier, name=name)
                done["registered"].append(identifier)
        for label, (org, position) in people.items():
            holder = pki.holders[label]
            if find_agent(session, holder.identifier) is None:
                register_agent(session, settings, principal, kind="person",
                               identifier=holder.identifier, name=holder.name, parent=org,
                               position=position)
                done["registered"].append(holder.identifier)
        for holder in pki.holders.values():
            fingerprint = pki.fingerprint(holder.label)
            if session.scalar(select(Certificate.id)
                              .where(Certificate.fingerprint == fingerprint)) is None:
                bind_certificate(session, settings, principal, holder.identifier,
                                 pki.cert_pem(holder.label))
                done["certificates"].append({"agent": holder.identifier,
                                             "fingerprint": fingerprint})
        for label, (org, position) in people.items():
            person = find_agent(session, pki.holders[label].identifier)
            organisation = find_agent(session, org)
            held = session.scalar(select(SigningAuthority.id).where(
                SigningAuthority.person_id == person.id,
                SigningAuthority.organisation_id == organisation.id,
                SigningAuthority.valid_until.is_(None)))
            if held is None:
                # from the day the DEMO certificates became valid
                grant_signing_authority(session, principal, person.identifier, org, position,
                                        pki.now - timedelta(days=365),
                                        basis="Quyết định bổ nhiệm (DEMO)")
                done["authorities"].append(f"{person.identifier}@{org}")
    return done


def write_demo_org_keys(settings: Settings, pki) -> list[str]:
    """The DEMO agencies' signing keys where digitisation looks for them (R-CONV-1,
    docs/digitisation.md): ``<key_dir>/<identifier>.key.pem`` (0600), ``.cert.pem`` and
    ``.chain.pem``, from the DEMO PKI generated at first run (never committed). Kept
    when present."""
    from ingest.organisation_keys import key_dir

    folder = key_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    (folder / "DEMO-KEYS.txt").write_text(
        "DEMO keys of the DEMO PKI (docs/demo.md): never use them for real documents.\n",
        encoding="utf-8")
    written = []
    for holder in pki.holders.values():
        if holder.kind != "org" or holder.case != "good":
            continue
        key = folder / f"{holder.identifier}.key.pem"
        if key.exists():
            continue
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pki.key_pem(holder.label))
        (folder / f"{holder.identifier}.cert.pem").write_bytes(pki.cert_pem(holder.label))
        (folder / f"{holder.identifier}.chain.pem").write_bytes(
            b"".join(pki.cert_pem(c) for c in ("interm", "root")))
        written.append(str(key))
    return written


# ---- samples ----------------------------------------------------------------------------


def ingest_samples(instance, settings: Settings, principal: Principal,
                   paths: list[Path]) -> list[dict]:
    """Ingest the signed samples through the real ingest path (a refusal raises)."""
    service = IngestService(settings, instance.catalog, instance.store, principal=principal)
    results = []
    try:
        for path in paths:
            meta, source = load_sidecar(path)
            results.append(service.ingest(path, meta, source).to_dict())
    finally:
        service.close()
    return results
