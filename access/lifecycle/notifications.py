"""notifications in the access layer (#5): API routes, web pages and the record-page panel."""

from __future__ import annotations

OPENAPI_PATHS: dict = {}
OPENAPI_SCHEMAS: dict = {}
PANEL = None
