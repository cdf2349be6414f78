"""Blocking writes, in order, on worker threads, while the event loop keeps receiving.

Awaiting each write before reading on serialises network and disk: the socket stalls
while a batch is written and hashed. Here up to `depth` batches are in flight; each waits
for the one before it, so the bytes reach the file (and the hash) in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class OrderedWriter(Generic[T]):
    def __init__(self, write: Callable[[T], None], depth: int = 4) -> None:
        self._write = write
        self._slots = asyncio.Semaphore(depth)
        self._last: asyncio.Task[None] | None = None

    async def _run(self, previous: asyncio.Task[None] | None, data: T) -> None:
        try:
            if previous is not None:
                await previous  # in order; a failed write stops every later one
            await asyncio.to_thread(self._write, data)
        finally:
            self._slots.release()

    async def submit(self, data: T) -> None:
        """Queue a write; waits while `depth` are in flight, raises an earlier write's error."""
        last = self._last
        if last is not None and last.done():
            last.result()
        await self._slots.acquire()
        self._last = asyncio.create_task(self._run(self._last, data))

    async def close(self) -> None:
        """Wait for every queued write; raises the first failure."""
        if self._last is not None:
            await self._last

    async def settle(self) -> None:
        """Wait until nothing is in flight, whatever happened (before closing the file)."""
        if self._last is not None:
            await asyncio.gather(self._last, return_exceptions=True)
