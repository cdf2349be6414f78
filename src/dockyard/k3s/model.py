"""K3s's registries.yaml: its schema, and how K3s decodes it.

The schema is rancher/wharfie's `registries.Registry`, which K3s reads with gopkg.in/yaml.v2
(non-strict): keys it does not know are dropped without a word, any scalar fills a string
field (`username: 123` is `"123"`), a YAML 1.1 boolean fills a bool field, and a value of the
wrong shape (a string where a list belongs, a quoted "true" for a bool) stops K3s with a type
error. `parse_registries` decodes the same way from PyYAML's node tree, so that what Dockyard
renders is what a node would do.

    mirrors:
      <registry or "*">:
        endpoint: [<url>, ...]          # tried in order, then the registry itself
        rewrite: {<regexp>: <replacement>}
    configs:
      <host[:port] that containerd contacts, or "*">:
        auth: {username, password, auth, identity_token}
        tls: {ca_file, cert_file, key_file, insecure_skip_verify}
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

import yaml

WILDCARD = "*"


class Kind(Enum):
    """The Go type of a schema field."""

    MAP = "mapping"
    STRING = "string"
    BOOL = "boolean"
    LIST = "list of strings"
    STRING_MAP = "mapping of strings"


# Allowed keys at each level and their types (wharfie's yaml tags).
TOP_KEYS: dict[str, Kind] = {"mirrors": Kind.MAP, "configs": Kind.MAP}
MIRROR_KEYS: dict[str, Kind] = {"endpoint": Kind.LIST, "rewrite": Kind.STRING_MAP}
CONFIG_KEYS: dict[str, Kind] = {"auth": Kind.MAP, "tls": Kind.MAP}
AUTH_KEYS: dict[str, Kind] = {
    "username": Kind.STRING,
    "password": Kind.STRING,
    "auth": Kind.STRING,
    "identity_token": Kind.STRING,
}
TLS_KEYS: dict[str, Kind] = {
    "ca_file": Kind.STRING,
    "cert_file": Kind.STRING,
    "key_file": Kind.STRING,
    "insecure_skip_verify": Kind.BOOL,
}

# yaml.v2's YAML 1.1 booleans (wider than PyYAML's: it also takes y/n).
_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}
_NULL = {"", "~", "null", "Null", "NULL"}


class RegistriesError(ValueError):
    """registries.yaml that K3s refuses (syntax or type error), with its position."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = f"line {self.line}, column {self.column}: " if self.line else ""
        return where + super().__str__()


@dataclass(frozen=True)
class AuthConfig:
    username: str = ""
    password: str = ""
    auth: str = ""
    identity_token: str = ""


@dataclass(frozen=True)
class TLSConfig:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class RegistryConfig:
    auth: AuthConfig | None = None
    tls: TLSConfig | None = None


@dataclass(frozen=True)
class Mirror:
    endpoints: tuple[str, ...] = ()
    rewrites: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Registries:
    """The decoded file: mirrors and configs in file order."""

    mirrors: dict[str, Mirror] = field(default_factory=dict)
    configs: dict[str, RegistryConfig] = field(default_factory=dict)


# -- node helpers, shared with the linter ------------------------------------------------


def position(node: yaml.Node) -> tuple[int, int]:
    """1-based (line, column) where a node starts."""
    return node.start_mark.line + 1, node.start_mark.column + 1


def is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.style is None and node.value in _NULL


def scalar_bool(node: yaml.ScalarNode) -> bool | None:
    """The boolean yaml.v2 reads from a plain scalar, or None if it is not one.

    Quoting makes a string; PyYAML's resolved tag cannot be used, as it knows fewer
    booleans than yaml.v2 (no y/n).
    """
    if node.style is not None:
        return None
    if node.value in _TRUE:
        return True
    if node.value in _FALSE:
        return False
    return None


def flatten(node: yaml.MappingNode) -> yaml.MappingNode:
    """Apply `<<` merge keys in place, as yaml.v2 does."""
    try:
        yaml.SafeLoader("").flatten_mapping(node)
    except yaml.MarkedYAMLError as exc:  # `<<: [1]`: only mappings can be merged
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise RegistriesError(str(exc.problem or exc), line, column) from None
    return node


def pairs(node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
    """(key node, value node) pairs after merges; yaml.v2 keeps the last of duplicate keys."""
    yield from flatten(node).value


def key_text(node: yaml.Node) -> str:
    """A mapping key as yaml.v2 turns it into a Go string (the scalar's text)."""
    if isinstance(node, yaml.ScalarNode):
        return "" if is_null(node) else str(node.value)
    raise RegistriesError("a mapping key must be a plain value", *position(node))


# -- decoding ----------------------------------------------------------------------------


def _type_error(node: yaml.Node, kind: Kind, what: str) -> RegistriesError:
    if isinstance(node, yaml.ScalarNode):
        shown = repr(node.value)
    else:
        shown = "a list" if isinstance(node, yaml.SequenceNode) else "a mapping"
    return RegistriesError(f"{what}: cannot use {shown} as a {kind.value}", *position(node))


def _string(node: yaml.Node, what: str) -> str:
    if isinstance(node, yaml.ScalarNode):
        return "" if is_null(node) else str(node.value)
    raise _type_error(node, Kind.STRING, what)


def _bool(node: yaml.Node, what: str) -> bool:
    if is_null(node):
        return False
    if isinstance(node, yaml.ScalarNode):
        value = scalar_bool(node)
        if value is not None:
            return value
    raise _type_error(node, Kind.BOOL, what)


def _mapping(node: yaml.Node, what: str) -> list[tuple[str, yaml.Node]]:
    if is_null(node):
        return []
    if not isinstance(node, yaml.MappingNode):
        raise _type_error(node, Kind.MAP, what)
    return [(key_text(k), v) for k, v in pairs(node)]


def _strings(node: yaml.Node, what: str) -> tuple[str, ...]:
    if is_null(node):
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise _type_error(node, Kind.LIST, what)
    return tuple(_string(item, what) for item in node.value)


def _fields(node: yaml.Node, keys: dict[str, Kind], what: str) -> dict[str, yaml.Node]:
    return {k: v for k, v in _mapping(node, what) if k in keys}


def _mirror(node: yaml.Node, name: str) -> Mirror:
    known = _fields(node, MIRROR_KEYS, f"mirrors.{name}")
    endpoints = _strings(known["endpoint"], "endpoint") if "endpoint" in known else ()
    rewrites: dict[str, str] = {}
    if "rewrite" in known:
        rewrites = {k: _string(v, "rewrite") for k, v in _mapping(known["rewrite"], "rewrite")}
    return Mirror(endpoints=endpoints, rewrites=rewrites)


def _config(node: yaml.Node, name: str) -> RegistryConfig:
    known = _fields(node, CONFIG_KEYS, f"configs.{name}")
    auth = tls = None
    if "auth" in known and not is_null(known["auth"]):
        values = {k: _string(v, k) for k, v in _fields(known["auth"], AUTH_KEYS, "auth").items()}
        auth = AuthConfig(**values)
    if "tls" in known and not is_null(known["tls"]):
        raw = _fields(known["tls"], TLS_KEYS, "tls")
        tls = TLSConfig(
            ca_file=_string(raw["ca_file"], "ca_file") if "ca_file" in raw else "",
            cert_file=_string(raw["cert_file"], "cert_file") if "cert_file" in raw else "",
            key_file=_string(raw["key_file"], "key_file") if "key_file" in raw else "",
            insecure_skip_verify=(
                _bool(raw["insecure_skip_verify"], "insecure_skip_verify")
                if "insecure_skip_verify" in raw
                else False
            ),
        )
    return RegistryConfig(auth=auth, tls=tls)


def compose(text: str) -> yaml.Node | None:
    """The first YAML document's node tree (yaml.v2 reads only the first)."""
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            return node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        raise RegistriesError(str(exc.problem or exc), line, column) from None
    except yaml.YAMLError as exc:
        raise RegistriesError(str(exc)) from None
    except RecursionError:
        raise RegistriesError("the YAML is nested too deeply") from None
    return None


def parse_registries(text: str) -> Registries:
    """Decode registries.yaml as K3s does; `RegistriesError` where K3s would refuse it."""
    root = compose(text)
    if root is None or is_null(root):
        return Registries()
    top = _fields(root, TOP_KEYS, "registries.yaml")
    mirrors = {n: _mirror(v, n) for n, v in _section(top, "mirrors")}
    configs = {n: _config(v, n) for n, v in _section(top, "configs")}
    return Registries(mirrors=mirrors, configs=configs)


def _section(top: dict[str, yaml.Node], name: str) -> list[tuple[str, yaml.Node]]:
    return _mapping(top[name], name) if name in top else []
