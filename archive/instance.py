"""One archive instance: its settings, catalog and object store, opened on demand.

The CLI and the web app both build one of these from the settings; services take
its parts explicitly.
"""

from __future__ import annotations

from functools import cached_property

from archive import audit
from archive.clock import Clock, SystemClock
from archive.db import Catalog
from archive.errors import ArchiveError, StorageError
from archive.keys import load_system_key
from archive.settings import Settings
from archive.storage import ObjectStore, open_backup_store, open_store


class ArchiveInstance:
    def __init__(self, settings: Settings, *, clock: Clock | None = None):
        self.settings = settings
        self.clock = clock or SystemClock()

    @cached_property
    def catalog(self) -> Catalog:
        return Catalog.from_settings(self.settings)

    @cached_property
    def store(self) -> ObjectStore:
        return open_store(self.settings)

    @cached_property
    def backup_store(self) -> ObjectStore | None:
        """The second, independent store of backup copies (None: backups are off)."""
        return open_backup_store(self.settings)

    def checkpoint(self):
        """Write a signed audit checkpoint to the store and the backup store, when one
        is configured (skipped if nothing new)."""
        key = load_system_key(self.settings.keys_dir)
        try:
            backup, unavailable = self.backup_store, None
        except StorageError as exc:  # the primary store still gets its checkpoint
            backup, unavailable = None, exc
        with self.catalog.unit_of_work() as session:
            checkpoint = audit.write_checkpoint(session, self.store, key, self.clock,
                                                backup_store=backup)
        if unavailable is not None:
            raise unavailable
        return checkpoint

    def checkpoint_after_command(self) -> str | None:
        """Best-effort checkpoint after a command; returns a warning text on failure."""
        if not self.settings.audit.checkpoint_after_commands:
            return None
        try:
            self.checkpoint()
        except ArchiveError as exc:
            return f"audit checkpoint not written: {exc.message}"
        return None

    def close(self) -> None:
        if "catalog" in self.__dict__:
            self.catalog.dispose()
