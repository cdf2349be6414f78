"""Reading committed blobs."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.errors import BlobUnknownError
from dockyard.metadata import Database
from dockyard.metadata import ops_queries as oq
from dockyard.metadata import queries as q
from dockyard.oci.digest import Digest
from dockyard.registry.paths import blob_key
from dockyard.storage import BlobDriver


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: Digest
    size: int


class LocalBlobStore:
    """Blobs as one repository sees them: only those linked to it."""

    def __init__(self, db: Database, driver: BlobDriver) -> None:
        self._db = db
        self._driver = driver
        # When blobs were last asked for, written in batches: the collector's grace period
        # counts from the last time a client looked at a blob, not only from its upload.
        self._accessed: dict[str, float] = {}

    def note_access(self, digest: Digest) -> None:
        self._accessed[str(digest)] = time.time()

    async def flush_access(self) -> int:
        """Write the access times gathered since the last flush."""
        accessed, self._accessed = self._accessed, {}
        if accessed:
            await self._db.write(oq.touch_blobs, accessed)
        return len(accessed)

    async def stat(self, repo: str, digest: Digest) -> BlobInfo:
        """Size of a blob visible in the repository; BlobUnknownError otherwise."""
        size = await self._db.read(q.linked_blob_size, repo, str(digest))
        if size is None:
            raise BlobUnknownError(detail={"digest": str(digest)})
        self.note_access(digest)
        return BlobInfo(digest, size)

    async def open(self, repo: str, digest: Digest) -> tuple[BlobInfo, BinaryIO]:
        """An open file of a visible blob, for sendfile."""
        info = await self.stat(repo, digest)
        try:
            fobj = await asyncio.to_thread(self._driver.open_read, blob_key(digest))
        except FileNotFoundError:
            raise BlobUnknownError(
                "blob is recorded but its content is missing from storage",
                detail={"digest": str(digest)},
            ) from None
        return info, fobj

    async def mount(self, repo: str, digest: Digest, source: str) -> BlobInfo | None:
        """Link a blob visible in `source` into `repo`; None if `source` does not have it."""
        size = await self._db.read(q.linked_blob_size, source, str(digest))
        if size is None:
            return None
        self.note_access(digest)

        def link(conn: sqlite3.Connection) -> None:
            q.link_blob(conn, q.ensure_repository(conn, repo), str(digest))

        await self._db.write(link)
        return BlobInfo(digest, size)

    def exists_anywhere(self, digest: Digest) -> int | None:
        """The size of a committed blob in any repository, or None."""
        return self._db.read_sync(q.blob_size, str(digest))

    async def link(self, repo: str, digest: Digest) -> None:
        """Make a committed blob visible in a repository."""

        def link(conn: sqlite3.Connection) -> None:
            q.link_blob(conn, q.ensure_repository(conn, repo), str(digest))

        await self._db.write(link)

    async def commit_staged(
        self,
        repo: str | None,
        staging_key: str,
        digest: Digest,
        size: int,
        upload_id: str | None = None,
    ) -> None:
        """Publish verified staged bytes as a blob of `repo` (None: of no repository yet;
        imports link it when they write the manifest that needs it).

        The bytes are synced first; the rename and the metadata row then happen inside one
        write transaction, so garbage collection (which removes a file only while holding
        the same write lock and seeing no row) can never delete a blob being committed.
        """
        await asyncio.to_thread(self._driver.sync, staging_key)

        def record(conn: sqlite3.Connection) -> None:
            self._driver.commit(staging_key, blob_key(digest))
            if repo is None:
                q.insert_blob(conn, str(digest), size)
                return
            q.commit_blob(conn, upload_id, q.ensure_repository(conn, repo), str(digest), size)

        await self._db.write(record)

    def open_staged(self, staging_key: str) -> BinaryIO:
        """An open file of bytes still being written (a download in progress)."""
        return self._driver.open_read(staging_key)

    def open_committed(self, digest: Digest) -> BinaryIO:
        return self._driver.open_read(blob_key(digest))

    async def delete(self, repo: str, digest: Digest) -> None:
        """Unlink a blob from a repository (garbage collection frees the bytes)."""
        if not await self._db.write(q.unlink_blob, repo, str(digest)):
            raise BlobUnknownError(detail={"digest": str(digest)})
