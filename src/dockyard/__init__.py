"""Dockyard: an OCI registry and multi-upstream pull-through cache for K3s clusters."""

__version__ = "0.1.0"
