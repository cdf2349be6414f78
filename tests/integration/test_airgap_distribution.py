"""Migrating a store written by Debian's `docker-registry` (Distribution 2.8) into Dockyard.

skopeo pushes an OCI image, a Docker schema 2 image, a two-platform index and two images
that are then deleted again (one of them shares its manifest with a live tag, so deleting
it takes that tag too). `dockyard import --distribution-root` reads the files Distribution
left — without its server — and every live tag then pulls back from Dockyard with the
digest it had; the deleted ones are reported as skipped and stay gone.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.support.images import add_index, build_image, run
from tests.integration.support.server import DistributionServer, DockyardServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def dockyard_cli(*args: str | Path) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def push(layout: Path, tag: str, dest: str, *flags: str) -> str:
    digest_file = layout.parent / f"digest-{os.urandom(4).hex()}"
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        f"--digestfile={digest_file}",
        *flags,
        f"oci:{layout}:{tag}",
        f"docker://{dest}",
    )
    return digest_file.read_text().strip()


def pulled_digest(host: str, ref: str, workdir: Path) -> str:
    """Copy the image (all platforms, every blob) out of a registry, as it is stored there
    (the `dir:` transport keeps the manifest's bytes); the digest of its manifest."""
    target = workdir / f"pulled-{os.urandom(4).hex()}"
    run(
        "skopeo",
        "copy",
        "--all",
        "--src-tls-verify=false",
        f"docker://{host}/{ref}",
        f"dir:{target}",
    )
    return "sha256:" + hashlib.sha256((target / "manifest.json").read_bytes()).hexdigest()


def test_distribution_store_migrates_completely(
    tmp_path: Path,
    distribution_factory: Callable[..., DistributionServer],
    dockyard_factory: Callable[..., DockyardServer],
) -> None:
    layout = tmp_path / "oci"
    build_image(layout, "amd64", "amd64")
    build_image(layout, "arm64", "arm64")
    build_image(layout, "extra", "amd64", files={"extra.txt": "only in the deleted image\n"})
    add_index(layout, "multi", {"amd64": "amd64", "arm64": "arm64"})

    distribution = distribution_factory()
    host = distribution.host
    live = {
        "team/app:oci": push(layout, "amd64", f"{host}/team/app:oci"),
        "team/app:docker": push(layout, "arm64", f"{host}/team/app:docker", "--format=v2s2"),
        "team/app:also-oci": push(layout, "amd64", f"{host}/team/app:also-oci"),
        "multi:2.0": push(layout, "multi", f"{host}/multi:2.0", "--all"),
        "deep/nested/name:1": push(layout, "arm64", f"{host}/deep/nested/name:1"),
    }
    gone = push(layout, "extra", f"{host}/team/app:gone")
    run("skopeo", "delete", "--tls-verify=false", f"docker://{host}/team/app:gone")
    # Two tags on one manifest, deleted by digest: both tags go with it.
    shared = push(layout, "arm64", f"{host}/other:temp", "--format=v2s2")
    assert push(layout, "arm64", f"{host}/other:temp2", "--format=v2s2") == shared
    run("skopeo", "delete", "--tls-verify=false", f"docker://{host}/other@{shared}")
    assert [pulled_digest(host, ref, tmp_path) for ref in live] == list(live.values())
    distribution.stop()
    store = distribution.workdir / f"store-{distribution.port}"

    root = tmp_path / "dockyard"
    out = dockyard_cli("import", "--root", root, "--distribution-root", store)
    assert f"team/app@{gone}: manifest deleted (no revision link)" in out, out
    assert f"other@{shared}: manifest deleted (no revision link)" in out, out
    for ref in live:
        assert f"new       {ref}" in out, out
    assert ":gone" not in out and ":temp" not in out

    dockyard = dockyard_factory("dockyard")
    assert dockyard.root == root
    for ref, digest in live.items():
        assert pulled_digest(dockyard.host, ref, tmp_path) == digest, ref
    tags = json.loads(
        run("skopeo", "list-tags", "--tls-verify=false", f"docker://{dockyard.host}/team/app")
    )
    assert sorted(tags["Tags"]) == ["also-oci", "docker", "oci"]
    missing = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", f"docker://{dockyard.host}/team/app:gone"],
        capture_output=True,
        timeout=60,
    )
    assert missing.returncode != 0

    # Again: nothing is copied or rewritten twice.
    again = dockyard_cli(
        "import", "--root", root, "--distribution-root", store / "docker/registry/v2"
    )
    assert "0 new, 0 updated" in again and "0 blob(s) written" in again, again
