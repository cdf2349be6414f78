"""`dockyard` and its subcommands.

Each subcommand's module is imported when that subcommand runs (or `--help` lists them
all), so `dockyard serve` does not load what `tls init` or `export` need (cryptography,
zstandard): about 15 MB less per serving process.
"""

from __future__ import annotations

import importlib

import click

from dockyard import __version__

# command name -> "module:attribute"
COMMANDS = {
    "serve": "dockyard.cli.serve:serve",
    "cache": "dockyard.cli.cache:cache",
    "export": "dockyard.cli.airgap:export",
    "import": "dockyard.cli.airgap:import_",
    "k3s": "dockyard.cli.k3s:k3s",
    "k8s": "dockyard.cli.k8s:k8s",
    "df": "dockyard.cli.storage:df",
    "du": "dockyard.cli.storage:du",
    "gc": "dockyard.cli.storage:gc",
    "tls": "dockyard.cli.tls:tls",
    "users": "dockyard.cli.users:users",
    "doctor": "dockyard.cli.doctor:doctor",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported by name, on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attribute = target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dockyard")
def cli() -> None:
    """Dockyard: an OCI registry and pull-through cache for K3s clusters."""


def main() -> None:
    cli()
