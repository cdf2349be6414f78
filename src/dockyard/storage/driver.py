"""The storage driver protocol: bytes under keys, nothing of OCI.

Keys are '/'-separated relative paths made by the registry layer (never from client text).
Every method is synchronous and may block on I/O: callers run them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from dockyard.errors import StorageFullError

__all__ = ["AppendWriter", "BlobDriver", "StorageFullError", "StoredObject"]


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    size: int
    modified: float


class AppendWriter(Protocol):
    """An open object being written sequentially; nothing is visible until `commit`."""

    @property
    def size(self) -> int:
        """Bytes written so far."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes."""

    def write_all(self, buffers: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append several buffers in order (one call to the store where it can)."""

    def close(self) -> None:
        """Release the handle; the partial object stays for a later resume."""


class BlobDriver(Protocol):
    """The dozen operations the registry needs from a byte store."""

    def stat(self, key: str) -> StoredObject | None:
        """Size and mtime of a committed object, or None."""

    def open_read(self, key: str) -> BinaryIO:
        """An open file of a committed object (FileNotFoundError if absent)."""

    def open_append(self, key: str, keep_cached: bool = False) -> AppendWriter:
        """Open (or create) a staging object for appending.

        `keep_cached`: the object is read while it grows, so keep what was written in
        memory rather than only on disk.
        """

    def read_staged(self, key: str, chunk_size: int) -> Iterator[bytes]:
        """Stream the bytes of a staging object."""

    def truncate_staged(self, key: str, size: int) -> None:
        """Cut a staging object back to `size` bytes."""

    def staged_size(self, key: str) -> int | None:
        """Size of a staging object, or None if absent."""

    def sync(self, staging_key: str) -> None:
        """Flush a staging object's bytes to stable storage."""

    def commit(self, staging_key: str, key: str) -> None:
        """Atomically and durably move a synced staging object to its final key."""

    def delete(self, key: str) -> bool:
        """Remove a committed or staging object; False if it was absent."""

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under a key prefix."""

    def writable(self) -> bool:
        """Whether new objects can be written right now."""

    def free_bytes(self) -> int:
        """Space left for new objects."""
