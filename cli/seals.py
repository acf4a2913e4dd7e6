"""The seals commands (#5)."""

from __future__ import annotations

COMMANDS: list = []
