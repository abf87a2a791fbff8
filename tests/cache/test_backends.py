"""Our tiers are aiocache caches: they work through aiocache's own API too."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from aiocache.base import BaseCache

from zephyr_cache._memory import MemoryBackend
from zephyr_cache._redis import RedisConnector


@pytest.fixture
def memory() -> Iterator[MemoryBackend]:
    backend = MemoryBackend(100)
    yield backend
    backend.close_sync()


async def test_memory_backend_through_aiocache_api(memory: MemoryBackend) -> None:
    assert isinstance(memory, BaseCache)
    assert await memory.set("a", {"x": 1}) is True
    assert await memory.get("a") == {"x": 1}
    assert await memory.multi_set([("b", 2), ("c", 3)], ttl=60) is True
    assert await memory.multi_get(["a", "b", "zz"]) == [{"x": 1}, 2, None]
    assert await memory.exists("b") is True
    with pytest.raises(ValueError, match="already exists"):
        await memory.add("b", 9)
    assert await memory.increment("n", 5) == 5
    assert await memory.expire("a", 0.05) is True
    deadline = asyncio.get_running_loop().time() + 3
    while await memory.exists("a"):
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    assert await memory.delete("b") == 1
    assert await memory.clear() is True
    assert await memory.multi_get(["c", "n"]) == [None, None]


async def test_redis_backend_is_an_aiocache_redis_cache(redis_url: str) -> None:
    from aiocache import RedisCache

    connector = RedisConnector(redis_url, 0.1, None)
    backend = connector.backend()
    try:
        assert isinstance(backend, RedisCache)
        assert backend.timeout is None  # no wait_for per call: socket timeouts bound it
        assert connector.backend() is backend  # one per event loop
        assert await backend.set("k", b"v", ttl=60) is True
        assert await backend.get("k") == b"v"
        assert 59 <= await backend.client.ttl("k") <= 60
        await backend.set("p", b"v", ttl=0.5)
        assert 0 < await backend.client.pttl("p") <= 500
        await backend.set("zephyr:1:x", b"1")
        await backend.set("zephyr:1:y", b"1")
        assert await backend.delete_prefix("zephyr:1:") == 2
        assert await backend.get("k") == b"v"
    finally:
        await connector.aclose()
