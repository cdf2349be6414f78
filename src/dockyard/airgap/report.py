"""What an import did: images written, left alone or skipped (with the reason)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.airgap.store import ImagePlan, WriteStats


@dataclass(frozen=True, slots=True)
class Skipped:
    what: str
    reason: str


@dataclass
class ImportReport:
    source: str
    images: list[tuple[ImagePlan, str]] = field(default_factory=list)  # plan, status
    skipped: list[Skipped] = field(default_factory=list)
    stats: WriteStats = field(default_factory=WriteStats)

    def count(self, status: str) -> int:
        return sum(1 for _plan, s in self.images if s == status)

    def summary(self) -> str:
        return (
            f"{self.source}: {self.count('new')} new, {self.count('updated')} updated, "
            f"{self.count('unchanged')} unchanged image(s); {len(self.skipped)} skipped; "
            f"{self.stats.blobs_written} blob(s) written ({self.stats.bytes_written} bytes), "
            f"{self.stats.blobs_present} already present"
        )
