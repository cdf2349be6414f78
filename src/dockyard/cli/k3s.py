"""`dockyard k3s ...`: the cluster side of a Dockyard mirror."""

from __future__ import annotations

import click


@click.group()
def k3s() -> None:
    """Generate, lint and explain K3s registries.yaml and containerd hosts.toml."""
