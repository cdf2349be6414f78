"""Response helpers: JSON bodies, error bodies and zero-copy blob bodies."""

from __future__ import annotations

import json
from concurrent.futures import Executor
from typing import Any, BinaryIO

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.typedefs import LooseHeaders
from multidict import CIMultiDict

from dockyard.api.sendfile import Progress, send_file
from dockyard.errors import RegistryError

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")
# The Progress of a body sent from a file, kept in the response's mapping: the access log
# reports the bytes that went out rather than the Content-Length promised.
BODY_PROGRESS: web.ResponseKey[Progress] = web.ResponseKey("dockyard_body_progress", Progress)


class StandardHeaders:
    """Headers every response carries: the API version and the configured `http.headers`
    (a configured `Server` takes the place of aiohttp's own; others are added)."""

    def __init__(self, extra: tuple[tuple[str, str], ...]) -> None:
        self._pairs = (API_VERSION_HEADER, *extra)

    def apply(self, headers: CIMultiDict[str]) -> None:
        """Add them to a response's headers, before it is prepared (aiohttp adds its own
        `Server` only to a response that has none)."""
        headers.extend(self._pairs)


def json_response(
    body: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> web.Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    return web.Response(body=data, status=status, headers=headers, content_type=content_type)


def error_response(error: RegistryError) -> web.Response:
    """The spec's `{"errors": [...]}` body with the error's status and headers.

    For HEAD requests aiohttp sends the headers (Content-Length included) without the body.
    """
    body = json.dumps({"errors": [error.to_dict()]}).encode()
    return web.Response(
        body=body, status=error.status, headers=error.headers, content_type="application/json"
    )


def head_response(length: int, headers: LooseHeaders, status: int = 200) -> web.StreamResponse:
    """A body-less answer that still states the size of what a GET would return."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = length
    return response


class SendfileResponse(web.StreamResponse):
    """Sends `count` bytes of an open file from `offset` with the kernel's sendfile.

    The body never passes through Python memory. The file is closed when done.
    """

    def __init__(
        self,
        fobj: BinaryIO,
        offset: int,
        count: int,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        readers: Executor | None = None,
    ) -> None:
        super().__init__(status=status, headers=headers)
        self._readers = readers
        self._fobj = fobj
        self._offset = offset
        self._count = count
        self.content_length = count
        self[BODY_PROGRESS] = Progress()

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:  # the body went out with the first call
            return await super().prepare(request)
        try:
            writer = await super().prepare(request)
            if request.method == "HEAD" or self._count == 0:
                return writer
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("client went away")
            # A cold file is read ahead on `readers` (dockyard.api.readahead); no fadvise
            # hints: POSIX_FADV_SEQUENTIAL measured no faster from the disk and about a
            # third slower from the page cache (python -m bench --only pull).
            progress = self[BODY_PROGRESS]
            await send_file(
                transport,
                self.write,
                self._fobj,
                self._offset,
                self._count,
                progress,
                self._readers,
            )
            await super().write_eof()
            return writer
        finally:
            self._fobj.close()
