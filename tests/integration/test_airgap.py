"""Air-gap bundles end to end: export from one Dockyard, carry, import into another.

Images are pushed with skopeo into a "connected" Dockyard, exported with `dockyard
export`, imported with `dockyard import` into a fresh Dockyard (while it serves), and
pulled back by containerd configured the way K3s does: `certs.d/docker.io/hosts.toml`
names the fresh Dockyard as mirror and a dead loopback port as the upstream, so a pull can
only succeed from imported content. Bundles made by skopeo and podman (docker-archive,
OCI archive, gzip, zstd) import as well; damaged bundles are refused and leave nothing.
"""

from __future__ import annotations

import io
import json
import platform
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.support.containerd import Containerd, dead_endpoint
from tests.integration.support.images import add_index, build_image, run
from tests.integration.support.server import DockyardServer
from tests.integration.support.upstreams import skopeo_push_layout

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
HOST_ARCH = _GOARCH.get(platform.machine(), platform.machine())
OTHER_ARCH = "arm64" if HOST_ARCH == "amd64" else "amd64"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


# -- helpers ----------------------------------------------------------------------------------


def dockyard_cli(*args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `python -m dockyard ...`; with ok=True its exit status must be 0."""
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if ok and result.returncode != 0:
        raise AssertionError(
            f"dockyard {' '.join(map(str, args))} failed ({result.returncode}):\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def push(layout: Path, tag: str, dest: str, *flags: str) -> str:
    """skopeo copy from the OCI layout; returns the pushed manifest digest."""
    return skopeo_push_layout(layout, tag, dest, flags=flags)


def fetch(server: DockyardServer, path: str) -> bytes:
    import urllib.request

    request = urllib.request.Request(f"{server.url}{path}", headers={"Accept": ACCEPT})
    with urllib.request.urlopen(request, timeout=30) as response:
        data: bytes = response.read()
        return data


def image_digests(server: DockyardServer, repo: str, digest: str) -> dict[str, bytes]:
    """Every manifest and blob of an image (by digest) with its bytes, read over HTTP."""
    manifest = fetch(server, f"/v2/{repo}/manifests/{digest}")
    found = {digest: manifest}
    document = json.loads(manifest)
    for child in document.get("manifests", []):
        found |= image_digests(server, repo, child["digest"])
    for desc in [document.get("config"), *document.get("layers", [])]:
        if desc:
            found[desc["digest"]] = fetch(server, f"/v2/{repo}/blobs/{desc['digest']}")
    return found


def content_bytes(containerd: Containerd, digest: str) -> bytes:
    result = subprocess.run(
        ["ctr", "-a", str(containerd.socket), "content", "get", digest],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def image_target(containerd: Containerd, ref: str) -> str:
    """The digest containerd records for an image name."""
    for line in containerd.ctr("images", "ls").splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == ref:
            return fields[2]
    raise AssertionError(f"{ref} not in containerd's images")


def visible_state(root: Path) -> tuple[int, int, int]:
    """(manifests, tags, repository blob links) in a store: what clients can see."""
    with sqlite3.connect(root / "metadata.db") as conn:
        return (
            conn.execute("SELECT COUNT(*) FROM manifests").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM tags").fetchone()[0],
            conn.execute("SELECT COUNT(*) FROM repository_blobs").fetchone()[0],
        )


def staged_files(root: Path) -> list[Path]:
    uploads = root / "uploads"
    return list(uploads.iterdir()) if uploads.exists() else []


class Podman:
    """podman with its own vfs storage (containers-storage wants a short runroot)."""

    def __init__(self, base: Path, runroot: Path) -> None:
        self.root, self.runroot = base / "podman-root", runroot

    def __call__(self, *args: str | Path) -> str:
        return run(
            "podman",
            "--root",
            self.root,
            "--runroot",
            self.runroot,
            "--storage-driver",
            "vfs",
            *args,
        )


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    with tempfile.TemporaryDirectory(prefix="dy-", dir="/tmp", ignore_cleanup_errors=True) as d:
        yield Podman(tmp_path, Path(d))


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
def layout(tmp_path: Path) -> Path:
    """An OCI layout with one image per architecture and a two-platform index `multi`."""
    oci = tmp_path / "oci"
    build_image(oci, HOST_ARCH, HOST_ARCH)
    build_image(oci, OTHER_ARCH, OTHER_ARCH)
    add_index(oci, "multi", {HOST_ARCH: HOST_ARCH, OTHER_ARCH: OTHER_ARCH})
    return oci


Factory = Callable[..., DockyardServer]


# -- export, import, pull ---------------------------------------------------------------------


def test_export_import_then_containerd_pulls_byte_identical(
    tmp_path: Path, layout: Path, dockyard_factory: Factory, containerd: Containerd
) -> None:
    source = dockyard_factory("connected")
    pushed = {
        "docker.io/library/app:1.0": push(layout, HOST_ARCH, f"{source.host}/library/app:1.0"),
        "docker.io/team/multi:2.0": push(layout, "multi", f"{source.host}/team/multi:2.0", "--all"),
        "docker.io/library/legacy:3.0": push(
            layout, HOST_ARCH, f"{source.host}/library/legacy:3.0", "--format=v2s2"
        ),
    }
    repos = {
        "docker.io/library/app:1.0": "library/app",
        "docker.io/team/multi:2.0": "team/multi",
        "docker.io/library/legacy:3.0": "library/legacy",
    }
    bundle = tmp_path / "site.tar"
    out = dockyard_cli(
        "export", "--registry", source.url, "app:1.0", "team/multi:2.0", "legacy:3.0", "-o", bundle
    )
    assert "3 image(s)" in out.stdout
    with tarfile.open(bundle) as archive:
        record = json.load(archive.extractfile("dockyard-bundle.json"))  # type: ignore[arg-type]
        index = json.load(archive.extractfile("index.json"))  # type: ignore[arg-type]
    assert {i["name"]: i["digest"] for i in record["images"]} == pushed
    assert {
        m["annotations"]["io.containerd.image.name"]: m["digest"] for m in index["manifests"]
    } == pushed
    originals = {
        name: image_digests(source, repos[name], digest) for name, digest in pushed.items()
    }
    listed = {b["digest"]: b["size"] for b in record["blobs"]}
    for content in originals.values():
        assert {d: len(b) for d, b in content.items()}.items() <= listed.items()

    # The isolated side: a fresh Dockyard with no upstream at all, importing while it serves.
    isolated = dockyard_factory("isolated")
    out = dockyard_cli("import", "--root", isolated.root, bundle)
    assert "3 new, 0 updated, 0 unchanged image(s); 0 skipped" in out.stdout, out.stdout
    again = dockyard_cli("import", "--root", isolated.root, bundle)
    assert "0 new, 0 updated, 3 unchanged" in again.stdout
    assert "0 blob(s) written" in again.stdout

    containerd.write_hosts("docker.io", [f"{isolated.url}/v2"])  # server: a dead port
    containerd.pull("docker.io/library/app:1.0")
    containerd.pull("docker.io/team/multi:2.0", "--all-platforms")
    containerd.pull("docker.io/library/legacy:3.0")
    for name, digest in pushed.items():
        assert image_target(containerd, name) == digest
        for content_digest, original in originals[name].items():
            assert content_bytes(containerd, content_digest) == original, content_digest
    assert "ns=docker.io" in isolated.log()

    # The same archive is an ordinary oci-archive for skopeo.
    copied = tmp_path / "from-bundle"
    run(
        "skopeo",
        "copy",
        "--all",
        f"oci-archive:{bundle}:docker.io/team/multi:2.0",
        f"oci:{copied}:multi",
    )
    copied_index = json.loads((copied / "index.json").read_text())
    assert copied_index["manifests"][0]["digest"] == pushed["docker.io/team/multi:2.0"]


def test_single_image_bundles_load_in_podman_and_k3s(
    tmp_path: Path,
    layout: Path,
    dockyard_factory: Factory,
    containerd: Containerd,
    podman: Podman,
) -> None:
    source = dockyard_factory("connected")
    digest = push(layout, "multi", f"{source.host}/team/multi:2.0", "--all")
    app = push(layout, HOST_ARCH, f"{source.host}/library/app:1.0")

    # podman load takes one image per oci-archive; zstd-compressed is fine.
    bundle = tmp_path / "multi.tar.zst"
    dockyard_cli("export", "--registry", source.url, "team/multi:2.0", "-o", bundle)
    assert bundle.read_bytes()[:4] == b"\x28\xb5\x2f\xfd"
    assert "docker.io/team/multi:2.0" in podman("load", "-i", bundle)
    loaded = json.loads(podman("image", "inspect", "docker.io/team/multi:2.0"))[0]
    assert loaded["Digest"] == digest

    # --format docker-archive: what K3s imports from /var/lib/rancher/k3s/agent/images.
    archive = tmp_path / "k3s-images.tar"
    dockyard_cli(
        "export",
        "--registry",
        source.url,
        "app:1.0",
        "team/multi:2.0",
        "--format",
        "docker-archive",
        "-o",
        archive,
    )
    with tarfile.open(archive) as tar:
        entries = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert "repositories" in tar.getnames()
    assert [e["RepoTags"] for e in entries] == [
        ["docker.io/library/app:1.0"],
        ["docker.io/team/multi:2.0"],
    ]
    containerd.ctr("images", "import", archive)
    images = containerd.image_refs()
    assert "docker.io/library/app:1.0" in images
    assert "docker.io/team/multi:2.0" in images
    # containerd unpacked them: the layers matched the configs' diff IDs.
    assert containerd.ctr("images", "check").count("complete") >= 2
    assert "docker.io/library/app:1.0" in podman("load", "-i", archive)
    # The single-platform export of the index is the host's child manifest.
    host_child = [
        m["digest"]
        for m in json.loads(fetch(source, f"/v2/team/multi/manifests/{digest}"))["manifests"]
        if m["platform"]["architecture"] == HOST_ARCH
    ]
    assert host_child == [app]
    with tarfile.open(archive) as tar:
        record = json.load(tar.extractfile("dockyard-bundle.json"))  # type: ignore[arg-type]
    assert [i["digest"] for i in record["images"]] == [app, app]


def test_imported_images_are_cached_content_when_the_upstream_is_configured_but_dead(
    tmp_path: Path, layout: Path, dockyard_factory: Factory, containerd: Containerd
) -> None:
    source = dockyard_factory("connected")
    digest = push(layout, "multi", f"{source.host}/library/app:1.0", "--all")
    bundle = tmp_path / "bundle.tar.zst"
    dockyard_cli("export", "--registry", source.url, "app:1.0", "-o", bundle)

    # The isolated site kept its config: a docker.io upstream it cannot reach, and tags that
    # are always stale, so every pull first tries (and fails) to revalidate with it.
    config = tmp_path / "isolated.yml"
    config.write_text(
        "version: 0.1\n"
        "proxy:\n"
        "  upstreams:\n"
        "    - name: docker.io\n"
        f"      url: {dead_endpoint().removesuffix('/v2')}\n"
        "      connecttimeout: 1s\n"
        "      timeout: 2s\n"
        "      tagttl: 0s\n"
    )
    isolated = dockyard_factory("isolated", config=config)
    out = dockyard_cli("import", "--config", config, "--root", isolated.root, bundle)
    assert "1 new" in out.stdout
    listing = dockyard_cli("cache", "ls", "--config", config, "--root", isolated.root)
    assert "library/app" in listing.stdout
    containerd.write_hosts("docker.io", [f"{isolated.url}/v2"])
    containerd.pull("docker.io/library/app:1.0")
    assert image_target(containerd, "docker.io/library/app:1.0") == digest
    assert "serving the cached tag" in isolated.log()


# -- bundles made by other tools --------------------------------------------------------------


def test_docker_archives_and_zstd_bundles_from_skopeo_and_podman_import(
    tmp_path: Path,
    layout: Path,
    dockyard_factory: Factory,
    containerd: Containerd,
    podman: Podman,
) -> None:
    # skopeo docker-archive (plain tar layers, legacy symlinks), then zstd-compressed.
    skopeo_tar = tmp_path / "skopeo.tar"
    run(
        "skopeo",
        "copy",
        f"oci:{layout}:{HOST_ARCH}",
        f"docker-archive:{skopeo_tar}:example.com/team/sk:1.0",
    )
    run("zstd", "-q", skopeo_tar, "-o", f"{skopeo_tar}.zst")
    # podman save (docker-archive) of an image named localhost/..., and an OCI archive, gzipped.
    image_id = podman("pull", "-q", f"oci:{layout}:{OTHER_ARCH}").strip()
    podman("tag", image_id, "docker.io/team/pm:2.0")
    podman_tar = tmp_path / "podman.tar"
    podman("save", "-o", podman_tar, "docker.io/team/pm:2.0")
    podman_oci = tmp_path / "podman-oci.tar"
    podman("save", "--format", "oci-archive", "-o", podman_oci, "docker.io/team/pm:2.0")
    run("gzip", "-k", podman_oci)

    isolated = dockyard_factory("isolated")
    out = dockyard_cli("import", "--root", isolated.root, f"{skopeo_tar}.zst", podman_tar)
    assert out.stdout.count("new ") == 2, out.stdout
    # The podman OCI archive names the same image: its manifest differs (podman wrote it).
    out = dockyard_cli("import", "--root", isolated.root, f"{podman_oci}.gz")
    assert "1 updated" in out.stdout, out.stdout

    def manifest(repo: str, ref: str) -> dict[str, object]:
        value: dict[str, object] = json.loads(fetch(isolated, f"/v2/{repo}/manifests/{ref}"))
        return value

    sk = manifest("example.com/team/sk", "1.0")
    assert sk["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    layers = sk["layers"]
    assert isinstance(layers, list)
    assert {layer["mediaType"] for layer in layers} == {
        "application/vnd.docker.image.rootfs.diff.tar"
    }
    config = sk["config"]
    assert isinstance(config, dict)
    image_id = json.loads(run("skopeo", "inspect", "--config", f"oci:{layout}:{HOST_ARCH}"))
    assert image_id["rootfs"]["diff_ids"] == [layer["digest"] for layer in layers]

    # Nodes mirroring example.com (no upstream configured) find it under ?ns=example.com.
    containerd.write_hosts("example.com", [f"{isolated.url}/v2"])
    containerd.pull("example.com/team/sk:1.0")
    assert containerd.ctr("images", "check").count("complete") >= 1
    # The podman image, through a docker.io mirror.
    containerd.write_hosts("docker.io", [f"{isolated.url}/v2"])
    pm_digest = run("skopeo", "inspect", "--format", "{{.Digest}}", f"oci-archive:{podman_oci}")
    containerd.pull("docker.io/team/pm:2.0", "--platform", f"linux/{OTHER_ARCH}")
    assert image_target(containerd, "docker.io/team/pm:2.0") == pm_digest.strip()

    again = dockyard_cli("import", "--root", isolated.root, f"{skopeo_tar}.zst")
    assert "1 unchanged" in again.stdout and "0 blob(s) written" in again.stdout


# -- damaged bundles --------------------------------------------------------------------------


def _flip_byte_in_member(archive: Path, member_suffix: str, out: Path) -> None:
    """Copy a tar, changing one byte in the middle of the member whose name ends so."""
    data = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.isfile() and m.name.endswith(member_suffix))
    position = member.offset_data + member.size // 2
    data[position] ^= 0xFF
    out.write_bytes(bytes(data))


def _largest_blob(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith("blobs/")]
    return max(members, key=lambda m: m.size).name


def test_damaged_bundles_are_refused_and_leave_nothing(
    tmp_path: Path, layout: Path, dockyard_factory: Factory
) -> None:
    source = dockyard_factory("connected")
    push(layout, "multi", f"{source.host}/team/multi:2.0", "--all")
    good = tmp_path / "good.tar"
    dockyard_cli("export", "--registry", source.url, "team/multi:2.0", "-o", good)
    docker_tar = tmp_path / "docker.tar"
    run("skopeo", "copy", f"oci:{layout}:{HOST_ARCH}", f"docker-archive:{docker_tar}:x.io/a/b:1")

    corrupted = tmp_path / "corrupted.tar"
    _flip_byte_in_member(good, _largest_blob(good), corrupted)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    run("zstd", "-q", good, "-o", tmp_path / "good.tar.zst")
    cut_zstd = tmp_path / "cut.tar.zst"
    zstd_bytes = (tmp_path / "good.tar.zst").read_bytes()
    cut_zstd.write_bytes(zstd_bytes[: len(zstd_bytes) * 2 // 3])
    run("gzip", "-k", good)
    cut_gzip = tmp_path / "cut.tar.gz"
    gzip_bytes = (tmp_path / "good.tar.gz").read_bytes()
    cut_gzip.write_bytes(gzip_bytes[: len(gzip_bytes) * 2 // 3])
    bad_layer = tmp_path / "bad-layer.tar"
    _flip_byte_in_member(docker_tar, ".tar", bad_layer)

    isolated = dockyard_factory("isolated")
    root = isolated.root
    cases = {
        corrupted: "is corrupted",
        truncated: "truncated",
        cut_zstd: "truncated",
        cut_gzip: "truncated",
        bad_layer: "does not match the diff ID",
    }
    for bundle, message in cases.items():
        result = dockyard_cli("import", "--root", root, bundle, ok=False)
        assert result.returncode == 1, result.stdout
        assert "refused, nothing imported" in result.stderr, result.stderr
        assert message in result.stderr, result.stderr
        assert visible_state(root) == (0, 0, 0), bundle
        assert staged_files(root) == [], bundle
        assert json.loads(fetch(isolated, "/v2/_catalog"))["repositories"] == []

    # The good bundle still imports (resuming: blobs verified before are not read again).
    out = dockyard_cli("import", "--root", root, good, docker_tar)
    assert out.stdout.count("new ") == 2, out.stdout
    assert staged_files(root) == []
    index = json.loads(fetch(isolated, "/v2/docker.io/team/multi/manifests/2.0"))
    assert len(index["manifests"]) == 2
    assert io.BytesIO(fetch(isolated, "/v2/x.io/a/b/manifests/1")).read()
