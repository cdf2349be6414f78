"""Hostile clients against a real `dockyard serve`: path traversal, upload-session hijacking,
oversize bodies and headers, a client that trickles its body, and the headers every
response carries.

Requests that must reach the server byte for byte (raw `..`, NUL, 100 KiB header lines) go
over a plain socket; the rest use requests. Every test also checks that the server survived
and logged no traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.integration.support.client import OCI_MANIFEST, RegistryClient, sha256
from tests.integration.support.server import DockyardServer

MARKER = f"pwned-{uuid.uuid4().hex[:8]}"
EMPTY = "sha256:" + hashlib.sha256(b"").hexdigest()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error_codes(self) -> list[str]:
        return [e["code"] for e in json.loads(self.body)["errors"]]


def raw(server: DockyardServer, request: bytes, timeout: float = 10.0) -> Answer:
    """Send bytes exactly as given; read one response."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        method = request.split(b" ", 1)[0].decode("latin-1")
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        body = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body)


def http_request(
    method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def snapshot(directory: Path, skip: set[Path]) -> dict[str, tuple[int, int]]:
    """Every path under `directory` (but `skip`), with its size and mtime."""
    found: dict[str, tuple[int, int]] = {}
    for dirpath, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if Path(dirpath, d) not in skip]
        for name in dirs + files:
            path = Path(dirpath, name)
            if path in skip:
                continue
            st = path.lstat()
            found[str(path)] = (st.st_size, st.st_mtime_ns)
    return found


def assert_no_traceback(server: DockyardServer) -> None:
    log = server.log()
    assert "Traceback" not in log, log[-5000:]
    errors = [line for line in log.splitlines() if '"level": "error"' in line]
    assert not errors, errors


@pytest.fixture
def server(tmp_path: Path, dockyard_factory: Callable[..., DockyardServer]) -> DockyardServer:
    # Things a traversal would reach first: siblings of the root, files one level up.
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "sentinel").write_text("must not change\n")
    (tmp_path / "metadata.db").write_text("not the registry's\n")
    return dockyard_factory(
        "root",
        env={"REGISTRY_STORAGE_DELETE_ENABLED": "true", "REGISTRY_HTTP_READTIMEOUT": "2s"},
    )


@pytest.fixture
def client(server: DockyardServer) -> Iterator[RegistryClient]:
    client = RegistryClient(server.url)
    yield client
    client.http.close()


# -- path traversal -----------------------------------------------------------------------


def traversal_requests(seed: str, manifest: bytes, upload: str) -> list[tuple[str, bytes]]:
    """(what, request bytes): `..` raw and encoded, absolute paths and NUL, in repository
    names, digests, upload ids and tags, against every route that takes them."""
    m = MARKER
    body = b"x" * 10
    digest = sha256(body)
    put = {"Content-Type": OCI_MANIFEST}
    cases: list[tuple[str, str, dict[str, str], bytes]] = [
        # repository names
        ("GET", "/v2/../../../etc/passwd/manifests/latest", {}, b""),
        ("GET", f"/v2/{seed}/../../../../etc/passwd/tags/list", {}, b""),
        ("PUT", f"/v2/../../{m}/manifests/latest", put, manifest),
        ("PUT", f"/v2/..%2f..%2f{m}/manifests/latest", put, manifest),
        ("PUT", f"/v2/%2e%2e/%2e%2e/{m}/manifests/latest", put, manifest),
        ("POST", f"/v2/%2e%2e%2f%2e%2e%2f{m}/blobs/uploads/?digest={digest}", {}, body),
        ("POST", f"/v2//tmp/{m}/blobs/uploads/?digest={digest}", {}, body),
        ("POST", f"/v2/%2ftmp%2f{m}/blobs/uploads/?digest={digest}", {}, body),
        ("POST", f"/v2/a%00{m}/blobs/uploads/?digest={digest}", {}, body),
        ("POST", f"/v2/a\0{m}/blobs/uploads/", {}, b""),
        ("POST", f"/v2/{seed}%2f..%2f..%2f{m}/blobs/uploads/", {}, b""),
        ("GET", "/v2/..%252f..%252fetc/tags/list", {}, b""),
        # digests
        ("GET", f"/v2/{seed}/blobs/sha256:../../../../../etc/passwd", {}, b""),
        ("GET", f"/v2/{seed}/blobs/sha256:..%2f..%2f..%2fmetadata.db", {}, b""),
        ("HEAD", f"/v2/{seed}/blobs/sha256:%2e%2e%2f%2e%2e%2f{m}", {}, b""),
        ("DELETE", f"/v2/{seed}/blobs/sha256:..%2f..%2f{m}", {}, b""),
        ("GET", f"/v2/{seed}/blobs/%2fetc%2fpasswd", {}, b""),
        ("GET", f"/v2/{seed}/blobs/sha256:{'0' * 63}%00", {}, b""),
        ("POST", f"/v2/{seed}/blobs/uploads/?digest=sha256:..%2f..%2f{m}", {}, body),
        ("POST", f"/v2/{seed}/blobs/uploads/?digest=sha256:/tmp/{m}", {}, body),
        ("PUT", f"/v2/{seed}/blobs/uploads/{upload}?digest=sha256:../../{m}", {}, body),
        ("POST", f"/v2/{seed}/blobs/uploads/?mount=sha256:../../{m}&from=../../etc", {}, b""),
        ("GET", f"/v2/{seed}/referrers/sha256:..%2f..%2f{m}", {}, b""),
        ("GET", f"/v2/{seed}/manifests/sha256:..%2f..%2f{m}", {}, b""),
        # upload session ids
        ("PATCH", f"/v2/{seed}/blobs/uploads/..%2f..%2f{m}", {}, body),
        ("PATCH", f"/v2/{seed}/blobs/uploads/..%2f..%2foutside%2fsentinel", {}, body),
        ("PATCH", f"/v2/{seed}/blobs/uploads/%2e%2e", {}, body),
        ("PATCH", f"/v2/{seed}/blobs/uploads/..", {}, body),
        ("PUT", f"/v2/{seed}/blobs/uploads/%2ftmp%2f{m}?digest={digest}", {}, body),
        ("PUT", f"/v2/{seed}/blobs/uploads/{upload}%00{m}?digest={digest}", {}, body),
        ("GET", f"/v2/{seed}/blobs/uploads/..%2f..%2fmetadata.db", {}, b""),
        ("DELETE", f"/v2/{seed}/blobs/uploads/..%2fuploads%2f{upload}", {}, b""),
        ("DELETE", f"/v2/{seed}/blobs/uploads/%2e%2e%2f%2e%2e%2fmetadata.db", {}, b""),
        # tags
        ("PUT", f"/v2/{seed}/manifests/..%2f..%2f{m}", put, manifest),
        ("PUT", f"/v2/{seed}/manifests/%2e%2e", put, manifest),
        ("PUT", f"/v2/{seed}/manifests/..", put, manifest),
        ("PUT", f"/v2/{seed}/manifests/%2ftmp%2f{m}", put, manifest),
        ("PUT", f"/v2/{seed}/manifests/v1%00{m}", put, manifest),
        ("PUT", f"/v2/{seed}/manifests/{sha256(manifest)}?tag=../../{m}", put, manifest),
        ("DELETE", f"/v2/{seed}/manifests/..%2f..%2fmetadata.db", {}, b""),
    ]
    return [
        (f"{method} {target!r}", http_request(method, target, headers, data))
        for method, target, headers, data in cases
    ]


def test_path_traversal_is_refused_and_nothing_is_written_outside_the_root(
    tmp_path: Path, server: DockyardServer, client: RegistryClient
) -> None:
    seed = "library/seed"
    pushed = client.push_image(seed, "latest")
    r = client.request("POST", f"/v2/{seed}/blobs/uploads/")
    assert r.status_code == 202
    upload = r.headers["Location"].rsplit("/", 1)[-1]
    client.request("PATCH", r.headers["Location"], data=b"abc")
    skip = {server.root, server.log_path}
    before = snapshot(tmp_path, skip)
    above = snapshot(tmp_path.parent, {tmp_path})

    refused = []
    for what, request in traversal_requests(seed, pushed.body, upload):
        answer = raw(server, request)
        assert 400 <= answer.status < 500, f"{what}: {answer.status} {answer.body[:300]!r}"
        if "docker-distribution-api-version" in answer.headers and not what.startswith("HEAD"):
            assert answer.error_codes(), what  # the spec's error body
        refused.append((what, answer.status))
    assert len(refused) == 40

    # Nothing changed beside the root or above it; nothing with the marker anywhere near.
    assert snapshot(tmp_path, skip) == before
    assert snapshot(tmp_path.parent, {tmp_path}) == above
    for place in (Path("/tmp"), Path("/etc"), tmp_path.parent, Path("/")):
        assert not list(place.glob(f"*{MARKER}*")), place
    # Inside the root: only the store's own layout, no symlink, nothing named by a request.
    for dirpath, dirs, files in os.walk(server.root):
        for name in dirs + files:
            path = Path(dirpath, name)
            assert MARKER not in name, path
            assert not path.is_symlink(), path
    assert {p.name for p in server.root.iterdir()} <= {
        "blobs",
        "uploads",
        "metadata.db",
        "metadata.db-wal",
        "metadata.db-shm",
    }
    # The registry still works, and what it held is intact.
    assert client.request("GET", f"/v2/{seed}/manifests/latest").content == pushed.body
    status = client.request("GET", f"/v2/{seed}/blobs/uploads/{upload}")
    assert status.status_code == 204 and status.headers["Range"] == "0-2"
    assert_no_traceback(server)


# -- upload sessions ----------------------------------------------------------------------


def test_upload_sessions_are_bound_to_their_repository(
    server: DockyardServer, client: RegistryClient
) -> None:
    r = client.request("POST", "/v2/team/a/blobs/uploads/")
    assert r.status_code == 202
    location = r.headers["Location"]
    upload = location.rsplit("/", 1)[-1]
    assert str(uuid.UUID(upload, version=4)) == upload  # random: nothing to guess
    assert client.request("PATCH", location, data=b"abc").status_code == 202
    data = b"abc" + b"def"
    hijacks = [
        ("GET", f"/v2/team/b/blobs/uploads/{upload}", b"", {}),
        ("PATCH", f"/v2/team/b/blobs/uploads/{upload}", b"def", {}),
        ("PATCH", f"/v2/team/b/blobs/uploads/{upload}", b"def", {"Content-Range": "3-5"}),
        ("PUT", f"/v2/team/b/blobs/uploads/{upload}?digest={sha256(data)}", b"def", {}),
        ("PUT", f"/v2/team/b/blobs/uploads/{upload}?digest={sha256(b'abc')}", b"", {}),
        ("DELETE", f"/v2/team/b/blobs/uploads/{upload}", b"", {}),
        ("PATCH", f"/v2/team/a/b/blobs/uploads/{upload}", b"def", {}),
        ("PATCH", f"/v2/team/blobs/uploads/{upload}", b"def", {}),
        ("PATCH", f"/v2/team/a/blobs/uploads/{upload.upper()}", b"def", {}),
    ]
    for method, target, body, headers in hijacks:
        answer = client.request(method, target, data=body, headers=headers)
        assert answer.status_code == 404, (method, target, answer.status_code, answer.text)
        assert answer.json()["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN", answer.text
    # Nothing reached the session or the other repository.
    status = client.request("GET", location)
    assert status.status_code == 204 and status.headers["Range"] == "0-2"
    assert client.request("HEAD", f"/v2/team/b/blobs/{sha256(data)}").status_code == 404
    # Its owner finishes it as if nothing happened.
    done = client.request("PUT", f"{location}?digest={sha256(data)}", data=b"def")
    assert done.status_code == 201, done.text
    assert client.request("GET", f"/v2/team/a/blobs/{sha256(data)}").content == data
    assert client.request("HEAD", f"/v2/team/b/blobs/{sha256(data)}").status_code == 404
    assert_no_traceback(server)


def test_an_empty_blob_pushed_in_two_requests(
    server: DockyardServer, client: RegistryClient
) -> None:
    # Regression: POST then PUT without a body left no staging file, and the PUT was a 500.
    r = client.request("POST", "/v2/empty/blobs/uploads/")
    done = client.request("PUT", f"{r.headers['Location']}?digest={EMPTY}")
    assert done.status_code == 201, done.text
    blob = client.request("GET", f"/v2/empty/blobs/{EMPTY}")
    assert blob.status_code == 200 and blob.content == b""
    assert_no_traceback(server)


# -- oversize bodies and headers ------------------------------------------------------------


def test_a_manifest_over_the_limit_is_413(server: DockyardServer, client: RegistryClient) -> None:
    limit = 4 * 1024 * 1024
    big = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "x", "digest": EMPTY, "size": 0},
            "annotations": {"pad": "x" * limit},
        }
    ).encode()
    assert len(big) > limit
    headers = {"Content-Type": OCI_MANIFEST}
    declared = client.request("PUT", "/v2/big/manifests/v1", data=big, headers=headers)
    assert declared.status_code == 413, declared.text
    assert declared.json()["errors"][0]["code"] == "MANIFEST_INVALID"
    # Without Content-Length (chunked): counted as it arrives.
    streamed = client.request(
        "PUT",
        "/v2/big/manifests/v1",
        data=(big[i : i + 65536] for i in range(0, len(big), 65536)),
        headers=headers,
    )
    assert streamed.status_code == 413, streamed.text
    # A Content-Length that claims too much is refused before any byte is read.
    claimed = raw(
        server,
        b"PUT /v2/big/manifests/v1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: " + OCI_MANIFEST.encode() + b"\r\nContent-Length: 999999999999\r\n\r\n",
    )
    assert claimed.status == 413
    assert client.request("GET", "/v2/big/manifests/v1").status_code == 404
    assert client.request("GET", "/v2/").status_code == 200
    assert_no_traceback(server)


@pytest.mark.parametrize(
    ("what", "request_bytes"),
    [
        (
            "a 100 KiB header line",
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100 * 1024 + b"\r\n\r\n",
        ),
        (
            "a 100 KiB Authorization header",
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic "
            + b"QQ" * 50 * 1024
            + b"\r\n\r\n",
        ),
        (
            "500 headers",
            b"GET /v2/ HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H-%d: v\r\n" % i for i in range(500))
            + b"\r\n",
        ),
        ("a 100 KiB request line", b"GET /v2/" + b"a" * 100 * 1024 + b" HTTP/1.1\r\n\r\n"),
        ("a NUL in the path", b"GET /v2/a\0b/tags/list HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64),
    ],
)
def test_oversize_and_malformed_requests_are_4xx_and_the_server_lives_on(
    server: DockyardServer, what: str, request_bytes: bytes
) -> None:
    for _ in range(3):
        answer = raw(server, request_bytes)
        assert 400 <= answer.status < 500, (what, answer.status, answer.body[:200])
    assert requests.get(f"{server.url}/v2/", timeout=5).status_code == 200
    # Logged as one line each, without a traceback (and without the header's content).
    assert_no_traceback(server)
    assert "QQQQ" not in server.log()
    assert server.proc is not None and server.proc.poll() is None


# -- slow clients ---------------------------------------------------------------------------


def _trickle(
    server: DockyardServer, location: str, chunks: int, interval: float, result: list[object]
) -> None:
    """PATCH a body of 1000 bytes declared up front, `chunks` bytes of it `interval` apart,
    then go quiet; record the answer and when it came."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
        )
        for i in range(chunks):
            if i:
                time.sleep(interval)
            sock.sendall(b"z")
        quiet = time.monotonic()  # the last byte is out: the server's idle clock starts
        response = http.client.HTTPResponse(sock)
        response.begin()
        result.extend([response.status, response.read(), time.monotonic() - quiet])


def test_a_client_trickling_its_body_does_not_block_others_and_is_cut_off(
    server: DockyardServer, client: RegistryClient
) -> None:
    r = client.request("POST", "/v2/slow/blobs/uploads/")
    location = r.headers["Location"]
    result: list[object] = []
    slow = threading.Thread(target=_trickle, args=(server, location, 6, 0.5, result))
    slow.start()
    try:
        # While it trickles (2.5 s), everyone else is served at once.
        latencies = []
        deadline = time.monotonic() + 2.5
        n = 0
        while time.monotonic() < deadline and n < 200:
            n += 1
            started = time.monotonic()
            assert client.request("GET", "/v2/", timeout=5).status_code == 200
            pushed = client.push_blob("fast/one", f"blob {n}".encode())
            assert client.request("HEAD", f"/v2/fast/one/blobs/{pushed}").status_code == 200
            latencies.append(time.monotonic() - started)
        assert n >= 10 and max(latencies) < 1.0, latencies
    finally:
        slow.join(timeout=20)
    assert not slow.is_alive()
    # Then it went quiet: after http.readtimeout (2 s here) the server gave up on the body.
    status, body, waited = result
    assert status == 400, body
    assert isinstance(body, bytes) and b"stalled" in body
    assert isinstance(waited, float) and 1.5 < waited < 6, waited
    # What arrived stays: the upload resumes from there.
    after = client.request("GET", location)
    assert after.status_code == 204 and after.headers["Range"] == "0-5", after.headers
    assert_no_traceback(server)


def test_half_sent_requests_do_not_block_others(server: DockyardServer) -> None:
    """Slow headers (slowloris): 50 connections each holding an unfinished request."""
    held = []
    try:
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(sock)
        started = time.monotonic()
        for _ in range(20):
            assert requests.get(f"{server.url}/v2/", timeout=5).status_code == 200
        assert time.monotonic() - started < 5
    finally:
        for sock in held:
            sock.close()
    assert_no_traceback(server)


def _send_in_two_steps(server: DockyardServer, head: bytes, body: bytes) -> socket.socket:
    """Headers first (so the handler starts reading), the body a moment later."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(head)
    time.sleep(0.3)
    sock.sendall(body)
    return sock


def test_bodies_are_taken_as_sent(server: DockyardServer, client: RegistryClient) -> None:
    """No Content-Encoding decoding, as Distribution: no decompression bomb, and no request
    left waiting forever on a body that failed to decode after its handler started."""
    location = client.request("POST", "/v2/enc/blobs/uploads/").headers["Location"]
    compressed = gzip.compress(b"a" * 10_000_000)
    r = client.request("PATCH", location, data=compressed, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 202 and r.headers["Range"] == f"0-{len(compressed) - 1}", r.text
    head = (
        b"PUT /v2/enc/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Encoding: deflate\r\n"
        b"Content-Type: " + OCI_MANIFEST.encode() + b"\r\nContent-Length: 10\r\n\r\n"
    )
    started = time.monotonic()
    with _send_in_two_steps(server, head, b"\xeb" * 10) as sock:
        response = http.client.HTTPResponse(sock, method="PUT")
        response.begin()
        assert response.status == 400
        assert json.loads(response.read())["errors"][0]["code"] == "MANIFEST_INVALID"
    assert time.monotonic() - started < 5
    assert_no_traceback(server)


def test_a_broken_chunked_upload_is_cut_off_after_the_read_timeout(
    server: DockyardServer, client: RegistryClient
) -> None:
    location = client.request("POST", "/v2/chunks/blobs/uploads/").headers["Location"]
    head = f"PATCH {location} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    started = time.monotonic()
    with _send_in_two_steps(server, head.encode(), b"zz\r\nabc\r\n0\r\n\r\n") as sock:
        response = http.client.HTTPResponse(sock, method="PATCH")
        response.begin()
        assert response.status == 400
        assert b"stalled" in response.read()
    assert time.monotonic() - started < 6  # http.readtimeout is 2s here
    assert client.request("GET", location).status_code == 204
    assert_no_traceback(server)


def test_clients_that_hang_up_mid_body_leave_no_traceback(
    server: DockyardServer, client: RegistryClient
) -> None:
    location = client.request("POST", "/v2/gone/blobs/uploads/").headers["Location"]
    for head in (
        f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
        f"PUT {location}?digest={EMPTY} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
        "POST /v2/gone/blobs/uploads/?digest=" + EMPTY + " HTTP/1.1\r\nHost: x\r\n"
        "Content-Length: 1000\r\n\r\n",
        "PUT /v2/gone/manifests/v1 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
    ):
        _send_in_two_steps(server, head.encode(), b"x" * 10).close()
    time.sleep(0.5)
    assert client.request("GET", "/v2/").status_code == 200
    assert client.request("GET", location).status_code in (204, 404)
    assert_no_traceback(server)


# -- headers --------------------------------------------------------------------------------


def test_nosniff_on_every_kind_of_response(server: DockyardServer, client: RegistryClient) -> None:
    pushed = client.push_image("sniff/app", "v1")
    answers = [
        client.request("GET", "/v2/"),
        client.request("GET", f"/v2/sniff/app/manifests/{pushed.digest}"),
        client.request("GET", f"/v2/sniff/app/blobs/{sha256(pushed.layers[0])}"),
        client.request("GET", "/v2/sniff/app/tags/list"),
        client.request("GET", "/v2/nothing/manifests/latest"),  # 404 error body
        client.request("PUT", "/v2/BAD/manifests/x", data=b"{}"),  # 400 error body
        client.request("GET", "/healthz"),
        client.request("GET", "/metrics"),
        client.request("GET", "/no/such/path"),
    ]
    for answer in answers:
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", (
            answer.request.method,
            answer.url,
            answer.status_code,
        )
    assert_no_traceback(server)
