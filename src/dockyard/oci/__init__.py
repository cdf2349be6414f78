"""OCI data types: digests, names, references, media types and manifests. Pure, no I/O."""
