"""`/v2/` and the Kubernetes probes."""

from __future__ import annotations

from aiohttp import web

from dockyard.api.context import context
from dockyard.api.responses import json_response
from dockyard.api.routing import Route


async def api_base(request: web.Request, route: Route) -> web.StreamResponse:
    """200: this server implements the distribution API."""
    return json_response({})


async def healthz(request: web.Request) -> web.StreamResponse:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Readiness: storage takes writes and the metadata database answers."""
    state = await context(request).registry.readiness()
    body = {
        "status": "ok" if state.ready else "unavailable",
        "checks": {
            "storage_writable": state.storage_writable,
            "database_open": state.database_open,
        },
    }
    return json_response(body, status=200 if state.ready else 503)
