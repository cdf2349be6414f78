"""The local registry: blobs, uploads, manifests, tags and referrers. No HTTP here."""

from dockyard.registry.registry import Registry

__all__ = ["Registry"]
