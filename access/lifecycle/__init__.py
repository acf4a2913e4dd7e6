"""The record lifecycle in the access layer (#5): one module per feature.

Each feature module adds its routes to the ``api`` (``/api/v1``) and ``web``
blueprints when imported, and may define:

- ``OPENAPI_PATHS`` / ``OPENAPI_SCHEMAS``: its part of the OpenAPI document (merged
  by :mod:`access.openapi`; ``tests/test_openapi.py`` checks it against the routes);
- ``PANEL``: a :class:`Panel` shown on the record page (``templates/lifecycle/``).

:func:`load` imports them all before the blueprints are registered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

FEATURES = ("revocation", "notifications", "seals", "renditions", "amendments",
            "digitisation", "destruction")


@dataclass(frozen=True)
class Panel:
    """A part of the record page: ``template`` rendered with ``panel`` = the dict that
    ``context(db, inst, principal, record)`` returns (None: the panel is not shown).

    ``context`` runs inside the page's unit of work, after the view was allowed and
    audited; it must ask the policy before showing anything more.
    """

    template: str
    context: Callable[..., dict[str, Any] | None]
    order: int = 50


def modules() -> list[ModuleType]:
    return [importlib.import_module(f"access.lifecycle.{name}") for name in FEATURES]


def load() -> None:
    modules()


def openapi_paths() -> dict:
    out: dict = {}
    for module in modules():
        out.update(getattr(module, "OPENAPI_PATHS", {}))
    return out


def openapi_schemas() -> dict:
    out: dict = {}
    for module in modules():
        out.update(getattr(module, "OPENAPI_SCHEMAS", {}))
    return out


def panels() -> list[Panel]:
    found = [getattr(m, "PANEL", None) for m in modules()]
    return sorted((p for p in found if p is not None), key=lambda p: p.order)
