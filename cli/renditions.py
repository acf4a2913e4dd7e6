"""The renditions commands (#5)."""

from __future__ import annotations

COMMANDS: list = []
