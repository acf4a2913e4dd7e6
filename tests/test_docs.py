"""Docs are checked: every CLI command, setting, event type and audit action is documented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import click
import pytest

from cli.main import cli

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"


def _commands(cmd, prefix):
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, [*prefix, name])
    else:
        yield " ".join(prefix)


@pytest.mark.parametrize("command", list(_commands(cli, [])))
def test_cli_command_documented(command):
    assert f"`archive {command}" in (DOCS / "cli.md").read_text(encoding="utf-8")


def _settings():
    with open(REPO / "config" / "defaults.toml", "rb") as fh:
        data = tomllib.load(fh)
    for section, values in data.items():
        if section in ("document_types", "retention"):
            continue
        for key in values:
            yield section, key


@pytest.mark.parametrize("section, key", list(_settings()))
def test_setting_documented(section, key):
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    block = text.split(f"## [{section}]", 1)
    assert len(block) == 2, f"no section [{section}] in docs/configuration.md"
    assert f"| `{key}` |" in block[1].split("\n## ", 1)[0]


def _source() -> str:
    return "\n".join(p.read_text(encoding="utf-8")
                     for folder in ("archive", "ingest", "preservation", "access", "cli")
                     for p in (REPO / folder).rglob("*.py"))


def test_event_types_and_audit_actions_documented():
    source = _source()
    events = set(re.findall(r'event_type="([a-z ]+)"', source))
    events |= set(re.findall(r'PremisEvent\(str\(uuid\.uuid4\(\)\), "([a-z ]+)"', source))
    actions = set(re.findall(r'append\(\s*session,\s*[^,]+,\s*"([a-z_.]+)"', source))
    assert events and actions
    doc = (DOCS / "events.md").read_text(encoding="utf-8")
    assert not {e for e in events if f"`{e}`" not in doc}
    assert not {a for a in actions if f"`{a}`" not in doc}
