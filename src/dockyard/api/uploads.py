"""Blob uploads: POST (start, monolithic, mount), PATCH, PUT, GET status, DELETE."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from dockyard.api.auth import identity, may
from dockyard.api.bodies import body_chunks
from dockyard.api.context import context
from dockyard.api.proxying import refuse_writes_to_cache
from dockyard.api.ranges import parse_content_range
from dockyard.api.routing import Route
from dockyard.auth.rules import PULL
from dockyard.errors import (
    DigestInvalidError,
    NameInvalidError,
    SizeInvalidError,
)
from dockyard.oci.digest import Digest
from dockyard.oci.names import validate_name
from dockyard.registry.uploads import UploadStatus, upload_range_headers


def _owner(request: web.Request) -> str | None:
    """Sessions are bound to the user who opened them."""
    who = identity(request)
    return who.user if who is not None else None


def _body(request: web.Request) -> AsyncIterator[bytes]:
    return body_chunks(request)


def _has_body(request: web.Request) -> bool:
    length = request.content_length
    return bool(length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _content_length(request: web.Request) -> int | None:
    try:
        return request.content_length
    except ValueError:
        raise SizeInvalidError("invalid Content-Length") from None


def _accepted(status: UploadStatus, code: int = 202) -> web.Response:
    headers = upload_range_headers(status)
    return web.Response(status=code, headers=headers)


def _created(name: str, digest: Digest) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": str(digest),
        },
    )


def _query_digest(request: web.Request) -> Digest:
    value = request.query.get("digest")
    if not value:
        raise DigestInvalidError("the digest query parameter is required")
    return Digest.parse(value)


async def start_upload(request: web.Request, route: Route) -> web.StreamResponse:
    """POST /v2/<name>/blobs/uploads/: mount, monolithic upload, or a new session."""
    name = validate_name(route.name)
    refuse_writes_to_cache(request, name)
    registry = context(request).registry
    mount = request.query.get("mount")
    source = request.query.get("from")
    if mount:
        digest = Digest.parse(mount)
        if source:
            try:
                source = validate_name(source)
            except NameInvalidError:
                source = None
        if source and not may(request, source, PULL):
            source = None  # no mounting from where the caller may not read
        if source and await registry.blobs.mount(name, digest, source) is not None:
            return _created(name, digest)
        # Not mountable: the spec says to answer with a new upload session instead.
    elif "digest" in request.query:
        digest = _query_digest(request)
        await registry.uploads.ingest(
            name, digest, _body(request), _content_length(request), _owner(request)
        )
        return _created(name, digest)
    algorithm = request.query.get("digest-algorithm", "sha256")
    status = await registry.uploads.start(name, algorithm, _owner(request))
    return _accepted(status)


async def upload_status(request: web.Request, route: Route) -> web.StreamResponse:
    """GET on a session: 204 with how much it holds."""
    name = validate_name(route.name)
    status = await context(request).registry.uploads.status(name, route.argument, _owner(request))
    return _accepted(status, 204)


async def patch_upload(request: web.Request, route: Route) -> web.StreamResponse:
    """PATCH a chunk onto a session (in order: a gap or overlap is a 416)."""
    name = validate_name(route.name)
    refuse_writes_to_cache(request, name)
    content_range = parse_content_range(request.headers.get("Content-Range"))
    length = _content_length(request)
    start = None
    if content_range is not None:
        start, end = content_range
        if length is not None and length != end - start + 1:
            raise SizeInvalidError(
                f"Content-Range covers {end - start + 1} bytes but Content-Length is {length}"
            )
        length = end - start + 1
    status = await context(request).registry.uploads.append(
        name, route.argument, _body(request), start, length, owner=_owner(request)
    )
    return _accepted(status)


async def put_upload(request: web.Request, route: Route) -> web.StreamResponse:
    """PUT ?digest=: the optional last chunk, then verify and commit."""
    name = validate_name(route.name)
    refuse_writes_to_cache(request, name)
    digest = _query_digest(request)
    uploads = context(request).registry.uploads
    content_range = parse_content_range(request.headers.get("Content-Range"))
    length = _content_length(request)
    if _has_body(request) or content_range is not None:
        start = content_range[0] if content_range else None
        if content_range is not None:
            declared = content_range[1] - content_range[0] + 1
            if length is not None and length != declared:
                raise SizeInvalidError(
                    f"Content-Range covers {declared} bytes but Content-Length is {length}"
                )
            length = declared
        await uploads.finish(
            name, route.argument, digest, _body(request), start, length, owner=_owner(request)
        )
    else:
        await uploads.finish(name, route.argument, digest, owner=_owner(request))
    return _created(name, digest)


async def cancel_upload(request: web.Request, route: Route) -> web.StreamResponse:
    """DELETE a session and its bytes."""
    name = validate_name(route.name)
    refuse_writes_to_cache(request, name)
    await context(request).registry.uploads.cancel(name, route.argument, _owner(request))
    return web.Response(status=204)
