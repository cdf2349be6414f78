"""The local registry: one object holding the blob, upload and manifest stores of a root."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from dockyard.metadata import Database
from dockyard.registry.blobs import LocalBlobStore
from dockyard.registry.manifests import ManifestStore
from dockyard.registry.uploads import QuotaPolicy, UploadManager
from dockyard.storage import BlobDriver


@dataclass(frozen=True, slots=True)
class Readiness:
    storage_writable: bool
    database_open: bool
    free_bytes: int

    @property
    def ready(self) -> bool:
        return self.storage_writable and self.database_open


class Registry:
    """A complete local registry over one storage driver and one metadata database."""

    def __init__(
        self,
        db: Database,
        driver: BlobDriver,
        *,
        manifest_max_size: int,
        delete_enabled: bool,
        quota: QuotaPolicy | None = None,
        index_child_required: Callable[[tuple[str, str] | None], bool] | None = None,
    ) -> None:
        self.db = db
        self.driver = driver
        self.blobs = LocalBlobStore(db, driver)
        self.uploads = UploadManager(db, driver, self.blobs, quota)
        self.manifests = ManifestStore(db, manifest_max_size, index_child_required)
        self.delete_enabled = delete_enabled

    async def readiness(self) -> Readiness:
        """Whether storage takes writes and the database answers."""
        writable = await asyncio.to_thread(self.driver.writable)
        free = await asyncio.to_thread(self.driver.free_bytes)
        return Readiness(writable and free > 0, self.db.ping(), free)

    def close(self) -> None:
        """Close the metadata database (after in-flight writes finish)."""
        self.db.close()
