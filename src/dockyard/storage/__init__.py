"""Byte storage: a narrow driver protocol over plain keys, and the filesystem driver."""

from dockyard.storage.driver import BlobDriver, StorageFullError, StoredObject
from dockyard.storage.filesystem import FilesystemDriver

__all__ = ["BlobDriver", "FilesystemDriver", "StorageFullError", "StoredObject"]
