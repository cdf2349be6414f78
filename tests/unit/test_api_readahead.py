"""dockyard.api.readahead: which chunks are read, how far ahead, and when it gives up.

The logic runs against a controlled page cache (`is_cached`, `read_chunk` replaced); one
test reads a real file whose pages were dropped, and one sends it over a real socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
import time
from collections.abc import Callable
from itertools import groupby
from pathlib import Path

import pytest

from dockyard.api import readahead, sendfile
from dockyard.api.readahead import CHUNK, WINDOW, ReadAhead

MIB = 1 << 20


class Cache:
    """A pretend page cache over a file of `size` bytes, in CHUNK-sized chunks."""

    def __init__(self, size: int, cached: set[int] | None = None) -> None:
        self.size = size
        self.cached = set(cached or ())
        self.reads: list[tuple[int, int]] = []
        self.short_at: int | None = None
        self.fail_at: int | None = None
        self.gate: threading.Event | None = None

    def is_cached(self, fd: int, offset: int) -> bool | None:
        return offset // CHUNK in self.cached

    def read_chunk(self, fd: int, sink: int, offset: int, count: int) -> int:
        if self.gate is not None:
            self.gate.wait(10)
        self.reads.append((offset, count))
        if offset == self.fail_at:
            raise OSError(5, "Input/output error")
        if offset == self.short_at:
            return count // 2
        self.cached.add(offset // CHUNK)
        return count


@pytest.fixture
def fd(tmp_path: Path) -> int:
    """Any open descriptor (ReadAhead works on its own copy)."""
    path = tmp_path / "f"
    path.write_bytes(b"x")
    descriptor = os.open(path, os.O_RDONLY)
    yield descriptor  # type: ignore[misc]
    os.close(descriptor)


def use(monkeypatch: pytest.MonkeyPatch, cache: Cache) -> Cache:
    monkeypatch.setattr(readahead, "is_cached", cache.is_cached)
    monkeypatch.setattr(readahead, "read_chunk", cache.read_chunk)
    return cache


def stream(
    fd: int, size: int, step: int = MIB, check: Callable[[ReadAhead, int], None] | None = None
) -> ReadAhead:
    """Cover [0, size) burst by burst, as `sendfile._pieces` does."""

    async def run() -> ReadAhead:
        ahead = ReadAhead(asyncio.get_running_loop(), fd, 0, size)
        sent = 0
        while sent < size:
            upto = min(size, sent + step)
            await asyncio.wait_for(ahead.cover(sent, upto), 10)
            if check is not None:
                check(ahead, upto)
            sent = upto
        ahead.close()
        return ahead

    return asyncio.run(run())


def test_a_cached_file_is_never_read(monkeypatch: pytest.MonkeyPatch, fd: int) -> None:
    size = 20 * CHUNK
    cache = use(monkeypatch, Cache(size, set(range(20))))
    stream(fd, size)
    assert cache.reads == []


def test_every_missing_chunk_is_read_once_in_order(
    monkeypatch: pytest.MonkeyPatch, fd: int
) -> None:
    size = 20 * CHUNK + 12345
    cached = {0, 3, 4, 11}
    cache = use(monkeypatch, Cache(size, cached))

    def covered(ahead: ReadAhead, upto: int) -> None:
        assert ahead.filled >= upto  # never sends from a chunk still on disk
        assert not ahead.stopped

    stream(fd, size, check=covered)
    offsets = [offset for offset, _ in cache.reads]
    assert offsets == sorted(set(offsets))
    # A running worker reads on through cached chunks (that costs it next to nothing);
    # the loop skips them when none runs. Every missing one is read either way.
    assert {i * CHUNK for i in range(21) if i not in cached} <= set(offsets)
    assert cache.reads[-1] == (20 * CHUNK, 12345)


def test_it_stays_within_the_window(monkeypatch: pytest.MonkeyPatch, fd: int) -> None:
    size = 40 * CHUNK
    cache = use(monkeypatch, Cache(size))
    highest: list[int] = []

    def ahead_of(ahead: ReadAhead, upto: int) -> None:
        highest.append(max((o + c for o, c in cache.reads), default=0) - upto)

    stream(fd, size, step=MIB, check=ahead_of)
    assert max(highest) <= WINDOW + CHUNK
    assert len(cache.reads) == 40


def test_streams_sharing_one_reader_take_turns(monkeypatch: pytest.MonkeyPatch, fd: int) -> None:
    """Two streams ahead of the disk on a single reader thread: neither waits for the
    other to finish; a turn is at most RUN chunks."""
    from concurrent.futures import ThreadPoolExecutor

    size = 16 * CHUNK
    order: list[str] = []

    def read(fd_: int, sink: int, offset: int, count: int) -> int:
        order.append(threading.current_thread().name)
        time.sleep(0.002)
        return count

    monkeypatch.setattr(readahead, "is_cached", lambda fd_, offset: False)
    monkeypatch.setattr(readahead, "read_chunk", read)
    monkeypatch.setattr(readahead, "WINDOW", 2 * size)  # turns end by RUN, not the window

    async def run() -> None:
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=1) as one:

            async def pull(name: str) -> None:
                ahead = ReadAhead(loop, fd, 0, size, one)
                ahead.name = name  # type: ignore[attr-defined]
                sent = 0
                while sent < size:
                    await asyncio.wait_for(ahead.cover(sent, sent + MIB), 10)
                    sent += MIB
                ahead.close()

            await asyncio.gather(pull("a"), pull("b"))

    orig_work = ReadAhead._work

    def named_work(self: ReadAhead) -> None:
        threading.current_thread().name = self.name  # type: ignore[attr-defined]
        orig_work(self)

    monkeypatch.setattr(ReadAhead, "_work", named_work)
    asyncio.run(run())
    assert sorted(order) == ["a"] * 16 + ["b"] * 16
    turns = [len(list(turn)) for _, turn in groupby(order)]
    assert max(turns) <= readahead.RUN < 16  # neither stream read all of its file alone


def test_a_short_file_stops_it_without_a_hang(monkeypatch: pytest.MonkeyPatch, fd: int) -> None:
    size = 10 * CHUNK
    cache = use(monkeypatch, Cache(size))
    cache.short_at = 3 * CHUNK  # a file still being downloaded ends early
    ahead = stream(fd, size)
    assert ahead.stopped
    assert cache.reads[-1][0] == 3 * CHUNK and len(cache.reads) == 4


def test_a_read_error_stops_it(monkeypatch: pytest.MonkeyPatch, fd: int) -> None:
    size = 10 * CHUNK
    cache = use(monkeypatch, Cache(size))
    cache.fail_at = 2 * CHUNK
    ahead = stream(fd, size)
    assert ahead.stopped
    assert len(cache.reads) == 3


def test_no_rwf_nowait_means_no_read_ahead(monkeypatch: pytest.MonkeyPatch, fd: int) -> None:
    cache = use(monkeypatch, Cache(10 * CHUNK))
    monkeypatch.setattr(readahead, "is_cached", lambda fd, offset: None)
    ahead = stream(fd, 10 * CHUNK)
    assert ahead.stopped and cache.reads == []


def test_a_bad_descriptor_means_no_read_ahead() -> None:
    async def run() -> None:
        ahead = ReadAhead(asyncio.get_running_loop(), -1, 0, 10 * CHUNK)
        assert ahead.stopped
        await asyncio.wait_for(ahead.cover(0, MIB), 5)
        ahead.close()

    asyncio.run(run())


def test_close_waits_for_the_read_in_flight(monkeypatch: pytest.MonkeyPatch, fd: int) -> None:
    cache = use(monkeypatch, Cache(10 * CHUNK))
    cache.gate = threading.Event()

    async def run() -> None:
        ahead = ReadAhead(asyncio.get_running_loop(), fd, 0, 10 * CHUNK)
        task = asyncio.create_task(ahead.cover(0, MIB))
        await asyncio.sleep(0.05)
        task.cancel()  # the client went away while the chunk was being read
        ahead.close()
        copy = ahead._fd
        os.fstat(copy)  # still open: the thread is reading from it
        assert cache.gate is not None
        cache.gate.set()
        for _ in range(100):
            if ahead._fd == -1:
                break
            await asyncio.sleep(0.01)
        assert ahead._fd == -1
        with pytest.raises(OSError):
            os.fstat(copy)
        assert len(cache.reads) == 1  # nothing more after close

    asyncio.run(run())


def test_a_worker_that_finished_before_cover_looks_does_not_stall_it(
    monkeypatch: pytest.MonkeyPatch, fd: int
) -> None:
    """A worker already done when cover() looks, its callback not yet run: cover must wait
    for that callback on the loop (not spin holding the loop, not return early)."""
    use(monkeypatch, Cache(2 * CHUNK))
    outcome: list[int] = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        ahead = ReadAhead(loop, fd, 0, CHUNK)
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        done.add_done_callback(ahead._worked)  # scheduled, not yet run
        ahead._job = done
        ahead._filled = CHUNK  # what the worker did before it finished
        await ahead.cover(0, MIB)
        ahead._filled = 0
        ahead._job = done2 = loop.create_future()
        done2.add_done_callback(ahead._worked)
        loop.call_later(0.05, lambda: (setattr(ahead, "_filled", CHUNK), done2.set_result(None)))
        await ahead.cover(0, MIB)
        outcome.append(ahead.filled)
        ahead.close()

    thread = threading.Thread(target=lambda: asyncio.run(run()), daemon=True)
    thread.start()
    thread.join(10)
    assert outcome == [CHUNK]


def _dropped(path: Path) -> bool:
    """Write back and drop a file's pages; whether they are gone (not on tmpfs).

    The probe reads the last page with RWF_NOWAIT, which starts the kernel's read-ahead
    there: only that page, where nothing follows, rather than the file's first 8 MiB."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
        os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        return readahead.is_cached(descriptor, path.stat().st_size - 1) is False
    finally:
        os.close(descriptor)


@pytest.fixture
def cold_file(tmp_path: Path) -> tuple[Path, bytes]:
    """A 24 MiB file on a disk, its pages dropped where the file system allows it."""
    data = os.urandom(24 * MIB)
    for directory in (tmp_path, Path("/var/tmp"), Path.cwd()):
        path = directory / f"dockyard-readahead-{os.getpid()}.bin"
        path.write_bytes(data)
        if _dropped(path) or directory == Path.cwd():
            yield path, data  # type: ignore[misc]
            path.unlink()
            return
        path.unlink()


def test_a_real_cold_file_is_read_into_the_page_cache(cold_file: tuple[Path, bytes]) -> None:
    path, _ = cold_file
    cold = _dropped(path)
    descriptor = os.open(path, os.O_RDONLY)
    try:
        size = path.stat().st_size
        if cold:
            assert readahead.is_cached(descriptor, 0) is False
        ahead = stream(descriptor, size)
        assert ahead.filled == size
        # A chunk the loop skipped because its last page was cached may still have pages
        # on their way in from the disk (the kernel's own read-ahead): give them a moment.
        deadline = time.monotonic() + 5
        missing = [o for o in range(0, size, 4096) if not readahead.is_cached(descriptor, o)]
        assert len(missing) * 4096 <= CHUNK  # at most a chunk still in flight
        while missing and time.monotonic() < deadline:
            time.sleep(0.01)
            missing = [o for o in missing if not readahead.is_cached(descriptor, o)]
        assert missing == []
    finally:
        os.close(descriptor)


def test_read_chunk_reads_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(os.urandom(MIB + 10))
    descriptor = os.open(path, os.O_RDONLY)
    sink = os.open(os.devnull, os.O_WRONLY)
    try:
        assert readahead.read_chunk(descriptor, sink, 0, MIB) == MIB
        assert readahead.read_chunk(descriptor, sink, MIB, MIB) == 10
        assert readahead.read_chunk(descriptor, sink, 2 * MIB, MIB) == 0
    finally:
        os.close(descriptor)
        os.close(sink)


def test_a_cold_body_arrives_intact_over_a_socket(
    cold_file: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, data = cold_file
    cold = _dropped(path)
    reads: list[int] = []
    real = readahead.read_chunk

    def counted(fd: int, sink: int, offset: int, count: int) -> int:
        reads.append(offset)
        return real(fd, sink, offset, count)

    monkeypatch.setattr(readahead, "read_chunk", counted)

    async def run() -> bytes:
        received = bytearray()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            async def unused(_: bytes) -> None:  # only TLS bodies are written, not sent
                raise AssertionError("a plain TCP body was copied")

            with path.open("rb") as f:
                await sendfile.send_file(writer.transport, unused, f, 0, len(data))  # type: ignore[arg-type]
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while chunk := await reader.read(1 << 20):
            received += chunk
        writer.close()
        server.close()
        await server.wait_closed()
        return bytes(received)

    received = asyncio.run(run())
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    if cold:
        # Read ahead, in order, each chunk at most once (the kernel's own read-ahead
        # behind those reads may already have brought in the ones it skips).
        assert reads and reads == sorted(set(reads))
        # The stream reads its first piece itself; the read-ahead starts right after it,
        # not at the start of the file (see dockyard.api.sendfile._pieces).
        assert reads[0] == sendfile.PIECE


def test_the_app_reads_cold_blobs_ahead_on_its_own_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blob GET through the application: the read-ahead runs on the app's reader threads
    (not the default executor, where pushes write), and they are shut down with the app."""
    from concurrent.futures import ThreadPoolExecutor

    from aiohttp.test_utils import TestClient, TestServer

    from dockyard.api import create_app
    from dockyard.api.context import CONTEXT
    from dockyard.cli.serve import api_settings, build_registry
    from dockyard.config import load_config

    threads: list[str] = []
    real = readahead.read_chunk

    def noted(fd: int, sink: int, offset: int, count: int) -> int:
        threads.append(threading.current_thread().name)
        return real(fd, sink, offset, count)

    monkeypatch.setattr(readahead, "read_chunk", noted)
    monkeypatch.setattr(readahead, "is_cached", lambda fd, offset: False)  # always cold
    overrides = {"storage.filesystem.rootdirectory": str(tmp_path / "root")}
    config = load_config(None, environ={}, overrides=overrides).config
    registry = build_registry(config)
    app = create_app(registry, api_settings(config, []))
    readers = app[CONTEXT].readers
    assert isinstance(readers, ThreadPoolExecutor)
    data = os.urandom(20 * MIB)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    async def run() -> bytes:
        async with TestClient(TestServer(app)) as client:
            started = await client.post("/v2/app/blobs/uploads/")
            location = started.headers["Location"]
            separator = "&" if "?" in location else "?"
            put = await client.put(f"{location}{separator}digest={digest}", data=io.BytesIO(data))
            assert put.status == 201, await put.text()
            got = await client.get(f"/v2/app/blobs/{digest}")
            assert got.status == 200
            return await got.read()

    try:
        assert asyncio.run(run()) == data
    finally:
        registry.close()
    assert threads and all(name.startswith("dockyard-readahead") for name in threads)
    assert readers._shutdown  # type: ignore[attr-defined]
