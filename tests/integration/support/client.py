"""A small raw-HTTP client for spec tests: every request is visible in the test."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Pushed:
    repo: str
    digest: str
    body: bytes
    config: bytes
    layers: list[bytes]


class RegistryClient:
    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.http = requests.Session()

    def url(self, path: str) -> str:
        # Locations may be absolute (Distribution) or relative (Dockyard).
        return path if path.startswith(("http://", "https://")) else self.base + path

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        kwargs.setdefault("allow_redirects", False)
        return self.http.request(method, self.url(path), **kwargs)

    def push_blob(self, repo: str, data: bytes) -> str:
        """POST then PUT: the upload every registry supports (Distribution included)."""
        digest = sha256(data)
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/")
        assert r.status_code == 202, r.text
        r = self.request(
            "PUT",
            r.headers["Location"],
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        return digest

    def push_manifest(
        self, repo: str, reference: str, body: bytes, media_type: str = OCI_MANIFEST
    ) -> requests.Response:
        return self.request(
            "PUT",
            f"/v2/{repo}/manifests/{reference}",
            data=body,
            headers={"Content-Type": media_type},
        )

    def push_image(
        self,
        repo: str,
        tag: str | None = "latest",
        *,
        layers: int = 1,
        subject: dict[str, Any] | None = None,
        artifact_type: str | None = None,
        config_media_type: str = OCI_CONFIG,
        annotations: dict[str, str] | None = None,
    ) -> Pushed:
        """Push random layers, a config and an OCI manifest; tag it (or push by digest)."""
        config = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()})
        config_bytes = config.encode()
        layer_bytes = [os.urandom(1024 + i) for i in range(layers)]
        self.push_blob(repo, config_bytes)
        for layer in layer_bytes:
            self.push_blob(repo, layer)
        manifest: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": config_media_type,
                "digest": sha256(config_bytes),
                "size": len(config_bytes),
            },
            "layers": [
                {"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)} for b in layer_bytes
            ],
        }
        if subject is not None:
            manifest["subject"] = subject
        if artifact_type is not None:
            manifest["artifactType"] = artifact_type
        if annotations:
            manifest["annotations"] = annotations
        body = json.dumps(manifest).encode()
        digest = sha256(body)
        r = self.push_manifest(repo, tag or digest, body)
        assert r.status_code == 201, r.text
        return Pushed(repo, digest, body, config_bytes, layer_bytes)


def descriptor(pushed: Pushed, media_type: str = OCI_MANIFEST) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": pushed.digest, "size": len(pushed.body)}


def error_codes(response: requests.Response) -> list[str]:
    return [e["code"] for e in response.json()["errors"]]
