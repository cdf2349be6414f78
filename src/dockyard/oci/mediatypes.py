"""Manifest media types and content negotiation."""

from __future__ import annotations

from collections.abc import Iterable

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCTET_STREAM = "application/octet-stream"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = IMAGE_MANIFESTS | INDEXES


def strip_parameters(content_type: str) -> str:
    """`application/x; charset=utf-8` -> `application/x` (the spec says to ignore parameters)."""
    return content_type.split(";", 1)[0].strip().lower()


def parse_accept(header_values: Iterable[str]) -> list[str]:
    """Merge every `Accept:` line into one list of media types (clients send several)."""
    accepted: list[str] = []
    for value in header_values:
        for part in value.split(","):
            media_type = strip_parameters(part)
            if media_type:
                accepted.append(media_type)
    return accepted
