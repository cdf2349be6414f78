"""The event loops Dockyard's code runs on: asyncio's own (tests, most commands) and uvloop
(`dockyard serve`). Tests of code that touches the loop run on both (the `run_on` fixture in
conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

Run = Callable[[Coroutine[Any, Any, Any]], Any]

LOOPS: dict[str, Run] = {
    "asyncio": asyncio.run,
    "uvloop": uvloop.run,
}
