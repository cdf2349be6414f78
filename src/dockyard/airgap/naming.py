"""Image names in bundles, and the Dockyard repository each image is stored in.

An image `docker.io/library/nginx:1.27` is stored in the repository
`docker.io/library/nginx`: the name under which the pull-through cache keeps docker.io
content, and the one a request with `?ns=docker.io` finds when no docker.io upstream is
configured. A registry with a port (`127.0.0.1:5000/team/app`) cannot start a repository
name, so such images are stored under the plain repository (`team/app`). `--prefix P`
replaces the registry: `P/library/nginx`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.errors import RegistryError
from dockyard.oci.digest import Digest
from dockyard.oci.names import validate_name
from dockyard.oci.reference import ImageReference, parse_image_reference

# Annotations on index.json entries naming the image (containerd's, then the OCI one).
CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True, slots=True)
class ImageName:
    """Where one image of a bundle goes: repository, and tag (None: by digest only)."""

    display: str  # the name as the bundle gives it, normalised
    repository: str
    tag: str | None


def parse_name(text: str) -> ImageReference | None:
    """A full image reference, or None for a bare tag such as `1.27` (no repository)."""
    if "/" not in text and ":" not in text and "@" not in text:
        return None
    try:
        return parse_image_reference(text)
    except ValueError:
        return None


def name_from_annotations(annotations: dict[str, str]) -> ImageReference | None:
    """The image name an index.json entry carries, if it carries a whole one."""
    for key in (CONTAINERD_NAME, OCI_REF_NAME):
        value = annotations.get(key)
        if value:
            parsed = parse_name(value)
            if parsed is not None:
                return parsed
    return None


def target(ref: ImageReference, prefix: str | None) -> ImageName:
    """The repository and tag an image is stored under; ValueError if that is no valid name."""
    if prefix is not None:
        repository = (
            f"{prefix.strip('/')}/{ref.repository}" if prefix.strip("/") else ref.repository
        )
    elif is_repository_component(ref.registry):
        repository = f"{ref.registry}/{ref.repository}"
    else:
        repository = ref.repository
    try:
        validate_name(repository)
    except RegistryError as exc:
        raise ValueError(f"{ref}: cannot be stored as {repository!r}: {exc.message}") from None
    return ImageName(str(ref), repository, ref.tag)


def is_repository_component(registry: str) -> bool:
    """Whether a registry host can be the first component of a repository name."""
    try:
        validate_name(registry)
    except RegistryError:
        return False
    return "/" not in registry


def reference_text(ref: ImageReference, digest: Digest) -> str:
    """`name:tag` when tagged, else `name@digest`: how reports show an image."""
    base = f"{ref.registry}/{ref.repository}"
    return f"{base}:{ref.tag}" if ref.tag else f"{base}@{digest}"
