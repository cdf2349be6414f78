"""Structured logging: one JSON object per line (or key=value text), level from config."""

from __future__ import annotations

import json
import logging
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


def configure_logging(level: str, formatter: str, fields: dict[str, Any]) -> None:
    """Send every `dockyard` logger to stderr in the configured format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter(fields) if formatter == "text" else JsonFormatter(fields))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
