"""Who may pull, push and delete where: rules per repository pattern, first match wins."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

PULL, PUSH, DELETE = "pull", "push", "delete"
ACTIONS = (PULL, PUSH, DELETE)
# Principals in rules: a user name, "@group", "authenticated" (any valid user), "anonymous"
# (anyone, with or without credentials).
ANONYMOUS = "anonymous"
AUTHENTICATED = "authenticated"


@dataclass(frozen=True)
class AccessRule:
    pattern: str
    grants: dict[str, tuple[str, ...]]  # action -> principals

    def matches(self, repository: str) -> bool:
        return fnmatch.fnmatchcase(repository, self.pattern)


@dataclass(frozen=True)
class AccessPolicy:
    rules: tuple[AccessRule, ...] = ()
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def _principal_matches(self, principal: str, user: str | None) -> bool:
        if principal == ANONYMOUS:
            return True
        if user is None:
            return False
        if principal in (AUTHENTICATED, user):
            return True
        return principal.startswith("@") and user in self.groups.get(principal[1:], ())

    def allowed(self, user: str | None, repository: str) -> set[str]:
        """The actions `user` (None when anonymous) may take on `repository`."""
        rule = next((r for r in self.rules if r.matches(repository)), None)
        if rule is None:
            # No rule: any authenticated user may do anything, anonymous nothing.
            return set(ACTIONS) if user is not None else set()
        return {
            action
            for action, principals in rule.grants.items()
            if any(self._principal_matches(p, user) for p in principals)
        }

    def anonymous_can_pull_somewhere(self) -> bool:
        return any(ANONYMOUS in r.grants.get(PULL, ()) for r in self.rules)
