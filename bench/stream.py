"""How fast can one TCP stream over loopback carry a page-cached file, sent six ways?

    .venv/bin/python -m bench.stream [--size 1GiB] [--runs 8] [--pin same|split]

A pulled blob is one such stream. This compares what a server could do with the file, with
no HTTP and no event loop in the way; each run forks a sender process and receives in
this one, into a reused 1 MiB buffer as the benchmark's client does:

- `sendfile`: the whole file in one blocking sendfile call (zero copy; asyncio's
  `loop.sendfile`, which Dockyard used until 2026-11-28, asks for the rest at once too);
- `sendfile-pieces`: sendfile a piece (60 KiB, one loopback TCP segment) per call, as
  Dockyard serves blob bodies (`dockyard.api.sendfile.PIECE`): zero copy, more calls;
- `sendfile-32k`: sendfile 32 KiB per call, as Dockyard did until 2026-11-29: half a
  segment per call, so twice the segments and wake-ups of the receiver;
- `read-send`: read 1 MiB into a buffer and send it: two copies, the way Distribution 2.8
  serves blobs (it reads and writes 32 KiB at a time; no sendfile);
- `mmap-send`: send straight from a read-only mapping in 1 MiB slices (one copy);
- `warm-sendfile`: read each 512 KiB into a small scratch buffer, then sendfile it: zero
  copy on the wire, but the sending core has just had the bytes in its cache.

Methods alternate run by run (the order flipping) so that a drifting machine hits each
alike. Printed per method: MB/s (median, quartile, min-max) and the sender's CPU seconds
per GiB. README.md, "Profiling", says what it showed on the benchmark machine.
"""

from __future__ import annotations

import argparse
import mmap
import os
import socket
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.limits import cached_file, receive
from dockyard.api.sendfile import PIECE

MIB = 1 << 20
WARM_WINDOW = 512 * 1024
_SCRATCH = 64 * 1024


def send_sendfile(sock: socket.socket, fd: int, size: int) -> None:
    offset = 0
    while offset < size:
        offset += os.sendfile(sock.fileno(), fd, offset, size - offset)


def send_pieces(sock: socket.socket, fd: int, size: int, piece: int = PIECE) -> None:
    offset = 0
    while offset < size:
        offset += os.sendfile(sock.fileno(), fd, offset, min(piece, size - offset))


def send_32k(sock: socket.socket, fd: int, size: int) -> None:
    send_pieces(sock, fd, size, 32 << 10)


def send_read(sock: socket.socket, fd: int, size: int) -> None:
    buffer = bytearray(MIB)
    view = memoryview(buffer)
    offset = 0
    while offset < size:
        n = os.preadv(fd, [buffer], offset)
        if n == 0:
            raise RuntimeError("file shorter than expected")
        sock.sendall(view[:n])
        offset += n


def send_mmap(sock: socket.socket, fd: int, size: int) -> None:
    with mmap.mmap(fd, size, prot=mmap.PROT_READ) as mapped:
        view = memoryview(mapped)
        try:
            offset = 0
            while offset < size:
                offset += sock.send(view[offset : offset + MIB])
        finally:
            view.release()


def send_warm(sock: socket.socket, fd: int, size: int) -> None:
    # One small buffer listed over and over: the read touches every byte of the window
    # while writing only 64 KiB, which stays in the cache.
    scratch = bytearray(_SCRATCH)
    vector = [scratch] * (WARM_WINDOW // _SCRATCH)
    offset = 0
    while offset < size:
        end = min(offset + os.preadv(fd, vector, offset), size)
        if end == offset:
            raise RuntimeError("file shorter than expected")
        while offset < end:
            offset += os.sendfile(sock.fileno(), fd, offset, end - offset)


METHODS: dict[str, Callable[[socket.socket, int, int], None]] = {
    "sendfile": send_sendfile,
    "sendfile-pieces": send_pieces,
    "sendfile-32k": send_32k,
    "read-send": send_read,
    "mmap-send": send_mmap,
    "warm-sendfile": send_warm,
}


def one_run(
    method: str, path: Path, size: int, cpus: tuple[int, int] | None
) -> tuple[float, float]:
    """(MB/s received, sender CPU seconds) of one stream of `path` sent by `method`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the sender
        code = 1
        try:
            listener.close()
            os.close(read_end)
            if cpus is not None:
                os.sched_setaffinity(0, {cpus[0]})
            fd = os.open(path, os.O_RDONLY)
            with socket.create_connection(("127.0.0.1", port)) as sock:
                METHODS[method](sock, fd, size)
            times = os.times()
            os.write(write_end, f"{times.user + times.system:.6f}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    allowed = os.sched_getaffinity(0)
    try:
        if cpus is not None:
            os.sched_setaffinity(0, {cpus[1]})
        listener.settimeout(30)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(60)
            received, seconds = receive(conn, size)
        cpu = os.read(read_end, 64).decode()
    finally:
        os.close(read_end)
        listener.close()
        _, status = os.waitpid(pid, 0)
        if cpus is not None:
            os.sched_setaffinity(0, allowed)
    if status != 0 or received != size or not cpu:
        raise RuntimeError(f"{method}: the sender failed ({received} of {size} bytes)")
    return size / seconds / 1e6, float(cpu)


def compare(
    size: int, runs: int, methods: list[str], cpus: tuple[int, int] | None, tmp: Path | None
) -> dict[str, dict[str, float]]:
    """Per method: median, quartile, min and max MB/s, and the median sender CPU-s/GiB."""
    rates: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    with tempfile.TemporaryDirectory(dir=tmp) as directory:
        path = cached_file(Path(directory) / "stream-test.bin", size)
        for run in range(runs):
            for method in methods if run % 2 == 0 else methods[::-1]:
                rate, seconds = one_run(method, path, size, cpus)
                rates[method].append(rate)
                cpu[method].append(seconds / (size / (1 << 30)))
    summary = {}
    for method in methods:
        values = sorted(rates[method])
        summary[method] = {
            "median_mb_s": statistics.median(values),
            "q1_mb_s": values[len(values) // 4],
            "min_mb_s": values[0],
            "max_mb_s": values[-1],
            "sender_cpu_s_per_gib": statistics.median(cpu[method]),
        }
    return summary


def parse_size(text: str) -> int:
    units = {"KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30}
    upper = text.strip().upper()
    for suffix, factor in units.items():
        if upper.endswith(suffix):
            return int(float(upper[: -len(suffix)]) * factor)
    return int(upper)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.stream",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", type=parse_size, default=1 << 30, help="bytes (1GiB)")
    parser.add_argument("--runs", type=int, default=8, help="runs per method (default 8)")
    parser.add_argument(
        "--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}"
    )
    parser.add_argument(
        "--pin",
        choices=("same", "split"),
        help="put sender and receiver on CPU 0 both, or on CPUs 0 and 1 (default: let "
        "the scheduler place them)",
    )
    parser.add_argument("--tmp", type=Path, help="directory for the test file")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods or args.runs < 1 or args.size < 1:
        parser.error(f"methods are {', '.join(METHODS)}; runs and size must be positive")
    cpus = {"same": (0, 0), "split": (0, 1), None: None}[args.pin]
    if cpus is not None and (os.cpu_count() or 1) < 2 and args.pin == "split":
        parser.error("--pin split needs two CPUs")
    summary = compare(args.size, args.runs, methods, cpus, args.tmp)
    print(f"one loopback stream of {args.size / MIB:.0f} MiB, {args.runs} runs per method")
    print(f"{'method':<16} {'median':>8} {'q1':>8} {'min-max':>15} {'sender CPU':>11}")
    for method, s in summary.items():
        span = f"{s['min_mb_s']:,.0f}-{s['max_mb_s']:,.0f}"
        print(
            f"{method:<16} {s['median_mb_s']:>8,.0f} {s['q1_mb_s']:>8,.0f} {span:>15} "
            f"{s['sender_cpu_s_per_gib']:>7.2f} s/GiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
