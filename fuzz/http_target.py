"""The HTTP surface as a fuzz target: a whole Dockyard app in-process, over a temporary root.

`HttpTarget` builds the application the way `dockyard serve` does (`build_registry`,
`api_settings`, `build_authenticator`, `create_app`), serves it with aiohttp's
`TestServer` on 127.0.0.1, seeds it with an image and an open upload session, and sends it
one `HttpRequest` at a time with `TestClient`'s session (raw, already-encoded targets, so
`..`, `%2f` and `%00` reach the server as written). After every request it checks:

- no 500 (nor any other 5xx): hostile input is always the client's error;
- every 4xx that the application produced carries the spec's JSON error body
  (`{"errors": [{"code": ..., "message": ...}]}`) with a code the spec knows; the only
  other 4xx allowed is aiohttp's own `400` for a request that is not valid HTTP at all;
- nothing was logged at ERROR or with a traceback;
- nothing was created, changed or removed outside the storage root, and nothing under the
  root is a symlink or resolves outside it;
- the server still answers.

Shared by tests/unit/test_fuzz_http.py (hypothesis) and fuzz/fuzz_http.py (atheris).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from dockyard.api import create_app
from dockyard.api.middleware import access_logger_for, protocol_logger
from dockyard.auth.htpasswd import hash_password
from dockyard.cli.logs import AccessLogSink
from dockyard.cli.serve import api_settings, build_authenticator, build_registry
from dockyard.config import load_config
from dockyard.oci import mediatypes as mt

OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

API_VERSION = "Docker-Distribution-API-Version"
# The distribution spec's error codes, and the ones Dockyard adds for its upstreams.
SPEC_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
        "UPSTREAM_UNAVAILABLE",
        "UPSTREAM_TIMEOUT",
        "UPSTREAM_ERROR",
    }
)
USER, PASSWORD = "alice", "wonderland"
SEED_REPO = "library/seed"

# -- vocabularies both fuzzers draw from -------------------------------------------------

METHODS = (
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "OPTIONS",
    "TRACE",
    "PROPFIND",
    "SEARCH",
    "FOO",
)
# Path pieces: good ones (so requests get deep into the handlers) and hostile ones.
NAME_PARTS = (
    SEED_REPO,
    "library",
    "seed",
    "private",
    "a",
    "a-b.c_d__e",
    "",
    ".",
    "..",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2f",
    "%2F",
    "..%2f..%2f..",
    "%2e%2e%2f%2e%2e%2fetc",
    "%252e%252e",
    "%00",
    "a%00b",
    "%0a",
    "%20",
    "%5c..%5c",
    "%C3%A9",
    "%F0%9F%90%B3",
    "%ff%fe",
    "A",
    "UPPER",
    "-a",
    "a-",
    "_",
    "blobs",
    "manifests",
    "uploads",
    "tags",
    "list",
    "referrers",
    "_catalog",
    "v2",
    "etc/passwd",
    "tmp",
    "x" * 256,
    "/".join(["a"] * 130),
    "a" * 5000,
)
ARGUMENTS = (
    "{digest}",
    "{manifest}",
    "{upload}",
    "latest",
    "v1.0",
    "",
    "..",
    "%2e%2e",
    "..%2f..%2fmetadata.db",
    "%00",
    "sha256:",
    "sha256:..",
    "sha256:%2e%2e%2f%2e%2e",
    "sha256:" + "0" * 64,
    "sha256:" + "A" * 64,
    "sha512:" + "f" * 128,
    "md5:d41d8cd98f00b204e9800998ecf8427e",
    "sha256:" + "0" * 63 + "%00",
    "00000000-0000-0000-0000-000000000000",
    "../uploads/{upload}",
    "..%2fuploads%2f{upload}",
    "%2fetc%2fpasswd",
    "-" * 64,
    "a" * 129,
    "x" * 9000,
)
RESOURCES = (
    "manifests/{arg}",
    "blobs/{arg}",
    "blobs/uploads/",
    "blobs/uploads",
    "blobs/uploads/{arg}",
    "tags/list",
    "tags/list/",
    "referrers/{arg}",
    "{arg}",
    "",
)
OTHER_PATHS = (
    "/",
    "/v2",
    "/v2/",
    "/v2/_catalog",
    "/v2/_catalog/",
    "/healthz",
    "/readyz",
    "/metrics",
    "/dockyard/api/v1/usage",
    "/dockyard/auth/token",
    "//v2/",
    "/v2/../v2/",
    "/v2/%2e%2e/",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/../../etc/passwd",
    "*",
)
QUERY_KEYS = (
    "digest",
    "mount",
    "from",
    "n",
    "last",
    "tag",
    "digest-algorithm",
    "artifactType",
    "scope",
    "service",
    "account",
    "repository",
    "grant_type",
    "username",
    "password",
    "",
    "%00",
    "%zz",
)
QUERY_VALUES = (
    "{digest}",
    "{manifest}",
    "sha256:" + "0" * 64,
    SEED_REPO,
    "..%2f..",
    "-1",
    "0",
    "1",
    "99999999999999999999999999",
    "1e9",
    "sha512",
    "md5",
    "repository:library/seed:pull,push",
    "repository:private/x:*",
    "registry:catalog:*",
    "%00",
    "%",
    "%zz",
    "",
    "latest",
)
HEADER_NAMES = (
    "Range",
    "Content-Range",
    "Content-Type",
    "Accept",
    "Authorization",
    "If-None-Match",
    "Accept-Encoding",
    "Content-Encoding",
    "Expect",
    "X-Forwarded-Proto",
    "Host",
    "Docker-Upload-UUID",
)
HEADER_VALUES = (
    "bytes=0-0",
    "bytes=0-",
    "bytes=-1",
    "bytes=5-1",
    "bytes=0-99999999999999999999999999",
    "bytes=" + "9" * 5000 + "-",
    "bytes=-" + "9" * 5000,
    "bytes=0-1,2-3",
    "items=0-1",
    "0-0",
    "0-99",
    "bytes 0-0/1",
    "1-0",
    "0-" + "9" * 30,
    "9223372036854775807-9223372036854775807",
    mt.OCI_MANIFEST,
    mt.OCI_INDEX,
    mt.DOCKER_MANIFEST,
    mt.DOCKER_SCHEMA1,
    "application/json",
    "application/octet-stream",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "multipart/form-data",
    "*/*",
    "Basic {basic}",
    "Basic {wrong}",
    "Basic",
    "Basic !!!",
    "Basic Og==",
    "Bearer {token}",
    "Bearer",
    "Bearer a.b.c",
    "Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJkb2NreWFyZCJ9.",
    "Digest x",
    "gzip",
    "deflate",
    "br",
    "100-continue",
    '"{manifest}"',
    "",
    " ",
    "é",
    "\x7f",
    "x" * 8000,
)


@dataclass(frozen=True)
class HttpRequest:
    """One request: `target` is sent exactly as written (path and query, already encoded)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    chunked: bool = False


@dataclass
class Outcome:
    status: int
    headers: dict[str, str]
    body: bytes


def build_target(name_parts: list[str], resource: str, argument: str) -> str:
    """`/v2/<name>/<resource>` from vocabulary pieces."""
    name = "/".join(name_parts)
    return f"/v2/{name}/{resource.replace('{arg}', argument)}"


def build_query(pairs: list[tuple[str, str]]) -> str:
    return "?" + "&".join(f"{k}={v}" if v != "\0" else k for k, v in pairs) if pairs else ""


def manifest_body(config: str, layers: list[str], media_type: str = mt.OCI_MANIFEST) -> bytes:
    """A manifest (valid or not, depending on the digests) for bodies."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": OCI_CONFIG, "digest": config, "size": 2},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": 5} for d in layers],
        }
    ).encode()


class _Records(logging.Handler):
    """Every record at ERROR or above, and every record that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.bad: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info or record.exc_text:
            self.bad.append(record)


def _snapshot(base: Path, root: Path) -> dict[str, tuple[int, int, int]]:
    """Everything under `base` except the storage root: path -> (mode, size, mtime)."""
    found: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirs, files in os.walk(base):
        if Path(dirpath) == base and root.name in dirs:
            dirs.remove(root.name)
        for name in dirs + files:
            path = Path(dirpath, name)
            st = path.lstat()
            found[str(path.relative_to(base))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


def _escapes(root: Path) -> list[str]:
    """Anything under the root that is a symlink or resolves outside it."""
    bad = []
    resolved_root = root.resolve()
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(dirpath, name)
            if path.is_symlink() or not path.resolve().is_relative_to(resolved_root):
                bad.append(str(path))
    return bad


_PREFIX = "dockyard-fuzz-http-"


def reap_stale() -> None:
    """Remove the temporary roots of fuzzing processes that are gone (libFuzzer ends the
    process without running Python's exit handlers, so an atheris run cannot clean up)."""
    for path in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = path.name[len(_PREFIX) :].split("-", 1)[0]
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        shutil.rmtree(path, ignore_errors=True)


class HttpTarget:
    """A Dockyard application in-process, with or without authentication."""

    def __init__(self, *, auth: bool = False) -> None:
        self.auth = auth
        reap_stale()
        self.base = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
        self.root = self.base / "root"
        self.loop = asyncio.new_event_loop()
        self.records = _Records()
        self.values: dict[str, str] = {}
        self._registry: Any = None
        self._server: TestServer | None = None
        self._client: TestClient[Any, Any] | None = None
        self.requests = 0
        self.protocol_rejections = 0
        self._access = AccessLogSink("json", {})

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> HttpTarget:
        try:
            return self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> HttpTarget:
        # Things the server must never touch: a sibling of the root and files beside it.
        outside = self.base / "outside"
        outside.mkdir()
        (outside / "sentinel").write_text("must not change\n")
        (self.base / "metadata.db").write_text("not the registry's\n")
        overrides: dict[str, Any] = {
            "storage.filesystem.rootdirectory": str(self.root),
            "storage.delete.enabled": True,
        }
        if self.auth:
            htpasswd = self.base / "htpasswd"
            htpasswd.write_text(f"{USER}:{hash_password(PASSWORD, rounds=4)}\n")
            overrides["auth"] = {
                "htpasswd": {"realm": "fuzz", "path": str(htpasswd)},
                "tokenserver": {"enabled": True},
                "access": [
                    {"repositories": "library/*", "pull": ["anonymous"], "push": [USER]},
                    {"repositories": "private/*", "pull": [USER], "push": [USER]},
                ],
            }
        config = load_config(None, environ={}, overrides=overrides).config
        self._registry = build_registry(config)
        authenticator = build_authenticator(config)
        app = create_app(self._registry, api_settings(config, []), None, None, authenticator)
        logging.getLogger().addHandler(self.records)
        self.loop.run_until_complete(self._start(app))
        if authenticator is not None and authenticator.issuer is not None:
            token, _, _ = authenticator.issuer.issue(
                USER, {SEED_REPO: {"pull", "push", "delete"}, "registry:catalog": {"*"}}
            )
            self.values["token"] = token
        self.values["basic"] = _basic(USER, PASSWORD)
        self.values["wrong"] = _basic(USER, "not-the-password")
        self.loop.run_until_complete(self._seed())
        self._before = _snapshot(self.base, self.root)
        return self

    async def _start(self, app: Any) -> None:
        server = TestServer(app, skip_url_asserts=True)
        # As `dockyard serve` runs it: its access logger, its logger for malformed requests,
        # its read buffer, bodies taken as sent (no Content-Encoding decoding).
        await server.start_server(
            access_log_class=access_logger_for(self._access),
            access_log=logging.getLogger("dockyard.access"),
            logger=protocol_logger,
            read_bufsize=1 << 18,
            auto_decompress=False,
        )
        self._server = server
        self._client = TestClient(server)
        await self._client.start_server()

    async def _seed(self) -> None:
        """An image (config, layer, manifest tagged `latest`) and an open upload session."""
        headers = {"Authorization": f"Basic {self.values['basic']}"} if self.auth else {}
        config, layer = b"{}", b"layer"
        digests = []
        for blob in (config, layer):
            digest = "sha256:" + hashlib.sha256(blob).hexdigest()
            digests.append(digest)
            response = await self._raw(
                "POST", f"/v2/{SEED_REPO}/blobs/uploads/?digest={digest}", headers, blob
            )
            assert response.status == 201, response
        manifest = manifest_body(digests[0], [digests[1]])
        response = await self._raw(
            "PUT",
            f"/v2/{SEED_REPO}/manifests/latest",
            {**headers, "Content-Type": mt.OCI_MANIFEST},
            manifest,
        )
        assert response.status == 201, response
        response = await self._raw("POST", f"/v2/{SEED_REPO}/blobs/uploads/", headers, b"")
        assert response.status == 202, response
        self.values["digest"] = digests[1]
        self.values["config"] = digests[0]
        self.values["manifest"] = "sha256:" + hashlib.sha256(manifest).hexdigest()
        self.values["upload"] = response.headers["Location"].rsplit("/", 1)[-1]

    def close(self) -> None:
        logging.getLogger().removeHandler(self.records)
        if self._client is not None:
            self.loop.run_until_complete(self._client.close())
            self._client = None
        elif self._server is not None:
            self.loop.run_until_complete(self._server.close())
        if self._registry is not None:
            self._registry.close()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> HttpTarget:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------

    def expand(self, text: str) -> str:
        for key, value in self.values.items():
            text = text.replace("{" + key + "}", value)
        return text

    async def _raw(
        self,
        method: str,
        target: str,
        headers: dict[str, str] | list[tuple[str, str]],
        body: bytes,
        chunked: bool = False,
    ) -> Outcome:
        assert self._client is not None and self._server is not None
        url = URL(f"http://{self._server.host}:{self._server.port}{target}", encoded=True)
        data: bytes | AsyncIterator[bytes] = body
        if chunked:
            data = _chunks(body)
        async with self._client.session.request(
            method,
            url,
            headers=headers,
            data=data,
            allow_redirects=False,
            skip_auto_headers=("Content-Type", "Accept-Encoding", "User-Agent"),
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response:
            outcome = Outcome(response.status, dict(response.headers), await response.read())
        self._access.flush()  # as the server's flusher does, so lines reach the log checks
        return outcome

    def send(self, request: HttpRequest) -> Outcome | None:
        """The server's answer; None when the client library refuses to send the request."""
        headers = [(k, self.expand(v)) for k, v in request.headers]
        target = self.expand(request.target)
        body = self.expand(request.body.decode("latin-1")).encode("latin-1")
        try:
            return self.loop.run_until_complete(
                self._raw(request.method, target, headers, body, request.chunked)
            )
        except aiohttp.ClientResponseError as exc:
            # aiohttp's server answers a HEAD it cannot parse (duplicate singleton headers)
            # with a 400 that has a body; its client then refuses the answer. Anything else
            # the client cannot read is a failure.
            if request.method == "HEAD" and "Data after `Connection: close`" in exc.message:
                self.protocol_rejections += 1
                return None
            raise
        except (ValueError, aiohttp.InvalidURL):
            return None  # not sendable as HTTP by aiohttp's client: nothing reached the server

    def check(self, request: HttpRequest) -> Outcome | None:
        """Send and assert every invariant; returns the answer."""
        self.records.bad.clear()
        outcome = self.send(request)
        self.requests += 1
        if outcome is not None:
            self.check_outcome(request, outcome)
        self.check_logs()
        self.check_storage()
        return outcome

    def check_outcome(self, request: HttpRequest, outcome: Outcome) -> None:
        where = f"{request.method} {request.target[:200]}"
        assert outcome.status < 500, f"{where}: {outcome.status} {outcome.body[:300]!r}"
        if outcome.status < 400:
            return
        if API_VERSION not in outcome.headers:
            # Not produced by the application: aiohttp's parser refusing what is not HTTP.
            assert outcome.status == 400, f"{where}: {outcome.status} {outcome.body[:300]!r}"
            assert outcome.headers.get("Content-Type", "").startswith("text/plain")
            self.protocol_rejections += 1
            return
        content_type = outcome.headers.get("Content-Type", "")
        assert content_type.startswith("application/json"), f"{where}: {content_type}"
        if request.method == "HEAD":
            return
        body = json.loads(outcome.body)
        errors = body["errors"]
        assert isinstance(errors, list) and errors, f"{where}: {body}"
        for error in errors:
            assert error["code"] in SPEC_CODES, f"{where}: {error}"
            assert isinstance(error["message"], str) and error["message"]
        if outcome.status == 401:
            assert "WWW-Authenticate" in outcome.headers, where

    def check_logs(self) -> None:
        bad = [f"{r.name} {r.levelname}: {r.getMessage()}" for r in self.records.bad]
        assert not bad, bad

    def check_storage(self) -> None:
        assert _snapshot(self.base, self.root) == self._before, "changed outside the root"
        escapes = _escapes(self.root)
        assert not escapes, escapes

    def check_alive(self) -> None:
        outcome = self.send(HttpRequest("GET", "/healthz"))
        assert outcome is not None and outcome.status == 200, outcome


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(body), 7):
        yield body[i : i + 7]
    if not body:
        yield b""


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()
