"""`dockyard` and its subcommands."""

from __future__ import annotations

import click

from dockyard import __version__
from dockyard.cli.airgap import export, import_
from dockyard.cli.cache import cache
from dockyard.cli.doctor import doctor
from dockyard.cli.k3s import k3s
from dockyard.cli.k8s import k8s
from dockyard.cli.serve import serve
from dockyard.cli.storage import df, du, gc
from dockyard.cli.tls import tls
from dockyard.cli.users import users


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="dockyard")
def cli() -> None:
    """Dockyard: an OCI registry and pull-through cache for K3s clusters."""


cli.add_command(serve)
cli.add_command(cache)
cli.add_command(export)
cli.add_command(import_)
cli.add_command(k3s)
cli.add_command(k8s)
cli.add_command(df)
cli.add_command(du)
cli.add_command(gc)
cli.add_command(tls)
cli.add_command(users)
cli.add_command(doctor)


def main() -> None:
    cli()
