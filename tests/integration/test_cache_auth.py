"""The pull-through cache against upstreams that require credentials.

Two kinds of Distribution 2.8 upstreams, on loopback:
- HTTP Basic (`auth.htpasswd`, a bcrypt file made by `htpasswd -Bbn`), with the password
  given to Dockyard inline, in a file (`passwordfile`) and in the environment (`passwordenv`);
- Bearer tokens (`auth.token`) issued by our own token server (support/tokenserver.py),
  whose RS256 JWTs Distribution verifies against the signing certificate.
Dockyard must pull through both with its configured credentials, cache Bearer tokens
(one token request per repository scope, not one per upstream request), and fail cleanly,
caching nothing, when the credentials are wrong.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.support.images import run
from tests.integration.support.server import DistributionServer, DockyardServer
from tests.integration.support.tokenserver import TokenServer
from tests.integration.support.upstreams import (
    RegistrySession,
    cache_config,
    count_requests,
    pull_image,
    unique,
    upstream_requests,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

StartCache = Callable[..., DockyardServer]


@pytest.fixture
def start_cache(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> Iterator[StartCache]:
    """Start a Dockyard whose config lists `upstreams` (dicts as in config.yml)."""
    count = 0

    def start(upstreams: list[dict[str, Any]], env: dict[str, str] | None = None) -> DockyardServer:
        nonlocal count
        count += 1
        config = cache_config(tmp_path / f"dockyard-{count}.yml", upstreams)
        return dockyard_factory(f"dockyard-{count}", config=config, env=env or {})

    yield start


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[TokenServer]:
    server = TokenServer(
        tmp_path / "tokens", users={"puller": "pull-secret", "pusher": "push-secret"}
    ).start()
    try:
        yield server
    finally:
        server.stop()


def cached_blob_files(dockyard: DockyardServer, digest: str) -> list[Path]:
    hexdigest = digest.split(":", 1)[1]
    blobs = dockyard.root / "blobs"
    if not blobs.exists():
        return []
    return [p for p in blobs.rglob("*") if p.is_file() and hexdigest in str(p)]


def assert_refused(response: requests.Response) -> None:
    """An OCI error naming an authorization or upstream failure, never content."""
    assert 400 <= response.status_code < 600, (response.status_code, response.text)
    codes = [e["code"] for e in response.json()["errors"]]
    assert set(codes) & {"UNAUTHORIZED", "DENIED", "UPSTREAM_ERROR"}, codes


# --- HTTP Basic (htpasswd) ---------------------------------------------------------------


def test_basic_auth_upstream_with_password_passwordfile_and_passwordenv(
    tmp_path: Path, start_cache: StartCache, distribution_factory: Callable[..., Any]
) -> None:
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(run("htpasswd", "-Bbn", "user", "s3cret", timeout=30))
    dist: DistributionServer = distribution_factory(
        "basic", extra_config=f"auth: {{htpasswd: {{realm: r, path: {htpasswd}}}}}\n"
    )
    anonymous = requests.get(f"{dist.url}/v2/", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].lower().startswith("basic")

    name = unique("private")
    with RegistrySession(dist.url, ("user", "s3cret")) as session:
        images = {
            registry: session.push_image(f"{registry.split('.')[0]}/{name}", "v1")
            for registry in ("docker.io", "ghcr.io", "quay.io", "registry.example.com")
        }
    password_file = tmp_path / "upstream-password"
    password_file.write_text("s3cret\n")
    dockyard = start_cache(
        [
            {"name": "docker.io", "url": dist.url, "username": "user", "password": "s3cret"},
            {
                "name": "ghcr.io",
                "url": dist.url,
                "username": "user",
                "passwordfile": str(password_file),
            },
            {
                "name": "quay.io",
                "url": dist.url,
                "username": "user",
                "passwordenv": "DOCKYARD_TEST_QUAY_PASSWORD",
            },
            {
                "name": "registry.example.com",
                "url": dist.url,
                "username": "user",
                "password": "wr0ng-pa55",
            },
        ],
        env={"DOCKYARD_TEST_QUAY_PASSWORD": "s3cret"},
    )

    for registry in ("docker.io", "ghcr.io", "quay.io"):
        image = images[registry]
        pulled = pull_image(dockyard.url, image.repo, "v1", ns=registry)
        assert pulled.status == 200, (registry, pulled.manifest)
        assert pulled.digest == image.digest
        assert pulled.blobs == image.blobs
        # The upstream served every blob once, to an authorized request.
        for digest in image.blob_digests:
            path = f"/v2/{image.repo}/blobs/{digest}"
            assert wait_for(lambda p=path: count_requests(dist.log(), "GET", p, 200) == 1), path
        # The prefix form reaches the same cache.
        again = pull_image(dockyard.url, f"{registry}/{image.repo}", "v1")
        assert again.status == 200 and again.blobs == image.blobs
    assert "s3cret" not in dockyard.log()

    # Wrong credentials: an error, and nothing cached.
    wrong = images["registry.example.com"]
    for path in (
        f"/v2/{wrong.repo}/manifests/v1",
        f"/v2/{wrong.repo}/blobs/{wrong.layer_digests[0]}",
    ):
        with requests.Session() as http:
            response = http.get(
                f"{dockyard.url}{path}", params={"ns": "registry.example.com"}, timeout=30
            )
        assert_refused(response)
    assert not cached_blob_files(dockyard, wrong.layer_digests[0])
    assert "wr0ng-pa55" not in dockyard.log()


# --- Bearer tokens ---------------------------------------------------------------------


def test_token_auth_upstream_pulls_with_cached_tokens(
    tmp_path: Path,
    start_cache: StartCache,
    distribution_factory: Callable[..., Any],
    token_server: TokenServer,
) -> None:
    dist: DistributionServer = distribution_factory(
        "token", extra_config=token_server.distribution_config()
    )
    challenge = requests.get(f"{dist.url}/v2/", timeout=10)
    assert challenge.status_code == 401
    assert f'realm="{token_server.realm}"' in challenge.headers["WWW-Authenticate"]

    name = unique("tok")
    with RegistrySession(dist.url, ("pusher", "push-secret")) as session:
        one = [session.push_image(f"team/{name}-one", tag) for tag in ("a", "b", "c")]
        two = [session.push_image(f"team/{name}-two", "a")]
    # Our own pushes got tokens too; from here on only Dockyard asks.
    token_server.clear()
    before = len(upstream_requests(dist.log()))

    password_file = tmp_path / "ghcr-password"
    password_file.write_text("pull-secret")
    dockyard = start_cache(
        [
            {
                "name": "ghcr.io",
                "url": dist.url,
                "username": "puller",
                "passwordfile": str(password_file),
                "tagttl": "1s",
            }
        ]
    )
    for image in [*one, *two]:
        assert image.tag is not None
        pulled = pull_image(dockyard.url, image.repo, image.tag, ns="ghcr.io")
        assert pulled.status == 200, pulled.manifest
        assert pulled.digest == image.digest and pulled.blobs == image.blobs
    # Past tagttl the tags are revalidated upstream, still with the cached tokens.
    time.sleep(1.2)
    for image in [*one, *two]:
        assert image.tag is not None
        assert pull_image(dockyard.url, image.repo, image.tag, ns="ghcr.io").digest == image.digest

    requests_made = upstream_requests(dist.log())[before:]
    authorized = [r for r in requests_made if r.status == 200]
    challenged = [r for r in requests_made if r.status == 401]
    # 4 manifests + 8 blobs + 4 revalidations at least, all with a valid token.
    assert len(authorized) >= 16, requests_made
    tokens = token_server.token_requests()
    assert all(t.granted and t.account == "puller" for t in tokens), tokens
    assert all(t.service == token_server.service for t in tokens), tokens
    per_scope = Counter(scope for t in tokens for scope in t.scopes)
    assert per_scope == {
        f"repository:team/{name}-one:pull": 1,
        f"repository:team/{name}-two:pull": 1,
    }, tokens
    # One challenge per repository: every later request carried the cached token.
    assert len(challenged) == 2, challenged
    assert "pull-secret" not in dockyard.log()


def test_token_auth_upstream_with_wrong_password_caches_nothing(
    tmp_path: Path,
    start_cache: StartCache,
    distribution_factory: Callable[..., Any],
    token_server: TokenServer,
) -> None:
    dist: DistributionServer = distribution_factory(
        "token", extra_config=token_server.distribution_config()
    )
    name = unique("tok")
    with RegistrySession(dist.url, ("pusher", "push-secret")) as session:
        image = session.push_image(f"team/{name}", "v1")
    token_server.clear()
    before = len(upstream_requests(dist.log()))
    dockyard = start_cache(
        [{"name": "ghcr.io", "url": dist.url, "username": "puller", "password": "nope"}]
    )
    for path in (
        f"/v2/{image.repo}/manifests/v1",
        f"/v2/{image.repo}/blobs/{image.layer_digests[0]}",
    ):
        with requests.Session() as http:
            response = http.get(f"{dockyard.url}{path}", params={"ns": "ghcr.io"}, timeout=30)
        assert_refused(response)
    tokens = token_server.token_requests()
    assert tokens and not any(t.granted for t in tokens), tokens
    assert {t.account for t in tokens} == {None}
    assert not cached_blob_files(dockyard, image.layer_digests[0])
    # Nothing but challenges came back from the upstream.
    statuses = {r.status for r in upstream_requests(dist.log())[before:]}
    assert statuses == {401}, upstream_requests(dist.log())[before:]
