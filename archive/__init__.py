"""Kho lưu trữ số: the archive core (OAIS packages, catalog, storage, audit, policy)."""

__version__ = "0.1.0"
