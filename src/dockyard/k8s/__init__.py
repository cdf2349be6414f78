"""Kubernetes manifests that run Dockyard in the cluster."""
