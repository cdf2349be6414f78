"""A blob on its way into the cache, as the clients waiting for it see it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from dockyard.errors import RegistryError
from dockyard.oci.digest import Digest


@dataclass(eq=False)
class Download:
    """A blob on its way from an upstream; clients follow its progress.

    `staging_key` names the file the bytes arrive in: this process's own, or the one of
    the process that leads the download (`serve --workers`). `written` bytes of it are on
    disk; `done` means verified and committed.
    """

    digest: Digest
    staging_key: str
    size: int | None = None
    written: int = 0
    done: bool = False
    error: RegistryError | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    task: asyncio.Task[None] | None = None

    async def notify(self) -> None:
        """Wake the clients: more bytes, or the end."""
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
