"""Placeholder: filled in by its area."""

COMMANDS: list = []
