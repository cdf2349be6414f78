"""Online garbage collection: mark from tags (and what they keep), sweep in small batches.

It runs while the registry serves. Every deletion re-checks its condition inside a write
transaction, and a blob file is removed while that transaction holds the database's write
lock; blob commits rename their file under the same lock. So a push racing the collector
either lands before the check (and is seen as referenced or too young) or after the removal
(and brings its own file): nothing committed is ever lost. A grace period protects blobs
uploaded for a manifest that has not been pushed yet.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from dockyard.metadata import Database
from dockyard.metadata import ops_queries as oq
from dockyard.metadata import queries as q
from dockyard.oci.digest import Digest
from dockyard.ops.retention import RetentionRule, retention_victims
from dockyard.registry.paths import blob_key, upload_key
from dockyard.storage import StoredObject

log = logging.getLogger("dockyard.gc")

BATCH = 100


@dataclass(frozen=True)
class GCOptions:
    dry_run: bool = False
    delete_untagged: bool = False
    grace: float = 3600.0
    # Upload sessions untouched this long are expired (Distribution's uploadpurging age).
    upload_max_age: float = 7 * 24 * 3600.0
    retention: tuple[RetentionRule, ...] = ()


@dataclass
class GCResult:
    tags: list[str] = field(default_factory=list)
    manifests: list[oq.ManifestCandidate] = field(default_factory=list)
    blobs: list[oq.BlobCandidate] = field(default_factory=list)
    orphan_files: list[str] = field(default_factory=list)
    uploads_removed: int = 0
    bytes_freed: int = 0
    dry_run: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"{verb} {len(self.tags)} tag(s), {len(self.manifests)} manifest(s), "
            f"{len(self.blobs)} blob(s) and "
            f"{len(self.orphan_files)} orphaned file(s), expired {self.uploads_removed} "
            "upload session(s); "
            f"{'would free' if self.dry_run else 'freed'} {self.bytes_freed} bytes "
            f"in {self.seconds:.2f}s"
        )


Progress = Callable[[str, int, int], None]


class SweepDriver(Protocol):
    """What the collector needs from storage."""

    def list(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under a key prefix."""

    def delete(self, key: str) -> bool:
        """Remove an object; False if it was absent."""


class _DryRunDriver:
    """Lists like the real driver; deletes nothing."""

    def __init__(self, driver: SweepDriver) -> None:
        self._driver = driver

    def list(self, prefix: str) -> Iterator[StoredObject]:
        return self._driver.list(prefix)

    def delete(self, key: str) -> bool:
        return True


def _no_progress(_phase: str, _done: int, _total: int) -> None:
    return None


class GarbageCollector:
    """Collects one store; safe to run beside a serving registry (even in another process)."""

    def __init__(
        self, db: Database, driver: SweepDriver, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._driver = driver
        self._clock = clock

    async def run(self, options: GCOptions, progress: Progress = _no_progress) -> GCResult:
        """Collect; a dry run applies the very same steps to a private copy of the metadata,
        so it lists exactly what the real run deletes."""
        if not options.dry_run:
            return await self._run(options, progress)
        snapshot = self._db.snapshot()
        try:
            collector = GarbageCollector(snapshot, _DryRunDriver(self._driver), self._clock)
            result = await collector._run(options, progress)
        finally:
            snapshot.close()
        result.dry_run = True
        return result

    async def _run(self, options: GCOptions, progress: Progress) -> GCResult:
        started = time.monotonic()
        now = self._clock()
        cutoff = now - options.grace
        result = GCResult()
        retired: set[tuple[str, str]] = set()
        if options.retention:
            result.tags, retired = await self._apply_retention(options.retention, now)
        candidates: list[oq.ManifestCandidate] = []
        if options.delete_untagged:
            candidates = await self._db.read(oq.untagged_manifests, cutoff)
        elif retired:
            # Manifests whose last tag retention removed go with it.
            candidates = [
                m
                for m in await self._db.read(oq.untagged_manifests, cutoff)
                if (m.repository, m.digest) in retired
            ]
        result.manifests = await self._sweep_manifests(candidates, cutoff, progress)
        result.bytes_freed += sum(m.size for m in result.manifests)
        blobs = await self._db.read(oq.unreferenced_blobs, cutoff)
        result.blobs = await self._sweep_blobs(blobs, cutoff, progress)
        result.bytes_freed += sum(b.size for b in result.blobs)
        result.uploads_removed = await self._expire_uploads(options)
        result.orphan_files = await self._orphans(cutoff)
        result.seconds = time.monotonic() - started
        log.info(
            "garbage collection finished",
            extra={
                "fields": {
                    "dry_run": isinstance(self._driver, _DryRunDriver),
                    "tags": len(result.tags),
                    "manifests": len(result.manifests),
                    "blobs": len(result.blobs),
                    "orphan_files": len(result.orphan_files),
                    "bytes_freed": result.bytes_freed,
                    "seconds": round(result.seconds, 3),
                }
            },
        )
        return result

    async def _sweep_manifests(
        self, candidates: list[oq.ManifestCandidate], cutoff: float, progress: Progress
    ) -> list[oq.ManifestCandidate]:
        deleted: list[oq.ManifestCandidate] = []
        for start in range(0, len(candidates), BATCH):
            batch = candidates[start : start + BATCH]

            def sweep(
                conn: sqlite3.Connection, batch: list[oq.ManifestCandidate] = batch
            ) -> list[oq.ManifestCandidate]:
                return [
                    m
                    for m in batch
                    if oq.delete_manifest_if_untagged(conn, m.repository, m.digest, cutoff)
                ]

            deleted += await self._db.write(sweep)
            progress("manifests", start + len(batch), len(candidates))
        return deleted

    async def _sweep_blobs(
        self, candidates: list[oq.BlobCandidate], cutoff: float, progress: Progress
    ) -> list[oq.BlobCandidate]:
        deleted: list[oq.BlobCandidate] = []
        driver = self._driver
        for start in range(0, len(candidates), BATCH):
            batch = candidates[start : start + BATCH]

            def sweep(
                conn: sqlite3.Connection, batch: list[oq.BlobCandidate] = batch
            ) -> list[oq.BlobCandidate]:
                gone = []
                for blob in batch:
                    if oq.delete_blob_if_unreferenced(conn, blob.digest, cutoff):
                        # Removed under the write lock: no commit can interleave.
                        driver.delete(blob_key(Digest.parse(blob.digest)))
                        gone.append(blob)
                return gone

            deleted += await self._db.write(sweep)
            progress("blobs", start + len(batch), len(candidates))
            await asyncio.sleep(0)  # let requests in between batches
        return deleted

    async def _apply_retention(
        self, rules: tuple[RetentionRule, ...], now: float
    ) -> tuple[list[str], set[tuple[str, str]]]:
        tags = await self._db.read(oq.all_tags)
        doomed = retention_victims(tags, rules, now)
        if not doomed:
            return [], set()

        def delete(conn: sqlite3.Connection) -> list[oq.TagRow]:
            return [t for t in doomed if oq.delete_tag_if_unchanged(conn, t)]

        deleted = await self._db.write(delete)
        return [f"{t.repository}:{t.tag}" for t in deleted], {
            (t.repository, t.digest) for t in deleted
        }

    async def _expire_uploads(self, options: GCOptions) -> int:
        stale = await self._db.read(q.stale_uploads, self._clock() - options.upload_max_age)
        for upload_id in stale:
            await asyncio.to_thread(self._driver.delete, upload_key(upload_id))
            await self._db.write(q.delete_upload, upload_id)
        return len(stale)

    async def _orphans(self, cutoff: float) -> list[str]:
        """Files no row accounts for: a crash between rename and row, or stale staging files."""
        driver = self._driver
        found: list[str] = []
        blob_files = await asyncio.to_thread(lambda: list(driver.list("blobs")))
        for stored in blob_files:
            if stored.modified >= cutoff:
                continue
            algorithm, _, name = stored.key.split("/", 3)[1:]
            digest = f"{algorithm}:{name.rsplit('/', 1)[-1]}"

            def check(conn: sqlite3.Connection, key: str = stored.key, d: str = digest) -> bool:
                if oq.blob_known(conn, d):
                    return False
                driver.delete(key)
                return True

            if await self._db.write(check):
                found.append(stored.key)
        staged = await asyncio.to_thread(lambda: list(driver.list("uploads")))
        sessions = await self._db.read(oq.upload_ids)
        for stored in staged:
            session = stored.key.split("/", 1)[1]
            if session in sessions or stored.modified >= cutoff:
                continue
            found.append(stored.key)
            await asyncio.to_thread(driver.delete, stored.key)
        return found
