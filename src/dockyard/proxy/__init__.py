"""The pull-through cache: upstream clients, routing, and a proxy over the local registry."""
