"""Request bodies read with an idle deadline: a client that stops sending is cut off."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from dockyard.api.context import context
from dockyard.errors import BlobUploadInvalidError


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The body as it arrives; BLOB_UPLOAD_INVALID after `http.readtimeout` without data.

    Only the wait for the client counts: the deadline is disarmed while the caller works on
    a chunk (a slow disk is not a slow client).
    """
    idle = context(request).settings.body_idle_timeout
    content = request.content
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as deadline:
            while True:
                deadline.reschedule(loop.time() + idle)
                chunk = await content.readany()
                deadline.reschedule(None)
                if not chunk:
                    return
                yield chunk
    except TimeoutError:
        raise BlobUploadInvalidError(
            f"request body stalled for {idle:g}s; resume the upload from its last offset"
        ) from None
