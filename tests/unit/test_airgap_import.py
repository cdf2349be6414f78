"""Importing bundles into a store in-process: OCI layouts, archives, docker-archive; refusals."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from dockyard.airgap.bundle_import import BundleImporter
from dockyard.airgap.entries import BundleSource
from dockyard.airgap.errors import BundleError
from dockyard.airgap.report import ImportReport
from dockyard.airgap.store import ImportStore
from dockyard.metadata import Database
from dockyard.oci import mediatypes as mt
from dockyard.registry import Registry
from dockyard.storage import FilesystemDriver

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Layout:
    """A synthetic OCI image layout directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        (path / "blobs" / "sha256").mkdir(parents=True)
        (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        self.entries: list[dict[str, Any]] = []

    def blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        (self.path / "blobs" / "sha256" / sha(data)[7:]).write_bytes(data)
        return {"mediaType": media_type, "digest": sha(data), "size": len(data)}

    def image(self, arch: str = "amd64") -> dict[str, Any]:
        config = self.blob(json.dumps({"architecture": arch, "os": "linux"}).encode(), OCI_CONFIG)
        layer = self.blob(gzip.compress(os.urandom(3000)), OCI_LAYER)
        manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config}
        manifest["layers"] = [layer]
        return self.blob(json.dumps(manifest).encode(), mt.OCI_MANIFEST)

    def index(self, children: dict[str, dict[str, Any]]) -> dict[str, Any]:
        manifests = [
            dict(desc, platform={"os": "linux", "architecture": arch})
            for arch, desc in children.items()
        ]
        body = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": manifests}
        return self.blob(json.dumps(body).encode(), mt.OCI_INDEX)

    def name(self, desc: dict[str, Any], name: str) -> None:
        self.entries.append(dict(desc, annotations={"io.containerd.image.name": name}))
        index = {"schemaVersion": 2, "manifests": self.entries}
        (self.path / "index.json").write_text(json.dumps(index))


def archive(directory: Path, out: Path, compress: str = "none") -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(directory.rglob("*")):
            tar.add(path, path.relative_to(directory).as_posix(), recursive=False)
    data = buffer.getvalue()
    if compress == "gzip":
        data = gzip.compress(data)
    elif compress == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    out.write_bytes(data)
    return out


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    root = tmp_path / "store"
    reg = Registry(
        Database(root / "metadata.db"),
        FilesystemDriver(root),
        manifest_max_size=4 * 1024 * 1024,
        delete_enabled=False,
    )
    yield reg
    reg.close()


def do_import(registry: Registry, path: Path, prefix: str | None = None) -> ImportReport:
    importer = BundleImporter(ImportStore(registry), prefix)
    return asyncio.run(importer.run(BundleSource(path)))


def visible(registry: Registry) -> tuple[int, int, int]:
    with sqlite3.connect(registry.db.path) as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("manifests", "tags", "repository_blobs")
        )


def staged(registry: Registry) -> list[str]:
    return [o.key for o in registry.driver.list("uploads")]


def manifest_digest(registry: Registry, repo: str, reference: str) -> str:
    return str(asyncio.run(registry.manifests.get(repo, reference)).digest)


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Layout, dict[str, str]]:
    oci = Layout(tmp_path / "oci")
    single = oci.image()
    multi = oci.index({"amd64": oci.image(), "arm64": oci.image("arm64")})
    oci.name(single, "docker.io/library/app:1.0")
    oci.name(multi, "ghcr.io/org/multi:2")
    return oci, {"app": single["digest"], "multi": multi["digest"]}


@pytest.mark.parametrize("form", ["directory", "tar", "gzip", "zstd"])
def test_oci_layouts_import_in_every_form(
    registry: Registry, layout: tuple[Layout, dict[str, str]], tmp_path: Path, form: str
) -> None:
    oci, digests = layout
    path = oci.path if form == "directory" else archive(oci.path, tmp_path / "b.tar", form)
    report = do_import(registry, path)
    assert [status for _plan, status in report.images] == ["new", "new"]
    assert manifest_digest(registry, "docker.io/library/app", "1.0") == digests["app"]
    assert manifest_digest(registry, "ghcr.io/org/multi", "2") == digests["multi"]
    # Every file under blobs/ is verified and committed as it passes (manifests included).
    assert report.stats.blobs_written == len(list((oci.path / "blobs/sha256").iterdir()))
    assert report.images[1][0].platforms == ["linux/amd64", "linux/arm64"]
    assert staged(registry) == []

    again = do_import(registry, path)
    assert [status for _plan, status in again.images] == ["unchanged", "unchanged"]
    assert again.stats.blobs_written == 0


def test_prefix_replaces_the_registry(
    registry: Registry, layout: tuple[Layout, dict[str, str]]
) -> None:
    oci, digests = layout
    do_import(registry, oci.path, prefix="edge")
    assert manifest_digest(registry, "edge/library/app", "1.0") == digests["app"]
    assert manifest_digest(registry, "edge/org/multi", "2") == digests["multi"]


def test_a_corrupted_blob_refuses_the_bundle(
    registry: Registry, layout: tuple[Layout, dict[str, str]], tmp_path: Path
) -> None:
    oci, _digests = layout
    victim = max((oci.path / "blobs" / "sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    for path in (oci.path, archive(oci.path, tmp_path / "c.tar.zst", "zstd")):
        with pytest.raises(BundleError, match="is corrupted"):
            do_import(registry, path)
        assert visible(registry) == (0, 0, 0)
        assert staged(registry) == []


def test_missing_content_or_wrong_sizes_refuse_the_bundle(
    registry: Registry, layout: tuple[Layout, dict[str, str]], tmp_path: Path
) -> None:
    oci, _digests = layout
    index = json.loads((oci.path / "index.json").read_text())
    manifest = json.loads(
        (oci.path / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text()
    )
    layer = oci.path / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    kept = layer.read_bytes()
    layer.unlink()
    with pytest.raises(BundleError, match="incomplete"):
        do_import(registry, oci.path)
    assert visible(registry) == (0, 0, 0)
    layer.write_bytes(kept)
    index["manifests"][0]["size"] += 1
    (oci.path / "index.json").write_text(json.dumps(index))
    with pytest.raises(BundleError, match="descriptor says"):
        do_import(registry, oci.path)
    assert visible(registry) == (0, 0, 0)
    # Put right, it imports; what the refused runs verified is not written again.
    index["manifests"][0]["size"] -= 1
    (oci.path / "index.json").write_text(json.dumps(index))
    report = do_import(registry, oci.path)
    assert len(report.images) == 2
    assert report.stats.blobs_written == 0


def test_truncated_archives_are_refused(
    registry: Registry, layout: tuple[Layout, dict[str, str]], tmp_path: Path
) -> None:
    oci, _digests = layout
    for compress in ("none", "gzip", "zstd"):
        whole = archive(oci.path, tmp_path / f"w-{compress}", compress).read_bytes()
        for cut in (len(whole) // 3, len(whole) * 2 // 3):
            path = tmp_path / f"cut-{compress}-{cut}"
            path.write_bytes(whole[:cut])
            with pytest.raises(BundleError, match="truncated"):
                do_import(registry, path)
            assert visible(registry) == (0, 0, 0)
            assert staged(registry) == []


def test_unnamed_entries_are_skipped(registry: Registry, tmp_path: Path) -> None:
    oci = Layout(tmp_path / "oci")
    desc = oci.image()
    oci.entries.append(dict(desc, annotations={"org.opencontainers.image.ref.name": "v1"}))
    (oci.path / "index.json").write_text(json.dumps({"manifests": oci.entries}))
    report = do_import(registry, oci.path)
    assert report.images == []
    assert "no image name" in report.skipped[0].reason


# -- docker save archives -------------------------------------------------------------------------


def layer_tar(content: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def docker_save(path: Path, tags: list[str], corrupt_layer: bool = False) -> tuple[bytes, bytes]:
    """A `docker save` directory in the legacy form: <id>/layer.tar symlinked to <diff>.tar."""
    layer = layer_tar(b"hello\n")
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha(layer)]},
        }
    ).encode()
    path.mkdir()
    (path / f"{sha(config)[7:]}.json").write_bytes(config)
    (path / f"{sha(layer)[7:]}.tar").write_bytes(layer if not corrupt_layer else layer[:-1] + b"!")
    (path / "abc123").mkdir()
    (path / "abc123" / "layer.tar").symlink_to(f"../{sha(layer)[7:]}.tar")
    (path / "abc123" / "VERSION").write_text("1.0")
    manifest = [
        {"Config": f"{sha(config)[7:]}.json", "RepoTags": tags, "Layers": ["abc123/layer.tar"]}
    ]
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "repositories").write_text("{}")
    return config, layer


def test_docker_archives_become_schema_2_images(registry: Registry, tmp_path: Path) -> None:
    config, layer = docker_save(tmp_path / "saved", ["app:1", "quay.io/org/app:1"])
    bundle = archive(tmp_path / "saved", tmp_path / "saved.tar.zst", "zstd")
    report = do_import(registry, bundle)
    assert [plan.repository for plan, _status in report.images] == [
        "docker.io/library/app",
        "quay.io/org/app",
    ]
    stored = asyncio.run(registry.manifests.get("quay.io/org/app", "1"))
    manifest = json.loads(stored.content)
    assert stored.media_type == mt.DOCKER_MANIFEST
    assert manifest["config"]["digest"] == sha(config)
    assert manifest["layers"] == [
        {
            "mediaType": "application/vnd.docker.image.rootfs.diff.tar",
            "size": len(layer),
            "digest": sha(layer),
        }
    ]
    assert report.stats.blobs_written == 2  # the legacy VERSION file is not kept
    assert staged(registry) == []
    again = do_import(registry, bundle)
    assert [s for _p, s in again.images] == ["unchanged", "unchanged"]


def test_a_docker_archive_layer_not_matching_its_diff_id_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    docker_save(tmp_path / "saved", ["app:1"], corrupt_layer=True)
    with pytest.raises(BundleError, match="does not match the diff ID"):
        do_import(registry, archive(tmp_path / "saved", tmp_path / "s.tar"))
    assert visible(registry) == (0, 0, 0)
    assert staged(registry) == []
    with sqlite3.connect(registry.db.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 0


def test_untagged_docker_images_are_skipped(registry: Registry, tmp_path: Path) -> None:
    docker_save(tmp_path / "saved", [])
    report = do_import(registry, tmp_path / "saved")
    assert report.images == [] and "untagged" in report.skipped[0].reason


def test_not_a_bundle(registry: Registry, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme").write_text("hi")
    with pytest.raises(BundleError, match="not an image bundle"):
        do_import(registry, tmp_path / "empty")
    with pytest.raises(BundleError, match="no such file"):
        do_import(registry, tmp_path / "absent.tar")
