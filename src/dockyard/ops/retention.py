"""Retention rules: per repository pattern, keep the N newest tags and/or recently pulled ones."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from dataclasses import dataclass

from dockyard.metadata.ops_queries import TagRow


@dataclass(frozen=True)
class RetentionRule:
    pattern: str  # fnmatch-style: "team/*", "ci/**"
    keep_tags: int | None = None
    pulled_within: float | None = None  # seconds

    def matches(self, repository: str) -> bool:
        return fnmatch.fnmatchcase(repository, self.pattern)


def retention_victims(
    tags: list[TagRow], rules: tuple[RetentionRule, ...], now: float
) -> list[TagRow]:
    """Tags the first matching rule does not keep.

    A tag is kept when it is among the rule's `keep_tags` most recently pushed tags of its
    repository, or when its manifest was pulled within `pulled_within`. A rule with neither
    keeps everything.
    """
    by_repo: dict[str, list[TagRow]] = defaultdict(list)
    for tag in tags:
        by_repo[tag.repository].append(tag)
    doomed: list[TagRow] = []
    for repository, repo_tags in sorted(by_repo.items()):
        rule = next((r for r in rules if r.matches(repository)), None)
        if rule is None or (rule.keep_tags is None and rule.pulled_within is None):
            continue
        newest_first = sorted(repo_tags, key=lambda t: (-t.updated, t.tag))
        for rank, tag in enumerate(newest_first):
            recent = rule.keep_tags is not None and rank < rule.keep_tags
            pulled = (
                rule.pulled_within is not None
                and tag.last_pull is not None
                and now - tag.last_pull <= rule.pulled_within
            )
            if not (recent or pulled):
                doomed.append(tag)
    return doomed
