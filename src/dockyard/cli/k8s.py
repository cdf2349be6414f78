"""`dockyard k8s ...`: run Dockyard itself in the cluster."""

from __future__ import annotations

from pathlib import Path

import click

from dockyard.cli.workers import MAX_WORKERS
from dockyard.k8s.manifests import (
    ManifestOptions,
    Upstream,
    default_image,
    default_upstreams,
    render_files,
    render_yaml,
)


@click.group()
def k8s() -> None:
    """Render the Kubernetes manifests that run Dockyard in the cluster."""


def _pairs(option: str, values: tuple[str, ...]) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name or not rest:
            raise click.BadParameter(f"expected NAME=VALUE, got {value!r}", param_hint=option)
        pairs.append((name, rest))
    return pairs


def _upstreams(urls: tuple[str, ...], secrets: tuple[str, ...]) -> tuple[Upstream, ...]:
    given = _pairs("--upstream", urls)
    chosen = given if given else [(u.name, u.url) for u in default_upstreams()]
    secret_for: dict[str, str] = {}
    for name, secret in _pairs("--upstream-secret", secrets):
        if name in secret_for:
            raise click.BadParameter(f"{name} is given twice", param_hint="--upstream-secret")
        secret_for[name] = secret
    unknown = sorted(set(secret_for) - {name for name, _ in chosen})
    if unknown:
        raise click.BadParameter(
            f"no upstream named {', '.join(unknown)} "
            f"(upstreams: {', '.join(name for name, _ in chosen)})",
            param_hint="--upstream-secret",
        )
    return tuple(Upstream(name, url, secret_for.get(name)) for name, url in chosen)


@k8s.command()
@click.option("--namespace", default="registry", show_default=True, help="Namespace to create.")
@click.option(
    "--image",
    default=default_image(),
    show_default=True,
    help="The Dockyard image (built from the repository's Containerfile).",
)
@click.option("--size", default="50Gi", show_default=True, help="Size of the data volume.")
@click.option("--storage-class", help="storageClassName of the data volume, e.g. local-path (K3s).")
@click.option(
    "--node-port",
    type=click.IntRange(30000, 32767),
    default=30500,
    show_default=True,
    help="NodePort every node reaches Dockyard on.",
)
@click.option(
    "--upstream",
    "upstream_urls",
    multiple=True,
    metavar="NAME=URL",
    help="A registry to cache, e.g. docker.io=https://registry-1.docker.io (repeatable; "
    "default: docker.io, ghcr.io, quay.io, gcr.io, registry.k8s.io).",
)
@click.option(
    "--upstream-secret",
    "upstream_secrets",
    multiple=True,
    metavar="NAME=SECRET",
    help="Credentials for upstream NAME: a Secret with the keys username and password "
    "(repeatable).",
)
@click.option(
    "--tls-secret", metavar="NAME", help="A kubernetes.io/tls Secret: serve HTTPS with it."
)
@click.option(
    "--htpasswd-secret",
    metavar="NAME",
    help="A Secret with the key htpasswd: require those users (auth.htpasswd).",
)
@click.option("--htpasswd-realm", default="Dockyard", show_default=True, help="auth realm.")
@click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    default=1,
    show_default=True,
    help="`dockyard serve --workers N`: N processes for more small requests per second on N "
    "cores (memory and CPU requests and limits grow with N).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write one file per object into this directory instead of stdout.",
)
def manifests(
    namespace: str,
    image: str,
    size: str,
    storage_class: str | None,
    node_port: int,
    upstream_urls: tuple[str, ...],
    upstream_secrets: tuple[str, ...],
    tls_secret: str | None,
    htpasswd_secret: str | None,
    htpasswd_realm: str,
    workers: int,
    output: Path | None,
) -> None:
    """The Kubernetes objects that run Dockyard: Namespace, PVC, ConfigMap, Deployment and a
    NodePort Service, as multi-document YAML (pipe it to `kubectl apply -f -`)."""
    try:
        options = ManifestOptions(
            namespace=namespace,
            image=image,
            size=size,
            storage_class=storage_class,
            node_port=node_port,
            upstreams=_upstreams(upstream_urls, upstream_secrets),
            tls_secret=tls_secret,
            htpasswd_secret=htpasswd_secret,
            htpasswd_realm=htpasswd_realm,
            workers=workers,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if output is None:
        click.echo(render_yaml(options), nl=False)
        return
    output.mkdir(parents=True, exist_ok=True)
    for name, text in render_files(options).items():
        (output / name).write_text(text, encoding="utf-8")
        click.echo(str(output / name))
