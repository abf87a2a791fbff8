"""``add``, ``exists``/``has_key`` and ``get_or_set``: on memory, Redis and tiered caches,
through ``get_cache()`` and the default ``cache`` proxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from tests.servers import free_port
from zephyr_cache import Cache, CacheError, cache, configure, get_cache


@pytest.fixture(params=["memory", "redis", "tiered"])
def every_cache(request: pytest.FixtureRequest) -> Cache:
    """The default cache on each kind of store."""
    kind = str(request.param)
    if kind == "memory":
        configure({"default": {"backend": "memory", "max_size": 1000, "timeout": 300}})
    else:
        url = request.getfixturevalue("redis_url")
        shared = {"backend": "redis", "url": url, "timeout": 300}
        if kind == "redis":
            configure({"default": shared})
        else:
            configure(
                {
                    "shared": shared,
                    "local": {"backend": "memory", "max_size": 100},
                    "default": {"backend": "tiered", "tiers": ["local", "shared"]},
                }
            )
    return get_cache()


async def test_add_stores_only_if_absent(every_cache: Cache) -> None:
    assert await every_cache.add("k", {"v": 1}, timeout=60) is True
    assert await every_cache.add("k", {"v": 2}) is False
    assert await cache.add("k", {"v": 3}) is False  # the default proxy: the same cache
    assert await every_cache.get("k") == {"v": 1}
    left = await every_cache.ttl("k")
    assert left is not None and 59 < left <= 60
    await every_cache.delete("k")
    assert await cache.add("k", "again") is True
    assert await every_cache.get("k") == "again"


async def test_add_is_exclusive_under_concurrency(every_cache: Cache) -> None:
    added = await asyncio.gather(*(every_cache.add("lock", n) for n in range(50)))
    assert added.count(True) == 1
    assert await every_cache.get("lock") == added.index(True)


async def test_add_after_expiry_stores_again(every_cache: Cache) -> None:
    assert await every_cache.add("k", 1, timeout=0.1) is True
    deadline = time.monotonic() + 3
    while not await every_cache.add("k", 2):
        assert time.monotonic() < deadline, "the expired entry still blocked add"
        await asyncio.sleep(0.02)
    assert await every_cache.get("k") == 2


async def test_exists_and_has_key(every_cache: Cache) -> None:
    assert await every_cache.exists("k") is False
    await every_cache.set("k", None)  # a stored None exists
    assert await every_cache.exists("k") is True
    assert await every_cache.has_key("k") is True
    assert await cache.exists("k") is True
    await every_cache.set("short", 1, timeout=0.1)
    deadline = time.monotonic() + 3
    while await every_cache.exists("short"):
        assert time.monotonic() < deadline, "an expired entry still exists"
        await asyncio.sleep(0.02)
    await every_cache.delete("k")
    assert await every_cache.has_key("k") is False


async def test_get_or_set_computes_once_and_stores(every_cache: Cache) -> None:
    calls: list[str] = []

    def compute() -> list[int]:
        calls.append("sync")
        return [1, 2]

    assert await every_cache.get_or_set("k", compute, timeout=60) == [1, 2]
    assert await every_cache.get_or_set("k", compute) == [1, 2]
    assert calls == ["sync"]
    assert await every_cache.get("k") == [1, 2]
    left = await every_cache.ttl("k")
    assert left is not None and 59 < left <= 60

    async def fetch() -> str:
        calls.append("async")
        return "fetched"

    assert await cache.get_or_set("a", fetch) == "fetched"
    assert await every_cache.get_or_set("plain", "a value") == "a value"
    assert await every_cache.get_or_set("plain", "another") == "a value"
    await every_cache.set("none", None)
    assert await every_cache.get_or_set("none", "default") is None  # a stored None is a hit
    assert calls == ["sync", "async"]


async def test_get_or_set_is_single_flight(every_cache: Cache) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return 7

    leader = asyncio.create_task(every_cache.get_or_set("k", slow))
    await started.wait()
    waiters = [asyncio.create_task(every_cache.get_or_set("k", slow)) for _ in range(20)]
    # Every waiter has looked the key up and joined the flight once it has missed:
    # count the misses instead of sleeping.
    await _until(lambda: every_cache.stats()["misses"] == 21)
    release.set()
    assert await asyncio.gather(leader, *waiters) == [7] * 21
    assert calls == 1


async def test_get_or_set_errors_reach_every_waiter(every_cache: Cache) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    async def failing() -> int:
        started.set()
        await release.wait()
        raise LookupError("upstream down")

    leader = asyncio.create_task(every_cache.get_or_set("k", failing))
    await started.wait()
    waiter = asyncio.create_task(every_cache.get_or_set("k", failing))
    await _until(lambda: every_cache.stats()["misses"] == 2)
    release.set()
    for task in (leader, waiter):
        with pytest.raises(LookupError, match="upstream down"):
            await task
    assert await every_cache.exists("k") is False


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0)


async def test_while_redis_is_down_add_raises_and_the_rest_fails_open() -> None:
    configure({"default": {"backend": "redis", "url": f"redis://127.0.0.1:{free_port()}/0"}})
    down = get_cache()
    for _ in range(2):  # the failing call, then while the tier is bypassed
        with pytest.raises(CacheError, match="SET NX"):
            await down.add("k", 1)
    assert await down.exists("k") is False
    assert await down.get_or_set("k", lambda: "computed") == "computed"
    assert await down.set("k", 1) is False
