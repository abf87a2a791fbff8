"""redis-py clients for a :class:`~zephyr_core._topology.RedisTopology`.

Clients for Sentinel come from redis-py's ``Sentinel.master_for``, so they find the new
master after a fail-over by themselves. Every master address a Sentinel names (to us or
to such a client) is recorded by :mod:`zephyr_core._failovers`: a different address than
last time counts one fail-over.

This is the module that imports redis-py (sync and asyncio): import it where a client is
made, never from what ``import zephyr_core`` loads.
"""

from __future__ import annotations

from typing import Any

from redis import Redis, RedisCluster
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio import RedisCluster as AsyncRedisCluster
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import MasterNotFoundError as AsyncMasterNotFoundError
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel

from zephyr_core._failovers import record_master
from zephyr_core._topology import Address, RedisTopology, master_name_missing


class _RecordingSentinel(Sentinel):
    """redis-py's Sentinel, noting each master it discovers (its clients call this too)."""

    def __init__(self, topology: RedisTopology, **kwargs: Any) -> None:
        super().__init__(list(topology.nodes), **kwargs)  # type: ignore[no-untyped-call]
        self.topology = topology

    def discover_master(self, service_name: str) -> Address:
        try:
            address: Address = super().discover_master(service_name)  # type: ignore[no-untyped-call]
        except MasterNotFoundError:
            # redis-py's message holds the repr of every Sentinel client: say it shorter.
            raise MasterNotFoundError(_not_found(self.topology, service_name)) from None
        record_master(self.topology, address)
        return address


class _AsyncRecordingSentinel(AsyncSentinel):
    """redis.asyncio's Sentinel, noting each master it discovers."""

    def __init__(self, topology: RedisTopology, **kwargs: Any) -> None:
        super().__init__(list(topology.nodes), **kwargs)  # type: ignore[no-untyped-call]
        self.topology = topology

    async def discover_master(self, service_name: str) -> Address:
        try:
            address: Address = await super().discover_master(service_name)
        except AsyncMasterNotFoundError:
            raise AsyncMasterNotFoundError(_not_found(self.topology, service_name)) from None
        record_master(self.topology, address)
        return address


def _not_found(topology: RedisTopology, service_name: str) -> str:
    where = ", ".join(f"{host}:{port}" for host, port in topology.nodes)
    return (
        f"No master found for {service_name!r} by the Sentinels at {where}: none answered, "
        "or none names an up master"
    )


class _SentinelRedis(Redis):
    """A master client that also closes the connections to the Sentinels it asks."""

    def close(self) -> None:
        super().close()
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if manager is not None:
            manager.close()


class _AsyncSentinelRedis(AsyncRedis):
    """An async master client that also closes the connections to its Sentinels."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        manager = getattr(self.connection_pool, "sentinel_manager", None)
        if manager is not None:
            await manager.aclose()


def _tls_kwargs(topology: RedisTopology) -> dict[str, Any]:
    return {"ssl": True, **topology.ssl_options} if topology.tls else {}


def sentinel_kwargs(topology: RedisTopology, redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Connection options for the Sentinels themselves (their password, TLS, timeouts).

    No retries (``retry`` is set by the callers): redis-py's default retries each
    refused Sentinel with back-off, seconds per dead Sentinel, when the next Sentinel
    in the list is the better retry.
    """
    kwargs: dict[str, Any] = {
        key: value for key, value in redis_kwargs.items() if key.startswith("socket_")
    }
    kwargs.setdefault("socket_connect_timeout", 1.0)
    kwargs.setdefault("socket_timeout", 1.0)
    if topology.sentinel_password is not None:
        kwargs["password"] = topology.sentinel_password
    if topology.sentinel_username is not None:
        kwargs["username"] = topology.sentinel_username
    return {**kwargs, **_tls_kwargs(topology)}


def server_kwargs(topology: RedisTopology, redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Connection options for the Redis servers (their password, db, TLS), then the caller's."""
    kwargs: dict[str, Any] = {"db": topology.db, **_tls_kwargs(topology)}
    if topology.password is not None:
        kwargs["password"] = topology.password
    if topology.username is not None:
        kwargs["username"] = topology.username
    return {**kwargs, **redis_kwargs}


def _need_master_name(topology: RedisTopology) -> str:
    if not topology.master_name:
        raise ValueError(master_name_missing(topology.url))
    return topology.master_name


def sentinel_manager(topology: RedisTopology, **redis_kwargs: Any) -> Sentinel:
    """A redis-py Sentinel for ``topology`` whose discoveries are recorded."""
    options = sentinel_kwargs(topology, redis_kwargs)
    return _RecordingSentinel(topology, sentinel_kwargs={**options, "retry": Retry(NoBackoff(), 0)})


def async_sentinel_manager(topology: RedisTopology, **redis_kwargs: Any) -> AsyncSentinel:
    """A redis.asyncio Sentinel for ``topology`` whose discoveries are recorded."""
    options = {**sentinel_kwargs(topology, redis_kwargs), "retry": AsyncRetry(NoBackoff(), 0)}
    return _AsyncRecordingSentinel(topology, sentinel_kwargs=options)


def sync_client(topology: RedisTopology, **redis_kwargs: Any) -> Redis | RedisCluster:
    """A redis-py client for ``topology``: it follows Sentinel fail-overs by itself.

    ``redis_kwargs`` (``decode_responses``, ``socket_timeout``, ...) apply to the Redis
    servers; ``socket_*`` ones apply to the Sentinels too.
    """
    if topology.kind == "sentinel":
        name = _need_master_name(topology)
        manager = sentinel_manager(topology, **redis_kwargs)
        client: Redis = manager.master_for(  # type: ignore[no-untyped-call]
            name, redis_class=_SentinelRedis, **server_kwargs(topology, redis_kwargs)
        )
        return client
    if topology.kind == "cluster":
        return RedisCluster(
            startup_nodes=[
                ClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in topology.nodes
            ],
            **_cluster_kwargs(topology, redis_kwargs),
        )
    single: Redis = Redis.from_url(topology.url, **redis_kwargs)
    return single


def async_client(topology: RedisTopology, **redis_kwargs: Any) -> AsyncRedis | AsyncRedisCluster:
    """A redis.asyncio client for ``topology`` (see :func:`sync_client`)."""
    if topology.kind == "sentinel":
        name = _need_master_name(topology)
        manager = async_sentinel_manager(topology, **redis_kwargs)
        client: AsyncRedis = manager.master_for(
            name, redis_class=_AsyncSentinelRedis, **server_kwargs(topology, redis_kwargs)
        )
        return client
    if topology.kind == "cluster":
        return AsyncRedisCluster(
            startup_nodes=[AsyncClusterNode(host, port) for host, port in topology.nodes],
            **_cluster_kwargs(topology, redis_kwargs),
        )
    single: AsyncRedis = AsyncRedis.from_url(topology.url, **redis_kwargs)
    return single


def _cluster_kwargs(topology: RedisTopology, redis_kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = server_kwargs(topology, redis_kwargs)
    kwargs.pop("db", None)  # RedisCluster takes no db: a cluster has only db 0
    return kwargs


def resolve_master_sync(topology: RedisTopology, *, timeout: float = 1.0) -> Address:
    """The server that is master now: asks the Sentinels (single: the server itself).

    A Cluster has one master per slot range: this returns the first seed node.
    Raises ``redis.sentinel.MasterNotFoundError`` when no Sentinel names a master.
    """
    if topology.kind != "sentinel":
        return _first_node(topology)
    manager = sentinel_manager(topology, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        name = _need_master_name(topology)
        address: Address = manager.discover_master(name)  # type: ignore[no-untyped-call]
    finally:
        manager.close()
    return (str(address[0]), int(address[1]))


async def resolve_master(topology: RedisTopology, *, timeout: float = 1.0) -> Address:
    """Async :func:`resolve_master_sync`."""
    if topology.kind != "sentinel":
        return _first_node(topology)
    manager = async_sentinel_manager(
        topology, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    try:
        address: Address = await manager.discover_master(_need_master_name(topology))
    finally:
        await manager.aclose()
    return (str(address[0]), int(address[1]))


def _first_node(topology: RedisTopology) -> Address:
    if topology.socket_path is not None:
        return (topology.socket_path, 0)
    return topology.nodes[0]
