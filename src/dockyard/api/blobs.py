"""GET, HEAD and DELETE of blobs."""

from __future__ import annotations

from aiohttp import web

from dockyard.api.context import context
from dockyard.api.proxying import (
    cache_target,
    local_blob_repository,
    namespace_headers,
    refuse_writes_to_cache,
    stream_download,
    stream_passthrough,
)
from dockyard.api.ranges import requested_range
from dockyard.api.responses import SendfileResponse, head_response
from dockyard.api.routing import Route
from dockyard.errors import RangeNotSatisfiableError, StorageFullError, UnsupportedError
from dockyard.oci.digest import Digest
from dockyard.oci.names import validate_name
from dockyard.proxy.cache import PassThrough
from dockyard.proxy.fetcher import Download


def _blob_headers(digest: Digest) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(digest),
        "Content-Type": "application/octet-stream",
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Cache-Control": "max-age=31536000",
    }


async def get_blob(request: web.Request, route: Route) -> web.StreamResponse:
    """The blob's bytes (or a byte range of them), sent with sendfile."""
    name = validate_name(route.name)
    digest = Digest.parse(route.argument)
    ctx = context(request)
    target = cache_target(request, name)
    headers = _blob_headers(digest) | namespace_headers(request, target)
    if target is not None and ctx.cache is not None:
        source = await ctx.cache.blob(target, digest, name)
        if isinstance(source, PassThrough):
            return await stream_passthrough(request, source, headers)
        if isinstance(source, Download):
            try:
                if "Range" not in request.headers:
                    return await stream_download(request, source, headers)
                # A range of a blob still arriving: wait for it to be committed first.
                await source.wait_started()
                await source.wait_beyond(2**62)
                if source.error is not None:
                    raise source.error
            except StorageFullError:
                # No room to cache it, and nothing sent yet: this client gets it straight
                # from the upstream.
                return await stream_passthrough(
                    request, ctx.cache.pass_through(target, digest), headers
                )
            name = target.local_name
        else:
            name = source.repository
    else:
        name = await local_blob_repository(request, name, digest)
    info, fobj = await ctx.registry.blobs.open(name, digest)
    try:
        selected = requested_range(request.headers.get("Range"), info.size)
    except RangeNotSatisfiableError:
        fobj.close()
        raise
    readers = ctx.readers
    if selected is None:
        return SendfileResponse(fobj, 0, info.size, headers=headers, readers=readers)
    start, end = selected
    headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    return SendfileResponse(
        fobj, start, end - start + 1, status=206, headers=headers, readers=readers
    )


async def head_blob(request: web.Request, route: Route) -> web.StreamResponse:
    """Whether the blob exists here, with its size and digest."""
    name = validate_name(route.name)
    digest = Digest.parse(route.argument)
    ctx = context(request)
    target = cache_target(request, name)
    headers = _blob_headers(digest) | namespace_headers(request, target)
    if target is not None and ctx.cache is not None:
        return head_response(await ctx.cache.blob_size(target, digest, name), headers)
    name = await local_blob_repository(request, name, digest)
    info = await ctx.registry.blobs.stat(name, digest)
    return head_response(info.size, headers)


async def delete_blob(request: web.Request, route: Route) -> web.StreamResponse:
    """Unlink a blob from the repository (202); the bytes go at the next garbage collection."""
    name = validate_name(route.name)
    refuse_writes_to_cache(request, name)
    digest = Digest.parse(route.argument)
    registry = context(request).registry
    if not registry.delete_enabled:
        raise UnsupportedError("deletes are disabled on this registry (storage.delete.enabled)")
    await registry.blobs.delete(name, digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest)})
