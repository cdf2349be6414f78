"""The pull-through cache over the local registry.

Reads try the local store first; a miss goes to the upstream the router picked. Content by
digest is immutable and never revalidated. A tag is revalidated after its upstream's
freshness interval; when the upstream fails (unreachable, slow, 5xx, 429) the cached tag
is served instead.

Across the processes of `serve --workers`, a lock file per blob and per manifest request
keeps the one-upstream-request guarantee: one process asks, the others wait and then read
what it stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dockyard.errors import (
    BlobUnknownError,
    ManifestUnknownError,
    TooManyRequestsError,
    UpstreamBadResponseError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from dockyard.oci.digest import Digest, is_digest_like
from dockyard.proxy.fetcher import BlobFetcher, Download
from dockyard.proxy.locks import LockDir
from dockyard.proxy.router import ProxyTarget, Router
from dockyard.proxy.singleflight import SingleFlight
from dockyard.proxy.upstream import UpstreamClient
from dockyard.registry import Registry
from dockyard.registry.blobs import BlobInfo
from dockyard.registry.manifests import StoredManifest, lookup_reference

log = logging.getLogger("dockyard.proxy")

# A lock file nobody holds and nobody wrote for this long was left by a process that died.
STALE_LOCK_AGE = 600.0

# Upstream failures after which a cached tag is served instead of an error.
UPSTREAM_FAILURES = (
    UpstreamUnavailableError,
    UpstreamTimeoutError,
    UpstreamBadResponseError,
    TooManyRequestsError,
)


@dataclass(frozen=True, slots=True)
class LocalBlob:
    repository: str
    info: BlobInfo


@dataclass(frozen=True, slots=True)
class PassThrough:
    """A blob to send straight from the upstream, verified but not stored: the store has
    no room for it."""

    target: ProxyTarget
    digest: Digest


# After the store had no room for a blob, misses for it go straight to the upstream (one
# request each) for this long; then caching it is tried again.
FULL_BACKOFF = 30.0


class PullThroughCache:
    """Manifests and blobs of routed repositories, from the cache or the upstream."""

    def __init__(
        self,
        registry: Registry,
        router: Router,
        locks: LockDir,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.router = router
        self.fetcher = BlobFetcher(registry.blobs, registry.driver, locks)
        self._locks = locks
        self._clock = clock
        # Many nodes asking for the same new tag make one upstream request.
        self._manifests: SingleFlight[StoredManifest] = SingleFlight()

    def route(self, name: str, ns: str | None) -> ProxyTarget | None:
        return self.router.route(name, ns)

    async def manifest(self, target: ProxyTarget, reference: str, name: str) -> StoredManifest:
        """A manifest by tag or digest, revalidating tags once they are stale."""
        manifests = self.registry.manifests
        if target.fallback:
            # Without ns or prefix, pushed content under the plain name wins.
            try:
                return await manifests.get(name, reference)
            except ManifestUnknownError:
                pass
        upstream = target.upstream
        if is_digest_like(reference):
            digest = Digest.parse(reference)
            try:
                found = await manifests.get(target.local_name, reference)
                upstream.stats.hits += 1
                return found
            except ManifestUnknownError:
                upstream.stats.misses += 1
            key = f"{target.local_name}@{digest}"
            return await self._manifests.do(
                key,
                lambda: self._exclusively(
                    key,
                    upstream,
                    lambda: self._stored(target.local_name, reference),
                    lambda: self._fetch_manifest(target, reference, digest),
                ),
            )
        tag = str(lookup_reference(target.local_name, reference))
        updated = await manifests.tag_updated(target.local_name, tag)
        age = None if updated is None else self._clock() - updated
        if age is not None and age < upstream.settings.tag_ttl:
            upstream.stats.hits += 1
            return await manifests.get(target.local_name, tag)
        key = f"{target.local_name}:{tag}"
        try:
            return await self._manifests.do(
                key,
                lambda: self._exclusively(
                    key,
                    upstream,
                    lambda: self._refreshed(target.local_name, tag, updated),
                    lambda: self._revalidate(target, tag, cached=age is not None),
                ),
            )
        except UPSTREAM_FAILURES as exc:
            if age is None:
                raise
            log.warning(
                "upstream failed; serving the cached tag",
                extra={
                    "fields": {
                        "upstream": upstream.settings.name,
                        "repository": target.remote_name,
                        "tag": tag,
                        "error": exc.message,
                    }
                },
            )
            upstream.stats.hits += 1
            return await manifests.get(target.local_name, tag)

    async def _exclusively(
        self,
        key: str,
        upstream: UpstreamClient,
        stored: Callable[[], Awaitable[StoredManifest | None]],
        fetch: Callable[[], Awaitable[StoredManifest]],
    ) -> StoredManifest:
        """Ask the upstream for a manifest in one process at a time: the others wait for
        the lock, then find what the first one stored (`stored`) instead of asking again.
        A holder that hangs is waited for no longer than its upstream calls may take."""
        settings = upstream.settings
        patience = 2 * settings.connect_timeout + 3 * settings.timeout
        name = "manifest-" + hashlib.sha256(key.encode()).hexdigest()
        async with self._locks.exclusive(name, patience):
            found = await stored()
            if found is not None:
                upstream.stats.hits += 1
                return found
            return await fetch()

    async def _stored(self, repository: str, reference: str) -> StoredManifest | None:
        try:
            return await self.registry.manifests.get(repository, reference)
        except ManifestUnknownError:
            return None

    async def _refreshed(
        self, repository: str, tag: str, seen: float | None
    ) -> StoredManifest | None:
        """The tag, if another process wrote or revalidated it since it was `seen`."""
        updated = await self.registry.manifests.tag_updated(repository, tag)
        if updated is None or (seen is not None and updated <= seen):
            return None
        return await self._stored(repository, tag)

    async def _revalidate(self, target: ProxyTarget, tag: str, cached: bool) -> StoredManifest:
        upstream = target.upstream
        manifests = self.registry.manifests
        upstream.stats.revalidations += 1
        if cached:
            head = await upstream.manifest(target.remote_name, tag, head=True)
            local = await manifests.get(target.local_name, tag)
            if head.digest is not None and head.digest == str(local.digest):
                await manifests.touch_tag(target.local_name, tag)
                upstream.stats.hits += 1
                return local
        upstream.stats.misses += 1
        return await self._fetch_manifest(target, tag, None)

    async def _fetch_manifest(
        self, target: ProxyTarget, reference: str, expected: Digest | None
    ) -> StoredManifest:
        upstream = target.upstream
        fetched = await upstream.manifest(target.remote_name, reference)
        content = fetched.content or b""
        claimed = expected
        if claimed is None and fetched.digest:
            claimed = Digest.parse(fetched.digest)
        actual = Digest.of(content, claimed.algorithm if claimed else "sha256")
        if claimed is not None and actual != claimed:
            raise UpstreamBadResponseError(
                f"upstream {upstream.settings.name} sent a manifest that does not match "
                f"{claimed}; nothing was cached"
            )
        await self.registry.manifests.put(
            target.local_name,
            str(actual) if expected is not None else reference,
            fetched.media_type or None,
            content,
            check_references=False,
        )
        self.registry.manifests.note_pull(target.local_name, str(actual))
        return StoredManifest(actual, fetched.media_type, content)

    def no_room_for(self, digest: Digest) -> bool:
        """Whether a download of this blob found no room in the store a moment ago."""
        since = self.fetcher.no_room_since(digest)
        return since is not None and time.monotonic() - since < FULL_BACKOFF

    def pass_through(self, target: ProxyTarget, digest: Digest) -> PassThrough:
        """Serve a miss from the upstream without caching it (the store is full)."""
        target.upstream.stats.passthrough += 1
        log.warning(
            "store full: serving a blob from the upstream without caching it",
            extra={
                "fields": {
                    "upstream": target.upstream.settings.name,
                    "repository": target.remote_name,
                    "digest": str(digest),
                }
            },
        )
        return PassThrough(target, digest)

    async def blob(
        self, target: ProxyTarget, digest: Digest, name: str
    ) -> LocalBlob | Download | PassThrough:
        """A cached blob, the (shared) download that will bring it, or, while the store is
        full, a blob to pass through from the upstream."""
        blobs = self.registry.blobs
        found = await self.blob_if_cached(target, digest, name)
        if found is not None:
            target.upstream.stats.hits += 1
            return found
        download = self.fetcher.inflight(digest)
        if download is None:
            size = blobs.exists_anywhere(digest)
            if size is not None:
                # Already here under another name: link it instead of downloading again.
                await blobs.link(target.local_name, digest)
                target.upstream.stats.hits += 1
                return LocalBlob(target.local_name, BlobInfo(digest, size))
        target.upstream.stats.misses += 1
        if download is None and self.no_room_for(digest):
            return self.pass_through(target, digest)
        return self.fetcher.fetch(target.upstream, target.remote_name, target.local_name, digest)

    async def blob_size(self, target: ProxyTarget, digest: Digest, name: str) -> int:
        """The size of a blob, asking the upstream (HEAD) when it is not cached."""
        found = await self.blob_if_cached(target, digest, name)
        if found is not None:
            return found.info.size
        download = self.fetcher.inflight(digest)
        if download is not None and download.size is not None:
            return download.size
        return await target.upstream.blob_size(target.remote_name, str(digest))

    async def blob_if_cached(
        self, target: ProxyTarget, digest: Digest, name: str
    ) -> LocalBlob | None:
        candidates = [name, target.local_name] if target.fallback else [target.local_name]
        for repository in candidates:
            try:
                return LocalBlob(repository, await self.registry.blobs.stat(repository, digest))
            except BlobUnknownError:
                continue
        return None

    def upstreams(self) -> dict[str, UpstreamClient]:
        return self.router.upstreams

    async def sweep_locks(self, max_age: float = STALE_LOCK_AGE) -> list[str]:
        """Remove the lock files of downloads whose process died (see LockDir.sweep)."""
        removed = await asyncio.to_thread(self._locks.sweep, max_age)
        if removed:
            log.info("removed stale lock files", extra={"fields": {"locks": len(removed)}})
        return removed

    async def close(self) -> None:
        await self._manifests.close()
        await self.fetcher.close()
        for upstream in self.router.upstreams.values():
            await upstream.close()
