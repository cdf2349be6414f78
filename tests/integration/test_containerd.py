"""containerd pulling through Dockyard exactly the way K3s configures it.

A private containerd (own root, state and socket under `tmp_path`) reads a `certs.d`
directory in which `docker.io/hosts.toml` names Dockyard as the only mirror and a dead
loopback port as the upstream `server`, so a pull can only succeed through Dockyard and can
never reach a real registry. Clients: `ctr images pull --hosts-dir` (an OCI image, a
two-platform OCI index, a Docker manifest list pinned by digest, `_default/hosts.toml` for
any registry), `ctr images push` (containerd's own pusher) and the kubelet's CRI
`PullImage` call over the socket (images land in the `k8s.io` namespace). Every request
containerd sends to a mirror must carry `?ns=<registry>` — checked in Dockyard's access
log, one JSON line per request with the query string in `path`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.support import cri
from tests.integration.support.containerd import Containerd, dead_endpoint
from tests.integration.support.images import add_index, build_image, run
from tests.integration.support.server import DockyardServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
HOST_ARCH = _GOARCH.get(platform.machine(), platform.machine())
OTHER_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"

MANIFEST_TYPES = [
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
]


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


def _mirror_docker_io(
    containerd: Containerd, dockyard: DockyardServer, registry: str = "docker.io"
) -> str:
    """`certs.d/<registry>/hosts.toml` as K3s writes it for `mirrors: docker.io: [dockyard]`.

    Returns the upstream `server` URL: a loopback port nothing listens on.
    """
    server = dead_endpoint()
    hosts = containerd.write_hosts(registry, [f"{dockyard.url}/v2"], server=server)
    text = hosts.read_text()
    assert f'[host."http://{dockyard.host}/v2"]' in text
    assert f'server = "{server}"' in text
    return server


def _image_name() -> str:
    return f"dy-{uuid.uuid4().hex[:10]}"


def _skopeo_push(
    layout: Path, tag: str, dest: str, all_images: bool = False, docker_v2s2: bool = False
) -> str:
    """skopeo copy from the OCI layout to Dockyard; returns the pushed manifest's digest."""
    digest_file = layout.parent / f"pushed-{uuid.uuid4().hex}.digest"
    args = ["skopeo", "copy", "--dest-tls-verify=false", f"--digestfile={digest_file}"]
    if all_images:
        args.append("--all")
    if docker_v2s2:
        args.append("--format=v2s2")
    run(*args, f"oci:{layout}:{tag}", f"docker://{dest}")
    return digest_file.read_text().strip()


def _add_layer(layout: Path, tag: str, files: dict[str, bytes]) -> None:
    """Stack one more layer holding `files` onto the image `tag` of the layout."""
    bundle = layout.parent / f"bundle-{uuid.uuid4().hex}"
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:{tag}", bundle)
    for name, content in files.items():
        (bundle / "rootfs" / name).write_bytes(content)
    run("umoci", "repack", "--image", f"{layout}:{tag}", bundle)
    subprocess.run(["rm", "-rf", str(bundle)], check=True)


def _registry_json(dockyard: DockyardServer, ref: str) -> dict[str, object]:
    raw = run("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{dockyard.host}/{ref}")
    value: dict[str, object] = json.loads(raw)
    return value


def _registry_blob(dockyard: DockyardServer, repo: str, digest: str) -> bytes:
    with urllib.request.urlopen(f"{dockyard.url}/v2/{repo}/blobs/{digest}", timeout=30) as r:
        data: bytes = r.read()
        return data


def _manifest_bytes(dockyard: DockyardServer, repo: str, digest: str) -> bytes:
    request = urllib.request.Request(
        f"{dockyard.url}/v2/{repo}/manifests/{digest}",
        headers={"Accept": ", ".join(MANIFEST_TYPES)},
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        data: bytes = r.read()
        return data


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
            for e in server.requests()
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


def _pushed_image(
    tmp_path: Path, dockyard: DockyardServer
) -> tuple[str, Path, str, str, list[str]]:
    """A host-arch image pushed to Dockyard as library/<name>:v1 with skopeo: its name,
    OCI layout, manifest digest, config digest and layer digests."""
    name = _image_name()
    layout = tmp_path / "oci"
    build_image(layout, "v1", arch=HOST_ARCH)
    _skopeo_push(layout, "v1", f"{dockyard.host}/library/{name}:v1")
    manifest_digest = str(_layout_descriptor(layout, "v1")["digest"])
    config_digest, layer_digests = _image_blobs(layout, manifest_digest)
    return name, layout, manifest_digest, config_digest, layer_digests


def test_ctr_pull_docker_io_through_k3s_mirror(
    tmp_path: Path, dockyard: DockyardServer, containerd: Containerd
) -> None:
    name, layout, manifest_digest, config_digest, layer_digests = _pushed_image(tmp_path, dockyard)

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

    repo = f"/v2/library/{name}"
    requests = _containerd_requests(
        dockyard,
        f"library/{name}",
        [
            ("HEAD", f"{repo}/manifests/v1"),
            ("GET", f"{repo}/manifests/{manifest_digest}"),
            *[("GET", f"{repo}/blobs/{d}") for d in [config_digest, *layer_digests]],
        ],
    )
    _assert_every_request_has_ns(requests)
    assert {e["status"] for e in requests} == {200}, requests


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

    repo = f"/v2/library/{name}"
    requests = _containerd_requests(
        dockyard,
        f"library/{name}",
        [
            ("HEAD", f"{repo}/manifests/v1"),
            ("GET", f"{repo}/manifests/{index_digest}"),
            ("GET", f"{repo}/manifests/{host_manifest}"),
            *[("GET", f"{repo}/blobs/{d}") for d in [host_config, *host_layers]],
        ],
    )
    _assert_every_request_has_ns(requests)
    assert {e["status"] for e in requests} == {200}, requests
    fetched = {str(e["path"]).partition("?")[0] for e in requests}
    assert f"{repo}/manifests/{other_manifest}" not in fetched
    assert f"{repo}/blobs/{other_config}" not in fetched


def test_cri_pull_image_lands_in_k8s_io_namespace(
    tmp_path: Path, dockyard: DockyardServer, containerd: Containerd
) -> None:
    name, layout, manifest_digest, config_digest, layer_digests = _pushed_image(tmp_path, dockyard)

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

    repo = f"/v2/library/{name}"
    requests = _containerd_requests(
        dockyard,
        f"library/{name}",
        [
            ("HEAD", f"{repo}/manifests/v1"),
            ("GET", f"{repo}/manifests/{manifest_digest}"),
            *[("GET", f"{repo}/blobs/{d}") for d in [config_digest, *layer_digests]],
        ],
    )
    _assert_every_request_has_ns(requests)
    assert {e["status"] for e in requests} == {200}, requests


def test_pull_of_unknown_tag_fails_without_leaving_loopback(
    dockyard: DockyardServer, containerd: Containerd
) -> None:
    """A tag Dockyard does not have: containerd asks Dockyard (with ns), then the dead server."""
    name = _image_name()
    server = _mirror_docker_io(containerd, dockyard)
    with pytest.raises(AssertionError) as failure:
        containerd.pull(f"docker.io/library/{name}:missing", timeout=60)
    message = str(failure.value)
    # Dockyard answered 404 at once, so containerd moved on to `server`: the dead port.
    assert f'response was http.StatusNotFound" host="{dockyard.host}"' in message, message
    dead = server.removeprefix("http://").removesuffix("/v2")
    assert f"dial tcp {dead}: connect: connection refused" in message, message
    requests = _containerd_requests(
        dockyard, f"library/{name}", [("HEAD", f"/v2/library/{name}/manifests/missing")]
    )
    _assert_every_request_has_ns(requests)
    assert {e["status"] for e in requests} == {404}, requests


def test_ctr_pull_docker_manifest_list_by_digest(
    tmp_path: Path, dockyard: DockyardServer, containerd: Containerd
) -> None:
    """Docker Hub's usual shape: a schema-2 manifest list, pinned by digest, several layers."""
    name = _image_name()
    repo = f"library/{name}"
    layout = tmp_path / "oci"
    build_image(layout, HOST_ARCH, arch=HOST_ARCH)
    # A second, larger layer (8 MiB of random bytes) on the host platform's image.
    _add_layer(layout, HOST_ARCH, {"big.bin": os.urandom(8 * 1024 * 1024)})
    build_image(layout, OTHER_ARCH, arch=OTHER_ARCH)
    add_index(layout, "v1", {HOST_ARCH: HOST_ARCH, OTHER_ARCH: OTHER_ARCH})
    list_digest = _skopeo_push(
        layout, "v1", f"{dockyard.host}/{repo}:v1", all_images=True, docker_v2s2=True
    )
    manifest_list = _registry_json(dockyard, f"{repo}@{list_digest}")
    assert manifest_list["mediaType"] == MANIFEST_TYPES[1]
    entries = manifest_list["manifests"]
    assert isinstance(entries, list)
    by_arch = {e["platform"]["architecture"]: str(e["digest"]) for e in entries}
    host_manifest = _registry_json(dockyard, f"{repo}@{by_arch[HOST_ARCH]}")
    assert host_manifest["mediaType"] == MANIFEST_TYPES[0]
    config = host_manifest["config"]
    layers = host_manifest["layers"]
    assert isinstance(config, dict)
    assert isinstance(layers, list)
    host_blobs = [str(config["digest"]), *[str(layer["digest"]) for layer in layers]]
    assert len(layers) == 2

    _mirror_docker_io(containerd, dockyard)
    ref = f"docker.io/{repo}@{list_digest}"
    containerd.pull(ref)

    assert ref in containerd.image_refs()
    content = containerd.content_digests()
    assert by_arch[OTHER_ARCH] not in content
    for digest in [list_digest, by_arch[HOST_ARCH]]:
        stored = _content_bytes(containerd, digest)
        assert stored == _manifest_bytes(dockyard, repo, digest), digest
        assert "sha256:" + hashlib.sha256(stored).hexdigest() == digest
    for digest in host_blobs:
        assert _content_bytes(containerd, digest) == _registry_blob(dockyard, repo, digest)

    path = f"/v2/{repo}"
    requests = _containerd_requests(
        dockyard,
        repo,
        [
            ("GET", f"{path}/manifests/{list_digest}"),
            ("GET", f"{path}/manifests/{by_arch[HOST_ARCH]}"),
            *[("GET", f"{path}/blobs/{d}") for d in host_blobs],
        ],
    )
    _assert_every_request_has_ns(requests)
    assert {e["status"] for e in requests} == {200}, requests


def test_cri_pull_short_name_and_organisation_repo(
    tmp_path: Path, dockyard: DockyardServer, containerd: Containerd
) -> None:
    """Pod specs say `name:v1` or `org/name:v1`; CRI normalises both to docker.io."""
    name = _image_name()
    layout = tmp_path / "oci"
    build_image(layout, "v1", arch=HOST_ARCH)
    library_digest = _skopeo_push(layout, "v1", f"{dockyard.host}/library/{name}:v1")
    org_digest = _skopeo_push(layout, "v1", f"{dockyard.host}/someorg/{name}:v1")
    assert library_digest == org_digest
    config_digest, _ = _image_blobs(layout, library_digest)

    _mirror_docker_io(containerd, dockyard)
    assert cri.pull_image(containerd.socket, f"{name}:v1") == config_digest
    assert cri.pull_image(containerd.socket, f"someorg/{name}:v1") == config_digest

    refs = containerd.image_refs(namespace="k8s.io")
    assert f"docker.io/library/{name}:v1" in refs
    assert f"docker.io/someorg/{name}:v1" in refs
    for repo in (f"library/{name}", f"someorg/{name}"):
        requests = _containerd_requests(dockyard, repo, [("HEAD", f"/v2/{repo}/manifests/v1")])
        _assert_every_request_has_ns(requests)
        assert {e["status"] for e in requests} == {200}, requests


def test_default_hosts_toml_mirrors_any_registry(
    tmp_path: Path, dockyard: DockyardServer, containerd: Containerd
) -> None:
    """K3s `mirrors: "*"` writes `certs.d/_default/hosts.toml`; the ns names the registry."""
    name = _image_name()
    layout = tmp_path / "oci"
    build_image(layout, "v1", arch=HOST_ARCH)
    manifest_digest = _skopeo_push(layout, "v1", f"{dockyard.host}/team/{name}:v1")
    _mirror_docker_io(containerd, dockyard, registry="_default")

    for registry in ("quay.io", "ghcr.io"):
        ref = f"{registry}/team/{name}:v1"
        containerd.pull(ref)
        assert ref in containerd.image_refs()
        assert manifest_digest in containerd.ctr("images", "ls")

    requests = _containerd_requests(
        dockyard, f"team/{name}", [("HEAD", f"/v2/team/{name}/manifests/v1")]
    )
    namespaces = sorted(
        q
        for e in requests
        for q in str(e["path"]).partition("?")[2].split("&")
        if q.startswith("ns=")
    )
    assert len(namespaces) == len(requests), requests
    assert set(namespaces) == {"ns=quay.io", "ns=ghcr.io"}, requests
    assert {e["status"] for e in requests} == {200}, requests


def test_ctr_push_to_dockyard_and_pull_back(
    tmp_path: Path, dockyard: DockyardServer, containerd: Containerd
) -> None:
    """containerd's own pusher (`ctr images push`): blob HEADs, uploads, the manifest PUT;
    a second repository on the same registry, then a pull of what containerd pushed."""
    name, layout, manifest_digest, config_digest, layer_digests = _pushed_image(tmp_path, dockyard)
    _mirror_docker_io(containerd, dockyard)
    source = f"docker.io/library/{name}:v1"
    containerd.pull(source)

    targets = [f"{dockyard.host}/pushed/{name}:v2", f"{dockyard.host}/pushed/{name}-copy:v3"]
    for target in targets:
        containerd.ctr("images", "tag", source, target)
        containerd.ctr("images", "push", "--plain-http", target)
        repo = target.partition("/")[2].rpartition(":")[0]
        tag = target.rpartition(":")[2]
        with urllib.request.urlopen(
            urllib.request.Request(
                f"{dockyard.url}/v2/{repo}/manifests/{tag}",
                headers={"Accept": ", ".join(MANIFEST_TYPES)},
            ),
            timeout=10,
        ) as response:
            assert response.headers["Docker-Content-Digest"] == manifest_digest
            assert response.read() == _layout_blob(layout, manifest_digest)
        for digest in [config_digest, *layer_digests]:
            with urllib.request.urlopen(f"{dockyard.url}/v2/{repo}/blobs/{digest}") as r:
                assert r.read() == _layout_blob(layout, digest), digest
    pushes = [
        e
        for e in dockyard.requests()
        if str(e.get("user_agent", "")).startswith("containerd/")
        and str(e["path"]).startswith("/v2/pushed/")
        and e["method"] in ("POST", "PUT", "PATCH")
    ]
    assert pushes and all(int(str(e["status"])) in (201, 202) for e in pushes), pushes

    # What containerd pushed pulls back into a second containerd, one without the content.
    second = Containerd(tmp_path / "ctd2")
    second.write_config()
    second.start()
    try:
        second.pull(targets[1], "--plain-http")
        for digest in layer_digests:
            assert _content_bytes(second, digest) == _layout_blob(layout, digest)
    finally:
        second.stop()
    _containerd_requests(
        dockyard,
        f"pushed/{name}-copy",
        [("GET", f"/v2/pushed/{name}-copy/blobs/{d}") for d in layer_digests],
    )
