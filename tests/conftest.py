"""Fixtures shared by the whole suite (Flask-tutorial style: settings, stores, catalog).

Real services (PostgreSQL, SeaweedFS) are started by plugins in ``tests/services``;
without them a test is skipped with the reason, and with ARCHIVE_REQUIRE_SERVICES=1
(CI) a missing service is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.services.postgres", "tests.services.seaweed"]

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = Path(os.environ.get("ARCHIVE_CONFORMANCE_DIR",
                                  REPO.parent / "shared" / "conformance"))


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    if not CONFORMANCE.is_dir():
        from tests.services.common import unavailable

        unavailable("conformance corpora", f"{CONFORMANCE} not found "
                    "(set ARCHIVE_CONFORMANCE_DIR)")
    return CONFORMANCE
