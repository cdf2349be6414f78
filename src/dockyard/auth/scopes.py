"""What a token grants, and scopes as clients ask for them: kept apart from `tokens` (JWTs,
signatures) so that a registry without token auth never loads jwt and cryptography."""

from __future__ import annotations

from collections.abc import Iterable

Access = dict[str, set[str]]  # repository name -> actions ("registry:catalog" for the catalog)


class InvalidToken(Exception):
    """A token that is malformed, expired, for another service, or not signed by a trusted key."""


def parse_scopes(scopes: Iterable[str]) -> Access:
    """`repository:team/app:pull,push` (repeatable) -> {"team/app": {"pull", "push"}}."""
    wanted: Access = {}
    for scope in scopes:
        for item in scope.split(" "):
            parts = item.split(":")
            if len(parts) < 3:
                continue
            kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1]
            if kind == "repository":
                wanted.setdefault(name, set()).update(a for a in actions.split(",") if a)
            elif kind == "registry" and name == "catalog":
                wanted.setdefault("registry:catalog", set()).add("*")
    return wanted
