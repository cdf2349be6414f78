"""Image references as users write them, normalised like docker and containerd."""

from __future__ import annotations

import pytest

from dockyard.oci.reference import parse_image_reference


@pytest.mark.parametrize(
    ("text", "registry", "repository", "reference"),
    [
        ("nginx", "docker.io", "library/nginx", "latest"),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27"),
        ("bitnami/redis:7", "docker.io", "bitnami/redis", "7"),
        ("index.docker.io/library/alpine:3", "docker.io", "library/alpine", "3"),
        ("ghcr.io/org/app:v1", "ghcr.io", "org/app", "v1"),
        ("localhost:5000/team/app", "localhost:5000", "team/app", "latest"),
        ("10.0.0.5:30500/team/app:v2", "10.0.0.5:30500", "team/app", "v2"),
        ("[::1]:5000/x/y:1", "[::1]:5000", "x/y", "1"),
        (
            "registry.k8s.io/pause@sha256:" + "a" * 64,
            "registry.k8s.io",
            "pause",
            "sha256:" + "a" * 64,
        ),
    ],
)
def test_normalised(text: str, registry: str, repository: str, reference: str) -> None:
    ref = parse_image_reference(text)
    assert (ref.registry, ref.repository, ref.reference) == (registry, repository, reference)


@pytest.mark.parametrize(
    "text",
    ["", "UPPER/case", "a b.c/x", "ex ample.com:5000/x", "ghcr.io/org/app:-bad", "x@sha256:123"],
)
def test_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_image_reference(text)
