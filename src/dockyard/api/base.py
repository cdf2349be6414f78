"""`/v2/` and the Kubernetes probes."""

from __future__ import annotations

from aiohttp import web

from dockyard.api.context import context
from dockyard.api.responses import json_response
from dockyard.api.routing import Route
from dockyard.registry.registry import Readiness


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
        "reason": None if state.ready else _reason(state),
        "checks": {
            "storage_writable": state.storage_writable,
            "database_open": state.database_open,
        },
        "free_bytes": state.free_bytes,
    }
    return json_response(body, status=200 if state.ready else 503)


def _reason(state: Readiness) -> str:
    if not state.database_open:
        return "the metadata database is closed"
    if state.free_bytes <= 0:
        return "registry storage is full"
    return "registry storage is not writable"
