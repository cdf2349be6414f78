"""Parsing and validating manifests and indexes (OCI image spec, Docker schema 2)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import DigestInvalidError, ManifestInvalidError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A content descriptor: media type, digest, size (and what a referrer needs)."""

    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    # (os, architecture) from an index entry's `platform`, when it names both.
    platform: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    """A parsed manifest: what it is and everything it points at."""

    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str]

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def referrer_artifact_type(self) -> str | None:
        """The `artifactType` a referrers listing shows for this manifest."""
        if self.artifact_type:
            return self.artifact_type
        if not self.is_index and self.config is not None:
            return self.config.media_type
        return None

    def blob_references(self) -> tuple[Descriptor, ...]:
        """Config and layers that must exist as blobs (foreign layers with `urls` excepted)."""
        blobs = [self.config] if self.config is not None else []
        blobs.extend(layer for layer in self.layers if not layer.urls)
        return tuple(blobs)


def _invalid(message: str) -> ManifestInvalidError:
    return ManifestInvalidError(message)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: a descriptor must be a JSON object")
    media_type = value.get("mediaType")
    digest = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}: mediaType must be a non-empty string")
    if not isinstance(digest, str):
        raise _invalid(f"{where}: digest must be a string")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}: size must be a non-negative integer")
    try:
        parsed = Digest.parse(digest)
    except DigestInvalidError as exc:
        raise _invalid(f"{where}: {exc.message}") from None
    urls = value.get("urls") or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise _invalid(f"{where}: urls must be a list of strings")
    artifact_type = value.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid(f"{where}: artifactType must be a string")
    return Descriptor(
        media_type,
        parsed,
        size,
        tuple(urls),
        artifact_type,
        _annotations(value.get("annotations"), where),
        _platform(value.get("platform")),
    )


def _platform(value: Any) -> tuple[str, str] | None:
    """(os, architecture) of a descriptor's platform; None when it does not name both (the
    image spec does not make `platform` required, so an odd one is not refused)."""
    if not isinstance(value, dict):
        return None
    os_name, architecture = value.get("os"), value.get("architecture")
    if isinstance(os_name, str) and isinstance(architecture, str):
        return (os_name, architecture)
    return None


def _annotations(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _invalid(f"{where}: annotations must map strings to strings")
    return dict(value)


def _descriptor_list(value: Any, where: str) -> tuple[Descriptor, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid(f"{where} must be a list of descriptors")
    return tuple(_descriptor(item, f"{where}[{i}]") for i, item in enumerate(value))


def _detect_media_type(document: dict[str, Any], content_type: str | None) -> str:
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    if content_type and content_type not in (mt.OCTET_STREAM, "application/json"):
        if declared and declared != content_type:
            raise _invalid(
                f"Content-Type {content_type!r} does not match the manifest's mediaType "
                f"{declared!r}"
            )
        return content_type
    if declared:
        return declared
    # OCI manifests may omit mediaType; tell an index from an image by its fields.
    if "manifests" in document:
        return mt.OCI_INDEX
    if "config" in document:
        return mt.OCI_MANIFEST
    raise _invalid("cannot tell the manifest's media type: set Content-Type or mediaType")


def parse_manifest(data: bytes, content_type: str | None) -> Manifest:
    """Parse and check a pushed manifest; ManifestInvalidError with the reason otherwise."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("manifest must be a JSON object")
    media_type = _detect_media_type(document, content_type)
    if media_type in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED):
        raise _invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if media_type not in mt.MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type {media_type!r}")
    if document.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    subject = document.get("subject")
    parsed_subject = _descriptor(subject, "subject") if subject is not None else None
    annotations = _annotations(document.get("annotations"), "manifest")

    if media_type in mt.INDEXES:
        if "manifests" not in document:
            raise _invalid("an index must have a manifests list")
        return Manifest(
            media_type,
            None,
            (),
            _descriptor_list(document["manifests"], "manifests"),
            parsed_subject,
            artifact_type,
            annotations,
        )
    if "config" not in document:
        raise _invalid("an image manifest must have a config descriptor")
    if "layers" not in document and media_type == mt.DOCKER_MANIFEST:
        raise _invalid("a Docker schema 2 manifest must have a layers list")
    return Manifest(
        media_type,
        _descriptor(document["config"], "config"),
        _descriptor_list(document.get("layers", []), "layers"),
        (),
        parsed_subject,
        artifact_type,
        annotations,
    )
