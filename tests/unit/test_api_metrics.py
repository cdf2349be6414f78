"""The request metrics: plain counters on the event loop, exposed in Prometheus' format."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dockyard.api.metrics import DURATION_BUCKETS, RequestStats


def scrape(stats: RequestStats) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> {sorted labels: value} from the text exposition."""
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def test_requests_are_counted_by_route_method_and_status() -> None:
    stats = RequestStats()
    for _ in range(3):
        stats.observe("manifest", "GET", 200, 0.0004)
    stats.observe("manifest", "GET", 404, 0.0004)
    stats.observe("blob", "HEAD", 200, 0.002)
    counts = scrape(stats)["dockyard_http_requests_total"]
    assert counts == {
        (("method", "GET"), ("route", "manifest"), ("status", "200")): 3,
        (("method", "GET"), ("route", "manifest"), ("status", "404")): 1,
        (("method", "HEAD"), ("route", "blob"), ("status", "200")): 1,
    }


def test_durations_form_a_cumulative_histogram() -> None:
    stats = RequestStats()
    for seconds in (0.0005, 0.001, 0.003, 0.04, 100.0):
        stats.observe("manifest", "GET", 200, seconds)
    samples = scrape(stats)
    key = (("method", "GET"), ("route", "manifest"))
    buckets = {
        dict(labels)["le"]: value
        for labels, value in samples["dockyard_http_request_duration_seconds_bucket"].items()
    }
    # An observation equal to a bound counts in that bucket (le = less than or equal).
    assert buckets["0.001"] == 2
    assert buckets["0.0025"] == 2
    assert buckets["0.005"] == 3
    assert buckets["0.025"] == 3
    assert buckets["0.05"] == 4
    assert buckets["30.0"] == 4
    assert buckets["+Inf"] == 5
    assert len(buckets) == len(DURATION_BUCKETS) + 1
    assert samples["dockyard_http_request_duration_seconds_count"][key] == 5
    total = samples["dockyard_http_request_duration_seconds_sum"][key]
    assert abs(total - 100.0445) < 1e-9


def test_body_bytes_are_totals() -> None:
    stats = RequestStats()
    stats.bytes_in += 100
    stats.bytes_out += 7
    stats.bytes_out += 3
    samples = scrape(stats)
    assert samples["dockyard_http_request_bytes_total"] == {(): 100}
    assert samples["dockyard_http_response_bytes_total"] == {(): 10}


def test_an_answered_request_is_counted_by_its_route_with_its_bytes() -> None:
    stats = RequestStats()
    stats.finished(make_mocked_request("GET", "/v2/team/app/manifests/v1"), 200, 527, 0.0004)
    upload = make_mocked_request(
        "PUT", "/v2/team/app/blobs/uploads/u-1?digest=x", headers={"Content-Length": "1000"}
    )
    stats.finished(upload, 201, 0, 0.003)
    stats.finished(make_mocked_request("BREW", "/coffee"), 404, 19, 0.0001)
    stats.finished(make_mocked_request("GET", "/v2/team/app/nothing"), 404, 80, 0.0001)
    stats.finished(make_mocked_request("GET", "/healthz"), 200, 2, 0.0001)
    samples = scrape(stats)
    assert samples["dockyard_http_requests_total"] == {
        (("method", "GET"), ("route", "manifest"), ("status", "200")): 1,
        (("method", "PUT"), ("route", "upload"), ("status", "201")): 1,
        (("method", "other"), ("route", "other"), ("status", "404")): 1,
        (("method", "GET"), ("route", "unknown"), ("status", "404")): 1,
        (("method", "GET"), ("route", "/healthz"), ("status", "200")): 1,
    }
    assert samples["dockyard_http_response_bytes_total"] == {(): 527 + 19 + 80 + 2}
    assert samples["dockyard_http_request_bytes_total"] == {(): 1000}
    key = (("method", "PUT"), ("route", "upload"))
    assert samples["dockyard_http_request_duration_seconds_sum"][key] == 0.003
