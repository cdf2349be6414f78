"""Which upstream a request is for: `?ns=`, then a path prefix, then the default upstream."""

from __future__ import annotations

from dataclasses import dataclass

from dockyard.config import DOCKER_HUB_HOSTS
from dockyard.errors import RegistryError
from dockyard.oci.names import validate_name
from dockyard.proxy.upstream import UpstreamClient


@dataclass(frozen=True, slots=True)
class ProxyTarget:
    """A request routed to an upstream."""

    upstream: UpstreamClient
    remote_name: str  # the repository name at the upstream
    local_name: str  # where the cache keeps it: "<upstream>/<remote name>"
    # True when only the default upstream matched: local content wins, pushes stay local.
    fallback: bool = False


class Router:
    """Maps (repository name, ns) to an upstream, or to None for a local repository."""

    def __init__(self, upstreams: dict[str, UpstreamClient], default: str | None = None) -> None:
        self._upstreams = upstreams
        self._default = upstreams.get(default) if default else None

    @property
    def upstreams(self) -> dict[str, UpstreamClient]:
        return self._upstreams

    def _target(self, upstream: UpstreamClient, remote: str, fallback: bool = False) -> ProxyTarget:
        remote = upstream.remote_name(remote)
        return ProxyTarget(upstream, remote, f"{upstream.settings.name}/{remote}", fallback)

    def route(self, name: str, ns: str | None) -> ProxyTarget | None:
        """The upstream for a request, or None when it is for a local repository."""
        if ns:
            upstream = self._upstreams.get(ns.lower())
            if upstream is None:
                # A registry we do not cache: only local content can answer for it.
                return None
            prefix = f"{upstream.settings.name}/"
            # A client may send both the ns and a prefixed path; do not double it.
            remote = name[len(prefix) :] if name.startswith(prefix) else name
            return self._target(upstream, remote)
        first, sep, rest = name.partition("/")
        if sep:
            upstream = self._upstreams.get(first)
            if upstream is not None:
                return self._target(upstream, rest)
        if self._default is not None:
            return self._target(self._default, name, fallback=True)
        return None

    def is_proxied(self, name: str, ns: str | None) -> bool:
        """Whether writes to this name must be refused (it belongs to an upstream)."""
        target = self.route(name, ns)
        return target is not None and not target.fallback


def imported_repository(name: str, ns: str | None) -> str | None:
    """`<ns>/<name>` for a request routed by `?ns=` to no upstream, or None.

    `dockyard import` stores `docker.io/library/nginx:1.27` in `docker.io/library/nginx`,
    the name the cache uses for docker.io. When no docker.io upstream is configured (an
    air-gapped site), containerd's `GET /v2/library/nginx/...?ns=docker.io` is answered from
    that repository first and from the plain name `library/nginx` after it.
    """
    if not ns:
        return None
    registry = ns.lower()
    if registry in DOCKER_HUB_HOSTS:
        registry = "docker.io"
        if "/" not in name:
            name = f"library/{name}"
    if name.startswith(f"{registry}/"):
        return None  # the client named the registry in the path already
    qualified = f"{registry}/{name}"
    try:
        validate_name(qualified)  # a registry with a port cannot start a repository name
    except RegistryError:
        return None
    return qualified
