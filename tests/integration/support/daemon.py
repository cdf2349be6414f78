"""Start a daemon the test owns, wait until it answers, and stop it by its PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


def start_daemon(
    name: str,
    command: list[str],
    log_path: Path,
    answers: Callable[[], bool],
    timeout: float,
) -> subprocess.Popen[bytes]:
    """Run `command` in its own session with output to `log_path`; return once `answers()`.

    Raises RuntimeError if it exits first and TimeoutError (after stopping it) if it does
    not answer within `timeout`; both carry the end of its log.
    """
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def tail() -> str:
        return log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode}:\n{tail()}")
        if answers():
            return proc
        time.sleep(0.1)
    stop_daemon(proc)
    raise TimeoutError(f"{name} did not answer within {timeout}s:\n{tail()}")


def stop_daemon(proc: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    """SIGTERM a daemon we started (by PID), SIGKILL if it does not exit in `timeout`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
