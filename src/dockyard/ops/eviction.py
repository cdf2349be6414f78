"""Cache eviction: keep pulled-through content within a byte budget, oldest pulls first.

Only content of cached repositories (`<upstream>/<name>`) is ever evicted; a blob that a
pushed image also uses stays. Eviction starts above the high watermark and removes whole
images (a tagged manifest, its tags and the child manifests nothing else keeps), least
recently pulled first, until usage is below the low watermark. Distribution's `proxy.ttl`
is honoured as a maximum age.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.metadata import Database
from dockyard.metadata import ops_queries as oq
from dockyard.oci.digest import Digest
from dockyard.ops.usage import volume_usage
from dockyard.registry.paths import blob_key
from dockyard.storage import BlobDriver

log = logging.getLogger("dockyard.eviction")


@dataclass(frozen=True)
class Budget:
    """`maxsize` in bytes, or as a fraction of the volume (0 < f <= 1)."""

    maxsize: int | float | None
    high: float = 0.9
    low: float = 0.8

    def limit(self, root: Path) -> int | None:
        if self.maxsize is None:
            return None
        if isinstance(self.maxsize, float) and self.maxsize <= 1:
            return int(volume_usage(root).size * self.maxsize)
        return int(self.maxsize)


@dataclass
class EvictionResult:
    images: list[oq.CachedImage] = field(default_factory=list)
    blobs: int = 0
    bytes_freed: int = 0


@dataclass
class EvictionStats:
    runs: int = 0
    images: int = 0
    bytes_freed: int = 0


class CacheEvictor:
    def __init__(
        self,
        db: Database,
        driver: BlobDriver,
        root: Path,
        prefixes: list[str],
        budget: Budget,
        max_ages: dict[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._driver = driver
        self._root = root
        self._prefixes = prefixes
        self._budget = budget
        self._max_ages = {p: a for p, a in (max_ages or {}).items() if a > 0}
        self._clock = clock
        self.stats = EvictionStats()

    async def cached_bytes(self) -> int:
        _count, cached, _total = await self._db.read(oq.store_totals, self._prefixes)
        return cached

    async def run_once(self) -> EvictionResult:
        """Expire content past its maximum age, then evict down to the low watermark."""
        result = EvictionResult()
        if not self._prefixes:
            return result
        self.stats.runs += 1
        for prefix, max_age in self._max_ages.items():
            expired = await self._db.read(
                oq.cached_manifests_older_than, prefix, self._clock() - max_age
            )
            for image in expired:
                await self._evict(image, result)
        limit = self._budget.limit(self._root)
        if limit is not None:
            usage = await self.cached_bytes()
            if usage > limit * self._budget.high:
                target = limit * self._budget.low
                for image in await self._db.read(oq.cached_images_lru, self._prefixes):
                    await self._evict(image, result)
                    usage = await self.cached_bytes()
                    if usage <= target:
                        break
        if result.images:
            self.stats.images += len(result.images)
            self.stats.bytes_freed += result.bytes_freed
            log.info(
                "evicted cached images",
                extra={
                    "fields": {
                        "images": [f"{i.repository}@{i.digest}" for i in result.images],
                        "blobs": result.blobs,
                        "bytes_freed": result.bytes_freed,
                    }
                },
            )
        return result

    async def _evict(self, image: oq.CachedImage, result: EvictionResult) -> None:
        removed = await self._db.write(oq.evict_image, image.repository, image.digest)
        if not removed:
            return
        result.images.append(image)
        candidates = await self._db.read(oq.unreferenced_cached_blobs, self._prefixes)
        prefixes = self._prefixes
        driver = self._driver

        def sweep(conn: sqlite3.Connection) -> tuple[int, int]:
            count = freed = 0
            for blob in candidates:
                if oq.delete_cached_blob(conn, blob.digest, prefixes):
                    driver.delete(blob_key(Digest.parse(blob.digest)))
                    count += 1
                    freed += blob.size
            return count, freed

        count, freed = await self._db.write(sweep)
        result.blobs += count
        result.bytes_freed += freed
