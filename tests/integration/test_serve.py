"""`dockyard serve`: configuration, probes, shutdown, and durability across crashes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from dockyard.metadata.db import Database
from dockyard.oci.mediatypes import OCI_MANIFEST
from dockyard.registry.manifests import ManifestStore
from tests.integration.support.client import Pushed, RegistryClient, sha256
from tests.integration.support.server import DockyardServer, free_port, wait_http

DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
proxy:
  remoteurl: https://registry-1.docker.io
"""


def test_distribution_config_starts_unchanged(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    config = tmp_path / "config.yml"
    config.write_text(DISTRIBUTION_CONFIG)
    root = tmp_path / "registry-root"
    # The file is used as is; only the environment moves the root into the test's directory.
    server = dockyard_factory(
        "registry-root",
        config=config,
        env={"REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": str(root)},
        root_flag=False,
    )
    r = requests.get(f"{server.url}/v2/", timeout=5)
    assert r.status_code == 200
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    client = RegistryClient(server.url)
    image = client.push_image("cfg/app", "v1")
    assert client.request("DELETE", f"/v2/cfg/app/manifests/{image.digest}").status_code == 202
    assert (root / "metadata.db").exists()
    log = server.log()
    # Distribution's proxy.remoteurl becomes the default upstream of the cache.
    assert "caching upstream" in log
    assert "registry-1.docker.io" in log
    assert '"service": "registry"' in log  # log.fields appear on every line


def test_env_overrides_addr(tmp_path: Path) -> None:
    port = free_port()
    args = [sys.executable, "-m", "dockyard", "serve", "--root", str(tmp_path / "root")]
    proc = subprocess.Popen(
        args,
        env={**os.environ, "REGISTRY_HTTP_ADDR": f"127.0.0.1:{port}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def test_defaults_port_5000_and_data_dir(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "serve"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http("http://127.0.0.1:5000/v2/", proc=proc)
        RegistryClient("http://127.0.0.1:5000").push_image("defaults/app", "v1")
        assert (tmp_path / "data" / "metadata.db").exists()
        assert any((tmp_path / "data" / "blobs" / "sha256").rglob("*"))
    finally:
        proc.terminate()
        assert proc.wait(15) == 0


def _serve(
    tmp_path: Path, *args: str, config: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dockyard", "serve", "--root", str(tmp_path / "r")]
    if config is not None:
        path = tmp_path / "bad.yml"
        path.write_text(config)
        command += ["--config", str(path)]
    return subprocess.run(
        command + list(args), capture_output=True, text=True, timeout=30, check=False
    )


def test_invalid_config_exits_2(tmp_path: Path) -> None:
    result = _serve(tmp_path, config="storage:\n  delete:\n    enabled: maybe\n")
    assert result.returncode == 2
    assert "storage.delete.enabled" in result.stderr
    result = _serve(tmp_path, config="http: [not, a, mapping]\n")
    assert result.returncode == 2
    result = _serve(tmp_path, config="{unclosed: \n")
    assert result.returncode == 2
    assert "YAML" in result.stderr
    result = _serve(tmp_path, "--addr", "nonsense")
    assert result.returncode == 2
    assert "http.addr" in result.stderr


def test_unknown_key_warns(tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]) -> None:
    config = tmp_path / "c.yml"
    config.write_text("http:\n  adr: typo\nstorage:\n  delete:\n    enabeld: true\n")
    server = dockyard_factory(config=config)
    assert "http.adr" in server.log()
    assert "storage.delete.enabeld" in server.log()


def test_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for option in ("--config", "--addr", "--root"):
        assert option in result.stdout


def test_probes(dockyard: DockyardServer) -> None:
    assert requests.get(f"{dockyard.url}/healthz", timeout=5).status_code == 200
    r = requests.get(f"{dockyard.url}/readyz", timeout=5)
    assert r.status_code == 200
    assert r.json()["checks"] == {"storage_writable": True, "database_open": True}


def test_access_log_lines(dockyard: DockyardServer) -> None:
    requests.get(f"{dockyard.url}/v2/some/repo/tags/list?n=1", timeout=5)
    time.sleep(0.2)
    lines = [line for line in dockyard.log().splitlines() if '"dockyard.access"' in line]
    assert any(
        '"path": "/v2/some/repo/tags/list?n=1"' in line and '"status": 404' in line
        for line in lines
    )
    assert all('"duration_ms"' in line and '"remote"' in line for line in lines)


def test_sigterm_exits_cleanly(dockyard: DockyardServer) -> None:
    RegistryClient(dockyard.url).push_image("term/app", "v1")
    assert dockyard.stop() == 0
    assert "stopped" in dockyard.log()


# -- durability -----------------------------------------------------------------------------


def _check_store(root: Path) -> None:
    """Every committed blob file holds exactly the bytes its name says."""
    for path in (root / "blobs" / "sha256").rglob("*"):
        if path.is_file():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, path


def test_kill_9_during_pushes_loses_nothing(
    dockyard_factory: Callable[..., DockyardServer],
) -> None:
    server = dockyard_factory()
    client = RegistryClient(server.url)
    committed: list[Pushed] = []
    stop = threading.Event()

    def push_loop(worker: int) -> None:
        pusher = RegistryClient(server.url)
        for i in range(200):  # bounded: stops by itself
            if stop.is_set():
                return
            try:
                committed.append(pusher.push_image(f"crash/w{worker}", f"t{i}", layers=3))
            except (requests.RequestException, AssertionError):
                return

    threads = [threading.Thread(target=push_loop, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(committed) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()
    stop.set()
    for t in threads:
        t.join(30)
    assert len(committed) >= 10
    server.start()
    for image in committed:
        r = client.request("GET", f"/v2/{image.repo}/manifests/{image.digest}")
        assert r.status_code == 200, (image.repo, image.digest)
        assert r.content == image.body
        for blob in [image.config, *image.layers]:
            got = client.request("GET", f"/v2/{image.repo}/blobs/{sha256(blob)}")
            assert got.status_code == 200
            assert got.content == blob
    _check_store(server.root)


def test_chunked_upload_resumes_after_restart(
    dockyard_factory: Callable[..., DockyardServer],
) -> None:
    server = dockyard_factory()
    client = RegistryClient(server.url)
    data = os.urandom(3 * 1024 * 1024)
    location = client.request("POST", "/v2/resume/app/blobs/uploads/").headers["Location"]
    r = client.request(
        "PATCH", location, data=data[: 1024 * 1024], headers={"Content-Range": "0-1048575"}
    )
    assert r.status_code == 202
    server.kill()  # a crash, not a clean stop
    server.start()
    status = client.request("GET", location)
    assert status.status_code == 204
    offset = int(status.headers["Range"].split("-")[1]) + 1
    assert offset == 1024 * 1024
    r = client.request(
        "PATCH",
        location,
        data=data[offset : 2 * 1024 * 1024],
        headers={"Content-Range": f"{offset}-{2 * 1024 * 1024 - 1}"},
    )
    assert r.status_code == 202
    server.restart()  # and a clean restart
    r = client.request(
        "PUT",
        location,
        params={"digest": sha256(data)},
        data=data[2 * 1024 * 1024 :],
        headers={"Content-Range": f"{2 * 1024 * 1024}-{len(data) - 1}"},
    )
    assert r.status_code == 201, r.text
    assert client.request("GET", f"/v2/resume/app/blobs/{sha256(data)}").content == data
    _check_store(server.root)


def test_nosniff_by_default(dockyard: DockyardServer) -> None:
    r = requests.get(f"{dockyard.url}/v2/", timeout=5)
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Server"] == "Dockyard"  # no Python or aiohttp version


def test_stalled_body_is_cut_off_and_resumable(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    config = tmp_path / "slow.yml"
    config.write_text("http:\n  readtimeout: 1s\n")
    server = dockyard_factory(config=config)
    client = RegistryClient(server.url)
    location = client.request("POST", "/v2/slow/app/blobs/uploads/").headers["Location"]
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + b"0123456789"
        )
        started = time.monotonic()
        # Meanwhile other clients are served at once.
        assert client.request("GET", "/v2/").status_code == 200
        answer = sock.recv(65536).decode()
        assert time.monotonic() - started < 5
        assert answer.startswith("HTTP/1.1 400")
        assert "stalled" in answer
    finally:
        sock.close()
    status = client.request("GET", location)
    assert status.headers["Range"] == "0-9"  # the bytes that arrived are kept


def test_a_tag_moved_by_another_process_is_seen_by_the_next_request_under_load(
    dockyard: DockyardServer,
) -> None:
    """The server keeps the manifests it reads while the metadata database is unchanged,
    and when busy asks SQLite whether it changed once per turn of its event loop. A request
    sent after another process moved a tag (here the test, through the database, as a
    second worker or `dockyard gc` would) gets the new manifest, however busy the server."""
    client = RegistryClient(dockyard.url)
    images = [client.push_image("moved/app", f"v{i}") for i in range(2)]
    url = f"{dockyard.url}/v2/moved/app/manifests/live"
    client.push_manifest("moved/app", "live", images[0].body)
    stop = threading.Event()

    def busy() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                session.get(url, timeout=10)

    load = [threading.Thread(target=busy) for _ in range(6)]
    for thread in load:
        thread.start()
    db = Database(dockyard.root / "metadata.db")
    store = ManifestStore(db, 4 * 1024 * 1024)
    try:
        with requests.Session() as session:
            for i in range(1, 80):
                image = images[i % 2]
                asyncio.run(
                    store.put("moved/app", "live", OCI_MANIFEST, image.body, check_references=False)
                )
                r = session.get(url, timeout=10)
                assert r.status_code == 200
                assert r.headers["Docker-Content-Digest"] == image.digest, f"move {i}"
    finally:
        stop.set()
        for thread in load:
            thread.join(15)
        db.close()


def test_workers_share_the_port_and_stop_together(tmp_path: Path) -> None:
    port = free_port()
    root = tmp_path / "root"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "serve", "--addr", f"127.0.0.1:{port}",
         "--root", str(root), "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
        # The PID that was started stays the supervisor: a small process (it never loads
        # the server) whose children are the two workers.
        status = Path(f"/proc/{proc.pid}/status").read_text()
        rss_kib = int(status.split("VmRSS:")[1].split()[0])
        assert rss_kib < 30 * 1024, status
        assert "dockyard.cli.workers" in Path(f"/proc/{proc.pid}/cmdline").read_text()
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 2
        client = RegistryClient(f"http://127.0.0.1:{port}")
        images = [client.push_image("workers/app", f"v{i}") for i in range(6)]
        # New connections land on either worker: everything committed is visible to both.
        for image in images:
            fresh = RegistryClient(f"http://127.0.0.1:{port}")
            assert fresh.request("GET", f"/v2/workers/app/manifests/{image.digest}").content == (
                image.body
            )
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert output.count('"msg": "listening"') == 2
    assert output.count('"msg": "stopped"') == 2


def test_workers_auto_starts_one_worker_per_available_cpu(tmp_path: Path) -> None:
    from dockyard.cli.workers import available_cpus

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "serve", "--addr", f"127.0.0.1:{port}",
             "--root", str(tmp_path / "root"), "--workers", "auto"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    expected = available_cpus()
    try:
        wait_http(f"http://127.0.0.1:{port}/v2/", proc=proc)
        deadline = time.monotonic() + 30
        while log.read_text().count('"msg": "listening"') < expected:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        if expected > 1:
            children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            assert len(children) == expected
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
    assert log.read_text().count('"msg": "stopped"') == expected


def test_a_stop_while_workers_start_is_a_clean_stop(tmp_path: Path) -> None:
    """SIGTERM that reaches a worker before it set up its handlers still exits 0."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "serve", "--addr", f"127.0.0.1:{port}",
         "--root", str(tmp_path / "root"), "--workers", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    # The supervisor has exec'd and started its workers; they are still importing.
    deadline = time.monotonic() + 30
    while "dockyard.cli.workers" not in Path(f"/proc/{proc.pid}/cmdline").read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "Traceback" not in output


def test_a_plain_registry_does_not_load_the_tls_token_or_bundle_libraries(
    dockyard: DockyardServer,
) -> None:
    # Every serving process pays for each library it maps (about 10 MB for these two).
    RegistryClient(dockyard.url).push_image("lean/app", "v1")
    assert dockyard.proc is not None
    maps = Path(f"/proc/{dockyard.proc.pid}/maps").read_text()
    for library in ("site-packages/cryptography", "site-packages/zstandard"):
        assert library not in maps, library
