"""The memory tier after ``clear()``: it keeps storing, and W-TinyLFU keeps its hit ratio.

theine 2.0.0 (theine-core 2.0/2.1) panics in Rust on the first writes after
``Cache.clear()`` once the cache has seen more keys than it holds; the memory backend
replaces its theine instance on clear instead of clearing it.
"""

from __future__ import annotations

import bisect
import itertools
import random

import pytest

from zephyr_cache import Cache, configure, get_cache


def zipf_requests(skew: float, keys: int, count: int, seed: int) -> list[int]:
    weights = [1 / (k**skew) for k in range(1, keys + 1)]
    cumulative = list(itertools.accumulate(weights))
    rng = random.Random(seed)
    return [bisect.bisect_left(cumulative, rng.random() * cumulative[-1]) for _ in range(count)]


@pytest.fixture
def memory_cache() -> Cache:
    configure({"default": {"backend": "memory", "max_size": 1000, "timeout": None}})
    return get_cache()


async def fill(cache: Cache, count: int) -> None:
    for n in range(count):
        await cache.set(f"k{n}", n)
        await cache.get(f"k{n}")


@pytest.mark.parametrize("filled", [0, 300, 3000], ids=["empty", "partly-full", "full"])
async def test_a_cleared_cache_stores_again(memory_cache: Cache, filled: int) -> None:
    await fill(memory_cache, filled)
    await memory_cache.clear()
    assert await memory_cache.get("k1") is None
    # Enough writes to drain theine's write buffer into its policy, where it panicked.
    for n in range(200):
        assert await memory_cache.set(f"after{n}", n) is True
        assert await memory_cache.get(f"after{n}") == n
    await memory_cache.clear()
    assert await memory_cache.get("after5") is None
    assert await memory_cache.set("again", 1) is True
    assert await memory_cache.get("again") == 1


async def test_hit_ratio_after_clear_is_the_usual_one(memory_cache: Cache) -> None:
    await fill(memory_cache, 3000)
    await memory_cache.clear()
    requests = zipf_requests(1.1, keys=10_000, count=100_000, seed=11)
    warm_up, hits = 10_000, 0
    for n, key in enumerate(requests):
        name = f"z{key}"
        if await memory_cache.get(name) is None:
            await memory_cache.set(name, key)
        elif n >= warm_up:
            hits += 1
    ratio = hits / (len(requests) - warm_up)
    assert ratio >= 0.82, f"Zipf(1.1) hit ratio after clear(): {ratio:.1%}"
