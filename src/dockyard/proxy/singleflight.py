"""Concurrent callers asking for the same key share one call's result."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs at most one call per key at a time; latecomers await the same task.

    The call runs as its own task, so it finishes even if the caller that started it
    goes away.
    """

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[T]] = {}
        self.shared = 0

    async def do(self, key: str, call: Callable[[], Awaitable[T]]) -> T:
        task = self._tasks.get(key)
        if task is None:

            async def run() -> T:
                try:
                    return await call()
                finally:
                    self._tasks.pop(key, None)

            task = asyncio.ensure_future(run())
            self._tasks[key] = task
        else:
            self.shared += 1
        return await asyncio.shield(task)

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
