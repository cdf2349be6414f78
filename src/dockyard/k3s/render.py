"""Write the registries.yaml that points K3s nodes at Dockyard.

Every mirrored registry lists the same Dockyard endpoints, in the order given. Settings for
talking to Dockyard (TLS, credentials) are keyed by the endpoint's `host:port`, because that
is the host containerd contacts; keying them by the upstream (`docker.io`) is the classic
mistake `dockyard k3s lint` reports. TLS settings are written only for https endpoints.
Every string is double-quoted, so `"*"` and hosts with ports stay strings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from dockyard.k3s.endpoint import EndpointError, normalize_endpoint, parse_url
from dockyard.k3s.model import WILDCARD

DEFAULT_MIRRORS = ("docker.io", "ghcr.io", "quay.io", "gcr.io", "registry.k8s.io")
REGISTRIES_PATH = "/etc/rancher/k3s/registries.yaml"


class RenderError(ValueError):
    """Options that would make a broken registries.yaml."""


@dataclass(frozen=True)
class RegistriesOptions:
    """What `dockyard k3s registries` was asked for."""

    endpoints: tuple[str, ...]
    mirrors: tuple[str, ...] = DEFAULT_MIRRORS
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False
    username: str = ""
    password: str = ""

    @property
    def has_tls(self) -> bool:
        return bool(self.ca_file or self.cert_file or self.key_file or self.insecure_skip_verify)


def _quoted(text: str) -> str:
    # A JSON string (ASCII only) is also a valid YAML double-quoted scalar.
    return json.dumps(text, ensure_ascii=True)


def _check_mirror(name: str) -> None:
    if name == WILDCARD:
        return
    if not name or name != name.strip() or any(c.isspace() for c in name):
        raise RenderError(f"mirror {name!r}: a registry name has no spaces")
    if "://" in name:
        raise RenderError(
            f"mirror {name!r}: give the registry name without a scheme "
            f"({name.split('://', 1)[1].split('/', 1)[0]!r}); schemes belong in --endpoint"
        )
    if "/" in name:
        raise RenderError(f"mirror {name!r}: give the registry host only, without a path")


def _check_endpoint(address: str) -> str:
    """The config key (host[:port]) for an endpoint; the endpoint must spell its scheme."""
    if "://" not in address:
        raise RenderError(
            f"endpoint {address!r}: give the scheme, http://{address} or https://{address} "
            "(without one containerd picks https, except on loopback)"
        )
    try:
        url = parse_url(address)
        normalized = normalize_endpoint(address)
    except EndpointError as exc:
        raise RenderError(f"endpoint {address!r}: {exc}") from None
    if url.scheme not in ("http", "https"):
        raise RenderError(f"endpoint {address!r}: the scheme must be http or https")
    if not url.host:
        raise RenderError(f"endpoint {address!r}: no host")
    return normalized.registry


def validate(options: RegistriesOptions) -> dict[str, str]:
    """Check the options; returns endpoint -> the host key its configs go under."""
    if not options.endpoints:
        raise RenderError("give at least one --endpoint (e.g. http://127.0.0.1:30500)")
    if not options.mirrors:
        raise RenderError("give at least one --mirror")
    for name in options.mirrors:
        _check_mirror(name)
    if len(set(options.mirrors)) != len(options.mirrors):
        raise RenderError("a --mirror is given twice")
    hosts: dict[str, str] = {}
    seen: set[str] = set()
    for address in options.endpoints:
        hosts[address] = _check_endpoint(address)
        url = str(normalize_endpoint(address).url)
        if url in seen:
            raise RenderError(f"endpoint {address!r} is given twice")
        seen.add(url)
    if bool(options.cert_file) != bool(options.key_file):
        raise RenderError("--cert-file and --key-file go together (a client certificate)")
    if bool(options.username) != bool(options.password):
        raise RenderError("--username and --password go together")
    https = [a for a in options.endpoints if parse_url(a).scheme == "https"]
    if options.has_tls and not https:
        raise RenderError(
            "TLS options need an https:// endpoint: containerd never uses TLS for http://"
        )
    return hosts


def render_registries(options: RegistriesOptions) -> str:
    """The registries.yaml text."""
    hosts = validate(options)
    lines = [
        "# registries.yaml for K3s nodes that pull through Dockyard"
        " (written by `dockyard k3s registries`).",
        f"# Install it as {REGISTRIES_PATH} (mode 0600) on every node, then restart",
        "# k3s (servers) or k3s-agent (agents): K3s reads it only when it starts.",
        "mirrors:",
    ]
    for mirror in options.mirrors:
        lines += [f"  {_quoted(mirror)}:", "    endpoint:"]
        lines += [f"      - {_quoted(address)}" for address in options.endpoints]

    configs: list[str] = []
    for host in dict.fromkeys(hosts.values()):
        tls_here = options.has_tls and any(
            parse_url(a).scheme == "https" for a, h in hosts.items() if h == host
        )
        if not (options.username or tls_here):
            continue
        configs.append(f"  {_quoted(host)}:")
        if options.username:
            configs += [
                "    auth:",
                f"      username: {_quoted(options.username)}",
                f"      password: {_quoted(options.password)}",
            ]
        if tls_here:
            configs.append("    tls:")
            for key, value in (
                ("ca_file", options.ca_file),
                ("cert_file", options.cert_file),
                ("key_file", options.key_file),
            ):
                if value:
                    configs.append(f"      {key}: {_quoted(value)}")
            if options.insecure_skip_verify:
                configs.append("      insecure_skip_verify: true")
    if configs:
        lines += ["configs:", *configs]
    return "\n".join(lines) + "\n"
