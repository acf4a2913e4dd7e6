"""Settings: defaults in ``config/defaults.toml``, a TOML file named by ``ARCHIVE_CONFIG``,
then environment variables ``ARCHIVE_<SECTION>__<KEY>``.

The result is one frozen :class:`Settings` object. Unknown sections or keys are an
error naming the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from archive.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
DEFAULTS_FILE = CONFIG_DIR / "defaults.toml"
ENV_PREFIX = "ARCHIVE_"
REQUIRED_ALGORITHMS = ("sha256", "sha512")  # R-FIX-1


@dataclass(frozen=True)
class ArchiveSection:
    data_dir: str
    system_name: str
    owner_name: str
    source_organization: str


@dataclass(frozen=True)
class DatabaseSection:
    url: str


@dataclass(frozen=True)
class StorageSection:
    backend: str
    local_path: str
    s3_endpoint: str
    s3_bucket: str
    s3_region: str
    s3_access_key: str
    s3_secret_key: str
    s3_secret_key_file: str
    s3_path_style: bool
    s3_object_lock: str
    s3_retention_days: int
    s3_timeout: int
    s3_max_attempts: int


@dataclass(frozen=True)
class FixitySection:
    algorithms: tuple[str, ...]
    workers: int
    chunk_size: int
    # R-FIX-1: every stored object (and its backup copy) is re-hashed at least once per
    # cycle; each scheduled run checks the share that keeps the cycle on time.
    cycle_days: int
    # Read throttle of scheduled audits, bytes per second per worker (0 = unthrottled).
    max_bytes_per_second: int
    # Repair a damaged or missing object from its verified backup copy.
    repair: bool


@dataclass(frozen=True)
class SchedulerSection:
    # R-SCHED-1: jobs run in `archive serve` (embedded) or by `archive scheduler` +
    # `archive worker` processes sharing the PostgreSQL catalog.
    run_in_server: bool
    lease_seconds: int  # a batch not finished by then is reclaimed by another worker
    poll_seconds: int  # how often an idle worker looks for batches
    batch_size: int  # objects or records per batch
    # Minutes between runs of each periodic job (0 = never scheduled).
    fixity_every_minutes: int
    backup_every_minutes: int
    retention_every_minutes: int
    timestamps_every_minutes: int
    notifications_every_minutes: int
    repackage_every_minutes: int
    # Agent identifiers (or principals) notified when a run fails (R-INCIDENT-1).
    alert_recipients: tuple[str, ...]


@dataclass(frozen=True)
class BackupSection:
    # R-BACKUP-1: a second, independent store for copies of every stored object and the
    # catalog backups. "local" (a folder: mount another disk) or "s3"; "none" disables.
    backend: str
    local_path: str  # empty: <data_dir>/backup (only for trying things out)
    s3_endpoint: str
    s3_bucket: str
    s3_region: str
    s3_access_key: str
    s3_secret_key: str
    s3_secret_key_file: str
    s3_path_style: bool
    # Catalog backups (SQLite online backup, pg_dump) kept in the backup store.
    keep_catalog_backups: int
    pg_dump: str  # the pg_dump program (PostgreSQL catalogs)
    pg_restore: str


@dataclass(frozen=True)
class TimestampsSection:
    # R-TS-1: renew an archive timestamp this many days before its TSA certificate
    # expires, or at once when its hash algorithm is listed as weak.
    renew_before_days: int
    weak_algorithms: tuple[str, ...]
    hash_algorithm: str  # of renewal timestamps


@dataclass(frozen=True)
class IngestSection:
    max_file_size: int
    accepted_mime_types: tuple[str, ...]


@dataclass(frozen=True)
class AuditSection:
    checkpoint_after_commands: bool
    checkpoint_interval_minutes: int


@dataclass(frozen=True)
class IdentifiersSection:
    organisation_pattern: str
    person_pattern: str


@dataclass(frozen=True)
class MetadataSection:
    languages: tuple[str, ...]


@dataclass(frozen=True)
class ServerSection:
    host: str
    port: int


# R-SIG-2: revocation modes of [signatures] and what a signature without obtainable
# revocation information becomes (pyhanko-certvalidator's legacy modes of the same names).
REVOCATION_MODES = ("require", "hard-fail", "soft-fail")


@dataclass(frozen=True)
class AuthSection:
    # R-AUTH-1: sessions, back-off and lockout, API tokens, client certificates.
    session_idle_minutes: int
    session_max_hours: int
    backoff_after: int
    backoff_max_seconds: int
    lockout_after: int
    lockout_minutes: int
    min_password_length: int
    totp_issuer: str
    token_max_days: int
    cookie_secure: str
    client_cert_header: str
    trusted_proxies: tuple[str, ...]


COOKIE_SECURE_MODES = ("auto", "always", "never")


@dataclass(frozen=True)
class SignaturesSection:
    trust_roots: tuple[str, ...]
    revocation_mode: str
    fetch_timeout: int
    tsa_url: str
    allow_fetching: bool
    enforce: bool


@dataclass(frozen=True)
class EncryptionSection:
    # R-CLASS-1: key folders outside the catalog and the object store (archive/keystore.py).
    kek_dir: str
    vault_dir: str


@dataclass(frozen=True)
class NotificationsSection:
    # R-REVOKE-1: delivery of recorded notifications (an outbox; see docs/notifications.md).
    smtp_host: str  # empty: no e-mail
    smtp_port: int
    smtp_starttls: bool
    smtp_username: str
    smtp_password_file: str
    sender: str
    webhook_secret_file: str  # HMAC-SHA256 key signing webhook bodies; empty: unsigned
    timeout_seconds: int
    max_attempts: int


@dataclass(frozen=True)
class RenditionsSection:
    # R-CONV-2: paper renditions with a verification QR code.
    public_url: str  # base URL of the public verification pages
    font_file: str  # a TrueType font with Vietnamese glyphs; empty: the bundled default
    verify_rate_per_minute: int  # per client address, on the public verification page


@dataclass(frozen=True)
class SealingSection:
    # R-SEAL-1: put seal manifests (and sealed packages) under S3 legal hold where the
    # bucket has Object Lock.
    legal_hold: bool


@dataclass(frozen=True)
class DigitisationSection:
    # R-CONV-1: the organisations' signing keys for digitised copies: either files
    # <key_dir>/<organisation identifier>.key.pem + .cert.pem (+ .chain.pem), or a
    # PKCS#11 token holding a key labelled with the organisation identifier.
    key_dir: str  # empty: <data_dir>/keys/organisations
    pkcs11_module: str  # empty: key files
    pkcs11_token_label: str
    pkcs11_pin_file: str


# R-SIG-1: the roles a document type's signature policy can require. A signature's
# role is decided by the binding of its certificate to a registered agent.
SIGNATURE_ROLES = ("person", "organisation")
# A type that does not say: a document with the value of a signed and stamped paper.
DEFAULT_SIGNATURES = ("person", "organisation")


@dataclass(frozen=True)
class DocumentType:
    code: str
    label: str
    # R-SIG-1: signatures a document of this type must carry (see signature_policy.py).
    signatures: tuple[str, ...] = DEFAULT_SIGNATURES


@dataclass(frozen=True)
class RetentionRule:
    code: str
    label: str
    period: int | None  # years; None = permanent
    counted_from: str


_SECTIONS: dict[str, type] = {
    "archive": ArchiveSection,
    "database": DatabaseSection,
    "storage": StorageSection,
    "fixity": FixitySection,
    "scheduler": SchedulerSection,
    "backup": BackupSection,
    "timestamps": TimestampsSection,
    "ingest": IngestSection,
    "audit": AuditSection,
    "identifiers": IdentifiersSection,
    "metadata": MetadataSection,
    "server": ServerSection,
    "signatures": SignaturesSection,
    "encryption": EncryptionSection,
    "auth": AuthSection,
    "notifications": NotificationsSection,
    "renditions": RenditionsSection,
    "sealing": SealingSection,
    "digitisation": DigitisationSection,
}
# Sections that are maps of named entries, each entry with these keys.
_TABLES: dict[str, set[str]] = {
    "document_types": {"label", "signatures"},
    "retention": {"label", "period", "counted_from"},
}


@dataclass(frozen=True)
class Settings:
    archive: ArchiveSection
    database: DatabaseSection
    storage: StorageSection
    fixity: FixitySection
    scheduler: SchedulerSection
    backup: BackupSection
    timestamps: TimestampsSection
    ingest: IngestSection
    audit: AuditSection
    identifiers: IdentifiersSection
    metadata: MetadataSection
    server: ServerSection
    signatures: SignaturesSection
    encryption: EncryptionSection
    auth: AuthSection
    notifications: NotificationsSection
    renditions: RenditionsSection
    sealing: SealingSection
    digitisation: DigitisationSection
    document_types: Mapping[str, DocumentType]
    retention: Mapping[str, RetentionRule]
    source: tuple[str, ...] = ()  # where the values came from, for `archive config show`

    # ---- derived paths --------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return Path(self.archive.data_dir).expanduser().resolve()

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'catalog.sqlite3'}"

    @property
    def local_store_path(self) -> Path:
        if self.storage.local_path:
            return Path(self.storage.local_path).expanduser().resolve()
        return self.data_dir / "objects"

    @property
    def backup_local_path(self) -> Path:
        if self.backup.local_path:
            return Path(self.backup.local_path).expanduser().resolve()
        return self.data_dir / "backup"

    def backup_s3_secret(self) -> str:
        return _secret(self.backup.s3_secret_key, self.backup.s3_secret_key_file,
                       "backup.s3_secret_key_file")

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    def s3_secret(self) -> str:
        return _secret(self.storage.s3_secret_key, self.storage.s3_secret_key_file,
                       "storage.s3_secret_key_file")


def _secret(value: str, file: str, key: str) -> str:
    if value:
        return value
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {exc.filename}: {exc.strerror}") from exc
    return ""


def load_settings(
    config_file: str | os.PathLike | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build the settings from defaults, the config file and the environment.

    ``config_file`` defaults to ``$ARCHIVE_CONFIG``; ``overrides`` (tests) apply last.
    """
    env = os.environ if environ is None else environ
    raw = _read_toml(DEFAULTS_FILE)
    sources = [str(DEFAULTS_FILE)]
    path = config_file if config_file is not None else env.get("ARCHIVE_CONFIG")
    if path:
        user = _read_toml(Path(path))
        _check_known(user, raw, str(path))
        _merge(raw, user)
        sources.append(str(path))
    env_values = _from_environment(env, raw)
    if env_values:
        _merge(raw, env_values)
        sources.append("environment")
    if overrides:
        plain = {k: dict(v) for k, v in overrides.items()}
        _check_known(plain, raw, "overrides")
        _merge(raw, plain)
    return _build(raw, tuple(sources))


# ---- internals ----------------------------------------------------------------------


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from exc


def _check_known(user: dict, defaults: dict, where: str) -> None:
    for section, values in user.items():
        if section not in _SECTIONS and section not in _TABLES:
            raise ConfigError(f"{where}: unknown configuration section [{section}]")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        if section in _TABLES:
            allowed = _TABLES[section]
            for name, entry in values.items():
                if not isinstance(entry, dict):
                    raise ConfigError(f"{where}: [{section}.{name}] must be a table")
                for key in entry:
                    if key not in allowed:
                        raise ConfigError(
                            f"{where}: unknown configuration key {section}.{name}.{key}"
                        )
            continue
        for key in values:
            if key not in defaults[section]:
                raise ConfigError(f"{where}: unknown configuration key {section}.{key}")


def _merge(base: dict, extra: dict) -> None:
    for section, values in extra.items():
        target = base.setdefault(section, {})
        if section in _TABLES:
            for name, entry in values.items():
                target.setdefault(name, {}).update(entry)
        else:
            target.update(values)


def _from_environment(env: Mapping[str, str], defaults: dict) -> dict:
    out: dict[str, dict] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX):].partition("__")
        section, key = section.lower(), key.lower()
        if section not in _SECTIONS:
            raise ConfigError(f"environment variable {name}: unknown section [{section}]")
        if key not in defaults[section]:
            raise ConfigError(
                f"environment variable {name}: unknown configuration key {section}.{key}"
            )
        out.setdefault(section, {})[key] = _coerce_env(name, value, defaults[section][key])
    return out


def _coerce_env(name: str, value: str, default: Any) -> Any:
    if isinstance(default, bool):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"environment variable {name}: expected true/false, got {value!r}")
    if isinstance(default, int):
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"environment variable {name}: expected an integer, "
                              f"got {value!r}") from exc
    if isinstance(default, list):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"environment variable {name}: invalid JSON list") from exc
            return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _typed(section: str, key: str, value: Any, expected: Any) -> Any:
    """Check ``value`` against the type of the dataclass field ``expected``."""
    type_name = expected if isinstance(expected, str) else getattr(expected, "__name__", "")
    if type_name == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{section}.{key}: expected true or false, got {value!r}")
    elif type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{section}.{key}: expected an integer, got {value!r}")
    elif type_name == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{section}.{key}: expected a string, got {value!r}")
    elif type_name.startswith("tuple"):
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{section}.{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    return value


def _build(raw: dict, sources: tuple[str, ...]) -> Settings:
    built: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = raw.get(section, {})
        kwargs = {}
        for f in fields(cls):
            if f.name not in values:
                raise ConfigError(f"{section}.{f.name}: missing from configuration")
            kwargs[f.name] = _typed(section, f.name, values[f.name], f.type)
        built[section] = cls(**kwargs)

    built["document_types"] = {
        code: DocumentType(code=code, label=str(entry.get("label", code)),
                           signatures=_signature_roles(code, entry))
        for code, entry in raw.get("document_types", {}).items()
    }
    rules = {}
    for code, entry in raw.get("retention", {}).items():
        period = entry.get("period")
        if period == "permanent":
            years = None
        elif isinstance(period, int) and not isinstance(period, bool) and period > 0:
            years = period
        else:
            raise ConfigError(
                f"retention.{code}.period: expected a positive number of years or "
                f"\"permanent\", got {period!r}"
            )
        rules[code] = RetentionRule(code=code, label=str(entry.get("label", code)),
                                    period=years,
                                    counted_from=str(entry.get("counted_from", "date")))
    built["retention"] = rules
    settings = Settings(**built, source=sources)
    _validate(settings)
    return settings


def _signature_roles(code: str, entry: dict) -> tuple[str, ...]:
    """``document_types.CODE.signatures``: a non-empty list of distinct roles (R-SIG-1)."""
    key = f"document_types.{code}.signatures"
    value = entry.get("signatures", list(DEFAULT_SIGNATURES))
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key}: expected a list of roles ({', '.join(SIGNATURE_ROLES)}), "
                          f"got {value!r}")
    if not value:
        raise ConfigError(f"{key}: must require at least one signature "
                          f"({', '.join(SIGNATURE_ROLES)})")
    for role in value:
        if role not in SIGNATURE_ROLES:
            raise ConfigError(f"{key}: unknown signature role {role!r} (expected "
                              f"{' or '.join(repr(r) for r in SIGNATURE_ROLES)})")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key}: a role is listed twice in {value!r}")
    return tuple(r for r in SIGNATURE_ROLES if r in value)


def _validate(s: Settings) -> None:
    if s.storage.backend not in ("local", "s3"):
        raise ConfigError(f"storage.backend: expected \"local\" or \"s3\", "
                          f"got {s.storage.backend!r}")
    if s.storage.backend == "s3":
        for key in ("s3_endpoint", "s3_bucket"):
            if not getattr(s.storage, key):
                raise ConfigError(f"storage.{key}: required when storage.backend is \"s3\"")
    if s.storage.s3_object_lock not in ("auto", "off"):
        raise ConfigError("storage.s3_object_lock: expected \"auto\" or \"off\"")
    algos = [a.lower() for a in s.fixity.algorithms]
    for required in REQUIRED_ALGORITHMS:
        if required not in algos:
            raise ConfigError(f"fixity.algorithms: must include {required} (R-FIX-1)")
    for algo in algos:
        if algo not in hashlib.algorithms_guaranteed:
            raise ConfigError(f"fixity.algorithms: unknown digest algorithm {algo!r}")
    if s.fixity.workers < 1:
        raise ConfigError("fixity.workers: must be at least 1")
    if s.fixity.chunk_size < 4096:
        raise ConfigError("fixity.chunk_size: must be at least 4096")
    if s.fixity.cycle_days < 1:
        raise ConfigError("fixity.cycle_days: must be at least 1")
    if s.fixity.max_bytes_per_second < 0:
        raise ConfigError("fixity.max_bytes_per_second: must not be negative (0 = no limit)")
    _validate_preservation(s)
    for key in ("organisation_pattern", "person_pattern"):
        try:
            re.compile(getattr(s.identifiers, key))
        except re.error as exc:
            raise ConfigError(f"identifiers.{key}: not a valid regular expression: {exc}") \
                from exc
    if not s.document_types:
        raise ConfigError("document_types: at least one document type is required")
    if not s.retention:
        raise ConfigError("retention: at least one retention rule is required")
    for rule in s.retention.values():
        if rule.counted_from not in ("date", "sent_at", "received_at"):
            raise ConfigError(f"retention.{rule.code}.counted_from: expected date, sent_at "
                              f"or received_at, got {rule.counted_from!r}")
    if not 0 < s.server.port < 65536:
        raise ConfigError("server.port: must be between 1 and 65535")
    if s.signatures.revocation_mode not in REVOCATION_MODES:
        raise ConfigError("signatures.revocation_mode: expected "
                          f"{', '.join(repr(m) for m in REVOCATION_MODES)}, "
                          f"got {s.signatures.revocation_mode!r}")
    if s.signatures.fetch_timeout < 1:
        raise ConfigError("signatures.fetch_timeout: must be at least 1 second")
    _validate_auth(s.auth)


def _validate_preservation(s: Settings) -> None:
    sch = s.scheduler
    for key in ("lease_seconds", "poll_seconds", "batch_size"):
        if getattr(sch, key) < 1:
            raise ConfigError(f"scheduler.{key}: must be at least 1")
    for key in ("fixity_every_minutes", "backup_every_minutes", "retention_every_minutes",
                "timestamps_every_minutes", "notifications_every_minutes",
                "repackage_every_minutes"):
        if getattr(sch, key) < 0:
            raise ConfigError(f"scheduler.{key}: must not be negative (0 = never)")
    b = s.backup
    if b.backend not in ("none", "local", "s3"):
        raise ConfigError(f"backup.backend: expected \"none\", \"local\" or \"s3\", "
                          f"got {b.backend!r}")
    if b.backend == "s3":
        for key in ("s3_endpoint", "s3_bucket"):
            if not getattr(b, key):
                raise ConfigError(f"backup.{key}: required when backup.backend is \"s3\"")
        if (b.s3_endpoint, b.s3_bucket) == (s.storage.s3_endpoint, s.storage.s3_bucket):
            raise ConfigError("backup: the backup bucket must not be the primary store's "
                              "bucket (R-BACKUP-1: an independent copy)")
    if b.backend == "local" and s.storage.backend == "local" and (
            s.backup_local_path == s.local_store_path
            or s.local_store_path in s.backup_local_path.parents
            or s.backup_local_path in s.local_store_path.parents):
        raise ConfigError("backup.local_path: must not be inside the primary store's "
                          "folder nor contain it (R-BACKUP-1: an independent copy)")
    if b.keep_catalog_backups < 1:
        raise ConfigError("backup.keep_catalog_backups: must be at least 1")
    t = s.timestamps
    if t.renew_before_days < 1:
        raise ConfigError("timestamps.renew_before_days: must be at least 1")
    if t.hash_algorithm not in ("sha256", "sha384", "sha512"):
        raise ConfigError("timestamps.hash_algorithm: expected sha256, sha384 or sha512")
    if t.hash_algorithm in t.weak_algorithms:
        raise ConfigError("timestamps.hash_algorithm: listed in timestamps.weak_algorithms")


def _validate_auth(auth: AuthSection) -> None:
    for key in ("session_idle_minutes", "session_max_hours", "backoff_after",
                "lockout_after", "lockout_minutes", "token_max_days"):
        if getattr(auth, key) < 1:
            raise ConfigError(f"auth.{key}: must be at least 1")
    if auth.backoff_max_seconds < 0:
        raise ConfigError("auth.backoff_max_seconds: must not be negative")
    if auth.lockout_after < auth.backoff_after:
        raise ConfigError("auth.lockout_after: must not be below auth.backoff_after")
    if auth.min_password_length < 8:
        raise ConfigError("auth.min_password_length: must be at least 8")
    if auth.cookie_secure not in COOKIE_SECURE_MODES:
        raise ConfigError("auth.cookie_secure: expected "
                          f"{', '.join(repr(m) for m in COOKIE_SECURE_MODES)}, "
                          f"got {auth.cookie_secure!r}")
    if auth.client_cert_header and not auth.trusted_proxies:
        raise ConfigError("auth.client_cert_header: set auth.trusted_proxies too (the "
                          "addresses of the TLS proxies allowed to pass a certificate)")
