"""``Cache``: one named cache's API over its store (memory, Redis, dummy or tiered)."""

from __future__ import annotations

import asyncio
import enum
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Unpack

from zephyr_cache._config import CacheConfig, parse_timeout
from zephyr_cache._flights import single_flight
from zephyr_cache._memory import MISSING
from zephyr_cache._serializers import Serializer
from zephyr_cache._stats import CacheStats
from zephyr_cache._stores import MemoryStore, Store
from zephyr_cache._tiered import TieredStore

if TYPE_CHECKING:
    from zephyr_cache._decorators import CachedOptions, Decorator
    from zephyr_cache._warmers import W


class _Default(enum.Enum):
    DEFAULT = "the cache's default timeout"


#: Use the cache's configured timeout (the default of every ``timeout=`` argument).
DEFAULT = _Default.DEFAULT

Timeout = float | None | _Default


class Cache:
    """A named cache: ``get``/``set``/... on keys, ``cached`` for functions.

    Get one with :func:`get_cache`; ``zephyr_cache.cache`` is the "default" one.
    Keys are strings; the stored key is ``{key_prefix}:{version}:{key}``. Timeouts are
    seconds; ``None`` or 0 means the entry never expires.
    """

    def __init__(
        self, config: CacheConfig, store: Store, serializer: Serializer, stats: CacheStats
    ) -> None:
        self.name = config.name
        self.config = config
        self.timeout = config.timeout
        self.prefix = f"{config.key_prefix}:{config.version}:"
        self._store = store
        self._serializer = serializer
        self._stats = stats
        self._total = stats.total
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        # Synchronous fast paths: a memory cache answers without awaiting anything,
        # a tiered cache answers hot keys from its local tier the same way.
        self._memory = store if isinstance(store, MemoryStore) else None
        self._tiered = store if isinstance(store, TieredStore) and store.top else None
        self._flights: dict[str, asyncio.Future[Any]] = {}  # get_or_set's single flight

    def __repr__(self) -> str:
        return f"<Cache {self.name!r} {self.config.describe()}>"

    # -- keys and values -------------------------------------------------------

    def full_key(self, key: str) -> str:
        """The key as stored: ``{key_prefix}:{version}:{key}``."""
        if type(key) is not str and not isinstance(key, str):
            raise TypeError(f"cache keys are strings, got {type(key).__name__} {key!r}")
        return self.prefix + key

    def _ttl(self, timeout: Timeout) -> float | None:
        if timeout is DEFAULT:
            return self.timeout
        return parse_timeout(timeout)

    def encode(self, key: str, value: Any) -> tuple[Any, bytes]:
        """Serialize ``value`` once: (the object local tiers keep, the payload)."""
        try:
            payload = self._dumps(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise TypeError(
                f"cache {self.name!r}: the value for {key!r} (a {type(value).__qualname__}) "
                f"cannot be serialised with {self._serializer.name}: {exc}"
            ) from None
        # Local tiers keep what a round trip through Redis would give back (lists for
        # tuples...), so a value reads the same whichever tier answers.
        stored = self._loads(payload) if self._store.holds_objects else None
        return stored, payload

    # -- the API ---------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key``, or ``default`` when absent (or the backend is down)."""
        value = await self.get_entry(self.full_key(key))
        return default if value is MISSING else value

    async def get_entry(self, full_key: str) -> Any:
        """Read a full key; ``MISSING`` when absent. Counts the cache's hit or miss."""
        memory = self._memory
        if memory is not None:
            value = memory.peek(full_key)
        else:
            tiered = self._tiered
            value = MISSING if tiered is None else tiered.peek(full_key)
            if value is MISSING:
                value = await self._store.get(full_key)
        if value is MISSING:
            self._total.misses += 1
        else:
            self._total.hits += 1
        return value

    async def get_entries(self, full_keys: list[str], *, counted: bool = True) -> list[Any]:
        """Read several full keys at once (one round trip to Redis).

        ``counted=False`` leaves the cache's hit/miss counters to the caller (a grouped
        function's lookup reads its tokens too, but is one hit or one miss).
        """
        values = await self._store.get_many(full_keys)
        if not counted:
            return values
        for value in values:
            if value is MISSING:
                self._total.misses += 1
            else:
                self._total.hits += 1
        return values

    def count(self, hit: bool) -> None:
        """Count one read of this cache (see ``get_entries(counted=False)``)."""
        if hit:
            self._total.hits += 1
        else:
            self._total.misses += 1

    async def set(self, key: str, value: Any, timeout: Timeout = DEFAULT) -> bool:
        """Store ``value`` under ``key`` for ``timeout`` seconds.

        Returns False when the write was dropped (the backend is down, failing open).
        Raises ``TypeError`` when the value cannot be serialised.
        """
        full = self.full_key(key)
        stored, payload = self.encode(key, value)
        return await self._store.set(full, stored, payload, self._ttl(timeout))

    async def set_entry(self, full_key: str, value: Any, ttl: float | None) -> bool:
        """Store under a full key (used by decorators and groups)."""
        stored, payload = self.encode(full_key, value)
        return await self._store.set(full_key, stored, payload, ttl)

    async def add_entry(self, full_key: str, value: Any, ttl: float | None) -> bool:
        """Store under a full key only if absent; True when stored."""
        stored, payload = self.encode(full_key, value)
        return await self._store.add(full_key, stored, payload, ttl)

    async def add(self, key: str, value: Any, timeout: Timeout = DEFAULT) -> bool:
        """Store ``value`` under ``key`` only if ``key`` is absent (atomic: Redis ``SET NX``).

        Returns:
            True when this call stored it, False when ``key`` already held an entry.

        Raises:
            CacheError: a Redis tier is down or did not answer. Unlike the other calls,
                ``add`` does not fail open: answering True to every caller would break
                the exclusivity it promises.
            TypeError: the value cannot be serialised.
        """
        full = self.full_key(key)
        ttl = self._ttl(timeout)
        stored, payload = self.encode(key, value)
        return await self._store.add(full, stored, payload, ttl, strict=True)

    async def exists(self, key: str) -> bool:
        """True when ``key`` holds an entry (False while the backend is down)."""
        return await self._store.exists(self.full_key(key))

    async def has_key(self, key: str) -> bool:
        """Alias of :meth:`exists` (django-redis's name)."""
        return await self._store.exists(self.full_key(key))

    async def get_or_set(
        self,
        key: str,
        default: Any | Callable[[], Any] | Callable[[], Awaitable[Any]],
        timeout: Timeout = DEFAULT,
    ) -> Any:
        """The value under ``key``; when absent, store ``default`` and return it.

        A callable ``default`` is called only on a miss (and awaited when it returns an
        awaitable); concurrent misses of ``key`` on one event loop call it once and
        share its result (like ``@cached``). While the backend is down every call
        misses, computes and returns the value (failing open).

        Raises:
            TypeError: the value cannot be serialised.
        """
        full = self.full_key(key)
        ttl = self._ttl(timeout)
        value = await self.get_entry(full)
        if value is not MISSING:
            return value

        async def compute() -> Any:
            fresh = default() if callable(default) else default
            if inspect.isawaitable(fresh):
                fresh = await fresh
            stored, payload = self.encode(key, fresh)
            await self._store.set(full, stored, payload, ttl)
            return fresh

        return await single_flight(self._flights, full, compute)

    async def delete(self, key: str) -> bool:
        """Remove ``key`` from every tier; True when it existed."""
        return await self._store.delete(self.full_key(key))

    async def delete_entry(self, full_key: str) -> bool:
        """Remove a full key from every tier."""
        return await self._store.delete(full_key)

    async def release_entry(self, full_key: str, value: Any) -> None:
        """Delete a full key only if it still holds ``value`` (releasing a lock)."""
        stored, payload = self.encode(full_key, value)
        await self._store.release(full_key, stored, payload)

    async def clear(self) -> None:
        """Remove every entry of this cache (all versions of its key prefix)."""
        await self._store.clear(f"{self.config.key_prefix}:")

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The entries found among ``keys``, as a dict (absent keys are left out)."""
        keys = list(keys)
        values = await self.get_entries([self.full_key(k) for k in keys])
        return {k: v for k, v in zip(keys, values, strict=True) if v is not MISSING}

    async def set_many(self, mapping: Mapping[str, Any], timeout: Timeout = DEFAULT) -> bool:
        """Store every item of ``mapping`` (one round trip to Redis)."""
        items = []
        for key, value in mapping.items():
            stored, payload = self.encode(key, value)
            items.append((self.full_key(key), stored, payload))
        return await self._store.set_many(items, self._ttl(timeout))

    async def incr(self, key: str, delta: int = 1) -> int:
        """Add ``delta`` to the integer under ``key`` (created at 0 with the default
        timeout); returns the new value. Raises ``TypeError`` if it is not an integer."""
        if isinstance(delta, bool) or not isinstance(delta, int):
            raise TypeError(f"delta must be an int, got {delta!r}")
        return await self._store.incr(self.full_key(key), delta, self.timeout)

    async def ttl(self, key: str) -> float | None:
        """Seconds before ``key`` expires; None if it never does; 0.0 if it is absent."""
        left = await self._store.ttl(self.full_key(key))
        return 0.0 if left is MISSING else left

    async def expire(self, key: str, timeout: float | None) -> bool:
        """Give ``key`` a new timeout (None or 0: never expire); False if it is absent."""
        return await self._store.expire(self.full_key(key), parse_timeout(timeout))

    def stats(self) -> dict[str, Any]:
        """Hits, misses, errors and hit ratio of this process, overall and per tier."""
        return {"cache": self.name, **self._stats.as_dict()}

    async def ping(self) -> None:
        """Raise if a Redis tier of this cache does not answer."""
        await self._store.ping()

    async def wait_ready(self, timeout: float = 5.0) -> bool:
        """Wait until local tiers are usable (the invalidation channel is subscribed)."""
        store = self._store
        channel = store.channel if isinstance(store, TieredStore) else None
        if channel is None:
            return True
        channel.ensure()
        ready = await asyncio.to_thread(channel.ready.wait, timeout)
        return ready and channel.healthy

    async def close(self) -> None:
        """Close the connections this event loop opened for this cache."""
        await self._store.aclose()

    # -- decorators and warmers (defined in their own modules) -----------------

    def cached(self, timeout: Timeout = DEFAULT, **options: Unpack[CachedOptions]) -> Decorator:
        """Cache a function's results in this cache: see :func:`zephyr_cache.cached`."""
        from zephyr_cache._decorators import cached

        options["cache_name"] = options.get("cache_name") or self.name
        return cached(timeout, **options)

    def warmer(self, name: str) -> Callable[[W], W]:
        """Register a cache warmer: see :func:`zephyr_cache.warmer`."""
        from zephyr_cache._warmers import warmer

        return warmer(name)

    async def warm(self, name: str | None = None) -> list[str]:
        """Run the warmer ``name`` (or all of them): see :func:`zephyr_cache.warm`."""
        from zephyr_cache._warmers import warm

        return await warm(name)
