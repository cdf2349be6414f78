"""The access-log sink: one JSON object (or key=value text) per request, handed over in batches."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from dockyard.cli import logs
from dockyard.cli.logs import AccessLogSink

ODD = [
    "/v2/a/manifests/v1",
    '/v2/"quoted"/manifests/x',
    "/v2/back\\slash/blobs/y",
    "/v2/ctrl\x01\x1f\x7f/tags/list",
    "/v2/ünïcödé/manifests/☃",
    "/v2/new\nline?ns=docker.io",
    "",
]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[list[logging.LogRecord]]:
    handler = Collect()
    logger = logging.getLogger("dockyard.access")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def lines(records: list[logging.LogRecord]) -> list[str]:
    assert all(getattr(r, "preformatted", False) for r in records)
    return [line for r in records for line in r.getMessage().split("\n")]


def test_json_lines_carry_every_field_exactly(collected: list[logging.LogRecord]) -> None:
    sink = AccessLogSink("json", {"worker": 1, "service": 'dock"yard'})
    for i, path in enumerate(ODD):
        sink.request("GET", path, 200 + i, 10 * i, 0.0012345, "127.0.0.1", f"agent {path}")
    sink.request("HEAD", "/v2/", 401, 0, 2.5, None, "")
    sink.flush()
    entries = [json.loads(line) for line in lines(collected)]
    assert len(entries) == len(ODD) + 1
    for i, (entry, path) in enumerate(zip(entries, ODD, strict=False)):
        assert entry["path"] == path
        assert entry["user_agent"] == f"agent {path}"
        assert entry["status"] == 200 + i
        assert entry["bytes"] == 10 * i
        assert entry["duration_ms"] == 1.234
        assert entry["remote"] == "127.0.0.1"
        assert entry["method"] == "GET"
        assert entry["worker"] == 1
        assert entry["service"] == 'dock"yard'
        assert entry["level"] == "info"
        assert entry["logger"] == "dockyard.access"
        assert entry["msg"] == "request"
        assert entry["time"].endswith("Z")
    last = entries[-1]
    assert (last["method"], last["remote"], last["user_agent"], last["duration_ms"]) == (
        "HEAD",
        None,
        "",
        2500.0,
    )


def test_every_line_is_one_line(collected: list[logging.LogRecord]) -> None:
    sink = AccessLogSink("json", {})
    sink.request("GET", "/a\nb\r\nc", 200, 1, 0.001, "::1", "x\ny")
    sink.flush()
    assert len(lines(collected)) == 1


def test_text_lines(collected: list[logging.LogRecord]) -> None:
    sink = AccessLogSink("text", {"worker": 0})
    sink.request("PUT", '/v2/"a"/manifests/v1', 201, 0, 0.5, "10.0.0.1", "skopeo")
    sink.flush()
    (line,) = lines(collected)
    assert " info dockyard.access: request " in line
    assert 'path="/v2/\\"a\\"/manifests/v1"' in line
    assert "status=201" in line
    assert 'remote="10.0.0.1"' in line
    assert "worker=0" in line


def test_repeating_values_are_kept_within_a_bound(
    collected: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "_SEEN_MAX", 4)
    sink = AccessLogSink("json", {})
    for i in range(20):
        sink.request("GET", "/", 200, 0, 0.0, f"10.0.0.{i}", f"agent-{i % 3}")
    assert len(sink._seen) <= 4
    sink.flush()
    entries = [json.loads(line) for line in lines(collected)]
    assert [e["remote"] for e in entries] == [f"10.0.0.{i}" for i in range(20)]
    assert [e["user_agent"] for e in entries] == [f"agent-{i % 3}" for i in range(20)]


def test_flush_without_lines_logs_nothing(collected: list[logging.LogRecord]) -> None:
    AccessLogSink("json", {}).flush()
    assert collected == []
