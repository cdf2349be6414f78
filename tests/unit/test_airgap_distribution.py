"""Reading and migrating a Distribution filesystem store (synthetic trees, in-process)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.airgap.distribution import DistributionStore
from dockyard.airgap.errors import BundleError
from dockyard.airgap.migrate import DistributionMigrator
from dockyard.airgap.report import ImportReport
from dockyard.airgap.store import ImportStore
from dockyard.metadata import Database
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.registry import Registry
from dockyard.storage import FilesystemDriver


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Tree:
    """A Distribution store on disk, written the way Distribution 2.8 lays it out."""

    def __init__(self, root: Path) -> None:
        self.v2 = root / "docker" / "registry" / "v2"
        (self.v2 / "blobs").mkdir(parents=True)
        (self.v2 / "repositories").mkdir()

    def blob(self, data: bytes) -> str:
        digest = sha(data)
        path = self.v2 / "blobs" / "sha256" / digest[7:9] / digest[7:] / "data"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return digest

    def link(self, path: Path, digest: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(digest)

    def manifest(self, repo: str, body: dict[str, object], tags: tuple[str, ...] = ()) -> str:
        digest = self.blob(json.dumps(body).encode())
        base = self.v2 / "repositories" / repo / "_manifests"
        self.link(base / "revisions" / "sha256" / digest[7:] / "link", digest)
        for tag in tags:
            self.link(base / "tags" / tag / "current" / "link", digest)
            self.link(base / "tags" / tag / "index" / "sha256" / digest[7:] / "link", digest)
        return digest

    def image(self, repo: str, tags: tuple[str, ...] = (), layer: bytes = b"layer") -> str:
        config_bytes = b'{"architecture": "amd64", "os": "linux"}'
        config = self.blob(config_bytes)
        layer_digest = self.blob(layer)
        body: dict[str, object] = {
            "schemaVersion": 2,
            "mediaType": mt.DOCKER_MANIFEST,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config,
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        }
        return self.manifest(repo, body, tags)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    root = tmp_path / "dockyard"
    reg = Registry(
        Database(root / "metadata.db"),
        FilesystemDriver(root),
        manifest_max_size=4 * 1024 * 1024,
        delete_enabled=False,
    )
    yield reg
    reg.close()


def migrate(registry: Registry, root: Path, prefix: str | None = None) -> ImportReport:
    migrator = DistributionMigrator(ImportStore(registry), DistributionStore(root), prefix)
    return asyncio.run(migrator.run())


def reasons(report: ImportReport) -> dict[str, str]:
    return {s.what: s.reason for s in report.skipped}


def test_live_content_migrates_and_the_rest_is_reported(registry: Registry, tmp_path: Path) -> None:
    tree = Tree(tmp_path / "registry")
    app = tree.image("team/app", ("1.0", "latest"))
    other = tree.image("team/app", (), layer=b"untagged layer")
    child = tree.image("multi", layer=b"child layer")
    index = tree.manifest(
        "multi",
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [
                {
                    "mediaType": mt.DOCKER_MANIFEST,
                    "digest": child,
                    "size": 1,
                    "platform": {"os": "linux", "architecture": "amd64"},
                }
            ],
        },
        ("2",),
    )
    # Deleted: the revision link is gone (directory left), the tag directory too.
    deleted = tree.image("team/app", layer=b"deleted layer")
    (tree.v2 / "repositories/team/app/_manifests/revisions/sha256" / deleted[7:] / "link").unlink()
    # A tag whose manifest was deleted, a schema 1 manifest, a manifest missing a layer.
    tree.link(tree.v2 / "repositories/team/app/_manifests/tags/stale/current/link", deleted)
    schema1 = tree.manifest(
        "old",
        {"schemaVersion": 1, "name": "old", "tag": "v1", "fsLayers": [], "signatures": []},
        ("v1",),
    )
    broken = tree.image("broken", ("1",), layer=b"layer whose data is gone")
    layer = sha(b"layer whose data is gone")
    (tree.v2 / "blobs/sha256" / layer[7:9] / layer[7:] / "data").unlink()
    (tree.v2 / "repositories/team/app/_uploads/some-uuid").mkdir(parents=True)

    report = migrate(registry, tmp_path / "registry")
    written = {plan.name: status for plan, status in report.images}
    assert written == {
        "team/app:1.0": "new",
        "team/app:latest": "new",
        f"team/app@{other}": "new",
        "multi:2": "new",
    }
    why = reasons(report)
    assert why[f"team/app@{deleted}"] == "manifest deleted (no revision link)"
    assert why["team/app:stale"] == f"tag points at deleted manifest {deleted}"
    assert "schema 1" in why[f"old@{schema1}"]
    assert why[f"broken@{broken}"] == f"blob {layer} is missing from the store"
    assert why["broken:1"] == f"its manifest {broken} was skipped"
    assert why["team/app"] == "1 unfinished upload(s)"

    stored = asyncio.run(registry.manifests.get("multi", "2"))
    assert str(stored.digest) == index
    assert str(asyncio.run(registry.manifests.get("team/app", "1.0")).digest) == app
    child_layer = Digest.parse(sha(b"child layer"))
    assert asyncio.run(registry.blobs.stat("multi", child_layer)).size == len(b"child layer")

    again = migrate(registry, tmp_path / "registry")
    assert {status for _plan, status in again.images} == {"unchanged"}
    assert again.stats.blobs_written == 0


def test_a_corrupted_blob_skips_the_manifests_that_need_it(
    registry: Registry, tmp_path: Path
) -> None:
    tree = Tree(tmp_path / "registry")
    good = tree.image("a", ("good",))
    bad = tree.image("a", ("bad",), layer=b"will be damaged")
    layer = sha(b"will be damaged")
    (tree.v2 / "blobs/sha256" / layer[7:9] / layer[7:] / "data").write_bytes(b"will be DAMAGED")
    report = migrate(registry, tree.v2, prefix="migrated")
    assert [plan.name for plan, _status in report.images] == ["migrated/a:good"]
    why = reasons(report)
    assert "is corrupted" in why[f"a@{bad}"]
    assert why["a:bad"] == f"its manifest {bad} was skipped"
    assert str(asyncio.run(registry.manifests.get("migrated/a", "good")).digest) == good


def test_not_a_distribution_store(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a Distribution store"):
        DistributionStore(tmp_path)
