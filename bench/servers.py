"""The servers under test: Dockyard and Distribution on 127.0.0.1, and what they cost.

Both read the same Distribution-style config (filesystem storage in their own temporary
directory, deletes enabled, info logs with the access log on). Only processes started here
are ever signalled, by their own PID.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

DOCKYARD = "dockyard"
DISTRIBUTION = "distribution"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the benchmark dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


LOG_INFO = "{level: info, accesslog: {disabled: false}}"
LOG_QUIET = "{level: error, accesslog: {disabled: true}}"


def registry_config(root: Path, port: int, extra: str = "", log: str = LOG_INFO) -> str:
    """The one config both servers read (Dockyard reads Distribution's config.yml)."""
    return (
        "version: 0.1\n"
        f"log: {log}\n"
        f"storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}, "
        # Distribution's shipped config.yml (Debian's and the registry:2 image's) caches blob
        # descriptors in memory; Dockyard accepts the key and needs no such cache.
        "cache: {blobdescriptor: inmemory}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n" + extra
    )


class Server:
    """One registry process (kind `dockyard` or `distribution`) with its own directory."""

    def __init__(
        self,
        kind: str,
        workdir: Path,
        extra_config: str = "",
        label: str = "",
        extra_args: list[str] | None = None,
        log: str = LOG_INFO,
    ) -> None:
        self.kind = kind
        self.log = log
        self.extra_args = extra_args or []
        self.label = label or kind
        self.workdir = workdir
        self.root = workdir / "store"
        self.port = free_port()
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "server.log"
        self.extra_config = extra_config
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command(self) -> list[str]:
        if self.kind == DOCKYARD:
            return [
                sys.executable,
                "-m",
                "dockyard",
                "serve",
                "--config",
                str(self.config_path),
                *self.extra_args,
            ]
        return [distribution_binary(), "serve", str(self.config_path)]

    def start(self, timeout: float = 30.0) -> Server:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            registry_config(self.root, self.port, self.extra_config, self.log)
        )
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with status {self.proc.returncode}; "
                    f"log: {self.log_tail()}"
                )
            try:
                urllib.request.urlopen(f"{self.url}/v2/", timeout=2).close()
                return self
            except urllib.error.HTTPError:
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.label} did not answer within {timeout}s")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_tail(self, size: int = 2000) -> str:
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()[-size:]
        return data.decode(errors="replace")

    def remove_store(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def distribution_binary() -> str:
    path = shutil.which("docker-registry") or shutil.which("registry-distribution")
    if path is None:
        raise RuntimeError(
            "Distribution (Debian's docker-registry) is not installed: run scripts/test.sh "
            "once, or apt-get install docker-registry"
        )
    return path


def distribution_version() -> str:
    try:
        out = subprocess.run(
            [distribution_binary(), "--version"], capture_output=True, text=True, timeout=10
        )
        text = out.stdout.strip()
        return text.split(" ", 1)[1] if text.startswith("/") and " " in text else text
    except (OSError, RuntimeError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"


# -- what a process costs -----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Set VmHWM back to the current RSS (Linux >= 4.0; needs to own the process or root)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


@dataclass
class Usage:
    cpu_seconds: float
    peak_rss_mib: float
    peak_source: str  # "VmHWM" (reset at the start of the phase) or "sampled VmRSS"


def process_tree(pid: int) -> list[int]:
    """The process and its descendants (`serve --workers` runs one process per worker)."""
    found = [pid]
    for current in found:
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                found += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def pin_tree(pid: int, cpus: set[int]) -> None:
    """Set the CPU affinity of every thread of the process and its descendants (threads
    started later inherit it from the thread that starts them)."""
    for process in process_tree(pid):
        try:
            tasks = [int(t.name) for t in Path(f"/proc/{process}/task").iterdir()]
        except OSError:
            continue
        for task in tasks:
            with contextlib.suppress(OSError):  # a thread that has just ended
                os.sched_setaffinity(task, cpus)


@contextlib.contextmanager
def apart(pid: int) -> Iterator[None]:
    """Client (the calling thread) on the first allowed CPU, the server's threads on the
    others, as when they run on separate machines; everything back as it was afterwards.
    Needs two CPUs."""
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        raise RuntimeError("client and server on separate CPUs needs two CPUs")
    first = min(allowed)
    os.sched_setaffinity(0, {first})
    try:
        pin_tree(pid, allowed - {first})
        yield
    finally:
        os.sched_setaffinity(0, allowed)
        pin_tree(pid, allowed)


class Monitor:
    """CPU seconds and peak RSS of a process and its children over a phase
    (`with Monitor(pid) as m:`); with several processes, their sums."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.usage: Usage | None = None
        self._stop = threading.Event()
        self._sampled = 0
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._pids: list[int] = []
        self._cpu0: dict[int, float] = {}
        self._hwm_reset = False

    def _rss_kib(self) -> int:
        total = 0
        for pid in self._pids:
            with contextlib.suppress(OSError):
                total += status_kib(pid, "VmRSS")
        return total

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._sampled = max(self._sampled, self._rss_kib())

    def __enter__(self) -> Monitor:
        self._pids = process_tree(self.pid)
        self._hwm_reset = all([reset_peak_rss(pid) for pid in self._pids])
        self._sampled = self._rss_kib()
        for pid in self._pids:
            with contextlib.suppress(OSError):
                self._cpu0[pid] = cpu_seconds(pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        cpu = 0.0
        hwm = 0
        self._sampled = max(self._sampled, self._rss_kib())
        for pid, start in self._cpu0.items():
            try:  # a process that is gone counts nothing
                cpu += cpu_seconds(pid) - start
                hwm += status_kib(pid, "VmHWM") if self._hwm_reset else 0
            except OSError:
                continue
        if self._hwm_reset:
            self.usage = Usage(cpu, max(hwm, self._sampled) / 1024, "VmHWM")
        else:
            self.usage = Usage(cpu, self._sampled / 1024, "sampled VmRSS")
