"""Storage keys. The only place that turns digests and session ids into keys."""

from __future__ import annotations

from dockyard.oci.digest import Digest


def blob_key(digest: Digest) -> str:
    """`blobs/sha256/ab/abcdef...`: content-addressed, shared by every repository."""
    return f"blobs/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def upload_key(upload_id: str) -> str:
    """`uploads/<id>`: staging files live on the same filesystem as blobs."""
    return f"uploads/{upload_id}"
