"""What every handler needs, stored once on the aiohttp application."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from aiohttp import web

from dockyard.api.responses import StandardHeaders
from dockyard.auth.authenticator import Authenticator
from dockyard.ops.maintenance import Maintenance
from dockyard.proxy.cache import PullThroughCache
from dockyard.registry import Registry


@dataclass(frozen=True)
class ApiSettings:
    """HTTP-level settings derived from the config."""

    extra_headers: tuple[tuple[str, str], ...] = ()
    catalog_max_entries: int = 1000
    tags_max_entries: int = 10000
    root: Path = Path("data")
    # A request body that sends nothing for this long is abandoned (the bytes so far stay).
    body_idle_timeout: float = 60.0
    cached_prefixes: tuple[str, ...] = ()

    @cached_property
    def standard_headers(self) -> StandardHeaders:
        """What every response carries (the API version and `extra_headers`)."""
        return StandardHeaders(self.extra_headers)


@dataclass(frozen=True)
class ApiContext:
    registry: Registry
    settings: ApiSettings
    cache: PullThroughCache | None = None
    maintenance: Maintenance | None = None
    auth: Authenticator | None = None
    # Threads that read blobs into the page cache ahead of their bodies (None: the
    # loop's default executor).
    readers: Executor | None = None


CONTEXT: web.AppKey[ApiContext] = web.AppKey("dockyard_context", ApiContext)


def context(request: web.Request) -> ApiContext:
    """The ApiContext of the application serving this request."""
    return request.app[CONTEXT]
