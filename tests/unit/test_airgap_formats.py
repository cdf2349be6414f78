"""Pure parts of air-gap bundles: compression, names, the OCI layout, docker-archive."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os

import pytest
import zstandard

from dockyard.airgap import docker_archive as da
from dockyard.airgap.compression import DiffDigester, detect, open_decompressed
from dockyard.airgap.errors import BundleError
from dockyard.airgap.layout import (
    blob_path,
    digest_of_path,
    parse_index,
    platform_matches,
    platform_text,
)
from dockyard.airgap.naming import name_from_annotations, parse_name, target
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.manifest import parse_manifest
from dockyard.oci.reference import parse_image_reference
from dockyard.proxy.router import imported_repository

# -- compression ------------------------------------------------------------------------------


def test_detect_by_magic_bytes_not_name() -> None:
    assert detect(gzip.compress(b"x")) == "gzip"
    assert detect(zstandard.ZstdCompressor().compress(b"x")) == "zstd"
    assert detect(b"ustar stuff") == "none"
    assert detect(b"") == "none"


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_open_decompressed_reads_the_original_bytes(kind: str) -> None:
    data = os.urandom(5000) * 3
    packed = {
        "none": data,
        "gzip": gzip.compress(data),
        "zstd": zstandard.ZstdCompressor().compress(data),
    }[kind]
    stream, found = open_decompressed(io.BytesIO(packed))
    assert found == kind
    assert stream.read() == data


def test_truncated_gzip_raises_eof() -> None:
    packed = gzip.compress(os.urandom(100_000))
    stream, _kind = open_decompressed(io.BytesIO(packed[: len(packed) // 2]))
    with pytest.raises(EOFError):
        stream.read()


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_diff_digester_hashes_the_uncompressed_layer(kind: str) -> None:
    # Zeros expand enormously: output is produced in bounded pieces, never all at once.
    layer = os.urandom(70_000) + bytes(8 * 1024 * 1024)
    packed = {
        "none": layer,
        "gzip": gzip.compress(layer),
        "zstd": zstandard.ZstdCompressor().compress(layer),
    }[kind]
    digester = DiffDigester()
    for start in range(0, len(packed), 3000):
        digester.update(packed[start : start + 3000])
    assert digester.hexdigest() == hashlib.sha256(layer).hexdigest()
    assert digester.compression == kind


def test_diff_digester_of_concatenated_gzip_members() -> None:
    first, second = os.urandom(40_000), os.urandom(50_000)
    digester = DiffDigester()
    digester.update(gzip.compress(first) + gzip.compress(second))
    assert digester.hexdigest() == hashlib.sha256(first + second).hexdigest()


def test_diff_digester_of_a_tiny_file() -> None:
    digester = DiffDigester()
    digester.update(b"ab")
    assert digester.hexdigest() == hashlib.sha256(b"ab").hexdigest()
    assert digester.compression == "none"


# -- names --------------------------------------------------------------------------------------


def test_names_from_annotations_prefer_containerd() -> None:
    ref = name_from_annotations(
        {
            "io.containerd.image.name": "docker.io/library/nginx:1.27",
            "org.opencontainers.image.ref.name": "1.27",
        }
    )
    assert ref is not None and str(ref) == "docker.io/library/nginx:1.27"
    only_oci = name_from_annotations({"org.opencontainers.image.ref.name": "myapp:v1"})
    assert only_oci is not None and str(only_oci) == "docker.io/library/myapp:v1"
    assert name_from_annotations({"org.opencontainers.image.ref.name": "1.27"}) is None
    assert name_from_annotations({}) is None
    assert parse_name("latest") is None


def test_targets_keep_the_registry_unless_it_cannot_be_a_name() -> None:
    def where(text: str, prefix: str | None = None) -> tuple[str, str | None]:
        name = target(parse_image_reference(text), prefix)
        return name.repository, name.tag

    assert where("nginx:1.27") == ("docker.io/library/nginx", "1.27")
    assert where("ghcr.io/org/app:v1") == ("ghcr.io/org/app", "v1")
    assert where("127.0.0.1:5000/team/app:1.0") == ("team/app", "1.0")
    assert where("localhost/app:2") == ("localhost/app", "2")
    assert where("nginx:1.27", prefix="mirror") == ("mirror/library/nginx", "1.27")
    assert where("nginx:1.27", prefix="/") == ("library/nginx", "1.27")
    digest = "sha256:" + "a" * 64
    assert where(f"registry.k8s.io/pause@{digest}") == ("registry.k8s.io/pause", None)
    with pytest.raises(ValueError, match="cannot be stored"):
        target(parse_image_reference("nginx:1"), "Bad_Prefix")


def test_imported_repository_for_requests_no_upstream_takes() -> None:
    assert imported_repository("library/nginx", "docker.io") == "docker.io/library/nginx"
    assert imported_repository("nginx", "registry-1.docker.io") == "docker.io/library/nginx"
    assert imported_repository("org/app", "GHCR.IO") == "ghcr.io/org/app"
    assert imported_repository("library/nginx", None) is None
    assert imported_repository("docker.io/library/nginx", "docker.io") is None
    assert imported_repository("team/app", "127.0.0.1:5000") is None


# -- OCI layout ---------------------------------------------------------------------------------


def test_blob_paths_round_trip() -> None:
    digest = Digest.of(b"x")
    assert digest_of_path(blob_path(digest)) == digest
    assert digest_of_path("blobs/sha256/short") is None
    assert digest_of_path("index.json") is None
    assert digest_of_path("blobs/md5/" + "a" * 32) is None


def test_parse_index() -> None:
    digest = Digest.of(b"m")
    entries = parse_index(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": mt.OCI_INDEX,
                        "digest": str(digest),
                        "size": 1,
                        "annotations": {"org.opencontainers.image.ref.name": "a:b"},
                    }
                ],
            }
        ).encode()
    )
    assert entries[0].digest == digest and entries[0].media_type == mt.OCI_INDEX
    with pytest.raises(BundleError, match="not valid JSON"):
        parse_index(b"{")
    with pytest.raises(BundleError, match="no manifests list"):
        parse_index(b"{}")
    with pytest.raises(BundleError, match=r"manifests\[0\]"):
        parse_index(b'{"manifests": [{"digest": "nope", "size": 1}]}')


def test_platform_matching() -> None:
    arm = {"os": "linux", "architecture": "arm64", "variant": "v8"}
    assert platform_text(arm) == "linux/arm64/v8"
    assert platform_text(None) == ""
    assert platform_matches(arm, ("linux/arm64",))
    assert platform_matches(arm, ())
    assert not platform_matches(arm, ("linux/amd64",))
    assert not platform_matches(None, ("linux/amd64",))


# -- docker-archive -----------------------------------------------------------------------------


def test_parse_manifest_json() -> None:
    images = da.parse_manifest_json(
        b'[{"Config": "c.json", "RepoTags": ["a:1"], "Layers": ["l/layer.tar"]},'
        b' {"Config": "d.json", "RepoTags": null, "Layers": []}]'
    )
    assert images[0] == da.ArchiveImage("c.json", ("a:1",), ("l/layer.tar",))
    assert images[1].repo_tags == ()
    with pytest.raises(BundleError, match="list of images"):
        da.parse_manifest_json(b"{}")
    with pytest.raises(BundleError, match="no Config"):
        da.parse_manifest_json(b"[{}]")


def test_diff_ids() -> None:
    layer = Digest.of(b"layer")
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [str(layer)]}}).encode()
    assert da.diff_ids(config, "c.json") == [layer]
    with pytest.raises(BundleError, match=r"c\.json"):
        da.diff_ids(b"{}", "c.json")


def test_built_manifests_are_valid_and_deterministic() -> None:
    config, layer = Digest.of(b"config"), Digest.of(b"layer")
    plain = [da.LayerBlob(layer, 5, "none")]
    media_type, content = da.build_manifest(config, 6, plain)
    assert media_type == mt.DOCKER_MANIFEST
    assert da.build_manifest(config, 6, plain)[1] == content
    manifest = parse_manifest(content, media_type)
    assert manifest.config is not None and manifest.config.digest == config
    assert [d.media_type for d in manifest.layers] == [da.DOCKER_LAYER]
    gz = da.build_manifest(config, 6, [da.LayerBlob(layer, 5, "gzip")])
    assert json.loads(gz[1])["layers"][0]["mediaType"] == da.DOCKER_LAYER_GZIP
    zst_type, zst = da.build_manifest(config, 6, [da.LayerBlob(layer, 5, "zstd")])
    assert zst_type == mt.OCI_MANIFEST
    assert json.loads(zst)["layers"][0]["mediaType"] == da.OCI_LAYER_ZSTD
