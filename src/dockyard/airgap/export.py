"""Exporting images from a running Dockyard into one bundle archive.

`oci-archive` is an OCI image layout in a tar (what `skopeo copy oci-archive:`, `podman
load`, `ctr images import` and K3s read): each image is an index.json entry annotated with
its full name (`io.containerd.image.name`, and `org.opencontainers.image.ref.name` for
skopeo). All platforms are kept unless `--platform` narrows them: one platform left means
the entry is that platform's manifest itself; several mean a new, smaller index. A
`docker-archive` is what `docker save` writes (manifest.json, repositories), one platform
per image. Both carry `dockyard-bundle.json`, the list of images and blobs inside.
"""

from __future__ import annotations

import json
import platform as host
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockyard import __version__
from dockyard.airgap import docker_archive as da
from dockyard.airgap.errors import BundleError
from dockyard.airgap.layout import (
    BUNDLE_FILE,
    DOCKER_MANIFEST_FILE,
    DOCKER_REPOSITORIES_FILE,
    INDEX_FILE,
    OCI_LAYOUT_CONTENT,
    OCI_LAYOUT_FILE,
    blob_path,
    index_json,
    platform_matches,
    platform_text,
)
from dockyard.airgap.naming import CONTAINERD_NAME, OCI_REF_NAME, reference_text
from dockyard.airgap.remote import FetchedManifest, RegistryReader
from dockyard.airgap.writer import TarBundleWriter
from dockyard.errors import RegistryError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.manifest import parse_manifest
from dockyard.oci.reference import ImageReference

_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le"}


def host_platform() -> str:
    """`linux/amd64` on a usual x86-64 machine: the default of single-platform formats."""
    machine = host.machine().lower()
    return f"linux/{_GOARCH.get(machine, machine)}"


@dataclass
class ExportImage:
    ref: ImageReference
    top: FetchedManifest  # what index.json (or manifest.json) names
    manifests: list[FetchedManifest] = field(default_factory=list)  # children first
    blobs: dict[Digest, int] = field(default_factory=dict)  # configs and layers
    platforms: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return reference_text(self.ref, self.top.digest)

    @property
    def size(self) -> int:
        return sum(self.blobs.values()) + sum(len(m.content) for m in self.manifests)


class Exporter:
    """Resolves images through a registry and writes them into one archive."""

    def __init__(
        self,
        reader: RegistryReader,
        platforms: tuple[str, ...] = (),
        docker_archive: bool = False,
        manifest_limit: int = 4 * 1024 * 1024,
    ) -> None:
        self._reader = reader
        self._docker = docker_archive
        self._platforms = platforms or ((host_platform(),) if docker_archive else ())
        self._limit = manifest_limit

    # -- resolving --------------------------------------------------------------------------

    def resolve(self, ref: ImageReference) -> ExportImage:
        """The image's manifests (those of the wanted platforms) and blobs."""
        top = self._reader.manifest(ref, ref.reference, self._limit)
        document = top.document()
        if top.media_type in mt.INDEXES or "manifests" in document:
            children = [
                c
                for c in document.get("manifests") or []
                if isinstance(c, dict) and platform_matches(c.get("platform"), self._platforms)
            ]
            if not children:
                have = [platform_text(c.get("platform")) for c in document.get("manifests") or []]
                raise BundleError(
                    f"{ref}: no manifest for {', '.join(self._platforms)}; it has "
                    f"{', '.join(p for p in have if p) or 'none with a platform'}"
                )
            if self._docker or (self._platforms and len(children) == 1):
                chosen = children[0]
                top = self._reader.manifest(ref, str(chosen["digest"]), self._limit)
                image = ExportImage(ref, top, platforms=[platform_text(chosen.get("platform"))])
                self._collect(image, top, 0)
                return image
            if len(children) < len(document["manifests"]):
                narrowed = dict(document, manifests=children)
                content = json.dumps(narrowed, indent=2).encode()
                top = FetchedManifest(Digest.of(content), top.media_type, content)
            image = ExportImage(ref, top)
            image.platforms = [platform_text(c.get("platform")) for c in children]
        else:
            image = ExportImage(ref, top)
        self._collect(image, top, 0)
        return image

    def _collect(self, image: ExportImage, fetched: FetchedManifest, depth: int) -> None:
        if depth > 4:
            raise BundleError(f"{image.ref}: indexes nest too deeply")
        try:
            manifest = parse_manifest(fetched.content, fetched.media_type)
        except RegistryError as exc:
            raise BundleError(f"{image.ref}: manifest {fetched.digest}: {exc.message}") from None
        if self._docker and manifest.is_index:
            raise BundleError(f"{image.ref}: a docker-archive holds one platform per image")
        for child in manifest.manifests:
            if all(m.digest != child.digest for m in image.manifests):
                self._collect(
                    image,
                    self._reader.manifest(image.ref, str(child.digest), self._limit),
                    depth + 1,
                )
        for blob in manifest.blob_references():
            image.blobs[blob.digest] = blob.size
        image.manifests.append(fetched)

    # -- writing ----------------------------------------------------------------------------

    def write(
        self,
        images: list[ExportImage],
        writer: TarBundleWriter,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Write the archive; returns the bundle record (also stored as dockyard-bundle.json)."""
        record = bundle_record(images, "docker-archive" if self._docker else "oci-archive")
        if self._docker:
            writer.add_bytes(DOCKER_MANIFEST_FILE, _docker_manifest(images))
            writer.add_bytes(DOCKER_REPOSITORIES_FILE, _docker_repositories(images))
        else:
            writer.add_bytes(OCI_LAYOUT_FILE, OCI_LAYOUT_CONTENT)
            writer.add_bytes(INDEX_FILE, index_json([_index_entry(i) for i in images]))
        writer.add_bytes(BUNDLE_FILE, json.dumps(record, indent=2).encode())
        writer.add_directory("blobs")
        for image in images:
            writer.add_directory(f"blobs/{image.top.digest.algorithm}")
            if not self._docker:
                for fetched in image.manifests:
                    if not writer.has(blob_path(fetched.digest)):
                        writer.add_bytes(blob_path(fetched.digest), fetched.content)
        for image in images:
            for digest, size in image.blobs.items():
                name = blob_path(digest)
                if writer.has(name):
                    continue
                writer.add_directory(f"blobs/{digest.algorithm}")
                with self._reader.open_blob(image.ref, digest) as response:
                    writer.add_stream(name, size, response, digest, progress)
        return record


def _index_entry(image: ExportImage) -> dict[str, Any]:
    annotations = {CONTAINERD_NAME: image.name}
    if image.ref.tag:
        # skopeo finds `oci-archive:BUNDLE:<ref.name>`; it refuses names with a digest.
        annotations[OCI_REF_NAME] = image.name
    return {
        "mediaType": image.top.media_type,
        "digest": str(image.top.digest),
        "size": len(image.top.content),
        "annotations": annotations,
    }


def _docker_manifest(images: list[ExportImage]) -> bytes:
    entries = []
    for image in images:
        manifest = parse_manifest(image.top.content, image.top.media_type)
        assert manifest.config is not None
        tags = [image.name] if image.ref.tag else []
        layers = [blob_path(layer.digest) for layer in manifest.layers if not layer.urls]
        entries.append((blob_path(manifest.config.digest), tags, layers))
    return da.manifest_json(entries)


def _docker_repositories(images: list[ExportImage]) -> bytes:
    tags: dict[str, dict[str, str]] = {}
    for image in images:
        manifest = parse_manifest(image.top.content, image.top.media_type)
        if image.ref.tag and manifest.config is not None:
            name = f"{image.ref.registry}/{image.ref.repository}"
            tags.setdefault(name, {})[image.ref.tag] = manifest.config.digest.hex
    return da.repositories_json(tags)


def bundle_record(images: list[ExportImage], kind: str) -> dict[str, Any]:
    """What the bundle holds: each image with digest, platforms and size; every blob."""
    blobs: dict[str, int] = {}
    for image in images:
        if kind == "oci-archive":
            for fetched in image.manifests:
                blobs[str(fetched.digest)] = len(fetched.content)
        for digest, size in image.blobs.items():
            blobs[str(digest)] = size
    return {
        "dockyard": __version__,
        "format": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "images": [
            {
                "name": image.name,
                "digest": str(image.top.digest),
                "mediaType": image.top.media_type,
                "platforms": image.platforms,
                "size": image.size,
            }
            for image in images
        ],
        "blobs": [{"digest": d, "size": s} for d, s in sorted(blobs.items())],
        "size": sum(blobs.values()),
    }
