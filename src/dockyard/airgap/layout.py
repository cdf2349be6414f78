"""The OCI image layout: `oci-layout`, `index.json` and content under `blobs/<alg>/<hex>`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.airgap.errors import BundleError
from dockyard.errors import RegistryError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest

OCI_LAYOUT_FILE = "oci-layout"
INDEX_FILE = "index.json"
OCI_LAYOUT_CONTENT = b'{"imageLayoutVersion": "1.0.0"}'
# Dockyard's own record of what a bundle it wrote holds (ignored by other tools).
BUNDLE_FILE = "dockyard-bundle.json"
# `docker save` and `podman save`.
DOCKER_MANIFEST_FILE = "manifest.json"
DOCKER_REPOSITORIES_FILE = "repositories"

METADATA_FILES = frozenset(
    {OCI_LAYOUT_FILE, INDEX_FILE, BUNDLE_FILE, DOCKER_MANIFEST_FILE, DOCKER_REPOSITORIES_FILE}
)
# The largest metadata file read into memory (index.json of thousands of images fits).
METADATA_LIMIT = 16 * 1024 * 1024


def blob_path(digest: Digest) -> str:
    """`blobs/sha256/<hex>`."""
    return f"blobs/{digest.algorithm}/{digest.hex}"


def digest_of_path(name: str) -> Digest | None:
    """The digest a `blobs/<alg>/<hex>` path names, or None for any other path."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "blobs":
        return None
    try:
        return Digest.parse(f"{parts[1]}:{parts[2]}")
    except RegistryError:
        return None


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """A top-level descriptor of index.json: one named image (or an unnamed one)."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: dict[str, Any] | None = None


def parse_index(data: bytes) -> list[IndexEntry]:
    """The entries of an index.json; BundleError when it is not one."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise BundleError(f"index.json is not valid JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("manifests"), list):
        raise BundleError("index.json has no manifests list")
    entries = []
    for i, item in enumerate(document["manifests"]):
        try:
            entries.append(
                IndexEntry(
                    str(item.get("mediaType") or mt.OCI_MANIFEST),
                    Digest.parse(str(item["digest"])),
                    int(item["size"]),
                    {str(k): str(v) for k, v in (item.get("annotations") or {}).items()},
                    item.get("platform"),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError, RegistryError) as exc:
            raise BundleError(
                f"index.json: manifests[{i}] is not a valid descriptor ({exc})"
            ) from None
    return entries


def index_json(entries: list[dict[str, Any]]) -> bytes:
    """An index.json listing descriptors (with their name annotations)."""
    return json.dumps(
        {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}, indent=2
    ).encode()


def platform_text(platform: dict[str, Any] | None) -> str:
    """`linux/arm64/v8` from a descriptor's platform object ("" when absent)."""
    if not platform:
        return ""
    parts = [str(platform.get("os", "")), str(platform.get("architecture", ""))]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


def platform_matches(platform: dict[str, Any] | None, wanted: tuple[str, ...]) -> bool:
    """Whether a descriptor's platform is one of `wanted` (`linux/arm64` matches any variant)."""
    if not wanted:
        return True
    have = platform_text(platform)
    return any(have == p or have.startswith(p + "/") for p in wanted)
