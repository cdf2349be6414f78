"""The pull-through cache under `dockyard serve --workers N`: still one upstream request.

SO_REUSEPORT spreads fresh connections over the worker processes, so clients asking for
the same blob at once land in different processes. Lock files elect one process to
download; the others stream its staging file. The upstream is a Debian `docker-registry`
behind a proxy that sends bodies slowly (so every client joins the download in flight) or
corrupts them; its access log says what reached it. Each worker's log lines carry its
index (`worker`), which tells which processes served the clients.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.support.server import DockyardServer
from tests.integration.support.upstreams import (
    MANIFEST_ACCEPT,
    CorruptingProxy,
    Image,
    cache_config,
    count_requests,
    push_image,
    sha256,
    unique,
    upstream_requests,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

StartWorkers = Callable[..., DockyardServer]


@pytest.fixture
def start_workers(tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]) -> StartWorkers:
    """Start `dockyard serve --workers N` caching `upstream_url` as docker.io; returns
    once every worker listens. The same `name` means the same root directory."""

    def start(upstream_url: str, workers: int = 2, name: str = "dockyard") -> DockyardServer:
        config = cache_config(
            tmp_path / f"{name}.yml",
            [{"name": "docker.io", "url": upstream_url, "tagttl": "5m", "timeout": "20s"}],
        )
        server = dockyard_factory(name, config=config, extra_args=["--workers", str(workers)])
        assert wait_for(lambda: len(server.events("listening")) == workers, timeout=30), (
            server.log()[-3000:]
        )
        assert len(worker_pids(server)) == workers
        return server

    return start


def workers_that_served(server: DockyardServer, path_part: str) -> set[int]:
    """Worker indexes whose access log has a request whose path contains `path_part`."""
    return {
        int(e["worker"])
        for e in server.events("request")
        if path_part in str(e.get("path")) and "worker" in e
    }


def worker_pids(server: DockyardServer) -> dict[int, int]:
    """Worker index -> PID, from the children of the server process we started."""
    assert server.proc is not None
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == server.proc.pid and b"--worker-index" in args:
            found[int(args[args.index(b"--worker-index") + 1])] = int(entry.name)
    return found


def stored_blob_rows(server: DockyardServer, digest: str) -> int:
    conn = sqlite3.connect(f"file:{server.root / 'metadata.db'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT COUNT(*) FROM blobs WHERE digest = ?", (digest,)).fetchone()
        return int(row[0])
    finally:
        conn.close()


def blob_files(server: DockyardServer, digest: str) -> list[Path]:
    hexdigest = digest.split(":", 1)[1]
    return [p for p in (server.root / "blobs").rglob(hexdigest) if p.is_file()]


def leftovers(server: DockyardServer) -> list[str]:
    """Partial downloads and lock files still in the store."""
    found = []
    for directory, pattern in (("uploads", "fetch-*"), ("locks", "*.lock")):
        if (server.root / directory).is_dir():
            found += [p.name for p in (server.root / directory).glob(pattern)]
    return found


@dataclass
class Fetched:
    status: int | None  # None: the connection failed
    digest: str | None  # of the complete body
    size: int
    error: str | None
    first_byte: float  # time.monotonic() of the first body byte, 0 if none
    ended: float


def fetch_blob(url: str, barrier: threading.Barrier | None = None) -> Fetched:
    """GET a blob on a fresh connection, hashing it as it streams."""
    first = 0.0
    size = 0
    hasher = hashlib.sha256()
    with requests.Session() as session:
        if barrier is not None:
            barrier.wait()
        try:
            with session.get(url, params={"ns": "docker.io"}, timeout=60, stream=True) as r:
                for chunk in r.iter_content(65536):
                    first = first or time.monotonic()
                    hasher.update(chunk)
                    size += len(chunk)
                digest = "sha256:" + hasher.hexdigest()
                return Fetched(r.status_code, digest, size, None, first, time.monotonic())
        except requests.RequestException as exc:
            error = f"{exc.__class__.__name__}: {exc}"
            return Fetched(None, None, size, error, first, time.monotonic())


def blob_url(server: DockyardServer, name: str, digest: str) -> str:
    return f"{server.url}/v2/{name}/blobs/{digest}"


# --- many clients over several workers: one upstream request ------------------------------


def test_concurrent_pulls_over_three_workers_make_one_upstream_request_per_blob_and_tag(
    start_workers: StartWorkers, distribution_factory: Any
) -> None:
    hub = distribution_factory("hub")
    # A slow link: the big layer takes a couple of seconds, so every client joins it.
    link = CorruptingProxy(hub.url, corrupt=False, chunk_delay=0.03).start()
    try:
        name = unique("workers")
        repo = f"library/{name}"
        image = push_image(hub.url, repo, "v1", layer_sizes=(4 << 20, 65536))
        big = image.layer_digests[0]
        # Another image of the repository, asked for by digest.
        other = push_image(hub.url, repo, "v2")
        dockyard = start_workers(link.url, workers=3)
        clients = 40
        barrier = threading.Barrier(clients, timeout=30)

        def manifest(reference: str) -> requests.Response:
            with requests.Session() as session:
                return session.get(
                    f"{dockyard.url}/v2/{name}/manifests/{reference}",
                    params={"ns": "docker.io"},
                    headers={"Accept": MANIFEST_ACCEPT},
                    timeout=60,
                )

        def pull(i: int) -> tuple[str | None, bytes, dict[str, Fetched]]:
            barrier.wait()
            first, second = ("v1", other.digest) if i % 2 else (other.digest, "v1")
            r, by_digest = manifest(first), manifest(second)
            if first != "v1":
                r, by_digest = by_digest, r
            assert r.status_code == 200, (r.status_code, r.text)
            assert by_digest.status_code == 200, (by_digest.status_code, by_digest.text)
            assert by_digest.content == other.manifest
            # The big layer first, so that all clients ask for it at once; every blob on a
            # fresh connection, which may land on any worker.
            order = [big, *(d for d in image.blob_digests if d != big)]
            fetched = {d: fetch_blob(blob_url(dockyard, name, d)) for d in order}
            return r.headers.get("Docker-Content-Digest"), r.content, fetched

        with ThreadPoolExecutor(max_workers=clients) as pool:
            results = list(pool.map(pull, range(clients), timeout=150))

        for header_digest, manifest, fetched in results:
            assert header_digest == image.digest
            assert manifest == image.manifest
            for digest, got in fetched.items():
                assert (got.status, got.error) == (200, None), (digest, got)
                assert (got.digest, got.size) == (digest, len(image.blobs[digest])), digest

        # Exactly one upstream GET per blob, and one request for the tag.
        for digest in image.blob_digests:
            path = f"/v2/{repo}/blobs/{digest}"
            wait_for(lambda p=path: count_requests(hub.log(), "GET", p) >= 1)
            assert count_requests(hub.log(), "GET", path) == 1, upstream_requests(hub.log())
        tag_path = f"/v2/{repo}/manifests/v1"
        tag_requests = count_requests(hub.log(), "GET", tag_path)
        tag_requests += count_requests(hub.log(), "HEAD", tag_path)
        assert tag_requests == 1, upstream_requests(hub.log())
        digest_path = f"/v2/{repo}/manifests/{other.digest}"
        assert count_requests(hub.log(), "GET", digest_path) == 1, upstream_requests(hub.log())

        # The clients really were spread over the workers, and one process led each blob.
        served = workers_that_served(dockyard, f"/blobs/{big}")
        assert len(served) >= 2, served
        assert len(workers_that_served(dockyard, "/manifests/v1")) >= 2
        for digest in image.blob_digests:
            assert len(dockyard.events("fetching blob", digest=digest)) == 1
            assert len(dockyard.events("cached blob", digest=digest)) == 1
        leader = dockyard.events("fetching blob", digest=big)[0]["worker"]
        assert served - {leader}, "no client of the big layer was served by a follower"
        # Followers streamed while the upstream was still sending, not after.
        upstream_done = link.finished[f"/v2/{repo}/blobs/{big}"]
        early = [r for _d, _m, r in results if 0 < r[big].first_byte < upstream_done]
        assert len(early) >= clients * 3 // 4, (len(early), clients)
        assert blob_files(dockyard, big) and stored_blob_rows(dockyard, big) == 1
        assert leftovers(dockyard) == []
    finally:
        link.stop()


# --- the leading worker dies mid-download ----------------------------------------------------


def test_a_leader_killed_mid_download_does_not_wedge_the_others(
    start_workers: StartWorkers, distribution_factory: Any
) -> None:
    hub = distribution_factory("hub")
    # About 4 s for the layer: time to kill the leader in the middle.
    link = CorruptingProxy(hub.url, corrupt=False, chunk_delay=0.06).start()
    try:
        name = unique("crash")
        image: Image = push_image(hub.url, f"library/{name}", "v1", layer_sizes=(4 << 20,))
        layer = image.layer_digests[0]
        content = image.blobs[layer]
        path = f"/v2/library/{name}/blobs/{layer}"
        dockyard = start_workers(link.url, workers=2)
        pids = worker_pids(dockyard)
        clients = 16
        barrier = threading.Barrier(clients, timeout=30)
        with ThreadPoolExecutor(max_workers=clients) as pool:
            futures = [
                pool.submit(fetch_blob, blob_url(dockyard, name, layer), barrier)
                for _ in range(clients)
            ]
            assert wait_for(lambda: bool(dockyard.events("fetching blob", digest=layer)))
            leader = int(dockyard.events("fetching blob", digest=layer)[0]["worker"])
            # Let the download get going: every client has bytes and is mid-body.
            assert wait_for(lambda: (dockyard.root / "uploads").is_dir(), timeout=10)
            time.sleep(1.0)
            assert link.blob_gets(layer) == 1
            killed_at = time.monotonic()
            os.kill(pids[leader], signal.SIGKILL)
            results = [f.result(timeout=90) for f in futures]

        # Nobody got a body that is not the blob, and nobody hung.
        for got in results:
            assert got.error is not None or got.status != 200 or got.digest == layer, got
            assert got.ended - killed_at < 20, got
        # The parent stopped the other worker (a supervisor restarts the set): it drained
        # and exited instead of waiting on a lock the dead worker held.
        assert dockyard.proc is not None
        dockyard.proc.wait(timeout=30)
        assert dockyard.proc.returncode != 0
        assert stored_blob_rows(dockyard, layer) == 0
        assert not blob_files(dockyard, layer)

        # Restarted on the same store: the dead leader's partial file is discarded, and a
        # crowd of retries makes one new upstream request and stores one verified blob.
        restarted = start_workers(link.url, workers=2)
        assert restarted.root == dockyard.root
        link.chunk_delay = 0.01
        retry_barrier = threading.Barrier(10, timeout=30)
        with ThreadPoolExecutor(max_workers=10) as pool:
            retries = list(
                pool.map(
                    lambda _: fetch_blob(blob_url(restarted, name, layer), retry_barrier),
                    range(10),
                )
            )
        for got in retries:
            assert (got.status, got.digest, got.size) == (200, layer, len(content)), got
        assert wait_for(lambda: count_requests(hub.log(), "GET", path) == 2), upstream_requests(
            hub.log()
        )
        time.sleep(0.5)
        assert count_requests(hub.log(), "GET", path) == 2
        assert link.blob_gets(layer) == 2
        assert stored_blob_rows(restarted, layer) == 1
        files = blob_files(restarted, layer)
        assert len(files) == 1 and sha256(files[0].read_bytes()) == layer
        assert leftovers(restarted) == []
    finally:
        link.stop()


# --- an upstream that sends corrupt bytes ----------------------------------------------------


def test_corrupt_bytes_fail_every_client_in_every_worker_and_nothing_is_cached(
    start_workers: StartWorkers, distribution_factory: Any
) -> None:
    hub = distribution_factory("hub")
    proxy = CorruptingProxy(hub.url, corrupt=True, chunk_delay=0.02).start()
    try:
        name = unique("bitrot")
        image = push_image(hub.url, f"library/{name}", "v1", layer_sizes=(2 << 20,))
        layer = image.layer_digests[0]
        dockyard = start_workers(proxy.url, workers=2)
        clients = 24
        barrier = threading.Barrier(clients, timeout=30)
        url = blob_url(dockyard, name, layer)
        with ThreadPoolExecutor(max_workers=clients) as pool:
            results = list(pool.map(lambda _: fetch_blob(url, barrier), range(clients)))

        # Never all the bytes with a success status: an error status, or a cut connection.
        for got in results:
            assert got.error is not None or (got.status or 0) >= 500, got
            assert got.digest != layer
        assert proxy.blob_gets(layer) == 1, proxy.requests
        # Clients of both workers were failed: the leader's and the follower's.
        assert wait_for(
            lambda: len({e.get("worker") for e in dockyard.events("blob download failed")}) == 2
        ), dockyard.log()[-3000:]
        for entry in dockyard.events("blob download failed"):
            assert entry["digest"] == layer
            assert "does not match" in entry["error"], entry
        assert len(dockyard.events("fetching blob", digest=layer)) == 1
        assert stored_blob_rows(dockyard, layer) == 0
        assert not blob_files(dockyard, layer)
        assert leftovers(dockyard) == []

        # A clean upstream heals it, through either worker.
        proxy.corrupt = False
        healed = fetch_blob(url)
        assert (healed.status, healed.digest) == (200, layer), healed
        assert proxy.blob_gets(layer) == 2
        assert stored_blob_rows(dockyard, layer) == 1
    finally:
        proxy.stop()
