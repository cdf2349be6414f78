"""The README documents every configuration key and every command."""

from __future__ import annotations

from pathlib import Path
from types import UnionType
from typing import Union, get_args, get_origin

import click
from click.testing import CliRunner
from pydantic import BaseModel

from dockyard.cli.main import cli
from dockyard.config import Config

README = (Path(__file__).parents[2] / "README.md").read_text()


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        args = get_args(annotation)
        optional = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        if get_origin(annotation) in (Union, UnionType) and optional:
            annotation, args = optional[0], ()
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _keys(annotation, f"{prefix}{name}.")
        elif get_origin(annotation) is list and args and issubclass(args[0], BaseModel):
            keys.append(f"{prefix}{name}")
            keys += _keys(args[0], f"{prefix}{name}[].")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_config_key_is_in_the_reference() -> None:
    missing = [key for key in _keys(Config) if f"| `{key}` |" not in README]
    assert missing == []


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def test_every_command_has_help() -> None:
    runner = CliRunner()
    for path in _commands(cli):
        result = runner.invoke(cli, [*path, "--help"])
        assert result.exit_code == 0, path
        assert "Usage:" in result.output
        if path:
            assert f"dockyard {' '.join(path)}" in README, path
