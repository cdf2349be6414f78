"""Tag lists, the catalog and the referrers API."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from dockyard.api.auth import may
from dockyard.api.context import context
from dockyard.api.proxying import cache_target
from dockyard.api.responses import json_response
from dockyard.api.routing import Route
from dockyard.auth.rules import PULL
from dockyard.errors import RegistryError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.names import validate_name


class PaginationInvalidError(RegistryError):
    code = "UNSUPPORTED"
    status = 400
    default_message = "invalid pagination: n must be a non-negative integer"


def _page_size(request: web.Request, maximum: int) -> int:
    raw = request.query.get("n")
    if raw is None or raw == "":
        return maximum
    if not raw.isdigit():
        raise PaginationInvalidError(detail={"n": raw[:50]})
    return min(int(raw), maximum)


def _cached_name(request: web.Request, name: str) -> str:
    """Tags and referrers of a cached repository are those the cache holds."""
    target = cache_target(request, name)
    return target.local_name if target is not None and not target.fallback else name


def _next_link(path: str, last: str, n: int) -> str:
    return f'<{path}?{urlencode({"last": last, "n": n})}>; rel="next"'


async def list_tags(request: web.Request, route: Route) -> web.StreamResponse:
    """`{"name": ..., "tags": [...]}` in byte order, paginated with `n`, `last` and Link."""
    name = validate_name(route.name)
    ctx = context(request)
    n = _page_size(request, ctx.settings.tags_max_entries)
    last = request.query.get("last", "")
    manifests = ctx.registry.manifests
    # One extra row tells whether a next page exists.
    tags = await manifests.tags(_cached_name(request, name), last, n + 1 if n else 0)
    headers = {}
    if n and len(tags) > n:
        tags = tags[:n]
        headers["Link"] = _next_link(f"/v2/{name}/tags/list", tags[-1], n)
    return json_response({"name": name, "tags": tags}, headers=headers)


async def catalog(request: web.Request, route: Route) -> web.StreamResponse:
    """`{"repositories": [...]}`, paginated like tag lists."""
    ctx = context(request)
    n = _page_size(request, ctx.settings.catalog_max_entries)
    last = request.query.get("last", "")
    names: list[str] = []
    # Only what the caller may pull is listed; keep reading until the page is full.
    cursor = last
    while n and len(names) <= n:
        batch = await ctx.registry.manifests.catalog(cursor, n + 1)
        names += [name for name in batch if may(request, name, PULL)]
        if len(batch) < n + 1:
            break
        cursor = batch[-1]
    headers = {}
    if n and len(names) > n:
        names = names[:n]
        headers["Link"] = _next_link("/v2/_catalog", names[-1], n)
    return json_response({"repositories": names}, headers=headers)


async def referrers(request: web.Request, route: Route) -> web.StreamResponse:
    """An image index of the manifests whose subject is the digest (never a 404)."""
    name = _cached_name(request, validate_name(route.name))
    subject = Digest.parse(route.argument)
    artifact_type = request.query.get("artifactType") or None
    found = await context(request).registry.manifests.referrers(name, subject, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "manifests": [r.descriptor() for r in found],
    }
    return json_response(body, headers=headers, content_type=mt.OCI_INDEX)
