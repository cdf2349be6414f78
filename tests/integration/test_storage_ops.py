"""Storage health: gc, du, df, quotas, scheduled collection, metrics (issue: storage ops)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from tests.integration.support.client import (
    OCI_MANIFEST,
    Pushed,
    RegistryClient,
    descriptor,
    error_codes,
    sha256,
)
from tests.integration.support.server import DockyardServer


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def gc(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = run_cli("gc", "--root", str(root), "--grace", "0s", *args)
    assert result.returncode == 0, result.stderr
    return result


def deleted_lines(output: str) -> set[str]:
    return {
        line.split(": ", 1)[1].split(" (", 1)[0]
        for line in output.splitlines()
        if line.startswith(("manifest ", "blob ")) and ": " in line
    }


def blob_files(root: Path) -> dict[str, int]:
    return {
        f"sha256:{p.name}": p.stat().st_size
        for p in (root / "blobs" / "sha256").rglob("*")
        if p.is_file()
    }


def test_gc_dry_run_lists_exactly_what_the_run_deletes(dockyard: DockyardServer) -> None:
    client = RegistryClient(dockyard.url)
    kept = client.push_image("gc/app", "keep", layers=2)
    dropped = client.push_image("gc/app", "drop", layers=2)
    client.request("DELETE", "/v2/gc/app/manifests/drop")
    stray = client.push_blob("gc/app", os.urandom(300))  # uploaded, never used by a manifest

    dry = gc(dockyard.root, "--dry-run", "--delete-untagged")
    planned = deleted_lines(dry.stdout)
    assert f"gc/app@{dropped.digest}" in planned
    assert stray in planned
    assert {sha256(b) for b in dropped.layers} | {sha256(dropped.config)} <= planned
    assert not any(kept.digest in p for p in planned)
    assert blob_files(dockyard.root).keys() >= {stray}  # a dry run deletes nothing

    real = gc(dockyard.root, "--delete-untagged")
    assert deleted_lines(real.stdout) == planned
    assert "freed" in real.stdout
    files = blob_files(dockyard.root)
    assert stray not in files
    assert sha256(dropped.layers[0]) not in files
    for blob in [kept.config, *kept.layers]:
        assert client.request("GET", f"/v2/gc/app/blobs/{sha256(blob)}").content == blob
    assert client.request("GET", "/v2/gc/app/manifests/keep").content == kept.body


def test_untagged_manifests_kept_without_the_flag(dockyard: DockyardServer) -> None:
    client = RegistryClient(dockyard.url)
    image = client.push_image("gc/untagged", "v1")
    client.request("DELETE", "/v2/gc/untagged/manifests/v1")
    gc(dockyard.root)
    assert client.request("GET", f"/v2/gc/untagged/manifests/{image.digest}").status_code == 200
    assert client.request("GET", f"/v2/gc/untagged/blobs/{sha256(image.config)}").status_code == 200
    gc(dockyard.root, "--delete-untagged")
    assert client.request("GET", f"/v2/gc/untagged/manifests/{image.digest}").status_code == 404
    assert sha256(image.config) not in blob_files(dockyard.root)


def test_referrers_kept_with_their_subject(dockyard: DockyardServer) -> None:
    client = RegistryClient(dockyard.url)
    subject = client.push_image("gc/signed", "v1")
    signature = client.push_image(
        "gc/signed", tag=None, subject=descriptor(subject), artifact_type="application/x.sig"
    )
    orphan_subject = client.push_image("gc/signed", "gone")
    orphan_sig = client.push_image(
        "gc/signed", tag=None, subject=descriptor(orphan_subject), artifact_type="application/x.sig"
    )
    client.request("DELETE", "/v2/gc/signed/manifests/gone")
    gc(dockyard.root, "--delete-untagged")
    assert client.request("GET", f"/v2/gc/signed/manifests/{signature.digest}").status_code == 200
    assert client.request("GET", f"/v2/gc/signed/manifests/{orphan_sig.digest}").status_code == 404
    r = client.request("GET", f"/v2/gc/signed/referrers/{subject.digest}")
    assert [m["digest"] for m in r.json()["manifests"]] == [signature.digest]


def test_index_children_kept(dockyard: DockyardServer) -> None:
    client = RegistryClient(dockyard.url)
    a = client.push_image("gc/multi", tag=None)
    b = client.push_image("gc/multi", tag=None)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [descriptor(a), descriptor(b)],
        }
    ).encode()
    client.push_manifest("gc/multi", "v1", index, "application/vnd.oci.image.index.v1+json")
    gc(dockyard.root, "--delete-untagged")
    for child in (a, b):
        assert client.request("GET", f"/v2/gc/multi/manifests/{child.digest}").content == child.body
        for blob in child.layers:
            assert client.request("GET", f"/v2/gc/multi/blobs/{sha256(blob)}").content == blob


def test_concurrent_pushes_during_gc_lose_nothing(dockyard: DockyardServer) -> None:
    pushed: list[Pushed] = []
    failures: list[str] = []
    stop = threading.Event()

    def push_loop(worker: int) -> None:
        client = RegistryClient(dockyard.url)
        for i in range(40):  # bounded
            if stop.is_set():
                return
            try:
                pushed.append(client.push_image(f"race/w{worker}", f"t{i}", layers=2))
            except AssertionError as exc:
                failures.append(str(exc))

    threads = [threading.Thread(target=push_loop, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    runs = 0
    deadline = time.monotonic() + 60
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        result = dockyard_cli_gc(dockyard.root)
        assert result.returncode == 0, result.stderr
        runs += 1
    stop.set()
    for t in threads:
        t.join(60)
    assert runs >= 2
    assert len(pushed) >= 30
    client = RegistryClient(dockyard.url)
    for image in pushed:
        tag_ok = client.request("GET", f"/v2/{image.repo}/manifests/{image.digest}")
        assert tag_ok.status_code == 200 and tag_ok.content == image.body
        for blob in [image.config, *image.layers]:
            got = client.request("GET", f"/v2/{image.repo}/blobs/{sha256(blob)}")
            assert got.status_code == 200 and got.content == blob
    # With a 2 s grace period a push is never refused because a collector ran.
    assert failures == []


def dockyard_cli_gc(root: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("gc", "--root", str(root), "--grace", "2s", "--delete-untagged")


def test_registry_garbage_collect_form(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    root = tmp_path / "store"
    config = tmp_path / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}\n"
        "  delete:\n    enabled: true\n  gc:\n    grace: 0s\n"
    )
    server = dockyard_factory("store", config=config, root_flag=False)
    client = RegistryClient(server.url)
    stray = client.push_blob("compat/app", os.urandom(100))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "registry"),
            "garbage-collect",
            "--dry-run",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert stray in result.stdout
    result = subprocess.run(
        [str(Path(sys.executable).parent / "registry"), "garbage-collect", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert stray not in blob_files(root)


def test_du_and_df_match_the_files(dockyard: DockyardServer) -> None:
    client = RegistryClient(dockyard.url)
    a = client.push_image("usage/a", "v1", layers=3)
    b = client.push_image("usage/b", "v1", layers=1)
    shared = os.urandom(5000)  # a layer both use
    for repo in ("usage/a", "usage/b"):
        client.push_blob(repo, shared)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(a.config if repo == "usage/a" else b.config),
                "size": len(a.config if repo == "usage/a" else b.config),
            },
            "layers": [
                {
                    "mediaType": "application/octet-stream",
                    "digest": sha256(shared),
                    "size": len(shared),
                }
            ],
        }
        client.push_manifest(repo, "shared", json.dumps(manifest).encode())
    files = blob_files(dockyard.root)
    df = run_cli("df", "--root", str(dockyard.root), "--format", "json")
    assert df.returncode == 0, df.stderr
    totals = json.loads(df.stdout)
    assert totals["blob_bytes"] == sum(files.values())
    assert totals["pushed_bytes"] == sum(files.values())
    assert totals["cached_bytes"] == 0
    st = os.statvfs(dockyard.root)
    assert totals["volume"]["size"] == st.f_blocks * st.f_frsize

    du = run_cli("du", "--root", str(dockyard.root), "--format", "json", "usage")
    rows = {r["name"]: r for r in json.loads(du.stdout)["repositories"]}
    manifests_a = client.request("GET", "/v2/usage/a/manifests/shared").content
    a_blobs = {sha256(x) for x in [a.config, *a.layers, shared]}
    assert rows["usage/a"]["referenced_bytes"] == sum(files[d] for d in a_blobs) + len(
        a.body
    ) + len(manifests_a)
    # The shared layer is not exclusive to either repository; a's config and layers are.
    exclusive_a = {sha256(x) for x in [a.config, *a.layers]}
    assert rows["usage/a"]["exclusive_bytes"] == sum(files[d] for d in exclusive_a) + len(
        a.body
    ) + len(manifests_a)
    assert rows["usage/a"]["manifests"] == 2
    assert rows["usage/a"]["tags"] == 2
    assert list(rows) == sorted(rows, key=lambda n: -rows[n]["referenced_bytes"])
    api = requests.get(f"{dockyard.url}/dockyard/api/v1/usage", timeout=10).json()
    assert api["store"]["blob_bytes"] == totals["blob_bytes"]
    assert {r["name"] for r in api["repositories"]} >= {"usage/a", "usage/b"}


def test_quota_refuses_push_past_it(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    config = tmp_path / "quota.yml"
    config.write_text(
        "storage:\n  quota:\n    repositories:\n      - prefix: team/\n        limit: 20KB\n"
    )
    server = dockyard_factory(config=config)
    client = RegistryClient(server.url)
    client.push_blob("team/app", os.urandom(15_000))
    big = os.urandom(10_000)
    r = client.request(
        "POST", "/v2/team/app/blobs/uploads/", params={"digest": sha256(big)}, data=big
    )
    assert r.status_code == 403
    assert error_codes(r) == ["DENIED"]
    assert "team/" in r.json()["errors"][0]["message"]
    assert client.request("HEAD", f"/v2/team/app/blobs/{sha256(big)}").status_code == 404
    # Other repositories are not limited by that quota.
    client.push_blob("other/app", big)
    # `dockyard df` shows the quota's state.
    df = run_cli("df", "--config", str(config), "--root", str(server.root), "--format", "json")
    assert df.returncode == 0, df.stderr
    quotas = json.loads(df.stdout)["quotas"]
    assert quotas == [{"prefix": "team/", "limit": 20_000, "used": 15_000, "state": "within"}]
    text = run_cli("df", "--config", str(config), "--root", str(server.root)).stdout
    assert "quota team/" in text


def test_scheduled_gc_and_metrics(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    config = tmp_path / "gc.yml"
    config.write_text("storage:\n  gc:\n    enabled: true\n    interval: 1s\n    grace: 0s\n")
    server = dockyard_factory(config=config)
    client = RegistryClient(server.url)
    image = client.push_image("sched/app", "v1")
    stray = client.push_blob("sched/app", os.urandom(200))
    deadline = time.monotonic() + 15
    while stray in blob_files(server.root) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stray not in blob_files(server.root)
    assert client.request("GET", "/v2/sched/app/manifests/v1").content == image.body
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'dockyard_storage_bytes{kind="pushed"}' in metrics
    assert "dockyard_gc_runs_total" in metrics
    runs = [line for line in metrics.splitlines() if line.startswith("dockyard_gc_runs_total")]
    assert float(runs[0].split()[-1]) >= 1
    assert 'dockyard_http_requests_total{method="PUT",route="manifest",status="201"}' in metrics
    assert "dockyard_http_request_duration_seconds_bucket" in metrics


def test_requests_are_counted_with_the_access_log_off(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    config = tmp_path / "quiet.yml"
    config.write_text("log:\n  accesslog:\n    disabled: true\n")
    server = dockyard_factory(config=config)
    client = RegistryClient(server.url)
    image = client.push_image("quiet/app", "v1")
    for _ in range(3):
        assert client.request("GET", "/v2/quiet/app/manifests/v1").content == image.body
    assert client.request("GET", "/v2/quiet/app/manifests/nope").status_code == 404
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    counted = 'dockyard_http_requests_total{method="GET",route="manifest",status="%d"} %s'
    assert counted % (200, "3.0") in metrics, metrics
    assert counted % (404, "1.0") in metrics, metrics
    sent = [line for line in metrics.splitlines() if line.startswith("dockyard_http_response_b")]
    assert float(sent[0].split()[-1]) >= 3 * len(image.body)
    assert server.requests() == []  # and no access-log line


def test_retention_keeps_newest_and_recently_pulled_tags(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    config = tmp_path / "retention.yml"
    config.write_text(
        "storage:\n  gc:\n    grace: 0s\n  retention:\n"
        "    - repositories: 'ret/*'\n      keeptags: 2\n      pulledwithin: 1h\n"
    )
    server = dockyard_factory(config=config)
    client = RegistryClient(server.url)
    images = []
    for i in range(4):
        images.append(client.push_image("ret/app", f"t{i}"))
        time.sleep(0.05)  # distinct push times
    other = [client.push_image("keep/app", f"t{i}") for i in range(3)]
    assert client.request("GET", "/v2/ret/app/manifests/t0").status_code == 200
    server.restart()  # a clean stop writes the pull times

    def collect(*args: str) -> set[str]:
        result = run_cli("gc", "--config", str(config), "--root", str(server.root), *args)
        assert result.returncode == 0, result.stderr
        return deleted_lines(result.stdout) | {
            line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith("tag ")
        }

    planned = collect("--dry-run")
    assert "ret/app:t1" in planned  # neither among the 2 newest nor pulled lately
    assert not {"ret/app:t0", "ret/app:t2", "ret/app:t3"} & planned
    assert f"ret/app@{images[1].digest}" in planned
    assert collect() == planned
    tags = client.request("GET", "/v2/ret/app/tags/list").json()["tags"]
    assert tags == ["t0", "t2", "t3"]
    assert client.request("GET", f"/v2/ret/app/manifests/{images[1].digest}").status_code == 404
    assert client.request("GET", "/v2/keep/app/tags/list").json()["tags"] == ["t0", "t1", "t2"]
    assert len(other) == 3
