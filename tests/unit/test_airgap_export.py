"""Exporting: which manifests and blobs go into a bundle, and how the archive is laid out.

The registry is a stand-in serving manifests and blobs from memory (the real HTTP path is
covered end to end in tests/integration/test_airgap.py).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from dockyard.airgap.errors import BundleError
from dockyard.airgap.export import Exporter
from dockyard.airgap.remote import FetchedManifest
from dockyard.airgap.writer import TarBundleWriter
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.reference import ImageReference, parse_image_reference


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class FakeRegistry:
    """Serves manifests (by tag or digest) and blobs of one repository from memory."""

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}

    def add_blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        self.blobs[sha(data)] = data
        return {"mediaType": media_type, "digest": sha(data), "size": len(data)}

    def add_manifest(self, document: dict[str, Any], tag: str | None = None) -> dict[str, Any]:
        body = json.dumps(document).encode()
        media_type = str(document["mediaType"])
        self.manifests[sha(body)] = (media_type, body)
        if tag:
            self.manifests[tag] = (media_type, body)
        return {"mediaType": media_type, "digest": sha(body), "size": len(body)}

    def image(self, arch: str) -> dict[str, Any]:
        config = self.add_blob(json.dumps({"architecture": arch, "os": "linux"}).encode(), "c")
        layer = self.add_blob(gzip.compress(os.urandom(2000)), "application/x")
        return self.add_manifest(
            {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config, "layers": [layer]}
        )

    # The RegistryReader interface.
    def manifest(self, ref: ImageReference, reference: str, limit: int) -> FetchedManifest:
        if reference not in self.manifests:
            raise BundleError(f"{ref}: {reference} answered 404")
        media_type, body = self.manifests[reference]
        return FetchedManifest(Digest.parse(sha(body)), media_type, body)

    def open_blob(self, ref: ImageReference, digest: Digest) -> io.BytesIO:
        return io.BytesIO(self.blobs[str(digest)])


@pytest.fixture
def registry() -> FakeRegistry:
    fake = FakeRegistry()
    children = []
    for arch in ("amd64", "arm64", "s390x"):
        desc = fake.image(arch)
        desc["platform"] = {"os": "linux", "architecture": arch}
        children.append(desc)
    fake.add_manifest(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": children}, tag="1.0"
    )
    return fake


def export(
    fake: FakeRegistry, out: Path, platforms: tuple[str, ...] = (), docker: bool = False
) -> dict[str, Any]:
    exporter = Exporter(fake, platforms, docker_archive=docker)  # type: ignore[arg-type]
    images = [exporter.resolve(parse_image_reference("example.com/team/app:1.0"))]
    writer = TarBundleWriter(out, zstd=out.name.endswith(".zst"))
    try:
        record = exporter.write(images, writer)
        writer.finish()
    except BaseException:
        writer.abort()
        raise
    return record


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def test_all_platforms_keep_the_index_and_its_digest(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    record = export(registry, tmp_path / "b.tar")
    files = members(tmp_path / "b.tar")
    index = json.loads(files["index.json"])
    top = index["manifests"][0]
    assert top["digest"] == sha(registry.manifests["1.0"][1])
    assert top["annotations"] == {
        "io.containerd.image.name": "example.com/team/app:1.0",
        "org.opencontainers.image.ref.name": "example.com/team/app:1.0",
    }
    assert files["oci-layout"] == b'{"imageLayoutVersion": "1.0.0"}'
    blobs = {name[len("blobs/sha256/") :] for name in files if name.startswith("blobs/")}
    assert len(blobs) == 1 + 3 * 3  # the index, and manifest, config, layer per platform
    for name, data in files.items():
        if name.startswith("blobs/"):
            assert sha(data)[7:] == name.rsplit("/", 1)[1]
    assert record["images"][0]["platforms"] == ["linux/amd64", "linux/arm64", "linux/s390x"]
    assert json.loads(files["dockyard-bundle.json"]) == record
    assert {b["digest"] for b in record["blobs"]} == {f"sha256:{h}" for h in blobs}


def test_platforms_narrow_the_bundle(registry: FakeRegistry, tmp_path: Path) -> None:
    export(registry, tmp_path / "one.tar", ("linux/arm64",))
    files = members(tmp_path / "one.tar")
    top = json.loads(files["index.json"])["manifests"][0]
    arm = json.loads(registry.manifests["1.0"][1])["manifests"][1]
    assert top["digest"] == arm["digest"]  # one platform: its own manifest, digest kept
    assert len([n for n in files if n.startswith("blobs/")]) == 3

    record = export(registry, tmp_path / "two.tar.zst", ("linux/arm64", "linux/amd64"))
    with open(tmp_path / "two.tar.zst", "rb") as f:
        assert f.read(4) == b"\x28\xb5\x2f\xfd"
    assert record["images"][0]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert record["images"][0]["digest"] != sha(registry.manifests["1.0"][1])  # a new index

    with pytest.raises(BundleError, match="no manifest for linux/riscv64"):
        export(registry, tmp_path / "none.tar", ("linux/riscv64",))
    assert not (tmp_path / "none.tar").exists()


def test_docker_archive_holds_one_platform(registry: FakeRegistry, tmp_path: Path) -> None:
    export(registry, tmp_path / "d.tar", ("linux/amd64",), docker=True)
    files = members(tmp_path / "d.tar")
    entries = json.loads(files["manifest.json"])
    amd = json.loads(
        registry.manifests[json.loads(registry.manifests["1.0"][1])["manifests"][0]["digest"]][1]
    )
    assert entries == [
        {
            "Config": "blobs/sha256/" + amd["config"]["digest"][7:],
            "RepoTags": ["example.com/team/app:1.0"],
            "Layers": ["blobs/sha256/" + amd["layers"][0]["digest"][7:]],
        }
    ]
    assert json.loads(files["repositories"]) == {
        "example.com/team/app": {"1.0": amd["config"]["digest"][7:]}
    }
    assert "index.json" not in files


def test_content_not_matching_its_digest_leaves_no_bundle(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    victim = next(d for d, data in registry.blobs.items() if data.startswith(b"\x1f\x8b"))
    damaged = bytearray(registry.blobs[victim])
    damaged[len(damaged) // 2] ^= 0xFF
    registry.blobs[victim] = bytes(damaged)
    with pytest.raises(BundleError, match="hashing to"):
        export(registry, tmp_path / "bad.tar")
    assert list(tmp_path.iterdir()) == []
    registry.blobs[victim] = registry.blobs[victim][:-5]
    with pytest.raises(BundleError, match="ended early"):
        export(registry, tmp_path / "short.tar")
    assert list(tmp_path.iterdir()) == []
