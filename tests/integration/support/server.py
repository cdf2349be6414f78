"""Start and stop real `dockyard serve` processes (and Distribution) for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# Longer than the server's access-log batch interval (0.1 s) plus the writer thread's turn.
ACCESS_LOG_FLUSH = 0.3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll a URL until it answers with any HTTP status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class DockyardServer:
    """One `python -m dockyard serve` process on 127.0.0.1 with its own root directory."""

    def __init__(
        self,
        root: Path,
        config: Path | None = None,
        port: int | None = None,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
        root_flag: bool = True,
    ) -> None:
        self.root = root
        self.root_flag = root_flag
        self.config = config
        self.port = port or free_port()
        self.env = env or {}
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root.parent / f"{root.name}-server-{self.port}.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> DockyardServer:
        args = [sys.executable, "-m", "dockyard", "serve", "--addr", self.host]
        if self.root_flag:
            args += ["--root", str(self.root)]
        if self.config is not None:
            args += ["--config", str(self.config)]
        args += self.extra_args
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        log.close()
        wait_http(f"{self.url}/v2/", proc=self.proc)
        return self

    def log(self) -> str:
        """The server's log so far. Access-log lines are written in batches every 0.1 s:
        a running server gets time for one batch before the file is read."""
        if self.proc is not None and self.proc.poll() is None:
            time.sleep(ACCESS_LOG_FLUSH)
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_entries(self) -> list[dict[str, Any]]:
        """The log's JSON lines, parsed (anything else in the log is skipped)."""
        entries = []
        for line in self.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def events(self, msg: str, **fields: Any) -> list[dict[str, Any]]:
        """The JSON log lines with this `msg` (and these field values)."""
        return [
            e
            for e in self.log_entries()
            if e.get("msg") == msg and all(e.get(k) == v for k, v in fields.items())
        ]

    def requests(self) -> list[dict[str, Any]]:
        """The access log: one entry per request."""
        return self.events("request")

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> DockyardServer:
        self.stop()
        return self.start()


class DistributionServer:
    """Debian's `docker-registry` (CNCF Distribution 2.8) on 127.0.0.1."""

    def __init__(self, workdir: Path, extra_config: str = "", port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra_config = extra_config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"distribution-{self.port}.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> DistributionServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / f"distribution-{self.port}.yml"
        config.write_text(
            "version: 0.1\n"
            "log: {level: info, accesslog: {disabled: false}}\n"
            f"storage: {{filesystem: {{rootdirectory: {self.workdir}/store-{self.port}}}, "
            "delete: {enabled: true}}\n"
            f"http: {{addr: {self.host}}}\n" + self.extra_config
        )
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_http(f"{self.url}/v2/", proc=self.proc)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
