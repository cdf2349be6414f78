"""The pull-through cache end to end: real clients, real upstreams, real failures.

Every upstream is a Debian `docker-registry` (CNCF Distribution 2.8) on loopback standing
in for docker.io, ghcr.io or quay.io; its access log tells which requests reached it. A few
stand-ins misbehave on purpose: a proxy that flips bytes in blob bodies, and a TCP server
that accepts connections and never answers. Clients: containerd (`ctr` and the kubelet's
CRI `PullImage`) configured the way K3s does, podman and skopeo through the path-prefix
form, and `requests` for exact HTTP checks.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.support import cri
from tests.integration.support.client import RegistryClient, error_codes
from tests.integration.support.containerd import Containerd
from tests.integration.support.images import build_image, run
from tests.integration.support.server import DistributionServer, DockyardServer, free_port
from tests.integration.support.upstreams import (
    MANIFEST_ACCEPT,
    CorruptingProxy,
    HangingServer,
    cache_config,
    count_requests,
    pull_image,
    push_image,
    sha256,
    skopeo_push_layout,
    unique,
    upstream_requests,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
HOST_ARCH = _GOARCH.get(platform.machine(), platform.machine())

StartCache = Callable[..., DockyardServer]


# --- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def start_cache(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> Iterator[StartCache]:
    """Start a Dockyard whose config lists `upstreams` (dicts as in config.yml)."""
    count = 0

    def start(upstreams: list[dict[str, Any]], **extra: Any) -> DockyardServer:
        nonlocal count
        count += 1
        config = cache_config(tmp_path / f"dockyard-{count}.yml", upstreams, **extra)
        return dockyard_factory(f"dockyard-{count}", config=config)

    yield start


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Containerd]:
    daemon = Containerd(tmp_path / "ctd")
    daemon.write_config()
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def runroot() -> Iterator[Path]:
    """A short run root: containers-storage refuses one longer than 50 characters."""
    with tempfile.TemporaryDirectory(prefix="dy-", dir="/tmp", ignore_cleanup_errors=True) as d:
        yield Path(d)


def upstream(name: str, server: DistributionServer | str, **settings: str) -> dict[str, Any]:
    url = server if isinstance(server, str) else server.url
    return {"name": name, "url": url, **settings}


def cached_blob_files(dockyard: DockyardServer, digest: str) -> list[Path]:
    """Files under the Dockyard root's blobs/ whose path names this digest."""
    hexdigest = digest.split(":", 1)[1]
    blobs = dockyard.root / "blobs"
    if not blobs.exists():
        return []
    return [p for p in blobs.rglob("*") if p.is_file() and hexdigest in str(p)]


def assert_oci_error(response: requests.Response, statuses: tuple[int, ...]) -> list[str]:
    assert response.status_code in statuses, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body.get("errors"), list) and body["errors"], body
    for entry in body["errors"]:
        assert isinstance(entry.get("code"), str) and entry["code"], body
        assert isinstance(entry.get("message"), str), body
    return error_codes(response)


def get(url: str, *, ns: str | None = None, timeout: float = 30, **kwargs: Any) -> Any:
    params = {"ns": ns} if ns else None
    headers = {"Accept": MANIFEST_ACCEPT}
    with requests.Session() as session:
        return session.get(url, params=params, headers=headers, timeout=timeout, **kwargs)


def timed_get(url: str, *, ns: str | None = None, timeout: float = 30) -> tuple[Any, float]:
    started = time.monotonic()
    response = get(url, ns=ns, timeout=timeout)
    return response, time.monotonic() - started


def layout_blobs(layout: Path, manifest_digest: str) -> list[str]:
    """Config and layer digests of a manifest in an OCI layout."""
    hexdigest = manifest_digest.split(":", 1)[1]
    manifest = json.loads((layout / "blobs" / "sha256" / hexdigest).read_bytes())
    return [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]


# --- 1. containerd and podman through one Dockyard for three registries ------------------


def test_containerd_pulls_three_registries_through_one_dockyard(
    tmp_path: Path, start_cache: StartCache, distribution_factory: Any, containerd: Containerd
) -> None:
    registries = {
        "docker.io": distribution_factory("hub"),
        "ghcr.io": distribution_factory("ghcr"),
        "quay.io": distribution_factory("quay"),
    }
    name = unique("app")
    remote_repos = {
        "docker.io": f"library/{name}",
        "ghcr.io": f"acme/{name}",
        "quay.io": f"team/{name}",
    }
    # Six distinct images: one for ctr and one for CRI on each registry.
    layout = tmp_path / "oci"
    images: dict[tuple[str, str], tuple[str, list[str]]] = {}
    for registry, dist in registries.items():
        for client in ("ctr", "cri"):
            tag = f"{registry.split('.')[0]}-{client}"
            build_image(layout, tag, arch=HOST_ARCH, files={"id.txt": f"{registry} {client}\n"})
            digest = skopeo_push_layout(
                layout, tag, f"{dist.host}/{remote_repos[registry]}:{client}"
            )
            images[(registry, client)] = (digest, layout_blobs(layout, digest))

    dockyard = start_cache([upstream(registry, dist) for registry, dist in registries.items()])
    mirror = [f"{dockyard.url}/v2"]
    # docker.io has its own hosts.toml; ghcr.io and quay.io fall back to _default.
    containerd.write_hosts("docker.io", mirror)
    containerd.write_hosts("_default", mirror)
    assert not (containerd.certs_d / "ghcr.io").exists()
    assert not (containerd.certs_d / "quay.io").exists()

    refs = {registry: f"{registry}/{remote_repos[registry]}" for registry in registries}
    for ref in refs.values():
        containerd.pull(f"{ref}:ctr")
    for ref in refs.values():
        cri.pull_image(containerd.socket, f"{ref}:cri")

    default_images = containerd.image_refs()
    k8s_images = containerd.image_refs(namespace="k8s.io")
    default_content = containerd.content_digests()
    k8s_content = containerd.content_digests(namespace="k8s.io")
    for registry, ref in refs.items():
        assert f"{ref}:ctr" in default_images
        assert f"{ref}:cri" in k8s_images
        status = cri.image_status(containerd.socket, f"{ref}:cri")
        assert status is not None and f"{ref}:cri" in status.repo_tags, status
        assert images[(registry, "ctr")][0] in default_content
        assert images[(registry, "cri")][0] in k8s_content

    # Each image's blobs came from its own upstream, and from no other.
    for (registry, client), (_digest, blobs) in images.items():
        dist = registries[registry]
        repo = remote_repos[registry]
        for blob in blobs:
            path = f"/v2/{repo}/blobs/{blob}"
            assert wait_for(lambda d=dist, p=path: count_requests(d.log(), "GET", p) == 1), (
                f"{registry} {client}: expected one GET {path} upstream\n{dist.log()[-3000:]}"
            )
        for other_registry, other in registries.items():
            if other_registry != registry:
                assert not [r for r in upstream_requests(other.log()) if repo in r.path], (
                    f"{other_registry} was asked for {repo}"
                )
    cached = {(e.get("upstream"), e.get("digest")) for e in dockyard.events("cached blob")}
    for (registry, _client), (_digest, blobs) in images.items():
        for blob in blobs:
            assert (registry, blob) in cached, (registry, blob)

    # containerd named the registry in ?ns= on every request it sent to Dockyard.
    for entry in dockyard.events("request"):
        if str(entry.get("user_agent", "")).startswith("containerd/"):
            path = str(entry["path"])
            registry = next(r for r, repo in remote_repos.items() if f"/v2/{repo}/" in path)
            assert f"ns={registry}" in path, entry


def test_podman_pulls_through_path_prefix(
    tmp_path: Path, start_cache: StartCache, distribution_factory: Any, runroot: Path
) -> None:
    hub = distribution_factory("hub")
    quay = distribution_factory("quay")
    name = unique("tool")
    layout = tmp_path / "oci"
    build_image(layout, "hub", arch=HOST_ARCH, files={"id.txt": "hub\n"})
    build_image(layout, "quay", arch=HOST_ARCH, files={"id.txt": "quay\n"})
    hub_digest = skopeo_push_layout(layout, "hub", f"{hub.host}/library/{name}:v1")
    quay_digest = skopeo_push_layout(layout, "quay", f"{quay.host}/org/{name}:v1")
    dockyard = start_cache([upstream("docker.io", hub), upstream("quay.io", quay)])

    def podman(*args: str | Path) -> str:
        return run(
            "podman",
            "--root",
            tmp_path / "podman-root",
            "--runroot",
            runroot,
            "--storage-driver",
            "vfs",
            *args,
            timeout=120,
        )

    # docker.io single-component names get library/ upstream.
    podman("pull", "--tls-verify=false", f"{dockyard.host}/docker.io/{name}:v1")
    podman("pull", "--tls-verify=false", f"{dockyard.host}/quay.io/org/{name}:v1")
    for ref, digest in (
        (f"{dockyard.host}/docker.io/{name}:v1", hub_digest),
        (f"{dockyard.host}/quay.io/org/{name}:v1", quay_digest),
    ):
        inspected = json.loads(podman("image", "inspect", ref))[0]
        assert inspected["Digest"] == digest, inspected

    for dist, repo, layout_tag, digest in (
        (hub, f"library/{name}", "hub", hub_digest),
        (quay, f"org/{name}", "quay", quay_digest),
    ):
        for blob in layout_blobs(layout, digest):
            path = f"/v2/{repo}/blobs/{blob}"
            assert wait_for(lambda d=dist, p=path: count_requests(d.log(), "GET", p) == 1), (
                layout_tag,
                path,
                dist.log()[-3000:],
            )
    assert not [r for r in upstream_requests(hub.log()) if "/org/" in r.path]
    assert not [r for r in upstream_requests(quay.log()) if "/library/" in r.path]


# --- 2. many clients, one upstream download -----------------------------------------------


def test_fifty_concurrent_pulls_make_one_upstream_request_per_blob(
    start_cache: StartCache, distribution_factory: Any
) -> None:
    hub = distribution_factory("hub")
    # A slow link: the big layer takes about a second to arrive, so every client joins
    # the download in flight and must be served while it streams.
    link = CorruptingProxy(hub.url, corrupt=False, chunk_delay=0.02).start()
    try:
        name = unique("busy")
        repo = f"library/{name}"
        image = push_image(hub.url, repo, "v1", layer_sizes=(3 << 20, 1 << 20, 65536))
        big = image.layer_digests[0]
        dockyard = start_cache([upstream("docker.io", link.url, tagttl="5m", timeout="20s")])
        clients = 50
        barrier = threading.Barrier(clients, timeout=30)

        def pull(_: int) -> tuple[str | None, str, dict[str, tuple[str, int]], float]:
            with requests.Session() as session:
                barrier.wait()
                r = session.get(
                    f"{dockyard.url}/v2/{name}/manifests/v1",
                    params={"ns": "docker.io"},
                    headers={"Accept": MANIFEST_ACCEPT},
                    timeout=60,
                )
                assert r.status_code == 200, (r.status_code, r.text)
                received: dict[str, tuple[str, int]] = {}
                first_byte = 0.0
                # The big layer first, so that all clients ask for it at once.
                for digest in [big, *(d for d in image.blob_digests if d != big)]:
                    with session.get(
                        f"{dockyard.url}/v2/{name}/blobs/{digest}",
                        params={"ns": "docker.io"},
                        timeout=60,
                        stream=True,
                    ) as b:
                        assert b.status_code == 200, (digest, b.status_code, b.text)
                        hasher = hashlib.sha256()
                        size = 0
                        for chunk in b.iter_content(65536):
                            if digest == big and not size:
                                first_byte = time.monotonic()
                            hasher.update(chunk)
                            size += len(chunk)
                    received[digest] = ("sha256:" + hasher.hexdigest(), size)
                header_digest = r.headers.get("Docker-Content-Digest")
                return header_digest, sha256(r.content), received, first_byte

        with ThreadPoolExecutor(max_workers=clients) as pool:
            results = list(pool.map(pull, range(clients), timeout=120))

        expected = {d: (sha256(b), len(b)) for d, b in image.blobs.items()}
        for header_digest, manifest_digest, received, _ in results:
            assert header_digest == image.digest
            assert manifest_digest == image.digest
            assert received == expected
        for digest in image.blob_digests:
            path = f"/v2/{repo}/blobs/{digest}"
            wait_for(lambda p=path: count_requests(hub.log(), "GET", p) >= 1)
            assert count_requests(hub.log(), "GET", path) == 1, upstream_requests(hub.log())
        tag_path = f"/v2/{repo}/manifests/v1"
        tag_requests = count_requests(hub.log(), "GET", tag_path)
        tag_requests += count_requests(hub.log(), "HEAD", tag_path)
        assert tag_requests == 1, upstream_requests(hub.log())
        assert len(dockyard.events("cached blob")) == len(image.blob_digests)
        # Clients got the big layer's first bytes while the upstream was still sending it.
        upstream_done = link.finished[f"/v2/{repo}/blobs/{big}"]
        early = [first for *_, first in results if first < upstream_done]
        assert len(early) >= clients // 2, (len(early), clients)
    finally:
        link.stop()


# --- 3. the upstream goes away --------------------------------------------------------------


def test_stopped_upstream_serves_cached_content_and_fails_fast_otherwise(
    tmp_path: Path, start_cache: StartCache, distribution_factory: Any
) -> None:
    hub = distribution_factory("hub")
    name = unique("steady")
    image = push_image(hub.url, f"library/{name}", "v1", layer_sizes=(4096, 8192))
    other = push_image(hub.url, f"library/{name}-never", "v1")
    dockyard = start_cache(
        [upstream("docker.io", hub, tagttl="1s", timeout="2s", connecttimeout="1s")]
    )
    first = pull_image(dockyard.url, name, "v1", ns="docker.io")
    assert first.status == 200 and first.digest == image.digest
    assert first.blobs == image.blobs

    hub.stop()
    time.sleep(1.5)  # past tagttl: the next pull by tag revalidates, and the upstream is gone

    by_tag = pull_image(dockyard.url, name, "v1", ns="docker.io")
    assert by_tag.status == 200, by_tag.manifest
    assert by_tag.digest == image.digest and by_tag.manifest == image.manifest
    assert by_tag.blobs == image.blobs
    by_digest = pull_image(dockyard.url, name, image.digest, ns="docker.io")
    assert by_digest.status == 200 and by_digest.manifest == image.manifest
    # containerd resolves a tag with HEAD first.
    time.sleep(1.1)
    with requests.Session() as http:
        head = http.head(
            f"{dockyard.url}/v2/{name}/manifests/v1",
            params={"ns": "docker.io"},
            headers={"Accept": MANIFEST_ACCEPT},
            timeout=30,
        )
    assert head.status_code == 200, head.status_code
    assert head.headers["Docker-Content-Digest"] == image.digest
    assert int(head.headers["Content-Length"]) == len(image.manifest)
    fallbacks = dockyard.events("upstream failed; serving the cached tag")
    assert len(fallbacks) >= 2, dockyard.log()[-3000:]
    assert fallbacks[-1].get("upstream") == "docker.io"

    # A real client through the path-prefix form, also past tagttl.
    time.sleep(1.1)
    run(
        "skopeo",
        "copy",
        "--src-tls-verify=false",
        f"docker://{dockyard.host}/docker.io/library/{name}:v1",
        f"oci:{tmp_path / 'copy'}:v1",
        timeout=60,
    )
    assert len(dockyard.events("upstream failed; serving the cached tag")) > len(fallbacks)
    run(
        "skopeo",
        "copy",
        "--src-tls-verify=false",
        f"docker://{dockyard.host}/docker.io/library/{name}@{image.digest}",
        f"oci:{tmp_path / 'copy'}:by-digest",
        timeout=60,
    )

    # Never cached: an OCI error with a 5xx status, within timeout + 1 s.
    timeout = 2.0
    for url in (
        f"{dockyard.url}/v2/{name}-never/manifests/v1",
        f"{dockyard.url}/v2/{name}-never/manifests/{other.digest}",
        f"{dockyard.url}/v2/{name}-never/blobs/{other.layer_digests[0]}",
    ):
        response, elapsed = timed_get(url, ns="docker.io")
        assert elapsed < timeout + 1, (url, elapsed)
        assert_oci_error(response, (502, 503, 504))
    assert not cached_blob_files(dockyard, other.layer_digests[0])


# --- 4. an upstream that never answers ------------------------------------------------------


def test_hanging_upstream_answers_within_timeout(
    start_cache: StartCache, distribution_factory: Any
) -> None:
    hanging = HangingServer(max_seconds=60).start()
    try:
        dockyard = start_cache(
            [upstream("docker.io", hanging.url, timeout="2s", connecttimeout="1s")]
        )
        digest = "sha256:" + "ab" * 32
        for method, url in (
            ("GET", f"{dockyard.url}/v2/library/hang/manifests/v1"),
            ("GET", f"{dockyard.url}/v2/library/hang/manifests/{digest}"),
            ("GET", f"{dockyard.url}/v2/library/hang/blobs/{digest}"),
            ("HEAD", f"{dockyard.url}/v2/library/hang/blobs/{digest}"),
        ):
            started = time.monotonic()
            with requests.Session() as session:
                response = session.request(
                    method, url, params={"ns": "docker.io"}, timeout=30, allow_redirects=False
                )
            elapsed = time.monotonic() - started
            assert elapsed < 3.0, (method, url, elapsed)
            if method == "HEAD":
                assert response.status_code in (502, 503, 504), (method, response.status_code)
            else:
                assert_oci_error(response, (502, 503, 504))
        assert hanging.accepted >= 1
    finally:
        hanging.stop()


def test_upstream_that_starts_hanging_after_a_pull_serves_the_cached_tag(
    tmp_path: Path, start_cache: StartCache
) -> None:
    port = free_port()
    hub = DistributionServer(tmp_path / "hub", port=port).start()
    hanging: HangingServer | None = None
    try:
        name = unique("flaky")
        image = push_image(hub.url, f"library/{name}", "v1")
        dockyard = start_cache(
            [upstream("docker.io", hub, tagttl="1s", timeout="2s", connecttimeout="1s")]
        )
        assert pull_image(dockyard.url, name, "v1", ns="docker.io").digest == image.digest
        hub.stop()
        hanging = HangingServer(max_seconds=60, port=port).start()
        time.sleep(1.2)
        started = time.monotonic()
        pulled = pull_image(dockyard.url, name, "v1", ns="docker.io")
        elapsed = time.monotonic() - started
        assert pulled.status == 200 and pulled.digest == image.digest
        assert pulled.blobs == image.blobs
        assert elapsed < 3.0, elapsed
        assert hanging.accepted >= 1
    finally:
        hub.stop()
        if hanging is not None:
            hanging.stop()


def test_upstream_error_statuses(start_cache: StartCache, distribution_factory: Any) -> None:
    """404 is passed on; 5xx and 429 serve the cached tag, or fail with an OCI error."""
    hub = distribution_factory("hub")
    link = CorruptingProxy(hub.url, corrupt=False).start()
    try:
        name = unique("moody")
        image = push_image(hub.url, f"library/{name}", "v1")
        never = push_image(hub.url, f"library/{name}-never", "v1")
        dockyard = start_cache(
            [upstream("docker.io", link.url, tagttl="1s", timeout="2s", connecttimeout="1s")]
        )
        assert pull_image(dockyard.url, name, "v1", ns="docker.io").digest == image.digest

        # The upstream does not have it: the client is told so, as the upstream said.
        missing = get(f"{dockyard.url}/v2/{name}-missing/manifests/v1", ns="docker.io")
        assert "MANIFEST_UNKNOWN" in assert_oci_error(missing, (404,))
        missing = get(f"{dockyard.url}/v2/{name}/blobs/sha256:{'0' * 64}", ns="docker.io")
        assert "BLOB_UNKNOWN" in assert_oci_error(missing, (404,))
        # No manifest can have a tag that is not valid: unknown (404), and not asked upstream.
        invalid = get(f"{dockyard.url}/v2/{name}/manifests/.INVALID", ns="docker.io")
        assert "MANIFEST_UNKNOWN" in assert_oci_error(invalid, (404,))
        assert not [r for r in link.requests if r[1].endswith("/manifests/.INVALID")]

        never_urls = [
            f"{dockyard.url}/v2/{name}-never/manifests/v1",
            f"{dockyard.url}/v2/{name}-never/blobs/{never.layer_digests[0]}",
        ]
        for status in (500, 502, 503):
            link.fail_status = status
            time.sleep(1.1)  # past tagttl
            pulled = pull_image(dockyard.url, name, "v1", ns="docker.io")
            assert pulled.status == 200 and pulled.digest == image.digest, (status, pulled)
            for url in never_urls:
                response, elapsed = timed_get(url, ns="docker.io")
                assert elapsed < 3.0, (status, url, elapsed)
                assert_oci_error(response, (502, 503, 504))
        link.fail_status = 429
        link.fail_headers = {"Retry-After": "1"}
        time.sleep(1.1)
        pulled = pull_image(dockyard.url, name, "v1", ns="docker.io")
        assert pulled.status == 200 and pulled.digest == image.digest
        for url in never_urls:
            response = get(url, ns="docker.io")
            codes = assert_oci_error(response, (429, 502, 503))
            if response.status_code == 429:
                assert "TOOMANYREQUESTS" in codes
                assert int(response.headers["Retry-After"]) >= 1
        assert not cached_blob_files(dockyard, never.layer_digests[0])

        # The upstream recovers: after its Retry-After, the never-cached image comes through.
        link.fail_status = None
        link.fail_headers = {}
        time.sleep(1.5)
        healed = pull_image(dockyard.url, f"{name}-never", "v1", ns="docker.io")
        assert healed.status == 200 and healed.blobs == never.blobs
    finally:
        link.stop()


# --- 5. an upstream that sends corrupted blobs ---------------------------------------------


def _get_blob(url: str) -> tuple[int | None, bytes | None, str | None]:
    """(status, complete body, error): a transport error leaves the body None."""
    try:
        with requests.Session() as session:
            response = session.get(url, params={"ns": "docker.io"}, timeout=30)
            return response.status_code, response.content, None
    except requests.RequestException as exc:
        return None, None, f"{exc.__class__.__name__}: {exc}"


@pytest.fixture
def corrupting_upstream(
    start_cache: StartCache, distribution_factory: Any
) -> Iterator[tuple[CorruptingProxy, DockyardServer, str, bytes, str]]:
    """(proxy, dockyard, image name, layer bytes, layer digest): the proxy corrupts blobs."""
    hub = distribution_factory("hub")
    proxy = CorruptingProxy(hub.url).start()
    try:
        name = unique("bitrot")
        image = push_image(hub.url, f"library/{name}", "v1", layer_sizes=(300_000,))
        layer = image.layer_digests[0]
        dockyard = start_cache([upstream("docker.io", proxy.url, timeout="5s")])
        pulled = get(f"{dockyard.url}/v2/{name}/manifests/v1", ns="docker.io")
        assert pulled.status_code == 200 and sha256(pulled.content) == image.digest
        yield proxy, dockyard, name, image.blobs[layer], layer
    finally:
        proxy.stop()


def _download_failures(dockyard: DockyardServer, digest: str) -> int:
    return sum(1 for e in dockyard.events("blob download failed") if e.get("digest") == digest)


def test_corrupted_blob_is_not_served_as_a_successful_response(
    corrupting_upstream: tuple[CorruptingProxy, DockyardServer, str, bytes, str],
) -> None:
    proxy, dockyard, name, _content, layer = corrupting_upstream
    status, body, error = _get_blob(f"{dockyard.url}/v2/{name}/blobs/{layer}")
    assert proxy.blob_gets(layer) == 1, proxy.requests
    assert wait_for(lambda: _download_failures(dockyard, layer) == 1), dockyard.log()[-3000:]
    # Either an error status with an OCI body, or a response cut short: never all the
    # bytes with a success status, which a client that does not verify digests would keep.
    assert error is not None or (status is not None and status >= 500), (
        f"the client got a complete {status} response ({len(body or b'')} bytes, "
        f"digest {sha256(body or b'')}) for {layer}: corrupted bytes served as a success"
    )
    if error is None:
        assert body is not None and json.loads(body)["errors"], body


def test_corrupted_blob_is_not_cached_and_a_clean_upstream_heals_it(
    tmp_path: Path, corrupting_upstream: tuple[CorruptingProxy, DockyardServer, str, bytes, str]
) -> None:
    proxy, dockyard, name, content, layer = corrupting_upstream
    blob_url = f"{dockyard.url}/v2/{name}/blobs/{layer}"
    for attempt in (1, 2):
        _get_blob(blob_url)
        # Every attempt goes to the upstream again: nothing was kept from the last one.
        assert proxy.blob_gets(layer) == attempt, proxy.requests
        assert wait_for(lambda n=attempt: _download_failures(dockyard, layer) == n), dockyard.log()[
            -3000:
        ]
        assert not cached_blob_files(dockyard, layer)
    assert not any(e.get("digest") == layer for e in dockyard.events("cached blob"))

    # A real client through the path-prefix form fails too, and nothing is cached.
    result = run_unchecked(
        "skopeo",
        "copy",
        "--src-tls-verify=false",
        f"docker://{dockyard.host}/docker.io/library/{name}:v1",
        f"oci:{tmp_path / 'copy'}:v1",
    )
    assert result != 0
    assert proxy.blob_gets(layer) >= 3
    assert wait_for(lambda: _download_failures(dockyard, layer) >= 3)
    assert not cached_blob_files(dockyard, layer)

    proxy.corrupt = False
    before = proxy.blob_gets(layer)
    status, body, error = _get_blob(blob_url)
    assert error is None and status == 200, (status, error)
    assert body == content
    assert proxy.blob_gets(layer) == before + 1
    assert wait_for(lambda: bool(cached_blob_files(dockyard, layer)))
    # Now cached: the next pull does not reach the upstream.
    again = pull_image(dockyard.url, name, "v1", ns="docker.io")
    assert again.blobs[layer] == content
    assert proxy.blob_gets(layer) == before + 1


def run_unchecked(*args: str | Path, timeout: float = 60) -> int:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, timeout=timeout, check=False
    ).returncode


# --- 6. a tag that moves upstream -----------------------------------------------------------


def test_moved_tag_is_seen_after_tagttl_and_not_before(
    start_cache: StartCache, distribution_factory: Any
) -> None:
    hub = distribution_factory("hub")
    name = unique("moving")
    repo = f"library/{name}"
    ttl = 3.0
    old = push_image(hub.url, repo, "v1")
    dockyard = start_cache([upstream("docker.io", hub, tagttl="3s")])
    cached_at = time.monotonic()
    assert pull_image(dockyard.url, name, "v1", ns="docker.io").digest == old.digest
    tag_path = f"/v2/{repo}/manifests/v1"

    def tag_requests() -> int:
        return count_requests(hub.log(), "GET", tag_path) + count_requests(
            hub.log(), "HEAD", tag_path
        )

    new = push_image(hub.url, repo, "v1")
    assert new.digest != old.digest
    direct = get(f"{hub.url}{tag_path}")
    assert direct.headers["Docker-Content-Digest"] == new.digest
    # Dockyard's fetch and our direct check.
    assert wait_for(lambda: tag_requests() >= 2)
    seen = tag_requests()

    # Within tagttl: the cached tag, without asking the upstream.
    for ref in ("v1", "v1"):
        before = pull_image(dockyard.url, name, ref, ns="docker.io")
        assert time.monotonic() - cached_at < ttl - 0.5, "too slow to check inside tagttl"
        assert before.digest == old.digest
        assert before.blobs == old.blobs
    # The prefix form names the same cached repository.
    prefixed = pull_image(dockyard.url, f"docker.io/{repo}", "v1")
    assert prefixed.digest == old.digest
    assert tag_requests() == seen

    time.sleep(max(0.0, cached_at + ttl + 0.3 - time.monotonic()))
    after = pull_image(dockyard.url, name, "v1", ns="docker.io")
    assert after.digest == new.digest
    assert after.blobs == new.blobs
    assert tag_requests() > seen
    # The new tag is fresh again: served from the cache.
    settled = tag_requests()
    assert pull_image(dockyard.url, name, "v1", ns="docker.io").digest == new.digest
    assert tag_requests() == settled
    # The old image stays available by digest.
    assert pull_image(dockyard.url, name, old.digest, ns="docker.io").blobs == old.blobs


# --- 7. local pushes next to the cache ------------------------------------------------------


def test_local_pushes_work_and_pushes_into_cached_names_are_refused(
    tmp_path: Path, start_cache: StartCache, distribution_factory: Any
) -> None:
    hub = distribution_factory("hub")
    ghcr = distribution_factory("ghcr")
    dockyard = start_cache([upstream("docker.io", hub), upstream("ghcr.io", ghcr)])
    client = RegistryClient(dockyard.url)

    pushed = client.push_image("team/app", "v1", layers=2)
    r = client.request("GET", "/v2/team/app/manifests/v1", headers={"Accept": MANIFEST_ACCEPT})
    assert r.status_code == 200 and r.content == pushed.body
    layout = tmp_path / "oci"
    build_image(layout, "v1", arch=HOST_ARCH)
    digest = skopeo_push_layout(layout, "v1", f"{dockyard.host}/team/tool:v1")
    pulled = pull_image(dockyard.url, "team/tool", "v1")
    assert pulled.status == 200 and pulled.digest == digest
    # A local repository never reaches an upstream.
    for dist in (hub, ghcr):
        assert not [r for r in upstream_requests(dist.log()) if "/team/" in r.path]

    refused = [
        ("POST", "/v2/docker.io/library/x/blobs/uploads/", None),
        ("PUT", "/v2/docker.io/library/x/manifests/v1", pushed.body),
        ("DELETE", "/v2/docker.io/library/x/manifests/v1", None),
        ("DELETE", f"/v2/docker.io/library/x/blobs/{pushed.digest}", None),
        ("POST", "/v2/ghcr.io/acme/x/blobs/uploads/", None),
        ("POST", "/v2/library/x/blobs/uploads/?ns=docker.io", None),
        ("PUT", "/v2/library/x/manifests/v1?ns=docker.io", pushed.body),
    ]
    for method, path, body in refused:
        r = client.request(
            method,
            path,
            data=body,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        assert "UNSUPPORTED" in assert_oci_error(r, (405,)), (method, path)
    assert (
        run_unchecked(
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:v1",
            f"docker://{dockyard.host}/docker.io/library/x:v1",
        )
        != 0
    )
    for dist in (hub, ghcr):
        # Reads (skopeo's HEAD of each blob) may reach the upstream; writes never.
        writes = [r for r in upstream_requests(dist.log()) if r.method not in ("GET", "HEAD")]
        assert not writes, writes
    # Still pushable after the refusals.
    assert client.push_image("team/app", "v2").digest


# --- Distribution's single-upstream form, and upstream names with a port ------------------


def test_remoteurl_default_upstream_with_local_content_winning(
    start_cache: StartCache, distribution_factory: Any
) -> None:
    hub = distribution_factory("hub")
    name = unique("plain")
    upstream_image = push_image(hub.url, f"library/{name}", "v1")
    dockyard = start_cache([], proxy={"remoteurl": hub.url, "upstreams": []})

    # No ns and no known prefix: the default upstream answers.
    pulled = pull_image(dockyard.url, f"library/{name}", "v1")
    assert pulled.status == 200, pulled.manifest
    assert pulled.digest == upstream_image.digest and pulled.blobs == upstream_image.blobs
    # Pushes outside any named upstream stay local, and local content wins over it.
    client = RegistryClient(dockyard.url)
    local = client.push_image(f"team/{name}", "v1")
    again = pull_image(dockyard.url, f"team/{name}", "v1")
    assert again.status == 200 and again.manifest == local.body
    assert not [r for r in upstream_requests(hub.log()) if "/team/" in r.path and r.method != "GET"]
    assert count_requests(hub.log(), "GET", f"/v2/team/{name}/manifests/v1") == 0


def test_upstream_name_with_a_port(start_cache: StartCache, distribution_factory: Any) -> None:
    private = distribution_factory("private")
    name = unique("ported")
    image = push_image(private.url, f"apps/{name}", "v1")
    dockyard = start_cache([upstream("registry.local:5000", private)])
    # containerd's form: ?ns=<host:port>.
    pulled = pull_image(dockyard.url, f"apps/{name}", "v1", ns="registry.local:5000")
    assert pulled.status == 200, pulled.manifest
    assert pulled.digest == image.digest and pulled.blobs == image.blobs
    # The same image by digest, now from the cache.
    by_digest = pull_image(dockyard.url, f"apps/{name}", image.digest, ns="registry.local:5000")
    assert by_digest.status == 200 and by_digest.blobs == image.blobs


def test_blobs_streamed_from_the_upstream_carry_the_standard_headers(
    start_cache: StartCache, distribution_factory: Any
) -> None:
    # A first pull is answered while the blob downloads: its headers leave before the
    # handler returns, and must still carry what every response carries.
    hub = distribution_factory("hub")
    name = unique("headers")
    image = push_image(hub.url, f"library/{name}", "v1", layer_sizes=(200_000,))
    layer = image.layer_digests[0]
    dockyard = start_cache([upstream("docker.io", hub)], http={"headers": {"X-Site": ["edge-7"]}})
    first = get(f"{dockyard.url}/v2/{name}/blobs/{layer}", ns="docker.io")
    again = get(f"{dockyard.url}/v2/{name}/blobs/{layer}", ns="docker.io")
    for response in (first, again):
        assert response.status_code == 200 and sha256(response.content) == layer
        assert response.headers["X-Content-Type-Options"] == "nosniff", response.headers
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert response.headers["X-Site"] == "edge-7"
        assert response.headers["Docker-Content-Digest"] == layer
        assert response.headers["Server"] == "Dockyard"
