"""Blob upload sessions: streamed to a staging file, hashed as bytes arrive, committed atomically.

A session is a row in the metadata database plus a staging file; both survive a restart.
The running hash lives in memory; after a restart it is rebuilt from the staging file on
the next request, so an interrupted chunked upload resumes where the bytes on disk end.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from dockyard.errors import (
    BlobUploadUnknownError,
    DigestInvalidError,
    RangeNotSatisfiableError,
    RegistryError,
    SizeInvalidError,
    StorageFullError,
)
from dockyard.metadata import Database
from dockyard.metadata import queries as q
from dockyard.oci.digest import Digest, new_hasher
from dockyard.registry.blobs import LocalBlobStore
from dockyard.registry.paths import upload_key
from dockyard.registry.pipeline import OrderedWriter
from dockyard.storage import BlobDriver

if TYPE_CHECKING:
    from hashlib import _Hash

# Bytes gathered from the socket before one write step and one hash step (each on a worker
# thread, side by side), and how many batches may be queued: at most (WRITE_DEPTH + 1) x
# WRITE_BATCH = 20 MiB held per upload. Each step costs the event loop a wake-up, hence
# 4 MiB; hashing beside the write with four queued, against hashing after it with two:
# about 9% faster monolithic and 10% faster chunked pushes (A/B runs, 2026-11-28).
WRITE_BATCH = 4 << 20
WRITE_DEPTH = 4
REHASH_CHUNK = 1 << 20
TOUCH_INTERVAL = 60.0


class QuotaPolicy(Protocol):
    async def check(self, repo: str, incoming: int) -> None:
        """Raise DENIED if storing `incoming` more bytes in `repo` breaks a quota."""


@dataclass(frozen=True, slots=True)
class UploadStatus:
    id: str
    repository: str
    offset: int


@dataclass
class _HashState:
    hasher: _Hash
    offset: int
    # The hash of a chunk already on disk may still be catching up after its 202 (the
    # client sends the next chunk meanwhile); whoever uses the hasher next waits for it.
    hashing: asyncio.Future[None] | None = None

    async def settled(self) -> bool:
        """Wait for the hash to take every byte written; False if it failed."""
        if self.hashing is None:
            return True
        hashing, self.hashing = self.hashing, None
        try:
            await hashing
        except Exception:
            return False
        return True


class UploadManager:
    """Creates, appends to, completes and cancels upload sessions."""

    def __init__(
        self,
        db: Database,
        driver: BlobDriver,
        blobs: LocalBlobStore,
        quota: QuotaPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._driver = driver
        self._blobs = blobs
        self._quota = quota
        self._clock = clock
        self._states: dict[str, _HashState] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._touched: dict[str, float] = {}

    def _lock(self, upload_id: str) -> asyncio.Lock:
        # One request at a time per session: PATCHes racing on one session would interleave.
        return self._locks.setdefault(upload_id, asyncio.Lock())

    async def start(
        self, repo: str, algorithm: str = "sha256", owner: str | None = None
    ) -> UploadStatus:
        """Open a new session in a repository."""
        new_hasher(algorithm)  # refuses unsupported algorithms before anything is stored
        upload_id = str(uuid.uuid4())

        def create(conn: sqlite3.Connection) -> None:
            q.insert_upload(conn, upload_id, q.ensure_repository(conn, repo), algorithm, owner)

        await self._db.write(create)
        return UploadStatus(upload_id, repo, 0)

    async def _row(self, repo: str, upload_id: str, owner: str | None) -> q.UploadRow:
        row = await self._db.read(q.get_upload, upload_id) if _plausible(upload_id) else None
        # A session is bound to the repository it was opened in, and to its user.
        if row is None or row.repository != repo or row.owner != owner:
            raise BlobUploadUnknownError(detail={"upload": upload_id[:100]})
        return row

    async def _state(self, row: q.UploadRow) -> _HashState:
        state = self._states.get(row.id)
        key = upload_key(row.id)
        if state is not None and not await state.settled():
            state = None
        size = await asyncio.to_thread(self._driver.staged_size, key) or 0
        if state is None or state.offset != size:
            hasher = await asyncio.to_thread(self._rehash, key, row.algorithm)
            state = _HashState(hasher, size)
            self._states[row.id] = state
        return state

    def _rehash(self, key: str, algorithm: str) -> _Hash:
        hasher = new_hasher(algorithm)
        if self._driver.staged_size(key) is not None:
            for chunk in self._driver.read_staged(key, REHASH_CHUNK):
                hasher.update(chunk)
        return hasher

    async def status(self, repo: str, upload_id: str, owner: str | None = None) -> UploadStatus:
        """Where a session stands: how many bytes it holds."""
        row = await self._row(repo, upload_id, owner)
        size = await asyncio.to_thread(self._driver.staged_size, upload_key(row.id))
        return UploadStatus(row.id, repo, size or 0)

    async def append(
        self,
        repo: str,
        upload_id: str,
        body: AsyncIterator[bytes],
        start: int | None = None,
        length: int | None = None,
        *,
        owner: str | None = None,
    ) -> UploadStatus:
        """Stream a chunk onto the end of the session.

        `start` (from Content-Range) must equal the bytes already received: a gap or an
        overlap is a 416. `length`, when the client states it, must match what arrives.
        """
        row = await self._row(repo, upload_id, owner)
        async with self._lock(row.id):
            state = await self._state(row)
            if start is not None and start != state.offset:
                raise RangeNotSatisfiableError(
                    f"chunk starts at {start} but the upload holds {state.offset} bytes",
                    headers=_range_headers(repo, row.id, state.offset),
                )
            before = state.offset
            try:
                await self._stream(row.id, state, body)
            except StorageFullError:
                # Nothing half-written stays behind when the disk fills up.
                await self._discard(row.id)
                raise
            received = state.offset - before
            if length is not None and received != length:
                await self._rollback(row.id, state, before)
                raise SizeInvalidError(
                    f"received {received} bytes but the request declared {length}"
                )
            await self._keep_alive(row)
            return UploadStatus(row.id, repo, state.offset)

    async def _stream(self, upload_id: str, state: _HashState, body: AsyncIterator[bytes]) -> None:
        writer = await asyncio.to_thread(self._driver.open_append, upload_key(upload_id))

        def write(batch: list[bytes]) -> None:
            writer.write_all(batch)
            state.offset += sum(map(len, batch))

        def update(batch: list[bytes]) -> None:
            for data in batch:
                state.hasher.update(data)

        # Writing and hashing run side by side, each in order on its own worker thread: the
        # hash may run ahead of the disk, so a failed write invalidates the state (the next
        # use rehashes what is on disk). A batch is the chunks as they arrived, not joined:
        # copying them into one buffer took a tenth of the event loop's time.
        pending: list[bytes] = []
        pending_size = 0
        chunks = aiter(body)
        writes = OrderedWriter(write, depth=WRITE_DEPTH)
        hashes = OrderedWriter(update, depth=WRITE_DEPTH)

        async def submit(batch: list[bytes]) -> None:
            await writes.submit(batch)
            await hashes.submit(batch)

        async def close() -> None:
            await writes.close()
            await hashes.close()

        ok = False
        try:
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except Exception:
                    # The client stalled or went away: keep what arrived, so the upload
                    # resumes from there (its offset is what GET on the session reports).
                    if pending:
                        await submit(pending)
                    await close()
                    ok = True
                    raise
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= WRITE_BATCH:
                    batch, pending, pending_size = pending, [], 0
                    await submit(batch)
            if pending:
                await submit(pending)
            await writes.close()
            # The bytes are on disk: the request can be answered while the hash catches up.
            state.hashing = asyncio.ensure_future(hashes.close())
            ok = True
        finally:
            await writes.settle()
            if not ok:
                await hashes.settle()
                state.offset = -1  # the hash may cover bytes that never reached the disk
            await asyncio.to_thread(writer.close)

    async def _rollback(self, upload_id: str, state: _HashState, size: int) -> None:
        await asyncio.to_thread(self._driver.truncate_staged, upload_key(upload_id), size)
        state.offset = -1  # forces a rehash from disk on next use

    async def finish(
        self,
        repo: str,
        upload_id: str,
        digest: Digest,
        body: AsyncIterator[bytes] | None = None,
        start: int | None = None,
        length: int | None = None,
        *,
        owner: str | None = None,
    ) -> int:
        """Take the last chunk (if any), verify the digest and commit the blob; returns its size.

        A mismatch discards the session: unverified bytes never become visible.
        """
        if body is not None:
            await self.append(repo, upload_id, body, start, length, owner=owner)
        row = await self._row(repo, upload_id, owner)
        async with self._lock(row.id):
            state = await self._state(row)
            if digest.algorithm == state.hasher.name:
                actual = state.hasher.copy().hexdigest()
            else:
                hasher = await asyncio.to_thread(self._rehash, upload_key(row.id), digest.algorithm)
                actual = hasher.hexdigest()
            if actual != digest.hex:
                await self._discard(row.id)
                raise DigestInvalidError(
                    "provided digest did not match uploaded content",
                    detail={"expected": str(digest), "actual": f"{digest.algorithm}:{actual}"},
                )
            size = state.offset
            if self._quota is not None and self._blobs.exists_anywhere(digest) is None:
                try:
                    await self._quota.check(repo, size)
                except RegistryError:
                    await self._discard(row.id)
                    raise
            if size == 0:
                # No byte ever arrived (an empty blob pushed by POST then PUT): the session
                # has no staging file yet, and committing needs one.
                await asyncio.to_thread(self._touch, upload_key(row.id))
            await self._blobs.commit_staged(repo, upload_key(row.id), digest, size, row.id)
            self._forget(row.id)
            return size

    def _touch(self, key: str) -> None:
        self._driver.open_append(key).close()

    async def cancel(self, repo: str, upload_id: str, owner: str | None = None) -> None:
        """Drop a session and its staged bytes."""
        row = await self._row(repo, upload_id, owner)
        await self._discard(row.id)

    async def _keep_alive(self, row: q.UploadRow) -> None:
        # Keeps an active session from being purged as stale; the purge age is days, so one
        # write a minute is plenty (not a synced transaction per chunk).
        now = self._clock()
        if now - self._touched.get(row.id, row.updated) >= TOUCH_INTERVAL:
            await self._db.write(q.touch_upload, row.id)
            self._touched[row.id] = now

    def _forget(self, upload_id: str) -> None:
        self._states.pop(upload_id, None)
        self._locks.pop(upload_id, None)
        self._touched.pop(upload_id, None)

    async def _discard(self, upload_id: str) -> None:
        self._forget(upload_id)
        # Bytes first: on a full disk, removing them is what makes room for the row update.
        await asyncio.to_thread(self._driver.delete, upload_key(upload_id))
        await self._db.write(q.delete_upload, upload_id)

    async def purge(self, max_age: float) -> int:
        """Remove sessions untouched for `max_age` seconds; returns how many."""
        stale = await self._db.read(q.stale_uploads, self._clock() - max_age)
        for upload_id in stale:
            await self._discard(upload_id)
        return len(stale)

    async def ingest(
        self,
        repo: str,
        digest: Digest,
        body: AsyncIterator[bytes],
        length: int | None = None,
        owner: str | None = None,
    ) -> int:
        """A whole blob in one request (monolithic POST ?digest=)."""
        status = await self.start(repo, digest.algorithm, owner)
        try:
            return await self.finish(repo, status.id, digest, body, None, length, owner=owner)
        except BaseException:
            await asyncio.shield(self._discard_quietly(status.id))
            raise

    async def _discard_quietly(self, upload_id: str) -> None:
        if await self._db.read(q.get_upload, upload_id) is not None:
            await self._discard(upload_id)


def _plausible(upload_id: str) -> bool:
    return 0 < len(upload_id) <= 64 and all(c.isalnum() or c == "-" for c in upload_id)


def _range_headers(repo: str, upload_id: str, offset: int) -> dict[str, str]:
    return {
        "Location": f"/v2/{repo}/blobs/uploads/{upload_id}",
        "Range": f"0-{max(offset - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def upload_range_headers(status: UploadStatus) -> dict[str, str]:
    """Location, Range and Docker-Upload-UUID for a session's current state."""
    return _range_headers(status.repository, status.id, status.offset)
