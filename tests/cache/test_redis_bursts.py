"""Bursts of concurrent calls wait for a pooled connection; a burst is never an outage."""

from __future__ import annotations

import asyncio
import logging

import pytest
import redis

from tests.servers import RedisServer
from zephyr_cache import configure, get_cache


def redis_default(url: str, **options: object) -> None:
    configure({"default": {"backend": "redis", "url": url, "timeout": 300, **options}})


def cache_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "zephyr_cache"]


async def test_1000_concurrent_gets_of_a_warm_key_all_hit(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis_default(redis_url)
    cache = get_cache()
    assert await cache.set("warm", {"id": 1})
    with caplog.at_level(logging.WARNING, logger="zephyr_cache"):
        values = await asyncio.gather(*(cache.get("warm") for _ in range(1000)))
    assert values == [{"id": 1}] * 1000
    assert cache_warnings(caplog) == []
    assert cache.stats()["errors"] == 0


async def test_1000_concurrent_incr_count_1000(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis_default(redis_url)
    cache = get_cache()
    with caplog.at_level(logging.WARNING, logger="zephyr_cache"):
        totals = await asyncio.gather(*(cache.incr("hits") for _ in range(1000)))
    assert sorted(totals) == list(range(1, 1001))  # every caller got a real count
    assert await cache.get("hits") == 1000
    assert cache_warnings(caplog) == []


async def test_a_burst_on_a_fresh_pool_is_not_an_outage(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis_default(redis_url)
    cache = get_cache()  # no connection opened yet: the burst opens them all
    with caplog.at_level(logging.WARNING, logger="zephyr_cache"):
        stored = await asyncio.gather(*(cache.set(f"k{i}", i) for i in range(1000)))
        values = await asyncio.gather(*(cache.get(f"k{i}") for i in range(1000)))
    assert all(stored)
    assert values == list(range(1000))
    assert cache_warnings(caplog) == []


async def test_the_pool_is_bounded_by_max_connections(redis_server: RedisServer) -> None:
    redis_server.flushall()
    redis_default(redis_server.url(), max_connections=4)
    cache = get_cache()
    await cache.set("warm", 1)
    observer = redis.Redis(port=redis_server.port)
    try:
        before = len(observer.client_list())
        values = await asyncio.gather(*(cache.get("warm") for _ in range(300)))
        opened = len(observer.client_list()) - before
    finally:
        observer.close()
    assert values == [1] * 300  # the burst waited for the 4 connections
    assert opened <= 4


async def test_max_connections_is_validated() -> None:
    from zephyr_core import ConfigError

    with pytest.raises(ConfigError, match=r"caches\['default'\]\.max_connections=0: expected"):
        redis_default("redis://127.0.0.1:6379/0", max_connections=0)
