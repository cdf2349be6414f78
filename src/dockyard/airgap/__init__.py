"""Air-gapped sites: image bundles in and out, and migration from a Distribution store.

Bundles are OCI image layouts (directories or tar archives, optionally gzip or zstd
compressed) and `docker save` archives. Everything read is verified against its digest
before it is committed; manifests are written only after every blob they name is in.
"""
