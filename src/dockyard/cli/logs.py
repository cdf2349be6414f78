"""Structured logging: one JSON object per line (or key=value text), level from config."""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import time
from collections.abc import Callable
from functools import lru_cache
from json.encoder import encode_basestring_ascii
from typing import Any

# json.dumps of a str, without its per-call setup (the same C function, the same output).
_json_string: Callable[[str], str] = encode_basestring_ascii
# Distinct repeating values (user agents, addresses) whose JSON the access log keeps.
_SEEN_MAX = 1024

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}


class JsonFormatter(logging.Formatter):
    def __init__(self, static_fields: dict[str, Any]) -> None:
        super().__init__()
        self._static = static_fields

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "preformatted", False):
            return record.getMessage()
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self._static,
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, static_fields: dict[str, Any]) -> None:
        super().__init__()
        self._static = static_fields

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "preformatted", False):
            return record.getMessage()
        fields = {**self._static, **getattr(record, "fields", {})}
        pairs = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
        line = f"{self.formatTime(record)} {record.levelname.lower()} {record.name}: "
        line += f"{record.getMessage()} {pairs}".rstrip()
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _Prepared(logging.handlers.QueueHandler):
    """Queues records as they are: formatting happens on the writer thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


def configure_logging(
    level: str, formatter: str, fields: dict[str, Any]
) -> logging.handlers.QueueListener:
    """Send every logger to stderr in the configured format, from a writer thread.

    Formatting and writing one JSON line per request is a good share of a small request's
    cost; a queue moves it off the event loop. Stop the returned listener to flush.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter(fields) if formatter == "text" else JsonFormatter(fields))
    log_queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = logging.handlers.QueueListener(log_queue, handler)
    root = logging.getLogger()
    root.handlers[:] = [_Prepared(log_queue)]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    listener.start()
    return listener


@lru_cache(maxsize=4)
def _second_stamp(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


class AccessLogSink:
    """Access-log lines built cheaply on the event loop and handed over in batches.

    One LogRecord per request, formatted on another thread, still costs a large share of a
    small request; here a line is a few string operations, and `flush` (run every fraction
    of a second) passes the batch to the logging thread as one pre-formatted record.
    """

    def __init__(self, formatter: str, static_fields: dict[str, Any]) -> None:
        self._text = formatter == "text"
        self._static = static_fields
        self._static_json = "".join(
            f", {json.dumps(k)}: {json.dumps(v, default=str)}" for k, v in static_fields.items()
        )
        self._lines: list[str] = []
        self._seen: dict[tuple[str, str | None, str], tuple[str, str, str]] = {}
        self._second = -1
        self._head = ""  # of a JSON line, up to the milliseconds of `_second`
        self._middle = (
            '", "level": "info", "logger": "dockyard.access", "msg": "request"'
            f'{self._static_json}, "method": '
        )
        self._logger = logging.getLogger("dockyard.access")

    def _time(self, now: float) -> str:
        second = int(now)
        return f"{_second_stamp(second)}.{int((now - second) * 1000):03d}Z"

    def request(
        self,
        method: str,
        path: str,
        status: int,
        size: int,
        seconds: float,
        remote: str | None,
        user_agent: str,
    ) -> None:
        now = time.time()
        if self._text:
            duration = round(seconds * 1000, 3)
            fields = {
                **self._static,
                "method": method,
                "path": path,
                "status": status,
                "bytes": size,
                "duration_ms": duration,
                "remote": remote,
                "user_agent": user_agent,
            }
            pairs = " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in fields.items())
            self._lines.append(f"{self._time(now)} info dockyard.access: request {pairs}")
            return
        second = int(now)
        if second != self._second:
            self._second = second
            self._head = f'{{"time": "{_second_stamp(second)}.'
        client = self._seen.get((method, remote, user_agent))
        if client is None:
            client = self._client(method, remote, user_agent)
        quoted_method, quoted_remote, quoted_agent = client
        self._lines.append(
            f"{self._head}{int((now - second) * 1000):03d}Z{self._middle}{quoted_method}, "
            f'"path": {_json_string(path)}, "status": {status}, "bytes": {size}, '
            f'"duration_ms": {seconds * 1000:.3f}, "remote": {quoted_remote}, '
            f'"user_agent": {quoted_agent}}}'
        )

    def _client(self, method: str, remote: str | None, user_agent: str) -> tuple[str, str, str]:
        """The JSON of the values that repeat from request to request (method, client
        address, user agent), worked out once for each combination."""
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()
        client = self._seen[(method, remote, user_agent)] = (
            _json_string(method),
            "null" if remote is None else _json_string(remote),
            _json_string(user_agent),
        )
        return client

    def flush(self) -> None:
        """Hand the lines gathered so far to the log writer."""
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        record = self._logger.makeRecord(
            self._logger.name, logging.INFO, __file__, 0, "\n".join(lines), (), None
        )
        record.preformatted = True
        self._logger.handle(record)
