"""Fail-open: a Redis that is down costs little, and only a real outage counts as one.

Each Redis cache has a :class:`Guard`. A failed call is classified (:func:`classify`):

- ``"outage"``: the server cannot be reached (refused, reset, closed, still loading; on
  Redis Cluster also ``CLUSTERDOWN`` and an uncovered slot, as during a fail-over).
  Failing open, the guard logs one warning per outage and bypasses the tier for
  ``cooldown`` seconds (reads miss, writes are dropped); the first call after the
  cooldown tries again and the first success ends the outage.
- ``"timeout"``: a connect or operation timeout. One slow call (a large value, a
  stalled event loop) is that call's failure only; the tier is tripped when calls keep
  timing out for at least ``operation_timeout`` with no success in between (the server
  has answered nothing for two timeout periods).
- ``"call"``: the call's own error (``WRONGTYPE``, a pool that stayed busy past its
  wait, a cluster node's connection limit, out of memory): never an outage. A ``get``
  treats it as a miss; a write is dropped; both log a warning naming the key.

Failing closed (``fail_open: False``) every failure raises :class:`CacheError` naming
the operation and the key.

Calls that cannot fail open: ``incr`` (a made-up count would look real) and an
exclusive ``add`` (every caller would believe it won) raise :class:`CacheError` while
the tier is down or when the call fails. They use :meth:`Guard.refuse` (raise now if the
tier is bypassed) and :meth:`Guard.failed` with ``strict=True``; a store's
``add(..., strict=True)`` is that contract for callers above the store.

While the tier is down, deletes and clears that could not be confirmed are
remembered (:class:`Unconfirmed`, bounded) so the store replays them once Redis
answers again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from redis.exceptions import (
    ClusterDownError,
    MaxConnectionsError,
    RedisClusterException,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from zephyr_cache._exceptions import CacheError

logger = logging.getLogger("zephyr_cache")

#: What a failing backend raises: redis errors (connection, timeout, OOM, readonly),
#: redis-py's cluster errors (not RedisErrors), socket errors and asyncio timeouts.
BACKEND_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)

#: Unconfirmed invalidations kept per Redis cache while it is down.
MAX_UNCONFIRMED = 10_000

_monotonic = time.monotonic

Kind = Literal["outage", "timeout", "call"]


class PoolBusy(RedisError):
    """No pooled connection became free within the pool's wait: the call's failure."""


class Bypassed(RedisError):
    """The tier is cooling down after an outage: the call was not attempted."""


def classify(exc: BaseException) -> Kind:
    """Whether ``exc`` means the server is unreachable, slow, or this call failed."""
    if isinstance(exc, PoolBusy | MaxConnectionsError):
        return "call"
    if isinstance(exc, Bypassed | ClusterDownError | RedisClusterException):
        return "outage"
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, RedisConnectionError | OSError):
        return "outage"
    return "call"


class Unconfirmed:
    """Deletes and prefix clears not confirmed by Redis, to replay when it answers.

    Bounded by ``MAX_UNCONFIRMED`` keys: beyond it the oldest are forgotten and
    counted in ``dropped`` (the replay logs how many).
    """

    __slots__ = ("dropped", "keys", "prefixes")

    def __init__(self) -> None:
        self.keys: dict[str, bool] = {}  # key -> announce on the invalidation channel
        self.prefixes: dict[str, bool] = {}
        self.dropped = 0

    def __bool__(self) -> bool:
        return bool(self.keys or self.prefixes)

    def add(self, keys: list[str], publish: bool) -> None:
        for key in keys:
            self.keys[key] = self.keys.get(key, False) or publish
        while len(self.keys) > MAX_UNCONFIRMED:
            del self.keys[next(iter(self.keys))]
            self.dropped += 1

    def add_prefix(self, prefix: str, publish: bool) -> None:
        self.prefixes[prefix] = self.prefixes.get(prefix, False) or publish

    def take(self) -> tuple[dict[str, bool], dict[str, bool], int]:
        """Everything remembered, forgotten here (give it back if the replay fails)."""
        taken = (self.keys, self.prefixes, self.dropped)
        self.keys, self.prefixes, self.dropped = {}, {}, 0
        return taken


class Guard:
    """The up/down state of one Redis cache (shared by every store that uses it).

    Args:
        where: Names the cache and its (masked) URL in messages.
        fail_open: False raises :class:`CacheError` on every failure.
        cooldown: Seconds the tier is bypassed after an outage.
        operation_timeout: How long timeouts must keep coming before they trip it.
    """

    __slots__ = (
        "cooldown",
        "down_until",
        "fail_open",
        "in_outage",
        "on_recovery",
        "operation_timeout",
        "timing_out_since",
        "troubled",
        "unconfirmed",
        "where",
    )

    def __init__(
        self, where: str, fail_open: bool, cooldown: float, operation_timeout: float = 0.1
    ) -> None:
        self.where = where
        self.fail_open = fail_open
        self.cooldown = cooldown
        self.operation_timeout = operation_timeout
        self.down_until = 0.0
        self.in_outage = False
        self.timing_out_since = 0.0  # first timeout since the last success
        self.troubled = False  # a success has state to reset (cheap check per call)
        self.unconfirmed = Unconfirmed()
        self.on_recovery: list[Callable[[], None]] = []

    def bypassed(self) -> bool:
        """True while the tier is cooling down after an outage."""
        return bool(self.down_until) and _monotonic() < self.down_until

    def refuse(self, operation: str, key: str) -> None:
        """Raise :class:`CacheError` if the tier is bypassed (calls that cannot fail open)."""
        if self.down_until and self.bypassed():
            raise CacheError(
                f"{self.where}: {operation} {key!r} refused: Redis is unavailable "
                f"(retrying every {self.cooldown:g}s) and {operation} does not fail open"
            )

    def failed(
        self, exc: BaseException, operation: str, key: object = None, *, strict: bool = False
    ) -> Kind:
        """Record a failure; raise :class:`CacheError` when failing closed or ``strict``.

        Returns what kind of failure it was (see the module docstring).
        """
        kind = classify(exc)
        quiet = False  # one warning per run of timeouts, not one per call
        if kind == "timeout":
            now = _monotonic()
            self.troubled = True
            quiet = bool(self.timing_out_since)
            if not quiet:
                self.timing_out_since = now
            if self.in_outage or now - self.timing_out_since >= self.operation_timeout:
                kind = "outage"
        if kind == "outage" and self.fail_open and not isinstance(exc, Bypassed):
            self._trip(exc)  # failing closed, every call tries (and raises) instead
        about = f" {key!r}" if key is not None else ""
        if strict or not self.fail_open:
            raise CacheError(f"{self.where}: {operation}{about} failed: {exc}") from exc
        if kind != "outage" and not quiet:
            logger.warning(
                "%s: %s%s failed (%s: %s); this call only, the tier stays in use",
                self.where,
                operation,
                about,
                type(exc).__name__,
                exc,
            )
        return kind

    def _trip(self, exc: BaseException) -> None:
        self.troubled = True
        if not self.in_outage:
            self.in_outage = True
            logger.warning(
                "%s is unavailable (%s: %s); failing open: reads miss, writes are "
                "dropped, retrying every %gs",
                self.where,
                type(exc).__name__,
                exc,
                self.cooldown,
            )
        self.down_until = _monotonic() + self.cooldown

    def remember(self, keys: list[str], publish: bool) -> None:
        """Keep deletes of ``keys`` that Redis did not confirm, to replay them."""
        self.unconfirmed.add(keys, publish)
        self.troubled = True

    def remember_prefix(self, prefix: str, publish: bool) -> None:
        """Keep a clear of ``prefix`` that Redis did not confirm, to replay it."""
        self.unconfirmed.add_prefix(prefix, publish)
        self.troubled = True

    def succeeded(self) -> None:
        """A call succeeded: end an outage (runs the recovery callbacks) or a timeout run.

        Call it only when ``troubled`` is set (one attribute read per call otherwise);
        it stays set while unconfirmed deletes wait for their replay.
        """
        self.troubled = bool(self.unconfirmed)
        self.timing_out_since = 0.0
        if self.in_outage:
            self.in_outage = False
            self.down_until = 0.0
            logger.info("%s is back; the tier is in use again", self.where)
            for callback in list(self.on_recovery):
                callback()
