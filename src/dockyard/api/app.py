"""The aiohttp application: one dispatcher for `/v2/`, probes, middlewares."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Middleware

from dockyard.api import base, blobs, discovery, manifests, uploads, usage
from dockyard.api.auth import TOKEN_PATH, authenticate, token_endpoint
from dockyard.api.context import CONTEXT, ApiContext, ApiSettings
from dockyard.api.metrics import METRICS, Metrics, metrics_endpoint
from dockyard.api.middleware import Handler, answers
from dockyard.api.routing import Resource, Route, route_of
from dockyard.auth.authenticator import Authenticator
from dockyard.errors import MethodNotAllowedError, NotFoundError
from dockyard.ops.maintenance import Maintenance
from dockyard.proxy.cache import PullThroughCache
from dockyard.registry import Registry

RouteHandler = Callable[[web.Request, Route], Awaitable[web.StreamResponse]]

HANDLERS: dict[Resource, dict[str, RouteHandler]] = {
    Resource.BASE: {"GET": base.api_base, "HEAD": base.api_base},
    Resource.CATALOG: {"GET": discovery.catalog},
    Resource.MANIFEST: {
        "GET": manifests.get_manifest,
        "HEAD": manifests.get_manifest,
        "PUT": manifests.put_manifest,
        "DELETE": manifests.delete_manifest,
    },
    Resource.BLOB: {
        "GET": blobs.get_blob,
        "HEAD": blobs.head_blob,
        "DELETE": blobs.delete_blob,
    },
    Resource.UPLOADS: {"POST": uploads.start_upload},
    Resource.UPLOAD: {
        "GET": uploads.upload_status,
        "PATCH": uploads.patch_upload,
        "PUT": uploads.put_upload,
        "DELETE": uploads.cancel_upload,
    },
    Resource.TAGS: {"GET": discovery.list_tags},
    Resource.REFERRERS: {"GET": discovery.referrers},
}


# Blob reads ahead of bodies running at once (dockyard.api.readahead).
READERS = 4


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route a `/v2/...` request to its resource handler."""
    route = route_of(request)
    if route is None:
        raise NotFoundError(detail={"path": request.path[:300]})
    by_method = HANDLERS[route.resource]
    handler = by_method.get(request.method)
    if handler is None:
        raise MethodNotAllowedError(
            f"{request.method} is not allowed here",
            headers={"Allow": ", ".join(sorted(by_method))},
        )
    return await handler(request, route)


async def not_found(request: web.Request) -> web.StreamResponse:
    raise NotFoundError(detail={"path": request.path[:300]})


def create_app(
    registry: Registry,
    settings: ApiSettings | None = None,
    cache: PullThroughCache | None = None,
    maintenance: Maintenance | None = None,
    auth: Authenticator | None = None,
) -> web.Application:
    """The HTTP application over a registry (and the pull-through cache, if configured)."""
    settings = settings or ApiSettings()
    # Its own threads, so cold pulls never queue pushes' writes on the default executor.
    readers = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="dockyard-readahead")
    context = ApiContext(registry, settings, cache, maintenance, auth, readers)
    metrics = Metrics(context)
    # Requests are counted by the runner's access-log hook (api.middleware.access_logger_for).
    layers: list[Middleware] = [answers(settings.standard_headers)]
    if auth is not None:
        layers.append(authenticate)
    app = web.Application(client_max_size=4 * 1024**2)
    app[CONTEXT] = context
    app[METRICS] = metrics
    app.on_cleanup.append(partial(_shutdown, readers))
    router = app.router

    def add(path: str, handler: Handler, *methods: str) -> None:
        handler = layered(handler, layers)
        for method in methods:
            router.add_route(method, path, handler, expect_handler=expect)

    add("/v2", dispatch_base, "*")
    # `[\s\S]`, not `.`: a path with an encoded newline (%0A) must reach the API's 404 too.
    add(r"/v2/{tail:[\s\S]*}", dispatch, "*")
    add("/healthz", base.healthz, "GET", "HEAD")
    add("/readyz", base.readyz, "GET", "HEAD")
    add("/metrics", metrics_endpoint, "GET", "HEAD")
    add("/dockyard/api/v1/usage", usage.usage_endpoint, "GET", "HEAD")
    add(TOKEN_PATH, token_endpoint, "GET", "POST")
    add(r"/{tail:[\s\S]*}", not_found, "*")
    return app


def layered(handler: Handler, layers: Sequence[Middleware]) -> Handler:
    """`handler` inside middleware-style `layers`, the first outermost, composed once here.

    The same as the application's middlewares, without the layer aiohttp adds to every
    request of an application that has any (it sets `request.app` for sub-applications,
    which this application has none of).
    """
    for layer in reversed(layers):
        handler = partial(layer, handler=handler)
    return handler


async def _shutdown(executor: ThreadPoolExecutor, app: web.Application) -> None:
    executor.shutdown(wait=False, cancel_futures=True)


async def expect(request: web.Request) -> None:
    """`Expect: 100-continue` as aiohttp answers it. Other expectations are ignored, as
    RFC 9110 allows, instead of aiohttp's plain-text 417 outside the API's error format."""
    if request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == (
        "100-continue"
    ):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the body proper has not started


async def dispatch_base(request: web.Request) -> web.StreamResponse:
    """`/v2` without the slash is the same as `/v2/`."""
    if request.method not in ("GET", "HEAD"):
        raise MethodNotAllowedError(headers={"Allow": "GET, HEAD"})
    return await base.api_base(request, Route(Resource.BASE))
