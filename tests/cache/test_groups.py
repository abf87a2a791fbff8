"""CacheGroup: invalidate every entry of a value at once, never serve a racing result."""

from __future__ import annotations

import asyncio

import pytest

from zephyr_cache import Cache, CacheGroup
from zephyr_core import ConfigError


async def test_invalidate_drops_every_entry_for_the_value(any_cache: Cache) -> None:
    user_cache = CacheGroup("user")
    calls: list[str] = []

    @user_cache.cached(timeout=300)
    async def get_user_posts(user_id: int) -> list[int]:
        calls.append(f"posts{user_id}")
        return [user_id]

    @user_cache.cached(timeout=300)
    async def get_user_name(user_id: int, upper: bool = False) -> str:
        calls.append(f"name{user_id}")
        return "ann"

    for _ in range(2):
        await get_user_posts(1)
        await get_user_name(1)
        await get_user_posts(2)
    assert calls == ["posts1", "name1", "posts2"]

    await user_cache.invalidate(1)
    await get_user_posts(1)
    await get_user_name(1)
    await get_user_posts(2)  # another user: still cached
    assert calls == ["posts1", "name1", "posts2", "posts1", "name1"]


async def test_by_names_the_argument(any_cache: Cache) -> None:
    orders = CacheGroup("orders")
    calls = []

    @orders.cached(timeout=300, by="customer")
    async def order_page(page: int, customer: str) -> str:
        calls.append((page, customer))
        return f"{customer}:{page}"

    await order_page(1, "ann")
    await order_page(2, customer="ann")
    await order_page(1, "bob")
    await orders.invalidate("ann")
    await order_page(1, "ann")
    await order_page(1, "bob")
    assert calls == [(1, "ann"), (2, "ann"), (1, "bob"), (1, "ann")]


async def test_clear_drops_the_whole_group(any_cache: Cache) -> None:
    group = CacheGroup("g")
    other = CacheGroup("other")
    calls = []

    @group.cached()
    async def f(x: int) -> int:
        calls.append(("g", x))
        return x

    @other.cached()
    async def h(x: int) -> int:
        calls.append(("other", x))
        return x

    for x in (1, 2):
        await f(x)
        await h(x)
    await group.clear()
    for x in (1, 2):
        await f(x)
        await h(x)
    assert calls.count(("g", 1)) == 2 and calls.count(("g", 2)) == 2
    assert calls.count(("other", 1)) == 1


async def test_result_computed_during_invalidation_is_not_served(any_cache: Cache) -> None:
    group = CacheGroup("profile")
    database = {"name": "old"}
    reading = asyncio.Event()
    proceed = asyncio.Event()

    @group.cached(timeout=300)
    async def profile(user_id: int) -> str:
        value = database["name"]  # read before the update...
        reading.set()
        await proceed.wait()
        return value  # ...stored after the invalidation

    slow = asyncio.create_task(profile(1))
    await reading.wait()
    database["name"] = "new"
    await group.invalidate(1)
    proceed.set()
    assert await slow == "old"
    assert await profile(1) == "new"


async def test_sync_functions_in_a_group(any_cache: Cache) -> None:
    group = CacheGroup("sync")
    calls = []

    @group.cached()
    def f(x: int) -> int:
        calls.append(x)
        return x

    assert await asyncio.to_thread(f, 1) == 1
    assert await asyncio.to_thread(f, 1) == 1
    await group.invalidate(1)
    assert await asyncio.to_thread(f, 1) == 1
    assert calls == [1, 1]


async def test_warm_cache_in_a_group(any_cache: Cache) -> None:
    group = CacheGroup("w")
    calls = []

    @group.cached()
    async def f(x: int) -> int:
        calls.append(x)
        return x * 10

    assert await f.warm_cache(3) == 30
    assert await f(3) == 30
    assert calls == [3]


def test_group_needs_an_argument() -> None:
    group = CacheGroup("bad")
    with pytest.raises(ConfigError, match="needs an argument"):

        @group.cached()
        async def f() -> None: ...

    with pytest.raises(ConfigError, match=r"by='nope' is not a parameter \(parameters: a\)"):

        @group.cached(by="nope")
        async def g(a: int) -> None: ...

    with pytest.raises(ValueError, match="non-empty"):
        CacheGroup("")
