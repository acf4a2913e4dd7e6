"""RFC 3161 archive timestamps (R-TS-1): obtain a token over bytes, verify it.

A port with two implementations, as pyHanko does: ``HttpTimestamper`` asks the
configured timestamp authority over HTTP; ``LocalTimestamper`` signs in-process
with a given key (fast unit tests, and the DEMO archive). ``verify_token`` checks a
stored token against the bytes it should cover and the trust roots, offline.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import aiohttp
from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from pyhanko.sign.timestamps import DummyTimeStamper, HTTPTimeStamper, TimestampRequestError
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext

from archive.errors import ArchiveError, IntegrityError

DIGEST = "sha256"


class TimestampUnavailable(ArchiveError):
    """The timestamp authority could not be reached or refused the request."""

    exit_code = 1


@dataclass(frozen=True)
class TokenInfo:
    time: datetime
    tsa: str  # subject of the TSA certificate
    serial: int
    digest_algorithm: str
    trusted: bool

    def to_dict(self) -> dict:
        return {"time": self.time.isoformat(), "tsa": self.tsa, "serial": self.serial,
                "digest_algorithm": self.digest_algorithm, "trusted": self.trusted}


class Timestamper(Protocol):
    name: str

    def timestamp(self, data: bytes, algorithm: str = DIGEST) -> bytes:
        """A DER-encoded RFC 3161 token (CMS ContentInfo) over ``data``."""
        ...


class _PyHankoTimestamper:
    """Runs pyHanko's async timestamper on one event loop kept for its lifetime."""

    def __init__(self, stamper, name: str):
        self._stamper = stamper
        self._loop = asyncio.new_event_loop()
        self.name = name

    def timestamp(self, data: bytes, algorithm: str = DIGEST) -> bytes:
        """A token whose message imprint is ``algorithm`` (e.g. sha512 for renewals)."""
        digest = hashlib.new(algorithm, data).digest()
        try:
            token = self._loop.run_until_complete(
                self._stamper.async_timestamp(digest, algorithm))
        except (TimeoutError, TimestampRequestError, OSError, aiohttp.ClientError) as exc:
            raise TimestampUnavailable(f"timestamp authority {self.name} failed: {exc}") \
                from exc
        return token.dump()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.close()


class HttpTimestamper(_PyHankoTimestamper):
    """The configured TSA over HTTP (``signatures.tsa_url``), one kept-alive session."""

    def __init__(self, url: str, timeout: int = 10):
        loop = asyncio.new_event_loop()
        self._session = loop.run_until_complete(_new_session())
        super().__init__(HTTPTimeStamper(url, timeout=timeout, session=self._session), url)
        self._loop.close()
        self._loop = loop

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._session.close())
        super().close()


async def _new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession()


class LocalTimestamper(_PyHankoTimestamper):
    """An in-process TSA signing with ``cert``/``key`` (tests, DEMO archives)."""

    def __init__(self, cert: asn1_x509.Certificate, key, name: str = "local"):
        super().__init__(DummyTimeStamper(tsa_cert=cert, tsa_key=key), name)


def verify_token(token: bytes, data: bytes, trust_roots: list[asn1_x509.Certificate],
                 *, at: datetime | None = None) -> TokenInfo:
    """Check that ``token`` is an intact RFC 3161 token over ``data``.

    Raises IntegrityError when the token does not cover ``data`` or its signature is
    broken. ``trusted`` tells whether the TSA chains to ``trust_roots`` (offline).
    """
    try:
        content = cms.ContentInfo.load(token)
        signed = content["content"]
        tst_info = signed["encap_content_info"]["content"].parsed
    except (ValueError, TypeError, KeyError) as exc:
        raise IntegrityError(f"not an RFC 3161 timestamp token: {exc}") from exc
    if not isinstance(tst_info, tsp.TSTInfo):
        raise IntegrityError("not an RFC 3161 timestamp token (no TSTInfo)")

    def imprint(algorithm: str) -> bytes:
        return hashlib.new(algorithm, data).digest()

    context = ValidationContext(trust_roots=list(trust_roots), allow_fetching=False,
                                revocation_mode="soft-fail", moment=at)
    status = asyncio.run(validate_tst_signed_data(signed, context, imprint))
    if not status.get("intact") or not status.get("valid"):
        raise IntegrityError("timestamp token does not match the data or its signature "
                             "is broken")
    signer = status.get("signing_cert")
    return TokenInfo(time=tst_info["gen_time"].native,
                     tsa=signer.subject.human_friendly if signer is not None else "",
                     serial=int(tst_info["serial_number"].native),
                     digest_algorithm=tst_info["message_imprint"]["hash_algorithm"][
                         "algorithm"].native,
                     trusted=status.get("validation_path") is not None
                     and status.get("trust_problem_indic") is None)
