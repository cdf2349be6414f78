"""The HTTP API: one module per resource, errors rendered at the edge only."""

from dockyard.api.app import create_app

__all__ = ["create_app"]
