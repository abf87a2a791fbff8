"""Stores: one uniform async interface over each kind of tier (Redis's is in ``_redis``).

A store works on full keys (prefix and version already applied) and returns ``MISSING``
for absent entries. Memory stores keep Python objects, Redis stores keep serialized
payloads; ``set`` receives both so a tiered cache serializes a value once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zephyr_cache._memory import MISSING, MemoryBackend
from zephyr_cache._stats import TierStats


class Store:
    """Interface of a tier (see module docstring)."""

    local = False  # an in-process tier, kept coherent by invalidation
    holds_objects = False

    def __init__(self, name: str, stats: TierStats) -> None:
        self.name = name
        self.stats = stats

    async def get(self, key: str) -> Any:
        raise NotImplementedError

    async def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        return await self.get(key), None

    async def get_many(self, keys: Sequence[str]) -> list[Any]:
        return [await self.get(key) for key in keys]

    async def get_many_with_ttl(self, keys: Sequence[str]) -> list[tuple[Any, float | None]]:
        return [(value, None) for value in await self.get_many(keys)]

    async def set(self, key: str, value: Any, payload: bytes, ttl: float | None) -> bool:
        raise NotImplementedError

    async def set_many(self, items: Sequence[tuple[str, Any, bytes]], ttl: float | None) -> bool:
        for key, value, payload in items:
            await self.set(key, value, payload, ttl)
        return True

    async def add(
        self, key: str, value: Any, payload: bytes, ttl: float | None, *, strict: bool = False
    ) -> bool:
        """Store only if absent; True when stored. ``strict``: a Redis tier that cannot
        answer raises CacheError instead of answering True (see ``_failopen``)."""
        raise NotImplementedError

    async def exists(self, key: str) -> bool:
        """True when ``key`` holds an entry (without reading, decoding or counting it)."""
        return await self.ttl(key) is not MISSING

    async def delete(self, key: str) -> bool:
        raise NotImplementedError

    async def delete_many(self, keys: Sequence[str]) -> None:
        for key in keys:
            await self.delete(key)

    async def clear(self, prefix: str) -> None:
        raise NotImplementedError

    async def incr(self, key: str, delta: int, ttl: float | None) -> int:
        raise NotImplementedError

    async def ttl(self, key: str) -> Any:
        raise NotImplementedError

    async def expire(self, key: str, ttl: float | None) -> bool:
        raise NotImplementedError

    async def release(self, key: str, value: Any, payload: bytes) -> None:
        await self.delete(key)

    async def ping(self) -> None:
        """Raise when the backend does not answer."""

    async def aclose(self) -> None:
        """Release this loop's connections."""

    def close_sync(self) -> None:
        """Release what is not bound to a loop."""


class DummyStore(Store):
    """Caches nothing: every read misses, every write is dropped."""

    async def get(self, key: str) -> Any:
        self.stats.misses += 1
        return MISSING

    async def set(self, key: str, value: Any, payload: bytes, ttl: float | None) -> bool:
        return True

    async def add(
        self, key: str, value: Any, payload: bytes, ttl: float | None, *, strict: bool = False
    ) -> bool:
        return True

    async def delete(self, key: str) -> bool:
        return False

    async def clear(self, prefix: str) -> None:
        return None

    async def incr(self, key: str, delta: int, ttl: float | None) -> int:
        return delta

    async def ttl(self, key: str) -> Any:
        return MISSING

    async def expire(self, key: str, ttl: float | None) -> bool:
        return False


class MemoryStore(Store):
    """An in-process :class:`MemoryBackend`; ``cap`` bounds entry lifetimes in seconds."""

    local = True
    holds_objects = True

    def __init__(
        self, name: str, stats: TierStats, backend: MemoryBackend, cap: float | None
    ) -> None:
        super().__init__(name, stats)
        self.backend = backend
        self.cap = cap

    def capped(self, ttl: float | None) -> float | None:
        if self.cap is None:
            return ttl
        return self.cap if ttl is None else min(ttl, self.cap)

    def peek(self, key: str) -> Any:
        """Synchronous read, counted."""
        value = self.backend.lookup(key)
        if value is MISSING:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return value

    async def get(self, key: str) -> Any:
        return self.peek(key)

    async def set(self, key: str, value: Any, payload: bytes, ttl: float | None) -> bool:
        self.backend.store(key, value, ttl)
        return True

    async def add(
        self, key: str, value: Any, payload: bytes, ttl: float | None, *, strict: bool = False
    ) -> bool:
        return self.backend.insert(key, value, ttl)

    async def delete(self, key: str) -> bool:
        return self.backend.remove(key)

    async def clear(self, prefix: str) -> None:
        self.backend.flush()

    async def incr(self, key: str, delta: int, ttl: float | None) -> int:
        return self.backend.add_int(key, delta, ttl)

    async def ttl(self, key: str) -> Any:
        return self.backend.remaining(key)

    async def expire(self, key: str, ttl: float | None) -> bool:
        return self.backend.touch(key, ttl)

    async def release(self, key: str, value: Any, payload: bytes) -> None:
        if self.backend.lookup(key) == value:
            self.backend.remove(key)

    def close_sync(self) -> None:
        self.backend.close_sync()
