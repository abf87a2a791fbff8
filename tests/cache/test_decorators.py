"""@cached on async and sync functions: keys, invalidation, warming, stampedes."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from tests.cache.conftest import python
from zephyr_cache import Cache, CacheGroup, _decorators, cache, cached, configure, get_cache
from zephyr_core import ConfigError


async def test_async_function_computes_once(any_cache: Cache) -> None:
    calls: list[int] = []

    @cache.cached(timeout=300, key_prefix="user")
    async def get_user_profile(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id}

    assert await get_user_profile(1) == {"id": 1}
    assert await get_user_profile(1) == {"id": 1}
    assert await get_user_profile(user_id=1) == {"id": 1}
    assert await get_user_profile(2) == {"id": 2}
    assert calls == [1, 2]
    assert get_user_profile.cache_key(1) == "user:1"
    assert await any_cache.get_entry(any_cache.full_key("user:1")) == [{"id": 1}]


async def test_sync_function_computes_once(any_cache: Cache) -> None:
    calls: list[int] = []

    @cache.cached(timeout=300)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert await asyncio.to_thread(square, 3) == 9
    assert square(3) == 9
    assert calls == [3]
    assert square.invalidate(3) is True
    assert square(3) == 9
    assert calls == [3, 3]
    assert square.warm_cache(4) == 16
    assert square(4) == 16
    assert calls == [3, 3, 4]


async def test_none_is_cached(any_cache: Cache) -> None:
    calls = []

    @cache.cached()
    async def nothing() -> None:
        calls.append(1)

    assert await nothing() is None
    assert await nothing() is None
    assert calls == [1]


async def test_invalidate_and_warm_cache(any_cache: Cache) -> None:
    version = {"n": 0}

    @cache.cached(timeout=300)
    async def load(key: str) -> int:
        return version["n"]

    assert await load("a") == 0
    version["n"] = 1
    assert await load("a") == 0
    assert await load.invalidate("a") is True
    assert await load.invalidate("a") is False
    assert await load("a") == 1
    version["n"] = 2
    assert await load.warm_cache("a") == 2
    assert await load("a") == 2


async def test_timeout_is_the_entrys_lifetime(any_cache: Cache) -> None:
    @cache.cached(timeout=60)
    async def f() -> int:
        return 1

    await f()
    left = await any_cache.ttl(f.cache_key())
    assert left is not None and 59 < left <= 60


async def test_key_callable_and_unless(any_cache: Cache) -> None:
    calls = []

    class User:
        def __init__(self, ident: int) -> None:
            self.ident = ident

    @cache.cached(
        key=lambda user, fresh=False: str(user.ident), unless=lambda user, fresh=False: fresh
    )
    async def profile(user: User, fresh: bool = False) -> int:
        calls.append(user.ident)
        return user.ident

    assert await profile(User(1)) == 1
    assert await profile(User(1)) == 1
    assert await profile(User(1), fresh=True) == 1
    assert calls == [1, 1]


async def test_methods_key_on_cache_key(any_cache: Cache) -> None:
    calls = []

    class Repo:
        def __init__(self, shard: int) -> None:
            self.shard = shard

        def __cache_key__(self) -> int:
            return self.shard

        @cache.cached(timeout=60)
        async def count(self, table: str) -> int:
            calls.append((self.shard, table))
            return self.shard

    assert await Repo(1).count("users") == 1
    assert await Repo(1).count("users") == 1  # another instance, same key
    assert await Repo(2).count("users") == 2
    assert calls == [(1, "users"), (2, "users")]


async def test_unkeyable_argument_raises_naming_it(any_cache: Cache) -> None:
    @cache.cached()
    async def f(session: object) -> int:
        return 1

    with pytest.raises(TypeError, match="argument 'session'"):
        await f(object())


async def test_unserialisable_result_raises_naming_the_function(any_cache: Cache) -> None:
    @cache.cached()
    async def f() -> object:
        return object()

    with pytest.raises(
        TypeError, match=r"test_decorators.*f returned a object that cannot be cached"
    ):
        await f()


def test_bad_options_fail_at_decoration() -> None:
    with pytest.raises(ConfigError, match="timeout must not be negative"):

        @cached(timeout=-1)
        async def f() -> None: ...

    with pytest.raises(ConfigError, match="key=3 is not callable"):

        @cached(key=3)  # type: ignore[arg-type]
        async def g() -> None: ...


def test_every_cached_takes_the_same_options_and_refuses_unknown_ones() -> None:
    # One signature (CachedOptions) on four objects; a typo is named at once.
    group = CacheGroup("g")
    for decorate in (cached, cache.cached, get_cache().cached, group.cached):
        with pytest.raises(
            ConfigError, match=r"unknown option locked= \(accepted: timeout, .*lock"
        ):
            decorate(60, locked=True)  # type: ignore[call-arg]
        decorator = decorate(60, key_prefix="p", lock=True, early=True, unless=lambda: False)

        @decorator
        async def f(user_id: int) -> int:
            return user_id

        assert f._o.lock and f._o.early and f._o.key.prefix == "p"
    with pytest.raises(ConfigError, match="a group's entries live in its own cache"):
        group.cached(cache_name="other")


async def test_cache_name_selects_the_cache(redis_url: str) -> None:
    configure(
        {
            "default": {"backend": "redis", "url": redis_url},
            "local": {"backend": "memory", "max_size": 10, "timeout": 60},
        }
    )

    @cache.cached(timeout=60, cache_name="local")
    async def stats() -> int:
        return 7

    assert await stats() == 7
    local = get_cache("local")
    assert await local.get_entry(local.full_key(stats.cache_key())) == [7]
    assert await get_cache().get(stats.cache_key()) is None


async def _all_missed(cache: Cache, count: int) -> None:
    """Wait until ``count`` lookups missed: every caller is computing or waiting."""
    deadline = time.monotonic() + 5
    while cache.stats()["misses"] < count:
        assert time.monotonic() < deadline, cache.stats()
        await asyncio.sleep(0.005)


async def test_concurrent_misses_compute_once(any_cache: Cache) -> None:
    calls = 0
    release = asyncio.Event()

    @cache.cached(timeout=60)
    async def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return x

    tasks = [asyncio.create_task(slow(1)) for _ in range(20)]
    await _all_missed(any_cache, 20)
    release.set()
    assert await asyncio.gather(*tasks) == [1] * 20
    assert calls == 1


async def test_single_flight_shares_the_error(any_cache: Cache) -> None:
    calls = 0
    release = asyncio.Event()

    @cache.cached(timeout=60)
    async def broken() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        raise RuntimeError("boom")

    tasks = [asyncio.create_task(broken()) for _ in range(5)]
    await _all_missed(any_cache, 5)
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls == 1
    assert await any_cache.get(broken.cache_key()) is None  # errors are not cached


async def test_sync_threads_compute_once(any_cache: Cache) -> None:
    calls = 0
    gate = threading.Event()

    @cache.cached(timeout=60)
    def slow(x: int) -> int:
        nonlocal calls
        calls += 1
        gate.wait(5)
        return x

    threads = [threading.Thread(target=slow, args=(1,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    # One thread computes (blocked on the gate), the seven others wait for it.
    key = any_cache.full_key(slow.cache_key(1))
    deadline = time.monotonic() + 5
    while (flight := slow._flights.get(key)) is None or flight.waiters < 7:
        assert time.monotonic() < deadline, "the threads never joined one computation"
        await asyncio.sleep(0.005)
    gate.set()
    for thread in threads:
        await asyncio.to_thread(thread.join, 5)
    assert calls == 1


LOCKED = """
import asyncio, sys, time
from zephyr_cache import cache, configure, close_caches
import redis
url = sys.argv[1]
configure({"default": {"backend": "redis", "url": url}})
counter = redis.Redis.from_url(url)

@cache.cached(timeout=60, lock=True)
async def expensive() -> int:
    counter.incr("computations")
    time.sleep(0.5)
    return 42

async def main():
    counter.incr("ready")
    while not counter.exists("go"):
        await asyncio.sleep(0.005)
    print(await expensive())
    await close_caches()

asyncio.run(main())
"""


@pytest.mark.slow
async def test_lock_computes_once_across_processes(redis_url: str) -> None:
    import redis as sync_redis

    from tests.cache.conftest import spawn
    from tests.servers import wait_until

    processes = [spawn(LOCKED, redis_url) for _ in range(3)]
    client = sync_redis.Redis.from_url(redis_url)
    try:
        # All three wait on "go", so their misses of the key overlap.
        await asyncio.to_thread(
            wait_until, lambda: int(client.get("ready") or 0) == 3, 30, "three processes"
        )
        client.set("go", 1)
        outputs = [await asyncio.to_thread(p.communicate, timeout=60) for p in processes]
        assert [p.returncode for p in processes] == [0, 0, 0], outputs
        assert [out.strip() for out, _ in outputs] == ["42", "42", "42"]
        assert int(client.get("computations") or 0) == 1
    finally:
        client.close()


class FakeClock:
    """The decorators' wall clock, moved by the test (and by the cached function)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_early_recomputes_before_expiry(
    any_cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, draws = FakeClock(), [0.5]
    monkeypatch.setattr(_decorators, "_clock", clock)
    monkeypatch.setattr(_decorators, "_random", lambda: draws[0])
    computed: list[float] = []

    @cache.cached(timeout=100, early=True)
    async def hot() -> int:
        computed.append(clock.now)
        clock.now += 2.0  # an expensive value: 2 s to compute
        return len(computed)

    assert await hot() == 1
    expires_at = clock.now + 100
    # XFetch recomputes when now - spent * beta * ln(random) >= expires_at: with
    # spent 2 s and random 0.5, from 2 * ln 2 (1.39 s) before expiry on.
    clock.now = expires_at - 1.5
    assert await hot() == 1
    draws[0] = 1.0  # ln 1 = 0: no early recompute, however close to expiry
    clock.now = expires_at - 0.01
    assert await hot() == 1
    draws[0] = 0.5
    clock.now = expires_at - 1.3
    assert await hot() == 2, "early expiration did not recompute"
    assert computed == [expires_at - 102, expires_at - 1.3]
    assert await hot() == 2  # the fresh value, stored anew with a later expiry
    left = await any_cache.ttl(hot.cache_key())
    assert left is not None and left > 99


def test_sync_cached_function_works_in_a_plain_script(redis_url: str) -> None:
    code = (
        "import sys\n"
        "from zephyr_cache import cache, configure\n"
        "configure({'default': {'backend': 'redis', 'url': sys.argv[1]}})\n"
        "calls = []\n"
        "@cache.cached(timeout=60)\n"
        "def f(x):\n"
        "    calls.append(x)\n"
        "    return x + 1\n"
        "print(f(1), f(1), len(calls))\n"
    )
    done = python(code, redis_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "2", "1"]
    again = python(code, redis_url)  # another process: served from Redis
    assert again.stdout.split() == ["2", "2", "0"]
