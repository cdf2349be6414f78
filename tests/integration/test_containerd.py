"""containerd pulling through Dockyard exactly the way K3s configures it.

A private containerd (own root, state and socket under `tmp_path`) reads a `certs.d`
directory in which `docker.io/hosts.toml` names Dockyard as the only mirror and a dead
loopback port as the upstream `server`, so a pull can only succeed through Dockyard and can
never reach a real registry. Three clients are exercised: `ctr images pull --hosts-dir`,
the same for a two-platform index, and the kubelet's CRI `PullImage` call over the socket.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.support import cri
from tests.integration.support.containerd import Containerd
from tests.integration.support.images import add_index, build_image, run
from tests.integration.support.server import DockyardServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
HOST_ARCH = _GOARCH.get(platform.machine(), platform.machine())
OTHER_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Containerd]:
    """A containerd of our own, stopped (by PID) at the end of the test."""
    daemon = Containerd(tmp_path / "ctd")
    daemon.write_config()
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def _mirror_docker_io(containerd: Containerd, dockyard: DockyardServer) -> None:
    """`certs.d/docker.io/hosts.toml` as K3s writes it for `mirrors: docker.io: [dockyard]`."""
    hosts = containerd.write_hosts("docker.io", [f"{dockyard.url}/v2"])
    text = hosts.read_text()
    assert f'[host."http://{dockyard.host}/v2"]' in text
    assert 'server = "http://127.0.0.1:' in text


def _image_name() -> str:
    return f"dy-{uuid.uuid4().hex[:10]}"


def _skopeo_push(layout: Path, tag: str, dest: str, all_images: bool = False) -> None:
    args = ["skopeo", "copy", "--dest-tls-verify=false"]
    if all_images:
        args.append("--all")
    run(*args, f"oci:{layout}:{tag}", f"docker://{dest}")


def _layout_descriptor(layout: Path, tag: str) -> dict[str, object]:
    index = json.loads((layout / "index.json").read_text())
    for desc in index["manifests"]:
        if (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            return dict(desc)
    raise KeyError(tag)


def _layout_blob(layout: Path, digest: str) -> bytes:
    algorithm, hexdigest = digest.split(":", 1)
    return (layout / "blobs" / algorithm / hexdigest).read_bytes()


def _layout_json(layout: Path, digest: str) -> dict[str, object]:
    value: dict[str, object] = json.loads(_layout_blob(layout, digest))
    return value


def _image_blobs(layout: Path, manifest_digest: str) -> tuple[str, list[str]]:
    """(config digest, layer digests) of a manifest in the layout."""
    manifest = _layout_json(layout, manifest_digest)
    config = manifest["config"]
    layers = manifest["layers"]
    assert isinstance(config, dict)
    assert isinstance(layers, list)
    return str(config["digest"]), [str(layer["digest"]) for layer in layers]


def _content_bytes(containerd: Containerd, digest: str, namespace: str = "default") -> bytes:
    result = subprocess.run(
        ["ctr", "-a", str(containerd.socket), "-n", namespace, "content", "get", digest],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def access_log(server: DockyardServer) -> list[dict[str, object]]:
    """Dockyard's access-log entries (one JSON object per request)."""
    entries = []
    for line in server.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("msg") == "request" and "path" in entry:
            entries.append(entry)
    return entries


def _containerd_requests(
    server: DockyardServer, repo: str, expect: list[tuple[str, str]], timeout: float = 10.0
) -> list[dict[str, object]]:
    """containerd's requests for `repo`, once every expected (method, path) has been logged.

    The access log line is written after the response, so a pull can finish a moment
    before its last line appears.
    """
    deadline = time.monotonic() + timeout
    while True:
        requests = [
            e
            for e in access_log(server)
            if str(e["path"]).startswith(f"/v2/{repo}/")
            and str(e.get("user_agent", "")).startswith("containerd/")
        ]
        seen = {(str(e["method"]), str(e["path"]).partition("?")[0]) for e in requests}
        if all(item in seen for item in expect) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    missing = [item for item in expect if item not in seen]
    assert not missing, f"requests missing from Dockyard's log: {missing}\n{server.log()}"
    return requests


def _assert_every_request_has_ns(requests: list[dict[str, object]], ns: str = "docker.io") -> None:
    """containerd appends `?ns=<registry>` to every request it sends to a mirror."""
    for entry in requests:
        query = str(entry["path"]).partition("?")[2].split("&")
        assert f"ns={ns}" in query, f"request without ?ns={ns}: {entry}"


def _paths(requests: list[dict[str, object]], method: str | None = None) -> list[str]:
    return [
        str(e["path"]).partition("?")[0]
        for e in requests
        if method is None or e.get("method") == method
    ]


def test_ctr_pull_docker_io_through_k3s_mirror(
    tmp_path: Path, dockyard: DockyardServer, containerd: Containerd
) -> None:
    name = _image_name()
    layout = tmp_path / "oci"
    build_image(layout, "v1", arch=HOST_ARCH)
    _skopeo_push(layout, "v1", f"{dockyard.host}/library/{name}:v1")
    manifest_digest = str(_layout_descriptor(layout, "v1")["digest"])
    config_digest, layer_digests = _image_blobs(layout, manifest_digest)

    _mirror_docker_io(containerd, dockyard)
    ref = f"docker.io/library/{name}:v1"
    output = containerd.pull(ref, "--print-chainid")

    assert ref in containerd.image_refs()
    assert manifest_digest in containerd.ctr("images", "ls")
    # Every byte containerd stored came from Dockyard and matches what was pushed.
    for digest in [manifest_digest, config_digest, *layer_digests]:
        assert _content_bytes(containerd, digest) == _layout_blob(layout, digest), digest
    # The image was unpacked into the snapshotter (the layers' diff IDs matched the config).
    chain_id = re.search(r"chain ID: (sha256:[0-9a-f]{64})", output)
    assert chain_id, output
    assert chain_id.group(1) in containerd.ctr("snapshots", "ls")

    requests = _assert_every_request_has_ns(dockyard, f"library/{name}", pushed)
    paths = _paths(requests)
    assert f"/v2/library/{name}/manifests/v1" in paths
    for digest in [config_digest, *layer_digests]:
        assert f"/v2/library/{name}/blobs/{digest}" in _paths(requests, "GET")
    assert all(e["status"] in (200, 307) for e in requests), requests


def test_ctr_pull_two_platform_index(
    tmp_path: Path, dockyard: DockyardServer, containerd: Containerd
) -> None:
    name = _image_name()
    layout = tmp_path / "oci"
    build_image(layout, HOST_ARCH, arch=HOST_ARCH)
    build_image(layout, OTHER_ARCH, arch=OTHER_ARCH)
    index_digest = add_index(layout, "v1", {HOST_ARCH: HOST_ARCH, OTHER_ARCH: OTHER_ARCH})
    _skopeo_push(layout, "v1", f"{dockyard.host}/library/{name}:v1", all_images=True)
    host_manifest = str(_layout_descriptor(layout, HOST_ARCH)["digest"])
    other_manifest = str(_layout_descriptor(layout, OTHER_ARCH)["digest"])
    host_config, host_layers = _image_blobs(layout, host_manifest)
    other_config, other_layers = _image_blobs(layout, other_manifest)

    _mirror_docker_io(containerd, dockyard)
    ref = f"docker.io/library/{name}:v1"
    containerd.pull(ref)

    assert ref in containerd.image_refs()
    assert index_digest in containerd.ctr("images", "ls")
    content = containerd.content_digests()
    # The index and the host platform's image were fetched; the other platform's were not.
    for digest in [index_digest, host_manifest, host_config, *host_layers]:
        assert digest in content, digest
        assert _content_bytes(containerd, digest) == _layout_blob(layout, digest), digest
    for digest in [other_manifest, other_config, *set(other_layers) - set(host_layers)]:
        assert digest not in content, digest

    requests = _assert_every_request_has_ns(dockyard, f"library/{name}", pushed)
    paths = _paths(requests)
    assert f"/v2/library/{name}/manifests/v1" in paths
    assert f"/v2/library/{name}/manifests/{host_manifest}" in _paths(requests, "GET")
    assert f"/v2/library/{name}/manifests/{other_manifest}" not in paths
    assert all(e["status"] in (200, 307) for e in requests), requests


def test_cri_pull_image_lands_in_k8s_io_namespace(
    tmp_path: Path, dockyard: DockyardServer, containerd: Containerd
) -> None:
    name = _image_name()
    layout = tmp_path / "oci"
    build_image(layout, "v1", arch=HOST_ARCH)
    _skopeo_push(layout, "v1", f"{dockyard.host}/library/{name}:v1")
    manifest_digest = str(_layout_descriptor(layout, "v1")["digest"])
    config_digest, layer_digests = _image_blobs(layout, manifest_digest)

    _mirror_docker_io(containerd, dockyard)
    ref = f"docker.io/library/{name}:v1"
    # What the kubelet sends for `image: <name>:v1` in a pod spec.
    image_id = cri.pull_image(containerd.socket, ref)

    # The CRI image ID is the config digest.
    assert image_id == config_digest
    refs = containerd.image_refs(namespace="k8s.io")
    assert ref in refs
    assert f"docker.io/library/{name}@{manifest_digest}" in refs
    assert ref not in containerd.image_refs(namespace="default")
    status = cri.image_status(containerd.socket, ref)
    assert status is not None
    assert status.id == config_digest
    assert ref in status.repo_tags
    assert f"docker.io/library/{name}@{manifest_digest}" in status.repo_digests
    for digest in [manifest_digest, config_digest, *layer_digests]:
        content = _content_bytes(containerd, digest, namespace="k8s.io")
        assert content == _layout_blob(layout, digest), digest

    requests = _assert_every_request_has_ns(dockyard, f"library/{name}", pushed)
    assert f"/v2/library/{name}/manifests/v1" in _paths(requests)
    for digest in [config_digest, *layer_digests]:
        assert f"/v2/library/{name}/blobs/{digest}" in _paths(requests, "GET")


def test_pull_of_unknown_tag_fails_without_leaving_loopback(
    dockyard: DockyardServer, containerd: Containerd
) -> None:
    """A tag Dockyard does not have: containerd asks Dockyard (with ns), then the dead server."""
    name = _image_name()
    _mirror_docker_io(containerd, dockyard)
    with pytest.raises(AssertionError) as failure:
        containerd.pull(f"docker.io/library/{name}:missing", timeout=60)
    assert "not found" in str(failure.value) or "connection refused" in str(failure.value)
    requests = _assert_every_request_has_ns(dockyard, f"library/{name}", pushed)
    assert {e["status"] for e in requests} == {404}, requests
