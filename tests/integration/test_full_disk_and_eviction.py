"""A full volume and a bounded cache: the two ways a cluster registry runs out of room."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.integration.support.client import Pushed, RegistryClient, sha256
from tests.integration.support.server import (
    DistributionServer,
    DockyardServer,
    free_port,
    wait_http,
)
from tests.integration.support.upstreams import CorruptingProxy, pull_image, push_image


@contextmanager
def _on_tmpfs(tmp_path: Path, *serve_args: str) -> Iterator[tuple[str, Path]]:
    """Dockyard whose root is a 24 MiB tmpfs mounted in the server's own mount namespace.

    Yields the base URL and the root as this process can see it (through /proc/PID/root).
    """
    root = tmp_path / "small"
    root.mkdir()
    port = free_port()
    args = " ".join(serve_args)
    script = (
        f"mount -t tmpfs -o size=24m tmpfs {root} && exec {sys.executable} -m dockyard serve "
        f"--addr 127.0.0.1:{port} --root {root} {args}"
    )
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "REGISTRY_STORAGE_DELETE_ENABLED": "true"},
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
        yield f"http://127.0.0.1:{port}", Path(f"/proc/{proc.pid}/root") / str(root).lstrip("/")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture
def tmpfs_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    with _on_tmpfs(tmp_path) as server:
        yield server


def test_full_disk(tmpfs_server: tuple[str, Path]) -> None:
    url, root = tmpfs_server
    client = RegistryClient(url)
    small = client.push_image("disk/small", "v1", layers=2)
    # A push bigger than the volume: the client hears that the storage is full.
    big = os.urandom(30 * 1024 * 1024)
    r = client.request("POST", "/v2/disk/big/blobs/uploads/")
    r = client.request("PUT", r.headers["Location"], params={"digest": sha256(big)}, data=big)
    assert r.status_code == 507, r.text
    assert "storage is full" in r.json()["errors"][0]["message"]
    assert list((root / "uploads").iterdir()) == []  # the partial upload is gone
    assert client.request("HEAD", f"/v2/disk/big/blobs/{sha256(big)}").status_code == 404

    # Fill the volume to the last byte: readiness says so, pulls still work.
    filler = root / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    ready = requests.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["reason"] == "registry storage is full"
    assert client.request("GET", "/v2/disk/small/manifests/v1").content == small.body
    for blob in [small.config, *small.layers]:
        assert client.request("GET", f"/v2/disk/small/blobs/{sha256(blob)}").content == blob
    r = client.request(
        "POST",
        "/v2/disk/more/blobs/uploads/",
        params={"digest": sha256(b"x" * 100_000)},
        data=b"x" * 100_000,
    )
    assert r.status_code == 507
    assert "storage is full" in r.text

    # Space freed: pushes work again, and nothing committed was damaged.
    filler.unlink()
    assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
    again = client.push_image("disk/again", "v1")
    assert client.request("GET", "/v2/disk/again/manifests/v1").content == again.body
    for blob in [small.config, *small.layers]:
        assert client.request("GET", f"/v2/disk/small/blobs/{sha256(blob)}").content == blob


def test_a_full_cache_volume_serves_cold_pulls_from_the_upstream(
    tmp_path: Path, distribution_factory: Callable[..., DistributionServer]
) -> None:
    """A layer the cache has no room for still reaches the client, verified, straight from
    the upstream; nothing partial is left, and the cache works again once there is room."""
    hub = distribution_factory("hub")
    big = push_image(hub.url, "library/big", "v1", layer_sizes=(30 * 1024 * 1024,))
    small = push_image(hub.url, "library/small", "v1", layer_sizes=(64 * 1024,))
    config = tmp_path / "cache.yml"
    config.write_text(f"proxy:\n  upstreams:\n    - {{name: docker.io, url: '{hub.url}'}}\n")
    with _on_tmpfs(tmp_path, "--config", str(config)) as (url, root):
        for _ in range(3):  # the first pull finds no room; the next ones pass through
            pulled = pull_image(url, "big", "v1", ns="docker.io")
            assert pulled.status == 200 and pulled.digest == big.digest
            assert set(pulled.blobs) == set(big.blobs)  # each checked against its digest
        # A range of a blob that passes through: the bytes asked for, and only those.
        layer = big.layer_digests[0]
        r = requests.get(
            f"{url}/v2/big/blobs/{layer}",
            params={"ns": "docker.io"},
            headers={"Range": "bytes=1000-1999"},
            timeout=60,
        )
        assert r.status_code == 206 and r.content == big.blobs[layer][1000:2000]
        assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(big.blobs[layer])}"
        # Its headers left before the handler returned; they are the standard ones all the same.
        assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        # Nothing of the big layer was kept, not even a partial file.
        files = [p for p in root.rglob("*") if p.is_file() and p.stat().st_size > 1 << 20]
        assert [p.name for p in files if not p.name.startswith("metadata.db")] == []
        metrics = requests.get(f"{url}/metrics", timeout=10).text
        assert 'dockyard_cache_passthrough_total{upstream="docker.io"} 4.0' in metrics, metrics
        # Small blobs that fit are still cached as usual.
        assert pull_image(url, "small", "v1", ns="docker.io").digest == small.digest
        hub.stop()
        assert pull_image(url, "small", "v1", ns="docker.io").digest == small.digest


def test_with_workers_every_client_of_a_blob_without_room_gets_it(
    tmp_path: Path, distribution_factory: Callable[..., DistributionServer]
) -> None:
    """`serve --workers 2`: the process leading the download finds no room; the clients of
    both processes (its followers included) get the blob straight from the upstream."""
    hub = distribution_factory("hub")
    image = push_image(hub.url, "library/big", "v1", layer_sizes=(30 * 1024 * 1024,))
    layer = image.layer_digests[0]
    config = tmp_path / "cache.yml"
    config.write_text(f"proxy:\n  upstreams:\n    - {{name: docker.io, url: '{hub.url}'}}\n")
    with _on_tmpfs(tmp_path, "--config", str(config), "--workers", "2") as (url, root):

        def pull(_: int) -> str:
            with requests.Session() as session:  # one connection each: spread over workers
                r = session.get(
                    f"{url}/v2/big/blobs/{layer}", params={"ns": "docker.io"}, timeout=60
                )
                return f"{r.status_code} {sha256(r.content)}"

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(pull, range(8)))
        assert results == [f"200 {layer}"] * 8
        assert not any((root / "uploads").glob("fetch-*"))


def test_a_volume_that_fills_during_a_download_cuts_it_and_the_retry_passes_through(
    tmp_path: Path, distribution_factory: Callable[..., DistributionServer]
) -> None:
    hub = distribution_factory("hub")
    image = push_image(hub.url, "library/slow", "v1", layer_sizes=(12 * 1024 * 1024,))
    layer = image.layer_digests[0]
    # A slow upstream (1 MiB every 0.1 s), so the volume can fill while the blob arrives.
    link = CorruptingProxy(hub.url, corrupt=False, chunk_delay=0.1, chunk_size=1 << 20).start()
    config = tmp_path / "cache.yml"
    config.write_text(f"proxy:\n  upstreams:\n    - {{name: docker.io, url: '{link.url}'}}\n")
    try:
        with _on_tmpfs(tmp_path, "--config", str(config)) as (url, root):
            blob_url = f"{url}/v2/slow/blobs/{layer}"
            outcome: dict[str, object] = {}

            def pull() -> None:
                try:
                    r = requests.get(blob_url, params={"ns": "docker.io"}, timeout=60)
                    outcome["bytes"] = r.content
                except requests.RequestException as exc:
                    outcome["error"] = exc

            client = threading.Thread(target=pull)
            client.start()
            deadline = time.monotonic() + 20
            while not any((root / "uploads").glob("fetch-*")):  # the download has begun
                assert time.monotonic() < deadline, "the download never started"
                time.sleep(0.02)
            filler = root / "filler"
            # Other writes take the room that was left.
            with filler.open("wb", buffering=0) as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * (1 << 20))
            client.join(60)
            # The client saw a failure, never a whole body that is not the blob.
            assert "error" in outcome or outcome["bytes"] != image.blobs[layer], outcome
            assert not any((root / "uploads").glob("fetch-*"))  # nothing partial kept
            r = requests.get(blob_url, params={"ns": "docker.io"}, timeout=60)
            assert r.status_code == 200 and sha256(r.content) == layer
            filler.unlink()
    finally:
        link.stop()


def _cached_repositories(root: Path) -> dict[str, int]:
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "du", "--root", str(root), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {r["name"]: r["manifests"] for r in json.loads(result.stdout)["repositories"]}


def test_eviction_least_recently_pulled_first(
    tmp_path: Path,
    distribution_factory: Callable[..., DistributionServer],
    dockyard_factory: Callable[..., DockyardServer],
) -> None:
    upstream = distribution_factory()
    up = RegistryClient(upstream.url)
    images: dict[str, Pushed] = {}
    for name in ("a", "b", "c"):
        images[name] = up.push_image(f"library/{name}", "v1", layers=0)
        layer = os.urandom(1024 * 1024)
        up.push_blob(f"library/{name}", layer)
        manifest = json.loads(images[name].body)
        manifest["layers"] = [
            {"mediaType": "application/octet-stream", "digest": sha256(layer), "size": len(layer)}
        ]
        body = json.dumps(manifest).encode()
        assert up.push_manifest(f"library/{name}", "v1", body).status_code == 201
        images[name] = Pushed(f"library/{name}", sha256(body), body, images[name].config, [layer])
    config = tmp_path / "evict.yml"
    config.write_text(
        "proxy:\n"
        "  upstreams:\n"
        f"    - {{name: docker.io, url: '{upstream.url}'}}\n"
        "  cache:\n"
        "    maxsize: 2600KiB\n"
        "    highwatermark: 0.9\n"
        "    lowwatermark: 0.5\n"
        "    interval: 1s\n"
    )
    server = dockyard_factory(config=config)
    client = RegistryClient(server.url)
    pushed = client.push_image("local/app", "v1", layers=3)  # pushed content is never evicted

    def pull(name: str) -> None:
        image = images[name]
        r = client.request("GET", f"/v2/library/{name}/manifests/v1", params={"ns": "docker.io"})
        assert r.status_code == 200 and r.content == image.body
        for blob in [image.config, *image.layers]:
            got = client.request(
                "GET", f"/v2/library/{name}/blobs/{sha256(blob)}", params={"ns": "docker.io"}
            )
            assert got.content == blob

    pull("a")
    time.sleep(1.1)
    pull("b")
    time.sleep(1.1)
    pull("a")  # a is now more recently pulled than b
    time.sleep(1.1)
    pull("c")  # 3 MiB cached > 0.9 x 2.6 MiB: evict down to 1.3 MiB
    deadline = time.monotonic() + 20
    repos = _cached_repositories(server.root)
    while "docker.io/library/b" in repos and time.monotonic() < deadline:
        time.sleep(0.3)
        repos = _cached_repositories(server.root)
    assert "docker.io/library/b" not in repos  # least recently pulled: gone first
    assert "docker.io/library/c" in repos  # just pulled: kept
    assert not (
        server.root
        / "blobs"
        / "sha256"
        / sha256(images["b"].layers[0])[7:9]
        / sha256(images["b"].layers[0])[7:]
    ).exists()
    assert repos.get("local/app") == 1
    for blob in [pushed.config, *pushed.layers]:
        assert client.request("GET", f"/v2/local/app/blobs/{sha256(blob)}").content == blob
    # `dockyard df` shows the budget.
    df = subprocess.run(
        [sys.executable, "-m", "dockyard", "df", "--config", str(config), "--root",
         str(server.root), "--format", "json"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    budget = json.loads(df.stdout)["cache_budget"]
    assert budget["limit"] == 2600 * 1024
    assert budget["used"] <= budget["high"]
    assert budget["state"] == "within"
    # An evicted image is simply fetched again.
    pull("b")
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    evictions = [
        line for line in metrics.splitlines() if line.startswith("dockyard_cache_evictions_total")
    ]
    assert float(evictions[0].split()[-1]) >= 1
