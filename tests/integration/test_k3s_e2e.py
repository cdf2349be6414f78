"""From `dockyard k3s registries` to a real containerd pulling through Dockyard.

The chain a K3s node goes through, with K3s itself replaced by `dockyard k3s hosts-toml`:

    dockyard k3s registries --endpoint http://127.0.0.1:<dockyard> -o registries.yaml
    dockyard k3s lint registries.yaml                       (clean)
    dockyard k3s hosts-toml registries.yaml --out <containerd dir>
    containerd (config_path = <containerd dir>/certs.d) pulls docker.io/... and quay.io/...

Dockyard caches two Distribution 2.8 upstreams named docker.io and quay.io. The generated
hosts.toml files are used as written, except that each upstream `server` line
(`https://registry-1.docker.io/v2`, `https://quay.io/v2`, `""` for `_default`) is rewritten to
a dead loopback port before containerd starts, so a pull can only succeed through Dockyard.
Pulls go through `ctr images pull --hosts-dir` and through the kubelet's CRI PullImage call.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.integration.support import cri
from tests.integration.support.containerd import Containerd, dead_endpoint
from tests.integration.support.images import build_image, run
from tests.integration.support.server import DistributionServer, DockyardServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
HOST_ARCH = _GOARCH.get(platform.machine(), platform.machine())


@dataclass(frozen=True)
class Pushed:
    """An image pushed to an upstream: its repository, tag and manifest digest."""

    repository: str
    tag: str
    digest: str


def dockyard_cli(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the real `dockyard` command line (`python -m dockyard ...`)."""
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"dockyard {' '.join(map(str, args))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def push_to_upstream(
    tmp_path: Path, upstream: DistributionServer, repository: str, tag: str
) -> Pushed:
    """Build a one-layer image and push it into a Distribution upstream with skopeo."""
    layout = tmp_path / f"oci-{uuid.uuid4().hex[:8]}"
    build_image(layout, tag, arch=HOST_ARCH, files={"hello.txt": f"{repository}:{tag}\n"})
    digest_file = tmp_path / f"{uuid.uuid4().hex}.digest"
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        f"--digestfile={digest_file}",
        f"oci:{layout}:{tag}",
        f"docker://{upstream.host}/{repository}:{tag}",
    )
    return Pushed(repository, tag, digest_file.read_text().strip())


def write_dockyard_config(path: Path, upstreams: dict[str, DistributionServer]) -> Path:
    config = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "proxy": {
            "upstreams": [{"name": name, "url": server.url} for name, server in upstreams.items()]
        },
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def kill_upstream_servers(certs_d: Path) -> dict[str, str]:
    """Point every generated `server` line at a dead loopback port; returns the originals."""
    originals: dict[str, str] = {}
    for hosts in sorted(certs_d.glob("*/hosts.toml")):
        text = hosts.read_text()
        match = re.search(r'^server = "(.*)"$', text, flags=re.MULTILINE)
        assert match, f"{hosts} has no server line:\n{text}"
        originals[hosts.parent.name] = match.group(1)
        hosts.write_text(text.replace(match.group(0), f'server = "{dead_endpoint()}"'))
    return originals


def dockyard_requests(dockyard: DockyardServer, repository: str) -> list[dict[str, object]]:
    """Dockyard's access-log entries for containerd's requests about one repository."""
    return [
        entry
        for entry in dockyard.requests()
        if str(entry.get("path", "")).startswith(f"/v2/{repository}/")
        and str(entry.get("user_agent", "")).startswith("containerd/")
    ]


def assert_ns(requests: list[dict[str, object]], ns: str) -> None:
    assert requests, "containerd sent Dockyard no request"
    for entry in requests:
        assert f"ns={ns}" in str(entry["path"]).partition("?")[2].split("&"), entry


@pytest.fixture
def upstreams(
    distribution_factory: Callable[..., DistributionServer],
) -> dict[str, DistributionServer]:
    """Two Distribution registries standing in for Docker Hub and Quay."""
    return {
        "docker.io": distribution_factory("upstream-docker-io"),
        "quay.io": distribution_factory("upstream-quay-io"),
    }


@pytest.fixture
def cache(
    tmp_path: Path,
    upstreams: dict[str, DistributionServer],
    dockyard_factory: Callable[..., DockyardServer],
) -> DockyardServer:
    """Dockyard caching both upstreams."""
    config = write_dockyard_config(tmp_path / "dockyard.yml", upstreams)
    return dockyard_factory("dockyard", config=config)


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Containerd]:
    """A containerd configured as K3s runs it; started by the test once certs.d is written."""
    daemon = Containerd(tmp_path / "node")
    try:
        yield daemon
    finally:
        daemon.stop()


def configure_node(tmp_path: Path, node: Containerd, *generate_args: str) -> dict[str, str]:
    """registries -> lint -> hosts-toml into the node's directory; returns original servers."""
    registries = tmp_path / "registries.yaml"
    dockyard_cli("k3s", "registries", *generate_args, "-o", registries)
    assert registries.stat().st_mode & 0o777 == 0o600
    lint = dockyard_cli("k3s", "lint", registries, "--format", "json", check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert json.loads(lint.stdout)["findings"] == []

    written = dockyard_cli("k3s", "hosts-toml", registries, "--out", node.workdir).stdout.split()
    assert str(node.workdir / "config-registry.toml") in written
    originals = kill_upstream_servers(node.certs_d)
    node.write_config()
    node.start()
    return originals


def test_ctr_and_cri_pull_docker_io_and_quay_io_through_dockyard(
    tmp_path: Path,
    upstreams: dict[str, DistributionServer],
    cache: DockyardServer,
    node: Containerd,
) -> None:
    app = push_to_upstream(
        tmp_path, upstreams["docker.io"], f"library/app-{uuid.uuid4().hex[:6]}", "1.0"
    )
    tool = push_to_upstream(
        tmp_path, upstreams["quay.io"], f"org/tool-{uuid.uuid4().hex[:6]}", "2.0"
    )
    kubelet_app = push_to_upstream(tmp_path, upstreams["docker.io"], app.repository, "1.1")
    kubelet_tool = push_to_upstream(tmp_path, upstreams["quay.io"], tool.repository, "2.1")

    originals = configure_node(
        tmp_path,
        node,
        "--endpoint",
        cache.url,
        "--mirror",
        "docker.io",
        "--mirror",
        "quay.io",
    )
    # K3s's server lines, as generated, before they were pointed at a dead port.
    assert originals == {
        "docker.io": "https://registry-1.docker.io/v2",
        "quay.io": "https://quay.io/v2",
    }
    for registry in ("docker.io", "quay.io"):
        text = (node.certs_d / registry / "hosts.toml").read_text()
        assert text.startswith("# File generated by k3s. DO NOT EDIT.\n")
        assert f'[host."{cache.url}/v2"]\n  capabilities = ["pull", "resolve"]\n' in text

    # ctr, the way an operator checks a node.
    for pushed, registry in ((app, "docker.io"), (tool, "quay.io")):
        ref = f"{registry}/{pushed.repository}:{pushed.tag}"
        node.pull(ref)
        assert ref in node.image_refs()
        assert pushed.digest in node.ctr("images", "ls")

    # The kubelet's CRI PullImage; images land in the k8s.io namespace.
    for pushed, registry in ((kubelet_app, "docker.io"), (kubelet_tool, "quay.io")):
        ref = f"{registry}/{pushed.repository}:{pushed.tag}"
        image_id = cri.pull_image(node.socket, ref)
        status = cri.image_status(node.socket, ref)
        assert status is not None and status.id == image_id
        assert f"{registry}/{pushed.repository}@{pushed.digest}" in status.repo_digests
        assert ref in node.image_refs(namespace="k8s.io")

    # Every request reached Dockyard with containerd's ?ns=, and Dockyard fetched from the
    # matching upstream.
    docker_requests = dockyard_requests(cache, app.repository)
    quay_requests = dockyard_requests(cache, tool.repository)
    assert_ns(docker_requests, "docker.io")
    assert_ns(quay_requests, "quay.io")
    assert {e["status"] for e in docker_requests + quay_requests} == {200}
    assert f"/v2/{app.repository}/manifests/" in upstreams["docker.io"].log()
    assert f"/v2/{tool.repository}/manifests/" in upstreams["quay.io"].log()
    assert tool.repository not in upstreams["docker.io"].log()
    assert app.repository not in upstreams["quay.io"].log()


def test_wildcard_mirror_default_hosts_toml(
    tmp_path: Path,
    upstreams: dict[str, DistributionServer],
    cache: DockyardServer,
    node: Containerd,
) -> None:
    tool = push_to_upstream(
        tmp_path, upstreams["quay.io"], f"org/any-{uuid.uuid4().hex[:6]}", "3.0"
    )

    originals = configure_node(tmp_path, node, "--endpoint", cache.url, "--mirror", "*")
    # `"*"` becomes certs.d/_default, whose empty server means "the registry itself".
    assert originals == {"_default": ""}

    ref = f"quay.io/{tool.repository}:{tool.tag}"
    node.pull(ref)
    assert ref in node.image_refs()
    image_id = cri.pull_image(node.socket, ref)
    status = cri.image_status(node.socket, ref)
    assert status is not None and status.id == image_id
    assert_ns(dockyard_requests(cache, tool.repository), "quay.io")
