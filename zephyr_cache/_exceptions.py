"""The cache's one exception: raised only when a cache is configured to fail closed."""

from __future__ import annotations

from zephyr_core import ZephyrError


class CacheError(ZephyrError):
    """A cache call failed in a way the caller must hear about.

    Raised when a cache configured with ``fail_open: False`` fails; by calls that never
    fail open (``incr``, and ``add``, while Redis is down or when the call fails); when
    ``incr`` would overflow a signed 64-bit integer; and for bad warmer names. With the
    default (fail open) other calls on a failing Redis never raise: reads miss, writes
    are dropped and cached functions compute their value. A Redis error is chained as
    ``__cause__``.
    """
