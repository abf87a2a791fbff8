"""Connections to one Redis cache: an aiocache ``RedisCache`` per event loop, on a pool that waits.

redis-py's asyncio connections belong to the loop that opened them, so each running
loop (the app's, the sync-function runner's, a test's) gets its own aiocache cache and
connection pool.

The pool is a redis-py ``BlockingConnectionPool`` of ``max_connections`` (50 by
default): a burst of calls waits for a free connection (up to ``POOL_WAIT`` seconds)
instead of failing, and a wait that runs out is that call's failure
(:class:`~zephyr_cache._failopen.PoolBusy`), never an outage. redis-py's own asyncio
pool caps at 100 connections and raises past that.

Timeouts: ``socket_timeout`` is the operation timeout (100 ms by default) and redis-py's
retries are off, so fail-open decides what a failure costs, not a backoff loop.
Opening a connection may take ``CONNECT_TIMEOUT`` (or the operation timeout if
longer): a burst of connects on a fresh pool is not an outage. Writes of large values
(``LARGE`` bytes and more) go through a second, small pool without a socket timeout,
bounded instead by the operation timeout plus the time the payload takes at
``LARGE_RATE`` bytes a second. aiocache's own ``asyncio.wait_for`` wrapper is off
(``timeout=None``): it costs a task per call and the socket timeouts already bound
every operation.

A connection taken from the pool while the guard bypasses the tier is handed back at
once (:class:`~zephyr_cache._failopen.Bypassed`): calls queued behind a hung server do
not each pay a timeout once it is known to be down.

Private internals used: none (``BlockingConnectionPool.get_connection`` is public and
overridden as redis-py documents for subclasses).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from aiocache import RedisCache
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from zephyr_cache._failopen import Bypassed, Guard, PoolBusy
from zephyr_cache._serializers import RawBytes

DEFAULT_MAX_CONNECTIONS = 50
POOL_WAIT = 5.0
CONNECT_TIMEOUT = 1.0
LARGE = 1 << 20
LARGE_RATE = 20_000_000
LARGE_CONNECTIONS = 4


class GuardedPool(BlockingConnectionPool):
    """A pool that waits for a free connection and refuses while the tier is down."""

    guard: Guard | None = None

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        try:
            connection = await super().get_connection()  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if str(exc) == "No connection available.":
                raise PoolBusy(
                    f"all {self.max_connections} connections stayed busy for {self.timeout}s"
                ) from exc
            raise
        guard = self.guard
        if guard is not None and guard.down_until and guard.bypassed():
            await self.release(connection)
            raise Bypassed("the tier is cooling down after an outage")
        return connection


def _pool(
    url: str,
    guard: Guard | None,
    socket_timeout: float | None,
    max_connections: int,
    connect: float,
) -> GuardedPool:
    pool = GuardedPool.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
        timeout=POOL_WAIT,
        decode_responses=False,
        # No CLIENT SETINFO round trips on every new connection (bursts open many).
        driver_info=None,
    )
    pool.guard = guard
    return pool


class RedisBackend(RedisCache):  # type: ignore[misc]
    """aiocache's ``RedisCache`` with its pool built from a URL (TLS, users, sockets)."""

    def __init__(
        self,
        url: str,
        operation_timeout: float,
        max_connections: int | None,
        guard: Guard | None = None,
    ) -> None:
        size = max_connections or DEFAULT_MAX_CONNECTIONS
        connect = max(CONNECT_TIMEOUT, operation_timeout)

        def pool_from_url(**_aiocache_args: Any) -> GuardedPool:
            # aiocache passes host/port/db/password; the URL carries those and more.
            return _pool(url, guard, operation_timeout, size, connect)

        super().__init__(serializer=RawBytes(), timeout=None, connection_pool_class=pool_from_url)
        self.url = url
        self.operation_timeout = operation_timeout
        #: A client without socket timeout for large payloads (see :meth:`budget`).
        self.bulk = Redis.from_pool(_pool(url, guard, None, min(size, LARGE_CONNECTIONS), connect))

    def budget(self, size: int) -> float:
        """Seconds a call moving ``size`` bytes may take."""
        return self.operation_timeout + size / LARGE_RATE

    async def _set(
        self, key: str, value: Any, ttl: Any = None, _cas_token: Any = None, _conn: Any = None
    ) -> Any:
        # aiocache 0.12 calls SETEX/PSETEX, which redis-py 8 deprecates: SET EX/PX.
        if _cas_token is not None:
            return await super()._set(key, value, ttl, _cas_token, _conn)
        if ttl is None:
            return await self.client.set(key, value)
        if isinstance(ttl, float):
            return await self.client.set(key, value, px=max(1, int(ttl * 1000)))
        return await self.client.set(key, value, ex=ttl)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` (SCAN, never KEYS)."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        deleted = 0
        batch: list[bytes] = []
        async for key in self.client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await self.client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self.client.unlink(*batch)
        return deleted

    async def aclose(self) -> None:
        """Close the connection pools (aiocache's ``close`` uses a deprecated call)."""
        await self.client.aclose()
        await self.bulk.aclose()


class RedisConnector:
    """Hands out the :class:`RedisBackend` of the running event loop."""

    def __init__(self, url: str, operation_timeout: float, max_connections: int | None) -> None:
        self.url = url
        self.operation_timeout = operation_timeout
        self.max_connections = max_connections
        #: Set by the cache's store: pools refuse connections while it bypasses the tier.
        self.guard: Guard | None = None
        self._backends: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisBackend] = (
            weakref.WeakKeyDictionary()
        )

    def backend(self) -> RedisBackend:
        """This loop's aiocache cache (created on first use)."""
        loop = asyncio.get_running_loop()
        backend = self._backends.get(loop)
        if backend is None:
            backend = RedisBackend(
                self.url, self.operation_timeout, self.max_connections, self.guard
            )
            self._backends[loop] = backend
        return backend

    async def aclose(self) -> None:
        """Close the running loop's pool."""
        loop = asyncio.get_running_loop()
        backend = self._backends.pop(loop, None)
        if backend is not None:
            await backend.aclose()

    def loops(self) -> list[asyncio.AbstractEventLoop]:
        """Loops that still hold a pool."""
        return list(self._backends.keys())
