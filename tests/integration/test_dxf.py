"""python-dxf (a registry used as a blob store) against Dockyard over plain HTTP.

dxf uploads with `POST` then one `PUT ?digest=` carrying the whole body (streamed with
chunked transfer encoding when the data is an iterator), names blob sets with Docker
schema-2 manifests whose config is simply the first blob, mounts blobs across
repositories and deletes manifests by the digest from `Docker-Content-Digest`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import cast

import pytest
import requests
from dxf import DXF, DXFBase
from dxf.exceptions import DXFMountFailed

from tests.integration.support.server import DockyardServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _pull(dxf: DXF, digest: str) -> bytes:
    # dxf checks the digest of what it read and raises DXFDigestMismatchError otherwise.
    return b"".join(cast(Iterable[bytes], dxf.pull_blob(digest)))


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _status(error: pytest.ExceptionInfo[requests.HTTPError]) -> int:
    response = error.value.response
    assert response is not None
    return int(response.status_code)


@pytest.fixture
def blobs(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A 1.5 MiB file and 300 KiB of in-memory data (random: nothing is already stored)."""
    big = os.urandom(3 * 512 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(big)
    return path, big, os.urandom(300 * 1024)


def test_push_alias_pull_roundtrip(
    dockyard: DockyardServer, blobs: tuple[Path, bytes, bytes]
) -> None:
    path, big, small = blobs
    dxf = DXF(dockyard.host, "dxf/source", insecure=True)
    with dxf:
        # From a file (one PUT with a Content-Length body) ...
        big_digest = dxf.push_blob(str(path))
        assert big_digest == _sha256(big)
        # ... and from an iterator (one PUT with a chunked transfer-encoded body).
        small_digest = dxf.push_blob(data=_chunks(small, 64 * 1024), digest=_sha256(small))
        assert small_digest == _sha256(small)
        # Already there: dxf's HEAD answers 200 and nothing is uploaded again.
        assert dxf.push_blob(str(path)) == big_digest

        assert dxf.blob_size(big_digest) == len(big)
        assert _pull(dxf, big_digest) == big
        assert _pull(dxf, small_digest) == small
        chunks, size = cast(tuple[Iterable[bytes], int], dxf.pull_blob(small_digest, size=True))
        assert size == len(small)
        assert b"".join(chunks) == small

        manifest = dxf.set_alias("v1", big_digest, small_digest)
        assert json.loads(manifest)["mediaType"] == SCHEMA2
        assert dxf.get_alias("v1") == [big_digest, small_digest]
        assert dxf.get_alias("v1", sizes=True) == [
            (big_digest, len(big)),
            (small_digest, len(small)),
        ]
        # dxf's "digest" of an alias is its config: here the first blob.
        assert dxf.get_digest("v1") == big_digest
        # The manifest comes back byte for byte, with a matching Docker-Content-Digest.
        assert dxf.get_manifest("v1") == manifest
        digest, response = dxf.head_manifest_and_response("v1")
        assert digest == _sha256(manifest.encode())
        assert response.headers["Content-Type"] == SCHEMA2
        assert dxf.list_aliases() == ["v1"]

        # A second alias for the same blobs, then by-digest access to the manifest.
        dxf.set_alias("v2", small_digest)
        assert sorted(dxf.list_aliases()) == ["v1", "v2"]
        by_digest = cast(str, dxf.get_manifest(digest))
        assert by_digest == manifest
        assert dxf.get_alias(manifest=by_digest) == [big_digest, small_digest]


def test_alias_delete(dockyard: DockyardServer, blobs: tuple[Path, bytes, bytes]) -> None:
    path, big, small = blobs
    dxf = DXF(dockyard.host, "dxf/deletes", insecure=True)
    big_digest = dxf.push_blob(str(path))
    small_digest = dxf.push_blob(data=iter([small]), digest=_sha256(small))
    manifest = dxf.set_alias("doomed", big_digest, small_digest)
    dxf.set_alias("kept", small_digest)

    # del_alias looks the manifest up, then DELETEs it by its Docker-Content-Digest.
    assert dxf.del_alias("doomed") == [big_digest, small_digest]
    with pytest.raises(requests.HTTPError) as gone:
        dxf.get_alias("doomed")
    assert _status(gone) == 404
    with pytest.raises(requests.HTTPError) as gone_by_digest:
        dxf.get_manifest(_sha256(manifest.encode()))
    assert _status(gone_by_digest) == 404
    assert dxf.list_aliases() == ["kept"]
    assert dxf.get_alias("kept") == [small_digest]
    # Deleting a manifest leaves its blobs alone.
    assert _pull(dxf, big_digest) == big

    # Blobs themselves can be deleted too (the fixture enables deletes).
    dxf.del_blob(big_digest)
    with pytest.raises(requests.HTTPError) as blob_gone:
        dxf.blob_size(big_digest)
    assert _status(blob_gone) == 404


def test_mount_blob_into_another_repository(
    dockyard: DockyardServer, blobs: tuple[Path, bytes, bytes]
) -> None:
    path, big, small = blobs
    source = DXF(dockyard.host, "dxf/mount-source", insecure=True)
    target = DXF(dockyard.host, "dxf/mount-target", insecure=True)
    digest = source.push_blob(str(path))

    with pytest.raises(requests.HTTPError) as absent:
        target.blob_size(digest)
    assert _status(absent) == 404

    # POST /v2/dxf/mount-target/blobs/uploads/?mount=<digest>&from=dxf/mount-source -> 201
    assert target.mount_blob("dxf/mount-source", digest) == digest
    assert target.blob_size(digest) == len(big)
    assert _pull(target, digest) == big
    # The mounted blob is a first-class member of the target repository.
    target.set_alias("mounted", digest)
    assert target.get_alias("mounted") == [digest]

    # A blob the source repository does not have cannot be mounted: the registry falls
    # back to opening an ordinary upload (202), which dxf reports as DXFMountFailed.
    with pytest.raises(DXFMountFailed):
        target.mount_blob("dxf/mount-source", _sha256(small))
    with pytest.raises(requests.HTTPError) as still_absent:
        target.blob_size(_sha256(small))
    assert _status(still_absent) == 404


def test_list_repos(dockyard: DockyardServer, blobs: tuple[Path, bytes, bytes]) -> None:
    _, _, small = blobs
    names = ["dxf/alpha", "dxf/beta", "dxf/gamma/deep", "zeta"]
    for name in names:
        repo = DXF(dockyard.host, name, insecure=True)
        digest = repo.push_blob(data=iter([small]), digest=_sha256(small))
        repo.set_alias("v1", digest)
        repo.set_alias("v2", digest)
        repo.set_alias("v3", digest)

    base = DXFBase(dockyard.host, insecure=True)
    assert base.list_repos() == sorted(names)
    # Paginated through the `Link: <...>; rel="next"` header, one name at a time.
    assert base.list_repos(batch_size=1) == sorted(names)
    assert list(base.list_repos(batch_size=3, iterate=True)) == sorted(names)
    repo = DXF.from_base(base, "dxf/beta")
    assert repo.list_aliases(batch_size=1) == ["v1", "v2", "v3"]
