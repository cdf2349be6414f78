"""K3s tooling: registries.yaml (model, render, lint) and the containerd files K3s derives."""
