"""Usage: the volume, Dockyard's share of it, and each repository's."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dockyard.metadata import Database
from dockyard.metadata import ops_queries as oq


@dataclass(frozen=True)
class VolumeUsage:
    path: str
    size: int
    used: int
    free: int


@dataclass(frozen=True)
class StoreUsage:
    volume: VolumeUsage
    blobs: int
    blob_bytes: int
    pushed_bytes: int
    cached_bytes: int
    repositories: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def volume_usage(root: Path) -> VolumeUsage:
    """`df` for the filesystem holding the store."""
    st = os.statvfs(root)
    size = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return VolumeUsage(str(root), size, used, free)


async def store_usage(db: Database, root: Path, cached_prefixes: list[str]) -> StoreUsage:
    """Totals for `dockyard df` and the metrics."""
    count, cached, total = await db.read(oq.store_totals, cached_prefixes)
    repositories = len(await db.read(oq.repository_usage))
    return StoreUsage(
        volume_usage(root),
        blobs=count,
        blob_bytes=total,
        pushed_bytes=total - cached,
        cached_bytes=cached,
        repositories=repositories,
    )


async def repository_usage(db: Database, names: list[str] | None = None) -> list[oq.Usage]:
    """Per repository, largest first; optionally only the named ones (or their children)."""
    rows = await db.read(oq.repository_usage)
    if names:
        rows = [r for r in rows if any(r.name == n or r.name.startswith(n + "/") for n in names)]
    return sorted(rows, key=lambda r: (-r.referenced_bytes, r.name))
