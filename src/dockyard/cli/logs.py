"""Structured logging: one JSON object per line (or key=value text), level from config."""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any

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
