"""skopeo against a real `dockyard serve`: copy in and out, inspect, list-tags, delete.

Every image is built offline with umoci; digests change from run to run, so every
expectation is computed from the source OCI layout, never hard-coded.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support.images import add_index, build_image, run
from tests.integration.support.server import DockyardServer

pytestmark = pytest.mark.integration

TIMEOUT = 60.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ALL_MANIFEST_TYPES = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


# --- helpers -------------------------------------------------------------------------


def skopeo(*args: str | Path) -> str:
    return run("skopeo", *args, timeout=TIMEOUT)


def skopeo_bytes(*args: str | Path) -> bytes:
    """Run skopeo and return its stdout as bytes (raw manifests must be compared exactly)."""
    result = subprocess.run(
        ["skopeo", *map(str, args)], capture_output=True, timeout=TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"skopeo {' '.join(map(str, args))} failed ({result.returncode}):\n"
            f"{result.stderr.decode(errors='replace')}"
        )
    return result.stdout


def skopeo_fails(*args: str | Path) -> str:
    """Run skopeo, require it to fail, and return its stderr."""
    result = subprocess.run(
        ["skopeo", *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode != 0, (
        f"skopeo {' '.join(map(str, args))} unexpectedly succeeded:\n{result.stdout}"
    )
    return result.stderr


def skopeo_debug(*args: str | Path) -> str:
    """Run `skopeo --debug ...`, require success, return the debug log (stderr)."""
    result = subprocess.run(
        ["skopeo", "--debug", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"skopeo --debug {' '.join(map(str, args))} failed ({result.returncode}):\n"
            f"{result.stderr}"
        )
    return result.stderr


def skopeo_parallel(commands: list[list[str]]) -> None:
    """Run several skopeo commands at once; all must succeed."""
    procs = [
        subprocess.Popen(
            ["skopeo", *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for cmd in commands
    ]
    failures = []
    try:
        for cmd, proc in zip(commands, procs, strict=True):
            _, err = proc.communicate(timeout=TIMEOUT)
            if proc.returncode != 0:
                failures.append(f"skopeo {' '.join(cmd)} ({proc.returncode}):\n{err}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert not failures, "\n".join(failures)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layout_digest(layout: Path, tag: str) -> str:
    """The digest `tag` points at in an OCI layout's index.json."""
    index = json.loads((layout / "index.json").read_text())
    for desc in index["manifests"]:
        if (desc.get("annotations") or {}).get("org.opencontainers.image.ref.name") == tag:
            return str(desc["digest"])
    raise AssertionError(f"tag {tag!r} not in {layout}/index.json: {index}")


def layout_blob(layout: Path, digest: str) -> bytes:
    algorithm, hex_ = digest.split(":", 1)
    return (layout / "blobs" / algorithm / hex_).read_bytes()


def layout_json(layout: Path, digest: str) -> Any:
    return json.loads(layout_blob(layout, digest))


def image_digests(layout: Path, digest: str) -> list[str]:
    """Every digest reachable from `digest`: the manifest or index, children, configs, layers."""
    doc = layout_json(layout, digest)
    digests = [digest]
    if "manifests" in doc:
        for child in doc["manifests"]:
            digests += image_digests(layout, child["digest"])
    else:
        digests.append(doc["config"]["digest"])
        digests += [layer["digest"] for layer in doc["layers"]]
    return digests


def assert_same_image(src: Path, src_tag: str, dst: Path, dst_tag: str) -> None:
    """The image `dst_tag` in `dst` is byte-for-byte the image `src_tag` in `src`."""
    digest = layout_digest(src, src_tag)
    assert layout_digest(dst, dst_tag) == digest
    for blob_digest in image_digests(src, digest):
        data = layout_blob(dst, blob_digest)
        assert sha256(data) == blob_digest
        assert data == layout_blob(src, blob_digest), blob_digest


def request(
    server: DockyardServer, method: str, path: str, accept: str = ALL_MANIFEST_TYPES
) -> tuple[int, Message[str, str], bytes]:
    """One plain HTTP request to the server under test (loopback only)."""
    req = urllib.request.Request(server.url + path, method=method, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers, err.read()


def assert_manifest_served(
    server: DockyardServer, repo: str, reference: str, body: bytes, media_type: str
) -> None:
    """GET and HEAD of the manifest agree with `body` on digest, type and length."""
    digest = sha256(body)
    status, headers, got = request(server, "GET", f"/v2/{repo}/manifests/{reference}")
    assert status == 200, (status, got)
    assert got == body
    assert headers["Docker-Content-Digest"] == digest
    assert headers["Content-Type"] == media_type
    assert int(headers["Content-Length"]) == len(body)
    status, headers, got = request(server, "HEAD", f"/v2/{repo}/manifests/{reference}")
    assert status == 200
    assert got == b""
    assert headers["Docker-Content-Digest"] == digest
    assert headers["Content-Type"] == media_type
    assert int(headers["Content-Length"]) == len(body)


def inspect(ref: str, *extra: str) -> Any:
    return json.loads(skopeo("inspect", "--tls-verify=false", *extra, ref))


def list_tags(ref: str) -> list[str]:
    return sorted(json.loads(skopeo("list-tags", "--tls-verify=false", ref))["Tags"] or [])


# --- tests ---------------------------------------------------------------------------


def test_single_platform_image(dockyard: DockyardServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_image(src, "v1", "amd64", {"hello.txt": "one\n", "etc/motd": "first image\n"})
    build_image(src, "v2", "amd64", {"hello.txt": "two\n"})
    v1 = layout_digest(src, "v1")
    v2 = layout_digest(src, "v2")
    assert v1 != v2
    repo = "team/app/hello"
    ref = f"docker://{dockyard.host}/{repo}"

    for tag in ("v1", "v2"):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:{tag}", f"{ref}:{tag}")

    # Pull back into a fresh layout: manifest, config and layer bytes are unchanged.
    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", f"{ref}:v1", f"oci:{back}:v1")
    assert_same_image(src, "v1", back, "v1")
    skopeo("copy", "--src-tls-verify=false", f"{ref}@{v2}", f"oci:{back}:v2")
    assert_same_image(src, "v2", back, "v2")

    # inspect
    manifest = layout_json(src, v1)
    info = inspect(f"{ref}:v1")
    assert info["Name"] == f"{dockyard.host}/{repo}"
    assert info["Digest"] == v1
    assert sorted(info["RepoTags"]) == ["v1", "v2"]
    assert info["Architecture"] == "amd64"
    assert info["Os"] == "linux"
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]

    # inspect --raw: the exact bytes pushed, whose digest the server reports.
    raw = skopeo_bytes("inspect", "--raw", "--tls-verify=false", f"{ref}:v1")
    assert raw == layout_blob(src, v1)
    assert sha256(raw) == v1
    assert_manifest_served(dockyard, repo, "v1", raw, OCI_MANIFEST)
    assert_manifest_served(dockyard, repo, v1, raw, OCI_MANIFEST)
    assert skopeo_bytes("inspect", "--raw", "--tls-verify=false", f"{ref}@{v1}") == raw

    raw_config = skopeo_bytes("inspect", "--config", "--raw", "--tls-verify=false", f"{ref}:v1")
    assert raw_config == layout_blob(src, manifest["config"]["digest"])

    # list-tags
    assert list_tags(ref) == ["v1", "v2"]

    # A missing tag is reported with the registry's MANIFEST_UNKNOWN error.
    err = skopeo_fails("inspect", "--tls-verify=false", f"{ref}:nope")
    assert "manifest unknown" in err.lower(), err

    # delete v1: gone by tag and by digest; v2 is untouched.
    skopeo("delete", "--tls-verify=false", f"{ref}:v1")
    err = skopeo_fails("inspect", "--tls-verify=false", f"{ref}:v1")
    assert "manifest unknown" in err.lower(), err
    err = skopeo_fails("inspect", "--raw", "--tls-verify=false", f"{ref}@{v1}")
    assert "manifest unknown" in err.lower(), err
    assert request(dockyard, "HEAD", f"/v2/{repo}/manifests/{v1}")[0] == 404
    assert list_tags(ref) == ["v2"]
    assert inspect(f"{ref}:v2")["Digest"] == v2
    again = tmp_path / "again"
    skopeo("copy", "--src-tls-verify=false", f"{ref}:v2", f"oci:{again}:v2")
    assert_same_image(src, "v2", again, "v2")


def test_two_platform_oci_index(dockyard: DockyardServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_image(src, "amd64", "amd64")
    build_image(src, "arm64", "arm64")
    index_digest = add_index(src, "multi", {"amd64": "amd64", "arm64": "arm64"})
    children = {"amd64": layout_digest(src, "amd64"), "arm64": layout_digest(src, "arm64")}
    repo = "multi/app"
    ref = f"docker://{dockyard.host}/{repo}"

    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{src}:multi", f"{ref}:multi")

    # The index comes back byte-identical, and so does everything under both children.
    back = tmp_path / "back"
    skopeo("copy", "--all", "--src-tls-verify=false", f"{ref}:multi", f"oci:{back}:multi")
    assert_same_image(src, "multi", back, "multi")

    # Each child pulls on its own, by platform and by digest.
    for arch, child in children.items():
        one = tmp_path / f"one-{arch}"
        skopeo(
            "--override-arch",
            arch,
            "--override-os",
            "linux",
            "copy",
            "--src-tls-verify=false",
            f"{ref}:multi",
            f"oci:{one}:{arch}",
        )
        assert_same_image(src, arch, one, arch)
        by_digest = tmp_path / f"digest-{arch}"
        skopeo("copy", "--src-tls-verify=false", f"{ref}@{child}", f"oci:{by_digest}:{arch}")
        assert_same_image(src, arch, by_digest, arch)

        raw_child = skopeo_bytes("inspect", "--raw", "--tls-verify=false", f"{ref}@{child}")
        assert raw_child == layout_blob(src, child)
        assert_manifest_served(dockyard, repo, child, raw_child, OCI_MANIFEST)

        info = json.loads(
            skopeo("--override-arch", arch, "inspect", "--tls-verify=false", f"{ref}:multi")
        )
        # skopeo reports the digest of what the tag names (the index) and the chosen
        # child's configuration.
        assert info["Digest"] == index_digest
        assert info["Architecture"] == arch
        assert info["Layers"] == [layer["digest"] for layer in layout_json(src, child)["layers"]]

    # inspect --raw gives the index itself, with the digest the server reports.
    raw = skopeo_bytes("inspect", "--raw", "--tls-verify=false", f"{ref}:multi")
    assert raw == layout_blob(src, index_digest)
    assert sha256(raw) == index_digest
    index = json.loads(raw)
    assert index["mediaType"] == OCI_INDEX
    assert {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]} == children
    assert_manifest_served(dockyard, repo, "multi", raw, OCI_INDEX)
    assert_manifest_served(dockyard, repo, index_digest, raw, OCI_INDEX)

    assert list_tags(ref) == ["multi"]

    skopeo("delete", "--tls-verify=false", f"{ref}:multi")
    err = skopeo_fails("inspect", "--raw", "--tls-verify=false", f"{ref}:multi")
    assert "manifest unknown" in err.lower(), err
    err = skopeo_fails("inspect", "--raw", "--tls-verify=false", f"{ref}@{index_digest}")
    assert "manifest unknown" in err.lower(), err
    assert "multi" not in list_tags(ref)


def test_docker_schema2_image(dockyard: DockyardServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_image(src, "v1", "amd64", {"hello.txt": "docker format\n"})
    oci_manifest = layout_json(src, layout_digest(src, "v1"))
    repo = "legacy/docker-app"
    ref = f"docker://{dockyard.host}/{repo}"

    skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false", f"oci:{src}:v1", f"{ref}:v1")

    raw = skopeo_bytes("inspect", "--raw", "--tls-verify=false", f"{ref}:v1")
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == DOCKER_CONFIG
    assert manifest["config"]["digest"] == oci_manifest["config"]["digest"]
    assert [layer["mediaType"] for layer in manifest["layers"]] == [DOCKER_LAYER]
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer["digest"] for layer in oci_manifest["layers"]
    ]
    digest = sha256(raw)
    assert_manifest_served(dockyard, repo, "v1", raw, DOCKER_MANIFEST)
    assert_manifest_served(dockyard, repo, digest, raw, DOCKER_MANIFEST)

    info = inspect(f"{ref}:v1")
    assert info["Digest"] == digest
    assert info["Architecture"] == "amd64"
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]

    # `dir:` keeps the manifest as served: everything comes back byte-identical.
    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", f"{ref}:v1", f"dir:{back}")
    assert (back / "manifest.json").read_bytes() == raw
    for blob_digest in [manifest["config"]["digest"]] + [d["digest"] for d in manifest["layers"]]:
        data = (back / blob_digest.split(":", 1)[1]).read_bytes()
        assert data == layout_blob(src, blob_digest)

    assert list_tags(ref) == ["v1"]

    skopeo("delete", "--tls-verify=false", f"{ref}:v1")
    err = skopeo_fails("inspect", "--tls-verify=false", f"{ref}:v1")
    assert "manifest unknown" in err.lower(), err
    err = skopeo_fails("inspect", "--raw", "--tls-verify=false", f"{ref}@{digest}")
    assert "manifest unknown" in err.lower(), err


def test_copy_to_second_repository_mounts_blobs(dockyard: DockyardServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_image(src, "v1", "amd64", {"hello.txt": "shared between repositories\n"})
    digest = layout_digest(src, "v1")
    layers = [layer["digest"] for layer in layout_json(src, digest)["layers"]]
    first = f"docker://{dockyard.host}/first/app"
    second = f"docker://{dockyard.host}/second/app"

    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"{first}:v1")
    # skopeo now remembers where the layers live and mounts them instead of uploading.
    log = skopeo_debug("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"{second}:v1")
    for layer in layers:
        assert f"from=first%2Fapp&mount={layer.replace(':', '%3A')}" in log, log
    assert log.count("... mount OK") == len(layers), log

    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", f"{second}:v1", f"oci:{back}:v1")
    assert_same_image(src, "v1", back, "v1")
    assert inspect(f"{second}:v1")["Digest"] == digest
    assert list_tags(second) == ["v1"]

    # The mounted blob belongs to the second repository in its own right: removing it
    # from the first one leaves the second intact.
    for layer in layers:
        status, _, body = request(dockyard, "DELETE", f"/v2/first/app/blobs/{layer}")
        assert status == 202, (status, body)
        assert request(dockyard, "HEAD", f"/v2/first/app/blobs/{layer}")[0] == 404
        status, headers, body = request(dockyard, "GET", f"/v2/second/app/blobs/{layer}")
        assert status == 200
        assert body == layout_blob(src, layer)
        assert headers["Docker-Content-Digest"] == layer
    again = tmp_path / "again"
    skopeo("copy", "--src-tls-verify=false", f"{second}:v1", f"oci:{again}:v1")
    assert_same_image(src, "v1", again, "v1")

    # Registry to registry: skopeo reads from the second repository and mounts into a third.
    third = f"docker://{dockyard.host}/third/app"
    log = skopeo_debug(
        "copy", "--src-tls-verify=false", "--dest-tls-verify=false", f"{second}:v1", f"{third}:v1"
    )
    assert log.count("... mount OK") == len(layers), log
    third_back = tmp_path / "third"
    skopeo("copy", "--src-tls-verify=false", f"{third}:v1", f"oci:{third_back}:v1")
    assert_same_image(src, "v1", third_back, "v1")


def test_pushing_a_tag_again_moves_it(dockyard: DockyardServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_image(src, "old", "amd64", {"hello.txt": "old\n"})
    build_image(src, "new", "amd64", {"hello.txt": "new\n"})
    old, new = layout_digest(src, "old"), layout_digest(src, "new")
    ref = f"docker://{dockyard.host}/moving/app"

    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:old", f"{ref}:latest")
    assert inspect(f"{ref}:latest")["Digest"] == old
    # The same image again: nothing changes.
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:old", f"{ref}:latest")
    assert inspect(f"{ref}:latest")["Digest"] == old
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:new", f"{ref}:latest")
    assert inspect(f"{ref}:latest")["Digest"] == new
    assert list_tags(ref) == ["latest"]

    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", f"{ref}:latest", f"oci:{back}:latest")
    assert_same_image(src, "new", back, "latest")
    # The untagged image is still there by digest.
    skopeo("copy", "--src-tls-verify=false", f"{ref}@{old}", f"oci:{back}:old")
    assert_same_image(src, "old", back, "old")


def test_docker_manifest_list(dockyard: DockyardServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_image(src, "amd64", "amd64", {"hello.txt": "docker amd64\n"})
    build_image(src, "arm64", "arm64", {"hello.txt": "docker arm64\n"})
    add_index(src, "multi", {"amd64": "amd64", "arm64": "arm64"})
    repo = "legacy/list"
    ref = f"docker://{dockyard.host}/{repo}"

    # --format v2s2 with --all turns the OCI index into a Docker manifest list.
    skopeo(
        "copy",
        "--all",
        "--format",
        "v2s2",
        "--dest-tls-verify=false",
        f"oci:{src}:multi",
        f"{ref}:v1",
    )

    raw = skopeo_bytes("inspect", "--raw", "--tls-verify=false", f"{ref}:v1")
    manifest_list = json.loads(raw)
    assert manifest_list["mediaType"] == DOCKER_LIST
    assert_manifest_served(dockyard, repo, "v1", raw, DOCKER_LIST)
    assert_manifest_served(dockyard, repo, sha256(raw), raw, DOCKER_LIST)
    children = {m["platform"]["architecture"]: m for m in manifest_list["manifests"]}
    assert sorted(children) == ["amd64", "arm64"]

    for arch, desc in children.items():
        assert desc["mediaType"] == DOCKER_MANIFEST
        child_raw = skopeo_bytes(
            "inspect", "--raw", "--tls-verify=false", f"{ref}@{desc['digest']}"
        )
        assert sha256(child_raw) == desc["digest"]
        assert len(child_raw) == desc["size"]
        assert_manifest_served(dockyard, repo, desc["digest"], child_raw, DOCKER_MANIFEST)

        back = tmp_path / f"back-{arch}"
        skopeo(
            "--override-arch", arch, "copy", "--src-tls-verify=false", f"{ref}:v1", f"dir:{back}"
        )
        assert (back / "manifest.json").read_bytes() == child_raw
        child = json.loads(child_raw)
        oci_child = layout_json(src, layout_digest(src, arch))
        assert [d["digest"] for d in child["layers"]] == [d["digest"] for d in oci_child["layers"]]
        for d in child["layers"]:
            blob_bytes = (back / d["digest"].split(":", 1)[1]).read_bytes()
            assert blob_bytes == layout_blob(src, d["digest"])


def test_large_layer(dockyard: DockyardServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    # Random hex does not compress much: a layer of several MiB, streamed by skopeo's
    # single chunked PATCH.
    build_image(src, "big", "amd64", {"big.txt": os.urandom(4 * 1024 * 1024).hex()})
    digest = layout_digest(src, "big")
    layer = layout_json(src, digest)["layers"][0]
    assert layer["size"] > 4 * 1024 * 1024
    ref = f"docker://{dockyard.host}/big/image"

    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:big", f"{ref}:v1")
    status, headers, body = request(dockyard, "HEAD", f"/v2/big/image/blobs/{layer['digest']}")
    assert status == 200
    assert body == b""
    assert int(headers["Content-Length"]) == layer["size"]
    assert headers["Docker-Content-Digest"] == layer["digest"]

    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", f"{ref}:v1", f"oci:{back}:v1")
    assert_same_image(src, "big", back, "v1")


def test_zstd_layers(dockyard: DockyardServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_image(src, "v1", "amd64", {"hello.txt": "zstd compressed\n"})
    ref = f"docker://{dockyard.host}/zstd/image"

    skopeo(
        "copy",
        "--dest-compress",
        "--dest-compress-format",
        "zstd",
        "--dest-tls-verify=false",
        f"oci:{src}:v1",
        f"{ref}:v1",
    )
    raw = skopeo_bytes("inspect", "--raw", "--tls-verify=false", f"{ref}:v1")
    manifest = json.loads(raw)
    assert [d["mediaType"] for d in manifest["layers"]] == [
        "application/vnd.oci.image.layer.v1.tar+zstd"
    ]
    assert_manifest_served(
        dockyard, repo="zstd/image", reference="v1", body=raw, media_type=OCI_MANIFEST
    )

    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", f"{ref}:v1", f"oci:{back}:v1")
    assert layout_digest(back, "v1") == sha256(raw)
    for d in [manifest["config"], *manifest["layers"]]:
        data = layout_blob(back, d["digest"])
        assert sha256(data) == d["digest"]
        assert len(data) == d["size"]
    assert layout_blob(back, manifest["layers"][0]["digest"])[:4] == b"\x28\xb5\x2f\xfd"


def test_concurrent_copies(dockyard: DockyardServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    tags = [f"t{i}" for i in range(5)]
    for tag in tags:
        build_image(src, tag, "amd64", {"data.txt": os.urandom(256 * 1024).hex()})
    same = f"docker://{dockyard.host}/race/same"
    different = f"docker://{dockyard.host}/race/different"

    # The same blobs uploaded by five clients at once, and five different images at once.
    skopeo_parallel(
        [
            ["copy", "-q", "--dest-tls-verify=false", f"oci:{src}:t0", f"{same}:{tag}"]
            for tag in tags
        ]
        + [
            ["copy", "-q", "--dest-tls-verify=false", f"oci:{src}:{tag}", f"{different}:{tag}"]
            for tag in tags
        ]
    )
    assert list_tags(same) == tags
    assert list_tags(different) == tags

    back = tmp_path / "back"
    skopeo_parallel(
        [
            [
                "copy",
                "-q",
                "--src-tls-verify=false",
                f"{ref}:{tag}",
                f"oci:{back}-{name}-{tag}:{tag}",
            ]
            for name, ref in (("same", same), ("different", different))
            for tag in tags
        ]
    )
    for tag in tags:
        assert_same_image(src, "t0", Path(f"{back}-same-{tag}"), tag)
        assert_same_image(src, tag, Path(f"{back}-different-{tag}"), tag)


def test_images_survive_restart(dockyard: DockyardServer, tmp_path: Path) -> None:
    src = tmp_path / "src"
    build_image(src, "v1", "amd64")
    build_image(src, "arm64", "arm64")
    add_index(src, "multi", {"amd64": "v1", "arm64": "arm64"})
    ref = f"docker://{dockyard.host}/durable/app"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"{ref}:v1")
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{src}:multi", f"{ref}:multi")

    dockyard.restart()

    assert list_tags(ref) == ["multi", "v1"]
    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", f"{ref}:v1", f"oci:{back}:v1")
    assert_same_image(src, "v1", back, "v1")
    skopeo("copy", "--all", "--src-tls-verify=false", f"{ref}:multi", f"oci:{back}:multi")
    assert_same_image(src, "multi", back, "multi")


def test_delete_refused_when_deletes_disabled(
    dockyard_factory: Callable[..., DockyardServer], tmp_path: Path
) -> None:
    server = dockyard_factory("no-deletes")  # storage.delete.enabled defaults to false
    src = tmp_path / "src"
    build_image(src, "v1", "amd64")
    digest = layout_digest(src, "v1")
    ref = f"docker://{server.host}/keep/app"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"{ref}:v1")

    err = skopeo_fails("delete", "--tls-verify=false", f"{ref}:v1")
    assert "405" in err and "UNSUPPORTED" in err, err
    assert inspect(f"{ref}:v1")["Digest"] == digest
    assert list_tags(ref) == ["v1"]


def test_sparse_index_with_validation_manifests_indexes(
    dockyard_factory: Callable[..., DockyardServer], tmp_path: Path
) -> None:
    """Distribution 3's validation.manifests.indexes: with `platforms: list`, an index is
    accepted when the listed platforms are present (the others may be missing), so a site
    keeps a multi-platform image's index and digest with only the platform it runs."""
    config = tmp_path / "sparse.yml"
    config.write_text(
        "validation:\n  manifests:\n    indexes:\n      platforms: List\n"
        "      platformlist:\n        - os: linux\n          architecture: amd64\n"
    )
    sparse = dockyard_factory("sparse", config=config)
    strict = dockyard_factory("strict")
    assert "image indexes may be pushed without all of their images" in sparse.log()
    src = tmp_path / "src"
    build_image(src, "amd64", "amd64")
    build_image(src, "arm64", "arm64")
    index_digest = add_index(src, "multi", {"amd64": "amd64", "arm64": "arm64"})
    amd64, arm64 = layout_digest(src, "amd64"), layout_digest(src, "arm64")

    def push_index_only(server: DockyardServer) -> str:
        args = ["copy", "--multi-arch=index-only", "--dest-tls-verify=false"]
        return run_skopeo(*args, f"oci:{src}:multi", f"docker://{server.host}/edge/app:multi")

    # Neither registry takes the index while its amd64 image is missing.
    for server in (sparse, strict):
        result = push_index_only(server)
        assert "manifest blob unknown" in result.lower(), result
    # With amd64 stored (arm64 still missing), the list-validating registry takes it.
    for server in (sparse, strict):
        skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:amd64",
               f"docker://{server.host}/edge/app:amd64")  # fmt: skip
    assert push_index_only(sparse) == ""
    assert "manifest blob unknown" in push_index_only(strict).lower()
    # The error names the image the strict registry misses: arm64 alone.
    put = urllib.request.Request(
        f"{strict.url}/v2/edge/app/manifests/multi",
        data=layout_blob(src, index_digest),
        method="PUT",
        headers={"Content-Type": OCI_INDEX},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(put, timeout=10)
    assert refused.value.code == 400
    error = json.loads(refused.value.read())["errors"][0]
    assert (error["code"], error["detail"]["missing"]) == ("MANIFEST_BLOB_UNKNOWN", [arm64])

    ref = f"docker://{sparse.host}/edge/app"
    raw = skopeo_bytes("inspect", "--raw", "--tls-verify=false", f"{ref}:multi")
    assert raw == layout_blob(src, index_digest)
    assert_manifest_served(sparse, "edge/app", index_digest, raw, OCI_INDEX)
    # The stored platform pulls through the index; the missing one is not found.
    one = tmp_path / "one-amd64"
    skopeo("--override-arch", "amd64", "--override-os", "linux", "copy",
           "--src-tls-verify=false", f"{ref}:multi", f"oci:{one}:amd64")  # fmt: skip
    assert_same_image(src, "amd64", one, "amd64")
    missing = f"oci:{tmp_path / 'none'}:arm64"
    err = skopeo_fails("--override-arch", "arm64", "--override-os", "linux", "copy",
                       "--src-tls-verify=false", f"{ref}:multi", missing)  # fmt: skip
    assert "manifest unknown" in err.lower(), err
    assert layout_blob(src, amd64) == skopeo_bytes(
        "inspect", "--raw", "--tls-verify=false", f"{ref}@{amd64}"
    )


def run_skopeo(*args: str) -> str:
    """Run skopeo; return "" on success, its stderr on failure."""
    result = subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    return "" if result.returncode == 0 else result.stderr
