"""Upstream registries for pull-through cache tests, and the tools to watch them.

- `cache_config` writes a Dockyard config.yml whose `proxy.upstreams` name them.
- `push_image` / `pull_image` speak the distribution API with `requests` (Basic or Bearer
  auth when the registry asks for it), so a test sees every byte it pushed and pulled.
- `upstream_requests` reads Distribution's access log: which requests reached the upstream.
- `CorruptingProxy` stands between Dockyard and a Distribution and flips bytes in blob
  bodies while its `corrupt` switch is on; it can also send bodies slowly, or answer every
  request with an error status (`fail_status`).
- `HangingServer` accepts TCP connections and never answers (bounded in time and count).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

from tests.integration.support.images import run
from tests.integration.support.server import free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

HTTP_TIMEOUT = 30.0


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def unique(prefix: str = "img") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- Dockyard configuration --------------------------------------------------------------


def cache_config(path: Path, upstreams: list[dict[str, Any]], **extra: Any) -> Path:
    """Write a Dockyard config.yml with these `proxy.upstreams` (plus top-level `extra`)."""
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}},
        "storage": {"delete": {"enabled": True}},
        "proxy": {"upstreams": upstreams},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --- pushing and pulling with requests ---------------------------------------------------


@dataclass
class Image:
    """An image as pushed: manifest bytes and every blob by digest."""

    repo: str
    tag: str | None
    digest: str
    manifest: bytes
    config_digest: str
    layer_digests: list[str]
    blobs: dict[str, bytes] = field(default_factory=dict)

    @property
    def blob_digests(self) -> list[str]:
        return [self.config_digest, *self.layer_digests]


class RegistrySession:
    """A `requests` session that answers Basic and Bearer challenges with `credentials`."""

    def __init__(self, base_url: str, credentials: tuple[str, str] | None = None) -> None:
        self.base = base_url.rstrip("/")
        self.credentials = credentials
        self.http = requests.Session()
        self._tokens: dict[str, str] = {}

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistrySession:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, repo: str, actions: str = "pull", **kwargs: Any
    ) -> requests.Response:
        url = path if path.startswith("http") else self.base + path
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        kwargs.setdefault("allow_redirects", False)
        headers = dict(kwargs.pop("headers", None) or {})
        scope = f"repository:{repo}:{actions}"
        if scope in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[scope]}"
        response = self.http.request(method, url, headers=headers, **kwargs)
        if response.status_code != 401 or self.credentials is None:
            return response
        challenge = response.headers.get("WWW-Authenticate", "")
        response.close()
        if challenge.lower().startswith("basic"):
            return self.http.request(method, url, headers=headers, auth=self.credentials, **kwargs)
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        token_response = self.http.get(
            params["realm"],
            params={"service": params.get("service", ""), "scope": scope},
            auth=self.credentials,
            timeout=HTTP_TIMEOUT,
        )
        assert token_response.status_code == 200, token_response.text
        self._tokens[scope] = token_response.json()["token"]
        headers["Authorization"] = f"Bearer {self._tokens[scope]}"
        return self.http.request(method, url, headers=headers, **kwargs)

    def push_blob(self, repo: str, data: bytes) -> str:
        """POST then PUT ?digest= with the body (what Distribution accepts)."""
        digest = sha256(data)
        r = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo, actions="pull,push")
        assert r.status_code == 202, (r.status_code, r.text)
        location = r.headers["Location"]
        if not location.startswith("http"):
            location = self.base + location
        separator = "&" if "?" in location else "?"
        r = self.request(
            "PUT",
            f"{location}{separator}digest={digest}",
            repo=repo,
            actions="pull,push",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert r.status_code == 201, (r.status_code, r.text)
        return digest

    def push_image(
        self, repo: str, tag: str, layer_sizes: tuple[int, ...] = (2048,), note: str = ""
    ) -> Image:
        """Random layers, a config and an OCI manifest, tagged `tag`."""
        config = json.dumps(
            {"architecture": "amd64", "os": "linux", "note": note or os.urandom(8).hex()}
        ).encode()
        layers = [os.urandom(size) for size in layer_sizes]
        blobs = {self.push_blob(repo, blob): blob for blob in [config, *layers]}
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                "layers": [
                    {"mediaType": OCI_LAYER, "digest": sha256(b), "size": len(b)} for b in layers
                ],
            }
        ).encode()
        r = self.request(
            "PUT",
            f"/v2/{repo}/manifests/{tag}",
            repo=repo,
            actions="pull,push",
            data=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert r.status_code == 201, (r.status_code, r.text)
        return Image(
            repo,
            tag,
            sha256(manifest),
            manifest,
            sha256(config),
            [sha256(b) for b in layers],
            blobs,
        )


def push_image(
    base_url: str,
    repo: str,
    tag: str,
    layer_sizes: tuple[int, ...] = (2048,),
    credentials: tuple[str, str] | None = None,
) -> Image:
    with RegistrySession(base_url, credentials) as session:
        return session.push_image(repo, tag, layer_sizes)


@dataclass
class Pulled:
    status: int
    digest: str | None
    manifest: bytes
    blobs: dict[str, bytes]


def pull_image(
    base_url: str,
    repo: str,
    reference: str,
    ns: str | None = None,
    session: requests.Session | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> Pulled:
    """GET the manifest, then every blob it names; the blobs are checked against digests."""
    http = session or requests.Session()
    params = {"ns": ns} if ns else {}
    try:
        r = http.get(
            f"{base_url}/v2/{repo}/manifests/{reference}",
            params=params,
            headers={"Accept": MANIFEST_ACCEPT},
            timeout=timeout,
        )
        if r.status_code != 200:
            return Pulled(r.status_code, None, r.content, {})
        manifest = json.loads(r.content)
        blobs: dict[str, bytes] = {}
        for desc in [manifest["config"], *manifest["layers"]]:
            b = http.get(
                f"{base_url}/v2/{repo}/blobs/{desc['digest']}", params=params, timeout=timeout
            )
            assert b.status_code == 200, (desc["digest"], b.status_code, b.text)
            assert sha256(b.content) == desc["digest"], "blob bytes do not match their digest"
            blobs[desc["digest"]] = b.content
        return Pulled(r.status_code, r.headers.get("Docker-Content-Digest"), r.content, blobs)
    finally:
        if session is None:
            http.close()


def skopeo_push_layout(
    layout: Path, tag: str, dest: str, creds: str | None = None, flags: tuple[str, ...] = ()
) -> str:
    """skopeo copy an OCI layout's image to `dest` (host/repo:tag); returns its digest
    (with `--all` in `flags`, the index's)."""
    digest_file = layout.parent / f"pushed-{uuid.uuid4().hex}.digest"
    args = ["skopeo", "copy", "--dest-tls-verify=false", f"--digestfile={digest_file}", *flags]
    if creds:
        args.append(f"--dest-creds={creds}")
    run(*args, f"oci:{layout}:{tag}", f"docker://{dest}", timeout=120)
    return digest_file.read_text().strip()


# --- reading the upstream's access log ---------------------------------------------------

_ACCESS_LINE = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.[01]" (\d{3})')


@dataclass(frozen=True)
class UpstreamRequest:
    method: str
    path: str  # without the query string
    query: str
    status: int


def upstream_requests(log: str) -> list[UpstreamRequest]:
    """Every request in a Distribution access log (Apache combined format)."""
    found = []
    for match in _ACCESS_LINE.finditer(log):
        path, _, query = match.group(2).partition("?")
        found.append(UpstreamRequest(match.group(1), path, query, int(match.group(3))))
    return found


def count_requests(log: str, method: str, path: str, status: int | None = None) -> int:
    return sum(
        1
        for r in upstream_requests(log)
        if r.method == method and r.path == path and (status is None or r.status == status)
    )


def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll until `predicate()` is true (access logs are written after the response)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --- an upstream that corrupts blobs ----------------------------------------------------

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
}


class CorruptingProxy:
    """An HTTP proxy in front of a registry that flips bytes of blob bodies when told to.

    Headers (Content-Length, Docker-Content-Digest) stay those of the real blob: only the
    bytes are wrong, as with a broken upstream or a man in the middle.
    """

    def __init__(
        self,
        backend_url: str,
        port: int | None = None,
        corrupt: bool = True,
        chunk_delay: float = 0.0,
        chunk_size: int = 65536,
    ) -> None:
        parts = urlsplit(backend_url)
        self.backend_host = parts.hostname or "127.0.0.1"
        self.backend_port = parts.port or 80
        self.port = port or free_port()
        self.corrupt = corrupt
        # Send bodies in `chunk_size` pieces with `chunk_delay` seconds between them.
        self.chunk_delay = chunk_delay
        self.chunk_size = chunk_size
        # When set, every request is answered with this status (and `fail_headers`).
        self.fail_status: int | None = None
        self.fail_headers: dict[str, str] = {}
        self.requests: list[tuple[str, str, int, bool]] = []  # method, path, status, corrupted
        self.finished: dict[str, float] = {}  # path -> time.monotonic() the body was sent
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def blob_gets(self, digest: str) -> int:
        with self._lock:
            return sum(
                1 for m, p, _, _ in self.requests if m == "GET" and p.endswith(f"/blobs/{digest}")
            )

    def start(self) -> CorruptingProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 30

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _fail(self, status: int) -> None:
                data = json.dumps(
                    {"errors": [{"code": "UNAVAILABLE", "message": f"injected {status}"}]}
                ).encode()
                with proxy._lock:
                    proxy.requests.append(
                        (self.command, self.path.partition("?")[0], status, False)
                    )
                self.send_response(status)
                for key, value in proxy.fail_headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.fail_status is not None:
                    self._fail(proxy.fail_status)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                conn = http.client.HTTPConnection(
                    proxy.backend_host, proxy.backend_port, timeout=30
                )
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    corrupted = False
                    if (
                        self.command == "GET"
                        and "/blobs/sha256:" in self.path
                        and response.status == 200
                        and data
                        and proxy.corrupt
                    ):
                        flipped = bytearray(data)
                        for i in range(0, len(flipped), 97):
                            flipped[i] ^= 0xFF
                        data = bytes(flipped)
                        corrupted = True
                    with proxy._lock:
                        proxy.requests.append(
                            (self.command, self.path.partition("?")[0], response.status, corrupted)
                        )
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in _HOP_BY_HOP:
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        for start in range(0, len(data), proxy.chunk_size):
                            if start and proxy.chunk_delay:
                                time.sleep(proxy.chunk_delay)
                            self.wfile.write(data[start : start + proxy.chunk_size])
                            self.wfile.flush()
                    with proxy._lock:
                        proxy.finished[self.path.partition("?")[0]] = time.monotonic()
                finally:
                    conn.close()

            do_GET = _forward
            do_HEAD = _forward
            do_POST = _forward
            do_PUT = _forward
            do_PATCH = _forward
            do_DELETE = _forward

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # The client (Dockyard) may cut a connection; that is not a test failure.
                pass

        self._server = Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)


# --- an upstream that never answers ------------------------------------------------------


class HangingServer:
    """Accepts TCP connections and never sends a byte.

    Bounded: it holds at most `max_connections` connections and gives up after
    `max_seconds` even if nobody stops it.
    """

    def __init__(
        self, max_seconds: float = 60.0, max_connections: int = 64, port: int | None = None
    ) -> None:
        self.max_seconds = max_seconds
        self.max_connections = max_connections
        self.port = port or free_port()
        self.accepted = 0
        self._stop = threading.Event()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HangingServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(self.max_connections)
        listener.settimeout(0.1)
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        assert self._listener is not None
        held: list[socket.socket] = []
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if len(held) >= self.max_connections:
                    time.sleep(0.1)
                    continue
                try:
                    conn, _ = self._listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    break
                held.append(conn)
                self.accepted += 1
        finally:
            for conn in held:
                conn.close()
            self._listener.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
