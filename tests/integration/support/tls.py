"""A `dockyard serve` with TLS, for tests (its readiness check cannot speak plain HTTP)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.support.images import run
from tests.integration.support.server import DockyardServer


class TLSDockyard(DockyardServer):
    """`dockyard serve` with an `http.tls` config; ready when its port accepts connections.

    DockyardServer's readiness poll speaks plain HTTP, which a TLS listener never answers.
    """

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def start(self) -> TLSDockyard:
        assert self.config is not None
        args = [sys.executable, "-m", "dockyard", "serve", "--addr", self.host]
        args += ["--root", str(self.root), "--config", str(self.config)]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockyard exited ({self.proc.returncode}):\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"dockyard did not listen within 20s:\n{self.log()}")


def tls_init(out: Path, *extra: str) -> str:
    """`dockyard tls init` for 127.0.0.1 and localhost into `out`."""
    return run(
        sys.executable, "-m", "dockyard", "tls", "init",
        "--host", "127.0.0.1", "--host", "localhost", "--out", out, *extra,
    )  # fmt: skip
