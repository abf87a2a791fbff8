"""Named caches over aiocache: memory (W-TinyLFU), Redis, tiered with cross-process
invalidation, decorators with stampede protection, groups, warmers, fail-open.

Example::

    from zephyr_cache import CacheGroup, cache, configure

    configure({"default": {"backend": "redis", "url": "redis://localhost:6379/1"}})

    @cache.cached(timeout=300, key_prefix="user")
    async def get_user_profile(user_id: int) -> dict: ...
"""

from zephyr_cache._cache import Cache
from zephyr_cache._decorators import (
    AsyncCachedFunction,
    CachedOptions,
    SyncCachedFunction,
    cached,
)
from zephyr_cache._exceptions import CacheError
from zephyr_cache._groups import CacheGroup
from zephyr_cache._registry import cache, close_caches, configure, get_cache, reset
from zephyr_cache._serializers import BadSignature
from zephyr_cache._warmers import warm, warmer, warmers

__all__ = [
    "AsyncCachedFunction",
    "BadSignature",
    "Cache",
    "CacheError",
    "CacheGroup",
    "CachedOptions",
    "SyncCachedFunction",
    "cache",
    "cached",
    "close_caches",
    "configure",
    "get_cache",
    "reset",
    "warm",
    "warmer",
    "warmers",
]
