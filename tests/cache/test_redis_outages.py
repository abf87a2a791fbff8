"""What is and is not an outage, and invalidations that survive one: on a real Redis."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from tests.servers import RedisServer, wait_until
from zephyr_cache import CacheError, CacheGroup, configure, get_cache
from zephyr_cache._memory import MISSING


def redis_default(server: RedisServer, **options: object) -> None:
    configure(
        {
            "default": {"backend": "redis", "url": server.url(), "timeout": 300, **options},
            "local": {"backend": "memory", "max_size": 100},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )


def outages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "is unavailable" in r.getMessage()]


@contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    """The server stopped (SIGSTOP): connections open, nothing answered, until the end."""
    assert server.proc is not None
    pid = server.proc.pid
    server.proc.send_signal(signal.SIGSTOP)
    state = Path(f"/proc/{pid}/stat")
    wait_until(lambda: state.read_text().split()[2] == "T", 5, "redis to stop")
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)


async def until_back(timeout: float = 5.0) -> None:
    """Poll with real calls until the Redis tier answers again."""
    deadline = time.monotonic() + timeout
    while not await get_cache().set("probe", 1):
        assert time.monotonic() < deadline, "the Redis tier did not resume"
        await asyncio.sleep(0.02)


# -- data errors ----------------------------------------------------------------


async def test_wrongtype_get_is_a_miss_not_an_outage(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.flushall()
    redis_default(redis_server)
    cache = get_cache()
    raw = redis.Redis(port=redis_server.port)
    raw.rpush("zephyr:1:queue", "a")
    raw.close()
    await cache.set("k", "v")
    with caplog.at_level(logging.WARNING, logger="zephyr_cache"):
        assert await cache.get("queue") is None
        assert await cache.get("k") == "v"  # the tier stays in use
        assert await cache.set("k2", 2) is True
    assert outages(caplog) == []
    assert any("'zephyr:1:queue'" in r.getMessage() for r in caplog.records)


async def test_wrongtype_get_raises_naming_the_key_when_failing_closed(
    redis_server: RedisServer,
) -> None:
    redis_server.flushall()
    redis_default(redis_server, fail_open=False)
    raw = redis.Redis(port=redis_server.port)
    raw.rpush("zephyr:1:queue", "a")
    raw.close()
    with pytest.raises(CacheError, match="GET 'zephyr:1:queue' failed"):
        await get_cache().get("queue")


async def test_incr_does_not_fail_open(own_redis: RedisServer) -> None:
    redis_default(own_redis, cooldown=0.2)
    cache = get_cache()
    assert await cache.incr("n") == 1
    own_redis.kill()
    with pytest.raises(CacheError, match="'zephyr:1:n'"):
        await cache.incr("n")  # the call that finds Redis down
    with pytest.raises(CacheError, match="does not fail open"):
        await cache.incr("n", 5)  # while the tier is bypassed
    assert await cache.get("other") is None  # reads still fail open
    own_redis.start()
    await until_back()
    assert await cache.incr("n") == 2  # the append-only file kept 1


# -- timeouts -------------------------------------------------------------------


async def test_one_slow_call_does_not_trip_the_tier(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_default(own_redis, operation_timeout=0.1, cooldown=30)
    cache = get_cache()
    await cache.set("k", "v")
    with caplog.at_level(logging.WARNING, logger="zephyr_cache"), paused(own_redis):
        assert await cache.get("k") is None  # timed out: this call's miss
    assert await cache.get("k") == "v"  # not bypassed for 30 s
    assert outages(caplog) == []


async def test_a_large_value_gets_time_for_its_size(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    redis_server.flushall()
    redis_default(redis_server, operation_timeout=0.02, cooldown=30)
    cache = get_cache()
    big = "x" * 30_000_000
    with caplog.at_level(logging.WARNING, logger="zephyr_cache"):
        assert await cache.set("big", big) is True
        assert await cache.set("small", 1) is True
        assert await cache.get("small") == 1
    assert outages(caplog) == []
    raw = redis.Redis(port=redis_server.port)
    try:
        assert raw.strlen("zephyr:1:big") == len(big) + 2  # the JSON string
    finally:
        raw.close()


# -- invalidations survive outages ----------------------------------------------


async def test_a_delete_during_an_outage_is_replayed(own_redis: RedisServer) -> None:
    redis_default(own_redis, cooldown=0.2)
    cache = get_cache()
    await cache.set("k", "old")
    own_redis.kill()
    assert await cache.delete("k") is False  # not confirmed
    assert await cache.delete("k2") is False  # bypassed: not even tried
    own_redis.start()  # the append-only file brings "k" back
    await until_back()
    assert await cache.get("k") is None


async def test_a_group_invalidation_during_an_outage_is_replayed(own_redis: RedisServer) -> None:
    redis_default(own_redis, cooldown=0.2)
    group = CacheGroup("user")
    names = {1: "Ada"}

    @group.cached(timeout=300)
    async def name_of(user_id: int) -> str:
        return names[user_id]

    assert await name_of(1) == "Ada"
    own_redis.kill()
    names[1] = "Ada L."
    await group.invalidate(1)
    own_redis.start()
    await until_back()
    assert await name_of(1) == "Ada L."


async def test_a_clear_during_an_outage_is_replayed(own_redis: RedisServer) -> None:
    redis_default(own_redis, cooldown=0.2)
    cache = get_cache()
    await cache.set_many({"a": 1, "b": 2})
    own_redis.kill()
    await cache.clear()
    own_redis.start()
    await until_back()
    assert await cache.get_many(["a", "b"]) == {}


async def test_local_tiers_are_flushed_when_the_tier_comes_back(own_redis: RedisServer) -> None:
    redis_default(own_redis, operation_timeout=0.1, cooldown=0.2)
    hot = get_cache("hot")
    assert await hot.wait_ready()
    await hot.set("k", 1)
    local = hot._store.tiers[0].backend  # type: ignore[attr-defined]
    full = hot.full_key("k")
    assert local.lookup(full) == 1
    with paused(own_redis):
        # Two timeouts 0.1 s apart: the server is silent, the tier is down.
        assert await hot.get("absent1") is None
        assert await hot.get("absent2") is None
    assert hot._store.channel.healthy  # type: ignore[attr-defined]  # subscription survived
    await until_back()
    assert local.lookup(full) is MISSING  # flushed: nothing older than the outage is served
