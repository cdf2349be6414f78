"""podman and buildah against a real `dockyard serve`: pull, push, build and push.

podman and buildah each get their own vfs storage (`--root/--runroot`) under tmp_path, so
nothing touches the machine's image store. `podman push` recompresses layers, so pushed
images are checked by content (files, diff IDs, config), not by layer digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support.images import add_index, build_image, run
from tests.integration.support.server import DockyardServer

pytestmark = pytest.mark.integration

TIMEOUT = 120.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ALL_MANIFEST_TYPES = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])


# --- helpers -------------------------------------------------------------------------


@pytest.fixture
def runroots() -> Iterator[Path]:
    """A short directory for run roots: containers-storage refuses a runroot over 50 chars."""
    with tempfile.TemporaryDirectory(prefix="dy-", dir="/tmp", ignore_cleanup_errors=True) as d:
        yield Path(d)


class Store:
    """A private containers-storage (vfs) used by one podman or buildah "machine"."""

    def __init__(self, tool: str, base: Path, runroots: Path) -> None:
        self.tool = tool
        self.root = base / "root"
        self.runroot = runroots / f"{tool}-{base.name}"
        self.root.mkdir(parents=True, exist_ok=True)
        self.runroot.mkdir(parents=True, exist_ok=True)
        assert len(str(self.runroot)) <= 50, self.runroot

    def __call__(self, *args: str | Path) -> str:
        return run(
            self.tool,
            "--root",
            self.root,
            "--runroot",
            self.runroot,
            "--storage-driver",
            "vfs",
            *args,
            timeout=TIMEOUT,
        )

    def inspect(self, image: str) -> Any:
        return json.loads(self("image", "inspect", image))[0]

    def read_file(self, image: str, path: str) -> str:
        """A file from the image's root filesystem (podman image mount)."""
        mountpoint = Path(self("image", "mount", image).strip())
        try:
            return (mountpoint / path).read_text()
        finally:
            self("image", "unmount", image)


def skopeo(*args: str | Path) -> str:
    return run("skopeo", *args, timeout=TIMEOUT)


def skopeo_bytes(*args: str | Path) -> bytes:
    result = subprocess.run(
        ["skopeo", *map(str, args)], capture_output=True, timeout=TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise AssertionError(
            f"skopeo {' '.join(map(str, args))} failed ({result.returncode}):\n"
            f"{result.stderr.decode(errors='replace')}"
        )
    return result.stdout


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layout_digest(layout: Path, tag: str) -> str:
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


def layer_files(layout: Path, tag: str) -> dict[str, bytes]:
    """Regular files in the (single-manifest) image `tag`, all layers applied in order."""
    manifest = layout_json(layout, layout_digest(layout, tag))
    files: dict[str, bytes] = {}
    for layer in manifest["layers"]:
        data = layout_blob(layout, layer["digest"])
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                name = member.name.removeprefix("./").lstrip("/")
                extracted = tar.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    files[name] = extracted.read()
    return files


def http_manifest(
    server: DockyardServer, repo: str, reference: str
) -> tuple[Message[str, str], bytes]:
    """GET a manifest from the server under test (loopback only)."""
    req = urllib.request.Request(
        f"{server.url}/v2/{repo}/manifests/{reference}",
        headers={"Accept": ALL_MANIFEST_TYPES},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        with err:
            raise AssertionError(f"GET {req.full_url}: {err.code} {err.read()!r}") from None


def assert_stored_manifest(server: DockyardServer, repo: str, tag: str, media_type: str) -> Any:
    """skopeo and plain HTTP agree on the manifest bytes, digest and media type."""
    ref = f"docker://{server.host}/{repo}:{tag}"
    raw = skopeo_bytes("inspect", "--raw", "--tls-verify=false", ref)
    headers, body = http_manifest(server, repo, tag)
    assert body == raw
    assert headers["Docker-Content-Digest"] == sha256(raw)
    assert headers["Content-Type"] == media_type
    manifest = json.loads(raw)
    # podman and buildah leave `mediaType` out of OCI manifests: the server must keep the
    # type it was pushed with (the PUT's Content-Type), not guess from the body.
    assert manifest.get("mediaType", media_type) == media_type
    info = json.loads(skopeo("inspect", "--tls-verify=false", ref))
    assert info["Digest"] == sha256(raw)
    return manifest


# --- podman --------------------------------------------------------------------------


def test_podman_pull(dockyard: DockyardServer, tmp_path: Path, runroots: Path) -> None:
    src = tmp_path / "src"
    build_image(src, "v1", "amd64", {"hello.txt": "pulled by podman\n", "etc/os": "dockyard\n"})
    digest = layout_digest(src, "v1")
    config = layout_json(src, layout_json(src, digest)["config"]["digest"])
    image = f"{dockyard.host}/podman/hello:v1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"docker://{image}")

    podman = Store("podman", tmp_path / "podman", runroots)
    podman("pull", "--tls-verify=false", image)
    info = podman.inspect(image)
    assert info["Digest"] == digest
    assert f"{dockyard.host}/podman/hello@{digest}" in info["RepoDigests"]
    assert info["Architecture"] == "amd64"
    assert info["Os"] == "linux"
    assert info["Config"]["Cmd"] == ["/hello.txt"]
    assert info["RootFS"]["Layers"] == config["rootfs"]["diff_ids"]
    assert podman.read_file(image, "hello.txt") == "pulled by podman\n"
    assert podman.read_file(image, "etc/os") == "dockyard\n"

    # By digest, into another store: the same image.
    other = Store("podman", tmp_path / "podman-2", runroots)
    by_digest = f"{dockyard.host}/podman/hello@{digest}"
    other("pull", "--tls-verify=false", by_digest)
    assert other.inspect(by_digest)["Id"] == info["Id"]
    assert other.read_file(by_digest, "hello.txt") == "pulled by podman\n"


def test_podman_pull_multi_platform(
    dockyard: DockyardServer, tmp_path: Path, runroots: Path
) -> None:
    src = tmp_path / "src"
    build_image(src, "amd64", "amd64", {"hello.txt": "I am amd64\n"})
    build_image(src, "arm64", "arm64", {"hello.txt": "I am arm64\n"})
    index_digest = add_index(src, "multi", {"amd64": "amd64", "arm64": "arm64"})
    image = f"{dockyard.host}/podman/multi:latest"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{src}:multi", f"docker://{image}")

    for arch in ("amd64", "arm64"):
        podman = Store("podman", tmp_path / f"podman-{arch}", runroots)
        podman("pull", "--tls-verify=false", "--arch", arch, image)
        info = podman.inspect(image)
        assert info["Architecture"] == arch
        # podman records the index it resolved and the platform manifest it chose.
        assert info["Digest"] == index_digest
        assert sorted(info["RepoDigests"]) == sorted(
            f"{dockyard.host}/podman/multi@{d}" for d in (index_digest, layout_digest(src, arch))
        )
        assert podman.read_file(image, "hello.txt") == f"I am {arch}\n"


@pytest.mark.parametrize(("fmt", "media_type"), [("oci", OCI_MANIFEST), ("v2s2", DOCKER_MANIFEST)])
def test_podman_push(
    dockyard: DockyardServer, tmp_path: Path, runroots: Path, fmt: str, media_type: str
) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (rootfs / "etc" / "msg.txt").write_text(f"pushed by podman as {fmt}\n")
    (rootfs / "data.bin").write_bytes(bytes(range(256)) * 512)
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(rootfs, arcname=".")

    podman = Store("podman", tmp_path / "podman", runroots)
    local = f"localhost/imported:{fmt}"
    podman("import", "--change", 'CMD ["/etc/msg.txt"]', tarball, local)
    source = podman.inspect(local)
    repo = f"podman/pushed-{fmt}"
    image = f"{dockyard.host}/{repo}:v1"
    podman("push", "--tls-verify=false", "--format", fmt, local, f"docker://{image}")

    manifest = assert_stored_manifest(dockyard, repo, "v1", media_type)
    assert len(manifest["layers"]) == 1
    config = json.loads(
        skopeo_bytes("inspect", "--config", "--raw", "--tls-verify=false", f"docker://{image}")
    )
    assert config["rootfs"]["diff_ids"] == source["RootFS"]["Layers"]
    assert config["config"]["Cmd"] == ["/etc/msg.txt"]

    # Pull back into a fresh store: same content, same diff IDs, same config.
    fresh = Store("podman", tmp_path / "podman-fresh", runroots)
    fresh("pull", "--tls-verify=false", image)
    pulled = fresh.inspect(image)
    assert pulled["RootFS"]["Layers"] == source["RootFS"]["Layers"]
    assert pulled["Config"]["Cmd"] == ["/etc/msg.txt"]
    assert pulled["Architecture"] == source["Architecture"]
    assert fresh.read_file(image, "etc/msg.txt") == f"pushed by podman as {fmt}\n"
    mountpoint = Path(fresh("image", "mount", image).strip())
    try:
        assert (mountpoint / "data.bin").read_bytes() == bytes(range(256)) * 512
    finally:
        fresh("image", "unmount", image)

    # And skopeo sees the same files in the layer it downloads.
    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", f"docker://{image}", f"oci:{back}:v1")
    files = layer_files(back, "v1")
    assert files["etc/msg.txt"] == f"pushed by podman as {fmt}\n".encode()
    assert files["data.bin"] == bytes(range(256)) * 512


def test_podman_push_pulled_image_to_another_repository(
    dockyard: DockyardServer, tmp_path: Path, runroots: Path
) -> None:
    src = tmp_path / "src"
    build_image(src, "v1", "amd64", {"hello.txt": "round trip\n"})
    first = f"{dockyard.host}/podman/first:v1"
    second = f"{dockyard.host}/podman/second:v1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{src}:v1", f"docker://{first}")

    podman = Store("podman", tmp_path / "podman", runroots)
    podman("pull", "--tls-verify=false", first)
    podman("push", "--tls-verify=false", first, f"docker://{second}")

    fresh = Store("podman", tmp_path / "podman-fresh", runroots)
    fresh("pull", "--tls-verify=false", second)
    assert fresh.read_file(second, "hello.txt") == "round trip\n"
    assert fresh.inspect(second)["RootFS"]["Layers"] == podman.inspect(first)["RootFS"]["Layers"]
    tags = json.loads(
        skopeo("list-tags", "--tls-verify=false", f"docker://{dockyard.host}/podman/second")
    )
    assert tags["Tags"] == ["v1"]


def test_podman_search(dockyard: DockyardServer, tmp_path: Path, runroots: Path) -> None:
    src = tmp_path / "src"
    build_image(src, "v1", "amd64")
    for repo, tag in (("lib/alpha", "v1"), ("lib/alpha", "v2"), ("lib/beta", "v1")):
        skopeo(
            "copy",
            "--dest-tls-verify=false",
            f"oci:{src}:v1",
            f"docker://{dockyard.host}/{repo}:{tag}",
        )

    podman = Store("podman", tmp_path / "podman", runroots)
    # podman search falls back from /v1/search to /v2/_catalog.
    found = json.loads(
        podman("search", "--tls-verify=false", "--format", "json", f"{dockyard.host}/")
    )
    assert sorted(entry["Name"] for entry in found) == [
        f"{dockyard.host}/lib/alpha",
        f"{dockyard.host}/lib/beta",
    ]
    found = json.loads(
        podman("search", "--tls-verify=false", "--format", "json", f"{dockyard.host}/beta")
    )
    assert [entry["Name"] for entry in found] == [f"{dockyard.host}/lib/beta"]
    listed = json.loads(
        podman(
            "search",
            "--tls-verify=false",
            "--list-tags",
            "--format",
            "json",
            f"{dockyard.host}/lib/alpha",
        )
    )
    assert [sorted(entry["Tags"]) for entry in listed] == [["v1", "v2"]]


# --- buildah -------------------------------------------------------------------------


def _buildah_image(buildah: Store, tmp_path: Path, tag: str, arch: str, text: str) -> str:
    """Build `localhost/built:<tag>` from scratch with one file; returns the image name."""
    payload = tmp_path / f"msg-{tag}.txt"
    payload.write_text(text)
    container = buildah("from", "scratch").strip()
    buildah("copy", container, payload, "/msg.txt")
    buildah(
        "config",
        "--cmd",
        "/msg.txt",
        "--arch",
        arch,
        "--os",
        "linux",
        "--label",
        "origin=dockyard-test",
        container,
    )
    name = f"localhost/built:{tag}"
    buildah("commit", container, name)
    buildah("rm", container)
    return name


def test_buildah_push(dockyard: DockyardServer, tmp_path: Path, runroots: Path) -> None:
    buildah = Store("buildah", tmp_path / "buildah", runroots)
    local = _buildah_image(buildah, tmp_path, "v1", "arm64", "built by buildah\n")
    repo = "buildah/img"
    ref = f"docker://{dockyard.host}/{repo}:v1"
    buildah("push", "--tls-verify=false", local, ref)

    manifest = assert_stored_manifest(dockyard, repo, "v1", OCI_MANIFEST)
    info = json.loads(skopeo("inspect", "--tls-verify=false", ref))
    assert info["Name"] == f"{dockyard.host}/{repo}"
    assert info["RepoTags"] == ["v1"]
    assert info["Architecture"] == "arm64"
    assert info["Os"] == "linux"
    assert info["Labels"]["origin"] == "dockyard-test"
    assert info["Layers"] == [layer["digest"] for layer in manifest["layers"]]
    config = json.loads(skopeo_bytes("inspect", "--config", "--raw", "--tls-verify=false", ref))
    assert config["config"]["Cmd"] == ["/msg.txt"]

    back = tmp_path / "back"
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{back}:v1")
    assert layout_digest(back, "v1") == info["Digest"]
    assert layer_files(back, "v1") == {"msg.txt": b"built by buildah\n"}


def test_buildah_manifest_push_all(
    dockyard: DockyardServer, tmp_path: Path, runroots: Path
) -> None:
    buildah = Store("buildah", tmp_path / "buildah", runroots)
    images = {
        arch: _buildah_image(buildah, tmp_path, arch, arch, f"buildah {arch}\n")
        for arch in ("amd64", "arm64")
    }
    buildah("manifest", "create", "localhost/list:v1")
    for image in images.values():
        buildah("manifest", "add", "localhost/list:v1", image)
    repo = "buildah/list"
    ref = f"docker://{dockyard.host}/{repo}:v1"
    buildah(
        "manifest",
        "push",
        "--all",
        "--format",
        "oci",
        "--tls-verify=false",
        "localhost/list:v1",
        ref,
    )

    index = assert_stored_manifest(dockyard, repo, "v1", OCI_INDEX)
    children = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert sorted(children) == ["amd64", "arm64"]
    for arch, child in children.items():
        raw = skopeo_bytes(
            "inspect", "--raw", "--tls-verify=false", f"docker://{dockyard.host}/{repo}@{child}"
        )
        assert sha256(raw) == child
        headers, body = http_manifest(dockyard, repo, child)
        assert body == raw
        assert headers["Docker-Content-Digest"] == child
        back = tmp_path / f"back-{arch}"
        skopeo("--override-arch", arch, "copy", "--src-tls-verify=false", ref, f"oci:{back}:v1")
        assert layout_digest(back, "v1") == child
        assert layer_files(back, "v1") == {"msg.txt": f"buildah {arch}\n".encode()}
