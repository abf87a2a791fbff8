"""Clients and master resolution against real Sentinel and Cluster topologies."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable, Iterator

import pytest
import redis
from prometheus_client import REGISTRY
from redis.sentinel import MasterNotFoundError

from tests.servers import RedisClusterServers, SentinelTopology, need, wait_until
from zephyr_core._failovers import failovers_seen, on_failover, remove_failover_callback
from zephyr_core._redis_clients import (
    async_client,
    resolve_master,
    resolve_master_sync,
    sync_client,
)
from zephyr_core._topology import Address, RedisTopology, parse_redis_url

Failover = tuple[RedisTopology, Address, Address]


@pytest.fixture
def failovers() -> Iterator[list[Failover]]:
    """Every on_failover call during the test."""
    seen: list[Failover] = []

    def note(topology: RedisTopology, old: Address, new: Address) -> None:
        seen.append((topology, old, new))

    on_failover(note)
    yield seen
    remove_failover_callback(note)


def _counter(topology: RedisTopology) -> float:
    value = REGISTRY.get_sample_value("zephyr_redis_failovers_total", {"url": topology.masked})
    return value or 0.0


def test_resolve_master_names_the_master_the_sentinels_know(
    sentinel_topology: SentinelTopology,
) -> None:
    topology = parse_redis_url(sentinel_topology.url())
    assert resolve_master_sync(topology) == sentinel_topology.master_address()
    assert asyncio.run(resolve_master(topology)) == sentinel_topology.master_address()


def test_sync_and_async_clients_reach_the_master(sentinel_topology: SentinelTopology) -> None:
    topology = parse_redis_url(sentinel_topology.url(db=3))
    client = sync_client(topology, decode_responses=True)
    try:
        client.set("sync-key", "1")
        assert client.get("sync-key") == "1"
        assert client.connection_pool.get_connection().db == 3  # type: ignore[attr-defined]
    finally:
        client.close()

    async def write_and_read() -> str | None:
        aclient = async_client(topology, decode_responses=True)
        try:
            await aclient.set("async-key", "2")
            value: str | None = await aclient.get("async-key")
            return value
        finally:
            await aclient.aclose()

    assert asyncio.run(write_and_read()) == "2"


def test_a_failover_is_counted_once_and_clients_follow_it(
    own_sentinel_topology: Callable[..., SentinelTopology], failovers: list[Failover]
) -> None:
    servers = own_sentinel_topology()
    topology = parse_redis_url(servers.url())
    before = resolve_master_sync(topology)
    client = sync_client(topology, socket_timeout=1)
    client.set("written-before", "1")
    loop = asyncio.new_event_loop()
    aclient = async_client(topology, socket_timeout=1)
    loop.run_until_complete(aclient.set("async-before", "1"))
    try:
        old = servers.kill_master()
        assert old == before
        new = servers.wait_failover(old)
        assert resolve_master_sync(topology) == new
        assert loop.run_until_complete(resolve_master(topology)) == new

        # The same client objects, not recreated: the first command after the kill may
        # fail on the dead connection; the next ones go to the new master.
        def sync_writes() -> bool:
            try:
                return bool(client.set("written-after", "1"))
            except (redis.ConnectionError, redis.TimeoutError):
                return False

        async def async_write() -> bool:
            try:
                return bool(await aclient.set("async-after", "1"))
            except (redis.ConnectionError, redis.TimeoutError):
                return False

        wait_until(sync_writes, 15, "the sync client to write to the new master")
        wait_until(lambda: loop.run_until_complete(async_write()), 15, "the async client")
        direct = redis.Redis(host=new[0], port=new[1])
        try:
            assert direct.get("written-after") == b"1" and direct.get("async-after") == b"1"
        finally:
            direct.close()
    finally:
        client.close()
        loop.run_until_complete(aclient.aclose())
        loop.close()
    assert failovers_seen(topology.url) == 1
    assert _counter(topology) == 1.0
    assert [(seen.url, o, n) for seen, o, n in failovers] == [(topology.url, old, new)]


def test_both_passwords_the_redis_one_and_the_sentinels_own(
    own_sentinel_topology: Callable[..., SentinelTopology],
) -> None:
    servers = own_sentinel_topology(password="redis-pw", sentinel_password="sentinel-pw")
    topology = parse_redis_url(servers.url())
    assert (topology.password, topology.sentinel_password) == ("redis-pw", "sentinel-pw")
    assert resolve_master_sync(topology) == servers.master_address()
    client = sync_client(topology)
    try:
        assert client.set("k", "v") and client.get("k") == b"v"
    finally:
        client.close()
    # Without the Sentinels' password no Sentinel answers: no master is found.
    without = parse_redis_url(servers.url().replace("&sentinel_password=sentinel-pw", ""))
    with pytest.raises(MasterNotFoundError, match="none answered"):
        resolve_master_sync(without)
    # From the settings instead of the URL.
    from zephyr_core import Settings

    settings = Settings(REDIS_SENTINEL_PASSWORD="sentinel-pw")
    assert resolve_master_sync(settings.redis_topology(without.url)) == servers.master_address()


def test_a_cluster_client_writes_after_a_master_is_killed(
    own_redis_cluster: Callable[..., RedisClusterServers],
) -> None:
    cluster = own_redis_cluster()
    topology = parse_redis_url(cluster.url())
    client = sync_client(topology, socket_timeout=1)
    keys = [f"cluster-{n}" for n in range(30)]
    try:
        for key in keys:
            client.set(key, "before")
        old = cluster.kill_master(1)
        cluster.wait_promoted(old)

        def writes_everywhere() -> bool:
            try:
                return all(client.set(key, "after") for key in keys)
            except (redis.ConnectionError, redis.TimeoutError, redis.ClusterDownError):
                return False

        wait_until(writes_everywhere, 20, "the cluster client to write every key again")
        assert {client.get(key) for key in keys} == {b"after"}
    finally:
        client.close()

    async def async_round_trip() -> bytes | None:
        aclient = async_client(topology)
        try:
            await aclient.set("async-cluster", "x")
            value: bytes | None = await aclient.get("async-cluster")
            return value
        finally:
            await aclient.aclose()

    assert asyncio.run(async_round_trip()) == b"x"


def test_a_sentinels_tls_url_reaches_the_master_and_follows_a_failover(
    own_sentinel_topology: Callable[..., SentinelTopology],
) -> None:
    need(shutil.which("openssl") is not None, "openssl (for a self-signed certificate)")
    servers = own_sentinel_topology(tls=True, password="redis-pw", sentinel_password="sent-pw")
    topology = parse_redis_url(servers.url())
    assert topology.tls and topology.ssl_options["ssl_ca_certs"] == str(servers.ca_file)
    assert resolve_master_sync(topology) == servers.master_address()
    client = sync_client(topology, socket_timeout=1)
    try:
        assert client.set("tls", "1")
        old = servers.kill_master()
        new = servers.wait_failover(old)

        def writes() -> bool:
            try:
                return bool(client.set("tls-after", "1"))
            except (redis.ConnectionError, redis.TimeoutError):
                return False

        wait_until(writes, 15, "the TLS client to write to the new master")
        assert client.connection_pool.get_master_address() == new  # type: ignore[attr-defined]
    finally:
        client.close()

    async def async_round_trip() -> tuple[Address, bytes | None]:
        aclient = async_client(topology)
        try:
            await aclient.set("tls-async", "2")
            value: bytes | None = await aclient.get("tls-async")
            return await resolve_master(topology), value
        finally:
            await aclient.aclose()

    assert asyncio.run(async_round_trip()) == (new, b"2")
    # The same servers refuse a plain-text client: the URL's TLS is what got through.
    plain = parse_redis_url(servers.url().replace("sentinels://", "sentinel://"))
    with pytest.raises(MasterNotFoundError):
        resolve_master_sync(plain)


def test_a_cluster_with_a_password(own_redis_cluster: Callable[..., RedisClusterServers]) -> None:
    cluster = own_redis_cluster(password="cluster-pw")
    topology = parse_redis_url(cluster.url())
    assert topology.password == "cluster-pw" and "cluster-pw" not in topology.masked
    client = sync_client(topology)
    try:
        for n in range(10):  # keys on every master
            assert client.set(f"pw-{n}", n)
        assert client.get("pw-9") == b"9"
    finally:
        client.close()
    without = parse_redis_url(cluster.url().replace(":cluster-pw@", ""))
    with pytest.raises(redis.exceptions.RedisClusterException, match="authenticated"):
        sync_client(without)  # a cluster client learns the slots as it is made
