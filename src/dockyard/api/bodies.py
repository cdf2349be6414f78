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
    a chunk (a slow disk is not a slow client). Chunks are taken as they were received, one
    at a time: `readany` would join all that are waiting into one new bytes object, a copy
    of the body (uvloop runs several socket reads before the handler gets its turn).
    """
    idle = context(request).settings.body_idle_timeout
    content = request.content
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(None) as deadline:
            while True:
                deadline.reschedule(loop.time() + idle)
                chunk, _ = await content.readchunk()
                deadline.reschedule(None)
                if chunk:
                    yield chunk
                # Nothing: the end of the body, or only the end of one chunk of a chunked
                # encoding. (aiohttp's shared empty body answers (b"", True) once read.)
                elif content.at_eof():
                    return
    except TimeoutError:
        raise BlobUploadInvalidError(
            f"request body stalled for {idle:g}s; resume the upload from its last offset"
        ) from None
