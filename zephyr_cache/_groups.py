"""``CacheGroup``: invalidate every cached result computed for one value at once.

Each entry a group caches is tagged with two random tokens read *before* computing:
the group's token (``__group__:{name}``) and the token of the value of the grouped
argument (``__group__:{name}:{value}``). An entry is valid only while both tokens are
unchanged, so ``invalidate(value)`` is one delete (of the value's token) whatever the
number of entries, and a result computed concurrently with an invalidation is never
served afterwards: it carries the old token. Tokens are created with SET NX.
"""

from __future__ import annotations

from typing import Any, Unpack

from zephyr_cache._cache import DEFAULT, Cache, Timeout
from zephyr_cache._decorators import CachedOptions, Decorator, decorator
from zephyr_cache._keys import encode, shorten
from zephyr_cache._registry import get_cache
from zephyr_core import ConfigError


class CacheGroup:
    """A named set of cached functions invalidated together, by argument value.

    Example::

        user_cache = CacheGroup("user")

        @user_cache.cached(timeout=300)
        async def get_user_posts(user_id: int) -> list[dict]: ...

        await user_cache.invalidate(user_id)   # every entry for this user
        await user_cache.clear()               # every entry of the group

    Args:
        name: The group's name (part of its keys: keep it stable).
        cache_name: The named cache holding the group's entries (default "default").
    """

    def __init__(self, name: str, *, cache_name: str | None = None) -> None:
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"CacheGroup name={name!r}: expected a non-empty string, no spaces")
        self.name = name
        self.cache_name = cache_name or "default"

    def __repr__(self) -> str:
        return f"CacheGroup({self.name!r}, cache_name={self.cache_name!r})"

    def group_key(self) -> str:
        return f"__group__:{self.name}"

    def value_key(self, value: Any) -> str:
        return shorten(f"__group__:{self.name}:{encode(value, f'group {self.name!r} value')}")

    def cached(
        self, timeout: Timeout = DEFAULT, *, by: str | None = None, **options: Unpack[CachedOptions]
    ) -> Decorator:
        """Like :func:`cached`, grouped by the first argument (or the one named ``by``).

        Raises:
            ConfigError: ``cache_name`` names another cache than the group's.
        """
        cache_name = options.get("cache_name")
        if cache_name is not None and cache_name != self.cache_name:
            raise ConfigError(
                f"{self!r}.cached(cache_name={cache_name!r}): a group's entries live in "
                f"its own cache ({self.cache_name!r}): pass cache_name to CacheGroup()",
                field="cache_name",
            )
        options["cache_name"] = self.cache_name
        return decorator(timeout, options, group=self, by=by)

    async def invalidate(self, value: Any) -> None:
        """Drop every entry of the group computed for ``value`` (in every process)."""
        cache = self._cache()
        await cache.delete_entry(cache.full_key(self.value_key(value)))

    async def clear(self) -> None:
        """Drop every entry of the group."""
        cache = self._cache()
        await cache.delete_entry(cache.full_key(self.group_key()))

    def _cache(self) -> Cache:
        return get_cache(self.cache_name)
