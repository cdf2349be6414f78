"""`GET /dockyard/api/v1/usage`: what `dockyard df` and `dockyard du` show, as JSON."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from dockyard.api.context import context
from dockyard.api.responses import json_response
from dockyard.ops.usage import repository_usage, store_usage


async def usage_endpoint(request: web.Request) -> web.StreamResponse:
    """Volume and store totals, and per-repository usage (optionally `?repository=` names)."""
    ctx = context(request)
    db = ctx.registry.db
    totals = await store_usage(db, ctx.settings.root, list(ctx.settings.cached_prefixes))
    names = request.query.getall("repository", [])
    repos = await repository_usage(db, names)
    return json_response({"store": totals.to_dict(), "repositories": [asdict(r) for r in repos]})
