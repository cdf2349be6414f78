"""The middleware that answers every request in the API's terms, and the hook that counts
and logs each answered request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from dockyard.api.metrics import RequestStats
from dockyard.api.middleware import access_logger_for, answers
from dockyard.api.responses import StandardHeaders
from dockyard.errors import ManifestUnknownError
from tests.unit.test_api_metrics import scrape

EXTRA = (("Server", "Dockyard"), ("X-Content-Type-Options", "nosniff"), ("X-Site", "edge-7"))


async def _registry_error(request: web.Request) -> web.StreamResponse:
    raise ManifestUnknownError(detail={"name": "a"})


async def _http_exception(request: web.Request) -> web.StreamResponse:
    raise web.HTTPForbidden(text="no")


async def _bug(request: web.Request) -> web.StreamResponse:
    raise RuntimeError("secret internals")


async def _fine(request: web.Request) -> web.StreamResponse:
    return web.Response(body=b"hello", headers={"X-Site": "handler"})


async def _streamed(request: web.Request) -> web.StreamResponse:
    # Prepared by the handler: it applied the standard headers itself, once.
    response = web.StreamResponse()
    StandardHeaders(EXTRA).apply(response.headers)
    await response.prepare(request)
    await response.write(b"streamed")
    return response


Check = Callable[[TestClient[web.Request, web.Application]], Awaitable[None]]


def _run(check: Check, **runner: Any) -> None:
    async def run() -> None:
        app = web.Application(middlewares=[answers(StandardHeaders(EXTRA))])
        for path, handler in [
            ("/error", _registry_error),
            ("/forbidden", _http_exception),
            ("/bug", _bug),
            ("/fine", _fine),
            ("/streamed", _streamed),
        ]:
            app.router.add_get(path, handler)
        server = TestServer(app)
        await server.start_server(**runner)  # runner options (TestServer's own ignores them)
        async with TestClient(server) as client:
            await check(client)

    asyncio.run(run())


def _standard(headers: Any) -> None:
    assert headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert headers.getall("Server") == ["Dockyard"]  # in place of aiohttp's own
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_every_answer_carries_the_standard_headers() -> None:
    async def check(client: TestClient[web.Request, web.Application]) -> None:
        error = await client.get("/error")
        assert error.status == 404
        assert (await error.json())["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        _standard(error.headers)
        forbidden = await client.get("/forbidden")
        assert forbidden.status == 403 and await forbidden.text() == "no"
        _standard(forbidden.headers)
        bug = await client.get("/bug")
        assert bug.status == 500
        assert (await bug.json())["errors"][0]["code"] == "UNKNOWN"
        assert "secret" not in await bug.text()
        _standard(bug.headers)
        fine = await client.get("/fine")
        assert await fine.read() == b"hello"
        assert fine.headers.getall("X-Site") == ["handler", "edge-7"]  # added, not replaced
        _standard(fine.headers)
        streamed = await client.get("/streamed")
        assert await streamed.read() == b"streamed"
        assert streamed.headers.getall("X-Site") == ["edge-7"]
        _standard(streamed.headers)

    _run(check)


class _Sink:
    def __init__(self) -> None:
        self.lines: list[tuple[Any, ...]] = []

    def request(self, *fields: Any) -> None:
        self.lines.append(fields)


def test_the_hook_counts_every_request_and_logs_only_with_a_sink() -> None:
    for sink in (None, _Sink()):
        stats = RequestStats()

        async def check(client: TestClient[web.Request, web.Application]) -> None:
            for path in ("/fine", "/fine", "/error", "/streamed", "/bug"):
                await (await client.get(path)).read()
            assert (await client.head("/fine")).status == 200

        _run(
            check,
            access_log_class=access_logger_for(sink, stats),
            access_log=logging.getLogger("test.access"),
        )
        samples = scrape(stats)
        route = ("route", "other")  # not a /v2/ path
        assert samples["dockyard_http_requests_total"] == {
            (("method", "GET"), route, ("status", "200")): 3,
            (("method", "GET"), route, ("status", "404")): 1,
            (("method", "GET"), route, ("status", "500")): 1,
            (("method", "HEAD"), route, ("status", "200")): 1,
        }
        sent = samples["dockyard_http_response_bytes_total"][()]
        assert sent >= 2 * len(b"hello") + len(b"streamed")
        if sink is not None:
            assert [(line[0], line[1], line[2]) for line in sink.lines] == [
                ("GET", "/fine", 200),
                ("GET", "/fine", 200),
                ("GET", "/error", 404),
                ("GET", "/streamed", 200),
                ("GET", "/bug", 500),
                ("HEAD", "/fine", 200),
            ]
            assert sink.lines[0][3] == len(b"hello")  # body bytes sent
            assert sink.lines[-1][3] == 0  # HEAD: headers only
