"""The `configs` half of the linter: is each entry keyed by a host containerd contacts?

containerd looks a config up by the host:port of the URL it is about to contact. For a
mirrored registry that is the mirror endpoint (`127.0.0.1:30500`), not the registry being
mirrored (`docker.io`); settings keyed by the upstream only apply when containerd falls back
to the upstream itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from dockyard.k3s.endpoint import (
    DOCKER_HUB_HOST,
    DOCKER_IO,
    EndpointError,
    NormalizedEndpoint,
    normalize_endpoint,
    split_port,
)
from dockyard.k3s.lint_schema import ConfigEntry, Located, MirrorEntry, Walked
from dockyard.k3s.model import WILDCARD

Endpoints = dict[str, list[tuple[NormalizedEndpoint, MirrorEntry]]]
WELL_KNOWN_UPSTREAMS = {DOCKER_IO, "ghcr.io", "quay.io", "gcr.io", "registry.k8s.io", "k8s.gcr.io"}


def host_key(host: str) -> str:
    """The name containerd matches configs against (registry-1.docker.io is docker.io)."""
    return DOCKER_IO if host == DOCKER_HUB_HOST else host


def close_hosts(name: str, hosts: list[str]) -> list[str]:
    """Endpoint hosts a configs key was probably meant to be (same name, other port...)."""
    bare = split_port(name)[0]
    same = sorted(h for h in hosts if split_port(h)[0] == bare)
    return same or difflib.get_close_matches(name, hosts, n=1, cutoff=0.8)


def _mirror_hosts(mirror: MirrorEntry, endpoints: Endpoints) -> list[str]:
    return sorted(host for host, users in endpoints.items() if any(m is mirror for _, m in users))


def _upstream_mirror(key: str, walked: Walked, endpoints: Endpoints) -> MirrorEntry | None:
    """The mirror that sends `key`'s pulls elsewhere, if `key` is a mirrored upstream."""
    wildcard = None
    for mirror in walked.mirrors:
        if not _mirror_hosts(mirror, endpoints):
            continue
        if host_key(mirror.name) == key:
            return mirror
        if mirror.name == WILDCARD:
            wildcard = mirror
    return wildcard if key in WELL_KNOWN_UPSTREAMS else None


def _check_key(walked: Walked, config: ConfigEntry, endpoints: Endpoints) -> None:
    name = config.name
    if "://" in name or "/" in name:
        host = name.split("://", 1)[-1].split("/", 1)[0]
        walked.add(
            config.key,
            "config-key-scheme",
            "error",
            f'configs key "{name}" has a scheme or path',
            "containerd looks configs up by the bare host[:port] it connects to; a key with "
            "a scheme or path never matches, so these TLS and auth settings are never used.",
            f'use "{host}" as the key.',
        )
        return
    key = host_key(name)
    if key in endpoints:
        return
    mirror = _upstream_mirror(key, walked, endpoints)
    if mirror is not None and (config.auth is not None or config.tls is not None):
        hosts = _mirror_hosts(mirror, endpoints)
        shown = ", ".join(f'"{h}"' for h in hosts)
        label = "every registry (*)" if mirror.name == WILDCARD else mirror.name
        walked.add(
            config.key,
            "config-for-upstream",
            "error" if config.tls is not None else "warning",
            f'configs key "{name}" is the upstream, not the mirror endpoint {shown}',
            f"Pulls of {label} go to {shown}, and containerd looks up TLS and auth by "
            f'the host it contacts: these settings apply only when it falls back to "{name}" '
            "itself, never to the mirror.",
            f"key the settings by {shown} (the endpoint host:port)"
            + (
                "; keep this entry only for credentials meant for the upstream."
                if config.tls is None
                else "."
            ),
        )
        return
    close = close_hosts(key, sorted(endpoints))
    if close:
        walked.add(
            config.key,
            "config-host-mismatch",
            "warning",
            f'configs key "{name}" matches no endpoint host; did you mean "{close[0]}"?',
            "containerd matches configs to the exact host:port of an endpoint (the port "
            "counts), so these settings are not used for that endpoint.",
            f'rename the key to "{close[0]}".',
        )


def _default_scheme(name: str) -> str:
    try:
        return normalize_endpoint(name).url.scheme
    except EndpointError:
        return "https"


def _check_tls(
    walked: Walked,
    config: ConfigEntry,
    endpoints: Endpoints,
    file_exists: Callable[[str], bool] | None,
) -> None:
    tls = config.tls
    if tls is None or config.tls_node is None:
        return
    for field in ("ca_file", "cert_file", "key_file"):
        located = tls.get(field)
        if located is None or not located.value:
            continue
        _check_path(walked, field, located, file_exists)
    cert, key = tls.get("cert_file"), tls.get("key_file")
    if bool(cert and cert.value) != bool(key and key.value):
        present = cert if cert and cert.value else key
        assert present is not None
        walked.add(
            present.node,
            "cert-without-key",
            "error",
            "a client certificate needs both cert_file and key_file",
            "containerd loads the pair together; with one of them missing the TLS setup of "
            "this host fails and pulls from it fail.",
            "give both cert_file and key_file, or neither.",
        )
    settings = any(tls[f].value for f in ("ca_file", "cert_file", "key_file") if f in tls) or (
        "insecure_skip_verify" in tls and tls["insecure_skip_verify"].value == "true"
    )
    if config.name == WILDCARD or "://" in config.name or not settings:
        return
    users = endpoints.get(host_key(config.name), [])
    schemes = {n.url.scheme for n, _ in users} or {_default_scheme(config.name)}
    if schemes == {"http"}:
        walked.add(
            config.tls_node,
            "tls-on-http",
            "warning",
            f'TLS settings for "{config.name}", which is contacted over plain http',
            "containerd speaks plain HTTP to http:// endpoints, so ca_file, cert_file, "
            "key_file and insecure_skip_verify are never used here.",
            "remove the tls: block, or serve Dockyard over TLS and use an https:// endpoint.",
        )


def _check_path(
    walked: Walked, field: str, located: Located, file_exists: Callable[[str], bool] | None
) -> None:
    if not located.value.startswith("/"):
        walked.add(
            located.node,
            "relative-path",
            "warning",
            f'{field} "{located.value}" is a relative path',
            "K3s and containerd resolve it against their own working directory, not the "
            "directory of registries.yaml.",
            "use an absolute path.",
        )
    elif file_exists is not None and not file_exists(located.value):
        walked.add(
            located.node,
            "missing-file",
            "error",
            f'{field} "{located.value}" does not exist',
            "containerd cannot load it, so TLS to this host fails and every pull through it fails.",
            "copy the file to that path on every node, or correct the path.",
        )


def _check_auth(walked: Walked, config: ConfigEntry) -> None:
    auth = config.auth
    if not auth or config.auth_node is None:
        return
    has = {k for k, v in auth.items() if v.value}
    if ("username" in has) != ("password" in has) and not has & {"auth", "identity_token"}:
        walked.add(
            config.auth_node,
            "incomplete-auth",
            "warning",
            "auth has a username without a password, or a password without a username",
            "containerd sends Basic credentials only as a pair; the registry will answer 401.",
            "give both username and password (or auth, or identity_token).",
        )


def check_config(
    walked: Walked,
    config: ConfigEntry,
    endpoints: Endpoints,
    file_exists: Callable[[str], bool] | None,
) -> None:
    """All checks of one `configs` entry; findings go into `walked`."""
    if config.name != WILDCARD:
        _check_key(walked, config, endpoints)
    _check_tls(walked, config, endpoints, file_exists)
    _check_auth(walked, config)
