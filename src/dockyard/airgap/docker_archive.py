"""`docker save` archives: `manifest.json` lists each image's config file, tags and layers.

Layers in these archives are usually plain tars (the config's `rootfs.diff_ids` are their
digests). Imported as they are, they become a Docker schema 2 manifest with the media type
`application/vnd.docker.image.rootfs.diff.tar`; the manifest is built the same way every
time, so importing the same archive twice gives the same digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dockyard.airgap.compression import Compression
from dockyard.airgap.errors import BundleError
from dockyard.errors import RegistryError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


@dataclass(frozen=True, slots=True)
class ArchiveImage:
    """One entry of manifest.json."""

    config: str
    repo_tags: tuple[str, ...]
    layers: tuple[str, ...]


def parse_manifest_json(data: bytes) -> list[ArchiveImage]:
    """The images a `docker save` manifest.json lists; BundleError when it is malformed."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise BundleError(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(document, list):
        raise BundleError("manifest.json must be a list of images")
    images = []
    for i, item in enumerate(document):
        if not isinstance(item, dict) or not isinstance(item.get("Config"), str):
            raise BundleError(f"manifest.json: entry {i} has no Config")
        layers = item.get("Layers") or []
        tags = item.get("RepoTags") or []
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            raise BundleError(f"manifest.json: entry {i}: Layers must be a list of paths")
        if not isinstance(tags, list) or not all(isinstance(x, str) for x in tags):
            raise BundleError(f"manifest.json: entry {i}: RepoTags must be a list of names")
        images.append(ArchiveImage(item["Config"], tuple(tags), tuple(layers)))
    return images


def diff_ids(config: bytes, where: str) -> list[Digest]:
    """The `rootfs.diff_ids` of an image config."""
    try:
        document = json.loads(config)
        values = document["rootfs"]["diff_ids"]
        return [Digest.parse(str(v)) for v in values]
    except (ValueError, KeyError, TypeError, RegistryError) as exc:
        raise BundleError(f"{where}: not an image config with rootfs.diff_ids ({exc})") from None


@dataclass(frozen=True, slots=True)
class LayerBlob:
    digest: Digest
    size: int
    compression: Compression


def layer_media_type(compression: Compression, oci: bool) -> str:
    if oci:
        return {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}[compression]
    return DOCKER_LAYER_GZIP if compression == "gzip" else DOCKER_LAYER


def build_manifest(config: Digest, config_size: int, layers: list[LayerBlob]) -> tuple[str, bytes]:
    """The manifest for an archive image: Docker schema 2 (OCI only for zstd layers)."""
    oci = any(layer.compression == "zstd" for layer in layers)
    media_type = mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "size": config_size,
            "digest": str(config),
        },
        "layers": [
            {
                "mediaType": layer_media_type(layer.compression, oci),
                "size": layer.size,
                "digest": str(layer.digest),
            }
            for layer in layers
        ],
    }
    return media_type, json.dumps(document, indent=3).encode()


def manifest_json(images: list[tuple[str, list[str], list[str]]]) -> bytes:
    """manifest.json for (config path, tags, layer paths) per image."""
    return json.dumps(
        [{"Config": c, "RepoTags": tags, "Layers": layers} for c, tags, layers in images]
    ).encode()


def repositories_json(tags: dict[str, dict[str, str]]) -> bytes:
    """The legacy `repositories` file: name -> tag -> image id."""
    return json.dumps(tags).encode()
