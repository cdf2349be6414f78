"""Rolling registries.yaml out to K3s nodes, and checking what the nodes have.

`render_rollout` writes an Ansible project (pure: file name -> text):

    registries.yml            the playbook: install the file, restart K3s where it changed
    fetch.yml                 copies every node's file to fetched/<host>.yaml for `k3s diff`
    inventory.yml             the template: K3s servers and agents (k3s-ansible's groups)
    files/registries.yaml     the intended file, byte for byte

K3s reads registries.yaml only when it starts, so a changed file needs a restart of `k3s`
(servers) or `k3s-agent` (agents); an unchanged one must not restart anything. Servers go
one at a time so an embedded-etcd control plane keeps its quorum.

`compare` is the other direction: a node's copy against the intended file, both as YAML
data (what K3s acts on) and as text (what Ansible compares).
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml

from dockyard.k8s.yamltext import dump_yaml

REGISTRIES_PATH = "/etc/rancher/k3s/registries.yaml"
PLAYBOOK = "registries.yml"
FETCH_PLAYBOOK = "fetch.yml"
INVENTORY = "inventory.yml"
SOURCE = "files/registries.yaml"
SERVER_GROUP = "server"
AGENT_GROUP = "agent"
CLUSTER_GROUP = "k3s_cluster"


class RegistriesFileError(ValueError):
    """The intended registries.yaml is not a YAML mapping."""


def check_registries_text(text: str) -> None:
    """Refuse to roll out a file K3s could not read at all."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RegistriesFileError(f"not valid YAML ({_yaml_error(exc)})") from None
    if data is not None and not isinstance(data, dict):
        raise RegistriesFileError("the top level must be a mapping (mirrors:, configs:)")


def _install_play(group: str, service: str, serial: int | str) -> dict[str, Any]:
    handler = f"Restart {service}"
    return {
        "name": f"K3s {group}s: install registries.yaml, restart {service} where it changed",
        "hosts": group,
        "become": True,
        "gather_facts": False,
        "serial": serial,
        "tasks": [
            {
                "name": "Create /etc/rancher/k3s",
                "ansible.builtin.file": {
                    "path": "/etc/rancher/k3s",
                    "state": "directory",
                    "owner": "root",
                    "group": "root",
                    "mode": "0755",
                },
            },
            {
                "name": f"Install {REGISTRIES_PATH}",
                "ansible.builtin.copy": {
                    "src": SOURCE,
                    "dest": REGISTRIES_PATH,
                    "owner": "root",
                    "group": "root",
                    # It may hold registry passwords.
                    "mode": "0600",
                    "backup": True,
                },
                # Handlers run only on the hosts this task changed.
                "notify": handler,
            },
        ],
        "handlers": [
            {
                "name": handler,
                "ansible.builtin.systemd_service": {"name": service, "state": "restarted"},
            }
        ],
    }


def render_playbook(agent_batch: str = "100%") -> str:
    """The install playbook: servers one at a time, then agents in batches of `agent_batch`."""
    header = (
        "# Written by `dockyard k3s rollout`. Installs files/registries.yaml on every K3s node as\n"
        f"# {REGISTRIES_PATH} (root, 0600) and restarts k3s (servers) or k3s-agent\n"
        "# (agents) only on the nodes where the file changed. Preview with --check --diff:\n"
        f"#   ansible-playbook -i {INVENTORY} {PLAYBOOK} --check --diff\n"
    )
    plays = [
        _install_play(SERVER_GROUP, "k3s", 1),
        _install_play(AGENT_GROUP, "k3s-agent", agent_batch),
    ]
    return header + "---\n" + dump_yaml(plays)


def render_fetch_playbook() -> str:
    """A playbook that copies every node's registries.yaml to fetched/<host>.yaml."""
    header = (
        "# Written by `dockyard k3s rollout`. Copies each node's registries.yaml to\n"
        "# fetched/<host>.yaml, then compare them with the intended file:\n"
        f"#   ansible-playbook -i {INVENTORY} {FETCH_PLAYBOOK}\n"
        f"#   dockyard k3s diff --registries {SOURCE} fetched/*.yaml\n"
    )
    play = {
        "name": "Fetch registries.yaml from every K3s node",
        "hosts": CLUSTER_GROUP,
        "become": True,
        "gather_facts": False,
        "tasks": [
            {
                "name": f"Fetch {REGISTRIES_PATH}",
                "ansible.builtin.fetch": {
                    "src": REGISTRIES_PATH,
                    "dest": "{{ playbook_dir }}/fetched/{{ inventory_hostname }}.yaml",
                    "flat": True,
                },
            }
        ],
    }
    return header + "---\n" + dump_yaml([play])


def render_inventory(servers: tuple[str, ...] = (), agents: tuple[str, ...] = ()) -> str:
    """The inventory template, with k3s-ansible's groups (server, agent under k3s_cluster)."""
    header = (
        f"# Inventory for {PLAYBOOK} and {FETCH_PLAYBOOK}, written by `dockyard k3s rollout`.\n"
        f"# List the K3s servers (service k3s) under {SERVER_GROUP} and the agents (service\n"
        f"# k3s-agent) under {AGENT_GROUP}; connection settings go under each host, e.g.\n"
        "#       k3s-server-1:\n"
        "#         ansible_host: 192.0.2.10\n"
        "#         ansible_user: debian\n"
    )
    groups = {
        SERVER_GROUP: {"hosts": {host: None for host in servers}},
        AGENT_GROUP: {"hosts": {host: None for host in agents}},
    }
    return header + "---\n" + dump_yaml({CLUSTER_GROUP: {"children": groups}})


def render_rollout(
    registries_text: str,
    servers: tuple[str, ...] = (),
    agents: tuple[str, ...] = (),
    agent_batch: str = "100%",
) -> dict[str, str]:
    """Every file of the Ansible project, by path relative to the output directory."""
    check_registries_text(registries_text)
    if not re.fullmatch(r"[1-9][0-9]*%?", agent_batch):
        raise ValueError(f"invalid batch {agent_batch!r}: a number of hosts or a percentage")
    return {
        PLAYBOOK: render_playbook(agent_batch),
        FETCH_PLAYBOOK: render_fetch_playbook(),
        INVENTORY: render_inventory(servers, agents),
        SOURCE: registries_text,
    }


# -- diff -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One setting that differs: where, and its value on each side."""

    kind: Literal["changed", "missing", "extra"]
    path: str
    intended: Any = None
    node: Any = None

    def describe(self) -> str:
        if self.kind == "missing":
            return f"- {self.path}: missing on the node (intended {_show(self.intended)})"
        if self.kind == "extra":
            return f"+ {self.path}: only on the node ({_show(self.node)})"
        return f"~ {self.path}: {_show(self.node)} on the node, {_show(self.intended)} intended"


@dataclass(frozen=True)
class Comparison:
    """A node's copy of registries.yaml against the intended one."""

    node_label: str
    identical: bool
    differences: tuple[Difference, ...]
    text_diff: str
    # Set when the node's copy is not YAML at all (K3s would fail to start).
    node_error: str | None = None

    @property
    def equivalent(self) -> bool:
        """K3s would configure containerd the same way from both files."""
        return self.node_error is None and not self.differences


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _key(key: Any) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) else json.dumps(text)


def _join(path: str, key: Any) -> str:
    return f"{path}.{_key(key)}" if path else _key(key)


def semantic_diff(intended: Any, node: Any, path: str = "") -> list[Difference]:
    """Differences between two parsed YAML documents; lists compare in order (endpoints are
    tried in order)."""
    if isinstance(intended, dict) and isinstance(node, dict):
        found: list[Difference] = []
        for key in intended:
            where = _join(path, key)
            if key not in node:
                found.append(Difference("missing", where, intended=intended[key]))
            else:
                found.extend(semantic_diff(intended[key], node[key], where))
        found.extend(
            Difference("extra", _join(path, key), node=node[key])
            for key in node
            if key not in intended
        )
        return found
    if isinstance(intended, list) and isinstance(node, list):
        found = []
        for index in range(max(len(intended), len(node))):
            where = f"{path}[{index}]"
            if index >= len(node):
                found.append(Difference("missing", where, intended=intended[index]))
            elif index >= len(intended):
                found.append(Difference("extra", where, node=node[index]))
            else:
                found.extend(semantic_diff(intended[index], node[index], where))
        return found
    if type(intended) is not type(node) or intended != node:
        return [Difference("changed", path or "(top level)", intended=intended, node=node)]
    return []


def unified_diff(before: str, after: str, before_label: str, after_label: str) -> str:
    """`diff -u` text, marking a last line without a newline the way diff does."""
    lines = []
    for line in difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=before_label,
        tofile=after_label,
    ):
        if line.endswith("\n"):
            lines.append(line)
        else:
            lines.append(line + "\n\\ No newline at end of file\n")
    return "".join(lines)


def _yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return " ".join(str(exc).split())


def compare(
    intended_text: str, node_text: str, node_label: str, intended_label: str = "intended"
) -> Comparison:
    """Compare a node's copy with the intended file (which must be valid YAML)."""
    text_diff = unified_diff(intended_text, node_text, intended_label, node_label)
    intended = yaml.safe_load(intended_text)
    try:
        node = yaml.safe_load(node_text)
    except yaml.YAMLError as exc:
        error = _yaml_error(exc)
        return Comparison(node_label, False, (), text_diff, node_error=error)
    differences = tuple(semantic_diff(intended, node))
    return Comparison(node_label, intended_text == node_text, differences, text_diff)


def format_comparison(comparison: Comparison) -> str:
    """The report for one node: a verdict line, the settings that differ, the text diff."""
    label = comparison.node_label
    if comparison.identical:
        return f"same: {label}\n"
    if comparison.node_error is not None:
        lines = [f"different: {label} is not valid YAML ({comparison.node_error})"]
    elif comparison.equivalent:
        lines = [
            f"different: {label} has the same settings but other text (comments, quoting, "
            "order); a rollout rewrites it and restarts K3s there"
        ]
    else:
        count = len(comparison.differences)
        lines = [f"different: {label} ({count} setting{'s' if count != 1 else ''})"]
        lines += [f"  {difference.describe()}" for difference in comparison.differences]
    return "\n".join(lines) + "\n" + comparison.text_diff
