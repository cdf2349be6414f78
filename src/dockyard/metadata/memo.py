"""Query results kept while the metadata database stays unchanged."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class GenerationMemo(Generic[K, V]):
    """Results of one read query, valid for one database generation
    (`Database.generation()`).

    The first lookup under a new generation forgets everything: after any commit, by this
    process or another, a result is read afresh, so a memoised read never returns what the
    database no longer holds. Bounded by the total size of the values held (`size_of`);
    the oldest go first, and a value larger than `max_value` is never kept.
    """

    def __init__(self, size_of: Callable[[V], int], max_bytes: int, max_value: int) -> None:
        self._size_of = size_of
        self._max_bytes = max_bytes
        self._max_value = min(max_value, max_bytes)
        self._values: dict[K, V] = {}
        self._bytes = 0
        self._generation: object = None

    def get(self, generation: object, key: K) -> V | None:
        """The value kept for `key` in this generation, or None."""
        if generation != self._generation:
            self._values.clear()
            self._bytes = 0
            self._generation = generation
            return None
        return self._values.get(key)

    def put(self, generation: object, key: K, value: V) -> None:
        """Keep a value read in `generation` (after a `get` of that generation)."""
        size = self._size_of(value)
        if generation != self._generation or size > self._max_value or key in self._values:
            return
        while self._bytes + size > self._max_bytes:
            oldest = next(iter(self._values))
            self._bytes -= self._size_of(self._values.pop(oldest))
        self._values[key] = value
        self._bytes += size

    def __len__(self) -> int:
        return len(self._values)
