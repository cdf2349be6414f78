"""dockyard.api.sendfile over real loopback sockets: plain TCP and TLS, fast and slow
readers, pipelined requests, and clients that leave in the middle of a body."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from dockyard.api import sendfile
from dockyard.api.middleware import access_logger_for
from dockyard.api.responses import SendfileResponse
from dockyard.auth.pki import create_ca, issue_server_certificate, parse_hosts
from tests.unit.loops import Run

SIZE = 3 * (1 << 20) + 12345


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(SIZE)
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def big(blob: tuple[Path, bytes]) -> Path:
    """The blob 16 times over (48 MiB): more than any socket buffer holds."""
    path, data = blob
    big = path.with_name("big")
    with big.open("wb") as f:
        for _ in range(16):
            f.write(data)
    return big


class _Recording(SendfileResponse):
    """Notes how each body ended: None when sent, else the exception."""

    seen: list[BaseException | None]

    async def prepare(self, request: web.BaseRequest) -> Any:
        if self.prepared:
            return await super().prepare(request)
        try:
            writer = await super().prepare(request)
        except BaseException as exc:
            self.seen.append(exc)
            raise
        self.seen.append(None)
        return writer


def _handler(path: Path, seen: list[BaseException | None]) -> Callable[..., Awaitable[Any]]:
    size = path.stat().st_size

    async def handle(request: web.Request) -> web.StreamResponse:
        offset = int(request.query.get("offset", 0))
        count = int(request.query.get("count", size - offset))
        response = _Recording(path.open("rb"), offset, count)
        response.seen = seen
        return response

    return handle


class _Sink:
    """Dockyard's access-log hook, keeping (status, bytes) of each request."""

    def __init__(self) -> None:
        self.logged: list[tuple[int, int]] = []

    def request(self, method: str, path: str, status: int, size: int, *rest: Any) -> None:
        self.logged.append((status, size))


@asynccontextmanager
async def _server(
    path: Path, ssl_context: ssl.SSLContext | None = None, copied: bytes = b""
) -> AsyncIterator[tuple[int, list[BaseException | None], list[tuple[int, int]]]]:
    seen: list[BaseException | None] = []
    sink = _Sink()
    app = web.Application()
    app.router.add_get("/blob", _handler(path, seen))

    async def copy(request: web.Request) -> web.Response:
        # aiohttp returns from a write once the buffer is below its low-water mark: raise
        # the marks so the whole response can wait there while the next request starts.
        assert request.transport is not None
        request.transport.set_write_buffer_limits(high=len(copied) * 2)
        return web.Response(body=copied)

    app.router.add_get("/copied", copy)
    runner = web.AppRunner(
        app,
        access_log_class=access_logger_for(sink),
        access_log=logging.getLogger("test.access"),
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    sock = site._server.sockets[0]  # type: ignore[union-attr]
    try:
        yield sock.getsockname()[1], seen, sink.logged
    finally:
        await runner.cleanup()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(v) for k, _, v in (x.partition(": ") for x in lines) if k == "Content-Length")
    return status, await reader.readexactly(length)


def _get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: test\r\n\r\n".encode()


def test_whole_file_and_a_range_arrive_intact(run_on: Run, blob: tuple[Path, bytes]) -> None:
    path, data = blob

    async def run() -> None:
        async with _server(path) as (port, _, logged):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_get("/blob"))
            assert await _response(reader) == (200, data)
            offset, count = 777, (2 << 20) + 3
            writer.write(_get(f"/blob?offset={offset}&count={count}"))
            assert await _response(reader) == (200, data[offset : offset + count])
            writer.write(_get("/blob?offset=5&count=10"))  # under one piece
            assert await _response(reader) == (200, data[5:15])
            writer.close()
            await asyncio.sleep(0.05)
            assert logged == [(200, SIZE), (200, count), (200, 10)]

    run_on(run())


def test_pipelined_requests_are_answered_in_order(run_on: Run, blob: tuple[Path, bytes]) -> None:
    path, data = blob

    async def run() -> None:
        async with _server(path) as (port, _, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            # The second request arrives while the first body is being sent: it must wait
            # and never mix with it.
            writer.write(_get("/blob") + _get("/blob?offset=100&count=70000"))
            assert await _response(reader) == (200, data)
            assert await _response(reader) == (200, data[100:70100])
            writer.close()

    run_on(run())


def test_a_body_waits_for_the_transports_buffer_to_empty(
    run_on: Run, blob: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A slow client pipelines a request behind a response aiohttp writes itself: when the
    # file body starts, that response (and these headers) still sit in the transport's
    # buffer, and the first piece sent on the socket must wait for them.
    path, data = blob
    waited_first: list[int] = []
    waits = 0
    real_writable, real_pieces = sendfile._writable, sendfile._pieces

    async def counting(loop: asyncio.AbstractEventLoop, fd: int) -> None:
        nonlocal waits
        waits += 1
        await real_writable(loop, fd)

    async def pieces(*args: Any) -> None:
        waited_first.append(waits)
        await real_pieces(*args)

    monkeypatch.setattr(sendfile, "_writable", counting)
    monkeypatch.setattr(sendfile, "_pieces", pieces)

    async def run() -> None:
        async with _server(path, copied=data * 5) as (port, seen, _):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock, limit=16 << 10)
            writer.write(_get("/copied") + _get("/blob"))
            await asyncio.sleep(0.2)  # both requests are in; the first answer is stuck
            assert await _response(reader) == (200, data * 5)  # more than a socket buffer
            assert await _response(reader) == (200, data)
            writer.close()
            assert seen == [None]

    run_on(run())
    assert len(waited_first) == 1 and waited_first[0] > 0


def test_slow_reader_waits_for_the_socket(
    run_on: Run, blob: tuple[Path, bytes], big: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, data = blob
    waits = 0
    real_writable = sendfile._writable

    async def counting(loop: asyncio.AbstractEventLoop, fd: int) -> None:
        nonlocal waits
        waits += 1
        await real_writable(loop, fd)

    monkeypatch.setattr(sendfile, "_writable", counting)

    async def run() -> None:
        async with _server(big) as (port, seen, logged):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock, limit=16 << 10)
            writer.write(_get("/blob"))
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            body = bytearray()
            while len(body) < 16 * SIZE:
                body += await reader.read(16 << 10)
                if len(body) % (1 << 20) < (16 << 10):
                    await asyncio.sleep(0.001)
            assert bytes(body) == data * 16
            writer.close()
            assert seen == [None]
            await asyncio.sleep(0.05)
            assert logged == [(200, 16 * SIZE)]

    run_on(run())
    assert waits > 0


def test_a_client_that_leaves_is_a_connection_reset(
    run_on: Run, blob: tuple[Path, bytes], big: Path
) -> None:
    _, data = blob

    async def run() -> None:
        async with _server(big) as (port, seen, logged):
            before = len(os.listdir("/proc/self/fd"))
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 10)
            sock.connect(("127.0.0.1", port))
            sock.setblocking(False)
            reader, writer = await asyncio.open_connection(sock=sock)
            writer.write(_get("/blob"))
            await reader.readexactly(100_000)
            writer.transport.abort()
            for _ in range(200):
                if seen:
                    break
                await asyncio.sleep(0.01)
            assert len(seen) == 1 and isinstance(seen[0], ConnectionError)
            await asyncio.sleep(0.05)
            # The access log says how far the body got, not the Content-Length promised.
            assert len(logged) == 1 and logged[0][0] == 200
            assert 100_000 <= logged[0][1] < 16 * SIZE
            # The duplicate descriptor and the file are closed; the server still serves.
            assert len(os.listdir("/proc/self/fd")) <= before
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(_get("/blob?offset=0&count=1000"))
            assert await _response(reader) == (200, data[:1000])
            writer.close()

    run_on(run())


def test_the_loop_gets_a_turn_every_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    # A client that keeps up never fills the socket buffer, so sendfile never says EAGAIN:
    # here it never does, and other tasks must still run while the body goes out.
    asked: list[int] = []

    def always_room(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        asked.append(count)
        return count

    monkeypatch.setattr(sendfile.os, "sendfile", always_room)

    async def run() -> int:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        progress = sendfile.Progress()
        await sendfile._pieces(
            asyncio.get_running_loop(), -1, -1, 0, 64 * sendfile.BURST + 5, progress
        )
        assert progress.sent == 64 * sendfile.BURST + 5
        done = True
        await task
        return ticks

    ticks = asyncio.run(run())
    assert ticks >= 64
    assert sum(asked) == 64 * sendfile.BURST + 5
    # Every call but the last is a whole piece: no burst ends in a short segment.
    assert set(asked[:-1]) == {sendfile.PIECE}
    assert asked[-1] == 5


def test_a_piece_is_whole_pages_and_one_loopback_segment() -> None:
    # Once the stream's window has grown, the sender's MSS on loopback (65,483 with the
    # usual 64 KiB MTU) holds a whole piece: each sendfile call sends one full segment,
    # and not two pieces' worth (a larger MTU would call for larger pieces).
    assert sendfile.PIECE % os.sysconf("SC_PAGE_SIZE") == 0
    with (
        socket.create_server(("127.0.0.1", 0)) as listener,
        socket.create_connection(listener.getsockname()) as sender,
    ):
        receiver, _ = listener.accept()
        with receiver:
            chunk = bytes(1 << 20)
            for _ in range(16):
                sender.sendall(chunk)
                left = len(chunk)
                while left:
                    left -= len(receiver.recv(left))
            mss = sender.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG)
    assert sendfile.PIECE <= mss < 2 * sendfile.PIECE


def test_after_a_wait_the_free_buffer_is_filled_in_one_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []
    full = iter([False, True, False, False, True, False])

    def sometimes_full(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        if next(full, False):
            raise BlockingIOError
        asked.append(count)
        return count

    async def writable_now(loop: asyncio.AbstractEventLoop, fd: int) -> None:
        await asyncio.sleep(0)

    monkeypatch.setattr(sendfile.os, "sendfile", sometimes_full)
    monkeypatch.setattr(sendfile, "_writable", writable_now)
    piece, burst = sendfile.PIECE, sendfile.BURST

    async def run() -> None:
        loop = asyncio.get_running_loop()
        await sendfile._pieces(loop, -1, -1, 0, 3 * burst, sendfile.Progress())

    asyncio.run(run())
    assert sum(asked) == 3 * burst
    # A piece, then (full: a wait) up to a MiB at once, then pieces again until it is full.
    assert asked[:4] == [piece, burst, piece, burst]
    assert set(asked[4:-1]) == {piece}


def test_tls_bodies_are_copied_through_the_response(
    run_on: Run, blob: tuple[Path, bytes], tmp_path: Path
) -> None:
    path, data = blob
    ca = create_ca()
    server = issue_server_certificate(ca, parse_hosts(["127.0.0.1"]))
    (tmp_path / "cert.pem").write_bytes(server.certificate_pem())
    (tmp_path / "key.pem").write_bytes(server.key_pem())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    client = ssl.create_default_context(cadata=ca.certificate_pem().decode())

    async def run() -> None:
        async with _server(path, context) as (port, _, _):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            writer.write(_get("/blob"))
            assert await _response(reader) == (200, data)
            writer.write(_get("/blob?offset=3&count=1048576"))
            assert await _response(reader) == (200, data[3 : 3 + 1048576])
            writer.close()

    run_on(run())
