"""`dockyard k8s ...`: run Dockyard itself in the cluster."""

from __future__ import annotations

import click


@click.group()
def k8s() -> None:
    """Render the Kubernetes manifests that run Dockyard in the cluster."""
