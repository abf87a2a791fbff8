"""Cache benchmark: our caches beside raw aiocache on the same private Redis, one run.

1. The proposal's cache test: 1,000 sets then 1,000 gets, per-operation microseconds,
   ours (Redis, memory) vs aiocache's RedisCache and SimpleMemoryCache with their
   defaults (and with ``timeout=None``, which skips aiocache's wait_for wrapper).
2. Hot-key hits: memory cache, tiered cache (local + Redis), a @cached function.
3. Hit ratio of a 1,000-entry memory cache under Zipf(1.1) and Zipf(1.2) traffic over
   10,000 keys: ours (W-TinyLFU) vs LRU (cachetools) vs the best static choice.
4. Cross-process invalidation latency (a writer process, our local tier dropping it).
5. Redis killed during 10,000 cached calls: exceptions, wrong values, cost per call
   while down, and how long the tier takes to resume once Redis is back.
6. A set on a Redis cache that is a tier of a tiered cache (so it announces the write
   on the invalidation channel) vs raw aiocache's set.
7. 1,000 concurrent gets of one warm key: ours vs raw aiocache vs cashews (hits counted:
   a pool that raises instead of waiting turns a burst into misses or errors).

Goals (issue #4): Redis get/set <= 1.1x raw aiocache; memory hit <= 3 us; tiered hot
hit <= 5 us; Zipf(1.1) hit ratio >= 82%. Issue #9: a tier's set <= 1.3x raw aiocache's
set; 1,000 concurrent gets all hit. The absolute goals were set on a machine where
raw aiocache's memory get without its wrapper took 2.3 us; the scale line below says
what that get costs here. Run: ``python benchmarks/cache_ops.py`` (about a minute).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiocache import RedisCache, SimpleMemoryCache  # noqa: E402
from cachetools import LRUCache  # noqa: E402

from tests.servers import RedisServer  # noqa: E402
from zephyr_cache import cache, close_caches, configure, get_cache  # noqa: E402
from zephyr_cache._memory import MISSING, MemoryBackend  # noqa: E402

# aiocache 0.12 calls SETEX/PSETEX, deprecated by redis-py 8: not what we measure.
warnings.simplefilter("ignore", DeprecationWarning)

N = 1_000
ROUNDS = 9
VALUE = {"id": 1, "name": "Ada Lovelace", "email": "ada@example.com", "active": True}


def row(label: str, ours: float, raw: float, unit: str = "us") -> None:
    print(
        f"  {label:<44} ours {ours:8.2f} {unit}   raw {raw:8.2f} {unit}   ratio {ours / raw:5.2f}x"
    )


async def per_op(fn: Callable[[int], Awaitable[Any]], count: int) -> float:
    started = time.perf_counter()
    for i in range(count):
        await fn(i)
    return (time.perf_counter() - started) / count * 1e6


async def sets_then_gets(
    contenders: dict[
        str, tuple[Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]], dict[str, Any]]
    ],
) -> dict[str, tuple[float, float]]:
    """The proposal's test for each contender: (us per set, us per get), median of ROUNDS.

    Contenders take turns round by round (in rotating order) so load from other
    processes on the machine falls on all of them alike.
    """
    sets: dict[str, list[float]] = {name: [] for name in contenders}
    gets: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(ROUNDS):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            set_, get, ttl_kw = contenders[name]
            keys = [f"bench:{r}:{i}" for i in range(N)]
            sets[name].append(
                await per_op(lambda i, s=set_, k=keys, t=ttl_kw: s(k[i], VALUE, **t), N)
            )
            gets[name].append(await per_op(lambda i, g=get, k=keys: g(k[i]), N))
    return {n: (statistics.median(sets[n]), statistics.median(gets[n])) for n in names}


async def proposal_test(port: int) -> None:
    print(f"\n1. The proposal's cache test: 1,000 sets then 1,000 gets (median of {ROUNDS} rounds)")
    url = f"redis://127.0.0.1:{port}/0"
    configure(
        {
            "default": {"backend": "redis", "url": url, "timeout": 300},
            "local": {"backend": "memory", "max_size": 10_000, "timeout": 300},
        }
    )
    ours_redis = get_cache()
    ours_memory = get_cache("local")
    raw_redis = RedisCache(endpoint="127.0.0.1", port=port, db=1)
    raw_redis_nt = RedisCache(endpoint="127.0.0.1", port=port, db=2, timeout=None)
    raw_memory = SimpleMemoryCache()
    raw_memory_nt = SimpleMemoryCache(timeout=None)

    redis = await sets_then_gets(
        {
            "ours": (ours_redis.set, ours_redis.get, {}),
            "raw": (raw_redis.set, raw_redis.get, {"ttl": 300}),
            "raw_nt": (raw_redis_nt.set, raw_redis_nt.get, {"ttl": 300}),
        }
    )
    (o_set, o_get), (r_set, r_get), (n_set, n_get) = redis["ours"], redis["raw"], redis["raw_nt"]
    row("Redis set (raw: RedisCache defaults)", o_set, r_set)
    row("Redis get (raw: RedisCache defaults)", o_get, r_get)
    row("Redis set (raw: RedisCache timeout=None)", o_set, n_set)
    row("Redis get (raw: RedisCache timeout=None)", o_get, n_get)
    print(
        f"  goal: Redis get and set <= 1.1x raw aiocache (defaults) -> "
        f"{'met' if o_get <= 1.1 * r_get and o_set <= 1.1 * r_set else 'NOT met'}"
    )
    print("  (raw timeout=None has no operation timeout at all; ours bounds each call at 100 ms)")

    memory = await sets_then_gets(
        {
            "ours": (ours_memory.set, ours_memory.get, {}),
            "raw": (raw_memory.set, raw_memory.get, {"ttl": 300}),
            "raw_nt": (raw_memory_nt.set, raw_memory_nt.get, {"ttl": 300}),
        }
    )
    (m_set, m_get), (s_set, s_get), (t_set, t_get) = memory["ours"], memory["raw"], memory["raw_nt"]
    row("memory set (raw: SimpleMemoryCache defaults)", m_set, s_set)
    row("memory get (raw: SimpleMemoryCache defaults)", m_get, s_get)
    row("memory set (raw: SimpleMemoryCache timeout=None)", m_set, t_set)
    row("memory get (raw: SimpleMemoryCache timeout=None)", m_get, t_get)
    print("  (our memory set serializes to JSON and back: values read the same on every tier)")
    await raw_redis.close()
    await raw_redis_nt.close()
    await close_caches()


async def hot_hits(port: int) -> None:
    print(f"\n2. Hot-key hits (best of {ROUNDS} x 20,000, interleaved)")
    url = f"redis://127.0.0.1:{port}/0"
    configure(
        {
            "default": {"backend": "redis", "url": url, "timeout": 300},
            "local": {"backend": "memory", "max_size": 10_000, "timeout": 300},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    memory, hot = get_cache("local"), get_cache("hot")
    assert await hot.wait_ready()
    raw_nt = SimpleMemoryCache(timeout=None)
    raw = SimpleMemoryCache()
    for target in (memory, hot):
        await target.set("k", VALUE)
    await raw_nt.set("k", VALUE)
    await raw.set("k", VALUE)

    @cache.cached(timeout=300, cache_name="local")
    async def profile(user_id: int) -> dict[str, Any]:
        return VALUE

    await profile(1)

    contenders: dict[str, Callable[[int], Awaitable[Any]]] = {
        "scale": lambda i: raw_nt.get("k"),
        "memory": lambda i: memory.get("k"),
        "tiered": lambda i: hot.get("k"),
        "decorated": lambda i: profile(1),
        "raw": lambda i: raw.get("k"),
    }
    runs: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(ROUNDS):  # interleaved, best of ROUNDS: hits are CPU-bound
        for name, fn in contenders.items():
            runs[name].append(await per_op(fn, 20_000))
    scale, mem, tiered, decorated, default_raw = (min(runs[n]) for n in contenders)
    row("memory hit (raw: SimpleMemoryCache timeout=None)", mem, scale)
    row("memory hit (raw: SimpleMemoryCache defaults)", mem, default_raw)
    row("tiered hot hit (raw: SimpleMemoryCache timeout=None)", tiered, scale)
    row("@cached hit, memory (raw: SimpleMemoryCache get)", decorated, scale)
    factor = scale / 2.3
    print(
        f"  scale: raw aiocache memory get (timeout=None) is {scale:.2f} us here vs 2.3 us where "
        f"the goals were set ({factor:.2f}x slower machine)"
    )
    print(
        f"  goal: memory hit <= 3 us (here: <= {3 * factor:.2f} us) -> "
        f"{'met' if mem <= 3 * factor else 'NOT met'}; tiered hit <= 5 us "
        f"(here: <= {5 * factor:.2f} us) -> {'met' if tiered <= 5 * factor else 'NOT met'}"
    )
    await close_caches()


def zipf_requests(skew: float, keys: int, count: int, seed: int) -> list[int]:
    weights = [1 / (k**skew) for k in range(1, keys + 1)]
    cumulative = list(itertools.accumulate(weights))
    total = cumulative[-1]
    rng = random.Random(seed)
    return [bisect.bisect_left(cumulative, rng.random() * total) for _ in range(count)]


def hit_ratios() -> None:
    print("\n3. Hit ratio: 1,000-entry cache, 10,000 keys, 300,000 requests (after 30,000 warm-up)")
    keys, size, count, warm = 10_000, 1_000, 300_000, 30_000
    for skew in (1.1, 1.2):
        requests = zipf_requests(skew, keys, count, seed=int(skew * 10))
        weights = [1 / (k**skew) for k in range(1, keys + 1)]
        static = sum(weights[:size]) / sum(weights)

        ours = MemoryBackend(size)
        hits = 0
        for n, key in enumerate(requests):
            name = f"k{key}"
            if ours.lookup(name) is MISSING:
                ours.store(name, key, None)
            elif n >= warm:
                hits += 1
        ours.close_sync()
        ours_ratio = hits / (count - warm)

        lru: LRUCache[str, int] = LRUCache(maxsize=size)
        hits = 0
        for n, key in enumerate(requests):
            name = f"k{key}"
            if name in lru:
                lru[name]
                if n >= warm:
                    hits += 1
            else:
                lru[name] = key
        lru_ratio = hits / (count - warm)
        print(
            f"  Zipf({skew}): ours (W-TinyLFU) {ours_ratio:6.1%}   LRU {lru_ratio:6.1%}   "
            f"best static {static:6.1%}   ours/LRU {ours_ratio / lru_ratio:4.2f}x"
            + (
                f"   goal >= 82% -> {'met' if ours_ratio >= 0.82 else 'NOT met'}"
                if skew == 1.1
                else ""
            )
        )


WRITER = """
import asyncio, sys, time
from zephyr_cache import configure, get_cache, close_caches
configure({"default": {"backend": "redis", "url": sys.argv[1]},
           "local": {"backend": "memory", "max_size": 100},
           "hot": {"backend": "tiered", "tiers": ["local", "default"]}})
async def main():
    hot = get_cache("hot")
    await hot.wait_ready()
    print("ready", flush=True)
    for line in sys.stdin:
        sent = time.time()
        await hot.set("shared", int(line))
        print(sent, flush=True)
    await close_caches()
asyncio.run(main())
"""


async def invalidation_latency(port: int) -> None:
    print("\n4. Cross-process invalidation: another process writes, our local copy is dropped")
    url = f"redis://127.0.0.1:{port}/0"
    configure(
        {
            "default": {"backend": "redis", "url": url},
            "local": {"backend": "memory", "max_size": 100},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    hot = get_cache("hot")
    assert await hot.wait_ready()
    local = hot._store.tiers[0].backend  # type: ignore[attr-defined]
    full = hot.full_key("shared")
    writer = subprocess.Popen(
        [sys.executable, "-u", "-c", WRITER, url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert writer.stdout is not None and writer.stdin is not None
    assert writer.stdout.readline().strip() == "ready"
    latencies = []
    for i in range(100):
        await hot.set("shared", -1)
        await hot.get("shared")
        assert local.lookup(full) is not MISSING
        writer.stdin.write(f"{i}\n")
        writer.stdin.flush()
        while local.lookup(full) is not MISSING:
            time.sleep(0.00005)
        dropped = time.time()
        sent = float(writer.stdout.readline())
        latencies.append((dropped - sent) * 1000)
    writer.stdin.close()
    writer.wait(10)
    writer.stdout.close()
    latencies.sort()
    print(
        f"  write -> remote local copy dropped: p50 {statistics.median(latencies):.2f} ms   "
        f"p99 {latencies[98]:.2f} ms   max {latencies[-1]:.2f} ms   (goal: within 50 ms -> "
        f"{'met' if latencies[-1] <= 50 else 'NOT met'})"
    )
    await close_caches()


async def redis_killed(directory: Path) -> None:
    print("\n5. Redis killed during 10,000 cached calls (fail-open)")
    server = RedisServer(directory / "killed")
    server.start()
    configure({"default": {"backend": "redis", "url": server.url(), "timeout": 300}})

    @cache.cached(timeout=300)
    async def square(x: int) -> int:
        return x * x

    errors = wrong = 0
    up_time = down_time = 0.0
    for i in range(10_000):
        if i == 3_000:
            server.kill()
        started = time.perf_counter()
        try:
            if await square(i % 500) != (i % 500) ** 2:
                wrong += 1
        except Exception:
            errors += 1
        spent = time.perf_counter() - started
        if i < 3_000:
            up_time += spent
        else:
            down_time += spent
    server.start()
    started = time.monotonic()
    while not await cache.set("probe", 1):
        await asyncio.sleep(0.01)
    resumed = time.monotonic() - started
    print(
        f"  exceptions {errors}   wrong values {wrong}   "
        f"per call while up {up_time / 3_000 * 1e6:.1f} us   "
        f"while down {down_time / 7_000 * 1e6:.1f} us "
        f"(goal < 1 ms -> {'met' if down_time / 7_000 < 0.001 else 'NOT met'})"
    )
    print(
        f"  Redis back: the tier resumed after {resumed:.2f} s (goal < 5 s -> "
        f"{'met' if resumed < 5 else 'NOT met'})"
    )
    await close_caches()
    server.stop()


async def tier_set(port: int) -> None:
    print(f"\n6. Set on a Redis cache that is a tier (announces the write), median of {ROUNDS}")
    url = f"redis://127.0.0.1:{port}/0"
    configure(
        {
            "default": {"backend": "redis", "url": url, "timeout": 300},
            "local": {"backend": "memory", "max_size": 10_000, "timeout": 300},
            "hot": {"backend": "tiered", "tiers": ["local", "default"]},
        }
    )
    tier = get_cache()  # a tier of "hot": its writes are published
    assert await get_cache("hot").wait_ready()
    raw = RedisCache(endpoint="127.0.0.1", port=port, db=1)
    result = await sets_then_gets(
        {
            "ours": (tier.set, tier.get, {}),
            "raw": (raw.set, raw.get, {"ttl": 300}),
        }
    )
    (o_set, _), (r_set, _) = result["ours"], result["raw"]
    row("Redis set + announcement (raw: RedisCache set)", o_set, r_set)
    print(f"  goal: <= 1.3x raw aiocache's set -> {'met' if o_set <= 1.3 * r_set else 'NOT met'}")
    await raw.close()
    await close_caches()


async def concurrent_gets(port: int) -> None:
    print(f"\n7. 1,000 concurrent gets of one warm key (median of {ROUNDS} bursts)")
    url = f"redis://127.0.0.1:{port}/0"
    configure({"default": {"backend": "redis", "url": url, "timeout": 300}})
    ours = get_cache()
    raw = RedisCache(endpoint="127.0.0.1", port=port, db=1)
    contenders: dict[str, Callable[[], Awaitable[Any]]] = {"ours": lambda: ours.get("warm")}
    await ours.set("warm", VALUE)
    await raw.set("warm", VALUE, ttl=300)
    contenders["raw"] = lambda: raw.get("warm")
    peer: Any = None
    try:
        from cashews import Cache as Cashews
    except ImportError:
        print("  cashews is not installed: its column is skipped")
    else:
        peer = Cashews()
        peer.setup(f"redis://127.0.0.1:{port}/2")
        await peer.set("warm", VALUE, expire=300)
        contenders["cashews"] = lambda: peer.get("warm")
    times: dict[str, list[float]] = {name: [] for name in contenders}
    hits: dict[str, list[int]] = {name: [] for name in contenders}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("zephyr_cache").setLevel(logging.ERROR)  # counted below instead
        for r in range(ROUNDS + 1):
            names = list(contenders)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                get = contenders[name]
                started = time.perf_counter()
                values = await asyncio.gather(*(get() for _ in range(N)), return_exceptions=True)
                spent = (time.perf_counter() - started) / N * 1e6
                if r:  # the first burst opens the pools
                    times[name].append(spent)
                    hits[name].append(sum(1 for v in values if v == VALUE))
        logging.getLogger("zephyr_cache").setLevel(logging.NOTSET)
    median = {name: statistics.median(times[name]) for name in contenders}
    for name in contenders:
        print(
            f"  {name:<8} {median[name]:8.2f} us per get   hits per burst: "
            f"min {min(hits[name])} / {N}"
        )
    row("concurrent get (raw: RedisCache defaults)", median["ours"], median["raw"])
    if "cashews" in median:
        row("concurrent get (raw: cashews)", median["ours"], median["cashews"])
    print(
        f"  goal: ours returns {N} hits in every burst -> "
        f"{'met' if min(hits['ours']) == N else 'NOT met'}"
    )
    await raw.close()
    if peer is not None:
        await peer.close()
    await close_caches()


async def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="  log: %(message)s")
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        server.start()
        try:
            print(f"private Redis on port {server.port}; Python {sys.version.split()[0]}")
            await proposal_test(server.port)
            await hot_hits(server.port)
            hit_ratios()
            await invalidation_latency(server.port)
            await redis_killed(Path(tmp))
            await tier_set(server.port)
            await concurrent_gets(server.port)
        finally:
            server.stop()
    print(f"\ndone in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    asyncio.run(main())
