"""Fail-open: a Redis that is down or slow costs one timeout, then is skipped a while.

On a backend error the guard, failing open, logs one warning per outage
and bypasses the tier for ``cooldown`` seconds (reads miss, writes are dropped); the
first call after the cooldown tries again, and the first success ends the outage.
Failing closed, the error is raised as :class:`CacheError`.
"""

from __future__ import annotations

import logging
import time

from redis.exceptions import RedisError

from zephyr_cache._exceptions import CacheError

logger = logging.getLogger("zephyr_cache")

#: What a failing backend raises: redis errors (connection, timeout, OOM, readonly),
#: socket errors and asyncio timeouts.
BACKEND_ERRORS = (RedisError, OSError, TimeoutError)

_monotonic = time.monotonic


class Guard:
    """The up/down state of one Redis tier."""

    __slots__ = ("cooldown", "down_until", "fail_open", "in_outage", "where")

    def __init__(self, where: str, fail_open: bool, cooldown: float) -> None:
        self.where = where
        self.fail_open = fail_open
        self.cooldown = cooldown
        self.down_until = 0.0
        self.in_outage = False

    def bypassed(self) -> bool:
        """True while the tier is cooling down after a failure."""
        return bool(self.down_until) and _monotonic() < self.down_until

    def failed(self, exc: BaseException, operation: str) -> None:
        """Start or extend an outage; raise CacheError when failing closed."""
        if not self.fail_open:
            raise CacheError(f"{self.where}: {operation} failed: {exc}") from exc
        if not self.in_outage:
            self.in_outage = True
            logger.warning(
                "%s is unavailable (%s: %s); failing open: reads miss, writes are dropped, "
                "retrying every %gs",
                self.where,
                type(exc).__name__,
                exc,
                self.cooldown,
            )
        self.down_until = _monotonic() + self.cooldown

    def succeeded(self) -> None:
        """End an outage (called only while ``in_outage``)."""
        self.in_outage = False
        self.down_until = 0.0
        logger.info("%s is back; the tier is in use again", self.where)
