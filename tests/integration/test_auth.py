"""Authentication and authorization on every route, with real clients (security issue)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.support.client import RegistryClient, error_codes, sha256
from tests.integration.support.containerd import Containerd
from tests.integration.support.cri import pull_image
from tests.integration.support.images import build_image, run
from tests.integration.support.server import DockyardServer

USERS = {"alice": "alice-secret-1", "bob": "bob-secret-2", "robot": "robot-secret-3"}

CONFIG = """\
auth:
  htpasswd:
    realm: Dockyard test
    path: {htpasswd}
{tokenserver}
  groups:
    ci: [robot]
  access:
    - repositories: "public/*"
      pull: [anonymous]
      push: ["@ci"]
    - repositories: "team/*"
      pull: [authenticated]
      push: [alice, "@ci"]
      delete: [alice]
    - repositories: "*"
      pull: [authenticated]
      push: [alice]
storage:
  delete:
    enabled: true
"""


def _make_users(path: Path) -> None:
    for name, password in USERS.items():
        result = subprocess.run(
            [sys.executable, "-m", "dockyard", "users", "add", name, "--file", str(path)],
            env={"DOCKYARD_PASSWORD": password, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr


def _start(
    tmp_path: Path,
    factory: Callable[..., DockyardServer],
    tokens: bool,
    env: dict[str, str] | None = None,
) -> DockyardServer:
    htpasswd = tmp_path / "htpasswd"
    _make_users(htpasswd)
    config = tmp_path / "auth.yml"
    tokenserver = "  tokenserver:\n    enabled: true\n    expiration: 2m" if tokens else ""
    config.write_text(CONFIG.format(htpasswd=htpasswd, tokenserver=tokenserver))
    return factory(config=config, env=env or {})


@pytest.fixture
def basic(tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]) -> DockyardServer:
    return _start(tmp_path, dockyard_factory, tokens=False)


@pytest.fixture
def token(tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]) -> DockyardServer:
    return _start(tmp_path, dockyard_factory, tokens=True)


def _client(
    server: DockyardServer, user: str | None, password: str | None = None
) -> RegistryClient:
    client = RegistryClient(server.url)
    if user is not None:
        client.http.auth = (user, password if password is not None else USERS[user])
    return client


@pytest.fixture
def seeded(basic: DockyardServer) -> Iterator[DockyardServer]:
    alice = _client(basic, "alice")
    alice.push_image("team/app", "v1")
    _client(basic, "robot").push_image("public/tool", "v1")
    alice.push_image("other/thing", "v1")
    yield basic


def test_every_route_with_anonymous_valid_wrong_and_forbidden_callers(
    seeded: DockyardServer,
) -> None:
    server = seeded
    owner = _client(server, "alice")
    image = owner.request("GET", "/v2/team/app/manifests/v1")
    digest = image.headers["Docker-Content-Digest"]
    config_digest = json.loads(image.content)["config"]["digest"]
    upload = owner.request("POST", "/v2/team/app/blobs/uploads/").headers["Location"]
    # (method, path, body, action) for every route of a repository that needs access.
    routes = [
        ("GET", "/v2/team/app/manifests/v1", None, "pull"),
        ("HEAD", f"/v2/team/app/manifests/{digest}", None, "pull"),
        ("GET", f"/v2/team/app/blobs/{config_digest}", None, "pull"),
        ("HEAD", f"/v2/team/app/blobs/{config_digest}", None, "pull"),
        ("GET", "/v2/team/app/tags/list", None, "pull"),
        ("GET", f"/v2/team/app/referrers/{digest}", None, "pull"),
        ("PUT", "/v2/team/app/manifests/v2", image.content, "push"),
        ("POST", "/v2/team/app/blobs/uploads/", None, "push"),
        ("PATCH", upload, b"abc", "push"),
        ("GET", upload, None, "push"),
        ("DELETE", f"/v2/team/app/blobs/{config_digest}", None, "delete"),
        ("DELETE", "/v2/team/app/manifests/v1", None, "delete"),
    ]
    callers = {
        "anonymous": _client(server, None),
        "wrong password": _client(server, "alice", "not-the-password"),
        "unknown user": _client(server, "mallory", "whatever"),
        "bob": _client(server, "bob"),  # may pull team/*, not push or delete
    }
    for method, path, body, action in routes:
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"} if body else {}
        for who in ("anonymous", "wrong password", "unknown user"):
            r = callers[who].request(method, path, data=body, headers=headers)
            assert r.status_code == 401, (who, method, path)
            assert r.headers["WWW-Authenticate"] == 'Basic realm="Dockyard test"'
            if method != "HEAD":
                assert error_codes(r) == ["UNAUTHORIZED"]
        r = callers["bob"].request(method, path, data=body, headers=headers)
        if action == "pull":
            assert r.status_code == 200, (method, path, r.text)
        else:
            assert r.status_code == 403, (method, path)
            assert error_codes(r) == ["DENIED"]
    # The owner can do all of it (deletes last).
    for method, path, body, _action in routes:
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"} if body else {}
        r = owner.request(method, path, data=body, headers=headers)
        assert r.status_code < 400, (method, path, r.status_code, r.text)


def test_anonymous_pull_where_allowed_and_catalog_filtering(seeded: DockyardServer) -> None:
    anonymous = _client(seeded, None)
    # The ping challenges anonymous callers (so clients learn to authenticate) ...
    assert anonymous.request("GET", "/v2/").status_code == 401
    # ... but public content answers them.
    assert anonymous.request("GET", "/v2/public/tool/manifests/v1").status_code == 200
    assert anonymous.request("GET", "/v2/team/app/manifests/v1").status_code == 401
    r = anonymous.request("GET", "/v2/_catalog")
    assert r.json()["repositories"] == ["public/tool"]
    r = _client(seeded, "bob").request("GET", "/v2/_catalog")
    assert r.json()["repositories"] == ["other/thing", "public/tool", "team/app"]
    # robot (group ci) may push public/*, and nobody else may.
    assert _client(seeded, "robot").push_image("public/tool", "v2")
    r = _client(seeded, "bob").request("POST", "/v2/public/tool/blobs/uploads/")
    assert r.status_code == 403
    # Wrong credentials on /v2/ are refused even where anonymous access exists.
    assert _client(seeded, "alice", "nope").request("GET", "/v2/").status_code == 401


def test_upload_sessions_cannot_be_hijacked(seeded: DockyardServer) -> None:
    alice = _client(seeded, "alice")
    robot = _client(seeded, "robot")  # may also push team/*
    location = alice.request("POST", "/v2/team/app/blobs/uploads/").headers["Location"]
    assert alice.request("PATCH", location, data=b"alice's bytes").status_code == 202
    for method in ("GET", "PATCH", "PUT", "DELETE"):
        r = robot.request(method, location, data=b"evil", params={"digest": sha256(b"evil")})
        assert r.status_code == 404, method
        assert error_codes(r) == ["BLOB_UPLOAD_UNKNOWN"]
    r = alice.request("PUT", location, params={"digest": sha256(b"alice's bytes")})
    assert r.status_code == 201


def test_cross_repository_mount_needs_read_access(seeded: DockyardServer) -> None:
    bob_readable = _client(seeded, "alice")
    image = bob_readable.request("GET", "/v2/team/app/manifests/v1")
    layer = json.loads(image.content)["layers"][0]["digest"]
    # robot may push public/*, and may pull team/* (authenticated): the mount works.
    robot = _client(seeded, "robot")
    r = robot.request(
        "POST", "/v2/public/tool/blobs/uploads/", params={"mount": layer, "from": "team/app"}
    )
    assert r.status_code == 201


def test_mount_challenge_names_the_source_and_one_token_covers_both(
    token: DockyardServer,
) -> None:
    alice = _client(token, "alice")
    layer = alice.push_blob("team/app", b"mounted layer bytes")
    path = "/v2/public/tool/blobs/uploads/"
    query = {"mount": layer, "from": "team/app"}
    r = _client(token, None).request("POST", path, params=query)
    assert r.status_code == 401
    scope = "repository:public/tool:pull,push repository:team/app:pull"
    assert f'scope="{scope}"' in r.headers["WWW-Authenticate"]

    def bearer(user: str, scope: str) -> RegistryClient:
        r = requests.get(
            f"{token.url}/dockyard/auth/token",
            params={"service": "dockyard", "scope": scope},
            auth=(user, USERS[user]),
            timeout=10,
        )
        assert r.status_code == 200, r.text
        client = RegistryClient(token.url)
        client.http.headers["Authorization"] = f"Bearer {r.json()['token']}"
        return client

    # The token the challenge asked for mounts the blob.
    r = bearer("robot", scope).request("POST", path, params=query)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == layer
    # A token for the target alone still uploads: the mount becomes a new session.
    r = bearer("robot", "repository:public/other:pull,push").request(
        "POST", "/v2/public/other/blobs/uploads/", params=query
    )
    assert r.status_code == 202 and r.headers["Location"], r.text
    # A source that is not a repository name is left out of the challenge.
    r = _client(token, None).request("POST", path, params={"mount": layer, "from": "Bad//Name"})
    assert r.status_code == 401
    assert 'scope="repository:public/tool:pull,push"' in r.headers["WWW-Authenticate"]


def test_credentials_never_logged(seeded: DockyardServer) -> None:
    _client(seeded, "alice").request("GET", "/v2/team/app/tags/list")
    _client(seeded, "alice", "wrong-password-xyz").request("GET", "/v2/team/app/tags/list")
    log = seeded.log()
    for secret in [*USERS.values(), "wrong-password-xyz"]:
        assert secret not in log
    assert base64.b64encode(b"alice:alice-secret-1").decode() not in log


def test_token_flow(token: DockyardServer) -> None:
    anonymous = _client(token, None)
    r = anonymous.request("GET", "/v2/team/app/manifests/v1")
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge.startswith(f'Bearer realm="{token.url}/dockyard/auth/token"')
    assert 'service="dockyard"' in challenge
    assert 'scope="repository:team/app:pull"' in challenge
    # Get a pull+push token as alice, push with it.
    r = requests.get(
        f"{token.url}/dockyard/auth/token",
        params={"service": "dockyard", "scope": "repository:team/app:pull,push"},
        auth=("alice", USERS["alice"]),
        timeout=10,
    )
    assert r.status_code == 200
    body = r.json()
    assert body["expires_in"] == 120
    bearer = RegistryClient(token.url)
    bearer.http.headers["Authorization"] = f"Bearer {body['token']}"
    image = bearer.push_image("team/app", "v1")
    # bob asks for push but only gets pull: the token says so, the registry enforces it.
    r = requests.get(
        f"{token.url}/dockyard/auth/token",
        params={"service": "dockyard", "scope": "repository:team/app:pull,push"},
        auth=("bob", USERS["bob"]),
        timeout=10,
    )
    bob = RegistryClient(token.url)
    bob.http.headers["Authorization"] = f"Bearer {r.json()['token']}"
    assert bob.request("GET", f"/v2/team/app/manifests/{image.digest}").status_code == 200
    r = bob.request("POST", "/v2/team/app/blobs/uploads/")
    assert r.status_code == 401
    assert 'scope="repository:team/app:pull,push"' in r.headers["WWW-Authenticate"]
    # Wrong password at the token endpoint; a forged token.
    r = requests.get(
        f"{token.url}/dockyard/auth/token",
        params={"scope": "repository:team/app:pull"},
        auth=("alice", "wrong"),
        timeout=10,
    )
    assert r.status_code == 401
    forged = RegistryClient(token.url)
    forged.http.headers["Authorization"] = "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9."
    assert forged.request("GET", "/v2/team/app/tags/list").status_code == 401
    # The OAuth2 password form (docker login's refresh path).
    r = requests.post(
        f"{token.url}/dockyard/auth/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": USERS["alice"],
            "service": "dockyard",
            "scope": "repository:team/app:pull",
        },
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["access_token"]


def test_a_token_form_that_stalls_is_cut_off(
    tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    server = _start(
        tmp_path, dockyard_factory, tokens=True, env={"REGISTRY_HTTP_READTIMEOUT": "2s"}
    )
    form = b"grant_type=password&username=alice&password=" + USERS["alice"].encode()
    head = (
        b"POST /dockyard/auth/token HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(form)).encode() + b"\r\n\r\n"
    )
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(head + form[:10])  # and then nothing more
        response = http.client.HTTPResponse(sock, method="POST")
        response.begin()
        body = json.loads(response.read())
    waited = time.monotonic() - started
    assert response.status == 400, body
    assert "stalled" in body["errors"][0]["message"]
    assert 1.5 < waited < 8, waited
    # The endpoint still works for a client that sends its form.
    r = requests.post(
        f"{server.url}/dockyard/auth/token",
        data={"grant_type": "password", "username": "alice", "password": USERS["alice"]},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["access_token"]
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_skopeo_and_podman_with_credentials(
    mode: str, tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    server = _start(tmp_path, dockyard_factory, tokens=mode == "token")
    layout = tmp_path / "oci"
    build_image(layout, "v1")
    dest = f"docker://{server.host}/team/app:v1"
    result = subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", dest],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0  # anonymous push refused
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"alice:{USERS['alice']}",
        f"oci:{layout}:v1",
        dest,
    )
    result = subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"bob:{USERS['bob']}",
            f"oci:{layout}:v1",
            f"docker://{server.host}/team/app:v2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0  # bob may not push
    run("skopeo", "inspect", "--tls-verify=false", "--creds", f"bob:{USERS['bob']}", dest)
    store = tmp_path / "podman"
    auth_file = tmp_path / "auth.json"
    podman = [
        "podman",
        "--root",
        str(store / "root"),
        "--runroot",
        f"/tmp/pa-{server.port}",
        "--storage-driver",
        "vfs",
    ]
    try:
        run(
            *podman,
            "login",
            "--tls-verify=false",
            "--authfile",
            str(auth_file),
            "-u",
            "bob",
            "-p",
            USERS["bob"],
            server.host,
        )
        run(
            *podman,
            "pull",
            "--tls-verify=false",
            "--authfile",
            str(auth_file),
            f"{server.host}/team/app:v1",
            timeout=180,
        )
    finally:
        subprocess.run(["rm", "-rf", f"/tmp/pa-{server.port}"], check=False)


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_containerd_with_credentials_in_config_toml(
    mode: str, tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]
) -> None:
    server = _start(tmp_path, dockyard_factory, tokens=mode == "token")
    layout = tmp_path / "oci"
    build_image(layout, "v1")
    run(
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        f"alice:{USERS['alice']}",
        f"oci:{layout}:v1",
        f"docker://{server.host}/team/app:v1",
    )
    containerd = Containerd(tmp_path / "ctd")
    containerd.write_config()
    containerd.write_hosts("docker.io", [f"http://{server.host}/v2"])
    # As K3s writes registries.yaml `configs."HOST".auth` into containerd's config.toml.
    with containerd.config_path.open("a") as f:
        f.write(
            f'\n[plugins."io.containerd.grpc.v1.cri".registry.configs."{server.host}".auth]\n'
            f'  username = "bob"\n  password = "{USERS["bob"]}"\n'
        )
    containerd.start()
    try:
        image_id = pull_image(containerd.socket, "docker.io/team/app:v1")
        assert image_id.startswith("sha256:")
    finally:
        containerd.stop()
    # containerd was challenged (401) and came back with bob's credentials.
    lines = [json.loads(line) for line in server.log().splitlines() if '"dockyard.access"' in line]
    manifest_requests = [
        line["status"] for line in lines if "/v2/team/app/manifests/v1" in line["path"]
    ]
    assert 401 in manifest_requests
    assert 200 in manifest_requests
    if mode == "token":
        token_requests = [line for line in lines if line["path"].startswith("/dockyard/auth/token")]
        assert token_requests and all(line["status"] == 200 for line in token_requests)
