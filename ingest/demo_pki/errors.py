"""Errors of the simulated PKI, reported like every archive error (exit 2)."""

from __future__ import annotations

from archive.errors import InputError


class DemoPKIError(InputError):
    """The DEMO PKI cannot be generated, opened or served (certomancer missing, no PKI
    in the folder, its loopback port taken)."""
