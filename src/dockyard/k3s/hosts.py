"""The containerd files K3s generates from registries.yaml, byte for byte.

Matched against K3s's source (k3s-io/k3s, main branch as of 2025-2026, the code since
v1.29.4+k3s1 / v1.30, after PR #9853 added the `[host]` stub and PR #9729 the empty `server`
of `_default`):

- `pkg/agent/containerd/config.go`: `getHostConfigs`, `defaultHostConfig`,
  `normalizeEndpointAddress`, `configForHost`, `endpointURLEqual`, `endpointHasConfig`
  (the embedded-registry/spegel mirror left out: Dockyard replaces it);
- `pkg/agent/templates/templates.go`: `HostsTomlTemplate`, rendered here line for line with
  the same whitespace as Go's text/template produces (checked against Go's own renderer);
- `pkg/agent/templates/templates_linux.go`: the `registry.configs."HOST".auth` stanzas of
  the version-2 `config.toml` (containerd 1.7: K3s up to v1.31.5/v1.32.1, and later releases
  for nodes with a `config.toml.tmpl`; their default version 3 puts the same credentials
  under `io.containerd.cri.v1.images`). Only credentials stay in config.toml; TLS settings
  go into hosts.toml, which is the same for both config versions.

Layout: `certs.d/<registry>/hosts.toml` (`_default` for "*"), where `server` is the upstream
itself (`https://registry-1.docker.io/v2` for docker.io) and each mirror endpoint is a
`[host."<url>"]` with `capabilities = ["pull", "resolve"]`, in file order.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field, replace

from dockyard.k3s.endpoint import (
    EndpointError,
    EndpointURL,
    default_host,
    go_quote,
    normalize_endpoint,
)
from dockyard.k3s.model import WILDCARD, Registries, RegistryConfig, TLSConfig

DEFAULT_DIRECTORY = "_default"
K3S_CERTS_D = "/var/lib/rancher/k3s/agent/etc/containerd/certs.d"
CRI_REGISTRY = '[plugins."io.containerd.grpc.v1.cri".registry]'
_EMPTY_URL = EndpointURL(scheme="", host="", path="")


@dataclass(frozen=True)
class HostEndpoint:
    """One `[host]` (or the root `server`): URL, TLS/auth config, rewrites."""

    url: EndpointURL | None
    config: RegistryConfig = field(default_factory=RegistryConfig)
    rewrites: dict[str, str] = field(default_factory=dict)
    override_path: bool = False

    def has_config(self) -> bool:
        return bool(
            self.override_path
            or self.config.auth is not None
            or self.config.tls is not None
            or self.rewrites
        )


@dataclass(frozen=True)
class HostConfig:
    """Everything in one hosts.toml: the default endpoint (`server`) and the mirrors."""

    default: HostEndpoint | None
    endpoints: tuple[HostEndpoint, ...] = ()


@dataclass(frozen=True)
class HostsPlan:
    """Directory name -> hosts.toml config, plus the warnings K3s would log."""

    hosts: dict[str, HostConfig]
    warnings: tuple[str, ...]


def config_for_host(configs: dict[str, RegistryConfig], host: str) -> RegistryConfig:
    """The config containerd uses for a host (docker.io also under registry-1.docker.io)."""
    alias = default_host(host)
    if alias != host and alias in configs:
        return configs[alias]
    return configs.get(host, RegistryConfig())


def _default_host_config(host: str, config: RegistryConfig) -> HostConfig:
    url = normalize_endpoint(host).url
    return HostConfig(default=HostEndpoint(url=None if host == WILDCARD else url, config=config))


def _url_text(endpoint: HostEndpoint | None) -> str:
    return str(endpoint.url) if endpoint is not None and endpoint.url is not None else ""


def _directory(host: str) -> str:
    return DEFAULT_DIRECTORY if host == WILDCARD else host


def plan_hosts(registries: Registries, no_default_endpoint: bool = False) -> HostsPlan:
    """K3s's `getHostConfigs`: which hosts.toml files exist and what each holds."""
    warnings: list[str] = []
    hosts: dict[str, HostConfig] = {}
    for host, registry_config in registries.configs.items():
        try:
            hosts[_directory(host)] = _default_host_config(host, registry_config)
        except EndpointError as exc:
            warnings.append(f"Failed to generate config for registry {host}: {exc}")

    for host, mirror in registries.mirrors.items():
        # K3s looks the mirror up under its own name, so a "*" mirror never finds the
        # `_default` entry a "*" config made: it starts afresh, as here.
        config = hosts.get(host)
        if config is None:
            try:
                config = _default_host_config(host, config_for_host(registries.configs, host))
            except EndpointError as exc:
                warnings.append(f"Failed to generate config for registry {host}: {exc}")
                continue
            if no_default_endpoint:
                config = replace(config, default=None)
            elif host == WILDCARD:
                config = replace(config, default=HostEndpoint(url=_EMPTY_URL))
        default, endpoints = config.default, list(config.endpoints)
        seen: set[str] = set()
        for index, address in enumerate(mirror.endpoints):
            try:
                normalized = normalize_endpoint(address)
            except EndpointError as exc:
                warnings.append(
                    f"Ignoring invalid endpoint URL {index}={address} for {host}: {exc}"
                )
                continue
            if str(normalized.url) in seen:
                warnings.append(f"Skipping duplicate endpoint URL {index}={address} for {host}")
                continue
            seen.add(str(normalized.url))
            endpoint = HostEndpoint(
                url=normalized.url,
                config=config_for_host(registries.configs, normalized.registry),
                # K3s skips rewrites for its embedded-registry address, which is "" here
                rewrites=dict(mirror.rewrites) if normalized.url.host else {},
                override_path=normalized.override_path,
            )
            if index + 1 == len(mirror.endpoints) and _url_text(default) == _url_text(endpoint):
                default = endpoint  # the upstream itself, listed last: it stays the server
            else:
                endpoints.append(endpoint)
        hosts[_directory(host)] = HostConfig(default=default, endpoints=tuple(endpoints))

    kept = {
        name: config
        for name, config in hosts.items()
        if config.endpoints or (config.default is not None and config.default.has_config())
    }
    return HostsPlan(hosts=kept, warnings=tuple(warnings))


# -- rendering (HostsTomlTemplate) ---------------------------------------------------------


def _tls_lines(tls: TLSConfig, indent: str) -> str:
    text = ""
    if tls.ca_file:
        text += f"\n{indent}ca = [{go_quote(tls.ca_file)}]"
    if tls.cert_file or tls.key_file:
        text += f"\n{indent}client = [[{go_quote(tls.cert_file)}, {go_quote(tls.key_file)}]]"
    if tls.insecure_skip_verify:
        text += f"\n{indent}skip_verify = true"
    return text + "\n"


def render_hosts_toml(config: HostConfig, program: str = "k3s") -> str:
    """One hosts.toml exactly as K3s's template writes it."""
    text = f"# File generated by {program}. DO NOT EDIT.\n"
    default = config.default
    if default is not None:
        if default.url is not None:
            text += f'\nserver = "{default.url}"\ncapabilities = ["pull", "resolve", "push"]\n'
        if default.config.tls is not None:
            text += _tls_lines(default.config.tls, "")
        text += "\n"
    text += "\n[host]\n"
    for endpoint in config.endpoints:
        text += f'[host."{endpoint.url}"]\n  capabilities = ["pull", "resolve"]'
        if endpoint.override_path:
            text += "\n  override_path = true"
        if endpoint.config.tls is not None:
            text += _tls_lines(endpoint.config.tls, "  ")
        if endpoint.rewrites:
            text += f'\n  [host."{endpoint.url}".rewrite]'
            for pattern in sorted(endpoint.rewrites):
                # K3s writes these unescaped (a `"` or `\` breaks the TOML; the linter says so)
                text += f'\n    "{pattern}" = "{endpoint.rewrites[pattern]}"'
            text += "\n"
        text += "\n"
    return text


def render_registry_config(registries: Registries, config_path: str = K3S_CERTS_D) -> str:
    """The registry part of K3s's config.toml: `config_path` and the auth stanzas.

    Same stanzas and values as K3s's version-2 template; the blank and whitespace-only
    lines that its template leaves around them are dropped.
    """
    lines = [
        "# The registry part of the containerd config.toml K3s writes (config version 2).",
        CRI_REGISTRY,
        f'  config_path = "{config_path}"',
    ]
    for host in sorted(registries.configs):
        auth = registries.configs[host].auth
        if auth is None:
            continue
        lines += ["", f'[plugins."io.containerd.grpc.v1.cri".registry.configs."{host}".auth]']
        for key, value in (
            ("username", auth.username),
            ("password", auth.password),
            ("auth", auth.auth),
            ("identitytoken", auth.identity_token),
        ):
            if value:
                lines.append(f"  {key} = {go_quote(value)}")
    return "\n".join(lines) + "\n"


def hosts_files(plan: HostsPlan, program: str = "k3s") -> dict[str, str]:
    """Relative path (`certs.d/<dir>/hosts.toml`) -> content, as K3s lays them out.

    K3s joins the key to the directory with Go's `filepath.Join`, which cleans the path:
    a mirror key `https://docker.io` lands in `certs.d/https:/docker.io/`.
    """
    files: dict[str, str] = {}
    for name in sorted(plan.hosts):
        directory = posixpath.normpath(posixpath.join("certs.d", name))
        if directory == "certs.d" or not directory.startswith("certs.d/"):
            raise ValueError(f"registry name {name!r} does not name a directory under certs.d")
        files[f"{directory}/hosts.toml"] = render_hosts_toml(plan.hosts[name], program)
    return files
