"""Profile `dockyard serve` under one benchmark workload with py-spy.

    .venv/bin/python -m bench.profile push|chunked|pull|requests|fanout [--out DIR]

Starts Dockyard on 127.0.0.1 (one process, the benchmark's config), prepares the data the
workload needs, attaches `py-spy record` to the server and runs the workload a few times.
Writes DIR/profile-<workload>.svg (a flame graph, every thread) and prints the functions
where the server spent most samples, by own time (leaf frame) and with callees.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.httpc import Connection, Get, run_flows
from bench.load import run_wrk, write_script
from bench.run import MIB, Source, pull_blob, push_bytes, push_image, push_source
from bench.servers import DOCKYARD, Server

WORKLOADS = ("push", "chunked", "pull", "requests", "fanout")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit(
            "py-spy is not installed (it is in the dev extra: pip install -e '.[dev]')"
        )
    return found


# Frames every sample passes through (process start, the CLI, the loop, worker threads).
_WRAPPERS = (
    "click/",
    "asyncio/runners.py",
    "threading.py",
    "concurrent/futures/thread.py",
    "dockyard/cli/",
    "dockyard/__main__.py",
    "<frozen runpy>",
    "run_forever (",
    "run_until_complete (",
)


def _wrapper(frame: str) -> bool:
    return frame.startswith("thread (") or any(w in frame for w in _WRAPPERS)


def top_frames(raw: Path, count: int) -> tuple[int, list[tuple[int, str]], list[tuple[int, str]]]:
    """(samples, top leaf frames, top inclusive frames) of a py-spy `--format raw` file."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        leaf[frames[-1]] += int(n)
        for frame in set(frames):
            inclusive[frame] += int(n)
    inclusive_top = [(n, f) for f, n in inclusive.most_common() if not _wrapper(f)]
    return total, [(n, f) for f, n in leaf.most_common(count)], inclusive_top[:count]


def workload(name: str, server: Server, data: Path, size: int) -> Callable[[], object]:
    """Prepare what `name` needs on `server`; returns one run of it."""
    source = Source.create(data / "blob.bin", size)
    if name in ("push", "chunked"):
        chunk = 16 * MIB if name == "chunked" else None
        return lambda: push_source(server, "profile/big", source, chunk)
    _, digest = push_source(server, "profile/big", source, None)
    if name == "pull":
        return lambda: pull_blob(server, "profile/big", digest, source.size)
    if name == "fanout":
        flows = [[Get(f"/v2/profile/big/blobs/{digest}")] for _ in range(100)]
        return lambda: run_flows(server.host, server.port, flows, 600)
    with Connection(server.host, server.port) as conn:
        layer = os.urandom(1024)
        push_image(conn, "profile/small", "v1", [(push_bytes(conn, "profile/small", layer), 1024)])
    script = write_script(data, "GET")
    url = f"{server.url}/v2/profile/small/manifests/v1"
    return lambda: run_wrk(url, script, 16, 3.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("workload", choices=WORKLOADS)
    p.add_argument("--runs", type=int, default=3, help="runs of the workload (default 3)")
    p.add_argument("--size", type=int, default=1024, help="blob size in MiB (default 1024)")
    p.add_argument("--rate", type=int, default=250, help="samples per second (default 250)")
    p.add_argument("--top", type=int, default=15, help="functions to list (default 15)")
    p.add_argument("--out", type=Path, default=Path("."), help="where the SVG goes")
    args = p.parse_args(argv)
    size = args.size * MIB if args.workload != "fanout" else min(args.size, 50) * MIB
    spy = py_spy()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dockyard-profile-") as tmp:
        work = Path(tmp)
        server = Server(DOCKYARD, work / "server")
        server.start()
        try:
            run_once = workload(args.workload, server, work, size)
            outputs = {
                "raw": work / "profile.txt",
                "flamegraph": args.out / f"profile-{args.workload}.svg",
            }
            spies = [
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(server.pid),
                        "--rate",
                        str(args.rate),
                        "--format",
                        fmt,
                        "--output",
                        str(path),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for fmt, path in outputs.items()
            ]
            time.sleep(1.0)  # py-spy attaches
            started = time.perf_counter()
            for _ in range(args.runs):
                run_once()
            seconds = time.perf_counter() - started
            for spy_process in spies:
                spy_process.send_signal(2)  # SIGINT: py-spy writes its output and exits
                spy_process.wait(timeout=60)
        finally:
            server.stop()
        total, leaf, inclusive = top_frames(outputs["raw"], args.top)
    print(f"{args.workload}: {args.runs} runs in {seconds:.1f}s, {total} samples "
          f"(idle threads not sampled); flame graph: {outputs['flamegraph']}")  # fmt: skip
    for title, rows in (("own time", leaf), ("with callees", inclusive)):
        print(f"\ntop functions by {title}:")
        for n, frame in rows:
            print(f"  {100 * n / max(total, 1):5.1f}%  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
