"""Connections to one Redis cache: an aiocache ``RedisCache`` per event loop, on a pool that waits.

The cache's URL names a single server (``redis://``, ``rediss://``, ``unix://``), a
Sentinel-managed master (``sentinel://``) or a Redis Cluster (``redis+cluster://``, whose
tier is in ``_cluster``). On Sentinel the pool is :class:`GuardedSentinelPool`: the same
waiting and bypass as :class:`GuardedPool`, with redis-py's ``SentinelConnectionPool``
finding the master: each new connection asks the Sentinels, idle connections to a master
that was replaced are closed, and a connection that finds its server demoted
(``READONLY``) is dropped, so the tier follows a fail-over without a restart. The
Sentinel client is ``zephyr_core._redis_clients``'s, which counts a changed master address as
a fail-over (``zephyr_redis_failovers_total``) and runs its ``on_failover`` callbacks:
local tiers over the cache are flushed then (``_invalidation``), since writes the old
master acknowledged may be lost.

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
overridden as redis-py documents for subclasses; :class:`GuardedSentinelPool` combines
the blocking and the Sentinel pool through their constructors and extends the public
``SentinelConnectionPool.get_master_address``, and ``aclose`` reads the Sentinel pool's
public ``sentinel_manager``).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING, Any

from aiocache import RedisCache
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    Sentinel,
    SentinelConnectionPool,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from zephyr_cache._failopen import Bypassed, Guard, PoolBusy
from zephyr_cache._flights import single_flight
from zephyr_cache._serializers import RawBytes
from zephyr_core import get_settings
from zephyr_core._redis_clients import async_sentinel_manager
from zephyr_core._topology import RedisTopology

if TYPE_CHECKING:
    from zephyr_cache._cluster import ClusterBackend

DEFAULT_MAX_CONNECTIONS = 50
POOL_WAIT = 5.0
CONNECT_TIMEOUT = 1.0
LARGE = 1 << 20
LARGE_RATE = 20_000_000
LARGE_CONNECTIONS = 4
SENTINEL_TIMEOUT = 1.0


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


class GuardedSentinelPool(GuardedPool, SentinelConnectionPool):
    """:class:`GuardedPool` on the master the Sentinels name (see the module docstring).

    Connections opened together share one question to the Sentinels: a burst of 50
    first calls would otherwise open 50 connections to a Sentinel at once, and under
    load redis-py's Sentinel client lost track of some of them (its pool holds in-use
    connections weakly), so closing the cache left them for the garbage collector.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asking: dict[str, asyncio.Future[Any]] = {}

    async def get_master_address(self) -> Any:
        return await single_flight(self.asking, "master", super().get_master_address)


def sentinel_manager(topology: RedisTopology) -> Sentinel:
    """redis.asyncio's ``Sentinel`` over the topology's Sentinels (their own password and
    TLS), recording each master it finds (``zephyr_core._failovers``: fail-overs seen)."""
    return async_sentinel_manager(
        topology, socket_timeout=SENTINEL_TIMEOUT, socket_connect_timeout=SENTINEL_TIMEOUT
    )


def _pool(
    url: str,
    topology: RedisTopology,
    guard: Guard | None,
    socket_timeout: float | None,
    max_connections: int,
    connect: float,
) -> GuardedPool:
    common: dict[str, Any] = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": connect,
        "retry": Retry(NoBackoff(), 0),
        "max_connections": max_connections,
        "timeout": POOL_WAIT,
        "decode_responses": False,
        # No CLIENT SETINFO round trips on every new connection (bursts open many).
        "driver_info": None,
    }
    pool: GuardedPool
    if topology.kind == "sentinel":
        assert topology.master_name is not None
        if topology.username:
            common["username"] = topology.username
        if topology.password:
            common["password"] = topology.password
        if topology.tls:
            common.update(topology.ssl_options)
        pool = GuardedSentinelPool(
            service_name=topology.master_name,
            sentinel_manager=sentinel_manager(topology),
            connection_class=(
                SentinelManagedSSLConnection if topology.tls else SentinelManagedConnection
            ),
            db=topology.db,
            is_master=True,
            **common,
        )
    else:
        pool = GuardedPool.from_url(url, **common)
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
        topology: RedisTopology | None = None,
    ) -> None:
        size = max_connections or DEFAULT_MAX_CONNECTIONS
        connect = max(CONNECT_TIMEOUT, operation_timeout)
        topology = topology or get_settings().redis_topology(url)

        def pool_from_url(**_aiocache_args: Any) -> GuardedPool:
            # aiocache passes host/port/db/password; the URL carries those and more.
            return _pool(url, topology, guard, operation_timeout, size, connect)

        super().__init__(serializer=RawBytes(), timeout=None, connection_pool_class=pool_from_url)
        self.url = url
        self.operation_timeout = operation_timeout
        #: A client without socket timeout for large payloads (see :meth:`budget`).
        self.bulk = Redis.from_pool(
            _pool(url, topology, guard, None, min(size, LARGE_CONNECTIONS), connect)
        )

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
        """Close the connection pools (aiocache's ``close`` uses a deprecated call), and
        the connections to the Sentinels they asked."""
        for client in (self.client, self.bulk):
            pool = getattr(client, "connection_pool", None)  # a RedisCluster has none
            await client.aclose()
            if isinstance(pool, GuardedSentinelPool):
                await pool.sentinel_manager.aclose()


class RedisConnector:
    """Hands out the Redis tier's aiocache cache of the running event loop.

    A :class:`RedisBackend` on a single server or a Sentinel-managed master, a
    :class:`~zephyr_cache._cluster.ClusterBackend` on a Redis Cluster.
    """

    def __init__(self, url: str, operation_timeout: float, max_connections: int | None) -> None:
        self.url = url
        self.topology = get_settings().redis_topology(url)
        self.operation_timeout = operation_timeout
        self.max_connections = max_connections
        #: Set by the cache's store: pools refuse connections while it bypasses the tier.
        self.guard: Guard | None = None
        self._backends: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, RedisBackend | ClusterBackend
        ] = weakref.WeakKeyDictionary()

    @property
    def kind(self) -> str:
        """``single``, ``sentinel`` or ``cluster``."""
        return self.topology.kind

    def backend(self) -> RedisBackend | ClusterBackend:
        """This loop's aiocache cache (created on first use)."""
        loop = asyncio.get_running_loop()
        backend = self._backends.get(loop)
        if backend is None:
            if self.topology.kind == "cluster":
                from zephyr_cache._cluster import ClusterBackend  # it extends RedisBackend

                backend = ClusterBackend(
                    self.topology, self.operation_timeout, self.max_connections, self.guard
                )
            else:
                backend = RedisBackend(
                    self.url,
                    self.operation_timeout,
                    self.max_connections,
                    self.guard,
                    self.topology,
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
