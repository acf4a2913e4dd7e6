"""WSGI entry point for production servers: ``gunicorn 'access.wsgi:app'``.

Settings come from ``ARCHIVE_CONFIG`` and ``ARCHIVE_<SECTION>__<KEY>`` variables.
"""

from __future__ import annotations

from access.app import create_app
from archive.instance import ArchiveInstance
from archive.settings import load_settings

app = create_app(ArchiveInstance(load_settings()))
