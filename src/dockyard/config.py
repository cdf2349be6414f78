"""Typed configuration: Distribution's `config.yml` plus Dockyard's own keys.

Parsed once, frozen. `REGISTRY_SECTION_KEY` environment variables override keys the way
Distribution names them (`REGISTRY_HTTP_ADDR`, `REGISTRY_STORAGE_DELETE_ENABLED`, ...).
Unknown keys produce warnings naming them; invalid values raise `ConfigError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

DEFAULT_ADDR = ":5000"
DEFAULT_ROOT = "./data"
DEFAULT_MANIFEST_MAX_SIZE = 4 * 1024 * 1024


def _duration_text(value: str) -> str:
    parse_duration(value)
    return value


def _size_text(value: str) -> str:
    parse_size(value)
    return value


# Kept as written (`168h`, `20GiB`, `40%`), checked when read; parsed where they are used.
Duration = Annotated[str, AfterValidator(_duration_text)]
Size = Annotated[str, AfterValidator(_size_text)]


class ConfigError(Exception):
    """A configuration that cannot be used; the message says which key and why."""


class _Section(BaseModel):
    # Unknown keys are kept (then reported as warnings), never fatal: Distribution's
    # config files carry sections Dockyard does not use.
    # Distribution reads any scalar into a string field as its text (`secret: 123456`).
    model_config = ConfigDict(
        extra="allow", frozen=True, populate_by_name=True, coerce_numbers_to_str=True
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_keys_mean_defaults(cls, value: Any) -> Any:
        # A key whose children are all commented out (`auth:`) is empty, not an error.
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if v is not None}
        if value is None:
            return {}
        return value


class AccessLogConfig(_Section):
    disabled: bool = False


class LogConfig(_Section):
    level: Literal["debug", "info", "warn", "warning", "error", "fatal", "panic"] = "info"

    @field_validator("level", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    formatter: Literal["text", "json", "logstash"] = "json"
    fields: dict[str, Any] = Field(default_factory=dict)
    accesslog: AccessLogConfig = Field(default_factory=AccessLogConfig)


class FilesystemConfig(_Section):
    rootdirectory: str = DEFAULT_ROOT
    maxthreads: int = Field(default=100, ge=25)


class DeleteConfig(_Section):
    enabled: bool = False


class UploadPurgingConfig(_Section):
    enabled: bool = True
    age: Duration = "168h"
    interval: Duration = "24h"
    dryrun: bool = False


class MaintenanceConfig(_Section):
    uploadpurging: UploadPurgingConfig = Field(default_factory=UploadPurgingConfig)
    readonly: dict[str, Any] = Field(default_factory=dict)


class GCConfig(_Section):
    """Dockyard's online garbage collection."""

    # Run on a schedule inside the server.
    enabled: bool = False
    interval: Duration = "24h"
    # Blobs and manifests younger than this (since upload or last access) are never collected.
    grace: Duration = "1h"
    deleteuntagged: bool = False


class QuotaRule(_Section):
    prefix: str
    limit: Size


class QuotaConfig(_Section):
    """Byte limits for pushed content (cached content has its own budget)."""

    total: Size | None = None
    repositories: list[QuotaRule] = Field(default_factory=list)


class RetentionConfig(_Section):
    """Keep the newest tags and/or recently pulled ones; gc removes the rest."""

    # fnmatch pattern over repository names: "ci/*", "team/app".
    repositories: str
    keeptags: int | None = Field(default=None, ge=0)
    pulledwithin: Duration | None = None


class StorageConfig(_Section):
    filesystem: FilesystemConfig = Field(default_factory=FilesystemConfig)
    retention: list[RetentionConfig] = Field(default_factory=list)
    gc: GCConfig = Field(default_factory=GCConfig)
    quota: QuotaConfig = Field(default_factory=QuotaConfig)
    delete: DeleteConfig = Field(default_factory=DeleteConfig)
    cache: dict[str, Any] = Field(default_factory=dict)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)
    redirect: dict[str, Any] = Field(default_factory=dict)


class TLSConfig(_Section):
    certificate: str | None = None
    key: str | None = None
    clientcas: list[str] = Field(default_factory=list)


class HTTPConfig(_Section):
    addr: str = DEFAULT_ADDR
    net: Literal["tcp", "unix"] = "tcp"
    prefix: str = ""
    host: str | None = None
    secret: str | None = None
    relativeurls: bool = False
    draintimeout: Duration = "10s"
    # Dockyard: give up on a request body that sends nothing for this long.
    readtimeout: Duration = "60s"
    headers: dict[str, list[str]] = Field(default_factory=dict)
    tls: TLSConfig = Field(default_factory=TLSConfig)
    debug: dict[str, Any] = Field(default_factory=dict)
    http2: dict[str, Any] = Field(default_factory=dict)

    @field_validator("headers", mode="before")
    @classmethod
    def _header_lists(cls, value: Any) -> Any:
        # Distribution takes lists; a single string is an easy mistake to forgive.
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        parse_addr(value)
        return value


class PlatformConfig(_Section):
    os: str
    architecture: str


class IndexValidationConfig(_Section):
    """Which images an index must find in its repository when pushed (Distribution 3's keys).

    `all`: every one; `none`: none (sparse indexes, e.g. one platform of a multi-platform
    image with the index's digest kept); `list`: those whose platform is in `platformlist`
    (every one when the list is empty, as in Distribution).
    """

    platforms: Literal["all", "none", "list"] = "all"
    platformlist: list[PlatformConfig] = Field(default_factory=list)

    @field_validator("platforms", mode="before")
    @classmethod
    def _lowercase(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    def must_exist(self, platform: tuple[str, str] | None) -> bool:
        """Whether an index entry with this (os, architecture) must already be stored."""
        if self.platforms == "none":
            return False
        if self.platforms == "all" or not self.platformlist:
            return True
        return any(platform == (p.os, p.architecture) for p in self.platformlist)


class ManifestValidationConfig(_Section):
    maxsize: int = Field(default=DEFAULT_MANIFEST_MAX_SIZE, gt=0)
    urls: dict[str, Any] = Field(default_factory=dict)
    indexes: IndexValidationConfig = Field(default_factory=IndexValidationConfig)


class ValidationConfig(_Section):
    disabled: bool = False
    manifests: ManifestValidationConfig = Field(default_factory=ManifestValidationConfig)


class UpstreamConfig(_Section):
    """One registry to cache from."""

    # The registry host as containerd names it in `?ns=` (docker.io, ghcr.io, ...).
    name: str
    url: str
    username: str | None = None
    # A mounted Secret (e.g. kubernetes.io/basic-auth) holds the username as a file too.
    usernamefile: str | None = None
    password: str | None = None
    # Keep secrets out of ConfigMaps: read the password from a file or an environment variable.
    passwordfile: str | None = None
    passwordenv: str | None = None
    cafile: str | None = None
    insecure: bool = False
    connecttimeout: Duration = "3s"
    # How long to wait for the upstream to start answering before giving up on it.
    timeout: Duration = "10s"
    # A cached tag is served without asking the upstream for this long.
    tagttl: Duration = "5m"
    # Cached content older than this is dropped (Distribution's proxy.ttl); 0 keeps it.
    ttl: Duration = "0s"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _UPSTREAM_NAME.fullmatch(value):
            raise ValueError(
                f"invalid upstream name {value!r}: use the registry host, e.g. docker.io"
            )
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"upstream url {value!r} must start with http:// or https://")
        return value.rstrip("/")


class CacheBudgetConfig(_Section):
    """A byte budget for pulled-through content; least recently pulled images go first."""

    # Bytes ("20GiB") or a share of the volume ("40%"); unset means no budget.
    maxsize: Size | None = None
    # Eviction starts above highwatermark x maxsize and stops below lowwatermark x maxsize.
    highwatermark: float = Field(default=0.9, gt=0, le=1)
    lowwatermark: float = Field(default=0.8, gt=0, le=1)
    interval: Duration = "1m"


DOCKER_HUB_HOSTS = ("docker.io", "registry-1.docker.io", "index.docker.io")


def registry_of_url(url: str) -> str:
    """The registry an upstream URL serves, as containerd names it (`docker.io` for Hub)."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    return "docker.io" if host in DOCKER_HUB_HOSTS else host


class ProxyConfig(_Section):
    """The pull-through cache: Distribution's single `remoteurl` and Dockyard's `upstreams`."""

    remoteurl: str | None = None
    username: str | None = None
    password: str | None = None
    ttl: Duration | None = None
    upstreams: list[UpstreamConfig] = Field(default_factory=list)
    # The upstream for requests that name no registry (no `?ns=`, no path prefix), such
    # as Docker's `registry-mirrors`; `remoteurl`'s registry when that is set.
    default: str | None = None
    cache: CacheBudgetConfig = Field(default_factory=CacheBudgetConfig)

    @model_validator(mode="after")
    def _default_is_an_upstream(self) -> ProxyConfig:
        if self.default is None:
            return self
        names = {u.name for u in self.upstreams}
        if self.remoteurl:
            remote = registry_of_url(self.remoteurl)
            if remote != self.default:
                raise ValueError(
                    f"proxy.default is {self.default!r} but proxy.remoteurl makes {remote!r} "
                    "the default upstream: keep one of them"
                )
            names.add(remote)
        if self.default not in names:
            known = ", ".join(sorted(names)) or "none"
            raise ValueError(
                f"proxy.default {self.default!r} is not one of proxy.upstreams[].name ({known})"
            )
        return self


class HtpasswdConfig(_Section):
    realm: str = "Registry Realm"
    path: str


class TokenAuthConfig(_Section):
    """Distribution's external token service."""

    realm: str
    service: str
    issuer: str
    rootcertbundle: str
    autoredirect: bool = False


class TokenServerConfig(_Section):
    """Dockyard's built-in token service for htpasswd users."""

    enabled: bool = False
    issuer: str = "dockyard"
    service: str = "dockyard"
    expiration: Duration = "5m"
    # PEM EC private key that signs tokens; generated at start when unset.
    key: str | None = None
    # Absolute URL clients fetch tokens from; derived from the request's host when unset.
    realm: str | None = None


class AccessRuleConfig(_Section):
    """Who may pull, push and delete in repositories matching a pattern."""

    repositories: str
    pull: list[str] = Field(default_factory=list)
    push: list[str] = Field(default_factory=list)
    delete: list[str] = Field(default_factory=list)


class AuthConfig(_Section):
    htpasswd: HtpasswdConfig | None = None
    token: TokenAuthConfig | None = None
    tokenserver: TokenServerConfig = Field(default_factory=TokenServerConfig)
    access: list[AccessRuleConfig] = Field(default_factory=list)
    groups: dict[str, list[str]] = Field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.htpasswd is not None or self.token is not None


class CatalogConfig(_Section):
    maxentries: int = Field(default=1000, gt=0)


class Config(_Section):
    """The whole configuration file."""

    version: str | float = "0.1"
    log: LogConfig = Field(default_factory=LogConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    http: HTTPConfig = Field(default_factory=HTTPConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    proxy: ProxyConfig = Field(default_factory=ProxyConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    notifications: dict[str, Any] = Field(default_factory=dict)
    redis: dict[str, Any] = Field(default_factory=dict)
    health: dict[str, Any] = Field(default_factory=dict)
    middleware: dict[str, Any] = Field(default_factory=dict)
    reporting: dict[str, Any] = Field(default_factory=dict)
    compatibility: dict[str, Any] = Field(default_factory=dict)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    loglevel: str | None = None

    @property
    def root(self) -> Path:
        return Path(self.storage.filesystem.rootdirectory)


# Sections Distribution knows that Dockyard accepts but does not act on (yet).
IGNORED_SECTIONS: dict[str, str] = {
    "notifications": "notifications are not supported; ignored",
    "redis": "Dockyard needs no redis; ignored",
    "middleware": "storage middleware is not supported; ignored",
    "reporting": "reporting is not supported; ignored",
}


@dataclass(frozen=True)
class LoadedConfig:
    """A parsed configuration and the warnings found while reading it."""

    config: Config
    warnings: tuple[str, ...]


_UPSTREAM_NAME = re.compile(r"^[a-z0-9]+(?:[.-][a-z0-9]+)*(?::[0-9]+)?$")
_DURATION_UNITS = {
    "d": 86400.0,
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")


def parse_duration(text: str | int | float) -> float:
    """Go-style durations as Distribution writes them (`168h`, `1h30m`, `10s`) in seconds."""
    if isinstance(text, int | float):
        return float(text)
    value = text.strip()
    if value.isdigit():
        return float(value)
    parts = _DURATION.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"invalid duration {text!r}: use forms like 30s, 15m, 168h or 1h30m")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]i?b?|b)?\s*$", re.IGNORECASE)
# Decimal (500MB, 500M) and binary (20GiB, or 50Gi as Kubernetes writes it) multiples.
_SIZE_UNITS = {
    "": 1,
    **{p: 1000 ** (n + 1) for n, p in enumerate("kmgtp")},
    **{p + "i": 1024 ** (n + 1) for n, p in enumerate("kmgtp")},
}


def parse_size(text: str | int) -> int | float:
    """Bytes: `1048576`, `500MB`, `20GiB`, `50Gi`; or a fraction of the volume: `40%` -> 0.4."""
    if isinstance(text, int):
        return text
    value = text.strip()
    if value.endswith("%"):
        number = float(value[:-1])
        if not 0 < number <= 100:
            raise ValueError(f"invalid percentage {text!r}: use 1% to 100%")
        return number / 100
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"invalid size {text!r}: use bytes, 500MB, 20GiB, 50Gi or a percentage")
    number, unit = float(match.group(1)), (match.group(2) or "").lower().removesuffix("b")
    return int(number * _SIZE_UNITS[unit])


def parse_addr(addr: str) -> tuple[str, int]:
    """`:5000` -> ("0.0.0.0", 5000); `127.0.0.1:80`; `[::1]:5000`."""
    host, sep, port_text = addr.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"invalid listen address {addr!r}: expected HOST:PORT or :PORT")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def _env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for key, value in sorted(environ.items()):
        if not key.startswith("REGISTRY_") or key == "REGISTRY_CONFIGURATION_PATH":
            continue
        path = key[len("REGISTRY_") :].lower().split("_")
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        try:
            node[path[-1]] = yaml.safe_load(value) if value else value
        except (yaml.YAMLError, RecursionError):
            # Not YAML (`@secret`, `[x`): Distribution takes such values as plain text.
            node[path[-1]] = value


def _unknown_keys(model: BaseModel, prefix: str = "") -> list[str]:
    found: list[str] = []
    for name in model.model_extra or {}:
        found.append(f"{prefix}{name}")
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, _Section):
            found.extend(_unknown_keys(value, f"{prefix}{name}."))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, _Section):
                    found.extend(_unknown_keys(item, f"{prefix}{name}[{i}]."))
    return found


def _format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"{where}: {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> LoadedConfig:
    """Read the file (if any), apply environment and command-line overrides, validate."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        except RecursionError:
            raise ConfigError(f"config file {path} is nested too deeply") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        raw = loaded
    _env_overrides(raw, environ)
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                if child is not None:
                    raise ConfigError(f"{part}: must be a mapping to set {dotted}")
                child = node[part] = {}
            node = child
        node[last] = value
    storage = raw.get("storage")
    if isinstance(storage, dict):
        for driver in ("s3", "azure", "gcs", "swift", "oss", "inmemory"):
            if driver in storage:
                raise ConfigError(
                    f"storage.{driver}: only the filesystem storage driver is supported"
                )
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None
    warnings = [f"unknown configuration key {key!r} ignored" for key in _unknown_keys(config)]
    for section, note in IGNORED_SECTIONS.items():
        if raw.get(section):
            warnings.append(f"{section}: {note}")
    return LoadedConfig(config, tuple(warnings))
