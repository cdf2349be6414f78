"""Where the HTTP layer meets the pull-through cache: routing, refusing writes, streaming."""

from __future__ import annotations

from typing import BinaryIO

from aiohttp import web

from dockyard.api.context import context
from dockyard.api.ranges import requested_range
from dockyard.api.responses import BODY_PROGRESS
from dockyard.api.sendfile import Progress, send_file
from dockyard.errors import BlobUnknownError, ManifestUnknownError, UnsupportedError
from dockyard.oci.digest import Digest
from dockyard.proxy.cache import PassThrough
from dockyard.proxy.fetcher import READ_CHUNK, Download
from dockyard.proxy.router import ProxyTarget, imported_repository
from dockyard.registry.blobs import LocalBlobStore
from dockyard.registry.manifests import ManifestStore, StoredManifest


def namespace(request: web.Request) -> str | None:
    """The `ns` query parameter containerd sends with the registry a request is for."""
    # The query is parsed only when there is one: most requests have none.
    return request.query.get("ns") if request.query_string else None


def cache_target(request: web.Request, name: str) -> ProxyTarget | None:
    """The upstream this request is routed to, or None for a local repository."""
    cache = context(request).cache
    if cache is None:
        return None
    return cache.route(name, namespace(request))


async def local_manifest(
    manifests: ManifestStore, ns: str | None, name: str, reference: str
) -> StoredManifest:
    """A manifest of a request no upstream takes: from `<ns>/<name>` (imported), then `name`."""
    imported = imported_repository(name, ns)
    if imported is not None:
        try:
            return await manifests.get(imported, reference)
        except ManifestUnknownError:
            pass
    return await manifests.get(name, reference)


async def local_blob_repository(request: web.Request, name: str, digest: Digest) -> str:
    """The local repository a blob request no upstream takes reads from (as for manifests)."""
    imported = imported_repository(name, namespace(request))
    if imported is not None:
        try:
            await context(request).registry.blobs.stat(imported, digest)
            return imported
        except BlobUnknownError:
            pass
    return name


def refuse_writes_to_cache(request: web.Request, name: str) -> None:
    """Pushes and deletes under a cached registry's name are refused (405 UNSUPPORTED)."""
    target = cache_target(request, name)
    if target is not None and not target.fallback:
        raise UnsupportedError(
            f"{name} is served from the cache of {target.upstream.settings.name}; "
            "push to a repository outside the cached registries",
            detail={"name": name, "upstream": target.upstream.settings.name},
        )


def namespace_headers(request: web.Request, target: ProxyTarget | None) -> dict[str, str]:
    """`OCI-Namespace` echoes the `ns` a request was routed by (spec: Registry Proxying)."""
    if target is not None and (ns := namespace(request)):
        return {"OCI-Namespace": ns}
    return {}


async def _open_download(blobs: LocalBlobStore, download: Download) -> BinaryIO:
    """The file a download's bytes are in: its staging file, or the blob once committed."""
    try:
        return blobs.open_staged(download.staging_key)
    except FileNotFoundError:
        pass
    try:
        # Committed (renamed) between our checks: the final file holds the same bytes.
        return blobs.open_committed(download.digest)
    except FileNotFoundError:
        # Neither: the download failed and its file is gone, or is about to say so.
        await download.wait_finished()
        if download.error is not None:
            raise download.error from None
        return blobs.open_committed(download.digest)


async def stream_download(
    request: web.Request, download: Download, headers: dict[str, str]
) -> web.StreamResponse:
    """Serve a blob while it downloads: sendfile each stretch already on disk, then wait."""
    await download.wait_started()
    ctx = context(request)
    cache = ctx.cache
    assert cache is not None
    blobs = cache.registry.blobs
    if download.size is None:
        # No length from the upstream: wait for the verified blob, then serve it whole.
        await download.wait_beyond(2**62)
        if download.error is not None:
            raise download.error
        download_size = download.written
        fobj = blobs.open_committed(download.digest)
    else:
        download_size = download.size
        fobj = await _open_download(blobs, download)
    response = web.StreamResponse(status=200, headers=headers)
    response.content_length = download_size
    progress = response[BODY_PROGRESS] = Progress()
    ctx.settings.standard_headers.apply(response.headers)
    try:
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        transport = request.transport
        while (sent := progress.sent) < download_size:
            # The last byte waits for the digest check: a client must never receive a whole
            # body, with a success status, that turns out not to match its digest.
            if sent < download_size - 1:
                await download.wait_beyond(sent)
            else:
                await download.wait_finished()
            if download.error is not None:
                # Headers are gone already: cut the connection so the client sees a failure.
                if transport is not None:
                    transport.abort()
                raise ConnectionResetError(download.error.message)
            limit = download_size if download.done else min(download.written, download_size - 1)
            if transport is None or transport.is_closing():
                raise ConnectionResetError("client went away")
            if limit > sent:
                await send_file(
                    transport, response.write, fobj, sent, limit - sent, progress, ctx.readers
                )
        await response.write_eof()
        return response
    finally:
        fobj.close()


async def stream_passthrough(
    request: web.Request, source: PassThrough, headers: dict[str, str]
) -> web.StreamResponse:
    """Send a blob straight from the upstream while the store has no room for it.

    Nothing is stored; the bytes are hashed as they pass, and the last byte sent waits for
    the digest check (as for a download), so a body that does not match its digest never
    arrives whole. A `Range` is honoured by reading the whole blob and sending the range.
    """
    upstream = source.target.upstream
    digest = source.digest
    async with upstream.blob(source.target.remote_name, str(digest)) as upstream_response:
        size = upstream_response.content_length
        status, start, end = 200, 0, None if size is None else size - 1
        if size is not None:
            selected = requested_range(request.headers.get("Range"), size)
            if selected is not None:
                status, (start, end) = 206, selected
                headers = headers | {"Content-Range": f"bytes {start}-{end}/{size}"}
        response = web.StreamResponse(status=status, headers=headers)
        if end is not None:
            response.content_length = end - start + 1
        context(request).settings.standard_headers.apply(response.headers)
        await response.prepare(request)
        hasher = digest.hasher()
        offset = 0
        held = b""
        async for chunk in upstream_response.content.iter_chunked(READ_CHUNK):
            hasher.update(chunk)
            low, high = offset, offset + len(chunk)
            offset = high
            first, last = max(low, start), high if end is None else min(high, end + 1)
            if last > first:
                if held:
                    await response.write(held)
                piece = chunk[first - low : last - low]
                await response.write(piece[:-1])
                held = piece[-1:]
            upstream.stats.bytes_downloaded += len(chunk)
        if (size is not None and offset != size) or hasher.hexdigest() != digest.hex:
            upstream.stats.errors += 1
            if request.transport is not None:
                request.transport.abort()  # headers are gone: the client must see a failure
            raise ConnectionResetError(
                f"upstream {upstream.settings.name} sent content that does not match {digest}"
            )
        if held:
            await response.write(held)
        await response.write_eof()
        return response
