"""Shared helpers for the real services the test suite starts on loopback."""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_SERVICES = os.environ.get("ARCHIVE_REQUIRE_SERVICES", "") not in ("", "0", "false")


def unavailable(service: str, why: str) -> None:
    """Skip (printing why) or, in CI (ARCHIVE_REQUIRE_SERVICES=1), fail."""
    message = f"{service} unavailable: {why}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (ARCHIVE_REQUIRE_SERVICES=1 makes this a failure)",
                    pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free ports (kept bound until all are chosen)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            socks.append(s)
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports
