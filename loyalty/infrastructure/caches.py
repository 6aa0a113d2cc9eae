"""Process-local caches of configuration read on hot paths (earning rules, the tier ladder,
live bonus offers, webhook topics, API key checks).

Each cache registers itself when created, so `reset_all()` forgets every one of them: tests
call it between tests instead of reaching into the modules that own the caches. The maximum
age is given on each read, not fixed at creation, so that it stays the owning module's
constant (which a test may patch).
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class _Resettable(Protocol):
    name: str

    def clear(self) -> None: ...


_registry: list[_Resettable] = []


def reset_all() -> None:
    """Forget every cached value in this process."""
    for cache in _registry:
        cache.clear()


def registered() -> list[str]:
    """The names of the caches created so far, in creation order."""
    return [cache.name for cache in _registry]


class Cache(Generic[T]):
    """One value with the time it was read."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._entry: tuple[float, T] | None = None
        _registry.append(self)

    def get(self, max_age: float) -> T | None:
        """The value if it was put less than max_age seconds ago, else None."""
        entry = self._entry
        if entry is not None and time.monotonic() - entry[0] < max_age:
            return entry[1]
        return None

    def put(self, value: T) -> None:
        self._entry = (time.monotonic(), value)

    def clear(self) -> None:
        self._entry = None


class KeyedCache(Generic[K, T]):
    """Values by key, each with the time it was read; at most `kept` keys (when full, it
    starts again empty rather than tracking which key is oldest)."""

    def __init__(self, name: str, *, kept: int) -> None:
        self.name = name
        self.kept = kept
        self._entries: dict[K, tuple[float, T]] = {}
        _registry.append(self)

    def get(self, key: K, max_age: float) -> T | None:
        """The value for key if it was put less than max_age seconds ago, else None."""
        entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry[0] < max_age:
            return entry[1]
        return None

    def put(self, key: K, value: T) -> None:
        if len(self._entries) >= self.kept:
            self._entries.clear()
        self._entries[key] = (time.monotonic(), value)

    def discard(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
