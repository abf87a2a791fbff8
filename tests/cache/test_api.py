"""The cache API, the same tests on memory and on a real Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from theine.write_buffer import BufferSize

from zephyr_cache import Cache, configure, get_cache
from zephyr_core import ConfigError


async def test_set_get_delete(any_cache: Cache) -> None:
    assert await any_cache.get("absent") is None
    assert await any_cache.get("absent", "fallback") == "fallback"
    assert await any_cache.set("k", {"name": "kite", "tags": ["a", "b"]}) is True
    assert await any_cache.get("k") == {"name": "kite", "tags": ["a", "b"]}
    assert await any_cache.delete("k") is True
    assert await any_cache.delete("k") is False
    assert await any_cache.get("k") is None


async def test_values_read_back_as_json_gives_them(any_cache: Cache) -> None:
    # Same types whichever backend answers: tuples are lists, keys are strings.
    await any_cache.set("t", (1, 2))
    await any_cache.set("d", {1: "one"})
    await any_cache.set("none", None)
    assert await any_cache.get("t") == [1, 2]
    assert await any_cache.get("d") == {"1": "one"}
    assert await any_cache.get("none", "dflt") is None  # a stored None is a hit


async def test_stored_value_is_a_copy(any_cache: Cache) -> None:
    value = {"n": 1}
    await any_cache.set("k", value)
    value["n"] = 2
    assert await any_cache.get("k") == {"n": 1}


async def test_timeout_expires(any_cache: Cache) -> None:
    await any_cache.set("short", "v", timeout=0.2)
    await any_cache.set("forever", "v", timeout=None)
    assert await any_cache.get("short") == "v"
    left = await any_cache.ttl("short")
    assert left is not None and 0 < left <= 0.2
    assert await any_cache.ttl("forever") is None
    assert await any_cache.ttl("absent") == 0.0
    deadline = time.monotonic() + 3
    while await any_cache.get("short") is not None:
        assert time.monotonic() < deadline, "entry did not expire"
        await asyncio.sleep(0.02)
    assert await any_cache.get("forever") == "v"


async def test_default_timeout_applies(any_cache: Cache) -> None:
    await any_cache.set("k", 1)
    left = await any_cache.ttl("k")
    assert left is not None and 290 < left <= 300


async def test_expire_changes_the_timeout(any_cache: Cache) -> None:
    await any_cache.set("k", "v", timeout=None)
    assert await any_cache.expire("k", 100) is True
    left = await any_cache.ttl("k")
    assert left is not None and 99 < left <= 100
    assert await any_cache.expire("k", None) is True
    assert await any_cache.ttl("k") is None
    assert await any_cache.expire("absent", 10) is False


async def test_get_many_and_set_many(any_cache: Cache) -> None:
    assert await any_cache.set_many({"a": 1, "b": [2], "c": None}, timeout=60) is True
    assert await any_cache.get_many(["a", "b", "c", "zz"]) == {"a": 1, "b": [2], "c": None}
    left = await any_cache.ttl("b")
    assert left is not None and 59 < left <= 60


async def test_incr(any_cache: Cache) -> None:
    assert await any_cache.incr("n") == 1
    assert await any_cache.incr("n", 10) == 11
    assert await any_cache.incr("n", -1) == 10
    assert await any_cache.get("n") == 10
    await any_cache.set("m", 5)
    assert await any_cache.incr("m") == 6
    await any_cache.set("s", "text")
    with pytest.raises(TypeError, match="not an integer"):
        await any_cache.incr("s")


async def test_clear_removes_this_caches_keys_only(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "memory":
        options = {"backend": "memory"}
        other_options = {"backend": "memory"}
    else:
        url = request.getfixturevalue("redis_url")
        options = {"backend": "redis", "url": url}
        other_options = {"backend": "redis", "url": url, "key_prefix": "other"}
    configure({"default": options, "other": other_options})
    default, other = get_cache(), get_cache("other")
    await default.set_many({"a": 1, "b": 2})
    await other.set("a", "kept")
    await default.clear()
    assert await default.get_many(["a", "b"]) == {}
    assert await other.get("a") == "kept"


def test_a_prefix_with_a_colon_is_refused() -> None:
    # "app" would clear "app:sub"'s keys: ':' separates the prefix from the version.
    with pytest.raises(ConfigError, match=r"caches\['sub'\]\.key_prefix='app:sub'.*':'"):
        configure({"sub": {"backend": "memory", "key_prefix": "app:sub"}})


async def test_clear_spares_caches_whose_prefix_starts_alike(
    backend: str, request: pytest.FixtureRequest
) -> None:
    options: dict[str, object] = {"backend": backend}
    if backend == "redis":
        options["url"] = request.getfixturevalue("redis_url")
    prefixes = {"app": "app", "dotted": "app.sub", "dashed": "app-sub", "longer": "apple"}
    configure({name: {**options, "key_prefix": prefix} for name, prefix in prefixes.items()})
    for name in prefixes:
        await get_cache(name).set("k", name)
    await get_cache("app").clear()
    assert await get_cache("app").get("k") is None
    for name in ("dotted", "dashed", "longer"):
        assert await get_cache(name).get("k") == name


async def test_bumping_the_version_invalidates(
    backend: str, request: pytest.FixtureRequest
) -> None:
    options: dict[str, object] = {"backend": backend}
    if backend == "redis":
        options["url"] = request.getfixturevalue("redis_url")
    configure({"default": {**options, "version": 1}})
    await get_cache().set("k", "v1")
    await get_cache().close()
    configure({"default": {**options, "version": 2}})
    assert await get_cache().get("k") is None


async def test_unserialisable_value_names_the_key(any_cache: Cache) -> None:
    with pytest.raises(TypeError, match=r"'k'.*object.*cannot be serialised with json"):
        await any_cache.set("k", object())
    with pytest.raises(TypeError, match="'b'"):
        await any_cache.set_many({"a": 1, "b": {1, 2}})


async def test_keys_must_be_strings(any_cache: Cache) -> None:
    with pytest.raises(TypeError, match="cache keys are strings"):
        await any_cache.get(1)  # type: ignore[arg-type]


async def test_stats_count_hits_and_misses(any_cache: Cache) -> None:
    await any_cache.set("k", 1)
    await any_cache.get("k")
    await any_cache.get("k")
    await any_cache.get("nope")
    stats = any_cache.stats()
    assert (stats["hits"], stats["misses"], stats["errors"]) == (2, 1, 0)
    assert stats["hit_ratio"] == pytest.approx(2 / 3, abs=1e-3)
    assert stats["tiers"]["default"]["hits"] == 2


async def test_dummy_caches_nothing() -> None:
    configure({"default": {"backend": "dummy"}})
    await get_cache().set("k", 1)
    assert await get_cache().get("k") is None


async def test_memory_is_bounded_by_max_size() -> None:
    configure({"default": {"backend": "memory", "max_size": 100}})
    for i in range(1000):
        await get_cache().set(f"k{i}", i)
    backend = get_cache()._store.backend  # type: ignore[attr-defined]
    # theine admits writes through a buffer of BufferSize entries that it drains on a
    # later write when its core is busy (its maintenance thread holds the core's lock
    # each second): up to that many recent entries may wait there, counted, unevicted.
    assert len(backend) <= 100 + BufferSize
