"""Reading images from a running Dockyard over HTTP, the way containerd asks a mirror.

Every request carries `?ns=<registry>`, so an image of a cached upstream is pulled through
the cache (and stays cached), and any other name is read from the local repositories.
Blobs are returned as open responses for the caller to stream; nothing is held whole.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.client import HTTPResponse
from typing import Any

from dockyard.airgap.errors import BundleError
from dockyard.oci import mediatypes as mt
from dockyard.oci.digest import Digest
from dockyard.oci.reference import ImageReference

MANIFEST_ACCEPT = ", ".join(
    [mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST]
)


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    digest: Digest
    media_type: str
    content: bytes

    def document(self) -> dict[str, Any]:
        value = json.loads(self.content)
        if not isinstance(value, dict):
            raise BundleError(f"manifest {self.digest} is not a JSON object")
        return value


class RegistryReader:
    """GETs manifests and blobs from one registry base URL."""

    def __init__(self, base: str, timeout: float = 300.0) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout

    def _open(self, ref: ImageReference, path: str, accept: str | None = None) -> HTTPResponse:
        query = urllib.parse.urlencode({"ns": ref.registry})
        url = f"{self.base}/v2/{ref.repository}/{path}?{query}"
        request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        try:
            response: HTTPResponse = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            body = exc.read(500).decode(errors="replace")
            exc.close()
            raise BundleError(
                f"{ref}: GET {path} answered {exc.code} from {self.base}: {body}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BundleError(f"cannot reach {self.base}: {reason}") from None
        return response

    def manifest(self, ref: ImageReference, reference: str, limit: int) -> FetchedManifest:
        """A manifest by tag or digest, verified against the digest asked for or announced."""
        with self._open(ref, f"manifests/{reference}", MANIFEST_ACCEPT) as response:
            content = response.read(limit + 1)
            media_type = mt.strip_parameters(response.headers.get("Content-Type", ""))
            announced = response.headers.get("Docker-Content-Digest")
        if len(content) > limit:
            raise BundleError(f"{ref}: manifest {reference} is larger than {limit} bytes")
        expected = Digest.parse(reference) if ":" in reference else None
        if expected is None and announced:
            expected = Digest.parse(announced)
        actual = Digest.of(content, expected.algorithm if expected else "sha256")
        if expected is not None and actual != expected:
            raise BundleError(f"{ref}: manifest {reference} does not match {expected}")
        if not media_type or media_type in (mt.OCTET_STREAM, "application/json"):
            media_type = str(json.loads(content).get("mediaType") or mt.OCI_MANIFEST)
        return FetchedManifest(actual, media_type, content)

    def open_blob(self, ref: ImageReference, digest: Digest) -> HTTPResponse:
        """The response streaming a blob (the caller verifies while it reads)."""
        return self._open(ref, f"blobs/{digest}")
