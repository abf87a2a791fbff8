"""Counters never lie, and multi-key writes are one command: on a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from tests.servers import RedisServer
from zephyr_cache import Cache, CacheError, configure, get_cache


def command_calls(port: int) -> dict[str, int]:
    """Calls per command since the last CONFIG RESETSTAT (inner script calls included)."""
    client = redis.Redis(port=port)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(row["calls"]) for name, row in stats.items()}


def reset_stats(port: int) -> None:
    client = redis.Redis(port=port)
    client.config_resetstat()
    client.close()


@pytest.fixture(params=["memory", "redis", "tiered"])
def counter_cache(request: pytest.FixtureRequest) -> Cache:
    if request.param == "memory":
        configure({"default": {"backend": "memory", "timeout": 300}})
        return get_cache()
    url = request.getfixturevalue("redis_url")
    configure(
        {
            "default": {"backend": "redis", "url": url, "timeout": 300},
            "local": {"backend": "memory", "max_size": 100},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    return get_cache("hot" if request.param == "tiered" else "default")


async def test_incr_past_int64_raises_and_leaves_the_counter(counter_cache: Cache) -> None:
    top = 2**63 - 1
    await counter_cache.set("n", top)
    with pytest.raises(CacheError, match=r"'zephyr:1:n'.*overflow"):
        await counter_cache.incr("n")
    assert await counter_cache.get("n") == top
    await counter_cache.set("m", -(2**63))
    with pytest.raises(CacheError, match="overflow"):
        await counter_cache.incr("m", -1)
    assert await counter_cache.incr("m", 1) == -(2**63) + 1


async def test_incr_exact_beyond_double_precision(counter_cache: Cache) -> None:
    await counter_cache.set("big", 2**62)
    assert await counter_cache.incr("big", 3) == 2**62 + 3


@pytest.mark.parametrize("name", ["default", "hot"])
async def test_incr_gives_the_default_timeout_only_to_a_counter_it_creates(
    redis_url: str, name: str
) -> None:
    configure(
        {
            "default": {"backend": "redis", "url": redis_url, "timeout": 300},
            "local": {"backend": "memory", "max_size": 100},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    cache = get_cache(name)
    await cache.set("forever", 5, timeout=None)
    assert await cache.incr("forever") == 6
    assert await cache.ttl("forever") is None  # still never expires
    assert await cache.incr("fresh") == 1
    assert 299 <= (await cache.ttl("fresh") or 0) <= 300
    await cache.set("short", 1, timeout=10)
    await cache.incr("short")
    assert (await cache.ttl("short") or 0) <= 10  # keeps its own expiry


async def test_incr_on_a_redis_list_is_a_type_error(redis_server: RedisServer) -> None:
    redis_server.flushall()
    configure({"default": {"backend": "redis", "url": redis_server.url(), "timeout": 300}})
    raw = redis.Redis(port=redis_server.port)
    raw.rpush("zephyr:1:queue", "a")
    raw.close()
    with pytest.raises(TypeError, match="'zephyr:1:queue' is not an integer"):
        await get_cache().incr("queue")
    assert await get_cache().set("other", 1) is True  # not an outage


async def test_set_many_with_timeout_is_one_command(redis_server: RedisServer) -> None:
    redis_server.flushall()
    configure({"default": {"backend": "redis", "url": redis_server.url(), "timeout": 300}})
    cache = get_cache()
    await cache.set("warm", 1)
    mapping: dict[str, Any] = {f"k{i}": i for i in range(1000)}
    reset_stats(redis_server.port)
    assert await cache.set_many(mapping, timeout=60) is True
    calls = command_calls(redis_server.port)
    raw = redis.Redis(port=redis_server.port)
    try:
        ttls = {raw.pttl(f"zephyr:1:k{i}") for i in range(1000)}
    finally:
        raw.close()
    assert "pexpire" not in calls and "exec" not in calls
    assert calls.get("evalsha", 0) + calls.get("eval", 0) == 1  # one round trip
    assert all(50_000 < ttl <= 60_000 for ttl in ttls)
    assert await cache.get_many(["k0", "k999"]) == {"k0": 0, "k999": 999}


async def test_a_set_on_a_tier_is_one_command_with_its_announcement(
    redis_server: RedisServer,
) -> None:
    redis_server.flushall()
    configure(
        {
            "default": {"backend": "redis", "url": redis_server.url(), "timeout": 300},
            "local": {"backend": "memory", "max_size": 100},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    hot = get_cache("hot")
    assert await hot.wait_ready()
    await hot.set("warm", 0)
    reset_stats(redis_server.port)
    assert await hot.set("k", 1) is True
    calls = command_calls(redis_server.port)
    assert "multi" not in calls and "exec" not in calls
    assert calls.get("evalsha", 0) == 1 and calls["set"] == 1 and calls["publish"] == 1


async def test_a_flushed_script_cache_falls_back_to_eval(redis_server: RedisServer) -> None:
    redis_server.flushall()
    configure(
        {
            "default": {"backend": "redis", "url": redis_server.url(), "timeout": 300},
            "local": {"backend": "memory", "max_size": 100},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    hot = get_cache("hot")
    await hot.set("k", 1)
    raw = redis.Redis(port=redis_server.port)
    raw.script_flush()
    raw.close()
    assert await hot.set("k", 2) is True
    assert await get_cache().get("k") == 2
