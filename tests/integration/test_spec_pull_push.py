"""The distribution spec's pull and push requirements, request by request."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
from collections.abc import Iterator

import pytest

from tests.integration.support.client import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    descriptor,
    error_codes,
    sha256,
)
from tests.integration.support.server import DockyardServer

# -- pull -----------------------------------------------------------------------------------


def test_api_base(client: RegistryClient) -> None:
    r = client.request("GET", "/v2/")
    assert r.status_code == 200
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_pull_manifest_by_tag_and_digest(client: RegistryClient, repo: str) -> None:
    image = client.push_image(repo, "v1")
    for reference in ("v1", image.digest):
        r = client.request("GET", f"/v2/{repo}/manifests/{reference}")
        assert r.status_code == 200
        assert r.content == image.body  # exact bytes as pushed
        assert r.headers["Docker-Content-Digest"] == image.digest
        assert r.headers["Content-Type"] == OCI_MANIFEST
        assert int(r.headers["Content-Length"]) == len(image.body)
        head = client.request("HEAD", f"/v2/{repo}/manifests/{reference}")
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["Docker-Content-Digest"] == image.digest
        assert int(head.headers["Content-Length"]) == len(image.body)


def test_manifest_etag_and_conditional_get(client: RegistryClient, repo: str) -> None:
    image = client.push_image(repo, "v1")
    r = client.request("GET", f"/v2/{repo}/manifests/v1")
    assert r.headers["ETag"] == f'"{image.digest}"'
    again = client.request(
        "GET", f"/v2/{repo}/manifests/v1", headers={"If-None-Match": r.headers["ETag"]}
    )
    assert again.status_code == 304


def test_several_accept_lines_are_merged(
    shared_dockyard: DockyardServer, client: RegistryClient, repo: str
) -> None:
    image = client.push_image(repo, "v1")
    conn = http.client.HTTPConnection("127.0.0.1", shared_dockyard.port, timeout=10)
    conn.putrequest("GET", f"/v2/{repo}/manifests/v1")
    for media_type in (DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST):
        conn.putheader("Accept", media_type)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == OCI_MANIFEST
    assert response.read() == image.body
    conn.close()


def test_unknown_manifest_and_repository(client: RegistryClient, repo: str) -> None:
    r = client.request("GET", f"/v2/{repo}/manifests/nope")
    assert r.status_code == 404
    assert error_codes(r) == ["MANIFEST_UNKNOWN"]
    head = client.request("HEAD", f"/v2/{repo}/manifests/{sha256(b'x')}")
    assert head.status_code == 404
    assert head.content == b""


def test_pull_blob(client: RegistryClient, repo: str) -> None:
    data = os.urandom(100_000)
    digest = client.push_blob(repo, data)
    r = client.request("GET", f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    head = client.request("HEAD", f"/v2/{repo}/blobs/{digest}")
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == len(data)
    assert head.headers["Docker-Content-Digest"] == digest
    missing = client.request("GET", f"/v2/{repo}/blobs/{sha256(b'missing')}")
    assert missing.status_code == 404
    assert error_codes(missing) == ["BLOB_UNKNOWN"]


def test_blob_visible_only_in_its_repository(client: RegistryClient, repo: str) -> None:
    digest = client.push_blob(repo, os.urandom(64))
    r = client.request("HEAD", f"/v2/{repo}-other/blobs/{digest}")
    assert r.status_code == 404


@pytest.mark.parametrize(
    ("header", "status", "expected"),
    [
        ("bytes=0-9", 206, (0, 9)),
        ("bytes=10-", 206, (10, 999)),
        ("bytes=-100", 206, (900, 999)),
        ("bytes=990-5000", 206, (990, 999)),
        ("bytes=1000-", 416, None),
        ("bytes=5000-6000", 416, None),
    ],
)
def test_blob_ranges(
    client: RegistryClient, repo: str, header: str, status: int, expected: tuple[int, int] | None
) -> None:
    data = os.urandom(1000)
    digest = client.push_blob(repo, data)
    r = client.request("GET", f"/v2/{repo}/blobs/{digest}", headers={"Range": header})
    assert r.status_code == status
    if expected is None:
        assert r.headers["Content-Range"] == "bytes */1000"
        assert r.json()["errors"][0]["code"]
    else:
        start, end = expected
        assert r.content == data[start : end + 1]
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/1000"


# -- push -----------------------------------------------------------------------------------


def test_post_then_put(client: RegistryClient, repo: str) -> None:
    data = os.urandom(5000)
    r = client.request("POST", f"/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    r = client.request(
        "PUT",
        location,
        params={"digest": sha256(data)},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/{repo}/blobs/{sha256(data)}"
    assert client.request("GET", r.headers["Location"]).content == data


def test_single_post(client: RegistryClient, repo: str) -> None:
    data = os.urandom(5000)
    r = client.request(
        "POST", f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)}, data=data
    )
    assert r.status_code == 201
    assert client.request("GET", r.headers["Location"]).content == data


def test_truncated_body_commits_nothing(
    shared_dockyard: DockyardServer, client: RegistryClient, repo: str
) -> None:
    data = os.urandom(100)
    conn = http.client.HTTPConnection("127.0.0.1", shared_dockyard.port, timeout=10)
    conn.putrequest("POST", f"/v2/{repo}/blobs/uploads/?digest={sha256(data)}")
    conn.putheader("Content-Length", "100")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.endheaders()
    conn.send(data[:60])
    conn.close()  # the client goes away mid-body
    assert client.request("HEAD", f"/v2/{repo}/blobs/{sha256(data)}").status_code == 404
    assert client.request("GET", "/v2/").status_code == 200


def test_chunk_length_must_match_its_range(client: RegistryClient, repo: str) -> None:
    location = client.request("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    r = client.request("PATCH", location, data=b"x" * 60, headers={"Content-Range": "0-99"})
    assert r.status_code == 400
    assert error_codes(r) == ["SIZE_INVALID"]
    assert client.request("GET", location).headers["Range"] == "0-0"


def test_chunked_upload(client: RegistryClient, repo: str) -> None:
    data = os.urandom(30_000)
    r = client.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202
    location = r.headers["Location"]
    for start in range(0, 20_000, 10_000):
        chunk = data[start : start + 10_000]
        r = client.request(
            "PATCH",
            location,
            data=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(chunk) - 1}",
            },
        )
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{start + len(chunk) - 1}"
        location = r.headers["Location"]
    status = client.request("GET", location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-19999"
    assert status.headers["Location"]
    # The last chunk travels with the closing PUT.
    r = client.request(
        "PUT",
        location,
        params={"digest": sha256(data)},
        data=data[20_000:],
        headers={"Content-Range": "20000-29999", "Content-Type": "application/octet-stream"},
    )
    assert r.status_code == 201, r.text
    assert client.request("GET", f"/v2/{repo}/blobs/{sha256(data)}").content == data


@pytest.mark.parametrize("bad_range", ["gap", "overlap"])
def test_chunk_out_of_order_is_416(client: RegistryClient, repo: str, bad_range: str) -> None:
    r = client.request("POST", f"/v2/{repo}/blobs/uploads/")
    location = r.headers["Location"]
    r = client.request("PATCH", location, data=b"01234", headers={"Content-Range": "0-4"})
    assert r.status_code == 202
    # A gap (bytes 10-14 when 5-9 are missing) or an overlap (0-4 again) is refused.
    start, end = (10, 14) if bad_range == "gap" else (0, 4)
    r = client.request(
        "PATCH", location, data=b"56789", headers={"Content-Range": f"{start}-{end}"}
    )
    assert r.status_code == 416
    status = client.request("GET", location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-4"
    # The final PUT out of order is a 416 as well.
    r = client.request(
        "PUT",
        location,
        params={"digest": sha256(b"0123456789")},
        data=b"56789",
        headers={"Content-Range": "7-11"},
    )
    assert r.status_code == 416
    r = client.request(
        "PUT",
        location,
        params={"digest": sha256(b"0123456789")},
        data=b"56789",
        headers={"Content-Range": "5-9"},
    )
    assert r.status_code == 201


def test_malformed_content_range(client: RegistryClient, repo: str) -> None:
    location = client.request("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    r = client.request("PATCH", location, data=b"abc", headers={"Content-Range": "zero-two"})
    assert r.status_code == 400
    assert error_codes(r) == ["BLOB_UPLOAD_INVALID"]


def test_streamed_patch_without_content_range(client: RegistryClient, repo: str) -> None:
    # skopeo and podman send one chunked-encoding PATCH without Content-Range.
    data = os.urandom(300_000)

    def body() -> Iterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    location = client.request("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    r = client.request("PATCH", location, data=body())
    assert r.status_code == 202
    assert r.headers["Range"] == f"0-{len(data) - 1}"
    r = client.request("PUT", r.headers["Location"], params={"digest": sha256(data)})
    assert r.status_code == 201


def test_wrong_digest_discards_upload(client: RegistryClient, repo: str) -> None:
    data = b"some bytes"
    location = client.request("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    wrong = sha256(b"other bytes")
    r = client.request("PUT", location, params={"digest": wrong}, data=data)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    assert client.request("HEAD", f"/v2/{repo}/blobs/{wrong}").status_code == 404
    assert client.request("HEAD", f"/v2/{repo}/blobs/{sha256(data)}").status_code == 404
    r = client.request("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": wrong}, data=data)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]


def test_put_without_digest(client: RegistryClient, repo: str) -> None:
    location = client.request("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    r = client.request("PUT", location, data=b"abc")
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]


@pytest.mark.parametrize(
    "digest",
    ["sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e", "nonsense", "sha256:" + "A" * 64],
)
def test_invalid_digests(client: RegistryClient, repo: str, digest: str) -> None:
    r = client.request("POST", f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, data=b"x")
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]
    r = client.request("GET", f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]


def test_sha512_blobs(client: RegistryClient, repo: str) -> None:
    data = os.urandom(2048)
    digest = "sha512:" + hashlib.sha512(data).hexdigest()
    r = client.request("POST", f"/v2/{repo}/blobs/uploads/", params={"digest-algorithm": "sha512"})
    assert r.status_code == 202
    r = client.request("PUT", r.headers["Location"], params={"digest": digest}, data=data)
    assert r.status_code == 201, r.text
    got = client.request("GET", f"/v2/{repo}/blobs/{digest}")
    assert got.content == data
    assert got.headers["Docker-Content-Digest"] == digest
    # A sha512 digest on a session opened without digest-algorithm also verifies.
    location = client.request("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    other = os.urandom(99)
    r = client.request(
        "PUT",
        location,
        params={"digest": "sha512:" + hashlib.sha512(other).hexdigest()},
        data=other,
    )
    assert r.status_code == 201


def test_cancel_upload(client: RegistryClient, repo: str) -> None:
    location = client.request("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    client.request("PATCH", location, data=b"abc")
    r = client.request("DELETE", location)
    assert r.status_code == 204
    r = client.request("GET", location)
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]


def test_unknown_and_foreign_upload_ids(client: RegistryClient, repo: str) -> None:
    r = client.request("PATCH", f"/v2/{repo}/blobs/uploads/not-a-session", data=b"x")
    assert r.status_code == 404
    assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    location = client.request("POST", f"/v2/{repo}/blobs/uploads/").headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    # A session is bound to its repository: another repository cannot use it.
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = client.request(
            method,
            f"/v2/{repo}-other/blobs/uploads/{upload_id}",
            params={"digest": sha256(b"x")},
            data=b"x",
        )
        assert r.status_code == 404, method
        assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    assert client.request("GET", location).status_code == 204


def test_cross_repository_mount(client: RegistryClient, repo: str) -> None:
    data = os.urandom(500)
    digest = client.push_blob(repo, data)
    r = client.request(
        "POST", f"/v2/{repo}-target/blobs/uploads/", params={"mount": digest, "from": repo}
    )
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{repo}-target/blobs/{digest}"
    assert client.request("GET", r.headers["Location"]).content == data
    # Not in the source: a new upload session instead.
    missing = sha256(b"not there")
    r = client.request(
        "POST", f"/v2/{repo}-third/blobs/uploads/", params={"mount": missing, "from": repo}
    )
    assert r.status_code == 202
    assert "/blobs/uploads/" in r.headers["Location"]
    assert client.request("GET", r.headers["Location"]).status_code == 204


def test_push_manifest_by_tag_and_digest(client: RegistryClient, repo: str) -> None:
    image = client.push_image(repo, "v1")
    r = client.push_manifest(repo, image.digest, image.body)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/{repo}/manifests/{image.digest}"
    assert r.headers["Docker-Content-Digest"] == image.digest
    other = client.push_image(repo, tag=None)
    assert client.request("GET", f"/v2/{repo}/manifests/{other.digest}").content == other.body


def test_push_manifest_with_tag_parameters(client: RegistryClient, repo: str) -> None:
    image = client.push_image(repo, tag=None)
    r = client.request(
        "PUT",
        f"/v2/{repo}/manifests/{image.digest}",
        params=[("tag", "1.2.3"), ("tag", "latest")],
        data=image.body,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert r.status_code == 201
    tags = {t.strip() for t in r.headers["OCI-Tag"].split(",")}
    assert tags == {"1.2.3", "latest"}
    for tag in tags:
        assert client.request("GET", f"/v2/{repo}/manifests/{tag}").content == image.body


def test_manifest_digest_mismatch(client: RegistryClient, repo: str) -> None:
    image = client.push_image(repo, "v1")
    r = client.push_manifest(repo, sha256(b"something else"), image.body)
    assert r.status_code == 400
    assert error_codes(r) == ["DIGEST_INVALID"]


def test_manifest_with_unknown_blobs(client: RegistryClient, repo: str) -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(b"nope"),
            "size": 4,
        },
        "layers": [],
    }
    r = client.push_manifest(repo, "v1", json.dumps(manifest).encode())
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(b"child"), "size": 5}],
    }
    r = client.push_manifest(repo, "idx", json.dumps(index).encode(), OCI_INDEX)
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_BLOB_UNKNOWN"]


def test_index_and_docker_types(client: RegistryClient, repo: str) -> None:
    a = client.push_image(repo, tag=None)
    b = client.push_image(repo, tag=None)
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(a), descriptor(b)]}
    ).encode()
    assert client.push_manifest(repo, "multi", index, OCI_INDEX).status_code == 201
    r = client.request("GET", f"/v2/{repo}/manifests/multi")
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.content == index
    docker = json.loads(a.body)
    docker["mediaType"] = DOCKER_MANIFEST
    docker["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    docker_body = json.dumps(docker, indent=3).encode()
    assert client.push_manifest(repo, "docker", docker_body, DOCKER_MANIFEST).status_code == 201
    r = client.request("GET", f"/v2/{repo}/manifests/docker")
    assert r.headers["Content-Type"] == DOCKER_MANIFEST
    assert r.content == docker_body


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", OCI_MANIFEST),
        (b"[]", OCI_MANIFEST),
        (b'{"schemaVersion": 1}', OCI_MANIFEST),
        (
            b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",'
            b' "manifests": []}',
            OCI_MANIFEST,
        ),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:1", "size": 1}}',
            OCI_MANIFEST,
        ),
        (b'{"schemaVersion": 2, "manifests": []}', "application/vnd.example.unknown+json"),
        (
            b'{"schemaVersion": 2, "config": {"mediaType": "x", "size": -1, "digest": "'
            + sha256(b"").encode()
            + b'"}}',
            OCI_MANIFEST,
        ),
    ],
)
def test_invalid_manifests(
    client: RegistryClient, repo: str, body: bytes, content_type: str
) -> None:
    r = client.push_manifest(repo, "bad", body, content_type)
    assert r.status_code == 400
    assert error_codes(r) == ["MANIFEST_INVALID"]


def test_manifest_over_the_size_limit(client: RegistryClient, repo: str) -> None:
    body = b'{"schemaVersion": 2, "padding": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    r = client.push_manifest(repo, "huge", body)
    assert r.status_code == 413
    assert error_codes(r) == ["MANIFEST_INVALID"]


def test_subject_header_and_unknown_subject_accepted(client: RegistryClient, repo: str) -> None:
    subject = {"mediaType": OCI_MANIFEST, "digest": sha256(b"not pushed yet"), "size": 14}
    config = os.urandom(16)
    client.push_blob(repo, config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [],
        "subject": subject,
    }
    r = client.push_manifest(
        repo, sha256(json.dumps(manifest).encode()), json.dumps(manifest).encode()
    )
    assert r.status_code == 201, r.text
    assert r.headers["OCI-Subject"] == subject["digest"]


# -- names and references -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["UPPER/case", "a//b", "-leading", "trailing-", "a..b", "x" * 300])
def test_invalid_names(client: RegistryClient, name: str) -> None:
    r = client.request("GET", f"/v2/{name}/tags/list")
    assert r.status_code in (400, 404)
    if r.status_code == 400:
        assert error_codes(r) == ["NAME_INVALID"]
    r = client.request("POST", f"/v2/{name}/blobs/uploads/")
    assert r.status_code in (400, 404)
    assert r.status_code != 202


def test_path_traversal_never_escapes(
    client: RegistryClient, shared_dockyard: DockyardServer
) -> None:
    for path in (
        "/v2/..%2f..%2fetc/blobs/uploads/",
        "/v2/a/blobs/uploads/..%2f..%2fmetadata.db",
        "/v2/a/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd",
        "/v2/a/manifests/..%2f..%2fmetadata.db",
    ):
        r = client.request("GET", path)
        assert 400 <= r.status_code < 500, path
        r = client.request("PUT", path, data=b"x")
        assert 400 <= r.status_code < 500, path
    assert not (shared_dockyard.root.parent / "etc").exists()


def test_invalid_tags(client: RegistryClient, repo: str) -> None:
    image = client.push_image(repo, "ok")
    for tag in ("-bad", ".INVALID_MANIFEST_NAME", "a" * 129, "with+plus"):
        r = client.push_manifest(repo, tag, image.body)
        assert r.status_code == 400, tag
        assert error_codes(r) == ["MANIFEST_INVALID"]
        # "If the manifest is not found in the repository, the response code MUST be 404":
        # a pull or a delete by a tag no manifest can have finds nothing.
        for method in ("GET", "DELETE"):
            r = client.request(method, f"/v2/{repo}/manifests/{tag}")
            assert r.status_code == 404, (method, tag)
            assert error_codes(r) == ["MANIFEST_UNKNOWN"]
        r = client.request("HEAD", f"/v2/{repo}/manifests/{tag}")
        assert r.status_code == 404 and not r.content, tag
    assert client.request("GET", f"/v2/{repo}/manifests/ok").status_code == 200


def test_unknown_endpoint_and_method(client: RegistryClient, repo: str) -> None:
    r = client.request("GET", "/v2/a/unknown/thing")
    assert r.status_code == 404
    r = client.request("POST", f"/v2/{repo}/manifests/v1")
    assert r.status_code == 405
    assert error_codes(r) == ["UNSUPPORTED"]


def test_content_negotiation(client: RegistryClient, repo: str) -> None:
    image = client.push_image(repo, "oci")
    # A client that names manifest types but not this one gets 404, not bytes it cannot read.
    r = client.request("GET", f"/v2/{repo}/manifests/oci", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 404
    assert error_codes(r) == ["MANIFEST_UNKNOWN"]
    # Non-manifest types (or none) mean "whatever you have".
    for accept in ("application/json", "*/*", ""):
        r = client.request("GET", f"/v2/{repo}/manifests/oci", headers={"Accept": accept})
        assert r.content == image.body
    # A Docker manifest list, asked for by a client that only reads image manifests:
    # the linux/amd64 child is served, as Distribution does.
    amd = json.loads(client.push_image(repo, tag=None).body)
    amd["mediaType"] = DOCKER_MANIFEST
    amd_body = json.dumps(amd).encode()
    assert (
        client.push_manifest(repo, sha256(amd_body), amd_body, DOCKER_MANIFEST).status_code == 201
    )
    arm = client.push_image(repo, tag=None)
    docker_list = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": [
                {**descriptor(arm), "platform": {"os": "linux", "architecture": "arm64"}},
                {
                    "mediaType": DOCKER_MANIFEST,
                    "digest": sha256(amd_body),
                    "size": len(amd_body),
                    "platform": {"os": "linux", "architecture": "amd64"},
                },
            ],
        }
    ).encode()
    list_type = "application/vnd.docker.distribution.manifest.list.v2+json"
    assert client.push_manifest(repo, "list", docker_list, list_type).status_code == 201
    r = client.request("GET", f"/v2/{repo}/manifests/list", headers={"Accept": DOCKER_MANIFEST})
    assert r.status_code == 200
    assert r.content == amd_body
    assert r.headers["Docker-Content-Digest"] == sha256(amd_body)
    r = client.request(
        "GET", f"/v2/{repo}/manifests/list", headers={"Accept": f"{list_type}, {DOCKER_MANIFEST}"}
    )
    assert r.content == docker_list
