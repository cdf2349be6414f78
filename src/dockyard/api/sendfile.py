"""Zero-copy file bodies: `sendfile` in 60 KiB pieces.

asyncio's `loop.sendfile` asks the kernel for everything that is left in one call, which
fills the socket buffer every time and then waits for the client to drain it. Over
loopback (containerd pulling from a Dockyard on its own node, or the benchmark's client)
that swings between 2 and 10 GB/s from one pull to the next. Asked for a piece at a time,
a client that keeps up never lets the buffer fill and the stream holds steady. The piece
is 60 KiB: whole pages, and one TCP segment on loopback (MSS 65,483), so each call sends
one full segment and wakes the client once. 64 KiB is one segment and a 53-byte one, and
32 KiB twice the segments and wake-ups for the same bytes: 1 GiB warm pulls on separate
CPUs ran at 9.4 GB/s with 60 KiB pieces against 5.1 with 32 KiB, at half the server CPU
(README, Profiling, "pieces of one segment"). The bytes still go from the page cache to
the socket without passing through Python. Once the buffer has filled (a client slower
than the server, as across a network), each wait is followed by one call for a burst.

The pieces are sent on a duplicate of the socket's descriptor (the loop refuses writer
callbacks on a descriptor a transport owns), once the response headers have left the
transport's buffer, and while the transport does not read, so no other write can slip in
between. This works the same on asyncio's own loop and on uvloop, which `dockyard serve`
runs on and which has no `loop.sendfile`. TLS transports, which cannot use `sendfile`, are
sent the file in pieces read on a worker thread, through the response's own `write` (which
waits while the client is behind). A body of a file that is not in the page cache is read
into it ahead of the stream on a worker thread (`dockyard.api.readahead`).
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.api.readahead import MIN_BODY, ReadAhead

PIECE = 60 << 10
# Pieces sent back to back before the loop gets a turn (other clients, other requests);
# whole pieces, so no burst ends in a short segment.
BURST = 16 * PIECE
# Bytes read per copy where sendfile cannot be used (TLS).
COPY = 256 << 10

_GONE = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN}


@dataclass(slots=True)
class Progress:
    """Body bytes handed to the kernel so far (what the access log reports)."""

    sent: int = 0


async def send_file(
    transport: asyncio.Transport,
    write: Callable[[bytes], Awaitable[None]],
    fobj: BinaryIO,
    offset: int,
    count: int,
    progress: Progress | None = None,
    readers: Executor | None = None,
) -> None:
    """Send `count` bytes of `fobj` from `offset`; ConnectionResetError if the client left.

    `write` is the prepared response's own, used only where `sendfile` cannot be (TLS).
    `progress.sent` grows as the bytes go out, and stays where a failure stopped them.
    `readers` run the read-ahead of an uncached file (None: the loop's default executor).
    """
    progress = progress if progress is not None else Progress()
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket")
    if sock is None or transport.get_extra_info("ssl_object") is not None:
        await _copied(loop, write, fobj.fileno(), offset, count, progress, readers)
        return
    if transport.is_closing():
        raise ConnectionResetError("client went away")
    reading = transport.is_reading()
    transport.pause_reading()
    fd = os.dup(sock.fileno())
    try:
        # The headers (or the end of an earlier response) may still wait in the transport.
        while transport.get_write_buffer_size():
            await _writable(loop, fd)
            if transport.is_closing():
                raise ConnectionResetError("client went away")
        await _pieces(loop, fd, fobj.fileno(), offset, count, progress, readers)
    finally:
        os.close(fd)
        if reading and not transport.is_closing():
            transport.resume_reading()


async def _copied(
    loop: asyncio.AbstractEventLoop,
    write: Callable[[bytes], Awaitable[None]],
    file_fd: int,
    offset: int,
    count: int,
    progress: Progress,
    readers: Executor | None,
) -> None:
    """The body through `write`, read on `readers` a copy at a time (TLS: no `sendfile`)."""
    end = offset + count
    while offset < end:
        data = await loop.run_in_executor(
            readers, os.pread, file_fd, min(COPY, end - offset), offset
        )
        if not data:
            raise ConnectionResetError("the file ended before its stated size")
        await write(data)
        offset += len(data)
        progress.sent += len(data)


async def _pieces(
    loop: asyncio.AbstractEventLoop,
    fd: int,
    file_fd: int,
    offset: int,
    count: int,
    progress: Progress,
    readers: Executor | None = None,
) -> None:
    end = offset + count
    start = offset
    piece = PIECE
    # The read-ahead starts after the first piece, which the stream reads itself. A first
    # read-ahead read at the start of the file has the kernel read twice as much, with a
    # marker whose hit starts its own read-ahead on the stream's descriptor: the two then
    # split each other's reads (two to three times the disk requests, 1 GiB cold pulls on
    # separate CPUs 3.7 -> 2.6 GB/s; README, Profiling, "the event loop").
    ahead = ReadAhead(loop, file_fd, offset + PIECE, end, readers) if count >= MIN_BODY else None
    try:
        while offset < end:
            burst = min(end, offset + BURST)
            if ahead is not None:
                await ahead.cover(offset, burst)  # no disk waits on the event loop
            try:
                while offset < burst:
                    sent = os.sendfile(fd, file_fd, offset, min(piece, burst - offset))
                    if sent == 0:
                        raise ConnectionResetError("the file ended before its stated size")
                    offset += sent
                    piece = PIECE
            except (BlockingIOError, InterruptedError):
                await _writable(loop, fd)  # the socket buffer is full: wait for the client
                # The buffer has room for much more than a piece now: fill it in one call
                # (a client slower than the server, e.g. across a network, is paced by this).
                piece = BURST
                continue
            except OSError as exc:
                if exc.errno in _GONE:
                    raise ConnectionResetError("client went away") from exc
                raise
            # A client that keeps up never fills the buffer: let other work run, without
            # waiting on the socket (a wait for writability here costs a wake-up per burst).
            await asyncio.sleep(0)
    finally:
        if ahead is not None:
            ahead.close()
        progress.sent += offset - start  # once, not per call: this is the byte loop


async def _writable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(fd, wake)
    try:
        await ready
    finally:
        loop.remove_writer(fd)
