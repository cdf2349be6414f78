"""A client for one upstream registry: auth, timeouts, rate limits, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from dockyard.config import (
    DOCKER_HUB_HOSTS,
    ProxyConfig,
    UpstreamConfig,
    parse_duration,
    registry_of_url,
)
from dockyard.errors import (
    BlobUnknownError,
    ManifestUnknownError,
    TooManyRequestsError,
    UpstreamBadResponseError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from dockyard.oci import mediatypes as mt
from dockyard.proxy.auth import Challenge, TokenCache, basic_header, parse_challenge

MANIFEST_ACCEPT = ", ".join(
    [mt.OCI_INDEX, mt.OCI_MANIFEST, mt.DOCKER_MANIFEST_LIST, mt.DOCKER_MANIFEST]
)


@dataclass(frozen=True)
class UpstreamSettings:
    """An upstream's configuration with durations parsed and secrets resolved."""

    name: str
    url: str
    username: str | None = None
    password: str | None = None
    cafile: str | None = None
    insecure: bool = False
    connect_timeout: float = 3.0
    timeout: float = 10.0
    tag_ttl: float = 300.0
    max_age: float = 0.0

    @property
    def is_docker_hub(self) -> bool:
        return self.name in DOCKER_HUB_HOSTS

    @classmethod
    def from_config(cls, cfg: UpstreamConfig) -> UpstreamSettings:
        username = cfg.username
        if cfg.usernamefile:
            username = Path(cfg.usernamefile).read_text().strip()
        password = cfg.password
        if cfg.passwordfile:
            password = Path(cfg.passwordfile).read_text().strip()
        elif cfg.passwordenv:
            password = os.environ.get(cfg.passwordenv)
        return cls(
            name=cfg.name,
            url=cfg.url,
            username=username,
            password=password,
            cafile=cfg.cafile,
            insecure=cfg.insecure,
            connect_timeout=parse_duration(cfg.connecttimeout),
            timeout=parse_duration(cfg.timeout),
            tag_ttl=parse_duration(cfg.tagttl),
            max_age=parse_duration(cfg.ttl),
        )


def upstreams_from_config(proxy: ProxyConfig) -> tuple[list[UpstreamSettings], str | None]:
    """All upstreams, and the name of the default one (`proxy.default`, or the registry of
    Distribution's `remoteurl`)."""
    upstreams = [UpstreamSettings.from_config(u) for u in proxy.upstreams]
    default = proxy.default
    if proxy.remoteurl:
        name = registry_of_url(proxy.remoteurl)
        max_age = parse_duration(proxy.ttl) if proxy.ttl else 0.0
        existing = [u for u in upstreams if u.name == name]
        if not existing:
            upstreams.append(
                UpstreamSettings(
                    name=name,
                    url=proxy.remoteurl.rstrip("/"),
                    username=proxy.username,
                    password=proxy.password,
                    max_age=max_age,
                )
            )
        default = name
    return upstreams, default


@dataclass
class UpstreamStats:
    """Counters per upstream, for logs and metrics."""

    hits: int = 0
    misses: int = 0
    bytes_downloaded: int = 0
    errors: int = 0
    coalesced: int = 0
    revalidations: int = 0
    passthrough: int = 0


@dataclass(frozen=True, slots=True)
class UpstreamManifest:
    digest: str | None
    media_type: str
    size: int
    content: bytes | None


@dataclass
class UpstreamClient:
    """Talks to one upstream registry. Every call answers within the configured timeouts."""

    settings: UpstreamSettings
    session: aiohttp.ClientSession
    tokens: TokenCache = field(default_factory=TokenCache)
    stats: UpstreamStats = field(default_factory=UpstreamStats)
    _blocked_until: float = 0.0

    @classmethod
    def create(cls, settings: UpstreamSettings) -> UpstreamClient:
        ssl_option: ssl.SSLContext | bool = True
        if settings.insecure:
            ssl_option = False
        elif settings.cafile:
            ssl_option = ssl.create_default_context(cafile=settings.cafile)
        connector = aiohttp.TCPConnector(ssl=ssl_option, limit=64)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=settings.connect_timeout,
            sock_connect=settings.connect_timeout,
            sock_read=settings.timeout,
        )
        session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, trust_env=False
        )
        return cls(settings, session)

    async def close(self) -> None:
        await self.session.close()

    def remote_name(self, name: str) -> str:
        """Docker Hub's rule: a single-component name lives under `library/`."""
        if self.settings.is_docker_hub and "/" not in name:
            return f"library/{name}"
        return name

    @property
    def _answer_deadline(self) -> float:
        # Connect, maybe fetch a token, then wait for the first byte.
        return 2 * self.settings.connect_timeout + 2 * self.settings.timeout

    async def _send(
        self, method: str, path: str, repo: str, headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        if self._blocked_until > time.monotonic():
            raise TooManyRequestsError(
                f"upstream {self.settings.name} asked us to slow down",
                headers={"Retry-After": str(int(self._blocked_until - time.monotonic()) + 1)},
            )
        url = f"{self.settings.url}/v2/{repo}/{path}"
        scope = f"repository:{repo}:pull"
        try:
            async with asyncio.timeout(self._answer_deadline):
                token = self.tokens.get(scope)
                auth = {"Authorization": f"Bearer {token}"} if token else {}
                response = await self.session.request(method, url, headers={**headers, **auth})
                if response.status == 401:
                    challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
                    response.release()
                    authorization = await self._authorize(challenge, scope)
                    response = await self.session.request(
                        method, url, headers={**headers, "Authorization": authorization}
                    )
        except TimeoutError:
            self.stats.errors += 1
            raise UpstreamTimeoutError(
                f"upstream {self.settings.name} did not answer within its timeout"
            ) from None
        except aiohttp.ClientError as exc:
            self.stats.errors += 1
            raise UpstreamUnavailableError(
                f"upstream {self.settings.name} unreachable: {exc.__class__.__name__}"
            ) from None
        if response.status == 429:
            retry_after = _retry_after(response.headers.get("Retry-After"))
            self._blocked_until = time.monotonic() + retry_after
            response.release()
            self.stats.errors += 1
            raise TooManyRequestsError(
                f"upstream {self.settings.name} is rate limiting",
                headers={"Retry-After": str(int(retry_after))},
            )
        if response.status >= 500 or response.status in (401, 403):
            status = response.status
            response.release()
            self.stats.errors += 1
            if status in (401, 403):
                # Our configured credentials are wrong: a server-side problem, not the client's.
                raise UpstreamBadResponseError(
                    f"upstream {self.settings.name} refused Dockyard's credentials ({status})"
                )
            raise UpstreamBadResponseError(f"upstream {self.settings.name} answered {status}")
        return response

    async def _authorize(self, challenge: Challenge | None, scope: str) -> str:
        settings = self.settings
        if challenge is None:
            raise UpstreamBadResponseError(
                f"upstream {settings.name} wants credentials without a challenge"
            )
        if challenge.scheme == "basic":
            if settings.username is None:
                raise UpstreamBadResponseError(f"upstream {settings.name} requires credentials")
            return basic_header(settings.username, settings.password or "")
        realm = challenge.params.get("realm")
        if challenge.scheme != "bearer" or not realm:
            raise UpstreamBadResponseError(f"upstream {settings.name}: unsupported auth challenge")
        params = {"scope": challenge.params.get("scope") or scope}
        if "service" in challenge.params:
            params["service"] = challenge.params["service"]
        headers = {}
        if settings.username is not None:
            headers["Authorization"] = basic_header(settings.username, settings.password or "")
        async with self.session.get(realm, params=params, headers=headers) as response:
            if response.status != 200:
                raise UpstreamBadResponseError(
                    f"upstream {settings.name} token endpoint answered {response.status}"
                )
            body = await response.json(content_type=None)
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise UpstreamBadResponseError(f"upstream {settings.name} sent no token")
        lifetime = body.get("expires_in")
        self.tokens.put(
            scope, token, float(lifetime) if isinstance(lifetime, int | float) else None
        )
        return f"Bearer {token}"

    async def manifest(self, repo: str, reference: str, *, head: bool = False) -> UpstreamManifest:
        """Fetch (or HEAD) a manifest; MANIFEST_UNKNOWN when the upstream does not have it."""
        method = "HEAD" if head else "GET"
        response = await self._send(
            method, f"manifests/{reference}", repo, {"Accept": MANIFEST_ACCEPT}
        )
        try:
            if response.status == 404:
                raise ManifestUnknownError(
                    f"manifest unknown to upstream {self.settings.name}",
                    detail={"name": repo, "reference": reference},
                )
            if response.status != 200:
                raise UpstreamBadResponseError(
                    f"upstream {self.settings.name} answered {response.status} for a manifest"
                )
            media_type = mt.strip_parameters(response.headers.get("Content-Type", ""))
            digest = response.headers.get("Docker-Content-Digest")
            if head:
                return UpstreamManifest(digest, media_type, response.content_length or 0, None)
            try:
                async with asyncio.timeout(self._answer_deadline):
                    content = await response.read()
            except (TimeoutError, aiohttp.ClientError):
                self.stats.errors += 1
                raise UpstreamTimeoutError(
                    f"upstream {self.settings.name} stalled sending a manifest"
                ) from None
            self.stats.bytes_downloaded += len(content)
            return UpstreamManifest(digest, media_type, len(content), content)
        finally:
            response.release()

    @contextlib.asynccontextmanager
    async def blob(self, repo: str, digest: str) -> AsyncIterator[aiohttp.ClientResponse]:
        """An open blob response (status 200); BLOB_UNKNOWN when the upstream lacks it."""
        response = await self._send("GET", f"blobs/{digest}", repo, {})
        try:
            if response.status == 404:
                raise BlobUnknownError(
                    f"blob unknown to upstream {self.settings.name}", detail={"digest": digest}
                )
            if response.status != 200:
                raise UpstreamBadResponseError(
                    f"upstream {self.settings.name} answered {response.status} for a blob"
                )
            yield response
        finally:
            response.release()

    async def blob_size(self, repo: str, digest: str) -> int:
        """HEAD a blob upstream: its size, without downloading it."""
        response = await self._send("HEAD", f"blobs/{digest}", repo, {})
        response.release()
        if response.status == 404:
            raise BlobUnknownError(detail={"digest": digest})
        if response.status != 200 or response.content_length is None:
            raise UpstreamBadResponseError(
                f"upstream {self.settings.name} answered {response.status} for a blob"
            )
        return response.content_length


def _retry_after(value: str | None) -> float:
    if value and value.strip().isdigit():
        return min(float(value), 3600.0)
    return 10.0
