"""Prometheus metrics: requests, bytes, and the cache's per-upstream counters.

Each application has its own CollectorRegistry (no module-level metric state).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from itertools import accumulate

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from dockyard.api.context import ApiContext
from dockyard.api.routing import Resource, route_of_path
from dockyard.metadata import ops_queries as oq
from dockyard.proxy.cache import PullThroughCache

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class UpstreamCollector(Collector):
    """Reads the cache's counters at scrape time."""

    def __init__(self, cache: PullThroughCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        families = {
            "hits": CounterMetricFamily(
                "dockyard_cache_hits", "Requests answered from the cache", labels=["upstream"]
            ),
            "misses": CounterMetricFamily(
                "dockyard_cache_misses", "Requests that went to the upstream", labels=["upstream"]
            ),
            "bytes_downloaded": CounterMetricFamily(
                "dockyard_upstream_bytes", "Bytes downloaded from the upstream", labels=["upstream"]
            ),
            "errors": CounterMetricFamily(
                "dockyard_upstream_errors", "Failed upstream requests", labels=["upstream"]
            ),
            "coalesced": CounterMetricFamily(
                "dockyard_cache_coalesced_waiters",
                "Requests that joined a download already in flight",
                labels=["upstream"],
            ),
            "revalidations": CounterMetricFamily(
                "dockyard_cache_tag_revalidations",
                "Tags checked with the upstream after their freshness interval",
                labels=["upstream"],
            ),
            "passthrough": CounterMetricFamily(
                "dockyard_cache_passthrough",
                "Blobs sent straight from the upstream without caching (the store was full)",
                labels=["upstream"],
            ),
        }
        for name, upstream in self._cache.router.upstreams.items():
            for field, family in families.items():
                family.add_metric([name], getattr(upstream.stats, field))
        yield from families.values()


class StorageCollector(Collector):
    """Store totals and the operations' counters, read at scrape time."""

    def __init__(self, ctx: ApiContext) -> None:
        self._ctx = ctx

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        ctx = self._ctx
        db = ctx.registry.db
        count, cached, total = db.read_sync(oq.store_totals, list(ctx.settings.cached_prefixes))
        stored = GaugeMetricFamily(
            "dockyard_storage_bytes", "Bytes of blobs in the store", labels=["kind"]
        )
        stored.add_metric(["pushed"], total - cached)
        stored.add_metric(["cached"], cached)
        yield stored
        yield GaugeMetricFamily("dockyard_blobs", "Blobs in the store", value=count)
        repositories = db.read_sync(oq.repository_count)
        yield GaugeMetricFamily("dockyard_repositories", "Repositories", value=repositories)
        maintenance = ctx.maintenance
        if maintenance is not None:
            yield CounterMetricFamily(
                "dockyard_gc_runs", "Scheduled garbage collections", value=maintenance.gc_stats.runs
            )
            yield CounterMetricFamily(
                "dockyard_gc_freed_bytes",
                "Bytes freed by scheduled garbage collection",
                value=maintenance.gc_stats.bytes_freed,
            )
            if maintenance.evictor is not None:
                stats = maintenance.evictor.stats
                yield CounterMetricFamily(
                    "dockyard_cache_evictions", "Cached images evicted", value=stats.images
                )
                yield CounterMetricFamily(
                    "dockyard_cache_evicted_bytes",
                    "Bytes freed by eviction",
                    value=stats.bytes_freed,
                )


# Label values stay few: any other method (a client may send any token) counts as "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LABELS = {resource: resource.value for resource in Resource}
_OTHER_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _route_label(request: web.BaseRequest) -> str:
    path = request.path
    if path.startswith("/v2/") or path == "/v2":
        route = route_of_path(path)  # remembered per path, like dispatch's
        return _LABELS[route.resource] if route else "unknown"
    return path if path in _OTHER_PATHS else "other"


# Upper bounds (seconds) of the request duration histogram.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class RequestStats(Collector):
    """Request counts, durations and body bytes, kept as plain numbers.

    Updated only on the event loop, so no lock: prometheus_client's own Counter and
    Histogram take one per update, which cost a small request a noticeable share of its
    time. Read at scrape time, on the same loop.
    """

    def __init__(self, buckets: tuple[float, ...] = DURATION_BUCKETS) -> None:
        self._bounds = buckets
        self._edges = [repr(float(b)) for b in buckets] + ["+Inf"]  # the `le` labels
        # (route, method, status) -> [per-bucket counts..., +Inf bucket, sum of seconds]
        self._series: dict[tuple[str, str, int], list[float]] = {}
        self.bytes_in = 0
        self.bytes_out = 0

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one finished request and its duration."""
        slots = self._series.get((route, method, status))
        if slots is None:
            slots = self._series[(route, method, status)] = [0] * (len(self._bounds) + 2)
        slots[bisect_left(self._bounds, seconds)] += 1
        slots[-1] += seconds

    def finished(self, request: web.BaseRequest, status: int, sent: int, seconds: float) -> None:
        """Count one answered request: `sent` body bytes, `seconds` from its arrival to the
        last byte of its response (aiohttp's access-log hook calls this)."""
        method = request.method
        self.observe(
            _route_label(request), method if method in _METHODS else "other", status, seconds
        )
        self.bytes_out += sent
        self.bytes_in += request.content_length or 0

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "dockyard_http_requests",
            "HTTP requests by route, method and status",
            labels=["route", "method", "status"],
        )
        # The histogram is by route and method: the series of each status add up.
        durations: dict[tuple[str, str], list[float]] = {}
        for (route, method, status), slots in sorted(self._series.items()):
            requests.add_metric([route, method, str(status)], sum(slots[:-1]))
            total = durations.setdefault((route, method), [0] * len(slots))
            for i, value in enumerate(slots):
                total[i] += value
        yield requests
        latency = HistogramMetricFamily(
            "dockyard_http_request_duration_seconds",
            "Time from a request's arrival to the last byte of its response",
            labels=["route", "method"],
        )
        for (route, method), slots in durations.items():
            cumulative = list(accumulate(slots[:-1]))
            latency.add_metric(
                [route, method], list(zip(self._edges, cumulative, strict=True)), slots[-1]
            )
        yield latency
        yield CounterMetricFamily(
            "dockyard_http_request_bytes", "Request body bytes received", value=self.bytes_in
        )
        yield CounterMetricFamily(
            "dockyard_http_response_bytes", "Response body bytes sent", value=self.bytes_out
        )


class Metrics:
    """The metric collectors of one application."""

    def __init__(self, ctx: ApiContext) -> None:
        self.registry = CollectorRegistry()
        self.requests = RequestStats()
        self.registry.register(self.requests)
        if ctx.cache is not None:
            self.registry.register(UpstreamCollector(ctx.cache))
        self.registry.register(StorageCollector(ctx))


METRICS: web.AppKey[Metrics] = web.AppKey("dockyard_metrics", Metrics)


async def metrics_endpoint(request: web.Request) -> web.StreamResponse:
    """Prometheus text exposition."""
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
