"""The cache's one exception: raised only when a cache is configured to fail closed."""

from __future__ import annotations

from zephyr_core import ZephyrError


class CacheError(ZephyrError):
    """A cache backend failed and the cache is configured with ``fail_open: False``.

    With the default (fail open) a failing Redis never raises: reads miss, writes are
    dropped and cached functions compute their value. The original redis error is
    chained as ``__cause__``.
    """
