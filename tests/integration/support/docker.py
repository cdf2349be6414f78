"""A private Docker daemon (Debian's `docker.io`): own directories, own socket, no network.

`dockerd` runs with its own `--config-file`, `--data-root`, `--exec-root`, `--pidfile` and
unix socket, and starts its own (managed) containerd under the exec root, so it never talks
to a system docker or containerd and reads none of their settings. It touches no network:
`--bridge=none`, no iptables rules. It runs inside a mount namespace of its own (`unshare
--mount`, private propagation): overlay2 and dockerd's bind mount of the data root stay in
that namespace and vanish with the daemon, so the machine's mount table never sees them
(dockerd 20.10 leaves the data root mounted after a clean shutdown otherwise). The only
thing it leaves outside the test's directories is an empty `/run/docker/plugins`, the
plugin directory dockerd always creates.

Storage driver: overlay2, Docker's default, decided once. It works on the ext4 file system
under the tests' temporary directories here, and with its mounts confined to the daemon's
namespace it leaves nothing behind. vfs works too, but it is not what docker users run, and
the registry sees the same layer tarballs either way.

The CLI is the one from the same package (`/usr/bin/docker`), not whatever `docker` comes
first in PATH, with `DOCKER_HOST` naming the private socket and `HOME` / `DOCKER_CONFIG` in
the test's directory (no credentials or settings of the machine's user are read).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.integration.support.daemon import start_daemon, stop_daemon

DOCKERD = "/usr/sbin/dockerd"
DOCKER_CLI = "/usr/bin/docker"
# overlay2, what Docker users run; vfs where the data root is itself on an overlay (a CI
# runner inside a container), which overlay2 cannot stack on. The registry sees the same
# layer tarballs either way.
STORAGE_DRIVER = "overlay2"
FALLBACK_STORAGE_DRIVER = "vfs"


def storage_driver(data_root: Path) -> str:
    """overlay2, unless the filesystem under `data_root` cannot carry it."""
    result = subprocess.run(
        ["stat", "-f", "-c", "%T", str(data_root)], capture_output=True, text=True, check=False
    )
    return FALLBACK_STORAGE_DRIVER if result.stdout.strip() == "overlayfs" else STORAGE_DRIVER


_INSTALL_HINT = (
    "install Debian's docker.io package (scripts/test.sh does: apt-get install docker.io)"
)


def require_docker() -> None:
    """Fail (never skip) with a clear message when Debian's docker.io is not installed."""
    missing = [path for path in (DOCKERD, DOCKER_CLI) if not os.access(path, os.X_OK)]
    if missing or shutil.which("unshare") is None:
        raise AssertionError(f"{', '.join(missing) or 'unshare'} not found: {_INSTALL_HINT}")


class DockerCommandError(AssertionError):
    """A docker CLI command that exited non-zero; its output is in the message."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str) -> None:
        super().__init__(
            f"docker {' '.join(args)} failed ({returncode})\nstdout:\n{stdout}\nstderr:\n{stderr}"
        )
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class DockerDaemon:
    """One private `dockerd`; `docker(...)` runs the CLI against it."""

    def __init__(self, workdir: Path, mirrors: list[str] | None = None) -> None:
        self.workdir = workdir
        self.data_root = workdir / "data"
        self.home = workdir / "home"
        self.log_path = workdir / "dockerd.log"
        self.config_file = workdir / "daemon.json"
        self.mirrors = mirrors or []
        # Unix socket paths are limited to 107 bytes, and containerd's sockets live under
        # the exec root: keep both in a short directory of their own.
        self.exec_dir = Path(tempfile.mkdtemp(prefix="dkd-", dir="/tmp"))
        self.exec_root = self.exec_dir / "exec"
        self.socket = self.exec_dir / "docker.sock"
        self.pidfile = self.exec_dir / "docker.pid"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        # No DOCKER_CONTEXT, DOCKER_TLS_VERIFY, ... of the caller's: only this daemon.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        return {
            **inherited,
            "DOCKER_HOST": f"unix://{self.socket}",
            "HOME": str(self.home),
            "DOCKER_CONFIG": str(self.home / ".docker"),
        }

    def command(self) -> list[str]:
        args = [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            DOCKERD,
            "--config-file",
            str(self.config_file),
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "--pidfile",
            str(self.pidfile),
            "--host",
            f"unix://{self.socket}",
            "--storage-driver",
            storage_driver(self.data_root),
            "--iptables=false",
            "--ip6tables=false",
            "--bridge=none",
            "--log-level=info",
        ]
        for mirror in self.mirrors:
            args += ["--registry-mirror", mirror]
        return args

    # -- process --------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> DockerDaemon:
        require_docker()
        for directory in (self.data_root, self.home / ".docker"):
            directory.mkdir(parents=True, exist_ok=True)
        # Not /etc/docker/daemon.json (the machine's settings) and not /etc/docker/key.json
        # (dockerd 20.10 writes its identity key there unless the config file says where).
        self.config_file.write_text(
            json.dumps({"deprecated-key-path": str(self.workdir / "key.json")}) + "\n"
        )
        # unshare(1) execs dockerd in place (no --fork): this PID is dockerd's own.
        try:
            self.proc = start_daemon(
                "dockerd",
                self.command(),
                self.log_path,
                lambda: self.socket.exists() and self._answers(),
                timeout,
            )
        except (RuntimeError, TimeoutError):
            self.stop()  # its managed containerd too
            raise
        return self

    def _answers(self) -> bool:
        result = subprocess.run(
            [DOCKER_CLI, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            env=self.env,
            timeout=10,
        )
        return result.returncode == 0 and bool(result.stdout.strip())

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the dockerd we started (by PID), SIGKILL if it does not exit; then make
        sure its managed containerd (by the PID it recorded) is gone too."""
        containerd_pid = self._containerd_pid()
        stop_daemon(self.proc, timeout)
        if containerd_pid is not None:
            _stop_pid(containerd_pid, str(self.exec_root), timeout)
        shutil.rmtree(self.exec_dir, ignore_errors=True)

    def _containerd_pid(self) -> int | None:
        path = self.exec_root / "containerd" / "containerd.pid"
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            return None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- the CLI --------------------------------------------------------------------------

    def docker(self, *args: str | Path, timeout: float = 120) -> str:
        """Run `docker ...` against this daemon; raise with its output on failure."""
        argv = [str(a) for a in args]
        result = subprocess.run(
            [DOCKER_CLI, *argv], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if result.returncode != 0:
            raise DockerCommandError(argv, result.returncode, result.stdout, result.stderr)
        return result.stdout

    def docker_bytes(self, *args: str | Path, timeout: float = 120) -> bytes:
        """Run `docker ...` and return its raw standard output (`docker save`)."""
        argv = [str(a) for a in args]
        result = subprocess.run(
            [DOCKER_CLI, *argv], capture_output=True, env=self.env, timeout=timeout
        )
        if result.returncode != 0:
            stderr = result.stderr.decode(errors="replace")
            raise DockerCommandError(argv, result.returncode, "", stderr)
        return result.stdout

    def inspect(self, image: str) -> dict[str, Any]:
        """`docker image inspect` of one image."""
        found = json.loads(self.docker("image", "inspect", image))
        assert len(found) == 1, found
        value: dict[str, Any] = found[0]
        return value

    def has_image(self, image: str) -> bool:
        try:
            self.docker("image", "inspect", image)
        except DockerCommandError:
            return False
        return True


def _stop_pid(pid: int, marker: str, timeout: float) -> None:
    """SIGTERM, then SIGKILL, a process we started, while it still runs and its command line
    still names `marker` (so a reused PID is never signalled)."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        if not _runs(pid, marker):
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _runs(pid, marker):
            time.sleep(0.1)


def _runs(pid: int, marker: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return marker.encode() in cmdline
