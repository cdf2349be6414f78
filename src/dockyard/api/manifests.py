"""GET, HEAD, PUT and DELETE of manifests."""

from __future__ import annotations

import json
from functools import lru_cache

from aiohttp import web

from dockyard.api.bodies import body_chunks
from dockyard.api.context import context
from dockyard.api.proxying import (
    cache_target,
    local_manifest,
    namespace,
    namespace_headers,
    refuse_writes_to_cache,
)
from dockyard.api.responses import head_response
from dockyard.api.routing import Route
from dockyard.errors import ManifestTooLargeError, ManifestUnknownError, UnsupportedError
from dockyard.oci import mediatypes as mt
from dockyard.oci.names import validate_name
from dockyard.proxy.router import ProxyTarget
from dockyard.registry.manifests import StoredManifest


@lru_cache(maxsize=1024)
def _manifest_headers(digest: str, media_type: str) -> tuple[tuple[str, str], ...]:
    """The headers of a manifest's GET and HEAD (worked out once per manifest)."""
    return (
        ("Docker-Content-Digest", digest),
        ("Content-Type", media_type),
        ("ETag", f'"{digest}"'),
    )


async def _fetch(
    request: web.Request, name: str, reference: str, target: ProxyTarget | None
) -> StoredManifest:
    ctx = context(request)
    if target is not None and ctx.cache is not None:
        return await ctx.cache.manifest(target, reference, name)
    return await local_manifest(ctx.registry.manifests, namespace(request), name, reference)


async def _negotiate(
    request: web.Request,
    name: str,
    target: ProxyTarget | None,
    manifest: StoredManifest,
    accept: mt.Acceptance,
) -> StoredManifest:
    """Content negotiation over every `Accept:` line a client sent (merged), for a manifest
    the client's Accept does not allow as it is (`Acceptance.allows`).

    Manifests are served exactly as pushed. Only a client that names manifest types but not
    this one is treated differently: for an index it gets the linux/amd64 child when it
    accepts that child's type (as Distribution does for old clients), otherwise 404.
    """
    if manifest.media_type in mt.INDEXES:
        index = json.loads(manifest.content)
        for child in index.get("manifests", []):
            platform = child.get("platform") or {}
            if (
                platform.get("os") == "linux"
                and platform.get("architecture") == "amd64"
                and child.get("mediaType") in accept.manifest_types
            ):
                return await _fetch(request, name, child["digest"], target)
    raise ManifestUnknownError(
        f"the manifest is {manifest.media_type}, which the request's Accept header excludes",
        detail={"accepted": list(accept.types[:20]), "mediaType": manifest.media_type},
    )


async def get_manifest(request: web.Request, route: Route) -> web.StreamResponse:
    """The manifest exactly as pushed, with its media type and digest."""
    name = validate_name(route.name)
    target = cache_target(request, name)
    manifest = await _fetch(request, name, route.argument, target)
    accept = mt.acceptance(request.headers.getall("Accept", ()))
    if not accept.allows(manifest.media_type):
        manifest = await _negotiate(request, name, target, manifest, accept)
    digest = str(manifest.digest)
    headers = _manifest_headers(digest, manifest.media_type)
    if target is not None:
        headers += tuple(namespace_headers(request, target).items())
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match and f'"{digest}"' in (v.strip() for v in if_none_match.split(",")):
        return web.Response(status=304, headers=headers)
    if request.method == "HEAD":
        return head_response(manifest.size, headers)
    return web.Response(status=200, body=manifest.content, headers=headers)


async def _read_limited(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise ManifestTooLargeError(f"manifest is {declared} bytes; the limit is {limit}")
    data = bytearray()
    async for chunk in body_chunks(request):
        data += chunk
        if len(data) > limit:
            raise ManifestTooLargeError(f"manifest exceeds the limit of {limit} bytes")
    return bytes(data)


async def put_manifest(request: web.Request, route: Route) -> web.StreamResponse:
    """Store a manifest by tag or digest (plus `?tag=` tags when pushed by digest)."""
    name = validate_name(route.name)
    refuse_writes_to_cache(request, name)
    store = context(request).registry.manifests
    data = await _read_limited(request, store.max_size)
    extra_tags = request.query.getall("tag", [])
    result = await store.put(
        name, route.argument, request.headers.get("Content-Type"), data, extra_tags
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{result.digest}",
        "Docker-Content-Digest": str(result.digest),
    }
    if result.subject is not None:
        headers["OCI-Subject"] = str(result.subject)
    response = web.Response(status=201, headers=headers)
    if extra_tags:
        response.headers["OCI-Tag"] = ", ".join(dict.fromkeys(extra_tags))
    return response


async def delete_manifest(request: web.Request, route: Route) -> web.StreamResponse:
    """By digest: the manifest and its tags. By tag: only the tag."""
    name = validate_name(route.name)
    refuse_writes_to_cache(request, name)
    registry = context(request).registry
    if not registry.delete_enabled:
        raise UnsupportedError("deletes are disabled on this registry (storage.delete.enabled)")
    await registry.manifests.delete(name, route.argument)
    return web.Response(status=202)
