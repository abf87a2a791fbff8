"""The named caches of this process: ``configure()``, ``get_cache()`` and ``cache``.

Caches are built on first use from the validated configuration; without
``configure()`` the "default" cache comes from Settings (CACHE_BACKEND, CACHE_URL,
CACHE_DEFAULT_TIMEOUT, CACHE_KEY_PREFIX).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Unpack

from zephyr_cache._cache import DEFAULT, Cache, Timeout
from zephyr_cache._cluster_store import ClusterStore
from zephyr_cache._config import CacheConfig, from_settings, parse
from zephyr_cache._failopen import Guard
from zephyr_cache._invalidation import InvalidationChannel, channel_for, stop_all
from zephyr_cache._memory import MemoryBackend
from zephyr_cache._redis import RedisConnector, RedisStore
from zephyr_cache._runner import started_runner
from zephyr_cache._serializers import make_serializer
from zephyr_cache._shared_stats import shared
from zephyr_cache._stats import CacheStats, TierStats, track
from zephyr_cache._stores import DummyStore, MemoryStore, Store
from zephyr_cache._tiered import TieredStore
from zephyr_core import ConfigError, get_settings, mask_url

if TYPE_CHECKING:
    from zephyr_cache._decorators import CachedOptions, Decorator
    from zephyr_cache._warmers import W

_lock = threading.RLock()
_configs: dict[str, CacheConfig] | None = None
_configured = False
_caches: dict[str, Cache] = {}
# Shared per named cache, whichever caches use it as a tier:
_memory: dict[str, MemoryBackend] = {}
_connectors: dict[str, RedisConnector] = {}
_guards: dict[str, Guard] = {}


def configure(caches: Mapping[str, Mapping[str, Any]]) -> None:
    """Replace the named caches with ``caches`` (validated now).

    Example::

        configure({
            "default": {"backend": "redis", "url": "redis://localhost:6379/1", "timeout": 300},
            "local": {"backend": "memory", "max_size": 1000, "timeout": 60},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        })

    Raises:
        ConfigError: naming the cache and option (``caches['local'].max_size``).
    """
    global _configs, _configured
    configs = parse(caches, get_settings())
    with _lock:
        _teardown()
        _configs = configs
        _configured = True


def is_configured() -> bool:
    """True once ``configure()`` was called (and not ``reset()``)."""
    return _configured


def configs() -> dict[str, CacheConfig]:
    """The configuration in force (Settings' default when not configured)."""
    global _configs
    with _lock:
        if _configs is None:
            _configs = from_settings(get_settings())
        return dict(_configs)


def get_cache(name: str = "default") -> Cache:
    """The named cache (built on first use).

    Raises:
        ConfigError: no cache has that name.
    """
    found = _caches.get(name)
    if found is not None:
        return found
    with _lock:
        found = _caches.get(name)
        if found is None:
            current = configs()
            if name not in current:
                raise ConfigError(
                    f"no cache named {name!r} (configured: {', '.join(sorted(current))})",
                    field="cache_name",
                )
            found = _caches[name] = _build(current[name], current)
        return found


def built() -> list[Cache]:
    """The caches built so far in this process."""
    return list(_caches.values())


def _publishes(name: str, current: dict[str, CacheConfig]) -> bool:
    """A Redis cache announces writes when a tiered cache has a local tier above it."""
    for config in current.values():
        if name in config.tiers:
            above = config.tiers[: config.tiers.index(name)]
            if any(current[t].backend == "memory" for t in above):
                return True
    return False


def _store(
    config: CacheConfig, stats: TierStats, current: dict[str, CacheConfig], owner: CacheConfig
) -> Store:
    """The store for cache ``config`` (a tier of ``owner``, or ``owner`` itself)."""
    if config.backend == "memory":
        backend = _memory.get(config.name)
        if backend is None:
            backend = _memory[config.name] = MemoryBackend(config.max_size)
        # In a tiered cache, the memory cache's own timeout caps how long it keeps entries.
        cap = config.timeout if owner is not config else None
        return MemoryStore(config.name, stats, backend, cap)
    if config.backend == "redis":
        assert config.url is not None
        connector = _connectors.get(config.name)
        if connector is None:
            connector = _connectors[config.name] = RedisConnector(
                config.url, config.operation_timeout, config.max_connections
            )
        guard = _guards.get(config.name)
        if guard is None:
            where = f"cache {config.name!r} (redis at {mask_url(config.url)})"
            guard = _guards[config.name] = Guard(where, config.fail_open, config.cooldown)
        kind = ClusterStore if connector.kind == "cluster" else RedisStore
        store = kind(
            config.name,
            stats,
            connector,
            make_serializer(owner.serializer, owner.signing_key),
            guard,
        )
        store.publish = _publishes(config.name, current) if owner is config else True
        return store
    return DummyStore(config.name, stats)


def _build(config: CacheConfig, current: dict[str, CacheConfig]) -> Cache:
    built = _build_cache(config, current)
    store = built._store
    redis = store if isinstance(store, RedisStore) else None
    if isinstance(store, TieredStore):
        redis = next((t for t in store.tiers if isinstance(t, RedisStore)), None)
    if redis is not None:
        shared.add(built._stats, redis.connector, config.key_prefix)
    return built


def _build_cache(config: CacheConfig, current: dict[str, CacheConfig]) -> Cache:
    serializer = make_serializer(config.serializer, config.signing_key)
    if config.backend != "tiered":
        stats = CacheStats(config.name, [config.name])
        store = _store(config, stats.tiers[config.name], current, config)
        return Cache(config, store, serializer, track(stats))
    stats = CacheStats(config.name, list(config.tiers))
    tiers = [_store(current[t], stats.tiers[t], current, config) for t in config.tiers]
    channel: InvalidationChannel | None = None
    first_shared = next((i for i, t in enumerate(tiers) if not t.local), None)
    if first_shared is not None and any(t.local for t in tiers[:first_shared]):
        shared = tiers[first_shared]
        assert isinstance(shared, RedisStore)
        channel = channel_for(shared.connector.url)
        for tier in tiers[:first_shared]:
            if isinstance(tier, MemoryStore):
                channel.attach(tier.backend)
        # Local tiers below the shared one would never hear about changes: never use them.
        tiers = tiers[: first_shared + 1] + [t for t in tiers[first_shared + 1 :] if not t.local]
    return Cache(
        config, TieredStore(config.name, stats.total, tiers, channel), serializer, track(stats)
    )


def _teardown() -> None:
    """Forget built caches: stop listeners and free what is not bound to a loop."""
    stop_all()
    shared.stop()
    for backend in _memory.values():
        backend.close_sync()
    connectors = list(_connectors.values())
    _close_runner_pools(connectors)
    _caches.clear()
    _memory.clear()
    _connectors.clear()
    _guards.clear()


def _close_runner_pools(connectors: list[RedisConnector]) -> None:
    background = started_runner()
    if background is None or not any(background.loop in c.loops() for c in connectors):
        return

    async def close() -> None:
        for connector in connectors:
            await connector.aclose()

    background.submit(close()).result(5)


async def close_caches() -> None:
    """Flush shared counters, then close every cache's connections on the running loop.

    Call it when an event loop that used the caches ends (an app's shutdown, a test),
    so no connection is left for the garbage collector.
    """
    await shared.flush()
    for connector in list(_connectors.values()):
        await connector.aclose()


def reset() -> None:
    """Forget ``configure()`` and every built cache (Settings apply again)."""
    global _configs, _configured
    with _lock:
        _teardown()
        _configs = None
        _configured = False


class _DefaultCache:
    """``zephyr_cache.cache``: the "default" cache, looked up on every use.

    Looking it up lazily lets ``configure()`` run after modules decorated functions
    with ``@cache.cached``.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(get_cache("default"), name)

    # Decorating must not build the cache: configure() may come later.
    def cached(self, timeout: Timeout = DEFAULT, **options: Unpack[CachedOptions]) -> Decorator:
        from zephyr_cache._decorators import cached

        return cached(timeout, **options)

    def warmer(self, name: str) -> Callable[[W], W]:
        from zephyr_cache._warmers import warmer

        return warmer(name)

    async def warm(self, name: str | None = None) -> list[str]:
        from zephyr_cache._warmers import warm

        return await warm(name)

    def __repr__(self) -> str:
        return "<zephyr_cache.cache: the 'default' cache>"


cache: Cache = _DefaultCache()  # type: ignore[assignment]
