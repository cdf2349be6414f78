"""Repository names and tags, with the grammar of the distribution spec."""

from __future__ import annotations

import re
from functools import lru_cache

from dockyard.errors import NameInvalidError, TagInvalidError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")

# Clients limit host + "/" + name to 255 characters; leave room for a host.
MAX_NAME_LENGTH = 255


def is_valid_name(name: str) -> bool:
    """True for a repository name that follows the spec's grammar (and length limit)."""
    return bool(name) and len(name) <= MAX_NAME_LENGTH and _valid_name(name)


@lru_cache(maxsize=4096)  # names repeat from request to request; each is at most 255 long
def _valid_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name))


def validate_name(name: str) -> str:
    """Return the name if it follows the spec's grammar; NameInvalidError otherwise."""
    if not is_valid_name(name):
        raise NameInvalidError(
            "invalid repository name: components must match "
            "[a-z0-9]+((.|_|__|-+)[a-z0-9]+)* separated by '/'",
            detail={"name": name[:300]},
        )
    return name


def is_valid_tag(tag: str) -> bool:
    """True for a tag matching [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}."""
    return bool(_TAG.fullmatch(tag))


def validate_tag(tag: str) -> str:
    """Return the tag if valid; TagInvalidError otherwise."""
    if not is_valid_tag(tag):
        raise TagInvalidError(
            "invalid tag: must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}",
            detail={"tag": tag[:300]},
        )
    return tag
