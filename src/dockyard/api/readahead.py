"""Reading a file into the page cache ahead of a `sendfile` stream, off the event loop.

`sendfile` of a file that is not in the page cache reads the disk on the calling thread:
the event loop sits in uninterruptible disk waits, a few milliseconds at a time, and the
other clients wait with it. On wake-up the scheduler also often moves the loop onto the
CPU its client runs on (the benchmark's client over loopback, containerd on the same
node), where the two take turns: cold 1 GiB pulls fell to 0.6-1.8 GB/s in those runs
against 2.9 GB/s otherwise.

A ReadAhead keeps up to WINDOW bytes past the stream's position in the page cache. A
worker thread "sends" the chunks ahead to /dev/null with `sendfile`: the kernel reads the
pages in (and waits for the disk) and discards them, with no copy, so a chunk already
cached costs next to nothing. Whether the next chunk is cached is checked on the loop
first (`preadv(RWF_NOWAIT)` fails rather than read the disk), so a warm file never
involves a thread. It is advisory: a failed or short read (a file still being
downloaded) stops it, and the stream's own `sendfile` meets whatever the disk says.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import Executor

CHUNK = 4 << 20
WINDOW = 32 << 20
# Chunks one turn of a reader thread reads before it lets another stream's turn run.
RUN = 4
# Bodies shorter than this are sent without reading ahead: the kernel's own read-ahead
# covers them in a few requests.
MIN_BODY = 8 << 20


def is_cached(fd: int, offset: int) -> bool | None:
    """Whether the page holding `offset` is in the page cache (None: cannot tell)."""
    try:
        return os.preadv(fd, [bytearray(1)], offset, os.RWF_NOWAIT) >= 0
    except BlockingIOError:
        return False
    except OSError:
        return None  # a file system without RWF_NOWAIT, or an offset past the end


def read_chunk(fd: int, sink: int, offset: int, count: int) -> int:
    """Bring `count` bytes from `offset` into the page cache by sending them to `sink`
    (/dev/null); returns how many there were."""
    done = 0
    while done < count:
        n = os.sendfile(sink, fd, offset + done, count - done)
        if n <= 0:
            break
        done += n
    return done


class ReadAhead:
    """Page cache filled ahead of a stream over `[start, end)` of a file (see the module
    docstring). `await cover(sent, upto)` before sending up to `upto`; `close()` when done.

    One worker at a time reads chunk after chunk on a thread while it stays within WINDOW
    of what was sent, so the disk is kept busy while the loop sends; it is started again
    after RUN chunks, and when the stream has made room. `_filled` is written by the
    worker while one runs and by the loop only while none does.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        fd: int,
        start: int,
        end: int,
        executor: Executor | None = None,
    ) -> None:
        self._loop = loop
        self._executor = executor
        self._filled = start  # the page cache holds [start, _filled)
        self._end = end
        self._sent = start
        self._job: asyncio.Future[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._stopped = False
        self._fd = self._sink = -1
        try:
            self._fd = os.dup(fd)  # the reader may outlive the caller's file object
            self._sink = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            self._stopped = True
            self._close_fd()

    @property
    def filled(self) -> int:
        return self._filled

    @property
    def stopped(self) -> bool:
        return self._stopped

    async def cover(self, sent: int, upto: int) -> None:
        """The stream has sent everything before `sent`: wait until `[sent, upto)` is in
        the page cache, or the read-ahead has stopped."""
        self._sent = sent
        while self._filled < upto and not self._stopped:
            self._start()
            if self._job is None:
                return  # nothing running: filled is past upto, or it stopped
            wake = self._wake = self._loop.create_future()
            # The worker moves _filled on and then looks for a waiter: look again now that
            # there is one, or a chunk finished in between would go unnoticed.
            if self._filled < upto and not self._stopped:
                await wake
            self._wake = None

    def close(self) -> None:
        """Read nothing more (a read in flight finishes on its thread, then the copy of
        the descriptor is closed)."""
        self._stopped = True
        if self._job is None:
            self._close_fd()

    def _next_chunk(self) -> int:
        """The size of the chunk to read next; 0 at the end or when the window is full."""
        at = self._filled
        if at >= self._end or at - self._sent >= WINDOW:
            return 0
        return min(CHUNK, self._end - at)

    def _start(self) -> None:
        """Skip cached chunks here on the loop; start a worker at the first that is not."""
        while self._job is None and not self._stopped:
            count = self._next_chunk()
            if not count:
                return
            cached = is_cached(self._fd, self._filled + count - 1)
            if cached is None:
                self.close()
            elif cached:
                self._filled += count
            else:
                job = self._loop.run_in_executor(self._executor, self._work)
                job.add_done_callback(self._worked)
                self._job = job

    def _work(self) -> None:
        """On a worker thread: read up to RUN chunks, fewer if the window fills or the end
        comes first. Then the thread goes back to the pool, so streams that are all ahead
        of the disk take turns rather than wait for one another to finish."""
        try:
            for _ in range(RUN):
                count = self._next_chunk()
                if self._stopped or not count:
                    return
                at = self._filled
                if read_chunk(self._fd, self._sink, at, count) < count:
                    self._stopped = True  # a file that ends early: the stream will say so
                    return
                self._filled = at + count
                if self._wake is not None:
                    self._loop.call_soon_threadsafe(self._wakeup)
        except OSError:
            self._stopped = True  # an I/O error: sendfile will meet it and say so

    def _worked(self, job: asyncio.Future[None]) -> None:
        self._job = None
        if job.cancelled() or job.exception() is not None:
            self._stopped = True
        if self._stopped:
            self._close_fd()
        else:
            self._start()  # the next turn, queued behind other streams' turns
        self._wakeup()

    def _wakeup(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _close_fd(self) -> None:
        for fd in (self._fd, self._sink):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._sink = -1
