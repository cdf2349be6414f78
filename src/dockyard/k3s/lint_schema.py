"""The schema half of the linter: keys, types and shapes, with the node of each value.

`walk` visits the node tree the way K3s's yaml.v2 decoding would, reports what K3s would
silently drop (unknown keys, with a did-you-mean) or refuse (wrong types), and returns the
values it understood together with their positions, for the semantic checks in `lint`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import yaml

from dockyard.k3s.findings import Finding, Severity
from dockyard.k3s.model import (
    AUTH_KEYS,
    CONFIG_KEYS,
    MIRROR_KEYS,
    TLS_KEYS,
    TOP_KEYS,
    Kind,
    is_null,
    position,
    scalar_bool,
)

# Where each schema key belongs, to say so when one turns up at the wrong level.
_HOME = {
    **{key: "the top level" for key in TOP_KEYS},
    **{key: "mirrors.<registry>" for key in MIRROR_KEYS},
    **{key: "configs.<host>" for key in CONFIG_KEYS},
    **{key: "configs.<host>.auth" for key in AUTH_KEYS},
    **{key: "configs.<host>.tls" for key in TLS_KEYS},
}
_MERGE_KEY = "<<"


@dataclass
class Located:
    """A scalar value and where it is."""

    value: str
    node: yaml.Node


@dataclass
class MirrorEntry:
    name: str
    key: yaml.Node
    endpoints: list[Located] = field(default_factory=list)
    rewrites: list[tuple[Located, Located]] = field(default_factory=list)
    has_problems: bool = False  # a schema finding already explains what is wrong


@dataclass
class ConfigEntry:
    name: str
    key: yaml.Node
    auth: dict[str, Located] | None = None
    auth_node: yaml.Node | None = None
    tls: dict[str, Located] | None = None
    tls_node: yaml.Node | None = None


@dataclass
class Walked:
    """Everything the schema walk understood, and its findings."""

    mirrors: list[MirrorEntry] = field(default_factory=list)
    configs: list[ConfigEntry] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def add(
        self,
        node: yaml.Node,
        code: str,
        severity: Severity,
        message: str,
        explanation: str,
        fix: str,
    ) -> None:
        line, column = position(node)
        self.findings.append(Finding(code, severity, line, column, message, explanation, fix))


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.ScalarNode) and node.style is None:
        return f"the value {node.value}"
    return f'the string "{node.value}"'


def _wrong_type(walked: Walked, node: yaml.Node, kind: Kind, where: str, example: str) -> None:
    walked.add(
        node,
        "wrong-type",
        "error",
        f"{where} must be a {kind.value}, not {_describe(node)}",
        "K3s decodes registries.yaml strictly by type: a value of the wrong shape stops K3s "
        "from starting (containerd then never gets its registry configuration).",
        example,
    )


def _did_you_mean(key: str, allowed: dict[str, Kind]) -> list[str]:
    folded = key.strip().lower().replace("-", "_").replace(" ", "_")
    if folded in allowed:
        return [folded]
    return difflib.get_close_matches(folded, list(allowed), n=1, cutoff=0.6)


def _unknown_key(
    walked: Walked, node: yaml.Node, key: str, allowed: dict[str, Kind], where: str
) -> None:
    guesses = _did_you_mean(key, allowed)
    if guesses:
        fix = f'did you mean "{guesses[0]}"? Rename the key to "{guesses[0]}".'
    elif key in _HOME:
        fix = f'"{key}" belongs under {_HOME[key]}; move it there.'
    else:
        fix = f"remove it; the keys allowed here are: {', '.join(allowed)}."
    walked.add(
        node,
        "unknown-key",
        "error",
        f'unknown key "{key}" in {where}',
        "K3s ignores keys it does not know without a word, so this setting has no effect "
        "at all (a misspelt TLS or endpoint key silently sends nodes elsewhere).",
        fix,
    )


def mapping_items(
    walked: Walked, node: yaml.MappingNode, where: str
) -> list[tuple[str, yaml.Node, yaml.Node]]:
    """(key text, key node, value node); reports duplicate and non-scalar keys."""
    items: list[tuple[str, yaml.Node, yaml.Node]] = []
    seen: dict[str, yaml.Node] = {}
    for key_node, value in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            _wrong_type(walked, key_node, Kind.STRING, f"a key in {where}", "use a plain key.")
            continue
        key = "" if is_null(key_node) else str(key_node.value)
        if key == _MERGE_KEY:
            continue
        if key in seen:
            first_line = seen[key].start_mark.line + 1
            walked.add(
                key_node,
                "duplicate-key",
                "warning",
                f'"{key}" appears twice in {where} (first on line {first_line})',
                "YAML keeps only the last of duplicate keys, so everything under the earlier "
                "one is silently dropped.",
                f'merge the two "{key}" entries into one.',
            )
            items = [item for item in items if item[0] != key]
        seen[key] = key_node
        items.append((key, key_node, value))
    return items


def _scalar(walked: Walked, node: yaml.Node, where: str) -> Located | None:
    if isinstance(node, yaml.ScalarNode):
        return Located("" if is_null(node) else str(node.value), node)
    _wrong_type(walked, node, Kind.STRING, where, f"give {where} a single quoted string.")
    return None


def _fields(
    walked: Walked, node: yaml.Node, allowed: dict[str, Kind], where: str
) -> dict[str, Located]:
    """A mapping of scalar fields (auth or tls): unknown keys and types checked."""
    found: dict[str, Located] = {}
    if is_null(node):
        return found
    if not isinstance(node, yaml.MappingNode):
        _wrong_type(walked, node, Kind.MAP, where, f"{where} holds keys: {', '.join(allowed)}.")
        return found
    for key, key_node, value in mapping_items(walked, node, where):
        kind = allowed.get(key)
        if kind is None:
            _unknown_key(walked, key_node, key, allowed, where)
            continue
        if kind is Kind.BOOL:
            if is_null(value):
                continue
            if not isinstance(value, yaml.ScalarNode) or scalar_bool(value) is None:
                _wrong_type(walked, value, Kind.BOOL, f"{where}.{key}", f"{key}: true (unquoted)")
                continue
            found[key] = Located("true" if scalar_bool(value) else "false", value)
        else:
            located = _scalar(walked, value, f"{where}.{key}")
            if located is not None:
                found[key] = located
    return found


def _mirror(walked: Walked, name: str, key: yaml.Node, node: yaml.Node) -> MirrorEntry:
    before = len(walked.findings)
    entry = _mirror_fields(walked, MirrorEntry(name, key), node)
    entry.has_problems = len(walked.findings) > before
    return entry


def _mirror_fields(walked: Walked, entry: MirrorEntry, node: yaml.Node) -> MirrorEntry:
    name = entry.name
    where = f'mirrors."{name}"'
    if is_null(node):
        return entry
    if not isinstance(node, yaml.MappingNode):
        _wrong_type(walked, node, Kind.MAP, where, 'endpoint: ["http://HOST:PORT"]')
        return entry
    for field_name, field_key, value in mapping_items(walked, node, where):
        if field_name == "endpoint":
            if is_null(value):
                continue
            if not isinstance(value, yaml.SequenceNode):
                shown = value.value if isinstance(value, yaml.ScalarNode) else "URL"
                _wrong_type(walked, value, Kind.LIST, f"{where}.endpoint", f'endpoint: ["{shown}"]')
                continue
            for item in value.value:
                located = _scalar(walked, item, f"{where}.endpoint[]")
                if located is not None:
                    entry.endpoints.append(located)
        elif field_name == "rewrite":
            if is_null(value):
                continue
            if not isinstance(value, yaml.MappingNode):
                example = 'rewrite: {"^library/(.*)": "mirror/library/$1"}'
                _wrong_type(walked, value, Kind.STRING_MAP, f"{where}.rewrite", example)
                continue
            for pattern, pattern_node, replacement in mapping_items(walked, value, "rewrite"):
                located = _scalar(walked, replacement, f'rewrite."{pattern}"')
                if located is not None:
                    entry.rewrites.append((Located(pattern, pattern_node), located))
        else:
            _unknown_key(walked, field_key, field_name, MIRROR_KEYS, where)
    return entry


def _config(walked: Walked, name: str, key: yaml.Node, node: yaml.Node) -> ConfigEntry:
    entry = ConfigEntry(name, key)
    where = f'configs."{name}"'
    if is_null(node):
        return entry
    if not isinstance(node, yaml.MappingNode):
        _wrong_type(walked, node, Kind.MAP, where, "give it auth: and/or tls: keys.")
        return entry
    for field_name, field_key, value in mapping_items(walked, node, where):
        if field_name == "auth":
            entry.auth = _fields(walked, value, AUTH_KEYS, f"{where}.auth")
            entry.auth_node = field_key
        elif field_name == "tls":
            entry.tls = _fields(walked, value, TLS_KEYS, f"{where}.tls")
            entry.tls_node = field_key
        else:
            _unknown_key(walked, field_key, field_name, CONFIG_KEYS, where)
    return entry


def _section(walked: Walked, node: yaml.Node, name: str) -> list[tuple[str, yaml.Node, yaml.Node]]:
    if is_null(node):
        return []
    if not isinstance(node, yaml.MappingNode):
        example = (
            'mirrors: {"docker.io": {endpoint: ["http://HOST:PORT"]}}'
            if name == "mirrors"
            else 'configs: {"HOST:PORT": {tls: {ca_file: /path/ca.crt}}}'
        )
        _wrong_type(walked, node, Kind.MAP, name, example)
        return []
    return mapping_items(walked, node, name)


def walk(root: yaml.Node) -> Walked:
    """Check the document's schema; return what it understood and the findings."""
    walked = Walked()
    if is_null(root):
        return walked
    if not isinstance(root, yaml.MappingNode):
        _wrong_type(walked, root, Kind.MAP, "the document", "start with mirrors: and configs:.")
        return walked
    for key, key_node, value in mapping_items(walked, root, "the top level"):
        if key == "mirrors":
            for name, name_node, body in _section(walked, value, key):
                walked.mirrors.append(_mirror(walked, name, name_node, body))
        elif key == "configs":
            for name, name_node, body in _section(walked, value, key):
                walked.configs.append(_config(walked, name, name_node, body))
        else:
            _unknown_key(walked, key_node, key, TOP_KEYS, "the top level")
    return walked
