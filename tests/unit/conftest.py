"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from tests.unit.loops import LOOPS, Run


@pytest.fixture(params=sorted(LOOPS))
def run_on(request: pytest.FixtureRequest) -> Run:
    """Runs a coroutine to completion on each event loop in turn."""
    return LOOPS[request.param]
