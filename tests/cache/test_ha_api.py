"""The cache API on a Sentinel-managed master and on a Redis Cluster (shared topologies).

Every check reads Redis itself where it can: on Cluster, each master is asked for its own
keys, so "every master" means what it says.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.cache.test_stats_cli import APP, zephyr
from tests.cache.test_tiered import Peer
from tests.servers import RedisClusterServers, SentinelTopology
from zephyr_cache import Cache, CacheGroup, configure, get_cache
from zephyr_cache._cluster import CHANNEL_BASE
from zephyr_cache._memory import MISSING


@pytest.fixture(params=["sentinel", "cluster"])
def ha_url(request: pytest.FixtureRequest) -> str:
    if request.param == "sentinel":
        topology: SentinelTopology = request.getfixturevalue("sentinel_topology")
        return topology.url(db=3)
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    return cluster.url()


def masters(request: pytest.FixtureRequest, url: str) -> list[redis.Redis]:
    """A plain client per master (one on Sentinel, one per shard on Cluster)."""
    if url.startswith("sentinel"):
        topology: SentinelTopology = request.getfixturevalue("sentinel_topology")
        host, port = topology.master_address()
        return [redis.Redis(host=host, port=port, db=3)]
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    return [redis.Redis(port=port) for port in cluster.master_ports()]


def keys_on(clients: list[redis.Redis], pattern: str) -> list[int]:
    return [len(list(client.scan_iter(match=pattern, count=1000))) for client in clients]


@pytest.fixture
def clients(request: pytest.FixtureRequest, ha_url: str) -> Iterator[list[redis.Redis]]:
    found = masters(request, ha_url)
    for client in found:
        client.flushdb()
    yield found
    for client in found:
        client.close()


def configured(url: str, prefix: str = "zephyr") -> Cache:
    configure(
        {
            "default": {"backend": "redis", "url": url, "timeout": 300, "key_prefix": prefix},
            "other": {"backend": "redis", "url": url, "timeout": 300, "key_prefix": "other"},
            "local": {"backend": "memory", "max_size": 1000, "timeout": 60},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    return get_cache()


async def test_operations(ha_url: str, clients: list[redis.Redis]) -> None:
    cache = configured(ha_url)
    assert await cache.set("k", {"v": 1}) is True
    assert await cache.get("k") == {"v": 1}
    assert await cache.exists("k") is True
    assert 299 < (await cache.ttl("k") or 0) <= 300
    assert await cache.expire("k", None) is True
    assert await cache.ttl("k") is None
    assert await cache.add("k", 2) is False
    assert await cache.add("new", 2) is True
    assert await cache.get_or_set("computed", lambda: [1, 2]) == [1, 2]
    assert await cache.incr("hits") == 1
    assert await cache.incr("hits", 41) == 42
    assert await cache.delete("k") is True
    assert await cache.get("k") is None
    assert await cache.delete("k") is False


async def test_get_many_and_set_many_span_every_master(
    ha_url: str, clients: list[redis.Redis]
) -> None:
    cache = configured(ha_url)
    values = {f"user:{i}": {"id": i} for i in range(200)}
    assert await cache.set_many(values, timeout=60) is True
    assert all(count > 0 for count in keys_on(clients, "zephyr:1:user:*"))
    assert sum(keys_on(clients, "zephyr:1:user:*")) == 200
    found = await cache.get_many([*values, "absent"])
    assert found == values
    # Through a tiered cache (GET + PTTL per key, filling the local tier).
    hot = get_cache("hot")
    assert await hot.get_many(list(values)[:50]) == dict(list(values.items())[:50])
    assert 0 < (await hot.ttl("user:3") or 0) <= 60


async def test_clear_deletes_on_every_master_and_nothing_else(
    ha_url: str, clients: list[redis.Redis]
) -> None:
    cache = configured(ha_url)
    await cache.set_many({f"k{i}": i for i in range(300)})
    await get_cache("other").set_many({f"k{i}": i for i in range(30)})
    before = keys_on(clients, "zephyr:*")
    assert all(count > 0 for count in before) and sum(before) == 300
    await cache.clear()
    assert keys_on(clients, "zephyr:*") == [0] * len(clients)
    assert sum(keys_on(clients, "other:*")) == 30
    assert await get_cache("other").get("k7") == 7


async def test_group_invalidation_and_clear(ha_url: str, clients: list[redis.Redis]) -> None:
    configured(ha_url)
    posts = CacheGroup("user")
    computed: list[int] = []

    @posts.cached(timeout=60)
    async def user_posts(user_id: int, page: int) -> list[int]:
        computed.append(user_id)
        return [user_id, page]

    for user_id, page in itertools.product(range(20), range(3)):
        assert await user_posts(user_id, page) == [user_id, page]
    assert len(computed) == 60
    for user_id, page in itertools.product(range(20), range(3)):
        await user_posts(user_id, page)
    assert len(computed) == 60  # all hits
    await posts.invalidate(7)
    for page in range(3):
        await user_posts(7, page)
    await user_posts(8, 0)
    assert computed[60:] == [7, 7, 7]
    await posts.clear()
    await user_posts(8, 0)
    assert computed[63:] == [8]


async def test_stampede_lock_and_counters(ha_url: str, clients: list[redis.Redis]) -> None:
    cache = configured(ha_url)
    calls = 0

    @cache.cached(timeout=60, lock=True)
    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return x * 2

    assert await asyncio.gather(*(slow(i % 5) for i in range(50))) == [
        (i % 5) * 2 for i in range(50)
    ]
    assert calls == 5
    assert sum(keys_on(clients, "zephyr:*:lock")) == 0  # every lock released
    totals = await asyncio.gather(*(cache.incr(f"count:{i % 10}") for i in range(100)))
    assert sorted(totals)[-10:] == [10] * 10
    await cache.set("text", "x")
    with pytest.raises(TypeError):
        await cache.incr("text")


@pytest.mark.slow
async def test_writes_in_another_process_drop_our_local_copies(
    ha_url: str, clients: list[redis.Redis]
) -> None:
    configured(ha_url)
    hot = get_cache("hot")
    assert await hot.wait_ready(10)
    peer = Peer(ha_url)
    try:
        keys = [f"shared:{i}" for i in range(30)]  # on every shard of a Cluster
        for key in keys:
            assert await hot.set(key, 1) is True
            assert await hot.get(key) == 1
        local = hot._store.tiers[0].backend  # type: ignore[attr-defined]
        assert all(local.lookup(hot.full_key(key)) is not MISSING for key in keys)
        for key in keys:
            assert peer.ask(f"set {key} 2") is True
        deadline = asyncio.get_running_loop().time() + 2.0
        while any(local.lookup(hot.full_key(key)) is not MISSING for key in keys):
            assert asyncio.get_running_loop().time() < deadline, "local copies kept"
            await asyncio.sleep(0.01)
        assert [await hot.get(key) for key in keys] == [2] * 30
        assert peer.ask("delete shared:3") is True
        while local.lookup(hot.full_key("shared:3")) is not MISSING:
            assert asyncio.get_running_loop().time() < deadline + 2, "local copy kept"
            await asyncio.sleep(0.01)
    finally:
        peer.close()


async def test_cluster_announces_on_each_shard_channel(redis_cluster: RedisClusterServers) -> None:
    """Sharded pub/sub: one channel per shard, each subscribed on its own master."""
    configured(redis_cluster.url())
    hot = get_cache("hot")
    assert await hot.wait_ready(10)
    ports = redis_cluster.master_ports()
    owned = []
    for port in ports:
        node = redis.Redis(port=port)
        try:
            channels = [c.decode() for c in node.execute_command("PUBSUB", "SHARDCHANNELS")]
            ours = [c for c in channels if c.startswith(CHANNEL_BASE)]
            assert len(ours) == 1, (port, channels)
            # The channel's slot is this master's: it takes SPUBLISH without a MOVED.
            assert node.execute_command("SPUBLISH", ours[0], "{}") >= 1
            owned.append(ours[0])
        finally:
            node.close()
    assert len(set(owned)) == len(ports)


async def test_a_burst_waits_for_connections_instead_of_missing(
    ha_url: str, clients: list[redis.Redis]
) -> None:
    configure({"default": {"backend": "redis", "url": ha_url, "max_connections": 5}})
    cache = get_cache()
    await cache.set("warm", {"v": 1})
    found = await asyncio.gather(*(cache.get("warm") for _ in range(1000)))
    assert found == [{"v": 1}] * 1000
    assert cache.stats()["hits"] == 1000


async def test_readiness_reaches_every_tier(
    ha_url: str, clients: list[redis.Redis], request: pytest.FixtureRequest
) -> None:
    from zephyr_cache._health import probe_redis_tiers

    configured(ha_url)
    reached = (await probe_redis_tiers())["tiers"]["default, other"]
    if ha_url.startswith("sentinel"):
        topology: SentinelTopology = request.getfixturevalue("sentinel_topology")
        host, port = topology.master_address()
        assert (reached["kind"], reached["master"]) == ("sentinel", f"{host}:{port}")
    else:
        assert reached["kind"] == "cluster" and len(reached["masters"]) == len(clients)
    dead = (
        "sentinel://127.0.0.1:1/0?master_name=x"
        if ha_url.startswith("sentinel")
        else "redis+cluster://127.0.0.1:1"
    )
    configure(
        {"default": {"backend": "redis", "url": ha_url}, "gone": {"backend": "redis", "url": dead}}
    )
    with pytest.raises(ConnectionError, match="cache gone at"):
        await probe_redis_tiers()


@pytest.mark.slow
async def test_cli_stats_and_clear_count_every_master(
    ha_url: str, clients: list[redis.Redis], tmp_path: Path
) -> None:
    (tmp_path / "caches.py").write_text(APP % ha_url)
    cache = configured(ha_url)
    await cache.set_many({f"k{i}": i for i in range(60)})
    shown = zephyr("-A", "caches", "stats", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    (row,) = [row for row in json.loads(shown.stdout) if row["cache"] == "default"]
    assert row["redis"]["reachable"] is True
    assert row["redis"]["keys"] == 60
    assert row["redis"]["topology"].startswith(
        "Sentinel master" if ha_url.startswith("sentinel") else "Redis Cluster"
    )
    cleared = zephyr("-A", "caches", "clear", "default", cwd=tmp_path)
    assert cleared.returncode == 0, cleared.stderr
    assert keys_on(clients, "zephyr:*") == [0] * len(clients)
