"""YAML text the way Kubernetes and Ansible users write it: block style, indented lists,
multi-line strings as literal blocks, keys in the order given."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _BlockDumper(yaml.SafeDumper):
    # PyYAML puts a mapping's list items flush with the key; kubectl and Ansible indent them.
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _none(dumper: yaml.SafeDumper, value: None) -> yaml.ScalarNode:
    # `host:` rather than `host: null`, the way inventories and Ansible maps are written.
    return dumper.represent_scalar("tag:yaml.org,2002:null", "")


_BlockDumper.add_representer(str, _str)
_BlockDumper.add_representer(type(None), _none)


def dump_yaml(data: Any) -> str:
    """One YAML document, block style, keys in insertion order."""
    return yaml.dump(
        data, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False, width=100
    )


def dump_yaml_all(documents: Iterable[Any]) -> str:
    """A multi-document stream, each document starting with `---`."""
    return "".join(f"---\n{dump_yaml(document)}" for document in documents)
