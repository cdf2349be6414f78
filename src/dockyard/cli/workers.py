"""`dockyard serve --workers N`: several processes sharing one port (SO_REUSEPORT).

`serve` execs `python -m dockyard.cli.workers N ARGS...`: this module, standard library
only, so the supervisor stays small (same PID). It starts N copies of `dockyard serve`
(each told its index), forwards SIGTERM and SIGINT to them and exits when they have; if
one dies on its own, the others are stopped too so a supervisor (Kubernetes) restarts the
whole set. Only worker 0 runs the periodic maintenance jobs. Each worker keeps its own
metrics, and its log lines carry its index. The pull-through cache coordinates the
workers through lock files in the store (`dockyard.proxy.locks`): still one upstream
request per blob and per tag.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType


def run_workers(count: int, serve_args: list[str]) -> int:
    """Run `count` workers of `dockyard serve <serve_args>`; returns the exit status."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "dockyard", "serve", *serve_args, "--worker-index", str(i)]
        )
        for i in range(count)
    ]
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while any(child.poll() is None for child in children):
        for child in children:
            code = child.poll()
            if code is not None and not stopping:
                # One worker died: stop the rest, report its failure.
                status = code or 1
                forward(signal.SIGTERM, None)
        time.sleep(0.2)
    for child in children:
        status = status or (child.returncode or 0)
    return status


def supervisor_command(count: int, serve_args: list[str]) -> list[str]:
    """argv that runs the supervisor of `count` workers of `dockyard serve <serve_args>`."""
    return [sys.executable, "-m", "dockyard.cli.workers", str(count), *serve_args]


def main(argv: list[str]) -> int:
    if not argv or not argv[0].isdigit() or int(argv[0]) < 1:
        print("usage: python -m dockyard.cli.workers COUNT [SERVE-ARGS...]", file=sys.stderr)
        return 2
    return run_workers(int(argv[0]), argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
