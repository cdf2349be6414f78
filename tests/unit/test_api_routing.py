"""`/v2/...` paths to resources, names and arguments."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from dockyard.api.routing import Resource, Route, match, route_of

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v2/", Route(Resource.BASE)),
        ("/v2", Route(Resource.BASE)),
        ("/v2/_catalog", Route(Resource.CATALOG)),
        ("/v2/a/b/manifests/v1", Route(Resource.MANIFEST, "a/b", "v1")),
        # The last marker decides: a repository may be called "manifests".
        ("/v2/x/manifests/manifests/v1", Route(Resource.MANIFEST, "x/manifests", "v1")),
        (f"/v2/a/blobs/{DIGEST}", Route(Resource.BLOB, "a", DIGEST)),
        ("/v2/a/blobs/uploads/", Route(Resource.UPLOADS, "a")),
        ("/v2/a/blobs/uploads/u-1", Route(Resource.UPLOAD, "a", "u-1")),
        ("/v2/a/b/tags/list", Route(Resource.TAGS, "a/b")),
        (f"/v2/a/referrers/{DIGEST}", Route(Resource.REFERRERS, "a", DIGEST)),
        ("/v2/a/unknown", None),
    ],
)
def test_route_of_a_request(path: str, route: Route | None) -> None:
    assert route_of(make_mocked_request("GET", path)) == route
    # Asked again (the answer for a short path is remembered): the same answer.
    assert route_of(make_mocked_request("HEAD", path + "?ns=docker.io")) == route


def test_a_long_path_is_routed_like_any_other() -> None:
    name = "/".join(["component"] * 60)  # beyond the length whose route is remembered
    path = f"/v2/{name}/manifests/v1"
    assert len(path) > 512
    assert route_of(make_mocked_request("GET", path)) == Route(Resource.MANIFEST, name, "v1")
    assert match(path[4:]) == Route(Resource.MANIFEST, name, "v1")
