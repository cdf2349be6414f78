"""dockyard.api.bodies over a real loopback socket: a body arrives whole and in order,
with a Content-Length or in a chunked transfer encoding, on asyncio's loop and on uvloop
(which `dockyard serve` runs on), and a client that stops sending is cut off."""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import Any, cast

from aiohttp import web

from dockyard.api.bodies import body_chunks
from dockyard.api.context import CONTEXT, ApiContext, ApiSettings
from dockyard.errors import BlobUploadInvalidError
from dockyard.registry import Registry
from tests.unit.loops import Run

BODY = os.urandom((5 << 20) + 4321)


async def _serve(idle: float) -> tuple[web.AppRunner, int, list[Any]]:
    """A server whose one handler reads the body with body_chunks; `seen` gets, per
    request, (sha256, number of chunks, whether any was empty) or the exception."""
    seen: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        chunks = empty = 0
        try:
            async for chunk in body_chunks(request):
                digest.update(chunk)
                chunks += 1
                empty += not chunk
        except BlobUploadInvalidError as exc:
            seen.append(exc)
            raise web.HTTPBadRequest() from None
        seen.append((digest.hexdigest(), chunks, empty))
        return web.Response(text="ok")

    app = web.Application()
    registry = cast(Registry, None)  # body_chunks reads only the settings
    app[CONTEXT] = ApiContext(registry, ApiSettings(body_idle_timeout=idle))
    app.router.add_put("/body", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port, seen


async def _status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    return int(head.split()[1])


async def _put(idle: float, head: bytes, parts: list[bytes]) -> tuple[int, list[Any]]:
    """`head`, then `parts` one write at a time, to a new server: its status and `seen`."""
    runner, port, seen = await _serve(idle)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        for part in parts:
            writer.write(part)
            await writer.drain()
        status = await asyncio.wait_for(_status(reader), 10)
        writer.close()
    finally:
        await runner.cleanup()
    return status, seen


def _arrived_whole(seen: list[Any]) -> None:
    [(digest, chunks, empty)] = seen
    assert digest == hashlib.sha256(BODY).hexdigest()
    assert chunks > 1 and empty == 0


def test_a_body_with_a_length_arrives_whole(run_on: Run) -> None:
    head = f"PUT /body HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
    parts = [BODY[at : at + 100_000] for at in range(0, len(BODY), 100_000)]
    status, seen = run_on(_put(30, head, parts))
    assert status == 200
    _arrived_whole(seen)


def test_a_chunked_body_arrives_whole_without_empty_chunks(run_on: Run) -> None:
    # HTTP chunks of every size from one byte up, so their ends fall inside, at the start
    # and at the end of what each socket read brings.
    sizes = [1, 2, 3, 4095, 4096, 65536, 65537, 300_000]
    parts, at = [], 0
    while at < len(BODY):
        piece = BODY[at : at + sizes[len(parts) % len(sizes)]]
        parts.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        at += len(piece)
    head = b"PUT /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    status, seen = run_on(_put(30, head, [*parts, b"0\r\n\r\n"]))
    assert status == 200
    _arrived_whole(seen)


def test_a_body_that_stops_arriving_is_cut_off(run_on: Run) -> None:
    head = f"PUT /body HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n\r\n".encode()
    status, seen = run_on(_put(0.3, head, [BODY[:1000]]))
    assert status == 400
    assert len(seen) == 1 and isinstance(seen[0], BlobUploadInvalidError)


def test_requests_without_a_body_each_end(run_on: Run) -> None:
    # aiohttp hands every request without a body one shared empty stream, which answers
    # differently once it has been read: each request must still see the end of its body.
    async def run() -> None:
        runner, port, seen = await _serve(idle=30)
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for head in ("Content-Length: 0\r\n", "", "Content-Length: 0\r\n"):
                writer.write(f"PUT /body HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
                assert await asyncio.wait_for(_status(reader), 10) == 200
                await reader.readexactly(2)  # "ok"
            writer.close()
        finally:
            await runner.cleanup()
        assert seen == [(hashlib.sha256().hexdigest(), 0, 0)] * 3

    run_on(run())
