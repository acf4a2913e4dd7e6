"""The dependency direction of docs/architecture.md: access, ingest, preservation and
cli depend on archive; archive imports none of them, nor Flask, APScheduler or an
HTTP client; storage vendors stay inside their adapter."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN_IN_CORE = {"access", "ingest", "preservation", "cli", "flask", "werkzeug",
                     "apscheduler", "requests", "urllib3", "waitress"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


CORE_FILES = sorted(p for p in (REPO / "archive").rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_core_imports_no_outer_layer(path):
    assert not (_imports(path) & FORBIDDEN_IN_CORE)


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_boto_stays_in_the_s3_adapter(path):
    if path.name == "s3.py":
        return
    assert not (_imports(path) & {"boto3", "botocore"})


def test_no_grab_bag_modules():
    for pattern in ("utils.py", "helpers.py", "common.py", "manager.py"):
        assert not [p for p in REPO.glob(f"*/{pattern}") if ".venv" not in p.parts
                    and "tests" not in p.parts], pattern
