"""The S3 object store (boto3), checked against SeaweedFS (R-REPO-1, R-FIX-1).

Rules kept here:
- Never overwrite: every PUT and CompleteMultipartUpload carries ``If-None-Match: *``
  (a 412 becomes ``ObjectExists``); multipart uploads also HEAD the key first.
- Every write carries a SHA-256 checksum the server verifies (``BadDigest`` becomes
  ``IntegrityError``); it is computed while streaming when the caller did not give it.
  A seekable input is read twice (hash, then send); a non-seekable one is spooled to
  temp files (up to the multipart threshold, then one part at a time): memory holds a
  chunk, never the object.
- Object Lock (when the bucket has it, ``object_lock='auto'`` and ``retention_days``)
  puts COMPLIANCE retention on every object; ``delete`` removes every version for real
  and a lock refusal becomes ``Refused``.
- Every botocore error is translated by :meth:`S3Store._translate`; none leaks.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from archive.clock import Clock, SystemClock
from archive.digests import CHUNK, DEFAULT_ALGORITHMS, MultiHasher
from archive.errors import (
    ArchiveError,
    ConfigError,
    FixityMismatch,
    InputError,
    IntegrityError,
    ObjectExists,
    ObjectNotFound,
    Refused,
    SizeMismatch,
    StorageError,
    StoreUnavailable,
)
from archive.storage import check_range, check_sha256, validate_key, validate_prefix
from archive.storage.base import ObjectInfo, PutResult

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3: every part but the last
MAX_PARTS = 10_000
CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied",
                              "InvalidToken", "ExpiredToken", "AuthorizationHeaderMalformed",
                              "InvalidSecurity", "403", "Forbidden"})
DIGEST_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch",
                          "XAmzContentChecksumMismatch", "InvalidChecksum"})
UNREACHABLE = (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
               BotoConnectionError)


class S3Store:
    """Objects in one bucket of an S3-compatible server."""

    def __init__(self, endpoint: str, bucket: str, *, region: str = "us-east-1",
                 access_key: str, secret_key: str, path_style: bool = True,
                 object_lock: str = "auto", retention_days: int = 0, timeout: float = 10,
                 max_attempts: int = 3, multipart_threshold: int = 64 * MiB,
                 part_size: int = 16 * MiB, list_page_size: int = 1000,
                 spool_dir: str | None = None, clock: Clock | None = None):
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"storage.s3_endpoint: expected an http:// or https:// URL, "
                              f"got {endpoint!r}")
        if not bucket:
            raise ConfigError("storage.s3_bucket: required")
        if not access_key or not secret_key:
            raise ConfigError("storage.s3_access_key and the S3 secret key are required "
                              "(ARCHIVE_STORAGE__S3_SECRET_KEY or storage.s3_secret_key_file)")
        if object_lock not in ("auto", "off"):
            raise ConfigError(f"storage.s3_object_lock: expected \"auto\" or \"off\", "
                              f"got {object_lock!r}")
        if retention_days < 0:
            raise ConfigError("storage.s3_retention_days: must be 0 or more")
        if part_size < MIN_PART_SIZE:
            raise ConfigError(f"S3 part size must be at least {MIN_PART_SIZE} bytes")
        if multipart_threshold < 0 or not 1 <= list_page_size <= 1000:
            raise ConfigError("S3 multipart threshold must be >= 0 and the list page size "
                              "between 1 and 1000")
        self.endpoint = endpoint.rstrip("/")
        self.bucket = bucket
        self.access_key = access_key
        self.name = f"s3:{bucket}@{self.endpoint}"
        self.object_lock = object_lock
        self.retention_days = retention_days
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.list_page_size = list_page_size
        self.spool_dir = spool_dir
        self.clock = clock or SystemClock()
        self._lock_enabled: bool | None = None
        config = Config(
            region_name=region, signature_version="s3v4",
            connect_timeout=timeout, read_timeout=timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path" if path_style else "virtual"},
            # We send SHA-256 ourselves; botocore's automatic CRC32 would be a second
            # checksum, and validating a full-object checksum on a ranged GET fails.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        try:
            session = boto3.session.Session(aws_access_key_id=access_key,
                                            aws_secret_access_key=secret_key,
                                            region_name=region)
            self._s3 = session.client("s3", endpoint_url=self.endpoint, config=config)
        except (BotoCoreError, ValueError) as exc:
            raise ConfigError(f"cannot configure the S3 client for {self.endpoint}: {exc}") \
                from exc

    # ---- setup and health ----------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP connections (the store is unusable afterwards)."""
        self._s3.close()

    def check(self) -> None:
        with self._errors("check bucket"):
            self._s3.head_bucket(Bucket=self.bucket)

    def create_bucket(self, object_lock: bool = False) -> None:
        """Create the bucket (``archive init``); with Object Lock it is also versioned.

        An existing bucket of ours is accepted unless Object Lock was asked for and the
        bucket does not have it.
        """
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        region = self._s3.meta.region_name
        if region and region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        if object_lock:
            kwargs["ObjectLockEnabledForBucket"] = True
        try:
            self._s3.create_bucket(**kwargs)
        except ClientError as exc:
            code = _code(exc)
            if code == "BucketAlreadyOwnedByYou":
                if object_lock and not self.object_lock_enabled():
                    raise StorageError(f"bucket {self.bucket} already exists at "
                                       f"{self.endpoint} without Object Lock; it cannot be "
                                       "added by create_bucket") from exc
                return
            if code == "BucketAlreadyExists":
                raise StoreUnavailable(f"bucket name {self.bucket} is taken by another "
                                       f"account at {self.endpoint}") from exc
            raise self._translate(exc, "create bucket") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "create bucket") from exc
        self._lock_enabled = None

    def object_lock_enabled(self) -> bool:
        """Whether the bucket has Object Lock enabled (cached per store)."""
        if self._lock_enabled is None:
            try:
                cfg = self._s3.get_object_lock_configuration(Bucket=self.bucket)
                enabled = (cfg.get("ObjectLockConfiguration", {})
                           .get("ObjectLockEnabled") == "Enabled")
            except ClientError as exc:
                if _code(exc) != "ObjectLockConfigurationNotFoundError":
                    raise self._translate(exc, "read Object Lock configuration") from exc
                enabled = False
            except BotoCoreError as exc:
                raise self._translate(exc, "read Object Lock configuration") from exc
            self._lock_enabled = enabled
        return self._lock_enabled

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Put (``on``) or lift a legal hold on ``key``: while on, no deletion."""
        key = validate_key(key)
        self._head(key)
        if not self.object_lock_enabled():
            raise InputError(f"bucket {self.bucket} has no Object Lock: legal holds are "
                             "not available")
        with self._errors("set legal hold on", key):
            self._s3.put_object_legal_hold(Bucket=self.bucket, Key=key,
                                           LegalHold={"Status": "ON" if on else "OFF"})

    def legal_hold(self, key: str) -> bool:
        """Whether a legal hold is on for ``key``."""
        return bool(self.stat(key).extra.get("legal_hold"))

    def set_retention(self, key: str, until: datetime) -> datetime:
        """Keep ``key`` under COMPLIANCE retention until ``until`` (R-DESTROY-1): nobody,
        not even the storage credentials' owner, can delete it earlier. Retention is only
        ever extended: an earlier date than the one in force is kept as it is. Returns the
        date in force."""
        key = validate_key(key)
        if until.tzinfo is None:
            raise InputError("retention date must be an aware datetime")
        if not self.object_lock_enabled():
            raise InputError(f"bucket {self.bucket} has no Object Lock: retention is "
                             "not available")
        until = until.astimezone(UTC).replace(microsecond=0)
        current = self.stat(key).extra.get("retain_until")
        if current is not None and current >= until:
            return current
        with self._errors("set retention on", key):
            self._s3.put_object_retention(
                Bucket=self.bucket, Key=key,
                Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until})
        return until

    # ---- writing -------------------------------------------------------------------

    def put(self, key: str, stream: BinaryIO, *, size: int | None = None,
            algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
            sha256: str | None = None) -> PutResult:
        key = validate_key(key)
        expected = check_sha256(sha256)
        names = tuple(dict.fromkeys((*algorithms, "sha256")))
        try:
            MultiHasher(names)
        except ValueError as exc:
            raise InputError(f"unknown digest algorithm in {algorithms!r}") from exc
        lock_args, locked_until = self._lock_args()
        if _seekable(stream):
            start = stream.tell()
            total = stream.seek(0, io.SEEK_END) - start
            stream.seek(start)
            if size is not None and size != total:
                raise SizeMismatch(key, size, total)
            if total <= self.multipart_threshold:
                digests = self._put_single(key, _Window(stream, start, total), total,
                                           expected, names, lock_args)
            else:
                digests, total = self._put_multipart(
                    key, lambda h: self._window_parts(stream, start, total, h, key),
                    expected, names, size, lock_args)
        else:
            # Not seekable: spool to disk up to the threshold (a single PUT needs its
            # checksum before the first byte is sent); past it, each part goes through
            # a temp file too, so memory holds one chunk, never a part or the object.
            with tempfile.TemporaryFile(dir=self.spool_dir) as spool:
                copied = _copy_upto(stream, spool, self.multipart_threshold + 1)
                if copied <= self.multipart_threshold:
                    if size is not None and size != copied:
                        raise SizeMismatch(key, size, copied)
                    total = copied
                    digests = self._put_single(key, _Window(spool, 0, copied), copied,
                                               expected, names, lock_args)
                else:
                    spool.seek(0)
                    reader = _Concat(spool, stream)
                    with tempfile.TemporaryFile(dir=self.spool_dir) as part_file:
                        digests, total = self._put_multipart(
                            key, lambda h: self._spooled_parts(reader, part_file, h),
                            expected, names, size, lock_args)
        return PutResult(key=key, size=total, digests={a: digests[a] for a in algorithms},
                         locked_until=locked_until)

    def replace_damaged(self, key: str, stream: BinaryIO, *, size: int, sha256: str,
                        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS) -> PutResult:
        """Repair only (see the protocol): spool while hashing, refuse a size or SHA-256
        mismatch, then PUT without ``If-None-Match`` (with the checksum). With Object
        Lock this adds a version (retained as usual); the damaged one stays as evidence."""
        key = validate_key(key)
        expected = check_sha256(sha256)
        if expected is None:
            raise InputError("replace_damaged needs the expected sha256")
        names = tuple(dict.fromkeys((*algorithms, "sha256")))
        try:
            hasher = MultiHasher(names)
        except ValueError as exc:
            raise InputError(f"unknown digest algorithm in {algorithms!r}") from exc
        lock_args, locked_until = self._lock_args()
        with tempfile.TemporaryFile(dir=self.spool_dir) as spool:
            while chunk := stream.read(CHUNK):
                hasher.update(chunk)
                spool.write(chunk)
            spool.flush()
            if hasher.size != size:
                raise SizeMismatch(key, size, hasher.size)
            if hasher.hexdigests()["sha256"] != expected:
                raise FixityMismatch(key, "sha256", expected, hasher.hexdigests()["sha256"])
            if size <= self.multipart_threshold:
                digests = self._put_single(key, _Window(spool, 0, size), size, expected,
                                           names, lock_args, overwrite=True)
            else:
                digests, _ = self._put_multipart(
                    key, lambda h: self._window_parts(spool, 0, size, h, key), expected,
                    names, size, lock_args, overwrite=True)
        return PutResult(key=key, size=size, digests={a: digests[a] for a in algorithms},
                         locked_until=locked_until)

    def _put_single(self, key: str, body: _Window, total: int, expected: str | None,
                    names: tuple[str, ...], lock_args: dict,
                    overwrite: bool = False) -> dict[str, str]:
        # Pass 1: hash. Pass 2: send with the SHA-256 the server verifies, so bytes
        # that changed between the passes are refused (BadDigest), never stored.
        hasher = MultiHasher(names)
        _feed(body, hasher, total, key)
        digests = hasher.hexdigests()
        if expected is not None and digests["sha256"] != expected:
            raise FixityMismatch(key, "sha256", expected, digests["sha256"])
        body.seek(0)
        with self._errors("put", key):
            # IfNoneMatch is left out only by replace_damaged (a proven-damaged object).
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentLength=total,
                                ChecksumSHA256=_b64(bytes.fromhex(digests["sha256"])),
                                **({} if overwrite else {"IfNoneMatch": "*"}), **lock_args)
        return digests

    def _window_parts(self, stream: BinaryIO, start: int, total: int, hasher: MultiHasher,
                      key: str) -> Iterator[tuple[Any, int, bytes]]:
        for offset in range(0, total, self.part_size):
            n = min(self.part_size, total - offset)
            window = _Window(stream, start + offset, n)
            part_hash = hashlib.sha256()
            _feed(window, hasher, n, key, also=part_hash)
            window.seek(0)
            yield window, n, part_hash.digest()

    def _spooled_parts(self, reader: _Concat, part_file: Any, hasher: MultiHasher
                       ) -> Iterator[tuple[Any, int, bytes]]:
        # Each part is uploaded before the next overwrites the temp file.
        while True:
            part_file.seek(0)
            part_file.truncate()
            part_hash = hashlib.sha256()
            n = 0
            while n < self.part_size:
                data = reader.read(min(CHUNK, self.part_size - n))
                if not data:
                    break
                hasher.update(data)
                part_hash.update(data)
                part_file.write(data)
                n += len(data)
            if not n:
                return
            part_file.flush()
            yield _Window(part_file, 0, n), n, part_hash.digest()

    def _put_multipart(self, key: str, parts: Callable[[MultiHasher], Iterator],
                       expected: str | None, names: tuple[str, ...], size: int | None,
                       lock_args: dict, overwrite: bool = False
                       ) -> tuple[dict[str, str], int]:
        if not overwrite and self._head_or_none(key) is not None:
            raise ObjectExists(key)
        hasher = MultiHasher(names)
        with self._errors("start multipart upload of", key):
            upload_id = self._s3.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256", **lock_args
            )["UploadId"]
        try:
            done = []
            for number, (body, n, digest) in enumerate(parts(hasher), start=1):
                if number > MAX_PARTS:
                    raise InputError(f"object {key} needs more than {MAX_PARTS} parts of "
                                     f"{self.part_size} bytes")
                checksum = _b64(digest)
                with self._errors("upload part of", key):
                    reply = self._s3.upload_part(
                        Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=number,
                        Body=body, ContentLength=n, ChecksumSHA256=checksum)
                done.append({"PartNumber": number, "ETag": reply["ETag"],
                             "ChecksumSHA256": checksum})
            digests = hasher.hexdigests()
            if size is not None and size != hasher.size:
                raise SizeMismatch(key, size, hasher.size)
            if expected is not None and digests["sha256"] != expected:
                raise FixityMismatch(key, "sha256", expected, digests["sha256"])
            with self._errors("complete multipart upload of", key):
                self._s3.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": done},
                    **({} if overwrite else {"IfNoneMatch": "*"}))
        except BaseException:
            with suppress(ClientError, BotoCoreError):
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                UploadId=upload_id)
            raise
        return digests, hasher.size

    def _lock_args(self) -> tuple[dict, datetime | None]:
        if self.object_lock != "auto" or self.retention_days <= 0:
            return {}, None
        if not self.object_lock_enabled():
            return {}, None
        until = (self.clock.now().astimezone(UTC).replace(microsecond=0)
                 + timedelta(days=self.retention_days))
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}, until

    # ---- reading -------------------------------------------------------------------

    def open(self, key: str, start: int = 0, length: int | None = None) -> BinaryIO:
        key = validate_key(key)
        start, length = check_range(start, length)
        if length == 0:
            self._head(key)
            return io.BytesIO(b"")
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if length is not None:
            kwargs["Range"] = f"bytes={start}-{start + length - 1}"
        elif start:
            kwargs["Range"] = f"bytes={start}-"
        try:
            reply = self._s3.get_object(**kwargs)
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # start at or past the end: no bytes
                self._head(key)
                return io.BytesIO(b"")
            raise self._translate(exc, "read", key) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "read", key) from exc
        return _BodyReader(reply["Body"], self, key)  # type: ignore[return-value]

    def stat(self, key: str) -> ObjectInfo:
        key = validate_key(key)
        return _object_info(key, self._head(key))

    def exists(self, key: str) -> bool:
        key = validate_key(key)
        return self._head_or_none(key) is not None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under ``prefix``, each once, fetched a page at a time, in the server's
        order: AWS sorts by UTF-8 bytes, SeaweedFS walks its folder tree ('a/b' before
        'a-b'). Sort the result if order matters."""
        prefix = validate_prefix(prefix)
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix,
            PaginationConfig={"PageSize": self.list_page_size})
        with self._errors("list"):
            for page in pages:
                for item in page.get("Contents", ()):
                    yield ObjectInfo(key=item["Key"], size=item["Size"],
                                     modified=item["LastModified"].astimezone(UTC),
                                     extra={"etag": item.get("ETag", "").strip('"')})

    # ---- removing ------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove ``key`` for real. In a versioned (Object Lock) bucket every version
        is deleted, since a plain DELETE only hides the bytes behind a delete marker."""
        key = validate_key(key)
        head = self._head(key)
        version = head.get("VersionId")
        if version in (None, "", "null"):
            with self._errors("delete", key):
                self._s3.delete_object(Bucket=self.bucket, Key=key)
            return
        others = [v for v in self._versions(key) if v != version]
        for version_id in [version, *others]:
            try:
                self._s3.delete_object(Bucket=self.bucket, Key=key, VersionId=version_id)
            except ClientError as exc:
                if _code(exc) in ("AccessDenied", "403") or _status(exc) == 403:
                    raise Refused(self._lock_refusal(key, head)) from exc
                raise self._translate(exc, "delete", key) from exc
            except BotoCoreError as exc:
                raise self._translate(exc, "delete", key) from exc

    def _versions(self, key: str) -> list[str]:
        out = []
        pages = self._s3.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=key)
        with self._errors("list versions of", key):
            for page in pages:
                for item in (*page.get("Versions", ()), *page.get("DeleteMarkers", ())):
                    if item["Key"] == key:
                        out.append(item["VersionId"])
        return out

    def _lock_refusal(self, key: str, head: dict) -> str:
        reasons = []
        until = head.get("ObjectLockRetainUntilDate")
        if until is not None and until > self.clock.now():
            reasons.append(f"{head.get('ObjectLockMode', 'COMPLIANCE')} retention until "
                           f"{until.astimezone(UTC).isoformat()}")
        if head.get("ObjectLockLegalHoldStatus") == "ON":
            reasons.append("a legal hold is on")
        why = " and ".join(reasons) or "the server refused (Object Lock or permissions)"
        return f"S3 Object Lock refuses to delete {key} in bucket {self.bucket}: {why}"

    # ---- errors and internals ------------------------------------------------------

    def _head(self, key: str) -> dict:
        head = self._head_or_none(key)
        if head is None:
            raise ObjectNotFound(key)
        return head

    def _head_or_none(self, key: str) -> dict | None:
        try:
            return self._s3.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                # HEAD has no body: a missing bucket also answers 404.
                self.check()
                return None
            raise self._translate(exc, "stat", key) from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "stat", key) from exc

    @contextmanager
    def _errors(self, op: str, key: str | None = None) -> Iterator[None]:
        try:
            yield
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, op, key) from exc

    def _translate(self, exc: Exception, op: str, key: str | None = None) -> ArchiveError:
        """The one place a botocore error becomes an archive error."""
        what = f"{op} {key}" if key else op
        if isinstance(exc, ClientError):
            code, status = _code(exc), _status(exc)
            message = exc.response.get("Error", {}).get("Message", "")
            if code == "NoSuchBucket" or (key is None and status == 404):
                return StoreUnavailable(f"bucket {self.bucket} does not exist at "
                                        f"{self.endpoint}")
            if key is not None and (code in ("NoSuchKey", "NotFound") or status == 404):
                return ObjectNotFound(key)
            if code == "PreconditionFailed" or status == 412:
                return ObjectExists(key or "?")
            if code in DIGEST_CODES:
                return IntegrityError(f"S3 refused {what}: the bytes it received do not "
                                      f"match the SHA-256 checksum sent ({code}); nothing "
                                      "was stored")
            if code in CREDENTIAL_CODES or status == 403:
                return StoreUnavailable(f"S3 endpoint {self.endpoint} refused the credentials "
                                        f"(access key {self.access_key}, bucket "
                                        f"{self.bucket}): {code} {message}".rstrip())
            return StorageError(f"S3 {what} failed at {self.endpoint}: {code} {message}"
                                .rstrip())
        if isinstance(exc, UNREACHABLE):
            return StoreUnavailable(f"cannot reach S3 endpoint {self.endpoint}: {exc}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StoreUnavailable(f"S3 endpoint {self.endpoint}: no usable credentials: "
                                    f"{exc}")
        return StorageError(f"S3 {what} failed at {self.endpoint}: {exc}")


# ---- helpers ------------------------------------------------------------------------


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _object_info(key: str, head: dict) -> ObjectInfo:
    extra: dict[str, Any] = {"etag": head.get("ETag", "").strip('"')}
    sha256 = None
    raw = head.get("ChecksumSHA256")
    composite = head.get("ChecksumType") == "COMPOSITE" or (raw and "-" in raw)
    if raw and not composite:
        sha256 = base64.b64decode(raw).hex()
    elif raw:
        # A multipart checksum is a digest of the parts' digests, not of the object.
        extra["checksum_sha256"] = raw
        extra["checksum_type"] = head.get("ChecksumType", "COMPOSITE")
    if head.get("VersionId") not in (None, "null"):
        extra["version_id"] = head["VersionId"]
    if head.get("ObjectLockMode"):
        extra["lock_mode"] = head["ObjectLockMode"]
    if head.get("ObjectLockRetainUntilDate"):
        extra["retain_until"] = head["ObjectLockRetainUntilDate"].astimezone(UTC)
    if head.get("ObjectLockLegalHoldStatus"):
        extra["legal_hold"] = head["ObjectLockLegalHoldStatus"] == "ON"
    return ObjectInfo(key=key, size=head["ContentLength"],
                      modified=head["LastModified"].astimezone(UTC), sha256=sha256,
                      extra=extra)


def _feed(stream: BinaryIO, hasher: MultiHasher, total: int, key: str,
          also: Any = None) -> None:
    """Hash exactly ``total`` bytes of ``stream`` (it must not shrink meanwhile)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    left = total
    while left:
        n = stream.readinto(view[:min(left, CHUNK)])
        if not n:
            raise SizeMismatch(key, total, total - left)
        hasher.update(view[:n])
        if also is not None:
            also.update(view[:n])
        left -= n


def _copy_upto(src: BinaryIO, dst: Any, limit: int) -> int:
    copied = 0
    while copied < limit:
        data = src.read(min(CHUNK, limit - copied))
        if not data:
            break
        dst.write(data)
        copied += len(data)
    return copied


class _Window(io.RawIOBase):
    """A seekable view of ``length`` bytes of ``raw`` from ``start``; position 0 is
    ``start``, so botocore's rewind-on-retry resends the right bytes."""

    def __init__(self, raw: Any, start: int, length: int):
        super().__init__()
        self._raw, self._start, self._len, self._pos = raw, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._len}[whence]
        self._pos = max(0, min(self._len, base + offset))
        return self._pos

    def __len__(self) -> int:
        return self._len

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), self._len - self._pos)
        if n <= 0:
            return 0
        self._raw.seek(self._start + self._pos)
        if hasattr(self._raw, "readinto"):
            got = self._raw.readinto(view[:n]) or 0
        else:
            data = self._raw.read(n)
            got = len(data)
            view[:got] = data
        self._pos += got
        return got


class _Concat:
    """``first`` (read to its end) then ``rest``."""

    def __init__(self, first: Any, rest: BinaryIO):
        self._first, self._rest, self._in_first = first, rest, True

    def read(self, n: int) -> bytes:
        if self._in_first:
            data = self._first.read(n)
            if data:
                return data
            self._in_first = False
        return self._rest.read(n)


class _BodyReader(io.RawIOBase):
    """Streams a GET body, translating errors met while reading."""

    def __init__(self, body: Any, store: S3Store, key: str):
        super().__init__()
        self._body, self._store, self._key = body, store, key

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        try:
            data = self._body.read(len(view))
        except BotoCoreError as exc:
            raise self._store._translate(exc, "read", self._key) from exc
        except OSError as exc:
            raise StorageError(f"S3 read {self._key} failed at {self._store.endpoint}: "
                               f"{exc}") from exc
        n = len(data)
        view[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            with suppress(Exception):
                self._body.close()
        super().close()
