"""Turns `/v2/...` paths into a resource, a repository name and an argument.

Repository names contain slashes, so the path is matched from its end: the last
`/manifests/`, `/blobs/`, `/tags/list` or `/referrers/` decides the resource.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from aiohttp import web


class Resource(Enum):
    BASE = "base"
    CATALOG = "catalog"
    MANIFEST = "manifest"
    BLOB = "blob"
    UPLOADS = "uploads"
    UPLOAD = "upload"
    TAGS = "tags"
    REFERRERS = "referrers"


@dataclass(frozen=True, slots=True)
class Route:
    resource: Resource
    name: str = ""
    argument: str = ""


_PATTERNS: tuple[tuple[re.Pattern[str], Resource], ...] = (
    (re.compile(r"^(?P<name>.+)/manifests/(?P<arg>[^/]+)$"), Resource.MANIFEST),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/?$"), Resource.UPLOADS),
    (re.compile(r"^(?P<name>.+)/blobs/uploads/(?P<arg>[^/]+)$"), Resource.UPLOAD),
    (re.compile(r"^(?P<name>.+)/blobs/(?P<arg>[^/]+)$"), Resource.BLOB),
    (re.compile(r"^(?P<name>.+)/tags/list/?$"), Resource.TAGS),
    (re.compile(r"^(?P<name>.+)/referrers/(?P<arg>[^/]+)$"), Resource.REFERRERS),
)


def match(tail: str) -> Route | None:
    """The route for the part of the path after `/v2/`, or None."""
    if tail == "":
        return Route(Resource.BASE)
    if tail in ("_catalog", "_catalog/"):
        return Route(Resource.CATALOG)
    for pattern, resource in _PATTERNS:
        found = pattern.match(tail)
        if found is not None:
            return Route(resource, found.group("name"), found.groupdict().get("arg") or "")
    return None


# Paths up to this long have their route remembered: a node pulling the same tag, or many
# nodes pulling the same blob, repeat the same path. Longer paths are matched every time.
_REMEMBERED_PATH = 512


def route_of_path(path: str) -> Route | None:
    """match() for a request path (`/v2/...`; any other path is BASE)."""
    return _route(path) if len(path) > _REMEMBERED_PATH else _remembered(path)


def _route(path: str) -> Route | None:
    return match(path[4:] if path.startswith("/v2/") else "")


_remembered = lru_cache(maxsize=4096)(_route)


def route_of(request: web.BaseRequest) -> Route | None:
    """The route of a request (the metrics, authentication and dispatch all need it; a
    Route is immutable, so one is shared by every request for its path)."""
    return route_of_path(request.path)
