"""The digitisation commands (#5)."""

from __future__ import annotations

COMMANDS: list = []
