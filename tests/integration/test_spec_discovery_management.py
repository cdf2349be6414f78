"""The distribution spec's content discovery and management requirements."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable

from tests.integration.support.client import (
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    descriptor,
    error_codes,
    sha256,
)
from tests.integration.support.server import DockyardServer


def _next_link(header: str) -> str:
    match = re.fullmatch(r'<([^>]+)>;\s*rel="next"', header)
    assert match, header
    return match.group(1)


# -- tags -----------------------------------------------------------------------------------


def test_tags_list_sorted_and_paginated(client: RegistryClient, repo: str) -> None:
    image = client.push_image(repo, "v1")
    tags = ["latest", "B", "a", "v1", "1.0", "_x", "zeta", "v10", "v2"]
    for tag in tags:
        assert client.push_manifest(repo, tag, image.body).status_code == 201
    expected = sorted(set(tags))  # byte order, as Go's sort.Strings
    r = client.request("GET", f"/v2/{repo}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": repo, "tags": expected}
    # n with Link: follow the links through every page.
    seen: list[str] = []
    path = f"/v2/{repo}/tags/list?n=4"
    while True:
        r = client.request("GET", path)
        assert r.status_code == 200
        page = r.json()["tags"]
        seen += page
        if "Link" not in r.headers:
            break
        assert len(page) == 4  # fewer than n only with no Link
        path = _next_link(r.headers["Link"])
    assert seen == expected
    # last alone, and n with last.
    r = client.request("GET", f"/v2/{repo}/tags/list", params={"last": expected[2]})
    assert r.json()["tags"] == expected[3:]
    r = client.request("GET", f"/v2/{repo}/tags/list", params={"n": 2, "last": expected[2]})
    assert r.json()["tags"] == expected[3:5]


def test_tags_list_n_zero(client: RegistryClient, repo: str) -> None:
    client.push_image(repo, "v1")
    r = client.request("GET", f"/v2/{repo}/tags/list", params={"n": 0})
    assert r.status_code == 200
    assert r.json()["tags"] == []
    assert "Link" not in r.headers


def test_tags_list_unknown_repository(client: RegistryClient, repo: str) -> None:
    r = client.request("GET", f"/v2/{repo}/tags/list")
    assert r.status_code == 404
    assert error_codes(r) == ["NAME_UNKNOWN"]


def test_tags_list_invalid_n(client: RegistryClient, repo: str) -> None:
    client.push_image(repo, "v1")
    r = client.request("GET", f"/v2/{repo}/tags/list", params={"n": "-1"})
    assert r.status_code == 400


def test_catalog_paginated(client: RegistryClient, shared_dockyard: DockyardServer) -> None:
    names = [f"catalog/r{i:02d}" for i in range(7)]
    for name in names:
        client.push_image(name, "v1")
    r = client.request("GET", "/v2/_catalog")
    assert r.status_code == 200
    everything = r.json()["repositories"]
    assert set(names) <= set(everything)
    assert everything == sorted(everything)
    seen: list[str] = []
    path = "/v2/_catalog?n=3"
    while True:
        r = client.request("GET", path)
        seen += r.json()["repositories"]
        if "Link" not in r.headers:
            break
        path = _next_link(r.headers["Link"])
    assert seen == everything


# -- referrers ------------------------------------------------------------------------------


def test_referrers(client: RegistryClient, repo: str) -> None:
    subject = client.push_image(repo, "v1")
    sbom = client.push_image(
        repo,
        tag=None,
        subject=descriptor(subject),
        artifact_type="application/vnd.example.sbom.v1",
        annotations={"org.example.format": "json"},
    )
    # No artifactType: the config's media type stands in for it.
    signature = client.push_image(
        repo,
        tag=None,
        subject=descriptor(subject),
        config_media_type="application/vnd.example.signature.v1",
    )
    index_body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [descriptor(sbom)],
            "subject": descriptor(subject),
            "annotations": {"kind": "bundle"},
        }
    ).encode()
    r = client.push_manifest(repo, sha256(index_body), index_body, OCI_INDEX)
    assert r.status_code == 201
    assert r.headers["OCI-Subject"] == subject.digest

    r = client.request("GET", f"/v2/{repo}/referrers/{subject.digest}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    body = r.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in body["manifests"]}
    assert by_digest[sbom.digest] == {
        "mediaType": OCI_MANIFEST,
        "digest": sbom.digest,
        "size": len(sbom.body),
        "artifactType": "application/vnd.example.sbom.v1",
        "annotations": {"org.example.format": "json"},
    }
    assert by_digest[signature.digest]["artifactType"] == "application/vnd.example.signature.v1"
    index_entry = by_digest[sha256(index_body)]
    assert "artifactType" not in index_entry
    assert index_entry["annotations"] == {"kind": "bundle"}
    assert index_entry["mediaType"] == OCI_INDEX
    assert len(by_digest) == 3

    r = client.request(
        "GET",
        f"/v2/{repo}/referrers/{subject.digest}",
        params={"artifactType": "application/vnd.example.sbom.v1"},
    )
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [sbom.digest]


def test_referrers_unknown_digest_is_empty_index(client: RegistryClient, repo: str) -> None:
    for name in (repo, "disc/never-pushed"):
        r = client.request("GET", f"/v2/{name}/referrers/{sha256(os.urandom(8))}")
        assert r.status_code == 200
        assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        assert r.headers["Content-Type"] == OCI_INDEX


def test_referrers_invalid_digest(client: RegistryClient, repo: str) -> None:
    r = client.request("GET", f"/v2/{repo}/referrers/sha256:nothex")
    assert r.status_code == 400


def test_referrer_pushed_before_subject(client: RegistryClient, repo: str) -> None:
    later = {"mediaType": OCI_MANIFEST, "digest": sha256(b"later"), "size": 5}
    ref = client.push_image(repo, tag=None, subject=later, artifact_type="application/x.sig")
    r = client.request("GET", f"/v2/{repo}/referrers/{later['digest']}")
    assert [m["digest"] for m in r.json()["manifests"]] == [ref.digest]


# -- deletes --------------------------------------------------------------------------------


def test_delete_tag_keeps_manifest(client: RegistryClient, repo: str) -> None:
    image = client.push_image(repo, "v1")
    client.push_manifest(repo, "v2", image.body)
    r = client.request("DELETE", f"/v2/{repo}/manifests/v1")
    assert r.status_code == 202
    assert client.request("GET", f"/v2/{repo}/manifests/v1").status_code == 404
    assert client.request("GET", f"/v2/{repo}/manifests/v2").status_code == 200
    assert client.request("GET", f"/v2/{repo}/manifests/{image.digest}").status_code == 200
    assert client.request("GET", f"/v2/{repo}/tags/list").json()["tags"] == ["v2"]


def test_delete_manifest_removes_its_tags(client: RegistryClient, repo: str) -> None:
    image = client.push_image(repo, "v1")
    client.push_manifest(repo, "v2", image.body)
    r = client.request("DELETE", f"/v2/{repo}/manifests/{image.digest}")
    assert r.status_code == 202
    for reference in ("v1", "v2", image.digest):
        r = client.request("GET", f"/v2/{repo}/manifests/{reference}")
        assert r.status_code == 404
        assert error_codes(r) == ["MANIFEST_UNKNOWN"]
    r = client.request("DELETE", f"/v2/{repo}/manifests/{image.digest}")
    assert r.status_code == 404


def test_delete_blob(client: RegistryClient, repo: str) -> None:
    digest = client.push_blob(repo, os.urandom(100))
    r = client.request("DELETE", f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 202
    assert client.request("HEAD", f"/v2/{repo}/blobs/{digest}").status_code == 404
    r = client.request("DELETE", f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UNKNOWN"]


def test_delete_in_unknown_repository(client: RegistryClient) -> None:
    r = client.request("DELETE", f"/v2/disc/nothing-here/manifests/{sha256(b'x')}")
    assert r.status_code == 404


def test_deletes_disabled(dockyard_factory: Callable[..., DockyardServer]) -> None:
    server = dockyard_factory(env={"REGISTRY_STORAGE_DELETE_ENABLED": "false"})
    client = RegistryClient(server.url)
    image = client.push_image("nodelete/app", "v1")
    for path in (
        f"/v2/nodelete/app/manifests/{image.digest}",
        "/v2/nodelete/app/manifests/v1",
        f"/v2/nodelete/app/blobs/{sha256(image.config)}",
    ):
        r = client.request("DELETE", path)
        assert r.status_code == 405, path
        assert error_codes(r) == ["UNSUPPORTED"]
    assert client.request("GET", "/v2/nodelete/app/manifests/v1").content == image.body
