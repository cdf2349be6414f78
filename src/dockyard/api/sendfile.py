"""Zero-copy file bodies: `sendfile` in 32 KiB pieces.

asyncio's `loop.sendfile` asks the kernel for everything that is left in one call, which
fills the socket buffer every time and then waits for the client to drain it. Over
loopback (containerd pulling from a Dockyard on its own node, or the benchmark's client)
that swings between 2 and 9 GB/s from one pull to the next. Asked for 32 KiB at a time,
a client that keeps up never lets the buffer fill (0-2 waits in a 1 GiB pull) and the
stream holds 4-6 GB/s. The bytes still go from the page cache to the socket without
passing through Python. The price is more system calls: about twice the server CPU of
`loop.sendfile` when 100 clients on loopback pull at once (README, Profiling). Once the
buffer has filled (a client slower than the server, as across a network), each wait is
followed by one call for up to a MiB.

The first piece goes through `loop.sendfile`, which waits until the response headers have
left the transport's buffer; the rest are sent on a duplicate of the socket's descriptor
(the loop refuses writer callbacks on a descriptor a transport owns) while the transport
does not read, so no other write can slip in between. TLS transports, which cannot use
`sendfile`, get `loop.sendfile`'s own fallback. A body of a file that is not in the page
cache is read into it ahead of the stream on a worker thread (`dockyard.api.readahead`).
"""

from __future__ import annotations

import asyncio
import errno
import os
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.api.readahead import MIN_BODY, ReadAhead

PIECE = 32 << 10
# Pieces sent back to back before the loop gets a turn (other clients, other requests).
BURST = 1 << 20

_GONE = {errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN}


@dataclass(slots=True)
class Progress:
    """Body bytes handed to the kernel so far (what the access log reports)."""

    sent: int = 0


async def send_file(
    transport: asyncio.Transport,
    fobj: BinaryIO,
    offset: int,
    count: int,
    progress: Progress | None = None,
    readers: Executor | None = None,
) -> None:
    """Send `count` bytes of `fobj` from `offset`; ConnectionResetError if the client left.

    `progress.sent` grows as the bytes go out, and stays where a failure stopped them.
    `readers` run the read-ahead of an uncached file (None: the loop's default executor).
    """
    progress = progress if progress is not None else Progress()
    loop = asyncio.get_running_loop()
    sock = transport.get_extra_info("socket")
    first = min(PIECE, count)
    await loop.sendfile(transport, fobj, offset, first)
    progress.sent += first
    offset += first
    count -= first
    if not count:
        return
    if sock is None or transport.get_extra_info("ssl_object") is not None:
        await loop.sendfile(transport, fobj, offset, count)
        progress.sent += count
        return
    if transport.is_closing():
        raise ConnectionResetError("client went away")
    reading = transport.is_reading()
    transport.pause_reading()
    fd = os.dup(sock.fileno())
    try:
        await _pieces(loop, fd, fobj.fileno(), offset, count, progress, readers)
    finally:
        os.close(fd)
        if reading and not transport.is_closing():
            transport.resume_reading()


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
    ahead = ReadAhead(loop, file_fd, offset, end, readers) if count >= MIN_BODY else None
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
