"""Reliability (issue #15): a master SIGKILLed under 10,000 cached calls, on Sentinel and Cluster.

Each test runs its own topology (it kills a node). Calls go to a Redis cache and to a
tiered cache over it; the assertions are what users rely on: no call raises, no call
returns a wrong value, the Redis tier serves again within 10 s of the kill, and local
tiers hold nothing from before the fail-over.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.servers import RedisClusterServers, SentinelTopology
from zephyr_cache import cache, configure, get_cache
from zephyr_cache._cluster import slot_tag
from zephyr_cache._memory import MISSING
from zephyr_core._failovers import failovers_seen

CALLS = 10_000
KILL_AT = 2_000
BACK_WITHIN = 10.0


def configure_ha(url: str) -> None:
    configure(
        {
            "default": {"backend": "redis", "url": url, "timeout": 60, "cooldown": 0.2},
            "local": {"backend": "memory", "max_size": 1000, "timeout": 60},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )


async def cached_calls_across_a_kill(kill: Callable[[], object], probe_key: str) -> float:
    """CALLS cached calls (more until the tier is back), killing a master at KILL_AT.

    Returns the seconds from the kill until a write and a read of ``probe_key`` reach
    Redis again. Asserts no exception and no wrong value.
    """

    @cache.cached(timeout=60)
    async def square(x: int) -> int:
        return x * x

    @cache.cached(timeout=60, cache_name="hot")
    async def cube(x: int) -> int:
        return x * x * x

    hot = get_cache("hot")
    assert await hot.wait_ready(10)
    local = hot._store.tiers[0].backend  # type: ignore[attr-defined]
    default = get_cache()
    errors = wrong = calls = 0
    killed_at = back = 0.0
    started = time.monotonic()
    while calls < CALLS or not back:
        assert time.monotonic() - started < 60, f"the tier never came back ({calls} calls)"
        if calls == KILL_AT:
            # A local copy from before the fail-over: it must not survive it.
            local.store(hot.full_key("before"), "stale", None)
            kill()
            killed_at = time.monotonic()
        x = calls % 300
        try:
            if await square(x) != x * x or await cube(x) != x * x * x:
                wrong += 1
        except Exception:
            errors += 1
        calls += 1
        if killed_at and not back and calls % 50 == 0:
            if await default.set(probe_key, calls) and await default.get(probe_key) == calls:
                back = time.monotonic() - killed_at
            else:
                await asyncio.sleep(0.005)  # pace the loop while the tier is bypassed
    assert (errors, wrong) == (0, 0)
    assert local.lookup(hot.full_key("before")) is MISSING
    assert await hot.get("before") is None
    return back


@pytest.mark.slow
async def test_sentinel_master_killed_under_cached_calls(
    own_sentinel_topology: Callable[..., SentinelTopology],
) -> None:
    topology = own_sentinel_topology()
    url = topology.url()
    configure_ha(url)
    old: list[tuple[str, int]] = []
    back = await cached_calls_across_a_kill(lambda: old.append(topology.kill_master()), "probe")
    assert back < BACK_WITHIN
    new = topology.wait_failover(old[0], timeout=5)
    assert new != old[0]
    assert failovers_seen(url) >= 1
    assert await get_cache("hot").wait_ready(10)  # subscribed again, on the new master
    # Both caches keep working on the new master, without a restart.
    assert await get_cache("hot").set("after", 1) is True
    assert await get_cache("hot").get("after") == 1
    assert await cache.incr("counter") == 1


@pytest.mark.slow
async def test_cluster_master_killed_under_cached_calls(
    own_redis_cluster: Callable[..., RedisClusterServers],
) -> None:
    cluster = own_redis_cluster(masters=3, replicas_per_master=1)
    configure_ha(cluster.url())
    # The probe lives on the killed shard: slot 0 belongs to the first master.
    probe = f"probe{{{slot_tag(0)}}}"
    old: list[tuple[str, int]] = []
    back = await cached_calls_across_a_kill(lambda: old.append(cluster.kill_master(0)), probe)
    assert back < BACK_WITHIN
    cluster.wait_promoted(old[0], timeout=5)
    hot = get_cache("hot")
    assert await hot.wait_ready(10)  # every shard's channel, the promoted one's included
    assert await hot.set(probe, 1) is True
    assert await hot.get(probe) == 1
    assert await cache.incr(probe + ":n") == 1
    values = {f"k{i}": i for i in range(100)}
    assert await hot.set_many(values) is True
    assert await hot.get_many(list(values)) == values
