"""The server's periodic jobs: bookkeeping flushes, upload purging, gc, cache eviction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from dockyard.errors import RegistryError
from dockyard.ops.eviction import CacheEvictor
from dockyard.ops.gc import GarbageCollector, GCOptions
from dockyard.registry import Registry

log = logging.getLogger("dockyard.maintenance")


@dataclass
class GCStats:
    runs: int = 0
    bytes_freed: int = 0


@dataclass(frozen=True)
class Schedule:
    flush_interval: float = 10.0
    upload_max_age: float | None = 7 * 24 * 3600.0
    upload_interval: float = 24 * 3600.0
    gc_interval: float | None = None
    gc_options: GCOptions = field(default_factory=GCOptions)
    eviction_interval: float | None = None


class Maintenance:
    """Starts and stops the periodic jobs of one server."""

    def __init__(
        self,
        registry: Registry,
        schedule: Schedule,
        collector: GarbageCollector | None = None,
        evictor: CacheEvictor | None = None,
    ) -> None:
        self.registry = registry
        self.schedule = schedule
        self.collector = collector
        self.evictor = evictor
        self.gc_stats = GCStats()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        s = self.schedule
        self._every(s.flush_interval, self.flush)
        if s.upload_max_age is not None:
            max_age = s.upload_max_age
            self._every(s.upload_interval, lambda: self._purge(max_age), first=True)
        if self.collector is not None and s.gc_interval:
            self._every(s.gc_interval, self.collect)
        if self.evictor is not None and s.eviction_interval:
            self._every(s.eviction_interval, self.evict)

    def _every(
        self, interval: float, job: Callable[[], Awaitable[object]], first: bool = False
    ) -> None:
        async def loop() -> None:
            if not first:
                await asyncio.sleep(interval)
            while True:
                try:
                    await job()
                except (RegistryError, sqlite3.Error, OSError) as exc:
                    # A full disk or a busy database must not stop the schedule.
                    log.warning(
                        "maintenance job failed",
                        extra={
                            "fields": {"job": getattr(job, "__name__", "job"), "error": str(exc)}
                        },
                    )
                await asyncio.sleep(interval)

        self._tasks.append(asyncio.create_task(loop()))

    async def flush(self) -> None:
        await self.registry.manifests.flush_pulls()
        await self.registry.blobs.flush_access()

    async def _purge(self, max_age: float) -> None:
        removed = await self.registry.uploads.purge(max_age)
        if removed:
            log.info("purged stale upload sessions", extra={"fields": {"removed": removed}})

    async def collect(self) -> None:
        assert self.collector is not None
        await self.flush()
        result = await self.collector.run(self.schedule.gc_options)
        self.gc_stats.runs += 1
        self.gc_stats.bytes_freed += result.bytes_freed

    async def evict(self) -> None:
        assert self.evictor is not None
        await self.flush()
        await self.evictor.run_once()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        with contextlib.suppress(RegistryError, sqlite3.Error):
            await self.flush()
