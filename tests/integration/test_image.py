"""The image `dockyard k8s manifests` deploys, built from the Containerfile and run as the
Deployment runs it.

The tests have no network, so the build starts from what scripts/image-inputs.sh prepared
beforehand (scripts/test.sh runs it): a stand-in for python:3.11-slim made from Debian 12's
own Python, and a wheelhouse that pip installs from (`PIP_NO_INDEX`, `PIP_FIND_LINKS`, the
Containerfile's build arguments for builds without PyPI). podman builds it with chroot
isolation into a private vfs store.

This machine cannot start OCI containers (crun and runc fail to set rlimits without
CAP_SYS_RESOURCE), so the built image's root filesystem is run the way the Deployment's
pod runs it: read-only, as uid/gid 10001 with no capabilities, the ConfigMap's config.yml
read-only at /etc/dockyard, a writable data volume and an empty /tmp, the image's
entrypoint, command, environment and working directory. skopeo then pushes to it and
pulls from it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from dockyard.k8s.manifests import (
    CONFIG_DIR,
    CONFIG_FILE,
    DATA_DIR,
    PORT,
    RUN_AS,
    ManifestOptions,
    render_objects,
)
from tests.integration.support.client import RegistryClient
from tests.integration.support.images import build_image, run
from tests.integration.support.server import free_port
from tests.integration.support.upstreams import skopeo_push_layout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
INPUTS = REPO / ".cache" / "containerfile"
TAG = "localhost/dockyard:e2e"
BASE = "localhost/dockyard-base:e2e"


class Podman:
    """podman with its own vfs storage, so nothing touches the machine's image store."""

    def __init__(self, root: Path, runroot: Path) -> None:
        self.flags = ["--root", str(root), "--runroot", str(runroot), "--storage-driver", "vfs"]

    def __call__(self, *args: str | Path, timeout: float = 300) -> str:
        return run("podman", *self.flags, *args, timeout=timeout)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Podman, dict[str, Any]]]:
    assert (INPUTS / "base.tar").is_file() and (INPUTS / "wheels" / ".complete").exists(), (
        f"{INPUTS} is not prepared: run scripts/image-inputs.sh (scripts/test.sh does)"
    )
    base = tmp_path_factory.mktemp("podman")
    # containers-storage refuses a run root longer than 50 characters.
    with tempfile.TemporaryDirectory(prefix="dy-", dir="/tmp", ignore_cleanup_errors=True) as rr:
        podman = Podman(base / "root", Path(rr))
        podman("import", "--quiet", INPUTS / "base.tar", BASE)
        podman(
            "build", "--quiet", "--isolation=chroot", "--network=host",
            "--build-arg", f"BASE={BASE}",
            "--build-arg", "PIP_NO_INDEX=1",
            "--build-arg", "PIP_FIND_LINKS=/wheels",
            "--volume", f"{INPUTS / 'wheels'}:/wheels:ro",
            "--tag", TAG, "--file", REPO / "Containerfile", REPO,
        )  # fmt: skip
        config = json.loads(podman("image", "inspect", TAG))[0]["Config"]
        try:
            yield podman, config
        finally:
            podman("rmi", "--force", TAG, BASE)
            shutil.rmtree(base, ignore_errors=True)  # a few hundred MB of vfs layers


def deployment() -> tuple[dict[str, Any], str]:
    """The Deployment's container and the ConfigMap's config.yml."""
    objects = {o["kind"]: o for o in render_objects(ManifestOptions())}
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return container, objects["ConfigMap"]["data"][CONFIG_FILE]


def test_image_metadata_is_what_the_deployment_expects(
    image: tuple[Podman, dict[str, Any]],
) -> None:
    _podman, config = image
    container, _ = deployment()
    assert config["User"] == f"{RUN_AS}:{RUN_AS}"
    assert config["Entrypoint"] == ["dockyard", "serve"]
    assert config["Cmd"] == container["args"] == ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
    assert f"{PORT}/tcp" in config["ExposedPorts"]
    assert DATA_DIR in config["Volumes"]
    assert config["WorkingDir"] == DATA_DIR


def _start_like_the_pod(
    rootfs: Path, config: dict[str, Any], data: Path, config_dir: Path, port: int, log: Path
) -> subprocess.Popen[bytes]:
    """The image's entrypoint and command in its root filesystem, as the pod runs them."""
    env = [e for e in config.get("Env") or [] if not e.startswith("REGISTRY_HTTP_ADDR=")]
    if not any(e.startswith("PATH=") for e in env):  # what a container runtime sets then
        env.append("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env.append(f"REGISTRY_HTTP_ADDR=127.0.0.1:{port}")  # the pod listens on :5000
    command = [*config["Entrypoint"], *config["Cmd"]]
    script = " && ".join(
        [
            'mount --bind "$R" "$R"',
            'mount -o remount,bind,ro "$R"',  # readOnlyRootFilesystem
            f'mount --bind "$DATA" "$R{DATA_DIR}"',  # the PersistentVolumeClaim
            f'mount --bind "$CONF" "$R{CONFIG_DIR}"',  # the ConfigMap, read-only
            f'mount -o remount,bind,ro "$R{CONFIG_DIR}"',
            'mount -t tmpfs -o size=64m tmpfs "$R/tmp"',  # the /tmp emptyDir
            'mount -t proc proc "$R/proc"',
            # A uid other than 0 keeps no capabilities across exec (drop: [ALL]).
            f'exec chroot --userspec={RUN_AS}:{RUN_AS} "$R" '
            f"env -i -C {config['WorkingDir']} " + " ".join(env + command),
        ]
    )
    with log.open("wb") as output:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            env={**os.environ, "R": str(rootfs), "DATA": str(data), "CONF": str(config_dir)},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            raise AssertionError(f"the image's dockyard exited ({process.returncode}):\n{output}")
        try:
            if requests.get(f"{url}/v2/", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError("the image's dockyard did not answer /v2/ within 60 s")


def test_image_serves_as_the_deployment_runs_it(
    image: tuple[Podman, dict[str, Any]], tmp_path: Path
) -> None:
    podman, config = image
    _container, config_yml = deployment()
    assert yaml.safe_load(config_yml)["storage"]["filesystem"]["rootdirectory"] == DATA_DIR
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, RUN_AS, RUN_AS)  # fsGroup / a volume owned by the registry's user
    conf = tmp_path / "config"
    conf.mkdir()
    (conf / CONFIG_FILE).write_text(config_yml)
    rootfs = Path(podman("image", "mount", TAG).strip())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "dockyard.log"
    process = _start_like_the_pod(rootfs, config, data, conf, port, log)
    try:
        _wait_ready(url, process, log)
        server_pids = [
            int(p) for p in run("pgrep", "-s", str(process.pid), "-f", "dockyard serve").split()
        ]
        assert server_pids
        for pid in server_pids:
            status = Path(f"/proc/{pid}/status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uid_line.split()[1:] == [str(RUN_AS)] * 4, uid_line
            cap_line = next(line for line in status.splitlines() if line.startswith("CapEff:"))
            assert int(cap_line.split()[1], 16) == 0, cap_line
        response = requests.get(f"{url}/v2/", timeout=5)
        assert response.headers["X-Content-Type-Options"] == "nosniff"

        # A real client pushes and pulls through it; the blobs land on the data volume.
        layout = tmp_path / "layout"
        build_image(layout, "v1", files={"hello.txt": "from the image e2e test\n"})
        skopeo_push_layout(layout, "v1", f"127.0.0.1:{port}/team/app:v1")
        pulled = tmp_path / "pulled"
        run("skopeo", "copy", "--src-tls-verify=false",
            f"docker://127.0.0.1:{port}/team/app:v1", f"oci:{pulled}:v1")  # fmt: skip
        source = json.loads((layout / "index.json").read_text())["manifests"]
        back = json.loads((pulled / "index.json").read_text())["manifests"]
        assert {m["digest"] for m in back} <= {m["digest"] for m in source}
        client = RegistryClient(url)
        assert client.request("GET", "/v2/team/app/tags/list").json()["tags"] == ["v1"]
        written = [p for p in data.rglob("*") if p.is_file()]
        assert written and all(p.stat().st_uid == RUN_AS for p in written)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        podman("image", "unmount", TAG)
    # It drained and stopped on SIGTERM, as on a rolling update.
    output = log.read_text(errors="replace")
    assert process.returncode == 0, output[-3000:]
    assert '"level": "error"' not in output and "Traceback" not in output, output[-3000:]
