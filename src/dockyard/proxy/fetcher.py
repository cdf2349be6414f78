"""One upstream download per missing blob, however many clients ask for it at once.

A download streams into a staging file while it is hashed; every waiting client reads the
bytes already on disk and then waits for more. Only when the whole blob has arrived and its
digest matches is it committed; a mismatch discards it and fails every waiting client. The
download is its own task: it finishes and commits even if every client goes away.

Within a process the clients of a blob share one `Download`. Across the processes serving
one store (`serve --workers`), the blob's lock file (`dockyard.proxy.locks`) elects the one
process that downloads; the others follow its staging file (`dockyard.proxy.follow`). If
the leader dies, the kernel drops its lock and the next process to take it discards the
partial file and starts over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from typing import BinaryIO

import aiohttp

from dockyard.errors import (
    RegistryError,
    StorageFullError,
    UpstreamBadResponseError,
    UpstreamTimeoutError,
)
from dockyard.oci.digest import Digest
from dockyard.proxy.download import Download
from dockyard.proxy.follow import (
    Follower,
    Outcome,
    adopt_committed,
    failed_state,
    hold_staging,
    started_state,
)
from dockyard.proxy.locks import LockDir, LockFile
from dockyard.proxy.upstream import UpstreamClient
from dockyard.registry.blobs import LocalBlobStore
from dockyard.registry.paths import upload_key
from dockyard.storage import BlobDriver

__all__ = ["BlobFetcher", "Download"]

log = logging.getLogger("dockyard.proxy")

READ_CHUNK = 1 << 20
# Room a download leaves free beside the blob (metadata, other writes): a blob that does
# not fit with it is not started, so no client gets a body cut off by a full disk.
FREE_SPACE_MARGIN = 8 << 20
STAGING_PREFIX = upload_key("fetch-")


def blob_lock_name(digest: Digest) -> str:
    return f"blob-{digest.algorithm}-{digest.hex}"


def _failure(upstream: UpstreamClient, exc: BaseException) -> RegistryError | None:
    """The error clients see for an exception of a download, if it is one we expect."""
    if isinstance(exc, RegistryError):
        return exc
    if not isinstance(exc, TimeoutError | aiohttp.ClientError | OSError):
        return None
    upstream.stats.errors += 1
    if isinstance(exc, TimeoutError):
        return UpstreamTimeoutError(f"upstream {upstream.settings.name} stalled")
    return UpstreamBadResponseError(
        f"download from {upstream.settings.name} failed: {exc.__class__.__name__}"
    )


class BlobFetcher:
    """Coalesces concurrent misses for the same blob into one upstream request."""

    def __init__(
        self,
        blobs: LocalBlobStore,
        driver: BlobDriver,
        locks: LockDir,
        on_event: Callable[[str, UpstreamClient], None] | None = None,
    ) -> None:
        self._blobs = blobs
        self._driver = driver
        self._locks = locks
        self._inflight: dict[str, Download] = {}
        self._on_event = on_event or (lambda _event, _upstream: None)
        # Blobs the store had no room for lately: digest -> time.monotonic() of the failure.
        self._no_room: dict[str, float] = {}

    def no_room_since(self, digest: Digest) -> float | None:
        """When a download of this blob last failed for want of room (time.monotonic())."""
        return self._no_room.get(str(digest))

    def _note_no_room(self, digest: Digest) -> None:
        now = time.monotonic()
        if len(self._no_room) >= 1024:  # bounded: forget the oldest half
            for key in sorted(self._no_room, key=self._no_room.__getitem__)[:512]:
                del self._no_room[key]
        self._no_room[str(digest)] = now

    def inflight(self, digest: Digest) -> Download | None:
        return self._inflight.get(str(digest))

    def fetch(self, upstream: UpstreamClient, remote: str, local: str, digest: Digest) -> Download:
        """The download of this blob: the one in flight, or a new one."""
        key = str(digest)
        existing = self._inflight.get(key)
        if existing is not None:
            upstream.stats.coalesced += 1
            return existing
        download = Download(digest, upload_key(f"fetch-{uuid.uuid4()}"))
        self._inflight[key] = download
        download.task = asyncio.create_task(self._run(upstream, remote, local, download))
        return download

    async def _run(
        self, upstream: UpstreamClient, remote: str, local: str, download: Download
    ) -> None:
        try:
            await self._coordinate(upstream, remote, local, download)
        except (RegistryError, TimeoutError, aiohttp.ClientError, OSError) as exc:
            download.error = _failure(upstream, exc)
        finally:
            self._inflight.pop(str(download.digest), None)
            if isinstance(download.error, StorageFullError):
                self._note_no_room(download.digest)
            if download.error is not None:
                log.warning(
                    "blob download failed",
                    extra={
                        "fields": {
                            "upstream": upstream.settings.name,
                            "digest": str(download.digest),
                            "error": download.error.message,
                        }
                    },
                )
            download.started.set()
            await download.notify()

    async def _coordinate(
        self, upstream: UpstreamClient, remote: str, local: str, download: Download
    ) -> None:
        """Lead the download, or follow the process that leads it."""
        lock = self._locks.open(blob_lock_name(download.digest))
        if not lock.held:
            upstream.stats.coalesced += 1
        while not lock.held:
            try:
                outcome = await Follower(lock, download, self._blobs, local).run()
            except BaseException:
                lock.close()
                raise
            if isinstance(outcome, LockFile):
                break  # the leader died before we showed anything: lead instead
            lock.close()
            if outcome is Outcome.ENDED:
                return
            lock = self._locks.open(blob_lock_name(download.digest))
        try:
            await self._lead(upstream, remote, local, download, lock)
        finally:
            lock.close()

    async def _lead(
        self,
        upstream: UpstreamClient,
        remote: str,
        local: str,
        download: Download,
        lock: LockFile,
    ) -> None:
        if await adopt_committed(self._blobs, local, download):
            return  # another process committed it since this one looked
        await self._discard_stale(lock)
        log.info(
            "fetching blob",
            extra={
                "fields": {
                    "upstream": upstream.settings.name,
                    "repository": remote,
                    "digest": str(download.digest),
                }
            },
        )
        guard: list[BinaryIO] = []

        def announce() -> None:
            # Followers in other processes find the staging file through the lock file.
            staging = self._blobs.open_staged(download.staging_key)
            guard.append(staging)
            hold_staging(staging)
            lock.write_state(started_state(download.staging_key, download.size))

        try:
            await self._download(upstream, remote, download, announce)
            await self._blobs.commit_staged(
                local, download.staging_key, download.digest, download.written
            )
        except BaseException as exc:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._driver.delete, download.staging_key)
            error = _failure(upstream, exc)
            if error is None:
                raise  # cancelled: followers see the lock let go without a result
            with contextlib.suppress(OSError):
                lock.write_state(failed_state(download.staging_key, error))
            if error is exc:
                raise
            raise error from exc
        finally:
            for staging in guard:
                staging.close()
        download.done = True
        log.info(
            "cached blob",
            extra={
                "fields": {
                    "upstream": upstream.settings.name,
                    "repository": remote,
                    "digest": str(download.digest),
                    "bytes": download.written,
                }
            },
        )

    async def _discard_stale(self, lock: LockFile) -> None:
        """A process that died leading this download left its partial file: never serve
        it, remove it."""
        stale = lock.state()
        if stale is None:
            return
        lock.write_state({})
        key = stale.get("staging")
        if isinstance(key, str) and key.startswith(STAGING_PREFIX):
            with contextlib.suppress(OSError):
                await asyncio.to_thread(self._driver.delete, key)

    async def _download(
        self,
        upstream: UpstreamClient,
        remote: str,
        download: Download,
        announce: Callable[[], None],
    ) -> None:
        async with upstream.blob(remote, str(download.digest)) as response:
            download.size = response.content_length
            if download.size is not None:
                free = await asyncio.to_thread(self._driver.free_bytes)
                if download.size + FREE_SPACE_MARGIN > free:
                    raise StorageFullError(
                        f"registry storage is full: no room to cache a blob of "
                        f"{download.size} bytes ({free} bytes free)"
                    )
            writer = await asyncio.to_thread(self._driver.open_append, download.staging_key, True)
            try:
                announce()
            except BaseException:
                writer.close()
                raise
            download.started.set()
            hasher = download.digest.hasher()

            def write(data: bytes) -> None:
                writer.write(data)
                hasher.update(data)

            try:
                async for chunk in response.content.iter_chunked(READ_CHUNK):
                    await asyncio.to_thread(write, chunk)
                    download.written += len(chunk)
                    upstream.stats.bytes_downloaded += len(chunk)
                    await download.notify()
            finally:
                await asyncio.to_thread(writer.close)
        if download.size is not None and download.written != download.size:
            raise UpstreamBadResponseError(
                f"upstream {upstream.settings.name} sent {download.written} of "
                f"{download.size} bytes"
            )
        if hasher.hexdigest() != download.digest.hex:
            upstream.stats.errors += 1
            raise UpstreamBadResponseError(
                f"upstream {upstream.settings.name} sent content that does not match "
                f"{download.digest}; nothing was cached"
            )

    async def close(self) -> None:
        """Wait for downloads in flight (they commit or fail), for a clean shutdown."""
        tasks = [d.task for d in self._inflight.values() if d.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
