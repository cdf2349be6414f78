"""Each subcommand's module loads when that subcommand runs: `dockyard serve` does not pay
for what `tls init` or `export` need (tests/integration/test_serve.py checks a running
server's memory map)."""

from __future__ import annotations

import json
import subprocess
import sys

import click
from click.testing import CliRunner

from dockyard.cli.main import COMMANDS, cli

HEAVY = ("jwt", "cryptography", "zstandard")


def _loaded_after_resolving(*commands: str) -> set[str]:
    script = "\n".join(
        [
            "import click, json, sys",
            "from dockyard.cli.main import cli",
            *(f"cli.get_command(click.Context(cli), {name!r})" for name in commands),
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))",
        ]
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_serve_loads_no_token_tls_or_bundle_library() -> None:
    assert _loaded_after_resolving("serve") == set()


def test_the_commands_that_need_them_still_get_them() -> None:
    assert _loaded_after_resolving("tls", "export") >= {"cryptography", "zstandard"}


def test_help_lists_every_command_and_each_resolves() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    context = click.Context(cli)
    for name in COMMANDS:
        assert f"\n  {name} " in result.output, name
        command = cli.get_command(context, name)
        assert isinstance(command, click.Command) and command.name in (name, "import_")
    assert cli.get_command(context, "no-such-command") is None
    unknown = CliRunner().invoke(cli, ["no-such-command"])
    assert unknown.exit_code == 2 and "No such command" in unknown.output
