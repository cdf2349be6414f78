"""One upstream download per missing blob, however many clients ask for it at once.

A download streams into a staging file while it is hashed; every waiting client reads the
bytes already on disk and then waits for more. Only when the whole blob has arrived and its
digest matches is it committed; a mismatch discards it and fails every waiting client. The
download is its own task: it finishes and commits even if every client goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from dockyard.errors import RegistryError, UpstreamBadResponseError, UpstreamTimeoutError
from dockyard.oci.digest import Digest
from dockyard.proxy.upstream import UpstreamClient
from dockyard.registry.blobs import LocalBlobStore
from dockyard.registry.paths import upload_key
from dockyard.storage import BlobDriver

log = logging.getLogger("dockyard.proxy")

READ_CHUNK = 1 << 20


@dataclass(eq=False)
class Download:
    """A blob on its way from an upstream; clients follow its progress."""

    digest: Digest
    staging_key: str
    size: int | None = None
    written: int = 0
    done: bool = False
    error: RegistryError | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task[None] | None = None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_beyond(self, offset: int) -> None:
        """Until more than `offset` bytes are on disk, or the download ended."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: self.written > offset or self.done or self.error is not None
            )

    async def wait_finished(self) -> None:
        """Until the download was verified and committed, or failed."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.done or self.error is not None)

    async def wait_started(self) -> None:
        """Until the upstream answered (the size is known) or the download failed."""
        await self.started.wait()
        if self.error is not None and self.written == 0:
            raise self.error


class BlobFetcher:
    """Coalesces concurrent misses for the same blob into one upstream request."""

    def __init__(
        self,
        blobs: LocalBlobStore,
        driver: BlobDriver,
        on_event: Callable[[str, UpstreamClient], None] | None = None,
    ) -> None:
        self._blobs = blobs
        self._driver = driver
        self._inflight: dict[str, Download] = {}
        self._on_event = on_event or (lambda _event, _upstream: None)

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
            await self._download(upstream, remote, download)
            await self._blobs.commit_staged(
                local, download.staging_key, download.digest, download.written
            )
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
        except RegistryError as exc:
            download.error = exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            upstream.stats.errors += 1
            download.error = (
                UpstreamTimeoutError(f"upstream {upstream.settings.name} stalled")
                if isinstance(exc, TimeoutError)
                else UpstreamBadResponseError(
                    f"download from {upstream.settings.name} failed: {exc.__class__.__name__}"
                )
            )
        finally:
            self._inflight.pop(str(download.digest), None)
            if not download.done:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(self._driver.delete, download.staging_key)
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
            await download._notify()

    async def _download(self, upstream: UpstreamClient, remote: str, download: Download) -> None:
        async with upstream.blob(remote, str(download.digest)) as response:
            download.size = response.content_length
            writer = await asyncio.to_thread(self._driver.open_append, download.staging_key, True)
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
                    await download._notify()
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
