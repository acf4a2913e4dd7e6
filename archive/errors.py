"""The archive's error hierarchy.

Every error the core raises derives from :class:`ArchiveError`. Each surface maps
errors to people in exactly one place: the CLI wrapper (message + exit code, see
``cli/main.py``) and, later, the Flask error-handler table (RFC 9457 problems).

``exit_code`` follows the CLI contract: 1 a check found a problem, 2 bad input or
usage, 3 refused by permission or rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ArchiveError(Exception):
    """Root of every error raised by the archive."""

    exit_code = 2
    # An audit entry (keyword arguments of ``audit.append``) to write after the failed use
    # case rolled back, e.g. a view of a record that does not exist (R-AUDIT-1).
    audit_after_rollback: dict | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict:
        return {"error": type(self).__name__, "message": self.message}


# ---- bad input (exit 2) -------------------------------------------------------------


class ConfigError(ArchiveError):
    """The configuration is invalid (unknown key, wrong type, missing value)."""


class InputError(ArchiveError):
    """A command was given something it cannot use (missing file, bad argument)."""


@dataclass
class FieldProblem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class MetadataInvalid(InputError):
    """Descriptive metadata failed validation; every bad field is listed (R-META-1)."""

    def __init__(self, source: str, problems: list[FieldProblem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid metadata in {source}:\n{lines}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["source"] = self.source
        d["problems"] = [{"field": p.field, "message": p.message} for p in self.problems]
        return d


class AipSpecInvalid(InputError):
    """The package description cannot make a valid AIP; every problem is listed."""

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        super().__init__("cannot build AIP:\n" + "\n".join(f"  - {p}" for p in problems))


class NotFound(InputError):
    """A named thing (record, agent, package) does not exist in the catalog."""


class NotInitialised(InputError):
    """The data directory or catalog has not been initialised (run ``archive init``)."""


# ---- refused by rule or permission (exit 3) -----------------------------------------


class Refused(ArchiveError):
    """A rule forbids the requested action (classification, seal, retention ...)."""

    exit_code = 3


class SubmissionRefused(Refused):
    """A submission was not archived; its return-to-sender report is stored (R-SIG-2)."""

    def __init__(self, message: str, submission_id: str, report: dict):
        self.submission_id = submission_id
        self.report = report
        super().__init__(message)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(submission_id=self.submission_id, report=self.report)
        return d


@dataclass
class _Denial:
    principal: str
    action: str
    target: str
    reason: str


class AccessDenied(Refused):
    """The policy decision point denied an action to a principal.

    ``logged`` becomes true once the denial is in the audit log (R-AUDIT-1): a unit of
    work that sees it go by writes it; a surface that catches one not yet logged
    writes it itself.
    """

    def __init__(self, principal: str, action: str, target: str, reason: str, *,
                 client: str = ""):
        self.denial = _Denial(principal, action, target, reason)
        self.client = client
        self.logged = False
        super().__init__(f"{principal} may not {action} {target}: {reason}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(action=self.denial.action, target=self.denial.target,
                 reason=self.denial.reason)
        return d


class NotAuthenticated(AccessDenied):
    """No valid credentials came with the request (HTTP 401)."""


# ---- catalog database ---------------------------------------------------------------


class DatabaseUnavailable(ArchiveError):
    """The catalog database cannot be reached (server down, bad URL, unreadable file)."""

    exit_code = 2

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = reason
        super().__init__(f"catalog database unavailable ({url}): {reason}")


# ---- storage ------------------------------------------------------------------------


class StorageError(ArchiveError):
    """The object store failed or is unreachable."""

    exit_code = 1


class StoreUnavailable(StorageError):
    """The object store cannot be reached or refused our credentials."""

    exit_code = 2


class ObjectNotFound(StorageError):
    def __init__(self, key: str):
        self.key = key
        super().__init__(f"object not found in store: {key}")


class ObjectExists(StorageError):
    """Put-if-absent found the key already present: nothing was overwritten."""

    def __init__(self, key: str):
        self.key = key
        super().__init__(f"object already exists in store (never overwritten): {key}")


# ---- integrity (exit 1) -------------------------------------------------------------


class IntegrityError(ArchiveError):
    """Stored bytes or the audit log do not match what was recorded."""

    exit_code = 1


class FixityMismatch(IntegrityError):
    def __init__(self, path: str, algorithm: str, expected: str, found: str):
        self.path = path
        self.algorithm = algorithm
        self.expected = expected
        self.found = found
        super().__init__(
            f"fixity mismatch for {path}: {algorithm} expected {expected}, found {found}"
        )

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(path=self.path, algorithm=self.algorithm, expected=self.expected,
                 found=self.found)
        return d


class SizeMismatch(IntegrityError):
    def __init__(self, path: str, expected: int, found: int):
        self.path = path
        self.expected = expected
        self.found = found
        super().__init__(f"size mismatch for {path}: expected {expected} bytes, found {found}")


class DecryptionFailed(IntegrityError):
    """Encrypted bytes did not authenticate (R-CLASS-1): tampered or truncated
    ciphertext, a wrong tag, or a ciphertext bound to another record or file."""

    def __init__(self, target: str, reason: str):
        self.target = target
        self.reason = reason
        super().__init__(f"decryption of {target} failed: {reason}")

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(target=self.target, reason=self.reason)
        return d


# ---- encryption keys (R-CLASS-1, R-DESTROY-1) ---------------------------------------


class EncryptionKeyError(ArchiveError):
    """A key needed to encrypt or decrypt classified content cannot be used."""

    exit_code = 1


class KeyMissing(EncryptionKeyError):
    """A key-encryption key (KEK) is not in the key folder (never created, retired,
    or the folder is not the configured one)."""

    def __init__(self, key_id: str, message: str):
        self.key_id = key_id
        super().__init__(message)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["key_id"] = self.key_id
        return d


class DataKeyDestroyed(KeyMissing):
    """A data key (DEK) is not in the key vault: destroyed (crypto-shredded,
    R-DESTROY-1) or never stored. What it encrypted can no longer be read."""

    def __init__(self, dek_id: str):
        super().__init__(dek_id, f"data key {dek_id} is not in the key vault: it was "
                                 "destroyed (crypto-shredded) or never stored; the content "
                                 "it encrypted cannot be decrypted")


class KeyUnusable(EncryptionKeyError):
    """A key file exists but cannot be used (unreadable, malformed, too open
    permissions, or a wrapped key that does not unwrap under its KEK)."""

    def __init__(self, key_id: str, path: str, reason: str):
        self.key_id = key_id
        self.path = path
        self.reason = reason
        super().__init__(f"key {key_id} ({path}) cannot be used: {reason}")


class KeyInUse(Refused):
    """A KEK cannot be retired: it is active or still wraps data keys."""

    def __init__(self, kek_id: str, reason: str):
        self.kek_id = kek_id
        super().__init__(f"key-encryption key {kek_id} cannot be retired: {reason}")


@dataclass
class Problem:
    """One problem found by a check that examines many things."""

    code: str
    message: str
    target: str = ""
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"code": self.code, "message": self.message, "target": self.target}
        if self.detail:
            d["detail"] = self.detail
        return d


class UnsafeBag(IntegrityError):
    """A serialised bag is hostile or broken (R-PKG-1): refused, never extracted."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("unsafe or invalid bag:\n"
                         + "\n".join(f"  - {p.target}: {p.message}" for p in problems))
