"""The machine's own limits, measured in the same run: loopback TCP, sha256, disk+fsync.

Loopback TCP is measured twice. Sending one 1 MiB buffer over and over keeps the source in
the CPU's cache: the most the path carries. Sending a page-cached file with sendfile is
what any server serving a blob from memory can hope for (the receiver copies from pages
that are not in the CPU's cache): the yardstick a blob pull is held to.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from pathlib import Path

MIB = 1 << 20
# Samples per round of each `sendfile` stream (see measure).
SENDFILE_SAMPLES = 3


def receive(conn: socket.socket, size: int) -> tuple[int, float]:
    """Read up to `size` bytes into one reused 1 MiB buffer, as the benchmark's client
    does: (bytes received, seconds from the first call)."""
    buffer = bytearray(MIB)
    received = 0
    started = time.perf_counter()
    while received < size:
        n = conn.recv_into(buffer)
        if not n:
            break
        received += n
    return received, time.perf_counter() - started


def loopback_mb_s(
    size: int, source: Path | None = None, cpus: tuple[int, int] | None = None
) -> float:
    """One TCP stream over 127.0.0.1 into recv_into (MB/s): a sender thread sends a reused
    1 MiB buffer, or with `source` the file's first `size` bytes with sendfile; with `cpus`
    the sender runs on the first CPU and the receiver on the second."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    chunk = memoryview(os.urandom(MIB))
    errors: list[BaseException] = []

    allowed = os.sched_getaffinity(0)

    def send() -> None:
        try:
            if cpus is not None:
                os.sched_setaffinity(0, {cpus[0]})  # this thread only
            with socket.create_connection(("127.0.0.1", port)) as s:
                if source is not None:
                    with source.open("rb") as f:
                        s.sendfile(f, 0, size)
                    return
                left = size
                while left > 0:
                    n = min(left, MIB)
                    s.sendall(chunk[:n])
                    left -= n
        except BaseException as exc:
            errors.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    conn = None
    try:
        if cpus is not None:
            os.sched_setaffinity(0, {cpus[1]})
        sender.start()
        listener.settimeout(30)
        conn, _ = listener.accept()
        conn.settimeout(60)
        received, seconds = receive(conn, size)
    finally:
        sender.join(60)
        if cpus is not None:
            os.sched_setaffinity(0, allowed)
        if conn is not None:
            conn.close()
        listener.close()
    if errors:
        raise errors[0]
    if received != size:
        raise RuntimeError(f"loopback test received {received} of {size} bytes")
    return size / seconds / 1e6


def cached_file(path: Path, size: int) -> Path:
    """Write `size` random bytes to `path` and read them once: in the page cache, like a
    warm blob."""
    with path.open("wb") as f:
        left = size
        while left > 0:
            left -= f.write(os.urandom(min(left, MIB)))
    with path.open("rb") as f:
        while f.read(16 * MIB):
            pass
    return path


def sha256_mb_s(size: int) -> float:
    """hashlib.sha256 over `size` bytes in 1 MiB chunks (MB/s)."""
    chunk = memoryview(os.urandom(MIB))
    h = hashlib.sha256()
    started = time.perf_counter()
    left = size
    while left > 0:
        n = min(left, MIB)
        h.update(chunk[:n])
        left -= n
    return size / (time.perf_counter() - started) / 1e6


def disk_mb_s(directory: Path, size: int) -> float:
    """Write `size` bytes in 1 MiB chunks to a new file and fsync it (MB/s, fsync included)."""
    chunk = memoryview(os.urandom(MIB))
    path = directory / "disk-test.bin"
    os.sync()
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = size
        while left > 0:
            n = os.write(fd, chunk[: min(left, MIB)])
            left -= n
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - started
    path.unlink()
    return size / seconds / 1e6


def measure(
    directory: Path, size: int, sendfile_samples: int = SENDFILE_SAMPLES
) -> dict[str, list[float]]:
    """Each limit's samples (MB/s). The `sendfile` streams swing from one run to the next
    (2-10 GB/s for a 1 GiB file), so they are sampled `sendfile_samples` times, from one
    cached file, where the others are steady enough for one."""
    results = {"loopback_tcp_mb_s": [loopback_mb_s(size)]}
    path = directory / "loopback-test.bin"
    allowed = sorted(os.sched_getaffinity(0))
    try:
        cached_file(path, size)
        results["loopback_sendfile_mb_s"] = [
            loopback_mb_s(size, path) for _ in range(sendfile_samples)
        ]
        if len(allowed) >= 2:  # as the benchmark's pulls with client and server apart
            results["loopback_sendfile_apart_mb_s"] = [
                loopback_mb_s(size, path, (allowed[1], allowed[0])) for _ in range(sendfile_samples)
            ]
    finally:
        path.unlink(missing_ok=True)
    return results | {
        "sha256_mb_s": [sha256_mb_s(size)],
        "disk_write_fsync_mb_s": [disk_mb_s(directory, size)],
    }
