"""Manifest media types and content negotiation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

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


@dataclass(frozen=True, slots=True)
class Acceptance:
    """What a request's `Accept:` lines allow, for manifest content negotiation."""

    types: tuple[str, ...]
    manifest_types: frozenset[str]

    def allows(self, media_type: str) -> bool:
        """True when a manifest of `media_type` is served as it is: the client named it, or
        `*/*`, or no manifest type at all (a client that says nothing takes what is stored).
        """
        return not self.manifest_types or media_type in self.types or "*/*" in self.types


# Accept lines up to this long (all of a request's, together) are parsed once: every pull
# of the same client software sends the same ones.
_REMEMBERED_ACCEPT = 1024


def acceptance(header_values: Iterable[str]) -> Acceptance:
    """The Acceptance of a request's `Accept:` lines."""
    values = tuple(header_values)
    if sum(map(len, values)) > _REMEMBERED_ACCEPT:
        return _acceptance(values)
    return _remembered_acceptance(values)


def _acceptance(values: tuple[str, ...]) -> Acceptance:
    types = tuple(parse_accept(values))
    return Acceptance(types, frozenset(types) & MANIFEST_TYPES)


_remembered_acceptance = lru_cache(maxsize=256)(_acceptance)
