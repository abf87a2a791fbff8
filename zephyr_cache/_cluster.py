"""Connections to a Redis Cluster cache: redis-py's ``RedisCluster``, guarded, and shard channels.

The Redis tier of a ``redis+cluster://`` cache is aiocache's ``RedisCache`` whose client
is a :class:`GuardedCluster`: redis-py's async ``RedisCluster`` (slot map, ``MOVED``/``ASK``
redirections, re-reading the slot map after a node fails) with the same fail-open
contract as the single-server pool:

- calls beyond ``max_connections`` in flight on one event loop wait (up to
  ``POOL_WAIT`` seconds) instead of failing; redis-py's cluster raises at once;
- while the guard bypasses the tier a call is refused before any I/O (``Bypassed``);
- redis-py's own retries (with backoff) are off: fail-open decides what a failure
  costs. After a connection error redis-py re-reads the slot map on the next call,
  which is how the tier finds a promoted replica.

Cross-process invalidation on Cluster uses sharded pub/sub (Redis 7.0+): each shard
(a master and its replicas) has one channel, :func:`shard_channel`, whose name hashes
to the first slot the shard owns. A write announces itself with ``SPUBLISH`` on the
channel of the shard it writes to, inside the same Lua script as the write: one
command, atomic, and no message crosses the cluster bus to other shards. Listeners
subscribe to every shard's channel (``_shard_subscriptions``). Redis refuses a script that
publishes to a channel of another shard ("non local key"): the script publishes first,
so a stale slot map costs the write (dropped, failing open), never a silent one.

redis-py 8.1's cluster client lets concurrent first calls race with its initialization
(one of them reads "Connection closed by server"): the guarded client reads the slot
map before letting a call through. It can also send on a connection that another task
has just closed: it then raises ``AttributeError``, which :class:`GuardedCluster` and
:class:`GuardedPipeline` turn into the lost connection it is (the call fails open).

Private internals used: none (``RedisCluster.execute_command``/``pipeline`` and
``ClusterPipeline.execute`` are public and extended, ``NodesManager.slots_cache`` and
``ClusterNode.name/host/port`` are public attributes).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from typing import Any

from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode, ClusterPipeline
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from zephyr_cache._failopen import Bypassed, Guard, PoolBusy
from zephyr_cache._redis_pool import (
    CONNECT_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    LARGE_CONNECTIONS,
    POOL_WAIT,
    RedisBackend,
)
from zephyr_cache._serializers import RawBytes
from zephyr_core._topology import RedisTopology

CHANNEL_BASE = "zephyr:cache:invalidate"

_tags: dict[int, str] = {}


def slot_tag(slot: int) -> str:
    """The shortest decimal hash tag that Redis Cluster maps to ``slot``."""
    found = _tags.get(slot)
    if found is None:
        for number in itertools.count():
            text = str(number)
            hashed = key_slot(text.encode())
            _tags.setdefault(hashed, text)
            if hashed == slot:
                found = text
                break
    assert found is not None
    return found


def channel_for_slot(first_slot: int) -> str:
    """The invalidation channel of the shard whose first slot is ``first_slot``."""
    return f"{CHANNEL_BASE}:{{{slot_tag(first_slot)}}}"


class ShardMap:
    """Which invalidation channel each slot's shard uses, from a client's slot map.

    Rebuilt whenever redis-py replaces its slot map (after a fail-over or resharding)
    and when a script reports a channel that is not local (:meth:`forget`).
    """

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        self._source: object = None
        self._channels: dict[str, str] = {}  # node name -> its shard's channel

    def _refresh(self, slots: dict[int, list[ClusterNode]]) -> None:
        first: dict[str, int] = {}
        for slot in sorted(slots):
            nodes = slots[slot]
            if nodes:
                first.setdefault(nodes[0].name, slot)
        self._channels = {name: channel_for_slot(slot) for name, slot in first.items()}
        self._source = slots

    def channel(self, key: str) -> str:
        """The channel of the shard holding ``key`` (slot map as the client knows it)."""
        slots = self.client.nodes_manager.slots_cache
        if slots is not self._source:
            self._refresh(slots)
        nodes = slots.get(key_slot(key.encode()))
        if not nodes:
            return CHANNEL_BASE  # no slot map yet: the script fails and is retried later
        return self._channels.get(nodes[0].name, CHANNEL_BASE)

    def forget(self) -> None:
        """Rebuild on next use (a script found its channel on another shard)."""
        self._source = None


async def masters_with_channels(
    topology: RedisTopology, **options: Any
) -> list[tuple[str, int, str]]:
    """Each master of the cluster (host, port, its shard's channel), from ``CLUSTER SLOTS``.

    Asked of the seed nodes in turn on plain connections (a ``RedisCluster`` built just to
    read the slot map would hold connections to every node).
    """
    node_options = {k: v for k, v in cluster_options(topology).items() if k != "startup_nodes"}
    failures: list[str] = []
    for host, port in topology.nodes:
        client = Redis(host=host, port=port, **node_options, **options)
        try:
            ranges = await client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
        except RedisError as exc:
            failures.append(f"{host}:{port}: {exc}")
            continue
        finally:
            await client.aclose()
        first: dict[tuple[str, int], int] = {}
        for start, _end, primary, *_replicas in ranges:
            host_name = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
            address = (host_name, int(primary[1]))
            first[address] = min(int(start), first.get(address, int(start)))
        return [(h, p, channel_for_slot(slot)) for (h, p), slot in sorted(first.items())]
    raise ConnectionError(f"no seed node answered CLUSTER SLOTS ({'; '.join(failures)})")


def cluster_options(topology: RedisTopology) -> dict[str, Any]:
    """Client options from the URL: seed nodes, Redis's own credentials, TLS."""
    options: dict[str, Any] = {
        "startup_nodes": [ClusterNode(host, port) for host, port in topology.nodes]
    }
    if topology.username:
        options["username"] = topology.username
    if topology.password:
        options["password"] = topology.password
    if topology.tls:
        options.update(ssl=True, **topology.ssl_options)
    return options


class GuardedCluster(RedisCluster):
    """``RedisCluster`` whose calls wait for a free slot and are refused while bypassed.

    A counter and a queue of waiters rather than an ``asyncio.Semaphore``: the
    uncontended path costs two integer updates, no extra coroutine.
    """

    guard: Guard | None = None
    limit: int = DEFAULT_MAX_CONNECTIONS
    in_flight: int = 0
    waiters: collections.deque[asyncio.Future[None]]

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        guard = self.guard
        if guard is not None and guard.down_until and guard.bypassed():
            raise Bypassed("the tier is cooling down after an outage")
        if self.in_flight >= self.limit:
            await self._wait_for_a_slot()
        if not self.nodes_manager.slots_cache:
            # Read the slot map once before a burst goes through: redis-py 8.1 lets
            # concurrent first calls race with its initialization and use connections
            # it is closing ("Connection closed by server").
            await self.initialize()
        self.in_flight += 1
        try:
            return await super().execute_command(*args, **kwargs)
        except AttributeError as exc:
            raise _lost_connection(exc) from exc
        finally:
            self.in_flight -= 1
            waiters = self.waiters
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    break

    async def _wait_for_a_slot(self) -> None:
        deadline = asyncio.get_running_loop().time() + POOL_WAIT
        while self.in_flight >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            try:
                async with asyncio.timeout_at(deadline):
                    await waiter
            except TimeoutError:
                raise PoolBusy(
                    f"all {self.limit} calls in flight stayed busy for {POOL_WAIT}s"
                ) from None

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # redis-py raises
        return GuardedPipeline(self, transaction)  # type: ignore[abstract]  # as redis-py does


class GuardedPipeline(ClusterPipeline):
    """redis-py's cluster pipeline, with the lost-connection race translated."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = self.cluster_client
        if not client.nodes_manager.slots_cache:
            await client.initialize()  # see GuardedCluster.execute_command
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except AttributeError as exc:
            raise _lost_connection(exc) from exc


def _lost_connection(exc: AttributeError) -> RedisConnectionError:
    # redis-py 8.1's cluster client can send on a connection another task has just
    # disconnected (after "Connection closed by server"): its writer is then None. It
    # is a lost connection, and must fail open like one, not escape as a bug.
    return RedisConnectionError(f"connection lost while in use ({exc})")


def guarded_cluster(
    topology: RedisTopology,
    guard: Guard | None,
    socket_timeout: float | None,
    size: int,
    connect: float,
) -> GuardedCluster:
    client = GuardedCluster(
        **cluster_options(topology),
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect,
        retry=Retry(NoBackoff(), 0),
        # Pipelines (get_many, set_many) do not go through the wait above: headroom.
        max_connections=size * 2,
        decode_responses=False,
        driver_info=None,
    )
    client.guard = guard
    client.limit = size
    client.waiters = collections.deque()
    return client


def _unused_pool(**_aiocache_args: Any) -> ConnectionPool:
    # aiocache builds a single-server client from this pool; it is replaced before use.
    return ConnectionPool()


class ClusterBackend(RedisBackend):
    """aiocache's ``RedisCache`` on a :class:`GuardedCluster` (see the module docstring)."""

    def __init__(
        self,
        topology: RedisTopology,
        operation_timeout: float,
        max_connections: int | None,
        guard: Guard | None = None,
    ) -> None:
        size = max_connections or DEFAULT_MAX_CONNECTIONS
        connect = max(CONNECT_TIMEOUT, operation_timeout)
        # RedisBackend's __init__ builds a single-server pool: skip to aiocache's.
        super(RedisBackend, self).__init__(
            serializer=RawBytes(), timeout=None, connection_pool_class=_unused_pool
        )
        self.url = topology.url
        self.operation_timeout = operation_timeout
        self.client: GuardedCluster = guarded_cluster(
            topology, guard, operation_timeout, size, connect
        )
        self.bulk: GuardedCluster = guarded_cluster(  # type: ignore[assignment]
            topology, guard, None, min(size, LARGE_CONNECTIONS), connect
        )
        self.shards = ShardMap(self.client)

    async def _multi_get(self, keys: Any, encoding: Any = "utf-8", _conn: Any = None) -> Any:
        # One MGET per slot, one pipeline per node (MGET across slots is refused).
        return await self.client.mget_nonatomic(keys)

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix`` on every master (SCAN per master)."""
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        client = self.client
        deleted = 0
        batch: list[bytes] = []
        async for key in client.scan_iter(
            match=pattern, count=1000, target_nodes=RedisCluster.PRIMARIES
        ):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await client.unlink(*batch)  # one UNLINK per slot
                batch.clear()
        if batch:
            deleted += await client.unlink(*batch)
        return deleted

    async def ready(self) -> None:
        """Read the slot map if the client has none yet (channels are derived from it)."""
        if not self.client.nodes_manager.slots_cache:
            await self.client.initialize()
