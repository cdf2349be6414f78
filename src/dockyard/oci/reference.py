"""Image references as users write them: `nginx:1.27`, `ghcr.io/org/app@sha256:...`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from dockyard.errors import RegistryError
from dockyard.oci.digest import Digest
from dockyard.oci.names import validate_name, validate_tag

DOCKER_HUB = "docker.io"
# A host name or IPv4 address, or a bracketed IPv6 address, with an optional port.
_REGISTRY = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)


@dataclass(frozen=True, slots=True)
class ImageReference:
    registry: str
    repository: str
    tag: str | None
    digest: Digest | None

    @property
    def reference(self) -> str:
        """What goes after `/manifests/`: the digest if pinned, else the tag."""
        if self.digest is not None:
            return str(self.digest)
        return self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_image_reference(text: str) -> ImageReference:
    """Normalise like docker and containerd: no registry means docker.io, and Docker Hub's
    single-component names live under `library/`. Raises ValueError with the reason."""
    value = text.strip()
    if not value:
        raise ValueError("empty image reference")
    digest = None
    if "@" in value:
        value, _, digest_text = value.partition("@")
        try:
            digest = Digest.parse(digest_text)
        except RegistryError as exc:
            raise ValueError(f"{text}: {exc.message}") from None
    first, sep, rest = value.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        if not _REGISTRY.fullmatch(first):
            raise ValueError(f"{text}: invalid registry host {first!r}")
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, value
    tag = None
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    try:
        validate_name(path)
        if tag is not None:
            validate_tag(tag)
    except RegistryError as exc:
        raise ValueError(f"{text}: {exc.message}") from None
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(registry, path, tag, digest)
