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

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

MAX_WORKERS = 64


def _cgroup_cpus(root: Path) -> float | None:
    """The CPU quota of this process's cgroup (v2 `cpu.max`, v1 `cpu.cfs_*`), if any."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU limit (a container's
    `resources.limits.cpu`), rounded up; at least 1, at most MAX_WORKERS."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_cpus(cgroup_root)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, min(cpus, MAX_WORKERS))


def run_workers(count: int, serve_args: list[str]) -> int:
    """Run `count` workers of `dockyard serve <serve_args>`; returns the exit status."""
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "dockyard", "serve", *serve_args, "--worker-index", str(i)]
        )
        for i in range(count)
    ]
    stopping = False
    requested: set[int] = set()  # signals asked for from outside (a clean stop)

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    def stop(signum: int, frame: FrameType | None) -> None:
        requested.add(signum)
        forward(signum, frame)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while any(child.poll() is None for child in children):
        for child in children:
            code = child.poll()
            if code is not None and not stopping:
                # One worker died: stop the rest, report its failure.
                status = _exit_status(code) or 1
                forward(signal.SIGTERM, None)
        time.sleep(0.2)
    for child in children:
        code = child.returncode or 0
        # A worker still starting when the stop came is ended by the signal itself.
        if code < 0 and -code in requested:
            code = 0
        status = status or _exit_status(code)
    return status


def _exit_status(code: int) -> int:
    """A child's return code as an exit status (killed by signal N: 128 + N, as shells say)."""
    return 128 - code if code < 0 else code


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
