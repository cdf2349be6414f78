"""dockyard.cli.allocator: the glibc thresholds `dockyard serve` sets, and where it cannot."""

from __future__ import annotations

import ctypes
import platform
from typing import Any

import pytest

from dockyard.cli import allocator


class _Libc:
    def __init__(self, answer: int = 1) -> None:
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


@pytest.fixture(autouse=True)
def _no_operator_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in allocator.OPERATOR_SETTINGS:
        monkeypatch.delenv(name, raising=False)


def test_sets_the_trim_and_mmap_thresholds() -> None:
    libc = _Libc()
    assert allocator.keep_freed_memory(libc)  # type: ignore[arg-type]
    assert libc.calls == [
        (allocator.M_TRIM_THRESHOLD, allocator.TRIM_THRESHOLD),
        (allocator.M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD),
    ]
    # Reads of up to 256 KiB come from the heap, and more than one upload's worth of
    # freed heap is kept.
    assert allocator.MMAP_THRESHOLD > 256 << 10
    assert allocator.TRIM_THRESHOLD >= 16 << 20


@pytest.mark.parametrize("name", allocator.OPERATOR_SETTINGS)
def test_an_operators_malloc_settings_are_kept(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(name, "131072")
    libc = _Libc()
    assert not allocator.keep_freed_memory(libc)  # type: ignore[arg-type]
    assert libc.calls == []


def test_a_refusal_or_a_missing_mallopt_is_reported() -> None:
    assert not allocator.keep_freed_memory(_Libc(answer=0))  # type: ignore[arg-type]
    assert not allocator.keep_freed_memory(object())  # type: ignore[arg-type]


def test_other_c_libraries_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[Any] = []
    monkeypatch.setattr(platform, "libc_ver", lambda: ("", ""))
    monkeypatch.setattr(ctypes, "CDLL", lambda *a: loaded.append(a))
    assert not allocator.keep_freed_memory()
    assert loaded == []


def test_the_real_c_library_accepts_them_where_it_is_glibc() -> None:
    assert allocator.keep_freed_memory() == (platform.libc_ver()[0] == "glibc")
