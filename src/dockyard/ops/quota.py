"""Quotas on pushed content: a total, and limits per repository-name prefix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import DeniedError
from dockyard.metadata import Database
from dockyard.metadata import ops_queries as oq
from dockyard.ops.usage import volume_usage


@dataclass(frozen=True)
class QuotaRule:
    prefix: str  # "" for the total
    limit: int | float  # bytes, or a fraction of the volume

    def bytes(self, root: Path) -> int:
        if isinstance(self.limit, float) and self.limit <= 1:
            return int(volume_usage(root).size * self.limit)
        return int(self.limit)


class QuotaEnforcer:
    """Refuses a blob commit that would take pushed content past a quota (DENIED)."""

    def __init__(
        self, db: Database, root: Path, rules: list[QuotaRule], cached_prefixes: list[str]
    ) -> None:
        self._db = db
        self._root = root
        self._rules = rules
        self._cached = cached_prefixes

    async def check(self, repo: str, incoming: int) -> None:
        for rule in self._rules:
            if not repo.startswith(rule.prefix):
                continue
            used = await self._db.read(oq.pushed_bytes_under, rule.prefix, self._cached)
            limit = rule.bytes(self._root)
            if used + incoming > limit:
                name = f"quota for {rule.prefix!r}" if rule.prefix else "total quota"
                raise DeniedError(
                    f"{name} exceeded: {used} bytes used + {incoming} pushed > {limit} bytes",
                    detail={"quota": rule.prefix or "total", "limit": limit, "used": used},
                )
