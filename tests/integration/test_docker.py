"""The Docker client and daemon (Debian's docker.io 20.10) against a real `dockyard serve`.

Every test starts a private `dockerd` (own data root, exec root, socket and managed
containerd, overlay2 inside its own mount namespace, no bridge and no iptables; see
`support/docker.py`) and stops it by PID. Images are made offline: umoci builds an OCI
layout, skopeo turns it into a docker-archive, `docker load` reads it. Docker treats
127.0.0.0/8 as an insecure registry, so it speaks plain HTTP to Dockyard on loopback.

- `docker push`: the manifest Dockyard stores (asked for as Docker schema 2) is the one
  whose digest docker reported, its config is the image docker holds, and every layer
  unpacks to the diff ID docker recorded.
- `docker rmi` then `docker pull` by tag and by digest brings back the same image (same
  ID, RepoDigests, layers and files); a tag that does not exist fails with 404.
- Docker's upload path (POST, one streamed PATCH, PUT ?digest=) and, pushing the same image
  into a second repository, its cross-repository mounts (`POST ?mount=&from=`, 201), read
  from Dockyard's access log; pushed again, every blob is found by HEAD and none is sent.
- `dockerd --registry-mirror`: `docker pull <name>:v1` of a Docker Hub name goes through a
  Dockyard that caches docker.io from a Distribution upstream. In the private network
  namespace docker's fallback to the real Docker Hub cannot work, so a successful pull
  proves the mirror path; the image is then served from the cache with the upstream gone.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import IO, Any, NamedTuple
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.integration.support.docker import DockerCommandError, DockerDaemon
from tests.integration.support.images import add_index, build_image, run
from tests.integration.support.server import DistributionServer, DockyardServer
from tests.integration.support.upstreams import (
    cache_config,
    count_requests,
    skopeo_push_layout,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
HOST_ARCH = _GOARCH.get(platform.machine(), platform.machine())
OTHER_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"

StartDocker = Callable[..., DockerDaemon]


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def start_docker(tmp_path: Path) -> Iterator[StartDocker]:
    """Start private Docker daemons; every one is stopped (by PID) at the end of the test."""
    started: list[DockerDaemon] = []

    def start(name: str = "docker", mirrors: list[str] | None = None) -> DockerDaemon:
        daemon = DockerDaemon(tmp_path / name, mirrors=mirrors)
        started.append(daemon)
        return daemon.start()

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def docker(start_docker: StartDocker) -> DockerDaemon:
    return start_docker()


# --- helpers -------------------------------------------------------------------------------


class Pushed(NamedTuple):
    digest: str  # as `docker push` reported it
    size: int
    output: str


class Request(NamedTuple):
    """One line of Dockyard's access log."""

    method: str
    path: str  # without the query string
    query: dict[str, str]
    status: int


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_layout(
    workdir: Path, tag: str, arch: str = HOST_ARCH, big: int = 0
) -> tuple[Path, dict[str, str]]:
    """An OCI layout whose image `tag` has two layers of files unique to this run; the
    second also holds `big` random bytes (`big.bin`). Returns the layout and the text files."""
    layout = workdir / "oci"
    token = uuid.uuid4().hex
    first = {"hello.txt": f"hello {token} {arch}\n"}
    second = {"second.txt": f"second layer {token} {arch}\n"}
    build_image(layout, tag, arch=arch, files=first)
    bundle = workdir / f"bundle-{token}"
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:{tag}", bundle)
    for name, content in second.items():
        (bundle / "rootfs" / name).write_text(content)
    if big:
        (bundle / "rootfs" / "big.bin").write_bytes(os.urandom(big))
    run("umoci", "repack", "--image", f"{layout}:{tag}", bundle)
    shutil.rmtree(bundle)
    return layout, {**first, **second}


def load_image(docker: DockerDaemon, workdir: Path, name: str, big: int = 0) -> dict[str, str]:
    """`docker load` a two-layer image as `name`, made offline; returns its text files."""
    workdir.mkdir(parents=True, exist_ok=True)
    layout, files = build_layout(workdir, "v1", big=big)
    archive = workdir / "image.tar"
    run("skopeo", "copy", f"oci:{layout}:v1", f"docker-archive:{archive}:{name}")
    output = docker.docker("load", "--input", archive)
    assert f"Loaded image: {name}" in output, output
    return files


def push(docker: DockerDaemon, image: str, server: DockyardServer, repo: str) -> Pushed:
    """`docker tag image <server>/<repo>:v1` and `docker push` it."""
    ref = f"{server.host}/{repo}:v1"
    docker.docker("tag", image, ref)
    output = docker.docker("push", ref)
    match = re.search(r"^v1: digest: (sha256:[0-9a-f]{64}) size: (\d+)$", output, re.M)
    assert match, f"no digest line in the output of docker push:\n{output}"
    return Pushed(match.group(1), int(match.group(2)), output)


def http(url: str, accept: str = "*/*", method: str = "GET") -> tuple[int, Message, bytes]:
    """(status, headers, body) of one request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, method=method, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def stored_manifest(server: DockyardServer, repo: str, reference: str) -> tuple[Message, bytes]:
    """The manifest Dockyard serves when asked for Docker schema 2 only."""
    url = f"{server.url}/v2/{repo}/manifests/{reference}"
    status, headers, body = http(url, accept=DOCKER_MANIFEST)
    assert status == 200, (url, status, body[:500])
    return headers, body


def stored_blob(server: DockyardServer, repo: str, digest: str) -> bytes:
    status, _headers, body = http(f"{server.url}/v2/{repo}/blobs/{digest}")
    assert status == 200, (repo, digest, status, body[:500])
    assert sha256(body) == digest, f"blob {digest} in {repo}: the bytes do not match"
    return body


def access_log(server: DockyardServer, repo: str) -> list[Request]:
    """Dockyard's access log for one repository, in order."""
    entries = []
    for entry in server.requests():
        split = urlsplit(entry["path"])
        if split.path.startswith(f"/v2/{repo}/"):
            query = {k: v[0] for k, v in parse_qs(split.query).items()}
            entries.append(Request(entry["method"], split.path, query, entry["status"]))
    return entries


def saved_files(docker: DockerDaemon, ref: str, names: set[str]) -> dict[str, str]:
    """The files `names` as found in the layers of `docker save ref`."""
    found: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(docker.docker_bytes("save", ref))) as archive:
        manifest = json.load(_member(archive, "manifest.json"))
        for layer_path in manifest[0]["Layers"]:
            with tarfile.open(fileobj=_member(archive, layer_path)) as layer:
                for member in layer.getmembers():
                    name = member.name.removeprefix("./")
                    if name in names and member.isfile():
                        found[name] = _member(layer, member.name).read().decode()
    return found


def _member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    extracted = archive.extractfile(name)
    assert extracted is not None, name
    return extracted


def assert_same_image(before: dict[str, Any], after: dict[str, Any]) -> None:
    assert after["Id"] == before["Id"]
    assert after["RootFS"] == before["RootFS"]
    assert after["Config"]["Cmd"] == before["Config"]["Cmd"]
    assert (after["Os"], after["Architecture"]) == (before["Os"], before["Architecture"])


def layout_config_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    for desc in index["manifests"]:
        if (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            algorithm, hexdigest = desc["digest"].split(":", 1)
            manifest = json.loads((layout / "blobs" / algorithm / hexdigest).read_text())
            return str(manifest["config"]["digest"])
    raise KeyError(tag)


# --- 1. docker push ------------------------------------------------------------------------


def test_push_stores_the_manifest_docker_reported(
    docker: DockerDaemon, dockyard: DockyardServer, tmp_path: Path
) -> None:
    load_image(docker, tmp_path / "image", "local/app:v1")
    image = docker.inspect("local/app:v1")
    repo = "docker/push"
    pushed = push(docker, "local/app:v1", dockyard, repo)

    # What Dockyard serves for the tag, asked for Docker schema 2, is what docker pushed.
    headers, body = stored_manifest(dockyard, repo, "v1")
    assert headers["Content-Type"] == DOCKER_MANIFEST
    assert headers["Docker-Content-Digest"] == pushed.digest
    assert sha256(body) == pushed.digest and len(body) == pushed.size
    assert stored_manifest(dockyard, repo, pushed.digest)[1] == body
    status, head, _ = http(f"{dockyard.url}/v2/{repo}/manifests/v1", DOCKER_MANIFEST, "HEAD")
    assert status == 200 and head["Docker-Content-Digest"] == pushed.digest
    assert int(head["Content-Length"]) == pushed.size
    pushed_ref = docker.inspect(f"{dockyard.host}/{repo}:v1")
    assert pushed_ref["RepoDigests"] == [f"{dockyard.host}/{repo}@{pushed.digest}"]

    # Its config is the image docker holds, and each layer unpacks to docker's diff ID.
    manifest = json.loads(body)
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert manifest["config"]["digest"] == image["Id"]
    config = stored_blob(dockyard, repo, image["Id"])
    assert len(config) == manifest["config"]["size"]
    assert json.loads(config)["rootfs"]["diff_ids"] == image["RootFS"]["Layers"]
    assert len(manifest["layers"]) == len(image["RootFS"]["Layers"]) == 2
    for descriptor, diff_id in zip(manifest["layers"], image["RootFS"]["Layers"], strict=True):
        assert descriptor["mediaType"] == DOCKER_LAYER
        blob = stored_blob(dockyard, repo, descriptor["digest"])
        assert len(blob) == descriptor["size"]
        assert sha256(gzip.decompress(blob)) == diff_id


# --- 2. docker rmi, docker pull ------------------------------------------------------------


def test_pull_back_by_tag_and_by_digest(
    docker: DockerDaemon, dockyard: DockyardServer, tmp_path: Path
) -> None:
    files = load_image(docker, tmp_path / "image", "local/app:v1")
    repo = "docker/pull"
    ref = f"{dockyard.host}/{repo}:v1"
    pushed = push(docker, "local/app:v1", dockyard, repo)
    by_digest = f"{dockyard.host}/{repo}@{pushed.digest}"
    before = docker.inspect(ref)

    docker.docker("rmi", "local/app:v1", ref)
    assert not docker.has_image(before["Id"]), "the image must be gone before the pull"
    output = docker.docker("pull", ref)
    assert f"Digest: {pushed.digest}" in output, output
    after = docker.inspect(ref)
    assert_same_image(before, after)
    assert after["RepoTags"] == [ref] and after["RepoDigests"] == [by_digest]
    assert saved_files(docker, ref, set(files)) == files

    docker.docker("rmi", ref)
    assert not docker.has_image(before["Id"])
    output = docker.docker("pull", by_digest)
    assert f"Digest: {pushed.digest}" in output, output
    again = docker.inspect(by_digest)
    assert_same_image(before, again)
    assert again["RepoTags"] == [] and again["RepoDigests"] == [by_digest]
    assert saved_files(docker, by_digest, set(files)) == files

    # Each pull fetched the manifest and every blob from Dockyard.
    log = access_log(dockyard, repo)
    manifest = json.loads(stored_manifest(dockyard, repo, pushed.digest)[1])
    for descriptor in [manifest["config"], *manifest["layers"]]:
        path = f"/v2/{repo}/blobs/{descriptor['digest']}"
        assert [r.status for r in log if (r.method, r.path) == ("GET", path)] == [200, 200], log


def test_pull_of_a_missing_tag_fails(docker: DockerDaemon, dockyard: DockyardServer) -> None:
    repo = "docker/nothing"
    with pytest.raises(DockerCommandError) as failed:
        docker.docker("pull", f"{dockyard.host}/{repo}:v1")
    assert "manifest unknown" in failed.value.stderr, failed.value.stderr
    log = access_log(dockyard, repo)
    assert log and {(r.path, r.status) for r in log} == {(f"/v2/{repo}/manifests/v1", 404)}, log


# --- 3. docker's upload path, and cross-repository mounts ----------------------------------


def test_second_repository_push_mounts_the_layers(
    docker: DockerDaemon, dockyard: DockyardServer, tmp_path: Path
) -> None:
    # A 4 MiB layer of random bytes: docker streams it in one PATCH of many chunks.
    load_image(docker, tmp_path / "image", "local/app:v1", big=4 << 20)
    first, second = "docker/first", "docker/second"
    pushed = push(docker, "local/app:v1", dockyard, first)
    manifest = json.loads(stored_manifest(dockyard, first, pushed.digest)[1])
    config = manifest["config"]["digest"]
    layers = [d["digest"] for d in manifest["layers"]]
    assert max(d["size"] for d in manifest["layers"]) > 4 << 20

    # Docker's upload of each blob: POST, one PATCH to the upload's location, PUT ?digest=.
    log = access_log(dockyard, first)
    assert [r.status for r in log if r.method == "POST"] == [202] * 3, log
    for blob in [config, *layers]:
        puts = [r for r in log if r.method == "PUT" and r.query.get("digest") == blob]
        assert [r.status for r in puts] == [201], log
        patches = [r for r in log if (r.method, r.path) == ("PATCH", puts[0].path)]
        assert [r.status for r in patches] == [202], log
        assert log.index(patches[0]) < log.index(puts[0]), log

    # The same image into a second repository: docker mounts each layer from the first,
    # and Dockyard answers 201 Created (no upload session, nothing sent again).
    again = push(docker, "local/app:v1", dockyard, second)
    assert again.digest == pushed.digest
    assert again.output.count(f"Mounted from {first}") == len(layers), again.output
    log = access_log(dockyard, second)
    for layer in layers:
        mounts = [r for r in log if r.method == "POST" and r.query.get("mount") == layer]
        assert mounts == [
            Request("POST", f"/v2/{second}/blobs/uploads/", {"mount": layer, "from": first}, 201)
        ], log
        assert not [r for r in log if r.method == "PUT" and r.query.get("digest") == layer], log
        stored_blob(dockyard, second, layer)
    assert stored_manifest(dockyard, second, "v1")[1] == stored_manifest(dockyard, first, "v1")[1]

    # Pushed once more, docker finds every blob there already (HEAD 200) and uploads none.
    before = len(access_log(dockyard, first))
    repeat = push(docker, "local/app:v1", dockyard, first)
    assert repeat.digest == pushed.digest
    assert repeat.output.count("Layer already exists") == len(layers), repeat.output
    new = access_log(dockyard, first)[before:]
    assert not [r for r in new if r.method in ("POST", "PATCH")], new
    assert [r for r in new if r.method == "HEAD" and r.path.endswith(tuple(layers))], new


# --- 4. dockerd --registry-mirror through the pull-through cache ---------------------------


def test_registry_mirror_pulls_docker_hub_names_through_the_cache(
    start_docker: StartDocker,
    dockyard_factory: Callable[..., DockyardServer],
    distribution_factory: Callable[..., DistributionServer],
    tmp_path: Path,
) -> None:
    # Docker Hub's stand-in holds library/<name>:v1, a two-platform OCI index.
    hub = distribution_factory("hub")
    name = f"dy-{uuid.uuid4().hex[:10]}"
    workdir = tmp_path / "image"
    workdir.mkdir()
    layout, files = build_layout(workdir, "host")
    build_image(layout, "other", arch=OTHER_ARCH)
    add_index(layout, "v1", {HOST_ARCH: "host", OTHER_ARCH: "other"})
    index_digest = skopeo_push_layout(
        layout, "v1", f"{hub.host}/library/{name}:v1", flags=("--all",)
    )
    config = layout_config_digest(layout, "host")

    # Docker's mirror requests carry neither `?ns=` nor a registry prefix, so docker.io must
    # be the cache's default upstream (`proxy.default`); its entry in `upstreams` says where
    # its content comes from (the stand-in).
    cache_yml = cache_config(
        tmp_path / "cache.yml",
        [{"name": "docker.io", "url": hub.url}],
        proxy={"default": "docker.io"},
    )
    cache = dockyard_factory("cache", config=cache_yml)
    docker = start_docker(mirrors=[cache.url])

    output = docker.docker("pull", f"{name}:v1")
    assert f"Digest: {index_digest}" in output, output
    image = docker.inspect(f"{name}:v1")
    assert image["Id"] == config and image["Architecture"] == HOST_ARCH
    assert image["RepoTags"] == [f"{name}:v1"]
    assert image["RepoDigests"] == [f"{name}@{index_digest}"]
    assert saved_files(docker, f"{name}:v1", set(files)) == files

    # Docker asked the mirror for library/<name>; Dockyard fetched it from the upstream once.
    log = access_log(cache, f"library/{name}")
    tag_path = f"/v2/library/{name}/manifests/v1"
    assert [r for r in log if r.path == tag_path and r.status == 200], log
    assert Request("GET", f"/v2/library/{name}/manifests/{index_digest}", {}, 200) in log, log
    assert Request("GET", f"/v2/library/{name}/blobs/{config}", {}, 200) in log, log
    assert count_requests(hub.log(), "GET", tag_path, 200) == 1, hub.log()[-3000:]
    assert count_requests(hub.log(), "GET", f"/v2/library/{name}/blobs/{config}", 200) == 1

    # With the upstream gone, the image comes back from Dockyard's cache.
    hub.stop()
    docker.docker("rmi", f"{name}:v1")
    assert not docker.has_image(config)
    output = docker.docker("pull", f"{name}:v1")
    assert f"Digest: {index_digest}" in output, output
    assert_same_image(image, docker.inspect(f"{name}:v1"))
